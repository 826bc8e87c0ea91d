// The flow kit and the flow guides: every transform's round trip and log|det|
// against autograd, MADE's autoregressive structure, the spline's shape, the draw
// cache, normalisation, fits to a correlated Gaussian and a banana, and a third-party
// flow plugin built from SDK headers only.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <functional>

#include "test_config.hpp"
#include "test_models.hpp"
#include "vguide/flat_guide.hpp"
#include "vguide/flow.hpp"
#include "vguide/options/iaf.hpp"
#include "vguide/options/spline.hpp"
#include "vguide/runtime/elbo.hpp"
#include "vguide/runtime/plugin_manager.hpp"

namespace vguide {
namespace {
using namespace flow;

// Move every parameter off its identity-like start so the tests see a real map.
void perturb(torch::nn::Module& m, double scale, uint64_t seed) {
  torch::NoGradGuard no_grad;
  auto gen = at::detail::createCPUGenerator(seed);
  for (auto& p : m.parameters()) p.add_(at::randn(p.sizes(), gen, p.scalar_type()) * scale);
}

at::Tensor jacobian(const std::function<at::Tensor(const at::Tensor&)>& f, const at::Tensor& z) {
  at::Tensor zz = z.detach().clone().requires_grad_(true);
  at::Tensor y = f(zz).flatten();
  at::Tensor J = torch::zeros({y.numel(), zz.numel()}, torch::kDouble);
  for (int64_t i = 0; i < y.numel(); ++i) {
    auto g = torch::autograd::grad({y[i]}, {zz}, {}, true, false, true)[0];
    if (g.defined()) J[i] = g.flatten();
  }
  return J;
}

struct TransformCase {
  std::string label;
  std::function<std::shared_ptr<Transform>(at::Generator&)> make;
};
void PrintTo(const TransformCase& c, std::ostream* os) { *os << c.label; }

std::vector<TransformCase> transform_cases() {
  return {
      {"autoregressive_affine",
       [](at::Generator& g) {
         return std::make_shared<MaskedAutoregressiveTransform>(4, affine_univariate(), 8, 2, g,
                                                                std::vector<int64_t>{2, 0, 3, 1});
       }},
      {"autoregressive_spline",
       [](at::Generator& g) {
         return std::make_shared<MaskedAutoregressiveTransform>(4, spline_univariate(5, 2.5), 8, 2, g);
       }},
      {"coupling_affine",
       [](at::Generator& g) {
         return std::make_shared<CouplingTransform>(CouplingTransform::half_mask(5, true), affine_univariate(), 8, 2,
                                                    g);
       }},
      {"coupling_spline",
       [](at::Generator& g) {
         return std::make_shared<CouplingTransform>(CouplingTransform::half_mask(5, false), spline_univariate(6, 3.0),
                                                    8, 1, g);
       }},
      {"permutation", [](at::Generator& g) { return Permutation::random(5, g); }},
      {"elementwise_affine", [](at::Generator&) { return std::make_shared<ElementwiseAffine>(4); }},
  };
}

class TransformTest : public ::testing::TestWithParam<TransformCase> {
 protected:
  void SetUp() override {
    gen_ = at::detail::createCPUGenerator(3);
    t_ = GetParam().make(gen_);
    t_->to(torch::kDouble);
    perturb(*t_, 0.5, 11);
    D_ = GetParam().label.find("coupling") != std::string::npos || GetParam().label == "permutation" ? 5 : 4;
  }
  at::Generator gen_;
  std::shared_ptr<Transform> t_;
  int64_t D_ = 0;
};

TEST_P(TransformTest, InverseOfForwardIsIdentity) {
  at::Tensor z = torch::randn({32, D_}, torch::kDouble) * 2.0;
  auto [x, ladj] = t_->forward(z);
  auto [back, ladj_inv] = t_->inverse(x);
  EXPECT_EQ(ladj.sizes().vec(), (std::vector<int64_t>{32}));
  EXPECT_TRUE(torch::allclose(back, z, 1e-7, 1e-7)) << (back - z).abs().max().item<double>();
  EXPECT_TRUE(torch::allclose(ladj_inv, -ladj, 1e-7, 1e-7));
}

TEST_P(TransformTest, LogDetMatchesAutogradJacobian) {
  for (int trial = 0; trial < 3; ++trial) {
    at::Tensor z = torch::randn({D_}, torch::kDouble) * 1.5;
    at::Tensor J = jacobian([&](const at::Tensor& v) { return t_->forward(v).first; }, z);
    EXPECT_NEAR(t_->forward(z).second.item<double>(), std::get<1>(torch::linalg_slogdet(J)).item<double>(), 1e-8)
        << GetParam().label;
  }
}

TEST_P(TransformTest, BatchDimsArePreserved) {
  at::Tensor z = torch::randn({3, 2, D_}, torch::kDouble);
  auto [x, ladj] = t_->forward(z);
  EXPECT_EQ(x.sizes(), z.sizes());
  EXPECT_EQ(ladj.sizes().vec(), (std::vector<int64_t>{3, 2}));
  EXPECT_TRUE(torch::allclose(x[1][0], t_->forward(z[1][0]).first));
}

INSTANTIATE_TEST_SUITE_P(Kit, TransformTest, ::testing::ValuesIn(transform_cases()),
                         [](const ::testing::TestParamInfo<TransformCase>& i) { return i.param.label; });

TEST(Made, OutputsDependOnlyOnEarlierFeaturesInTheOrder) {
  auto gen = at::detail::createCPUGenerator(5);
  const std::vector<int64_t> order{2, 0, 3, 1};
  Made made(MadeOptions(4, 3).hidden_dim(12).order(order), gen);
  made.to(torch::kDouble);
  perturb(made, 0.5, 2);
  std::vector<int64_t> rank(4);
  for (int64_t k = 0; k < 4; ++k) rank[order[k]] = k;
  // |Jacobian| summed over several points, so no allowed path hides behind a dead ReLU.
  at::Tensor J = torch::zeros({4, 3, 4}, torch::kDouble);
  for (int point = 0; point < 10; ++point)
    J += jacobian([&](const at::Tensor& z) { return made.forward(z); }, torch::randn({4}, torch::kDouble))
             .reshape({4, 3, 4})
             .abs();
  int64_t allowed_nonzero = 0;
  for (int64_t i = 0; i < 4; ++i)
    for (int64_t j = 0; j < 4; ++j) {
      const double mag = J.select(0, i).select(1, j).abs().max().item<double>();
      if (rank[j] >= rank[i]) {
        EXPECT_EQ(mag, 0.0) << "output of feature " << i << " depends on feature " << j;
      } else if (mag > 0) {
        ++allowed_nonzero;
      }
    }
  EXPECT_EQ(allowed_nonzero, 6);  // every allowed pair is connected
  EXPECT_EQ(made.forward(torch::zeros({7, 4}, torch::kDouble)).sizes().vec(), (std::vector<int64_t>{7, 4, 3}));
}

TEST(Made, RejectsABadOrderAndTooNarrowALayer) {
  auto gen = at::detail::createCPUGenerator(5);
  EXPECT_THROW(Made(MadeOptions(3, 2).order({0, 0, 1}), gen), std::invalid_argument);
  try {
    Made(MadeOptions(5, 2).hidden_dim(3), gen);
    FAIL();
  } catch (const std::domain_error& e) {
    EXPECT_STREQ(e.what(), "MADE: hidden_dim is 3, but must be at least 4!");
  }
}

// --- the spline ----------------------------------------------------------------

struct SplineParams {
  at::Tensor w, h, d;
};
SplineParams random_spline(int64_t K, uint64_t seed) {
  auto gen = at::detail::createCPUGenerator(seed);
  return {at::randn({K}, gen, at::kDouble), at::randn({K}, gen, at::kDouble), at::randn({K - 1}, gen, at::kDouble)};
}

TEST(Spline, MonotoneWithIdentityTails) {
  auto p = random_spline(8, 1);
  at::Tensor x = torch::linspace(-5, 5, 2001, torch::kDouble);
  auto [y, ladj] = rational_quadratic_spline(x, p.w, p.h, p.d, 3.0, false);
  EXPECT_TRUE((y.diff() > 0).all().item<bool>());
  at::Tensor outside = x.abs() > 3.0;
  EXPECT_TRUE(torch::equal(y.masked_select(outside), x.masked_select(outside)));
  EXPECT_TRUE((ladj.masked_select(outside) == 0).all().item<bool>());
  // Maps the box onto itself.
  EXPECT_NEAR(rational_quadratic_spline(torch::tensor({-3.0, 3.0}, torch::kDouble), p.w, p.h, p.d, 3.0, false)
                  .first[1]
                  .item<double>(),
              3.0, 1e-12);
}

TEST(Spline, ValueAndSlopeAreContinuousAtEveryKnotAndAtTheTails) {
  auto p = random_spline(6, 2);
  const double B = 2.0;
  // Knots: softmax fractions with the minimum bin size, as the implementation.
  at::Tensor frac = 1e-3 + (1 - 6e-3) * torch::softmax(p.w, 0);
  at::Tensor knots = torch::cat({torch::tensor({-B}, torch::kDouble), 2 * B * torch::cumsum(frac, 0) - B});
  const double eps = 1e-7;
  for (int64_t k = 0; k <= 6; ++k) {
    const double at_knot = knots[k].item<double>();
    auto [y, ladj] = rational_quadratic_spline(torch::tensor({at_knot - eps, at_knot + eps}, torch::kDouble), p.w,
                                               p.h, p.d, B, false);
    EXPECT_NEAR(y[0].item<double>(), y[1].item<double>(), 1e-5) << "knot " << k;
    EXPECT_NEAR(ladj[0].item<double>(), ladj[1].item<double>(), 1e-4) << "knot " << k;
  }
}

TEST(Spline, InverseAndZeroParametersAreTheIdentity) {
  auto p = random_spline(8, 3);
  at::Tensor x = torch::randn({500}, torch::kDouble) * 2.0;
  auto [y, ladj] = rational_quadratic_spline(x, p.w, p.h, p.d, 3.0, false);
  auto [back, ladj_inv] = rational_quadratic_spline(y, p.w, p.h, p.d, 3.0, true);
  EXPECT_TRUE(torch::allclose(back, x, 1e-9, 1e-9));
  EXPECT_TRUE(torch::allclose(ladj_inv, -ladj, 1e-9, 1e-9));
  auto [same, zero] = rational_quadratic_spline(x, torch::zeros({8}, torch::kDouble), torch::zeros({8}, torch::kDouble),
                                                torch::zeros({7}, torch::kDouble), 3.0, false);
  EXPECT_TRUE(torch::allclose(same, x, 1e-9, 1e-9));
  EXPECT_TRUE(torch::allclose(zero, torch::zeros_like(x), 0, 1e-9));
}

TEST(Spline, BadSettingsAreNamed) {
  try {
    spline_univariate(1, 3.0);
    FAIL();
  } catch (const std::domain_error& e) {
    EXPECT_STREQ(e.what(), "spline: num_bins is 1, but must be at least 2!");
  }
  EXPECT_THROW(spline_univariate(8, 0.0), std::domain_error);
  EXPECT_NO_THROW(spline_univariate(999, 3.0));
  try {
    spline_univariate(1000, 3.0);
    FAIL();
  } catch (const std::domain_error& e) {
    EXPECT_STREQ(e.what(), "spline: num_bins is 1000, but must be below 1000!");
  }
}

// --- flow guides ------------------------------------------------------------------

class FlowFamily : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    ::setenv("VGUIDE_PLUGIN_PATH", VGUIDE_TEST_EXTRA_PLUGIN_DIR, 1);
    manager_.load(GetParam());
  }
  void TearDown() override { ::unsetenv("VGUIDE_PLUGIN_PATH"); }
  std::shared_ptr<Guide> make(const Model& model, std::vector<std::string> options = {}) {
    return manager_.create(GetParam(), model, {}, options);
  }
  PluginManager manager_{13};
};

test::SitesModel two_reals() {
  return test::SitesModel({{"a", {}, constraints::real()}, {"b", {}, constraints::real()}});
}

TEST_P(FlowFamily, CachedLogProbEqualsAFreshInversionInValueAndGradient) {
  test::SitesModel model({{"a", {2}, constraints::real()}, {"s", {}, constraints::positive()}});
  auto g = make(model);
  g->to(torch::kDouble);
  perturb(*g, 0.3, 4);
  auto* flat = dynamic_cast<FlatGuide*>(g.get());
  ASSERT_NE(flat, nullptr);
  auto run = [&](bool cache) {
    flat->set_draw_cache(cache);
    g->zero_grad();
    g->generator().set_current_seed(99);
    auto x = particles(6, torch::kDouble);
    auto draws = g->rsample(x);
    auto lp = g->log_prob(x, draws);
    (model.log_joint(x, draws) - lp).mean().backward();
    std::vector<at::Tensor> grads;
    for (auto& p : g->parameters()) grads.push_back(p.grad().defined() ? p.grad().clone() : torch::zeros_like(p));
    return std::make_pair(lp.detach(), grads);
  };
  auto [lp_cached, g_cached] = run(true);
  auto [lp_fresh, g_fresh] = run(false);
  EXPECT_TRUE(torch::allclose(lp_cached, lp_fresh, 1e-7, 1e-7)) << (lp_cached - lp_fresh).abs().max().item<double>();
  ASSERT_EQ(g_cached.size(), g_fresh.size());
  for (size_t i = 0; i < g_cached.size(); ++i)
    EXPECT_TRUE(torch::allclose(g_cached[i], g_fresh[i], 1e-6, 1e-8)) << "parameter " << i;
}

TEST_P(FlowFamily, DensityIntegratesToOneIn2D) {
  auto model = two_reals();
  auto g = make(model);
  g->to(torch::kDouble);
  // Moderate perturbation: large random spline parameters make bins far narrower
  // than any grid, and the Riemann sum below would stop measuring the integral.
  perturb(*g, 0.05, 5);
  const int64_t n = 241;
  const double L = 8.0, h = 2 * L / (n - 1);
  at::Tensor grid = torch::linspace(-L, L, n, torch::kDouble);
  at::Tensor a = grid.repeat_interleave(n), b = grid.repeat({n});
  torch::NoGradGuard no_grad;
  at::Tensor lp = g->log_prob(particles(n * n, torch::kDouble), {{"a", a}, {"b", b}});
  EXPECT_NEAR(lp.exp().sum().item<double>() * h * h, 1.0, 0.01);
}

TEST_P(FlowFamily, PrettyPrintNamesFamilyDimensionAndStack) {
  auto model = two_reals();
  auto g = make(model, {"num_flows=3"});
  std::ostringstream printed;
  g->pretty_print(printed);
  // iaf: 3 layers + 2 permutations + affine; spline: 3 couplings + affine; realnvp: 3 + affine.
  const int transforms = GetParam() == "iaf" ? 6 : 4;
  EXPECT_EQ(printed.str(), "vguide::FlowGuide(family=" + GetParam() + ", latent_dim=2, transforms=" +
                               std::to_string(transforms) + ")");
}

TEST_P(FlowFamily, ErrorsForOneDimensionAndNoLayers) {
  test::SitesModel one({{"a", {}, constraints::real()}});
  try {
    make(one);
    FAIL();
  } catch (const PluginError& e) {
    EXPECT_NE(std::string(e.what()).find(GetParam() +
                                         ": the latent dimension is 1, but must be at least 2 (use the normal guide "
                                         "for 1-D models)"),
              std::string::npos)
        << e.what();
  }
  auto model = two_reals();
  try {
    make(model, {"num_flows=0"});
    FAIL();
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find(GetParam() +
                                         ": bad value for option 'num_flows': 0 is out of range (must be >=1)"),
              std::string::npos)
        << e.what();
  }
}

// (a, b) ~ MVN with sds (1, 2) and correlation 0.8: the posterior is the prior.
class CorrelatedGaussian : public Model {
 public:
  const std::vector<SiteInfo>& sites() const override { return sites_; }
  at::Tensor log_joint(const at::Tensor&, const SiteValues& v) const override {
    at::Tensor z = torch::stack({v.at("a") - 1.0, v.at("b") + 0.5}, -1);
    at::Tensor prec = torch::linalg_inv(cov().to(z.scalar_type()));
    return -0.5 * (torch::matmul(z, prec) * z).sum(-1);
  }
  static at::Tensor cov() { return torch::tensor({{1.0, 1.6}, {1.6, 4.0}}, torch::kDouble); }
  std::vector<SiteInfo> sites_{{"a", {}, constraints::real()}, {"b", {}, constraints::real()}};
};

TEST_P(FlowFamily, FitsACorrelatedGaussianExactly) {
  CorrelatedGaussian model;
  auto g = make(model);
  test::fit_adam(model, *g, 16, {{1500, 0.01}, {500, 0.002}});
  torch::NoGradGuard no_grad;
  auto draws = g->rsample(particles(50000));
  at::Tensor z = torch::stack({draws.at("a"), draws.at("b")}, -1).to(torch::kDouble);
  at::Tensor c = z - z.mean(0);
  at::Tensor cov = torch::matmul(c.t(), c) / 49999;
  EXPECT_NEAR(z.mean(0)[0].item<double>(), 1.0, 0.1);
  EXPECT_NEAR(z.mean(0)[1].item<double>(), -0.5, 0.2);
  EXPECT_NEAR(std::sqrt(cov[0][0].item<double>()), 1.0, 0.1);
  EXPECT_NEAR(std::sqrt(cov[1][1].item<double>()), 2.0, 0.2);
  EXPECT_NEAR((cov[0][1] / (cov[0][0] * cov[1][1]).sqrt()).item<double>(), 0.8, 0.05);
}

// a ~ Normal(0, 1), b ~ Normal(a², 0.5): normalised, so KL(q || p) = -ELBO.
class Banana : public Model {
 public:
  const std::vector<SiteInfo>& sites() const override { return sites_; }
  at::Tensor log_joint(const at::Tensor&, const SiteValues& v) const override {
    const at::Tensor& a = v.at("a");
    return math::normal_log_prob(a, torch::zeros({}), torch::ones({})) +
           math::normal_log_prob(v.at("b"), a * a, torch::full({}, 0.5));
  }
  std::vector<SiteInfo> sites_{{"a", {}, constraints::real()}, {"b", {}, constraints::real()}};
};

double kl_after_fit(PluginManager& manager, const std::string& family, const Model& model) {
  auto g = manager.create(family, model, {}, {});
  test::fit_adam(model, *g, 16, {{2000, 0.01}, {500, 0.002}});
  torch::NoGradGuard no_grad;
  return -elbo(model, *g, 50000).item<double>();
}

TEST_P(FlowFamily, BeatsMeanFieldOnABanana) {
  Banana model;
  manager_.load("normal");
  const double kl_normal = kl_after_fit(manager_, "normal", model);
  const double kl_flow = kl_after_fit(manager_, GetParam(), model);
  EXPECT_GT(kl_normal, 0.2);  // mean field cannot bend
  EXPECT_LT(kl_flow, 0.5 * kl_normal) << "normal " << kl_normal << ", " << GetParam() << " " << kl_flow;
  EXPECT_GT(kl_flow, -0.02);  // a KL is not negative (up to Monte-Carlo error)
}

INSTANTIATE_TEST_SUITE_P(Flows, FlowFamily, ::testing::Values("iaf", "spline", "realnvp"));

TEST(FlowGuide, AThirdPartyFlowLoadsByNameFromVGUIDE_PLUGIN_PATH) {
  ::setenv("VGUIDE_PLUGIN_PATH", VGUIDE_TEST_EXTRA_PLUGIN_DIR, 1);
  PluginManager manager(1);
  EXPECT_EQ(manager.load("realnvp"), "realnvp");
  ::unsetenv("VGUIDE_PLUGIN_PATH");
  auto families = manager.families();
  ASSERT_EQ(families.size(), 1u);
  EXPECT_EQ(families[0].description, "RealNVP affine coupling flow (the out-of-tree example plugin)");
}

TEST(FlowGuide, HiddenDimDefaultsFollowD) {
  EXPECT_EQ(IafOptions().hidden_dim_for(3), 8);
  EXPECT_EQ(IafOptions().hidden_dim_for(10), 20);
  EXPECT_EQ(IafOptions().hidden_dim(5).hidden_dim_for(10), 5);
  EXPECT_EQ(SplineOptions().hidden_dim_for(10), 64);
  EXPECT_EQ(SplineOptions().hidden_dim_for(40), 80);
}

}  // namespace
}  // namespace vguide
