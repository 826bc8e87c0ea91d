// The accuracy suite's references, each checked by a second method or a closed
// form, and each program's log joint against the density written out by hand, so
// that the program and its reference describe the same posterior.
#include <gtest/gtest.h>

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>

#include "accuracy/problems.hpp"
#include "accuracy/reference.hpp"
#include "test_config.hpp"
#include "vguide/guide.hpp"
#include "vguide/model/data.hpp"
#include "vguide/model/program.hpp"
#include "vguide/model/program_model.hpp"

namespace {
using namespace vguide::accuracy;
const std::string kSource = VGUIDE_TEST_SOURCE_DIR;
constexpr double kPi = 3.14159265358979323846;

double normal_lpdf(double x, double mu, double sigma) {
  const double z = (x - mu) / sigma;
  return -0.5 * z * z - std::log(sigma) - 0.5 * std::log(2.0 * kPi);
}

// ---- the Gaussian linear model ----

// Kalman's row-by-row update of the prior: another route to beta | sigma and to
// log p(y | sigma) as the sum of one-step predictive log densities.
ConditionalGaussian sequential_updates(const RegressionProblem& p, double sigma) {
  const size_t d = p.prior_mean.size();
  ConditionalGaussian g;
  g.mean = p.prior_mean;
  g.cov.resize(d);
  for (Vector& row : g.cov) row.assign(d, 0.0);
  for (size_t a = 0; a < d; ++a) g.cov[a][a] = p.prior_sd[a] * p.prior_sd[a];
  for (size_t i = 0; i < p.y.size(); ++i) {
    const Vector& x = p.X[i];
    Vector sx(d, 0.0);
    double predicted = 0.0, variance = sigma * sigma;
    for (size_t a = 0; a < d; ++a) {
      predicted += x[a] * g.mean[a];
      for (size_t b = 0; b < d; ++b) sx[a] += g.cov[a][b] * x[b];
    }
    for (size_t a = 0; a < d; ++a) variance += x[a] * sx[a];
    g.log_marginal += normal_lpdf(p.y[i], predicted, std::sqrt(variance));
    const double r = p.y[i] - predicted;
    for (size_t a = 0; a < d; ++a) g.mean[a] += sx[a] * r / variance;
    for (size_t a = 0; a < d; ++a)
      for (size_t b = 0; b < d; ++b) g.cov[a][b] -= sx[a] * sx[b] / variance;
  }
  return g;
}

TEST(RegressionReference, GivenSigmaMatchesSequentialUpdates) {
  for (const auto& [name, sigma] : std::vector<std::pair<std::string, double>>{
           {"kidiq", 18.0}, {"years", 0.3}, {"tiny_sd", 0.01}, {"ar5", 0.5}}) {
    const RegressionProblem p = regression_problem(name, kSource);
    const ConditionalGaussian exact = beta_given_sigma(p, sigma), kalman = sequential_updates(p, sigma);
    for (size_t a = 0; a < exact.mean.size(); ++a) {
      const double sd = std::sqrt(exact.cov[a][a]);
      EXPECT_NEAR(exact.mean[a], kalman.mean[a], 1e-6 * sd) << name << " mean " << a;
      for (size_t b = 0; b < exact.mean.size(); ++b)
        EXPECT_NEAR(exact.cov[a][b], kalman.cov[a][b], 1e-6 * sd * std::sqrt(exact.cov[b][b]))
            << name << " cov " << a << ", " << b;
    }
    EXPECT_NEAR(exact.log_marginal, kalman.log_marginal, 1e-7 * std::abs(kalman.log_marginal)) << name;
  }
}

TEST(RegressionReference, OneCoefficientAgreesWithATwoDimensionalGrid) {
  // y_i ~ Normal(beta x_i, sigma), beta ~ Normal(1, 2), sigma ~ HalfNormal(1): the
  // whole posterior on a (beta, log sigma) grid, sharing nothing with the reference.
  RegressionProblem p;
  Stream s(7);
  for (int i = 0; i < 15; ++i) {
    const double x = s.normal();
    p.X.push_back({x});
    p.y.push_back(2.0 * x + 0.5 * s.normal());
  }
  p.prior_mean = {1.0};
  p.prior_sd = {2.0};
  p.sigma_scale = 1.0;
  const RegressionPosterior post = regression_posterior(p);

  const int nb = 1500, nu = 1500;
  const double b_lo = -3.0, b_hi = 7.0, u_lo = -6.0, u_hi = 3.0;
  const double hb = (b_hi - b_lo) / (nb - 1), hu = (u_hi - u_lo) / (nu - 1);
  std::vector<double> lp(static_cast<size_t>(nb) * nu);
  double top = -INFINITY;
  for (int i = 0; i < nb; ++i)
    for (int j = 0; j < nu; ++j) {
      const double beta = b_lo + hb * i, u = u_lo + hu * j, sigma = std::exp(u);
      double v = normal_lpdf(beta, 1.0, 2.0) + normal_lpdf(sigma, 0.0, 1.0) + u;
      for (size_t r = 0; r < p.y.size(); ++r) v += normal_lpdf(p.y[r], beta * p.X[r][0], sigma);
      lp[static_cast<size_t>(i) * nu + j] = v;
      top = std::max(top, v);
    }
  double total = 0, b1 = 0, b2 = 0, s1 = 0, s2 = 0;
  for (int i = 0; i < nb; ++i)
    for (int j = 0; j < nu; ++j) {
      const double beta = b_lo + hb * i, sigma = std::exp(u_lo + hu * j);
      const double w = std::exp(lp[static_cast<size_t>(i) * nu + j] - top);
      total += w;
      b1 += w * beta;
      b2 += w * beta * beta;
      s1 += w * sigma;
      s2 += w * sigma * sigma;
    }
  const double b_mean = b1 / total, s_mean = s1 / total;
  EXPECT_NEAR(post.beta[0].mean, b_mean, 1e-6);
  EXPECT_NEAR(post.beta[0].sd, std::sqrt(b2 / total - b_mean * b_mean), 1e-6);
  EXPECT_NEAR(post.sigma.mean, s_mean, 1e-6);
  EXPECT_NEAR(post.sigma.sd, std::sqrt(s2 / total - s_mean * s_mean), 1e-6);
}

TEST(RegressionReference, ConvergedInTheNumberOfNodes) {
  for (const std::string name : {"kidiq", "years", "tiny_sd", "ar5"}) {
    const RegressionProblem p = regression_problem(name, kSource);
    const RegressionPosterior coarse = regression_posterior(p, 1001), fine = regression_posterior(p, 4001);
    for (size_t a = 0; a < fine.beta.size(); ++a) {
      EXPECT_NEAR(coarse.beta[a].mean, fine.beta[a].mean, 1e-8 * fine.beta[a].sd) << name;
      EXPECT_NEAR(coarse.beta[a].sd, fine.beta[a].sd, 1e-8 * fine.beta[a].sd) << name;
    }
    EXPECT_NEAR(coarse.sigma.mean, fine.sigma.mean, 1e-8 * fine.sigma.sd) << name;
  }
}

TEST(RegressionReference, PosteriorsHaveTheShapesTheIssueDescribes) {
  const RegressionPosterior kidiq = regression_posterior(regression_problem("kidiq", kSource));
  EXPECT_LT(kidiq.correlation(0, 1), -0.98);
  EXPECT_GT(kidiq.correlation(0, 1), -0.995);
  const RegressionPosterior years = regression_posterior(regression_problem("years", kSource));
  EXPECT_LT(years.correlation(0, 1), -0.9999);
  const RegressionPosterior tiny = regression_posterior(regression_problem("tiny_sd", kSource));
  for (const Moments& m : tiny.beta) {
    EXPECT_GT(m.sd, 5e-4);
    EXPECT_LT(m.sd, 2e-3);
  }
  EXPECT_EQ(regression_problem("ar5", kSource).y.size(), 200u);
}

// ---- importance sampling ----

TEST(ImportanceReference, RecoversLogGammaMomentsExactly) {
  // x = log g, g ~ Gamma(a, 1): log density a x - e^x, skewed; for integer a the
  // mean is digamma(a) = -gamma + sum_{k<a} 1/k and the variance trigamma(a) =
  // pi²/6 - sum_{k<a} 1/k². Its form is the Poisson-log likelihood's.
  const std::vector<int> a = {1, 3, 10};
  Target t;
  t.dim = 3;
  t.log_density = [&](const Vector& x) {
    double s = 0.0;
    for (size_t i = 0; i < 3; ++i) s += a[i] * x[i] - std::exp(x[i]);
    return s;
  };
  t.derivatives = [&](const Vector& x, Vector& g, Matrix& h) {
    g.assign(3, 0.0);
    h.assign(3, Vector(3, 0.0));
    for (size_t i = 0; i < 3; ++i) {
      g[i] = a[i] - std::exp(x[i]);
      h[i][i] = -std::exp(x[i]);
    }
  };
  const ImportanceResult r = laplace_t_importance(t, 200000, 5, 11);
  EXPECT_GT(r.ess, 0.3 * static_cast<double>(r.draws));
  for (size_t i = 0; i < 3; ++i) {
    double digamma = -0.57721566490153286, trigamma = kPi * kPi / 6.0;
    for (int k = 1; k < a[i]; ++k) {
      digamma += 1.0 / k;
      trigamma -= 1.0 / (static_cast<double>(k) * k);
    }
    EXPECT_NEAR(r.mode[i], std::log(a[i]), 1e-10);
    EXPECT_NEAR(r.moments[i].mean, digamma, 4.0 * r.mean_se[i]) << "a = " << a[i];
    EXPECT_NEAR(r.moments[i].sd, std::sqrt(trigamma), 0.01 * std::sqrt(trigamma)) << "a = " << a[i];
  }
}

TEST(ImportanceReference, GpTwoProposalsAgreeWithinMonteCarloError) {
  const Target t = poisson_gp_target(gp_problem(kSource));
  const ImportanceResult a = laplace_t_importance(t, kGpDraws, 5, 20261125);
  const ImportanceResult b = laplace_t_importance(t, kGpDraws, 12, 99);
  EXPECT_GT(a.ess, 1e4);
  EXPECT_GT(b.ess, 1e4);
  for (size_t i = 0; i < a.moments.size(); ++i) {
    EXPECT_NEAR(a.moments[i].mean, b.moments[i].mean, 5.0 * std::hypot(a.mean_se[i], b.mean_se[i])) << "eta " << i;
    EXPECT_NEAR(a.moments[i].sd, b.moments[i].sd, 0.03 * a.moments[i].sd) << "eta " << i;
    // Monte Carlo error well below the suite's tolerance (0.1 posterior sd).
    EXPECT_LT(a.mean_se[i], 0.02 * a.moments[i].sd) << "eta " << i;
  }
}

TEST(GpReference, TheJitterIsNeeded) {
  // Without the 1e-10 on its diagonal the kernel is not numerically positive
  // definite even in double precision; with it, it is: the program's Cholesky is the
  // one Stan users write, and the reference factors the same matrix.
  const PoissonGpProblem p = gp_problem(kSource);
  Matrix kernel = cov_exp_quad(p.x, p.alpha, p.rho);
  EXPECT_THROW(cholesky(kernel), std::domain_error);
  for (size_t i = 0; i < kernel.size(); ++i) kernel[i][i] += p.jitter;
  const Matrix l = cholesky(kernel);
  double smallest = INFINITY;
  for (size_t i = 0; i < l.size(); ++i) smallest = std::min(smallest, l[i][i] * l[i][i]);
  // The smallest pivot is a few float32 epsilons (1.2e-7) of the kernel's scale alpha² = 1.
  EXPECT_LT(smallest, 1e-6);
}

// ---- the normalised targets and the Gaussian ----

TEST(NormalisedTargets, IntegrateToOne) {
  // banana in (z_1, t = 3 (z_2 - 0.5 z_1² + 1)), funnel in (v, t = x e^(-v/2)): both
  // substitutions have unit or known Jacobians and keep the grid's mass on it.
  const Posterior banana = load_posterior("banana", kSource), funnel = load_posterior("funnel", kSource);
  const int n = 1200;
  double banana_mass = 0.0, funnel_mass = 0.0;
  const double lo = -12.0, h = 24.0 / (n - 1);
  for (int i = 0; i < n; ++i)
    for (int j = 0; j < n; ++j) {
      const double a = lo + h * i, t = lo + h * j;
      banana_mass += std::exp(banana.log_joint({{"z_1", {a}}, {"z_2", {0.5 * a * a - 1.0 + t / 3.0}}})) / 3.0;
      funnel_mass += std::exp(funnel.log_joint({{"v", {a}}, {"x", {t * std::exp(0.5 * a)}}})) * std::exp(0.5 * a);
    }
  EXPECT_NEAR(banana_mass * h * h, 1.0, 1e-8);
  EXPECT_NEAR(funnel_mass * h * h, 1.0, 1e-8);
}

TEST(GaussianReference, MeanIsTheModeAndCovarianceTheInverseNegativeHessian) {
  const Posterior g = load_posterior("gauss3", kSource);
  Vector m;
  for (const auto& q : g.reference) m.push_back(q.mean);
  auto f = [&](Vector z) { return g.log_joint({{"z", z}}); };
  // Central differences of the hand-written density at the reference mean.
  Matrix hessian(3, Vector(3));
  for (size_t i = 0; i < 3; ++i) {
    const double hi = 1e-3 * g.reference[i].sd;
    Vector up = m, down = m;
    up[i] += hi;
    down[i] -= hi;
    EXPECT_NEAR((f(up) - f(down)) / (2 * hi), 0.0, 1e-6 / g.reference[i].sd) << "gradient " << i;
    for (size_t j = 0; j < 3; ++j) {
      const double hj = 1e-3 * g.reference[j].sd;
      Vector pp = m, pm = m, mp = m, mm = m;
      pp[i] += hi, pp[j] += hj, pm[i] += hi, pm[j] -= hj, mp[i] -= hi, mp[j] += hj, mm[i] -= hi, mm[j] -= hj;
      hessian[i][j] = (f(pp) - f(pm) - f(mp) + f(mm)) / (4 * hi * hj);
    }
  }
  // -H⁻¹ against the reference's covariance: sd_i sd_j rho_ij with rho_12 = -0.95.
  Matrix negative(3, Vector(3));
  for (size_t i = 0; i < 3; ++i)
    for (size_t j = 0; j < 3; ++j) negative[i][j] = -0.5 * (hessian[i][j] + hessian[j][i]);
  const Matrix cov = cholesky_inverse(cholesky(negative));
  for (size_t i = 0; i < 3; ++i) EXPECT_NEAR(std::sqrt(cov[i][i]), g.reference[i].sd, 1e-4 * g.reference[i].sd);
  EXPECT_NEAR(cov[0][1] / std::sqrt(cov[0][0] * cov[1][1]), -0.95, 1e-4);
}

// ---- each program against its hand-written log joint ----

class ProgramDensity : public ::testing::TestWithParam<std::string> {};

TEST_P(ProgramDensity, LogJointMatchesTheHandWrittenDensity) {
  const Posterior post = load_posterior(GetParam(), kSource);
  vguide::model::ProgramModel model(vguide::model::load_program(post.program_path),
                                    vguide::model::load_data(post.data_path));
  auto latents = model.latent_names();
  std::sort(latents.begin(), latents.end());
  std::vector<std::string> expected;
  for (const auto& [name, shape] : post.latent_shapes) expected.push_back(name);
  ASSERT_EQ(latents, expected);
  ASSERT_FALSE(post.test_points.empty());
  for (const Point& point : post.test_points) {
    vguide::SiteValues values;
    for (const auto& [name, shape] : post.latent_shapes) {
      std::vector<int64_t> full{1};
      full.insert(full.end(), shape.begin(), shape.end());
      values[name] = at::tensor(point.at(name), at::kDouble).reshape(full);
    }
    const double program = model.log_joint(vguide::particles(1, at::kDouble), values).item<double>();
    const double by_hand = post.log_joint(point);
    EXPECT_NEAR(program, by_hand, 1e-9 * std::max(1.0, std::abs(by_hand))) << post.name;
  }
}

INSTANTIATE_TEST_SUITE_P(Accuracy, ProgramDensity, ::testing::ValuesIn(posterior_names()),
                         [](const auto& info) { return info.param; });

}  // namespace
