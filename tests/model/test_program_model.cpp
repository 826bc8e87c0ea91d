// ProgramModel: conditioning by name, sites, log_joint against hand-computed sums,
// CmdStan JSON data and its errors, minibatches, and a fit through the normal plugin.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <functional>
#include <map>

#include "model_paths.hpp"
#include "test_models.hpp"
#include "vguide/model/data.hpp"
#include "vguide/model/program.hpp"
#include "vguide/model/program_model.hpp"
#include "vguide/registry.hpp"
#include "vguide/runtime/elbo.hpp"
#include "vguide/runtime/plugin_manager.hpp"

#include "regression_program.hpp"

namespace vguide::model {
namespace {


const double kLogSqrt2Pi = 0.5 * std::log(2 * M_PI);
double normal_lp(double x, double m, double s) { return -0.5 * std::pow((x - m) / s, 2) - std::log(s) - kLogSqrt2Pi; }

Data regression_data(int64_t N, uint64_t seed, double b0, double b1, double sigma) {
  auto gen = at::detail::createCPUGenerator(seed);
  at::Tensor x = at::randn({N}, gen, at::kDouble);
  at::Tensor y = b0 + b1 * x + sigma * at::randn({N}, gen, at::kDouble);
  Data data("regression.json");
  data.set("x", x);
  data.set("y", y);
  return data;
}

TEST(ProgramModel, RegressionHasLatentsSigmaBeta0Beta1AndDataXY) {
  ProgramModel model(parse_program(kRegression, "regression.qvr"), regression_data(10, 1, 1.0, 2.0, 0.5));
  EXPECT_EQ(model.latent_names(), (std::vector<std::string>{"sigma", "beta_0", "beta_1"}));
  EXPECT_EQ(model.observed_names(), (std::vector<std::string>{"x", "y"}));
  EXPECT_EQ(model.num_rows(), 10);
  const auto& sites = model.sites();
  ASSERT_EQ(sites.size(), 5u);
  EXPECT_EQ(sites[0].name, "sigma");
  EXPECT_EQ(sites[0].support, constraints::positive());
  EXPECT_TRUE(sites[0].shape.empty());
  EXPECT_EQ(sites[1].support, constraints::real());
  EXPECT_EQ(sites[3].name, "x");
  EXPECT_EQ(sites[3].shape, (std::vector<int64_t>{10}));
  EXPECT_FALSE(sites[0].per_row);
  auto registry = LatentRegistry::from_model(model, model.observed_names());
  EXPECT_EQ(registry.names(), model.latent_names());
  EXPECT_EQ(registry.total_unconstrained_dim(), 3);
}

TEST(ProgramModel, LogJointEqualsTheHandComputedSum) {
  const char* text =
      "object A : 1\nprogram small : A -> A\n    mu <- Normal(1.0, 2.0)\n    s <- HalfNormal(1.5)\n"
      "    let m = mu * 2.0 - 1.0\n    observe y ~ Normal(m, s)\n    return y\noutput small\n";
  Data data("d.json");
  const std::vector<double> y = {0.5, -1.0, 2.0};
  data.set("y", torch::tensor(y, torch::kDouble));
  ProgramModel model(parse_program(text, "small.qvr"), data);
  const std::vector<double> mu = {0.3, -0.7}, s = {0.8, 1.9};
  SiteValues values{{"mu", torch::tensor(mu, torch::kDouble)}, {"s", torch::tensor(s, torch::kDouble)}};
  at::Tensor lj = model.log_joint(torch::zeros({2}, torch::kDouble), values);
  ASSERT_EQ(lj.sizes(), (std::vector<int64_t>{2}));
  for (int k = 0; k < 2; ++k) {
    // log N(mu; 1, 2) + log HalfNormal(s; 1.5) + sum_i log N(y_i; 2 mu - 1, s)
    double expected = normal_lp(mu[k], 1.0, 2.0) + std::log(2.0) + normal_lp(s[k], 0.0, 1.5);
    for (double yi : y) expected += normal_lp(yi, 2 * mu[k] - 1, s[k]);
    EXPECT_NEAR(lj[k].item<double>(), expected, 1e-10) << k;
  }
}

TEST(ProgramModel, RegressionLogJointAndLetValues) {
  Data data = regression_data(6, 3, 0.5, -1.0, 1.0);
  ProgramModel model(parse_program(kRegression), data);
  const at::Tensor x = data.get("x"), y = data.get("y");
  SiteValues values{{"sigma", torch::tensor({0.7, 1.3}, torch::kDouble)},
                    {"beta_0", torch::tensor({0.1, -0.4}, torch::kDouble)},
                    {"beta_1", torch::tensor({-0.9, 2.0}, torch::kDouble)}};
  at::Tensor lj = model.log_joint(torch::zeros({2}, torch::kDouble), values);
  for (int k = 0; k < 2; ++k) {
    const double sg = values["sigma"][k].item<double>(), b0 = values["beta_0"][k].item<double>(),
                 b1 = values["beta_1"][k].item<double>();
    // HalfCauchy(2): 2 / (pi * 2 * (1 + (s/2)^2)).
    double expected = std::log(2.0 / (M_PI * 2.0 * (1 + sg * sg / 4))) + normal_lp(b0, 0, 5) + normal_lp(b1, 0, 2);
    for (int i = 0; i < 6; ++i) {
      const double xi = x[i].item<double>(), yi = y[i].item<double>();
      expected += normal_lp(xi, 0, 1) + normal_lp(yi, b0 + b1 * xi, sg);
    }
    EXPECT_NEAR(lj[k].item<double>(), expected, 1e-9) << k;
  }
  // The let value mu is evaluated per particle and row.
  SiteValues all = model.evaluate(torch::zeros({2}, torch::kDouble), values);
  ASSERT_EQ(all.at("mu").sizes(), (std::vector<int64_t>{2, 6}));
  EXPECT_NEAR(all.at("mu")[1][4].item<double>(), -0.4 + 2.0 * x[4].item<double>(), 1e-12);
}

TEST(ProgramModel, LogJointGradientMatchesFiniteDifferences) {
  ProgramModel model(parse_program(kRegression), regression_data(8, 4, 0.5, 1.0, 0.8));
  const std::vector<std::string> names = {"sigma", "beta_0", "beta_1"};
  const std::vector<double> point = {0.9, 0.3, 0.7};
  SiteValues values;
  for (size_t i = 0; i < names.size(); ++i)
    values[names[i]] = torch::tensor({point[i]}, torch::dtype(torch::kDouble).requires_grad(true));
  const at::Tensor x = torch::zeros({1}, torch::kDouble);
  model.log_joint(x, values).sum().backward();
  for (size_t i = 0; i < names.size(); ++i) {
    auto at_shift = [&](double h) {
      SiteValues v;
      for (size_t j = 0; j < names.size(); ++j) v[names[j]] = torch::tensor({point[j] + (i == j ? h : 0.0)}, torch::kDouble);
      return model.log_joint(x, v).item<double>();
    };
    const double h = 1e-6, fd = (at_shift(h) - at_shift(-h)) / (2 * h);
    EXPECT_NEAR(values[names[i]].grad().item<double>(), fd, 1e-5 * std::max(1.0, std::abs(fd))) << names[i];
  }
}

TEST(ProgramModel, LogJointNamesAMissingOrMisshapenLatent) {
  ProgramModel model(parse_program(kRegression), regression_data(5, 4, 0.5, 1.0, 0.8));
  const at::Tensor x = torch::zeros({2});
  SiteValues values{{"sigma", torch::ones({2})}, {"beta_0", torch::zeros({2})}};
  try {
    model.log_joint(x, values);
    FAIL();
  } catch (const std::invalid_argument& e) {
    EXPECT_STREQ(e.what(), "log_joint: no value for latent site 'beta_1'");
  }
  values["beta_1"] = torch::zeros({2, 3});
  try {
    model.log_joint(x, values);
    FAIL();
  } catch (const std::invalid_argument& e) {
    EXPECT_STREQ(e.what(), "log_joint: latent site 'beta_1' has shape [2, 3], expected [2]");
  }
  values["beta_1"] = torch::zeros({2});
  const at::Tensor lj = model.log_joint(x, values);
  EXPECT_EQ(lj.scalar_type(), at::kFloat);  // the dtype of x
  EXPECT_EQ(lj.sizes(), (std::vector<int64_t>{2}));
}

TEST(ProgramModel, FunctionsAndShapedLatents) {
  const char* text =
      "object A : 1\nprogram f : A -> A\n    data w\n    a <- Normal(0.0, 1.0)\n    theta[J] <- Normal(a, 2.0)\n"
      "    let e = exp(a) + log(2.0) + sigmoid(a) + softplus(a) + abs(-a) + sqrt(4.0) + log1p(a * a) + expm1(a)"
      " + tanh(a) + logit(0.25) + inv_logit(a) + pow(a, 2.0)\n"
      "    let d = dot(theta, w) + sum(theta)\n    let l = log_sum_exp(theta)\n    return d\noutput f\n";
  Data data;
  data.set("J", torch::tensor(int64_t{3}));
  data.set("w", torch::tensor({1.0, 2.0, -1.0}, torch::kDouble));
  ProgramModel model(parse_program(text), data);
  ASSERT_EQ(model.sites().size(), 2u);
  EXPECT_EQ(model.sites()[1].shape, (std::vector<int64_t>{3}));
  const double a = 0.3;
  SiteValues values{{"a", torch::tensor({a}, torch::kDouble)}, {"theta", torch::tensor({{0.5, -1.0, 2.0}}, torch::kDouble)}};
  SiteValues all = model.evaluate(torch::zeros({1}, torch::kDouble), values);
  const double e = std::exp(a) + std::log(2.0) + 1 / (1 + std::exp(-a)) + std::log1p(std::exp(a)) + a + 2.0 +
                   std::log1p(a * a) + std::expm1(a) + std::tanh(a) + std::log(0.25 / 0.75) + 1 / (1 + std::exp(-a)) + a * a;
  EXPECT_NEAR(all.at("e").item<double>(), e, 1e-12);
  EXPECT_NEAR(all.at("d").item<double>(), (0.5 - 2.0 - 2.0) + 1.5, 1e-12);
  EXPECT_NEAR(all.at("l").item<double>(), std::log(std::exp(0.5) + std::exp(-1.0) + std::exp(2.0)), 1e-12);
  at::Tensor lj = model.log_joint(torch::zeros({1}, torch::kDouble), values);
  EXPECT_NEAR(lj.item<double>(), normal_lp(a, 0, 1) + normal_lp(0.5, a, 2) + normal_lp(-1, a, 2) + normal_lp(2, a, 2), 1e-12);
}

TEST(ProgramModel, EightSchoolsExample) {
  ProgramModel model(load_program(VGUIDE_TEST_EXAMPLES_DIR "/models/eight_schools.qvr"),
                     load_data(VGUIDE_TEST_EXAMPLES_DIR "/models/eight_schools.json"));
  EXPECT_EQ(model.latent_names(), (std::vector<std::string>{"mu", "tau", "theta_raw"}));
  EXPECT_EQ(model.observed_names(), (std::vector<std::string>{"y"}));
  EXPECT_EQ(model.sites()[2].shape, (std::vector<int64_t>{8}));
  EXPECT_TRUE(model.sites()[2].per_row);
  const std::vector<double> y = {28, 8, -3, 7, -1, 1, 18, 12}, sigma = {15, 10, 16, 11, 9, 11, 10, 18};
  const double mu = 4.0, tau = 3.0;
  at::Tensor raw = torch::linspace(-1.0, 1.0, 8, torch::kDouble);
  SiteValues values{{"mu", torch::tensor({mu}, torch::kDouble)}, {"tau", torch::tensor({tau}, torch::kDouble)},
                    {"theta_raw", raw.unsqueeze(0)}};
  double expected = normal_lp(mu, 0, 5) + std::log(2.0 / (M_PI * 5.0 * (1 + tau * tau / 25)));
  for (int j = 0; j < 8; ++j) {
    const double r = raw[j].item<double>();
    expected += normal_lp(r, 0, 1) + normal_lp(y[j], mu + tau * r, sigma[j]);
  }
  EXPECT_NEAR(model.log_joint(torch::zeros({1}, torch::kDouble), values).item<double>(), expected, 1e-9);
}

void expect_data_error_at(const std::function<void()>& f, const std::string& suffix) {
  try {
    f();
    ADD_FAILURE() << "no error; expected " << suffix;
  } catch (const DataError& e) {
    const std::string what = e.what();
    EXPECT_GE(what.size(), suffix.size());
    EXPECT_EQ(what.substr(what.size() - std::min(what.size(), suffix.size())), suffix) << what;
  }
}

void expect_program_error_at(const std::function<void()>& f, int line, int column, const std::string& message) {
  try {
    f();
    ADD_FAILURE() << "no error; expected " << message;
  } catch (const ProgramError& e) {
    EXPECT_EQ(e.message(), message);
    EXPECT_EQ(e.line(), line);
    EXPECT_EQ(e.column(), column);
  }
}

TEST(ProgramModel, LogisticRegressionExample) {
  const Data data = load_data(VGUIDE_TEST_EXAMPLES_DIR "/models/logistic_regression.json");
  ProgramModel model(load_program(VGUIDE_TEST_EXAMPLES_DIR "/models/logistic_regression.qvr"), data);
  EXPECT_EQ(model.latent_names(), (std::vector<std::string>{"alpha", "beta"}));
  EXPECT_EQ(model.sites()[1].shape, (std::vector<int64_t>{3}));
  EXPECT_FALSE(model.sites()[1].per_row);
  EXPECT_EQ(model.num_rows(), 60);
  const at::Tensor X = data.get("X"), y = data.get("y");
  ASSERT_EQ(X.scalar_type(), at::kDouble);
  ASSERT_EQ(y.scalar_type(), at::kLong);
  const double a = -0.3;
  const std::vector<double> b = {0.7, -1.5, 0.2};
  SiteValues values{{"alpha", torch::tensor({a}, torch::kDouble)}, {"beta", torch::tensor(b, torch::kDouble).unsqueeze(0)}};
  double expected = normal_lp(a, 0, 5);
  for (double bp : b) expected += normal_lp(bp, 0, 2.5);
  for (int64_t n = 0; n < 60; ++n) {
    double eta = a;
    for (int64_t p = 0; p < 3; ++p) eta += X[n][p].item<double>() * b[p];
    expected += y[n].item<int64_t>() * eta - std::log1p(std::exp(eta));
  }
  EXPECT_NEAR(model.log_joint(torch::zeros({1}, torch::kDouble), values).item<double>(), expected, 1e-9);
  // Declared data shapes are checked.
  Data bad = data;
  bad.set("P", torch::tensor(int64_t{2}));
  expect_data_error_at([&] { ProgramModel(load_program(VGUIDE_TEST_EXAMPLES_DIR "/models/logistic_regression.qvr"), bad); },
                       "variable 'X' has shape [60, 3], but the program declares [60, 2]");
}

TEST(ProgramModel, HierarchicalExampleFitRecoversTheSlope) {
  ProgramModel model(load_program(VGUIDE_TEST_EXAMPLES_DIR "/models/hierarchical.qvr"),
                     load_data(VGUIDE_TEST_EXAMPLES_DIR "/models/hierarchical.json"));
  EXPECT_EQ(model.latent_names(), (std::vector<std::string>{"mu", "tau", "alpha_raw", "beta", "sigma"}));
  // alpha_raw has G = 4 values, not one per row: the model can be subsampled.
  EXPECT_NO_THROW(model.set_minibatch(12, at::detail::createCPUGenerator(1)));
  model.set_minibatch(48, at::detail::createCPUGenerator(1));
  PluginManager manager(9);
  manager.load("normal");
  auto guide = manager.create("normal", model, model.observed_names(), {});
  test::fit_adam(model, *guide, 16, {{2000, 0.05}, {1000, 0.005}});
  auto summary = summarize(*guide, 20000);
  for (const auto& s : summary) {
    if (s.name == "beta") {
      EXPECT_NEAR(s.mean.item<double>(), 0.8, 4 * s.sd.item<double>() + 0.05);
      EXPECT_LT(s.sd.item<double>(), 0.2);
    }
    if (s.name == "sigma") {
      EXPECT_NEAR(s.mean.item<double>(), 0.5, 4 * s.sd.item<double>() + 0.05);
    }
  }
  // The group intercepts alpha = mu + tau * alpha_raw, evaluated at the posterior means.
  SiteValues means;
  for (const auto& s : summary) means[s.name] = s.mean.to(torch::kDouble).unsqueeze(0);
  const at::Tensor alpha = model.evaluate(torch::zeros({1}, torch::kDouble), means).at("alpha")[0];
  const std::vector<double> truth = {-1.0, 0.0, 0.5, 2.0};
  for (int g = 0; g < 4; ++g) EXPECT_NEAR(alpha[g].item<double>(), truth[g], 0.5) << g;
}

TEST(ProgramModel, ObjectAnnotatedObservationChecksItsShape) {
  const char* text = "object Obs : 4\nprogram nn : Obs -> Obs\n    mu <- Normal(0.0, 1.0)\n"
                     "    observe y : Obs <- Normal(mu, 1.0)\n    return mu\noutput nn\n";
  const ProgramFile file = parse_program(text);
  // The printed program keeps the annotation (as a declared shape).
  EXPECT_NE(to_string(file.output_program()).find("observe y[Obs] ~ Normal(mu, 1.0)"), std::string::npos);
  ProgramModel model(file, parse_data(R"({"y": [0.5, 1.0, 1.5, 2.0]})", "d.json"));
  EXPECT_EQ(model.sites()[1].shape, (std::vector<int64_t>{4}));
  const double m = 0.25;
  double expected = normal_lp(m, 0, 1);
  for (double y : {0.5, 1.0, 1.5, 2.0}) expected += normal_lp(y, m, 1);
  EXPECT_NEAR(model.log_joint(torch::zeros({1}, torch::kDouble), {{"mu", torch::tensor({m}, torch::kDouble)}}).item<double>(),
              expected, 1e-10);
  expect_data_error_at([&] { ProgramModel(file, parse_data(R"({"y": [0.5, 1.0, 1.5]})", "d.json")); },
                       "d.json: variable 'y' has shape [3], but the program declares [4]");
}

TEST(ProgramModel, Ar1ExampleWithSlices) {
  const Data data = load_data(VGUIDE_TEST_EXAMPLES_DIR "/models/ar1.json");
  ProgramModel model(load_program(VGUIDE_TEST_EXAMPLES_DIR "/models/ar1.qvr"), data);
  EXPECT_EQ(model.latent_names(), (std::vector<std::string>{"alpha", "beta", "sigma"}));
  EXPECT_EQ(model.observed_names(), (std::vector<std::string>{"y_next"}));
  EXPECT_EQ(model.sites()[1].support, constraints::interval(-1.0, 1.0));
  EXPECT_EQ(model.sites()[3].shape, (std::vector<int64_t>{119}));
  const at::Tensor y = data.get("y");
  const double a = 0.4, b = 0.5, s = 0.35;
  SiteValues values{{"alpha", torch::tensor({a}, torch::kDouble)},
                    {"beta", torch::tensor({b}, torch::kDouble)},
                    {"sigma", torch::tensor({s}, torch::kDouble)}};
  double expected = normal_lp(a, 0, 2) + std::log(0.5) + std::log(2.0) + normal_lp(s, 0, 1);
  for (int64_t t = 1; t < 120; ++t) expected += normal_lp(y[t].item<double>(), a + b * y[t - 1].item<double>(), s);
  EXPECT_NEAR(model.log_joint(torch::zeros({1}, torch::kDouble), values).item<double>(), expected, 1e-9);
  // Fit through the normal plugin: the data were generated with alpha 0.5, beta 0.6, sigma 0.3.
  PluginManager manager(3);
  manager.load("normal");
  auto guide = manager.create("normal", model, model.observed_names(), {});
  test::fit_adam(model, *guide, 16, {{2000, 0.05}, {1000, 0.005}});
  const std::map<std::string, double> truth = {{"alpha", 0.5}, {"beta", 0.6}, {"sigma", 0.3}};
  for (const auto& site : summarize(*guide, 20000)) {
    SCOPED_TRACE(site.name);
    EXPECT_NEAR(site.mean.item<double>(), truth.at(site.name), 4 * site.sd.item<double>() + 0.02);
    EXPECT_LT(site.sd.item<double>(), 0.1);
  }
}

TEST(ProgramModel, SliceErrors) {
  const std::string head = "object A : 1\nprogram p : A -> A\n    data y\n";
  Data data("d.json");
  data.set("y", torch::tensor({1.0, 2.0, 3.0}, torch::kDouble));
  data.set("N", torch::tensor(int64_t{3}));
  expect_program_error_at(
      [&] { ProgramModel(parse_program(head + "    let z = y[0:2]\n    return z\noutput p\n"), data); }, 4, 14,
      "slice out of range: y[0:2], but the bounds must be integers with 1 <= lo <= hi <= 3 (the size of y)");
  expect_program_error_at(
      [&] { ProgramModel(parse_program(head + "    a <- Normal(0.0, 1.0)\n    let z = y[1:a]\n    return z\noutput p\n"), data); },
      5, 17, "a slice bound must be a single number that does not depend on a latent");
  expect_program_error_at(
      [&] {
        ProgramModel(parse_program(head + "    a <- Normal(0.0, 1.0)\n    let z = y * a\n    observe z ~ Normal(0.0, 1.0)\n"
                                          "    return z\noutput p\n"),
                     data);
      },
      6, 13, "observe site 'z' depends on a latent; only data can be observed");
  // Slices and subsampled rows do not mix.
  ProgramModel sliced(parse_program(std::string(kRegression).replace(std::string(kRegression).find("    return y"), 0,
                                                                      "    let head = x[1:2]\n")),
                      regression_data(6, 2, 0, 1, 1));
  try {
    sliced.set_minibatch(3, at::detail::createCPUGenerator(1));
    FAIL();
  } catch (const std::invalid_argument& e) {
    EXPECT_STREQ(e.what(),
                 "set_minibatch: line 12 slices an array, and slices of subsampled rows would not be contiguous; use the "
                 "full batch");
  }
}

TEST(ProgramModel, GaussianProcessPoissonExample) {
  const Data data = load_data(VGUIDE_TEST_EXAMPLES_DIR "/models/gp_poisson.json");
  ProgramModel model(load_program(VGUIDE_TEST_EXAMPLES_DIR "/models/gp_poisson.qvr"), data);
  EXPECT_EQ(model.latent_names(), (std::vector<std::string>{"rho", "alpha", "eta"}));
  EXPECT_EQ(model.sites()[2].shape, (std::vector<int64_t>{30}));
  EXPECT_TRUE(model.sites()[2].per_row);
  EXPECT_TRUE(model.sites()[3].discrete);
  const double rho = 1.3, alpha = 0.8;
  const at::Tensor eta = torch::linspace(-1.0, 1.0, 30, torch::kDouble);
  SiteValues values{{"rho", torch::tensor({rho}, torch::kDouble)},
                    {"alpha", torch::tensor({alpha}, torch::kDouble)},
                    {"eta", eta.unsqueeze(0)}};
  const SiteValues all = model.evaluate(torch::zeros({1}, torch::kDouble), values);
  const at::Tensor x = data.get("x"), L = all.at("L")[0], f = all.at("f")[0];
  ASSERT_EQ(L.sizes(), (std::vector<int64_t>{30, 30}));
  // L L^T is the kernel plus jitter, written out elementwise.
  const at::Tensor K = torch::matmul(L, L.t());
  for (int i : {0, 7, 29})
    for (int j : {0, 3, 29}) {
      const double d = x[i].item<double>() - x[j].item<double>();
      const double want = alpha * alpha * std::exp(-d * d / (2 * rho * rho)) + (i == j ? 1e-6 : 0.0);
      EXPECT_NEAR(K[i][j].item<double>(), want, 1e-9) << i << "," << j;
    }
  EXPECT_TRUE(torch::allclose(f, 1.0 + torch::matmul(L, eta)));
  // The log joint: Gamma(5, 5) and HalfNormal(1) priors, standard-Normal eta, Poisson(exp f).
  const at::Tensor k = data.get("k");
  double expected = 5 * std::log(5.0) - std::lgamma(5.0) + 4 * std::log(rho) - 5 * rho + std::log(2.0) + normal_lp(alpha, 0, 1);
  for (int i = 0; i < 30; ++i) {
    const double fi = f[i].item<double>(), ki = static_cast<double>(k[i].item<int64_t>());
    expected += normal_lp(eta[i].item<double>(), 0, 1) + ki * fi - std::exp(fi) - std::lgamma(ki + 1);
  }
  EXPECT_NEAR(model.log_joint(torch::zeros({1}, torch::kDouble), values).item<double>(), expected, 1e-8);
}

const char* kHierarchical =
    "object A : 1\nprogram hier : A -> A\n    data group\n    mu <- Normal(0.0, 5.0)\n    alpha[G] <- Normal(mu, 1.0)\n"
    "    observe y ~ Normal(alpha[group], 0.5)\n    return y\noutput hier\n";

Data hierarchical_data(const std::vector<int64_t>& group) {
  Data data("h.json");
  data.set("G", torch::tensor(int64_t{3}));
  data.set("group", torch::tensor(group, torch::kLong));
  data.set("y", torch::tensor({0.1, 1.2, -0.3, 0.9, 0.0}, torch::kDouble));
  return data;
}

TEST(ProgramModel, IntegerIndexingIsOneBased) {
  const std::vector<int64_t> group = {1, 3, 2, 3, 1};
  ProgramModel model(parse_program(kHierarchical), hierarchical_data(group));
  EXPECT_EQ(model.sites()[1].shape, (std::vector<int64_t>{3}));
  const std::vector<double> alpha = {0.0, -0.5, 1.0}, y = {0.1, 1.2, -0.3, 0.9, 0.0};
  SiteValues values{{"mu", torch::tensor({0.2}, torch::kDouble)}, {"alpha", torch::tensor(alpha, torch::kDouble).unsqueeze(0)}};
  double expected = normal_lp(0.2, 0, 5);
  for (double a : alpha) expected += normal_lp(a, 0.2, 1);
  for (size_t i = 0; i < y.size(); ++i) expected += normal_lp(y[i], alpha[group[i] - 1], 0.5);
  EXPECT_NEAR(model.log_joint(torch::zeros({1}, torch::kDouble), values).item<double>(), expected, 1e-10);
  // Minibatches subsample the index with the rows.
  model.set_minibatch(2, at::detail::createCPUGenerator(4));
  const at::Tensor x = torch::zeros({1}, torch::kDouble);
  double sum = 0;
  constexpr int M = 3000;
  std::vector<double> draws;
  for (int i = 0; i < M; ++i) draws.push_back(model.log_joint(x, values).item<double>());
  for (double d : draws) sum += d;
  double var = 0;
  for (double d : draws) var += (d - sum / M) * (d - sum / M);
  EXPECT_NEAR(sum / M, expected, 4 * std::sqrt(var / (M - 1) / M));
}

TEST(ProgramModel, IndexOutOfRangeIsLocated) {
  expect_program_error_at([] { ProgramModel(parse_program(kHierarchical, "h.qvr"), hierarchical_data({1, 4, 2, 3, 1})); },
                          6, 30, "index out of range: group[2] is 4, but must be an integer in 1..3 (the size of alpha)");
  expect_program_error_at([] { ProgramModel(parse_program(kHierarchical, "h.qvr"), hierarchical_data({1, 0, 2, 3, 1})); },
                          6, 30, "index out of range: group[2] is 0, but must be an integer in 1..3 (the size of alpha)");
}

// ---- data ------------------------------------------------------------------------------

TEST(Data, CmdStanJsonKeepsIntegersInteger) {
  Data data = parse_data(R"({"N": 3, "y": [1, 2.5, -3], "k": [[1, 2], [3, 4]], "e": [], "z": ["NaN", "-Inf"]})", "d.json");
  EXPECT_EQ(data.get("N").dim(), 0);
  EXPECT_EQ(data.get("N").scalar_type(), at::kLong);
  EXPECT_EQ(data.get("N").item<int64_t>(), 3);
  EXPECT_EQ(data.get("y").scalar_type(), at::kDouble);
  EXPECT_DOUBLE_EQ(data.get("y")[1].item<double>(), 2.5);
  EXPECT_EQ(data.get("k").sizes(), (std::vector<int64_t>{2, 2}));
  EXPECT_EQ(data.get("k").scalar_type(), at::kLong);
  EXPECT_EQ(data.get("k")[1][0].item<int64_t>(), 3);
  EXPECT_EQ(data.get("e").sizes(), (std::vector<int64_t>{0}));
  EXPECT_TRUE(std::isnan(data.get("z")[0].item<double>()));
  EXPECT_EQ(data.get("z")[1].item<double>(), -INFINITY);
  EXPECT_TRUE(data.is_integer("k"));
  EXPECT_FALSE(data.is_integer("y"));
}

void expect_data_error(const std::function<void()>& f, const std::string& message) {
  try {
    f();
    ADD_FAILURE() << "no error; expected " << message;
  } catch (const DataError& e) {
    EXPECT_EQ(std::string(e.what()), message);
  }
}

TEST(Data, EachBadInputHasItsMessage) {
  expect_data_error([] { parse_data(R"({"y": [[1, 2], [3]]})", "d.json"); },
                    "d.json: variable 'y' is a ragged array: y[2] has shape [1], but y[1] has shape [2]");
  expect_data_error([] { parse_data(R"({"y": [[1, 2], 3]})", "d.json"); },
                    "d.json: variable 'y' is a ragged array: y[2] has a number, but y[1] has shape [2]");
  expect_data_error([] { parse_data(R"({"y": [1, "a", 3]})", "d.json"); },
                    "d.json: variable 'y': y[2] is the string \"a\", but must be a number");
  expect_data_error([] { parse_data(R"({"y": [[1, true]]})", "d.json"); },
                    "d.json: variable 'y': y[1, 2] is a boolean, but must be a number");
  expect_data_error([] { parse_data(R"({"y": null})", "d.json"); }, "d.json: variable 'y': y is null, but must be a number");
  expect_data_error([] { parse_data(R"({"y": {"a": 1}})", "d.json"); },
                    "d.json: variable 'y': y is an object, but must be a number");
  expect_data_error([] { parse_data(R"([1, 2])", "d.json"); },
                    "d.json: expected a JSON object of variable names to values at the top level, got an array");
  expect_data_error([] { parse_data("{\"y\": " + std::string(40, '[') + std::string(40, ']') + "}", "d.json"); },
                    "d.json: variable 'y' is nested too deeply (more than 32 dimensions)");
}

TEST(Data, InvalidJsonIsOneLine) {
  try {
    parse_data("{\"y\": [1, 2,]}", "d.json");
    FAIL();
  } catch (const DataError& e) {
    const std::string what = e.what();
    EXPECT_EQ(what.rfind("d.json: invalid JSON: parse error at line 1, column 13", 0), 0u) << what;
    EXPECT_EQ(what.find('\n'), std::string::npos);
  }
}

TEST(Data, ModelLevelDataErrors) {
  const std::string head = "object A : 1\nprogram p : A -> A\n";
  expect_data_error(
      [&] { ProgramModel(parse_program(head + "    data sigma\n    return sigma\noutput p\n"), parse_data("{}", "d.json")); },
      "d.json: missing variable 'sigma' (declared by 'data sigma' at line 3)");
  expect_data_error(
      [&] {
        ProgramModel(parse_program(head + "    theta[J] <- Normal(0.0, 1.0)\n    return theta\noutput p\n"),
                     parse_data("{}", "d.json"));
      },
      "d.json: missing variable 'J' (a size of 'theta' at line 3)");
  expect_data_error(
      [&] {
        ProgramModel(parse_program(head + "    theta[J] <- Normal(0.0, 1.0)\n    return theta\noutput p\n"),
                     parse_data(R"({"J": 2.5})", "d.json"));
      },
      "d.json: variable 'J' must be a positive integer (it is a size of 'theta' at line 3)");
  expect_data_error(
      [&] { ProgramModel(parse_program(kRegression), parse_data(R"({"x": [1, 2, 3], "y": [1, 2, 3, 4]})", "d.json")); },
      "d.json: variable 'y' has 4 rows, but 'x' has 3 (observed arrays must agree in their number of rows N)");
  expect_data_error(
      [&] {
        ProgramModel(parse_program(head + "    r <- Gamma(2.0, 1.0)\n    observe k ~ Poisson(r)\n    return k\noutput p\n"),
                     parse_data(R"({"k": [0, 3, -1, 2]})", "d.json"));
      },
      "d.json: variable 'k': k[3] = -1 is outside the support of Poisson (integers 0, 1, 2, ...)");
  expect_data_error(
      [&] {
        ProgramModel(parse_program(head + "    observe b ~ Bernoulli(0.3)\n    return b\noutput p\n"),
                     parse_data(R"({"b": [[0, 1], [1, 1.5]]})", "d.json"));
      },
      "d.json: variable 'b': b[2, 2] = 1.5 is outside the support of Bernoulli (integers 0, 1)");
}

TEST(ProgramModel, ProgramErrorsFoundBeforeAnyFit) {
  const std::string head = "object A : 1\nprogram p : A -> A\n";
  expect_program_error_at(
      [&] { ProgramModel(parse_program(head + "    observe y ~ Normal(0.0, 1.0)\n    return y\noutput p\n"), Data("d.json")); },
      3, 13, "observe site 'y' has no data (expected a variable 'y' in d.json)");
  expect_program_error_at(
      [&] { ProgramModel(parse_program(head + "    mu <- Normal(0.0, -1.0)\n    return mu\noutput p\n"), Data("d.json")); },
      3, 11, "Normal: scale is -1, but must be positive!");
  expect_program_error_at(
      [&] {
        ProgramModel(parse_program(head + "    a <- Exponential(1.0)\n    u <- Uniform(0.0, a)\n    return u\noutput p\n"),
                     Data("d.json"));
      },
      4, 10, "site 'u' cannot be a latent: the support of Uniform depends on arguments that are not constants");
  expect_program_error_at(
      [&] { ProgramModel(parse_program(head + "    t[100000, 100000] <- Normal(0.0, 1.0)\n    return t\noutput p\n"), Data()); },
      3, 5, "'t' is declared [100000, 100000]: more than 100000000 elements");
  Data data("d.json");
  data.set("w", torch::ones({3}, torch::kDouble));
  expect_program_error_at(
      [&] {
        ProgramModel(parse_program(head + "    data w\n    theta[2] <- Normal(w, 1.0)\n    return theta\noutput p\n"), data);
      },
      4, 5, "shape mismatch: 'theta' is declared [2], but its arguments have shape [3]");
}

TEST(ProgramModel, DiscreteLatentIsAnErrorNamingTheSite) {
  ProgramModel model(parse_program("object A : 1\nprogram p : A -> A\n    k <- Poisson(3.0)\n    return k\noutput p\n"),
                     Data());
  ASSERT_EQ(model.sites().size(), 1u);
  EXPECT_TRUE(model.sites()[0].discrete);
  try {
    LatentRegistry::from_model(model, model.observed_names());
    FAIL();
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("'k'"), std::string::npos) << e.what();
  }
}

// ---- minibatches ---------------------------------------------------------------------

TEST(Minibatch, ScaledEstimateIsUnbiased) {
  Data data = regression_data(20, 5, 1.0, 2.0, 0.5);
  ProgramModel model(parse_program(kRegression), data);
  SiteValues values{{"sigma", torch::tensor({0.6, 1.1}, torch::kDouble)},
                    {"beta_0", torch::tensor({0.8, 0.0}, torch::kDouble)},
                    {"beta_1", torch::tensor({2.1, 1.0}, torch::kDouble)}};
  const at::Tensor x = torch::zeros({2}, torch::kDouble);
  const at::Tensor full = model.log_joint(x, values);
  model.set_minibatch(5, at::detail::createCPUGenerator(11));
  EXPECT_EQ(model.batch_size(), 5);
  constexpr int M = 4000;
  std::vector<at::Tensor> estimates;
  for (int i = 0; i < M; ++i) estimates.push_back(model.log_joint(x, values));
  const at::Tensor all = torch::stack(estimates);  // (M, 2)
  const at::Tensor mean = all.mean(0), se = all.std(0) / std::sqrt(double(M));
  for (int k = 0; k < 2; ++k) {
    EXPECT_GT(se[k].item<double>(), 0.0);  // the batches differ
    EXPECT_NEAR(mean[k].item<double>(), full[k].item<double>(), 4 * se[k].item<double>()) << k;
  }
  // B == N restores the exact value.
  model.set_minibatch(20, at::detail::createCPUGenerator(1));
  EXPECT_TRUE(torch::allclose(model.log_joint(x, values), full));
}

TEST(Minibatch, OneBatchIsTheScaledSumOfItsRows) {
  // With a single observed row-site, every minibatch value is prior + (N/B) * the
  // likelihood of B distinct rows: check against all rows' terms.
  const char* text = "object A : 1\nprogram p : A -> A\n    mu <- Normal(0.0, 1.0)\n    observe y ~ Normal(mu, 1.0)\n"
                     "    return y\noutput p\n";
  Data data;
  data.set("y", torch::tensor({0.0, 1.0, 2.0, 3.0}, torch::kDouble));
  ProgramModel model(parse_program(text), data);
  model.set_minibatch(2, at::detail::createCPUGenerator(3));
  SiteValues values{{"mu", torch::tensor({0.5}, torch::kDouble)}};
  std::vector<double> terms;
  for (double y : {0.0, 1.0, 2.0, 3.0}) terms.push_back(normal_lp(y, 0.5, 1.0));
  for (int trial = 0; trial < 20; ++trial) {
    const double v = model.log_joint(torch::zeros({1}, torch::kDouble), values).item<double>() - normal_lp(0.5, 0, 1);
    bool matched = false;
    for (int i = 0; i < 4; ++i)
      for (int j = i + 1; j < 4; ++j) matched = matched || std::abs(v - 2.0 * (terms[i] + terms[j])) < 1e-10;
    EXPECT_TRUE(matched) << v;
  }
}

TEST(Minibatch, BadBatchSizesAndPerRowLatentsAreErrors) {
  ProgramModel model(parse_program(kRegression), regression_data(10, 2, 0, 1, 1));
  EXPECT_THROW(model.set_minibatch(0, at::detail::createCPUGenerator(1)), std::invalid_argument);
  EXPECT_THROW(model.set_minibatch(11, at::detail::createCPUGenerator(1)), std::invalid_argument);
  const char* text = "object A : 1\nprogram p : A -> A\n    x <- Normal(0.0, 1.0)\n    z <- Normal(x, 1.0)\n"
                     "    observe y ~ Normal(z, 1.0)\n    return y\noutput p\n";
  ProgramModel local(parse_program(text), regression_data(10, 2, 0, 1, 1));
  ASSERT_EQ(local.sites()[1].name, "z");
  EXPECT_TRUE(local.sites()[1].per_row);
  EXPECT_EQ(local.sites()[1].shape, (std::vector<int64_t>{10}));
  try {
    local.set_minibatch(4, at::detail::createCPUGenerator(1));
    FAIL();
  } catch (const std::invalid_argument& e) {
    EXPECT_STREQ(e.what(),
                 "set_minibatch: latent 'z' has one value per data row, so it cannot be subsampled (the guide draws "
                 "all 10 rows of it while the log joint would see only the batch); use the full batch");
  }
  local.set_minibatch(10, at::detail::createCPUGenerator(1));  // the full batch is fine
}

// ---- fit ---------------------------------------------------------------------------------

TEST(ProgramModel, FitRecoversTheRegressionParameters) {
  const double b0 = 1.5, b1 = -2.0, sigma = 0.7;
  ProgramModel model(parse_program(kRegression), regression_data(200, 17, b0, b1, sigma));
  PluginManager manager(5);
  manager.load("normal");
  auto guide = manager.create("normal", model, model.observed_names(), {});
  test::fit_adam(model, *guide, 16, {{1500, 0.05}, {1500, 0.005}});
  auto summary = summarize(*guide, 20000);
  ASSERT_EQ(summary.size(), 3u);
  const std::map<std::string, double> truth = {{"sigma", sigma}, {"beta_0", b0}, {"beta_1", b1}};
  for (const auto& s : summary) {
    SCOPED_TRACE(s.name);
    const double mean = s.mean.item<double>(), sd = s.sd.item<double>();
    EXPECT_LT(sd, 0.1);
    EXPECT_GT(sd, 0.01);
    EXPECT_NEAR(mean, truth.at(s.name), 4 * sd);
  }
}

}  // namespace
}  // namespace vguide::model
