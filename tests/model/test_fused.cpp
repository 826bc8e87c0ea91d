// The fast paths of ProgramModel::log_joint against the straightforward ones:
// the fused log joint (one autograd node) against the LibTorch-op reference on
// every example program and on randomly generated programs, values and gradients;
// second derivatives through the fused node; the reference's matrix-product `dot`
// against hand formulas; the O(B) minibatch rows (uniform subsets, the exact rows
// gathered, an unbiased estimate).
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <map>
#include <random>
#include <set>
#include <sstream>

#include "model_paths.hpp"
#include "random_programs.hpp"
#include "vguide/model/data.hpp"
#include "vguide/model/program.hpp"
#include "vguide/model/program_model.hpp"
#include "vguide/registry.hpp"

namespace vguide::model {
namespace {

using vguide::test::ProgramGenerator;

// ---- helpers ---------------------------------------------------------------------

ProgramModel example(const std::string& name) {
  return ProgramModel(load_program(std::string(VGUIDE_TEST_EXAMPLES_DIR) + "/models/" + name + ".qvr"),
                      load_data(std::string(VGUIDE_TEST_EXAMPLES_DIR) + "/models/" + name + ".json"));
}

std::string path_of(const at::Tensor& lj) { return lj.grad_fn() ? lj.grad_fn()->name() : "(no graph)"; }

struct Evaluation {
  at::Tensor log_joint;  // (S,)
  at::Tensor grad;       // d sum_s w_s log_joint_s / dz, (S, D)
  std::string node;      // the autograd node that produced the log joint
};

// The log joint at the constrained image of the unconstrained points z (S, D), and
// its gradient with respect to z, weighted differently per particle so that a mix-up
// of particles would show.
Evaluation evaluate(ProgramModel& model, Evaluator evaluator, const at::Tensor& z) {
  model.set_evaluator(evaluator);
  const auto registry = LatentRegistry::from_model(model, model.observed_names());
  const at::Tensor zz = z.detach().clone().requires_grad_(true);
  const SiteValues values = registry.constrain(zz).first;
  const int64_t S = z.size(0);
  const at::Tensor lj = model.log_joint(torch::zeros({S, 0}, z.options()), values);
  const at::Tensor w = torch::arange(1, S + 1, z.options());
  // A log joint with no path to z (a Uniform latent alone) has a zero gradient.
  const at::Tensor grad =
      lj.requires_grad() ? torch::autograd::grad({(lj * w).sum()}, {zz})[0] : torch::zeros_like(z);
  model.set_evaluator(Evaluator::automatic);
  return {lj.detach(), grad, path_of(lj)};
}

// |a - b| <= tol * (1 + |b|), elementwise, with the worst element in the message.
::testing::AssertionResult close(const at::Tensor& a, const at::Tensor& b, double tol) {
  if (a.sizes() != b.sizes())
    return ::testing::AssertionFailure() << "shapes " << a.sizes() << " and " << b.sizes();
  const at::Tensor x = a.to(torch::kDouble), y = b.to(torch::kDouble);
  const at::Tensor err = (x - y).abs() / (1 + y.abs());
  if (!torch::isfinite(x).all().item<bool>() || !torch::isfinite(y).all().item<bool>())
    return ::testing::AssertionFailure() << "non-finite values: " << x << " vs " << y;
  const double worst = err.max().item<double>();
  if (worst <= tol) return ::testing::AssertionSuccess();
  const int64_t i = err.reshape({-1}).argmax().item<int64_t>();
  return ::testing::AssertionFailure() << "relative error " << worst << " > " << tol << " at element " << i << ": "
                                       << x.reshape({-1})[i].item<double>() << " vs " << y.reshape({-1})[i].item<double>();
}

void expect_same_paths(ProgramModel& model, int64_t S, uint64_t seed, at::ScalarType dtype, double tol) {
  const auto registry = LatentRegistry::from_model(model, model.observed_names());
  auto gen = at::detail::createCPUGenerator(seed);
  const at::Tensor z = 0.7 * torch::randn({S, registry.total_unconstrained_dim()}, gen, torch::kDouble).to(dtype);
  const Evaluation ref = evaluate(model, Evaluator::reference, z);
  const Evaluation fused = evaluate(model, Evaluator::fused, z);
  EXPECT_EQ(fused.node, "FusedLogJointBackward");
  EXPECT_NE(ref.node, "FusedLogJointBackward");
  EXPECT_EQ(fused.log_joint.scalar_type(), dtype);
  EXPECT_TRUE(close(fused.log_joint, ref.log_joint, tol)) << "log joint, S = " << S;
  EXPECT_TRUE(close(fused.grad, ref.grad, tol)) << "gradient, S = " << S;
}

// ---- the example programs --------------------------------------------------------------

class FusedExample : public ::testing::TestWithParam<std::string> {};

TEST_P(FusedExample, SameLogJointAndGradientsAsTheReference) {
  ProgramModel model = example(GetParam());
  ASSERT_EQ(model.fusion_blocker(), "");
  for (int64_t S : {1, 4}) {
    SCOPED_TRACE("S = " + std::to_string(S));
    expect_same_paths(model, S, 10 + static_cast<uint64_t>(S), torch::kDouble, 1e-10);
    // float32 in and out: the fused path computes in double, so it is the more
    // accurate of the two; they agree to float rounding.
    expect_same_paths(model, S, 20 + static_cast<uint64_t>(S), torch::kFloat, 2e-4);
  }
}

INSTANTIATE_TEST_SUITE_P(Examples, FusedExample,
                         ::testing::Values("eight_schools", "hierarchical", "logistic_regression", "ar1"));

TEST(Fused, GaussianProcessIsNotFusedAndSaysWhy) {
  ProgramModel model = example("gp_poisson");
  EXPECT_EQ(model.fusion_blocker(), "function cholesky of a latent value");
  try {
    model.set_evaluator(Evaluator::fused);
    FAIL() << "expected std::invalid_argument";
  } catch (const std::invalid_argument& e) {
    EXPECT_STREQ(e.what(), "set_evaluator: program 'gp_poisson' cannot be fused: function cholesky of a latent value");
  }
  EXPECT_EQ(model.evaluator(), Evaluator::automatic);
  // Automatic evaluation takes the reference path.
  const auto registry = LatentRegistry::from_model(model, model.observed_names());
  const at::Tensor z = torch::zeros({1, registry.total_unconstrained_dim()}).requires_grad_(true);
  EXPECT_NE(path_of(model.log_joint(torch::zeros({1, 0}), registry.constrain(z).first)), "FusedLogJointBackward");
}

TEST(Fused, AutomaticChoosesByStepSize) {
  ProgramModel model = example("eight_schools");
  const auto registry = LatentRegistry::from_model(model, model.observed_names());
  const auto path = [&](int64_t S) {
    const at::Tensor z = torch::zeros({S, registry.total_unconstrained_dim()}).requires_grad_(true);
    return path_of(model.log_joint(torch::zeros({S, 0}), registry.constrain(z).first));
  };
  EXPECT_EQ(path(1), "FusedLogJointBackward");
  EXPECT_EQ(path(16), "FusedLogJointBackward");
  EXPECT_NE(path(kFusedAutoWork), "FusedLogJointBackward");  // far beyond the size rule
  model.set_evaluator(Evaluator::fused);
  EXPECT_EQ(path(kFusedAutoWork), "FusedLogJointBackward");
  model.set_evaluator(Evaluator::reference);
  EXPECT_NE(path(1), "FusedLogJointBackward");
}

TEST(Fused, LargeDataAreLeftToLibTorchKernels) {
  // 1000 rows x 20 predictors: more elements than the tape takes.
  auto gen = at::detail::createCPUGenerator(3);
  Data data("big.json");
  data.set("N", torch::tensor(int64_t{1000}));
  data.set("P", torch::tensor(int64_t{20}));
  data.set("X", torch::randn({1000, 20}, gen, torch::kDouble));
  data.set("y", (torch::rand({1000}, gen, torch::kDouble) < 0.5).to(torch::kLong));
  ProgramModel model(load_program(VGUIDE_TEST_EXAMPLES_DIR "/models/logistic_regression.qvr"), data);
  EXPECT_EQ(model.fusion_blocker(), "'X' has more than 16384 elements");
}

TEST(Fused, NoGraphWithoutGradientsAndTheSameValue) {
  ProgramModel model = example("eight_schools");
  const auto registry = LatentRegistry::from_model(model, model.observed_names());
  auto gen = at::detail::createCPUGenerator(5);
  const SiteValues values = registry.constrain(torch::randn({3, registry.total_unconstrained_dim()}, gen)).first;
  model.set_evaluator(Evaluator::fused);
  const at::Tensor a = model.log_joint(torch::zeros({3, 0}), values);
  EXPECT_FALSE(a.requires_grad());
  model.set_evaluator(Evaluator::reference);
  EXPECT_TRUE(close(a, model.log_joint(torch::zeros({3, 0}), values), 1e-5));
}

TEST(Fused, ChecksItsInputsLikeTheReference) {
  ProgramModel model = example("eight_schools");
  model.set_evaluator(Evaluator::fused);
  SiteValues values{{"mu", torch::zeros({2})}, {"tau", torch::ones({2})}};
  try {
    model.log_joint(torch::zeros({2, 0}), values);
    FAIL();
  } catch (const std::invalid_argument& e) {
    EXPECT_STREQ(e.what(), "log_joint: no value for latent site 'theta_raw'");
  }
  values["theta_raw"] = torch::zeros({2, 7});
  try {
    model.log_joint(torch::zeros({2, 0}), values);
    FAIL();
  } catch (const std::invalid_argument& e) {
    EXPECT_STREQ(e.what(), "log_joint: latent site 'theta_raw' has shape [2, 7], expected [2, 8]");
  }
}

TEST(Fused, OutsideTheSupportIsMinusInfinityAsInTheReference) {
  ProgramModel model = example("eight_schools");
  SiteValues values{{"mu", torch::zeros({2}, torch::kDouble)},
                    {"tau", torch::tensor({-1.0, 2.0}, torch::kDouble)},
                    {"theta_raw", torch::zeros({2, 8}, torch::kDouble)}};
  model.set_evaluator(Evaluator::fused);
  const at::Tensor f = model.log_joint(torch::zeros({2, 0}, torch::kDouble), values);
  model.set_evaluator(Evaluator::reference);
  const at::Tensor r = model.log_joint(torch::zeros({2, 0}, torch::kDouble), values);
  EXPECT_EQ(f[0].item<double>(), -std::numeric_limits<double>::infinity());
  EXPECT_EQ(r[0].item<double>(), -std::numeric_limits<double>::infinity());
  EXPECT_NEAR(f[1].item<double>(), r[1].item<double>(), 1e-10);
}

TEST(Fused, SecondDerivativesAreExact) {
  // What the Laplace guide does after its fit: the Hessian of the log joint, by
  // differentiating a gradient built with create_graph.
  for (const std::string name : {"eight_schools", "hierarchical"}) {
    SCOPED_TRACE(name);
    ProgramModel model = example(name);
    const auto registry = LatentRegistry::from_model(model, model.observed_names());
    auto gen = at::detail::createCPUGenerator(8);
    const at::Tensor z0 = 0.5 * torch::randn({registry.total_unconstrained_dim()}, gen, torch::kDouble);
    std::map<Evaluator, at::Tensor> hessian;
    for (Evaluator ev : {Evaluator::reference, Evaluator::fused}) {
      model.set_evaluator(ev);
      const at::Tensor z = z0.clone().requires_grad_(true);
      const at::Tensor lj = model.log_joint(torch::zeros({1, 0}, torch::kDouble), registry.constrain(z.unsqueeze(0)).first);
      const at::Tensor g = torch::autograd::grad({lj.sum()}, {z}, {}, /*retain_graph=*/true, /*create_graph=*/true)[0];
      std::vector<at::Tensor> rows;
      for (int64_t i = 0; i < z.size(0); ++i)
        rows.push_back(torch::autograd::grad({g[i]}, {z}, {}, /*retain_graph=*/true)[0]);
      hessian[ev] = torch::stack(rows);
    }
    EXPECT_GT(hessian[Evaluator::reference].abs().sum().item<double>(), 0.0);
    EXPECT_TRUE(close(hessian[Evaluator::fused], hessian[Evaluator::reference], 1e-9));
  }
}

// ---- randomly generated programs (random_programs.hpp) -------------------------------

TEST(FusedRandomPrograms, SameLogJointAndGradientsAsTheReference) {
  ProgramGenerator generator(20241126);
  constexpr int kPrograms = 300;
  int compared = 0;
  for (int i = 0; i < kPrograms; ++i) {
    auto [text, data] = generator.next(i);
    SCOPED_TRACE(text);
    std::unique_ptr<ProgramModel> built;
    try {
      built = std::make_unique<ProgramModel>(parse_program(text, "random.qvr"), data);
    } catch (const std::exception& e) {
      FAIL() << "the generator wrote a bad program: " << e.what();
    }
    ProgramModel& model = *built;
    ASSERT_EQ(model.fusion_blocker(), "");
    const auto registry = LatentRegistry::from_model(model, model.observed_names());
    auto gen = at::detail::createCPUGenerator(static_cast<uint64_t>(i));
    const int64_t S = 1 + i % 3;
    const at::Tensor z = 0.7 * torch::randn({S, registry.total_unconstrained_dim()}, gen, torch::kDouble);
    const Evaluation ref = evaluate(model, Evaluator::reference, z);
    const Evaluation fused = evaluate(model, Evaluator::fused, z);
    ASSERT_EQ(fused.node, "FusedLogJointBackward");
    if (!torch::isfinite(ref.log_joint).all().item<bool>() || !torch::isfinite(ref.grad).all().item<bool>()) {
      // Extreme draws: then both must be non-finite in the same places.
      EXPECT_TRUE(torch::equal(torch::isfinite(fused.log_joint), torch::isfinite(ref.log_joint)));
      continue;
    }
    ++compared;
    EXPECT_TRUE(close(fused.log_joint, ref.log_joint, 1e-9)) << "log joint";
    EXPECT_TRUE(close(fused.grad, ref.grad, 1e-8)) << "gradient";
  }
  // The generator keeps values moderate: nearly every program is compared.
  EXPECT_GE(compared, kPrograms * 9 / 10);
}

// ---- the reference path's matrix products -----------------------------------------------

TEST(ReferencePath, DotOfDataAndLatentVectorsIsTheMatrixProduct) {
  // Logistic regression written out by hand, for S = 3 particles (one matrix product
  // of the (S, P) draws with X^T) and B = 5 rows of a minibatch.
  auto gen = at::detail::createCPUGenerator(4);
  const int64_t N = 40, P = 4, S = 3;
  Data data("lr.json");
  data.set("N", torch::tensor(N));
  data.set("P", torch::tensor(P));
  const at::Tensor X = torch::randn({N, P}, gen, torch::kDouble);
  const at::Tensor y = (torch::rand({N}, gen, torch::kDouble) < 0.4).to(torch::kLong);
  data.set("X", X);
  data.set("y", y);
  ProgramModel model(load_program(VGUIDE_TEST_EXAMPLES_DIR "/models/logistic_regression.qvr"), data);
  model.set_evaluator(Evaluator::reference);
  const at::Tensor alpha = torch::randn({S}, gen, torch::kDouble), beta = torch::randn({S, P}, gen, torch::kDouble);
  const SiteValues values{{"alpha", alpha}, {"beta", beta}};
  const auto expected = [&](int64_t s, const std::vector<int64_t>& rows) {
    const auto lp = [](double v, double scale) { return -0.5 * v * v / (scale * scale) - std::log(scale) - 0.5 * std::log(2 * M_PI); };
    double total = lp(alpha[s].item<double>(), 5.0);
    for (int64_t p = 0; p < P; ++p) total += lp(beta[s][p].item<double>(), 2.5);
    double like = 0;
    for (int64_t n : rows) {
      double eta = alpha[s].item<double>();
      for (int64_t p = 0; p < P; ++p) eta += X[n][p].item<double>() * beta[s][p].item<double>();
      like += static_cast<double>(y[n].item<int64_t>()) * eta - std::log1p(std::exp(eta));
    }
    return total + like * static_cast<double>(N) / static_cast<double>(rows.size());
  };
  std::vector<int64_t> all(N);
  for (int64_t n = 0; n < N; ++n) all[static_cast<size_t>(n)] = n;
  const at::Tensor full = model.log_joint(torch::zeros({S, 0}, torch::kDouble), values);
  for (int64_t s = 0; s < S; ++s) EXPECT_NEAR(full[s].item<double>(), expected(s, all), 1e-9) << s;

  // A minibatch gathers exactly the rows sample_rows draws from the same stream.
  model.set_minibatch(5, at::detail::createCPUGenerator(99));
  const at::Tensor batch = model.log_joint(torch::zeros({S, 0}, torch::kDouble), values);
  at::Generator same = at::detail::createCPUGenerator(99);
  const at::Tensor rows = sample_rows(N, 5, same);
  const std::vector<int64_t> r(rows.data_ptr<int64_t>(), rows.data_ptr<int64_t>() + rows.numel());
  for (int64_t s = 0; s < S; ++s) EXPECT_NEAR(batch[s].item<double>(), expected(s, r), 1e-9) << s;
}

TEST(ReferencePath, MatrixTimesLatentVectorPerParticle) {
  // gp_poisson's dot(L, eta) with L and eta both per particle (one batched product):
  // each particle's log joint equals its own single-particle evaluation, which the
  // example test pins against a hand formula.
  ProgramModel model = example("gp_poisson");
  const auto registry = LatentRegistry::from_model(model, model.observed_names());
  auto gen = at::detail::createCPUGenerator(6);
  const at::Tensor z = 0.5 * torch::randn({3, registry.total_unconstrained_dim()}, gen, torch::kDouble);
  const SiteValues values = registry.constrain(z).first;
  const at::Tensor batch = model.log_joint(torch::zeros({3, 0}, torch::kDouble), values);
  for (int64_t s = 0; s < 3; ++s) {
    SiteValues one;
    for (const auto& [name, v] : values) one[name] = v.narrow(0, s, 1);
    EXPECT_NEAR(batch[s].item<double>(), model.log_joint(torch::zeros({1, 0}, torch::kDouble), one).item<double>(), 1e-9);
  }
}

TEST(ReferencePath, DataThatLeaveTheSupportInFloat32KeepTheSupportMask) {
  // 1e-50 is positive in double but 0 in float32: the float32 evaluation must say
  // -inf (outside LogNormal's support), not NaN from an unmasked log(0).
  const char* text = "object A : 1\nprogram p : A -> A\n    mu <- Normal(0.0, 1.0)\n"
                     "    observe y ~ LogNormal(mu, 1.0)\n    return y\noutput p\n";
  Data data;
  data.set("y", torch::tensor({1e-50, 1.0}, torch::kDouble));
  ProgramModel model(parse_program(text), data);
  model.set_evaluator(Evaluator::reference);
  const at::Tensor lj = model.log_joint(torch::zeros({1, 0}), {{"mu", torch::zeros({1})}});
  EXPECT_EQ(lj.item<float>(), -std::numeric_limits<float>::infinity());
  // In double the row is in the support and the value finite.
  EXPECT_TRUE(std::isfinite(model.log_joint(torch::zeros({1, 0}, torch::kDouble), {{"mu", torch::zeros({1}, torch::kDouble)}}).item<double>()));
}

// ---- minibatch rows -------------------------------------------------------------------

TEST(SampleRows, DistinctAscendingAndUniformOverSubsets) {
  at::Generator gen = at::detail::createCPUGenerator(12);
  // N = 5, B = 2: ten subsets, each with probability 1/10.
  constexpr int M = 20000;
  std::map<std::pair<int64_t, int64_t>, int> count;
  for (int i = 0; i < M; ++i) {
    const at::Tensor r = sample_rows(5, 2, gen);
    ASSERT_EQ(r.scalar_type(), at::kLong);
    ASSERT_EQ(r.numel(), 2);
    const int64_t a = r[0].item<int64_t>(), b = r[1].item<int64_t>();
    ASSERT_LT(a, b);  // distinct and ascending
    ASSERT_GE(a, 0);
    ASSERT_LT(b, 5);
    ++count[{a, b}];
  }
  EXPECT_EQ(count.size(), 10u);
  double chi2 = 0;
  for (const auto& [pair, c] : count) chi2 += std::pow(c - M / 10.0, 2) / (M / 10.0);
  EXPECT_LT(chi2, 27.9);  // the 0.999 quantile of chi-square with 9 degrees of freedom

  // Large N, small B: B distinct rows, each row equally likely.
  std::vector<int> hits(1000000 / 100000, 0);
  for (int i = 0; i < 200; ++i) {
    const at::Tensor r = sample_rows(1000000, 50, gen);
    const std::set<int64_t> distinct(r.data_ptr<int64_t>(), r.data_ptr<int64_t>() + 50);
    ASSERT_EQ(distinct.size(), 50u);
    ASSERT_TRUE(std::is_sorted(r.data_ptr<int64_t>(), r.data_ptr<int64_t>() + 50));
    for (int64_t v : distinct) ++hits[static_cast<size_t>(v / 100000)];
  }
  for (int h : hits) EXPECT_NEAR(h, 1000, 5 * std::sqrt(1000.0));  // 10000 rows over 10 deciles
  EXPECT_EQ(sample_rows(7, 7, gen).sum().item<int64_t>(), 21);  // B = N: every row
  EXPECT_EQ(sample_rows(7, 0, gen).numel(), 0);
  EXPECT_THROW(sample_rows(7, 8, gen), std::invalid_argument);
}

TEST(Minibatch, UnbiasedOnManyRows) {
  // N = 3000 rows, B = 16: the mean of the N/B-scaled estimates is the full log
  // joint, within Monte Carlo error.
  auto gen = at::detail::createCPUGenerator(7);
  const int64_t N = 3000, P = 3;
  Data data("lr.json");
  data.set("N", torch::tensor(N));
  data.set("P", torch::tensor(P));
  data.set("X", torch::randn({N, P}, gen, torch::kDouble));
  data.set("y", (torch::rand({N}, gen, torch::kDouble) < 0.3).to(torch::kLong));
  ProgramModel model(load_program(VGUIDE_TEST_EXAMPLES_DIR "/models/logistic_regression.qvr"), data);
  const SiteValues values{{"alpha", torch::tensor({0.2, -0.4}, torch::kDouble)},
                          {"beta", torch::tensor({{0.5, -0.3, 0.1}, {0.0, 0.8, -0.6}}, torch::kDouble)}};
  const at::Tensor x = torch::zeros({2, 0}, torch::kDouble);
  const at::Tensor full = model.log_joint(x, values);
  model.set_minibatch(16, at::detail::createCPUGenerator(8));
  constexpr int M = 6000;
  std::vector<at::Tensor> estimates;
  for (int i = 0; i < M; ++i) estimates.push_back(model.log_joint(x, values));
  const at::Tensor all = torch::stack(estimates);
  const at::Tensor mean = all.mean(0), se = all.std(0) / std::sqrt(double(M));
  for (int k = 0; k < 2; ++k) {
    EXPECT_GT(se[k].item<double>(), 0.0);
    EXPECT_NEAR(mean[k].item<double>(), full[k].item<double>(), 4 * se[k].item<double>()) << k;
  }
}

}  // namespace
}  // namespace vguide::model
