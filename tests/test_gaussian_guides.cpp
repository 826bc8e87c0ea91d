// mvn, lowrank_mvn and laplace: exact Gaussian posteriors, closed-form densities,
// draw moments, the Woodbury path against dense algebra, the Laplace Hessian and
// its clamp, and each family's errors.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>

#include "test_models.hpp"
#include "vguide/math/mvn_log_prob.hpp"
#include "vguide/options/lowrank_mvn.hpp"
#include "vguide/runtime/elbo.hpp"
#include "vguide/runtime/plugin_manager.hpp"

namespace vguide {
namespace {

struct Moments {
  at::Tensor mean, sd, corr;
};

Moments moments_of(Guide& guide, int64_t draws) {
  torch::NoGradGuard no_grad;
  at::Tensor d = guide.rsample(particles(draws)).at("beta").to(torch::kDouble);
  at::Tensor centred = d - d.mean(0);
  at::Tensor cov = torch::matmul(centred.t(), centred) / (draws - 1);
  at::Tensor sd = cov.diagonal().sqrt();
  return {d.mean(0), sd, cov / torch::outer(sd, sd)};
}

Moments exact_moments(const test::LinearRegressionModel& model) {
  at::Tensor cov = model.posterior_cov();
  at::Tensor sd = cov.diagonal().sqrt();
  return {model.posterior_mean(), sd, cov / torch::outer(sd, sd)};
}

void expect_matches_exact(const Moments& got, const Moments& exact, const std::string& family) {
  for (int i = 0; i < 3; ++i) {
    const double sd = exact.sd[i].item<double>();
    EXPECT_NEAR(got.mean[i].item<double>(), exact.mean[i].item<double>(), 0.1 * sd) << family << " mean " << i;
    EXPECT_NEAR(got.sd[i].item<double>(), sd, 0.1 * sd) << family << " sd " << i;
    for (int j = 0; j < i; ++j)
      EXPECT_NEAR(got.corr[i][j].item<double>(), exact.corr[i][j].item<double>(), 0.05)
          << family << " corr " << i << "," << j;
  }
}

class GaussianFamilies : public ::testing::Test {
 protected:
  void SetUp() override {
    for (const char* f : {"normal", "mvn", "lowrank_mvn", "laplace"}) manager_.load(f);
  }
  PluginManager manager_{17};
  test::LinearRegressionModel model_ = test::LinearRegressionModel::correlated();
};

TEST_F(GaussianFamilies, TheTestPosteriorIsStronglyCorrelated) {
  auto exact = exact_moments(model_);
  EXPECT_LT(exact.corr[1][0].item<double>(), -0.8);
}

TEST_F(GaussianFamilies, MvnMatchesTheExactCorrelatedPosterior) {
  auto guide = manager_.create("mvn", model_, {"y"}, {});
  test::fit_adam(model_, *guide, 16, {{2500, 0.03}, {1500, 0.003}});
  expect_matches_exact(moments_of(*guide, 100000), exact_moments(model_), "mvn");
}

TEST_F(GaussianFamilies, LowRankWithRankDMinusOneMatchesToo) {
  auto guide = manager_.create("lowrank_mvn", model_, {"y"}, {"rank=2"});
  test::fit_adam(model_, *guide, 16, {{2500, 0.03}, {1500, 0.003}});
  expect_matches_exact(moments_of(*guide, 100000), exact_moments(model_), "lowrank_mvn");
}

TEST_F(GaussianFamilies, LaplaceMatchesTheExactPosterior) {
  auto guide = manager_.create("laplace", model_, {"y"}, {});
  test::fit_adam(model_, *guide, 1, {{2000, 0.05}, {1000, 0.005}});
  guide->after_fit({model_, 3000});
  EXPECT_EQ(guide->diagnostics().at("laplace.fitted"), 1.0);
  EXPECT_EQ(guide->diagnostics().at("laplace.num_clamped"), 0.0);
  expect_matches_exact(moments_of(*guide, 100000), exact_moments(model_), "laplace");
}

TEST_F(GaussianFamilies, MeanFieldNormalCannotReproduceTheCorrelation) {
  auto guide = manager_.create("normal", model_, {"y"}, {});
  test::fit_adam(model_, *guide, 16, {{2500, 0.03}, {1500, 0.003}});
  auto got = moments_of(*guide, 100000);
  auto exact = exact_moments(model_);
  EXPECT_LT(std::abs(got.corr[1][0].item<double>()), 0.02);
  EXPECT_GT(std::abs(got.corr[1][0].item<double>() - exact.corr[1][0].item<double>()), 0.5);
  // ... and, as mean-field VI does, it underestimates the marginal sds.
  EXPECT_LT(got.sd[0].item<double>(), 0.7 * exact.sd[0].item<double>());
}

// --- closed forms at fixed parameters ------------------------------------------

test::SitesModel real_vector_model(int64_t D) { return test::SitesModel({{"z", {D}, constraints::real()}}); }

void randomise(Guide& g, double scale = 0.5) {
  g.to(torch::kDouble);
  torch::NoGradGuard no_grad;
  for (auto& p : g.parameters()) p.copy_(torch::randn(p.sizes(), torch::kDouble) * scale);
}

// log N(z; m, Σ) by dense algebra: slogdet and a full inverse (a different path).
at::Tensor dense_mvn_log_prob(const at::Tensor& z, const at::Tensor& m, const at::Tensor& cov) {
  const int64_t D = m.size(0);
  at::Tensor d = z - m;
  at::Tensor quad = (torch::matmul(d, torch::linalg_inv(cov)) * d).sum(-1);
  return -0.5 * (quad + std::get<1>(torch::linalg_slogdet(cov)) + D * std::log(2 * M_PI));
}

TEST(GaussianClosedForms, MvnLogProbAndMoments) {
  PluginManager manager(2);
  manager.load("mvn");
  auto model = real_vector_model(4);
  auto g = manager.create("mvn", model, {}, {});
  randomise(*g);
  auto params = g->named_parameters();
  at::Tensor L = torch::tril(params["scale_tril_offdiag"], -1) +
                 torch::diag_embed(torch::softplus(params["scale_diag_unconstrained"]));
  at::Tensor loc = params["loc"].detach();
  at::Tensor cov = torch::matmul(L, L.t()).detach();
  at::Tensor z = torch::randn({6, 4}, torch::kDouble);
  EXPECT_TRUE(torch::allclose(g->log_prob(particles(6), {{"z", z}}), dense_mvn_log_prob(z, loc, cov), 1e-9, 1e-9));
  torch::NoGradGuard no_grad;
  at::Tensor d = g->rsample(particles(200000, torch::kDouble)).at("z");
  EXPECT_TRUE(torch::allclose(d.mean(0), loc, 0, 0.02));
  at::Tensor c = d - d.mean(0);
  EXPECT_TRUE(torch::allclose(torch::matmul(c.t(), c) / 199999, cov, 0.03, 0.01));
}

TEST(GaussianClosedForms, WoodburyMatchesDenseAlgebra) {
  torch::manual_seed(5);
  for (int64_t D : {1, 3, 8}) {
    for (int64_t r : {1, 2}) {
      at::Tensor W = torch::randn({D, r}, torch::kDouble), sigma = torch::rand({D}, torch::kDouble) + 0.2;
      at::Tensor loc = torch::randn({D}, torch::kDouble), z = torch::randn({2, 5, D}, torch::kDouble);
      at::Tensor cov = torch::matmul(W, W.t()) + torch::diag(sigma * sigma);
      at::Tensor got = math::lowrank_mvn_log_prob(z, loc, W, sigma);
      EXPECT_EQ(got.sizes().vec(), (std::vector<int64_t>{2, 5}));
      EXPECT_TRUE(torch::allclose(got, dense_mvn_log_prob(z, loc, cov), 1e-9, 1e-9)) << "D=" << D << " r=" << r;
    }
  }
}

TEST(GaussianClosedForms, LowRankGuideLogProbAndMoments) {
  PluginManager manager(3);
  manager.load("lowrank_mvn");
  auto model = real_vector_model(5);
  auto g = manager.create("lowrank_mvn", model, {}, {"rank=2"});
  randomise(*g);
  auto params = g->named_parameters();
  at::Tensor W = params["cov_factor"].detach(), sigma = torch::softplus(params["scale_unconstrained"]).detach();
  at::Tensor cov = torch::matmul(W, W.t()) + torch::diag(sigma * sigma);
  at::Tensor loc = params["loc"].detach();
  at::Tensor z = torch::randn({6, 5}, torch::kDouble);
  EXPECT_TRUE(torch::allclose(g->log_prob(particles(6), {{"z", z}}), dense_mvn_log_prob(z, loc, cov), 1e-9, 1e-9));
  torch::NoGradGuard no_grad;
  at::Tensor d = g->rsample(particles(200000, torch::kDouble)).at("z");
  at::Tensor c = d - d.mean(0);
  EXPECT_TRUE(torch::allclose(d.mean(0), loc, 0, 0.02));
  EXPECT_TRUE(torch::allclose(torch::matmul(c.t(), c) / 199999, cov, 0.03, 0.01));
}

TEST(GaussianClosedForms, MvnStartsLikeTheSeed) {
  PluginManager manager(3);
  manager.load("mvn");
  auto model = real_vector_model(3);
  auto g = manager.create("mvn", model, {}, {"init_scale=0.2"});
  auto p = g->named_parameters();
  EXPECT_TRUE(torch::allclose(torch::softplus(p["scale_diag_unconstrained"]), torch::full({3}, 0.2f)));
  EXPECT_TRUE(torch::equal(p["scale_tril_offdiag"], torch::zeros({3, 3})));
  EXPECT_TRUE(torch::equal(p["loc"], torch::zeros({3})));
}

// normal's step scales are exp(log_scale) now; the tensor it returns is refilled on
// the next call only when the caller no longer holds it.
TEST(GaussianClosedForms, NormalStepScalesFollowTheScaleAndKeepWhatACallerHolds) {
  PluginManager manager(3);
  manager.load("normal");
  auto model = real_vector_model(3);
  for (const auto dtype : {torch::kDouble, torch::kFloat}) {
    auto g = manager.create("normal", model, {}, {"init_scale=0.2"});
    g->to(dtype);
    at::Tensor log_scale = g->named_parameters()["log_scale"];
    const auto held = g->step_scales();
    ASSERT_EQ(held.size(), 1u);
    const at::Tensor before = held[0].scale.clone();
    EXPECT_TRUE(torch::allclose(before, torch::full({3}, 0.2, dtype)));
    {
      torch::NoGradGuard no_grad;
      log_scale.copy_(torch::tensor({-1.0, 0.0, 0.5}, dtype));
    }
    const void* storage = nullptr;
    {
      const at::Tensor now = g->step_scales()[0].scale;
      EXPECT_TRUE(torch::equal(held[0].scale, before));  // still held: not overwritten
      EXPECT_TRUE(torch::allclose(now, torch::exp(log_scale.detach())));
      storage = now.data_ptr();
    }
    // Released, the kept tensor is refilled in place: no allocation per step.
    {
      torch::NoGradGuard no_grad;
      log_scale.fill_(0.25);
    }
    const at::Tensor again = g->step_scales()[0].scale;
    EXPECT_EQ(again.data_ptr(), storage);
    EXPECT_TRUE(torch::allclose(again, torch::full({3}, std::exp(0.25), dtype)));
    EXPECT_FALSE(again.requires_grad());
  }
}

// Every family that forms its step scales in loops hands out kept tensors: a later
// call neither overwrites nor reuses what a caller holds, and refills in place what
// the caller released, with the values a fresh computation gives.
TEST(GaussianClosedForms, StepScalesAreRefilledInPlaceOnlyWhenNoCallerHoldsThem) {
  PluginManager manager(3);
  const std::vector<std::string> families{"normal", "mvn", "lowrank_mvn"};
  for (const auto& family : families) manager.load(family);
  auto model = real_vector_model(3);
  using Scales = std::vector<Guide::StepScale>;
  const auto storage_of = [](const Scales& scales) {
    std::vector<const void*> out;
    for (const auto& s : scales) out.push_back(s.scale.data_ptr());
    return out;
  };
  for (const auto& family : families)
    for (const auto dtype : {torch::kDouble, torch::kFloat}) {
      SCOPED_TRACE(family + (dtype == torch::kDouble ? " float64" : " float32"));
      auto g = manager.create(family, model, {}, {});
      g->to(dtype);
      const auto nudge = [&](double by) {
        torch::NoGradGuard no_grad;
        for (auto& p : g->parameters()) p.add_(by);
      };
      const Scales held = g->step_scales();
      std::vector<at::Tensor> held_values;
      for (const auto& s : held) held_values.push_back(s.scale.clone());
      nudge(0.1);
      {
        const Scales now = g->step_scales();
        ASSERT_EQ(now.size(), held.size());
        for (size_t i = 0; i < held.size(); ++i) {
          EXPECT_TRUE(torch::equal(held[i].scale, held_values[i])) << i;  // not overwritten
          EXPECT_FALSE(torch::equal(now[i].scale, held_values[i])) << i;  // the nudged parameters' scales
          EXPECT_FALSE(now[i].scale.requires_grad());
        }
      }
      const std::vector<const void*> released = storage_of(g->step_scales());
      nudge(0.05);
      const Scales refilled = g->step_scales();
      EXPECT_EQ(storage_of(refilled), released);
      const Scales fresh = g->step_scales();  // `refilled` is held: formed anew
      EXPECT_NE(storage_of(fresh).front(), released.front());
      for (size_t i = 0; i < fresh.size(); ++i) EXPECT_TRUE(torch::equal(fresh[i].scale, refilled[i].scale)) << i;
    }
  // lowrank_mvn hands out its sd twice, as itself and as a (D, 1) view: a caller
  // holding only the view still holds the storage.
  auto g = manager.create("lowrank_mvn", model, {}, {});
  g->to(torch::kDouble);
  at::Tensor view;
  {
    const Scales first = g->step_scales();
    ASSERT_EQ(first.size(), 3u);
    ASSERT_EQ(first[1].scale.data_ptr(), first[0].scale.data_ptr());
    view = first[1].scale;
  }
  const at::Tensor before = view.clone();
  {
    torch::NoGradGuard no_grad;
    for (auto& p : g->parameters()) p.add_(0.1);
  }
  at::Tensor alias;
  {
    const Scales next = g->step_scales();
    EXPECT_NE(next[0].scale.data_ptr(), view.data_ptr());
    EXPECT_TRUE(torch::equal(view, before));
    // A detached alias holds the storage but not the tensor (its use count stays 1):
    // the storage's count keeps it from being refilled.
    alias = next[2].scale.detach();
  }
  const at::Tensor alias_before = alias.clone();
  {
    torch::NoGradGuard no_grad;
    for (auto& p : g->parameters()) p.add_(0.1);
  }
  const Scales after = g->step_scales();
  EXPECT_NE(after[2].scale.data_ptr(), alias.data_ptr());
  EXPECT_TRUE(torch::equal(alias, alias_before));
}

// --- laplace --------------------------------------------------------------------

TEST(Laplace, HessianIsTheAnalyticHessianOfAGaussianModel) {
  // The log joint is quadratic, so its Hessian is the posterior precision at any point.
  auto model = test::LinearRegressionModel::correlated();
  PluginManager manager(4);
  manager.load("laplace");
  auto g = manager.create("laplace", model, {"y"}, {"init_value=0.3"});
  g->to(torch::kDouble);
  g->after_fit({model, 0});
  at::Tensor L = g->named_buffers()["scale_tril"];
  EXPECT_TRUE(torch::allclose(torch::matmul(L, L.t()), model.posterior_cov(), 1e-6, 1e-9));
  EXPECT_TRUE(torch::allclose(torch::linalg_inv(torch::matmul(L, L.t())), model.precision(), 1e-6, 1e-6));
  // q is now N(z*, Σ): its log_prob is that Gaussian's.
  at::Tensor loc = g->named_parameters()["loc"].detach();
  at::Tensor z = torch::randn({4, 3}, torch::kDouble);
  EXPECT_TRUE(torch::allclose(g->log_prob(particles(4), {{"beta", z}}),
                              dense_mvn_log_prob(z, loc, model.posterior_cov()), 1e-6, 1e-6));
}

// log p = -a²/2 + b²/2: a saddle, whose Hessian of -log p is diag(1, -1).
class SaddleModel : public Model {
 public:
  const std::vector<SiteInfo>& sites() const override { return sites_; }
  at::Tensor log_joint(const at::Tensor&, const SiteValues& v) const override {
    return -0.5 * v.at("a").pow(2) + 0.5 * v.at("b").pow(2);
  }
  std::vector<SiteInfo> sites_{{"a", {}, constraints::real()}, {"b", {}, constraints::real()}};
};

TEST(Laplace, ASaddleIsClampedCountedAndStillHasACholeskyFactor) {
  SaddleModel model;
  PluginManager manager(6);
  manager.load("laplace");
  auto g = manager.create("laplace", model, {}, {"jitter=0.01"});
  g->to(torch::kDouble);
  g->after_fit({model, 0});
  auto diag = g->diagnostics();
  EXPECT_EQ(diag.at("laplace.num_clamped"), 1.0);
  EXPECT_NEAR(diag.at("laplace.min_eigenvalue"), -1.0, 1e-9);
  at::Tensor L = g->named_buffers()["scale_tril"];
  EXPECT_TRUE(torch::isfinite(L).all().item<bool>());
  EXPECT_TRUE((L.diagonal() > 0).all().item<bool>());
  // Σ = diag(1, 1/jitter): the clamped direction gets variance 1/jitter.
  EXPECT_TRUE(torch::allclose(torch::matmul(L, L.t()), torch::diag(torch::tensor({1.0, 100.0}, torch::kDouble)),
                              1e-9, 1e-9));
}

TEST(Laplace, BeforeTheFitItIsAPointMassInUnconstrainedSpace) {
  test::SitesModel model({{"s", {}, constraints::positive()}});
  PluginManager manager(8);
  manager.load("laplace");
  auto g = manager.create("laplace", model, {}, {"init_noise=0", "init_value=0.5"});
  auto draws = g->rsample(particles(3));
  EXPECT_TRUE(torch::allclose(draws.at("s"), torch::full({3}, std::exp(0.5f))));
  // log q = -log|det J| = -z for the exp bijector.
  EXPECT_TRUE(torch::allclose(g->log_prob(particles(3), draws), torch::full({3}, -0.5f)));
  EXPECT_EQ(g->diagnostics().at("laplace.fitted"), 0.0);
}

// --- errors ---------------------------------------------------------------------

TEST(LowRankErrors, RankBelowOneAndAboveD) {
  PluginManager manager(1);
  manager.load("lowrank_mvn");
  auto model = real_vector_model(3);
  try {
    manager.create("lowrank_mvn", model, {}, {"rank=0"});
    FAIL();
  } catch (const std::invalid_argument& e) {
    EXPECT_STREQ(e.what(), "lowrank_mvn: bad value for option 'rank': 0 is out of range (must be >=1); valid options: "
                           "rank=auto init_scale=0.1");
  }
  try {
    manager.create("lowrank_mvn", model, {}, {"rank=4"});
    FAIL();
  } catch (const PluginError& e) {
    EXPECT_NE(std::string(e.what()).find(": factory of 'lowrank_mvn' failed: lowrank_mvn: rank is 4, but must be at "
                                         "most the latent dimension D = 3 (for small D use the full-rank 'mvn' family)"),
              std::string::npos)
        << e.what();
  }
  EXPECT_THROW(LowRankMvnOptions().rank(-1).validate(), std::domain_error);
  // Left at auto, the rank is min(5, D): a small model works with the defaults.
  auto small = manager.create("lowrank_mvn", model, {}, {});
  EXPECT_EQ(small->named_parameters()["cov_factor"].sizes().vec(), (std::vector<int64_t>{3, 3}));
  EXPECT_EQ(LowRankMvnOptions().rank_for(40), 5);
}

}  // namespace
}  // namespace vguide
