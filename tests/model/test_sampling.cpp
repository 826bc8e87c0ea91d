// Sampling and gradients: draws against closed-form moments (within Monte-Carlo
// error, seeded), reparameterised gradients against the derivative of the
// closed-form mean, and log_prob gradients against finite differences.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <functional>

#include "distribution_cases.hpp"

namespace vguide::model {
namespace {

using testing::all_cases;
using testing::Case;
using testing::mat;
using testing::seeded;
using testing::t;
using testing::vec;

const double kPi = M_PI;
constexpr int64_t kDraws = 200000;

double phi_pdf(double z) { return std::exp(-0.5 * z * z) / std::sqrt(2 * kPi); }
double phi_cdf(double z) { return 0.5 * std::erfc(-z / std::sqrt(2.0)); }
double beta_fn(double a, double b) { return std::exp(std::lgamma(a) + std::lgamma(b) - std::lgamma(a + b)); }

// Each column of `draws` (N, M) has mean m[j] and variance v[j], within five standard
// errors (the variance's standard error estimated from the fourth central moment).
void expect_moments(const at::Tensor& draws, const std::vector<double>& m, const std::vector<double>& v) {
  const at::Tensor x = draws.to(at::kDouble).reshape({draws.size(0), -1});
  ASSERT_EQ(x.size(1), static_cast<int64_t>(m.size()));
  const double n = static_cast<double>(x.size(0));
  const at::Tensor centred = x - x.mean(0);
  const at::Tensor var = (centred * centred).mean(0);
  const at::Tensor m4 = centred.pow(4).mean(0);
  for (size_t j = 0; j < m.size(); ++j) {
    SCOPED_TRACE("coordinate " + std::to_string(j));
    EXPECT_NEAR(x.select(1, j).mean().item<double>(), m[j], 5 * std::sqrt(v[j] / n));
    const double se_var = std::sqrt((m4[j].item<double>() - v[j] * v[j]) / n);
    EXPECT_NEAR(var[j].item<double>(), v[j], 5 * se_var);
  }
}

struct Moments {
  std::string family;
  std::vector<at::Tensor> args;
  std::vector<double> mean;
  std::vector<double> var;
};

std::vector<Moments> moment_cases() {
  const double g = 0.57721566490153286061;
  // TruncatedNormal(0.5, 1.5, -1, 3): a = -1, b = 5/3.
  const double a = -1.0, b = 5.0 / 3, z = phi_cdf(b) - phi_cdf(a);
  const double tn_shift = (phi_pdf(a) - phi_pdf(b)) / z;
  const double tn_var = 2.25 * (1 + (a * phi_pdf(a) - b * phi_pdf(b)) / z - tn_shift * tn_shift);
  // TruncatedNormal(0, 1, 3, 5): both bounds in the upper tail.
  const double ua = 3, ub = 5, uz = 0.5 * (std::erfc(ua / std::sqrt(2.0)) - std::erfc(ub / std::sqrt(2.0)));
  const double u_shift = (phi_pdf(ua) - phi_pdf(ub)) / uz;
  const double u_var = 1 + (ua * phi_pdf(ua) - ub * phi_pdf(ub)) / uz - u_shift * u_shift;
  const double wg1 = std::tgamma(1 + 1 / 1.5), wg2 = std::tgamma(1 + 2 / 1.5);
  const double k1 = 3 * beta_fn(1.5, 3), k2 = 3 * beta_fn(2, 3);
  const double l = std::log(0.3 / 0.7);
  const double cb_mean = std::exp(l) / (std::exp(l) - 1) - 1 / l;
  const double cb_var = 1 / (l * l) - std::exp(l) / std::pow(std::exp(l) - 1, 2);
  const double nb_p = 0.4;
  const double pl = 1 / (1 + std::exp(0.5));
  return {
      {"Normal", {t(0.5), t(2.0)}, {0.5}, {4.0}},
      {"HalfNormal", {t(1.5)}, {1.5 * std::sqrt(2 / kPi)}, {2.25 * (1 - 2 / kPi)}},
      {"LogNormal", {t(0.2), t(0.5)}, {std::exp(0.325)}, {(std::exp(0.25) - 1) * std::exp(0.65)}},
      {"TruncatedNormal", {t(0.5), t(1.5), t(-1.0), t(3.0)}, {0.5 + 1.5 * tn_shift}, {tn_var}},
      {"TruncatedNormal", {t(0.0), t(1.0), t(3.0), t(5.0)}, {u_shift}, {u_var}},
      {"StudentT", {t(5.0), t(1.0), t(2.0)}, {1.0}, {4.0 * 5 / 3}},
      {"Laplace", {t(1.0), t(2.0)}, {1.0}, {8.0}},
      {"Gumbel", {t(1.0), t(2.0)}, {1 + 2 * g}, {kPi * kPi * 4 / 6}},
      {"Exponential", {t(2.0)}, {0.5}, {0.25}},
      {"Gamma", {t(3.0), t(2.0)}, {1.5}, {0.75}},
      {"Gamma", {t(0.5), t(1.0)}, {0.5}, {0.5}},
      {"InverseGamma", {t(5.0), t(2.0)}, {0.5}, {4.0 / (16 * 3)}},
      {"Chi2", {t(4.0)}, {4.0}, {8.0}},
      {"Weibull", {t(2.0), t(1.5)}, {2 * wg1}, {4 * (wg2 - wg1 * wg1)}},
      {"Pareto", {t(1.0), t(5.0)}, {1.25}, {5.0 / (16 * 3)}},
      {"GeneralizedPareto", {t(0.5), t(2.0), t(0.2)}, {3.0}, {4 / (0.64 * 0.6)}},
      {"GeneralizedPareto", {t(0.5), t(2.0), t(0.0)}, {2.5}, {4.0}},
      {"GeneralizedPareto", {t(0.5), t(2.0), t(-0.5)}, {0.5 + 2 / 1.5}, {4 / (2.25 * 2)}},
      {"Beta", {t(2.0), t(3.0)}, {0.4}, {0.04}},
      {"Kumaraswamy", {t(2.0), t(3.0)}, {k1}, {k2 - k1 * k1}},
      {"Uniform", {t(-1.0), t(3.0)}, {1.0}, {16.0 / 12}},
      {"FisherSnedecor", {t(5.0), t(10.0)}, {1.25}, {2 * 100.0 * 13 / (5 * 64 * 6)}},
      {"ContinuousBernoulli", {t(0.3)}, {cb_mean}, {cb_var}},
      {"Dirichlet", {vec({2.0, 3.0, 5.0})}, {0.2, 0.3, 0.5}, {2 * 8 / 1100.0, 3 * 7 / 1100.0, 5 * 5 / 1100.0}},
      {"MultivariateNormal", {vec({1.0, -1.0}), mat({{2.0, 0.5}, {0.5, 1.0}})}, {1.0, -1.0}, {2.0, 1.0}},
      // diag(W W^T) + d with W rows (1, .5), (-.3, .8), (.2, -.6).
      {"LowRankMVN",
       {vec({1.0, 0.0, -1.0}), mat({{1.0, 0.5}, {-0.3, 0.8}, {0.2, -0.6}}), vec({0.5, 1.0, 1.5})},
       {1.0, 0.0, -1.0},
       {1.25 + 0.5, 0.73 + 1.0, 0.40 + 1.5}},
      // Var X_ij = df (S_ij^2 + S_ii S_jj).
      {"Wishart",
       {t(5.0), mat({{2.0, 0.3}, {0.3, 1.0}})},
       {10.0, 1.5, 1.5, 5.0},
       {5 * 8.0, 5 * (0.09 + 2.0), 5 * (0.09 + 2.0), 5 * 2.0}},
      {"Bernoulli", {t(0.3)}, {0.3}, {0.21}},
      {"BernoulliLogit", {t(-0.5)}, {pl}, {pl * (1 - pl)}},
      {"Poisson", {t(3.0)}, {3.0}, {3.0}},
      {"PoissonLog", {t(1.2)}, {std::exp(1.2)}, {std::exp(1.2)}},
      {"Binomial", {t(10.0), t(0.3)}, {3.0}, {2.1}},
      {"NegativeBinomial", {t(4.0), t(nb_p)}, {4 * nb_p / (1 - nb_p)}, {4 * nb_p / ((1 - nb_p) * (1 - nb_p))}},
  };
}

TEST(DistributionSampling, MomentsMatchClosedForms) {
  auto gen = seeded(2024);
  for (const auto& c : moment_cases()) {
    SCOPED_TRACE(c.family);
    const auto d = make_distribution(c.family, c.args);
    const at::Tensor x = d->has_rsample() ? d->rsample({kDraws}, gen) : d->sample({kDraws}, gen);
    expect_moments(x, c.mean, c.var);
    ASSERT_TRUE(d->has_mean());
    const at::Tensor m = d->mean().reshape({-1});
    for (size_t j = 0; j < c.mean.size(); ++j) EXPECT_NEAR(m[j].item<double>(), c.mean[j], 1e-12);
  }
}

TEST(DistributionSampling, FamiliesWithoutMomentsByTheirQuantiles) {
  auto gen = seeded(99);
  const double n = static_cast<double>(kDraws);
  auto fraction = [](const at::Tensor& mask) { return mask.to(at::kDouble).mean().item<double>(); };
  auto tol = [n](double p) { return 5 * std::sqrt(p * (1 - p) / n); };
  // logit of a LogitNormal draw is Normal(loc, scale).
  const at::Tensor y = at::logit(make_distribution("LogitNormal", {t(0.3), t(0.8)})->rsample({kDraws}, gen));
  expect_moments(y.unsqueeze(1), {0.3}, {0.64});
  // Cauchy(1, 2): quartiles at loc -/+ scale; HalfCauchy(2): median 2.
  EXPECT_NEAR(fraction(make_distribution("Cauchy", {t(1.0), t(2.0)})->rsample({kDraws}, gen) < 3.0), 0.75, tol(0.75));
  EXPECT_NEAR(fraction(make_distribution("Cauchy", {t(1.0), t(2.0)})->rsample({kDraws}, gen) < -1.0), 0.25, tol(0.25));
  EXPECT_NEAR(fraction(make_distribution("HalfCauchy", {t(2.0)})->rsample({kDraws}, gen) < 2.0), 0.5, tol(0.5));
  // RelaxedBernoulli: x > 1/2 exactly when the logistic noise exceeds -logit(p).
  EXPECT_NEAR(fraction(make_distribution("RelaxedBernoulli", {t(0.5), t(0.3)})->rsample({kDraws}, gen) > 0.5), 0.3,
              tol(0.3));
  // RelaxedOneHotCategorical: the argmax is Categorical(probs) (Gumbel-max).
  const at::Tensor r = make_distribution("RelaxedOneHotCategorical", {t(0.7), vec({0.2, 0.3, 0.5})})
                           ->rsample({kDraws}, gen)
                           .argmax(-1);
  for (int64_t k = 0; k < 3; ++k) {
    const double p = std::vector<double>{0.2, 0.3, 0.5}[k];
    EXPECT_NEAR(fraction(r == k), p, tol(p));
  }
  const at::Tensor c = make_distribution("Categorical", {vec({0.2, 0.3, 0.5})})->sample({kDraws}, gen);
  for (int64_t k = 0; k < 3; ++k) {
    const double p = std::vector<double>{0.2, 0.3, 0.5}[k];
    EXPECT_NEAR(fraction(c == k), p, tol(p));
  }
}

TEST(DistributionSampling, LkjCorrelationsHaveTheMarginalVariance) {
  // Every off-diagonal correlation of LKJ(eta) in dimension K has mean 0 and
  // variance 1 / (2 eta + K - 1); a wrong Beta parameter in any onion step changes it.
  auto gen = seeded(11);
  const int64_t k = 4;
  const double eta = 2.0;
  const auto d = make_distribution("LKJCholesky", {t(static_cast<double>(k)), t(eta)});
  const at::Tensor l = d->sample({kDraws}, gen);
  const at::Tensor corr = at::matmul(l, l.transpose(-1, -2));
  EXPECT_TRUE(at::allclose(corr.diagonal(0, -2, -1), at::ones({kDraws, k}, at::kDouble), 1e-9, 1e-9));
  const double v = 1 / (2 * eta + k - 1);
  for (int64_t i = 1; i < k; ++i) {
    for (int64_t j = 0; j < i; ++j) {
      SCOPED_TRACE("C[" + std::to_string(i) + ", " + std::to_string(j) + "]");
      // (C_ij + 1) / 2 ~ Beta(b, b) with b = eta - 1 + K/2: fourth moment known too.
      expect_moments(corr.select(-2, i).select(-1, j).unsqueeze(1), {0.0}, {v});
    }
  }
}

// ---- gradients -------------------------------------------------------------------------

at::Tensor direction_like(const at::Tensor& p, bool symmetric, at::Generator& gen) {
  at::Tensor d = at::randn(p.sizes(), gen, at::kDouble);
  if (symmetric) d = 0.5 * (d + d.transpose(-1, -2));
  return d;
}

bool contains(const std::vector<size_t>& v, size_t i) { return std::find(v.begin(), v.end(), i) != v.end(); }

// Per-draw pathwise gradients: parameter i is given N identical copies along a new
// leading batch dim, so draw n depends only on copy n. Their mean must be the
// derivative of the closed-form mean along a random direction.
TEST(DistributionGradients, RsampleGradientIsTheDerivativeOfTheMean) {
  auto gen = seeded(5);
  const int64_t n = 100000;
  for (const Case& c : all_cases()) {
    const auto base = make_distribution(c.family, c.args);
    if (!base->has_rsample() || !base->has_mean()) continue;
    const at::Tensor weights = at::randn(base->event_shape(), gen, at::kDouble);
    for (size_t i = 0; i < c.args.size(); ++i) {
      if (contains(c.integer_args, i)) continue;
      SCOPED_TRACE(c.family + " argument " + std::to_string(i));
      const at::Tensor dir = direction_like(c.args[i], contains(c.symmetric_args, i), gen);
      std::vector<int64_t> expanded = {n};
      for (int64_t s : c.args[i].sizes()) expanded.push_back(s);
      const at::Tensor copies = c.args[i].unsqueeze(0).expand(expanded).clone().requires_grad_();
      auto args = c.args;
      args[i] = copies;
      const at::Tensor x = make_distribution(c.family, args)->rsample({}, gen);
      ASSERT_EQ(x.size(0), n);
      ASSERT_TRUE(x.requires_grad());
      (x * weights).sum().backward();
      ASSERT_TRUE(copies.grad().defined());
      const at::Tensor per_draw = (copies.grad() * dir).reshape({n, -1}).sum(1);
      const double est = per_draw.mean().item<double>();
      const double se = per_draw.std().item<double>() / std::sqrt(static_cast<double>(n));
      const double h = 1e-6;
      auto weighted_mean = [&](double step) {
        auto shifted = c.args;
        shifted[i] = c.args[i] + step * dir;
        return (make_distribution(c.family, shifted)->mean() * weights).sum().item<double>();
      };
      const double want = (weighted_mean(h) - weighted_mean(-h)) / (2 * h);
      EXPECT_NEAR(est, want, 5 * se + 1e-6);
    }
  }
}

TEST(DistributionGradients, RsampleGradientReachesParametersOfFamiliesWithoutAMean) {
  auto gen = seeded(8);
  for (const Case& c : all_cases()) {
    const auto base = make_distribution(c.family, c.args);
    if (!base->has_rsample() || base->has_mean()) continue;
    SCOPED_TRACE(c.family);
    auto args = c.args;
    for (auto& a : args) a = a.clone().requires_grad_();
    make_distribution(c.family, args)->rsample({1000}, gen).pow(2).sum().backward();
    for (const auto& a : args) {
      ASSERT_TRUE(a.grad().defined());
      EXPECT_TRUE(at::isfinite(a.grad()).all().item<bool>());
      EXPECT_GT(a.grad().abs().sum().item<double>(), 0.0);
    }
  }
  // Cauchy draws are loc + scale * noise: d/dloc is exactly one per draw.
  const at::Tensor loc = t(1.0).requires_grad_();
  make_distribution("Cauchy", {loc, t(2.0)})->rsample({50}, gen).sum().backward();
  EXPECT_NEAR(loc.grad().item<double>(), 50.0, 1e-9);
}

// log_prob gradients with respect to every parameter (and the value, for
// continuous families) against central differences along a random direction.
TEST(DistributionGradients, LogProbGradientsMatchFiniteDifferences) {
  auto gen = seeded(13);
  for (const Case& c : all_cases()) {
    SCOPED_TRACE(c.family);
    const auto base = make_distribution(c.family, c.args);
    const at::Tensor value = base->sample({}, gen).to(at::kDouble);
    const double h = 1e-6;
    auto check = [&](const std::string& what, const at::Tensor& analytic, const std::function<double(double)>& f) {
      SCOPED_TRACE(what);
      const double fd = (f(h) - f(-h)) / (2 * h);
      EXPECT_NEAR(analytic.item<double>(), fd, 1e-5 * (1 + std::abs(fd)));
    };
    const bool simplex_probs = c.family == "Categorical" || c.family == "RelaxedOneHotCategorical";
    for (size_t i = 0; i < c.args.size(); ++i) {
      if (contains(c.integer_args, i)) continue;
      at::Tensor dir = direction_like(c.args[i], contains(c.symmetric_args, i), gen);
      if (simplex_probs && c.args[i].dim() == 1) dir = dir - dir.mean();  // stay on the simplex
      auto args = c.args;
      args[i] = c.args[i].clone().requires_grad_();
      make_distribution(c.family, args)->log_prob(value).sum().backward();
      check("argument " + std::to_string(i), (args[i].grad() * dir).sum(), [&](double step) {
        auto shifted = c.args;
        shifted[i] = c.args[i] + step * dir;
        return make_distribution(c.family, shifted, false)->log_prob(value).sum().item<double>();
      });
    }
    if (c.discrete) continue;
    at::Tensor dir = direction_like(value, c.family == "Wishart", gen);
    if (c.family == "Dirichlet" || c.family == "RelaxedOneHotCategorical") dir = dir - dir.mean();
    const at::Tensor x = value.clone().requires_grad_();
    const at::Tensor lp = base->log_prob(x).sum();
    // A density that is constant in the value (Uniform) has no gradient path to it.
    const at::Tensor grad = lp.requires_grad() ? (lp.backward(), x.grad()) : at::zeros_like(x);
    check("value", (grad * dir).sum(),
          [&](double step) { return base->log_prob(value + step * dir).sum().item<double>(); });
  }
}

}  // namespace
}  // namespace vguide::model
