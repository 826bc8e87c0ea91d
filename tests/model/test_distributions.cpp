// The distribution library: log densities against closed forms written out here
// (normalising constants included), supports, argument checks with their exact
// messages, broadcasting, and the family registry.
#include <gtest/gtest.h>
#include <torch/autograd.h>

#include <algorithm>

#include <cmath>
#include <functional>
#include <limits>
#include <set>

#include "distribution_cases.hpp"

namespace vguide::model {
namespace {

using testing::all_cases;
using testing::mat;
using testing::message_of;
using testing::seeded;
using testing::t;
using testing::vec;

const double kInf = std::numeric_limits<double>::infinity();
const double kPi = M_PI;

double normal_lp(double x, double m, double s) {
  const double z = (x - m) / s;
  return -0.5 * z * z - std::log(s) - 0.5 * std::log(2 * kPi);
}
double phi_cdf(double z) { return 0.5 * std::erfc(-z / std::sqrt(2.0)); }
double lbeta(double a, double b) { return std::lgamma(a) + std::lgamma(b) - std::lgamma(a + b); }

// log_prob at each point, one call per point and one call on all points at once,
// against `expected`.
void expect_log_prob(const std::string& family, const std::vector<at::Tensor>& args, const std::vector<double>& xs,
                     const std::function<double(double)>& expected) {
  SCOPED_TRACE(family);
  const auto d = make_distribution(family, args);
  const at::Tensor all = d->log_prob(vec(xs));
  for (size_t i = 0; i < xs.size(); ++i) {
    SCOPED_TRACE("x = " + std::to_string(xs[i]));
    const double want = expected(xs[i]);
    const double got = d->log_prob(t(xs[i])).item<double>();
    if (std::isinf(want)) {
      EXPECT_EQ(got, want);
    } else {
      EXPECT_NEAR(got, want, 1e-10 * (1 + std::abs(want)));
    }
    EXPECT_TRUE(std::isinf(want) ? all[i].item<double>() == want
                                 : std::abs(all[i].item<double>() - want) <= 1e-10 * (1 + std::abs(want)));
  }
}

// ---- closed forms ------------------------------------------------------------------

TEST(DistributionLogProb, WellKnownNumbers) {
  auto lp = [](const std::string& f, std::vector<at::Tensor> args, at::Tensor x) {
    return make_distribution(f, args)->log_prob(x).item<double>();
  };
  EXPECT_NEAR(lp("Normal", {t(0), t(1)}, t(0)), -0.91893853320467274178, 1e-14);
  EXPECT_NEAR(lp("Exponential", {t(1)}, t(1)), -1.0, 1e-14);
  EXPECT_NEAR(lp("Uniform", {t(0), t(4)}, t(1.3)), -std::log(4.0), 1e-14);
  EXPECT_NEAR(lp("Poisson", {t(1)}, t(0)), -1.0, 1e-14);
  EXPECT_NEAR(lp("Binomial", {t(10), t(0.5)}, t(5)), std::log(252.0 / 1024.0), 1e-13);
  EXPECT_NEAR(lp("Beta", {t(2), t(2)}, t(0.5)), std::log(1.5), 1e-14);
  EXPECT_NEAR(lp("Beta", {t(1), t(1)}, t(0.0)), 0.0, 1e-14);
  EXPECT_NEAR(lp("Dirichlet", {vec({1, 1, 1})}, vec({0.2, 0.3, 0.5})), std::log(2.0), 1e-14);
  EXPECT_NEAR(lp("Cauchy", {t(0), t(1)}, t(0)), -std::log(kPi), 1e-14);
  EXPECT_NEAR(lp("Chi2", {t(2)}, t(3)), std::log(0.5) - 1.5, 1e-14);  // Chi2(2) = Exponential(1/2)
  EXPECT_NEAR(lp("Kumaraswamy", {t(1), t(1)}, t(0.7)), 0.0, 1e-14);
  EXPECT_NEAR(lp("ContinuousBernoulli", {t(0.5)}, t(0.3)), 0.0, 1e-12);  // uniform on [0, 1]
}

TEST(DistributionLogProb, NormalFamily) {
  expect_log_prob("Normal", {t(0.5), t(2.0)}, {-3.0, 0.0, 0.5, 4.0}, [](double x) { return normal_lp(x, 0.5, 2.0); });
  expect_log_prob("HalfNormal", {t(1.5)}, {-0.1, 0.0, 0.7, 3.0}, [](double x) {
    return x < 0 ? -kInf : std::log(2.0) + normal_lp(x, 0, 1.5);
  });
  expect_log_prob("LogNormal", {t(0.2), t(0.5)}, {-1.0, 0.3, 1.0, 2.5}, [](double x) {
    return x <= 0 ? -kInf : normal_lp(std::log(x), 0.2, 0.5) - std::log(x);
  });
  expect_log_prob("LogitNormal", {t(0.3), t(0.8)}, {0.1, 0.5, 0.9, 1.2}, [](double x) {
    return x >= 1 ? -kInf : normal_lp(std::log(x / (1 - x)), 0.3, 0.8) - std::log(x * (1 - x));
  });
}

TEST(DistributionLogProb, TruncatedNormalIncludingAFarTail) {
  expect_log_prob("TruncatedNormal", {t(0.5), t(1.5), t(-1.0), t(2.0)}, {-1.5, -1.0, 0.0, 1.9, 2.1}, [](double x) {
    if (x < -1 || x > 2) return -kInf;
    const double z = phi_cdf((2.0 - 0.5) / 1.5) - phi_cdf((-1.0 - 0.5) / 1.5);
    return normal_lp(x, 0.5, 1.5) - std::log(z);
  });
  // [5, 7] standard units above the mean: Phi(7) - Phi(5) from erfc keeps its digits.
  expect_log_prob("TruncatedNormal", {t(0.0), t(1.0), t(5.0), t(7.0)}, {5.0, 5.5, 6.9}, [](double x) {
    const double z = 0.5 * (std::erfc(5.0 / std::sqrt(2.0)) - std::erfc(7.0 / std::sqrt(2.0)));
    return normal_lp(x, 0, 1) - std::log(z);
  });
  // ... and below it.
  expect_log_prob("TruncatedNormal", {t(0.0), t(1.0), t(-7.0), t(-5.0)}, {-6.0, -5.0}, [](double x) {
    const double z = 0.5 * (std::erfc(5.0 / std::sqrt(2.0)) - std::erfc(7.0 / std::sqrt(2.0)));
    return normal_lp(x, 0, 1) - std::log(z);
  });
}

TEST(DistributionLogProb, HeavyTailedAndLocationScale) {
  expect_log_prob("Cauchy", {t(1.0), t(2.0)}, {-5.0, 1.0, 3.0}, [](double x) {
    const double z = (x - 1) / 2;
    return -std::log(kPi * 2 * (1 + z * z));
  });
  expect_log_prob("HalfCauchy", {t(2.0)}, {-1.0, 0.0, 3.0}, [](double x) {
    return x < 0 ? -kInf : std::log(2.0 / (kPi * 2 * (1 + x * x / 4)));
  });
  expect_log_prob("StudentT", {t(5.0), t(1.0), t(2.0)}, {-4.0, 1.0, 2.5}, [](double x) {
    const double nu = 5, z = (x - 1) / 2;
    return std::lgamma((nu + 1) / 2) - std::lgamma(nu / 2) - 0.5 * std::log(nu * kPi) - std::log(2.0) -
           (nu + 1) / 2 * std::log(1 + z * z / nu);
  });
  // StudentT with one degree of freedom is the Cauchy.
  expect_log_prob("StudentT", {t(1.0), t(0.0), t(1.0)}, {0.0, 2.0}, [](double x) {
    return -std::log(kPi * (1 + x * x));
  });
  expect_log_prob("Laplace", {t(1.0), t(2.0)}, {-3.0, 1.0, 4.0},
                  [](double x) { return -std::log(4.0) - std::abs(x - 1) / 2; });
  expect_log_prob("Gumbel", {t(1.0), t(2.0)}, {-2.0, 1.0, 6.0}, [](double x) {
    const double z = (x - 1) / 2;
    return -std::log(2.0) - z - std::exp(-z);
  });
}

TEST(DistributionLogProb, PositiveFamilies) {
  expect_log_prob("Exponential", {t(2.0)}, {-1.0, 0.0, 1.5}, [](double x) {
    return x < 0 ? -kInf : std::log(2.0) - 2 * x;
  });
  expect_log_prob("Gamma", {t(3.0), t(2.0)}, {-1.0, 0.5, 2.0, 7.0}, [](double x) {
    return x < 0 ? -kInf : 3 * std::log(2.0) + 2 * std::log(x) - 2 * x - std::lgamma(3.0);
  });
  expect_log_prob("Gamma", {t(1.0), t(2.0)}, {0.0}, [](double) { return std::log(2.0); });
  expect_log_prob("InverseGamma", {t(5.0), t(2.0)}, {-1.0, 0.2, 0.5, 3.0}, [](double x) {
    return x <= 0 ? -kInf : 5 * std::log(2.0) - std::lgamma(5.0) - 6 * std::log(x) - 2 / x;
  });
  expect_log_prob("Chi2", {t(4.0)}, {-1.0, 0.5, 3.0, 10.0}, [](double x) {
    return x < 0 ? -kInf : -2 * std::log(2.0) - std::lgamma(2.0) + std::log(x) - x / 2;
  });
  expect_log_prob("Weibull", {t(2.0), t(1.5)}, {-1.0, 0.3, 2.0, 5.0}, [](double x) {
    return x < 0 ? -kInf : std::log(1.5 / 2) + 0.5 * std::log(x / 2) - std::pow(x / 2, 1.5);
  });
  // Weibull with concentration 1 is the Exponential with rate 1/scale.
  expect_log_prob("Weibull", {t(2.0), t(1.0)}, {0.0, 3.0}, [](double x) { return std::log(0.5) - x / 2; });
  expect_log_prob("Pareto", {t(1.0), t(5.0)}, {0.5, 1.0, 2.0, 10.0}, [](double x) {
    return x < 1 ? -kInf : std::log(5.0) + 5 * std::log(1.0) - 6 * std::log(x);
  });
  expect_log_prob("Pareto", {t(2.0), t(3.0)}, {2.5}, [](double x) {
    return std::log(3.0) + 3 * std::log(2.0) - 4 * std::log(x);
  });
  expect_log_prob("FisherSnedecor", {t(5.0), t(10.0)}, {-1.0, 0.4, 1.0, 3.0}, [](double x) {
    if (x < 0) return -kInf;
    const double d1 = 5, d2 = 10;
    return 0.5 * (d1 * std::log(d1 * x) + d2 * std::log(d2) - (d1 + d2) * std::log(d1 * x + d2)) - std::log(x) -
           lbeta(d1 / 2, d2 / 2);
  });
}

TEST(DistributionLogProb, GeneralizedParetoForEachSignOfTheShape) {
  auto gpd = [](double loc, double scale, double c) {
    return [=](double x) {
      const double z = (x - loc) / scale;
      if (z < 0 || (c < 0 && z > -1 / c)) return -kInf;
      return c == 0 ? -std::log(scale) - z : -std::log(scale) - (1 / c + 1) * std::log(1 + c * z);
    };
  };
  expect_log_prob("GeneralizedPareto", {t(0.5), t(2.0), t(0.2)}, {0.0, 0.5, 1.5, 20.0}, gpd(0.5, 2.0, 0.2));
  expect_log_prob("GeneralizedPareto", {t(0.5), t(2.0), t(0.0)}, {0.0, 0.5, 1.5, 20.0}, gpd(0.5, 2.0, 0.0));
  // c = -0.5: support [0.5, 0.5 + 2 / 0.5] = [0.5, 4.5].
  expect_log_prob("GeneralizedPareto", {t(0.5), t(2.0), t(-0.5)}, {0.5, 2.0, 4.4, 4.6}, gpd(0.5, 2.0, -0.5));
  EXPECT_EQ(make_distribution("GeneralizedPareto", {t(0.5), t(2.0), t(-0.5)})->support().to_string(),
            "interval(0.5, 4.5)");
}

TEST(DistributionLogProb, UnitIntervalFamilies) {
  expect_log_prob("Beta", {t(2.0), t(3.0)}, {-0.1, 0.0, 0.2, 0.7, 1.0}, [](double x) {
    if (x < 0 || x > 1) return -kInf;
    if (x == 0) return -kInf;  // (a - 1) log 0
    if (x == 1) return -kInf;
    return std::log(x) + 2 * std::log(1 - x) - lbeta(2, 3);
  });
  expect_log_prob("Kumaraswamy", {t(2.0), t(3.0)}, {0.1, 0.5, 0.9, 1.1}, [](double x) {
    return x > 1 ? -kInf : std::log(6.0) + std::log(x) + 2 * std::log(1 - x * x);
  });
  expect_log_prob("Uniform", {t(-1.0), t(3.0)}, {-1.5, -1.0, 0.0, 3.0, 3.5}, [](double x) {
    return (x < -1 || x > 3) ? -kInf : -std::log(4.0);
  });
  for (double p : {0.1, 0.3, 0.5, 0.50001, 0.8}) {
    expect_log_prob("ContinuousBernoulli", {t(p)}, {0.0, 0.25, 1.0}, [p](double x) {
      const double log_c = std::abs(p - 0.5) < 1e-3
                               ? std::log(2.0) + 4.0 / 3 * (p - 0.5) * (p - 0.5)
                               : std::log(2 * std::atanh(1 - 2 * p) / (1 - 2 * p));
      return log_c + x * std::log(p) + (1 - x) * std::log(1 - p);
    });
  }
  // Binary Concrete density as printed by Maddison et al. (2017).
  expect_log_prob("RelaxedBernoulli", {t(0.5), t(0.3)}, {0.05, 0.3, 0.5, 0.95}, [](double x) {
    const double T = 0.5, a = 0.3 / 0.7;
    const double num = T * a * std::pow(x, -T - 1) * std::pow(1 - x, -T - 1);
    const double den = std::pow(a * std::pow(x, -T) + std::pow(1 - x, -T), 2);
    return std::log(num / den);
  });
}

TEST(DistributionLogProb, DiscreteFamilies) {
  expect_log_prob("Bernoulli", {t(0.3)}, {0.0, 1.0, 0.5, 2.0}, [](double x) {
    return x == 0 ? std::log(0.7) : x == 1 ? std::log(0.3) : -kInf;
  });
  expect_log_prob("Bernoulli", {t(0.0)}, {0.0, 1.0}, [](double x) { return x == 0 ? 0.0 : -kInf; });
  expect_log_prob("BernoulliLogit", {t(-0.5)}, {0.0, 1.0, -1.0}, [](double x) {
    const double p = 1 / (1 + std::exp(0.5));
    return x == 0 ? std::log(1 - p) : x == 1 ? std::log(p) : -kInf;
  });
  expect_log_prob("Categorical", {vec({0.25, 0.5, 0.25})}, {0.0, 1.0, 2.0, 3.0, -1.0, 1.5}, [](double x) {
    return x == 0 || x == 2 ? std::log(0.25) : x == 1 ? std::log(0.5) : -kInf;
  });
  expect_log_prob("Poisson", {t(3.0)}, {0.0, 2.0, 7.0, -1.0, 2.5}, [](double x) {
    if (x < 0 || std::floor(x) != x) return -kInf;
    return x * std::log(3.0) - 3 - std::lgamma(x + 1);
  });
  expect_log_prob("Poisson", {t(0.0)}, {0.0, 1.0}, [](double x) { return x == 0 ? 0.0 : -kInf; });
  expect_log_prob("PoissonLog", {t(1.2)}, {0.0, 3.0, 9.0}, [](double x) {
    return x * 1.2 - std::exp(1.2) - std::lgamma(x + 1);
  });
  expect_log_prob("Binomial", {t(10.0), t(0.3)}, {0.0, 3.0, 10.0, 11.0, -1.0}, [](double x) {
    if (x < 0 || x > 10) return -kInf;
    return std::lgamma(11) - std::lgamma(x + 1) - std::lgamma(11 - x) + x * std::log(0.3) +
           (10 - x) * std::log(0.7);
  });
  expect_log_prob("NegativeBinomial", {t(4.0), t(0.4)}, {0.0, 3.0, 12.0, -2.0}, [](double x) {
    if (x < 0) return -kInf;
    return std::lgamma(x + 4) - std::lgamma(x + 1) - std::lgamma(4.0) + 4 * std::log(0.6) + x * std::log(0.4);
  });
  // total_count 1: the number of successes before the first failure, (1 - p) p^k.
  expect_log_prob("NegativeBinomial", {t(1.0), t(0.25)}, {0.0, 2.0}, [](double x) {
    return std::log(0.75) + x * std::log(0.25);
  });
}

TEST(DistributionLogProb, DirichletAndRelaxedOneHot) {
  const auto d = make_distribution("Dirichlet", {vec({2.0, 3.0, 5.0})});
  for (const auto& x : {std::vector<double>{0.2, 0.3, 0.5}, std::vector<double>{0.6, 0.1, 0.3}}) {
    const double want = std::log(x[0]) + 2 * std::log(x[1]) + 4 * std::log(x[2]) + std::lgamma(10.0) -
                        std::lgamma(2.0) - std::lgamma(3.0) - std::lgamma(5.0);
    EXPECT_NEAR(d->log_prob(vec(x)).item<double>(), want, 1e-12);
  }
  // Concrete density (Maddison et al. 2017):
  // (K-1)! T^(K-1) prod_k (a_k x_k^(-T-1)) / (sum_i a_i x_i^(-T))^K.
  const double T = 0.7;
  const std::vector<double> a = {0.2, 0.3, 0.5};
  const auto r = make_distribution("RelaxedOneHotCategorical", {t(T), vec(a)});
  for (const auto& x : {std::vector<double>{0.2, 0.3, 0.5}, std::vector<double>{0.01, 0.9, 0.09}}) {
    double prod = 1, sum = 0;
    for (int k = 0; k < 3; ++k) {
      prod *= a[k] * std::pow(x[k], -T - 1);
      sum += a[k] * std::pow(x[k], -T);
    }
    const double want = std::log(2.0 * T * T * prod / std::pow(sum, 3));
    EXPECT_NEAR(r->log_prob(vec(x)).item<double>(), want, 1e-11);
  }
}

TEST(DistributionLogProb, MultivariateNormalByTheTwoByTwoInverse) {
  const double a = 2.0, b = 0.5, c = 1.0;
  const auto d = make_distribution("MultivariateNormal", {vec({1.0, -1.0}), mat({{a, b}, {b, c}})});
  for (const auto& x : {std::vector<double>{1.0, -1.0}, std::vector<double>{0.0, 2.0}, std::vector<double>{3.0, -2.5}}) {
    const double det = a * c - b * b;
    const double d0 = x[0] - 1, d1 = x[1] + 1;
    const double quad = (c * d0 * d0 - 2 * b * d0 * d1 + a * d1 * d1) / det;
    const double want = -std::log(2 * kPi) - 0.5 * std::log(det) - 0.5 * quad;
    EXPECT_NEAR(d->log_prob(vec(x)).item<double>(), want, 1e-12);
  }
}

TEST(DistributionLogProb, LowRankMvnMatchesTheDenseCovariance) {
  const at::Tensor loc = vec({1.0, 0.0, -1.0});
  const at::Tensor w = mat({{1.0, 0.5}, {-0.3, 0.8}, {0.2, -0.6}});
  const at::Tensor diag = vec({0.5, 1.0, 1.5});
  const at::Tensor cov = at::matmul(w, w.t()) + at::diag(diag);
  const auto d = make_distribution("LowRankMVN", {loc, w, diag});
  const at::Tensor x = mat({{0.3, -0.2, 0.1}, {2.0, 1.0, -3.0}});
  const at::Tensor diff = x - loc;
  const at::Tensor quad = (at::matmul(diff, at::inverse(cov)) * diff).sum(-1);
  const at::Tensor want = -0.5 * (3 * std::log(2 * kPi) + at::logdet(cov) + quad);
  EXPECT_TRUE(at::allclose(d->log_prob(x), want, 1e-12, 1e-12));
}

TEST(DistributionLogProb, WishartReducesToGammaInOneDimension) {
  // W_1(df, s) is Gamma(df / 2, rate 1 / (2 s)).
  const auto d = make_distribution("Wishart", {t(5.0), mat({{2.0}})});
  for (double x : {0.5, 3.0, 12.0}) {
    const double want = 2.5 * std::log(0.25) + 1.5 * std::log(x) - 0.25 * x - std::lgamma(2.5);
    EXPECT_NEAR(d->log_prob(mat({{x}})).item<double>(), want, 1e-12);
  }
}

TEST(DistributionLogProb, WishartTwoByTwo) {
  const double nu = 5, s00 = 2.0, s01 = 0.3, s11 = 1.0;
  const auto d = make_distribution("Wishart", {t(nu), mat({{s00, s01}, {s01, s11}})});
  const double x00 = 4.0, x01 = -1.0, x11 = 3.0;
  const double det_s = s00 * s11 - s01 * s01, det_x = x00 * x11 - x01 * x01;
  // tr(S^-1 X) with S^-1 = [[s11, -s01], [-s01, s00]] / det_s.
  const double trace = (s11 * x00 - 2 * s01 * x01 + s00 * x11) / det_s;
  const double log_gamma2 = 0.5 * std::log(kPi) + std::lgamma(nu / 2) + std::lgamma((nu - 1) / 2);
  const double want = (nu - 3) / 2 * std::log(det_x) - 0.5 * trace - nu * std::log(2.0) -
                      nu / 2 * std::log(det_s) - log_gamma2;
  EXPECT_NEAR(d->log_prob(mat({{x00, x01}, {x01, x11}})).item<double>(), want, 1e-12);
  // Not positive definite: -inf.
  EXPECT_EQ(d->log_prob(mat({{1.0, 2.0}, {2.0, 1.0}})).item<double>(), -kInf);
}

TEST(DistributionLogProb, LkjCholesky) {
  // K = 2: L = [[1, 0], [r, sqrt(1 - r^2)]] and (r + 1) / 2 ~ Beta(eta, eta), so the
  // density of r is (1 - r^2)^(eta - 1) / (2^(2 eta - 1) B(eta, eta)).
  const double eta = 2.5;
  const auto d2 = make_distribution("LKJCholesky", {t(2), t(eta)});
  for (double r : {-0.7, 0.0, 0.4}) {
    const at::Tensor l = mat({{1.0, 0.0}, {r, std::sqrt(1 - r * r)}});
    const double want = (eta - 1) * std::log(1 - r * r) - (2 * eta - 1) * std::log(2.0) - lbeta(eta, eta);
    EXPECT_NEAR(d2->log_prob(l).item<double>(), want, 1e-12);
  }
  // K = 3, eta = 1: uniform over correlation matrices, whose volume is pi^2 / 2; the
  // map from (L10, L20, L21) to the correlations has Jacobian L11.
  const auto d3 = make_distribution("LKJCholesky", {t(3), t(1.0)});
  const double l10 = 0.3, l20 = -0.2, l21 = 0.5;
  const double l11 = std::sqrt(1 - l10 * l10), l22 = std::sqrt(1 - l20 * l20 - l21 * l21);
  const at::Tensor l = mat({{1, 0, 0}, {l10, l11, 0}, {l20, l21, l22}});
  EXPECT_NEAR(d3->log_prob(l).item<double>(), std::log(l11) - std::log(kPi * kPi / 2), 1e-12);
}

// ---- supports, shapes, flags --------------------------------------------------------

TEST(DistributionFamilies, EveryFamilyReportsItsSupportShapeAndSampler) {
  std::set<std::string> covered;
  for (const auto& c : all_cases()) {
    SCOPED_TRACE(c.family);
    const auto d = make_distribution(c.family, c.args);
    covered.insert(c.family);
    EXPECT_EQ(d->family(), c.family);
    EXPECT_EQ(d->support().to_string(), c.support);
    EXPECT_EQ(d->event_shape(), c.event);
    EXPECT_EQ(d->discrete(), c.discrete);
    EXPECT_EQ(d->has_rsample(), c.rsample);
    EXPECT_FALSE(d->dependent_support());
    const FamilyDoc* doc = find_family(c.family);
    ASSERT_NE(doc, nullptr);
    EXPECT_EQ(doc->params.size(), c.args.size());
    EXPECT_EQ(doc->discrete, c.discrete);
    EXPECT_EQ(doc->reparameterized, c.rsample);
  }
  const auto families = distribution_families();
  EXPECT_EQ(families.size(), 36u);
  EXPECT_EQ(covered.size(), families.size());
  for (const auto& f : families) EXPECT_TRUE(covered.count(f.name)) << f.name;
}

TEST(DistributionFamilies, DocsListParametersInOrder) {
  const FamilyDoc* n = find_family("Normal");
  ASSERT_NE(n, nullptr);
  EXPECT_EQ(n->params, (std::vector<std::string>{"loc", "scale"}));
  EXPECT_EQ(n->support, "real");
  EXPECT_EQ(n->event, "scalar");
  EXPECT_EQ(find_family("TruncatedNormal")->params, (std::vector<std::string>{"loc", "scale", "low", "high"}));
  EXPECT_EQ(find_family("Weibull")->params, (std::vector<std::string>{"scale", "concentration"}));
  EXPECT_EQ(find_family("NegativeBinomial")->params, (std::vector<std::string>{"total_count", "probs"}));
  EXPECT_EQ(find_family("Wishart")->event, "matrix (K, K)");
  EXPECT_EQ(find_family("Normla"), nullptr);
}

TEST(DistributionFamilies, DrawsLieInTheSupportAndHaveFiniteLogProb) {
  auto gen = seeded(7);
  for (const auto& c : all_cases()) {
    SCOPED_TRACE(c.family);
    const auto d = make_distribution(c.family, c.args);
    const at::Tensor x = d->sample({200}, gen);
    EXPECT_EQ(x.sizes().vec(), d->extended_shape({200}));
    EXPECT_FALSE(x.requires_grad());
    EXPECT_TRUE(d->in_support(x).all().item<bool>());
    EXPECT_TRUE(at::isfinite(d->log_prob(x)).all().item<bool>());
    if (!c.discrete) {
      EXPECT_TRUE(d->support().check(x).all().item<bool>());
    }
  }
}

TEST(DistributionFamilies, LogProbInSupportIsLogProbWithoutTheMask) {
  // For values in the support, the unmasked entry point gives the same numbers and
  // shapes (also where the density does not depend on the value: Uniform), and the
  // same gradients with respect to the parameters.
  auto gen = seeded(9);
  for (const auto& c : all_cases()) {
    SCOPED_TRACE(c.family);
    std::vector<at::Tensor> args;
    for (size_t i = 0; i < c.args.size(); ++i) {
      const bool integer = std::find(c.integer_args.begin(), c.integer_args.end(), i) != c.integer_args.end();
      args.push_back(integer ? c.args[i] : c.args[i].clone().requires_grad_(true));
    }
    const auto d = make_distribution(c.family, args);
    const at::Tensor x = d->sample({5}, gen);
    const at::Tensor a = d->log_prob(x), b = d->log_prob_in_support(x);
    ASSERT_EQ(a.sizes(), b.sizes());
    EXPECT_TRUE(at::allclose(a, b, 1e-12, 1e-12));
    std::vector<at::Tensor> grads_inputs;
    for (const auto& arg : args)
      if (arg.requires_grad()) grads_inputs.push_back(arg);
    if (grads_inputs.empty() || !a.requires_grad()) continue;
    const auto ga = torch::autograd::grad({a.sum()}, grads_inputs, {}, true, false, true);
    const auto gb = torch::autograd::grad({b.sum()}, grads_inputs, {}, true, false, true);
    for (size_t i = 0; i < ga.size(); ++i) {
      if (ga[i].defined()) {
        EXPECT_TRUE(at::allclose(ga[i], gb[i], 1e-12, 1e-12)) << i;
      }
    }
  }
  // Outside log_prob_in_support the mask is back: -inf outside the support.
  const auto h = make_distribution("HalfNormal", {t(1.0)});
  (void)h->log_prob_in_support(t(1.0));
  EXPECT_EQ(h->log_prob(t(-1.0)).item<double>(), -std::numeric_limits<double>::infinity());
}

TEST(DistributionFamilies, InSupportIsExactForIntegersAndBounds) {
  const auto p = make_distribution("Poisson", {t(3.0)});
  EXPECT_TRUE(at::equal(p->in_support(vec({0, 1, 2.5, -1, 7})),
                        at::tensor(std::vector<uint8_t>{1, 1, 0, 0, 1}).to(at::kBool)));
  const auto b = make_distribution("Binomial", {vec({2, 5}), t(0.5)});
  EXPECT_TRUE(at::equal(b->in_support(vec({3, 3})), at::tensor(std::vector<uint8_t>{0, 1}).to(at::kBool)));
  const auto u = make_distribution("Uniform", {vec({0, 1}), vec({1, 2})});
  EXPECT_TRUE(at::equal(u->in_support(t(0.5)), at::tensor(std::vector<uint8_t>{1, 0}).to(at::kBool)));
  const auto dir = make_distribution("Dirichlet", {vec({1, 1, 1})});
  EXPECT_TRUE(dir->in_support(vec({0.2, 0.3, 0.5})).item<bool>());
  EXPECT_FALSE(dir->in_support(vec({0.2, 0.3, 0.6})).item<bool>());
}

TEST(DistributionFamilies, ParameterDependentSupports) {
  // Constant scalar bounds pin the support; tensor or differentiable ones do not.
  EXPECT_EQ(make_distribution("Uniform", {t(0), t(2)})->support(), constraints::interval(0, 2));
  const auto u = make_distribution("Uniform", {vec({0, 1}), t(2)});
  EXPECT_TRUE(u->dependent_support());
  EXPECT_EQ(u->support(), constraints::real());
  const auto p = make_distribution("Pareto", {t(2.0).requires_grad_(), t(3.0)});
  EXPECT_TRUE(p->dependent_support());
  EXPECT_EQ(p->support(), constraints::positive());
  EXPECT_EQ(make_distribution("Pareto", {t(2.0), t(3.0)})->support(), constraints::greater_than(2));
  EXPECT_TRUE(make_distribution("TruncatedNormal", {t(0), t(1), vec({-1, 0}), t(1)})->dependent_support());
  EXPECT_TRUE(make_distribution("Binomial", {vec({3, 4}), t(0.5)})->dependent_support());
  EXPECT_EQ(make_distribution("Categorical", {vec({1.0})})->support().to_string(), "interval(0, 0)");
}

TEST(DistributionFamilies, SamplersWithoutReparameterisationSayWhichFamily) {
  auto gen = seeded(1);
  EXPECT_EQ(message_of<std::logic_error>([&] { make_distribution("Bernoulli", {t(0.3)})->rsample({2}, gen); }),
            "Bernoulli: rsample is not available (no reparameterised sampler); use sample()");
  EXPECT_EQ(message_of<std::logic_error>(
                [&] { make_distribution("LKJCholesky", {t(3), t(1.0)})->rsample({2}, gen); }),
            "LKJCholesky: rsample is not available (no reparameterised sampler); use sample()");
  EXPECT_EQ(message_of<std::logic_error>([&] { make_distribution("Cauchy", {t(0), t(1)})->mean(); }),
            "Cauchy: has no closed-form mean");
  EXPECT_FALSE(make_distribution("Cauchy", {t(0), t(1)})->has_mean());
}

TEST(DistributionFamilies, CategoricalDrawsAreInt64Indices) {
  auto gen = seeded(3);
  const auto d = make_distribution("Categorical", {mat({{0.1, 0.9}, {1.0, 0.0}})});
  const at::Tensor x = d->sample({1000}, gen);
  EXPECT_EQ(x.scalar_type(), at::kLong);
  EXPECT_EQ(x.sizes().vec(), (std::vector<int64_t>{1000, 2}));
  EXPECT_TRUE((x.select(1, 1) == 0).all().item<bool>());  // the second row has all mass on 0
  EXPECT_NEAR(x.select(1, 0).to(at::kDouble).mean().item<double>(), 0.9, 0.05);
}

TEST(DistributionFamilies, IntegerArgumentsArePromotedToFloatingPoint) {
  const auto d = make_distribution("Poisson", {at::tensor(std::vector<int64_t>{3})});
  const at::Tensor lp = d->log_prob(at::tensor(std::vector<int64_t>{2}));
  EXPECT_TRUE(at::isFloatingType(lp.scalar_type()));
  EXPECT_NEAR(lp.item<double>(), 2 * std::log(3.0) - 3 - std::log(2.0), 1e-6);
  const auto f = make_distribution("Normal", {at::scalar_tensor(0.0, at::kFloat), at::scalar_tensor(1.0, at::kFloat)});
  EXPECT_EQ(f->log_prob(t(0.5)).scalar_type(), at::kFloat);
  auto gen = seeded(2);
  EXPECT_EQ(f->rsample({3}, gen).scalar_type(), at::kFloat);
}

// ---- broadcasting --------------------------------------------------------------------

TEST(DistributionBroadcast, ScalarFamilyParametersAndValues) {
  const at::Tensor loc = vec({-1.0, 0.0, 2.0});           // (3)
  const at::Tensor scale = vec({0.5, 3.0}).unsqueeze(1);  // (2, 1)
  const auto d = make_distribution("Normal", {loc, scale});
  EXPECT_EQ(d->batch_shape(), (std::vector<int64_t>{2, 3}));
  const at::Tensor x = vec({0.1, -0.4, 1.7, 5.0, -2.0}).reshape({5, 1, 1});
  const at::Tensor lp = d->log_prob(x);
  ASSERT_EQ(lp.sizes().vec(), (std::vector<int64_t>{5, 2, 3}));
  for (int64_t s = 0; s < 5; ++s)
    for (int64_t i = 0; i < 2; ++i)
      for (int64_t j = 0; j < 3; ++j)
        EXPECT_NEAR(lp[s][i][j].item<double>(),
                    normal_lp(x[s][0][0].item<double>(), loc[j].item<double>(), scale[i][0].item<double>()), 1e-12);
  auto gen = seeded(4);
  EXPECT_EQ(d->rsample({4}, gen).sizes().vec(), (std::vector<int64_t>{4, 2, 3}));
  EXPECT_EQ(d->mean().sizes().vec(), (std::vector<int64_t>{2, 3}));
}

TEST(DistributionBroadcast, MultivariateNormalBatches) {
  const at::Tensor loc = mat({{0.0, 1.0, 2.0}, {-1.0, 0.5, 0.0}});  // (2, 3)
  const at::Tensor cov = mat({{2.0, 0.3, 0.0}, {0.3, 1.0, -0.2}, {0.0, -0.2, 0.5}});
  const auto d = make_distribution("MultivariateNormal", {loc, cov});
  EXPECT_EQ(d->batch_shape(), (std::vector<int64_t>{2}));
  const at::Tensor x = at::randn({5, 1, 3}, seeded(5), at::kDouble);
  const at::Tensor lp = d->log_prob(x);
  ASSERT_EQ(lp.sizes().vec(), (std::vector<int64_t>{5, 2}));
  for (int64_t b = 0; b < 2; ++b) {
    const auto single = make_distribution("MultivariateNormal", {loc[b], cov});
    EXPECT_TRUE(at::allclose(lp.select(1, b), single->log_prob(x.squeeze(1)), 1e-12, 1e-12));
  }
  auto gen = seeded(6);
  EXPECT_EQ(d->rsample({7}, gen).sizes().vec(), (std::vector<int64_t>{7, 2, 3}));
}

TEST(DistributionBroadcast, DirichletAndCategoricalBatches) {
  const at::Tensor alpha = mat({{1.0, 2.0, 3.0}, {0.5, 0.5, 4.0}});
  const auto d = make_distribution("Dirichlet", {alpha});
  const at::Tensor x = vec({0.2, 0.3, 0.5});
  const at::Tensor lp = d->log_prob(x);
  ASSERT_EQ(lp.sizes().vec(), (std::vector<int64_t>{2}));
  EXPECT_NEAR(lp[1].item<double>(), make_distribution("Dirichlet", {alpha[1]})->log_prob(x).item<double>(), 1e-12);
  const auto c = make_distribution("Categorical", {mat({{0.5, 0.5, 0.0}, {0.1, 0.2, 0.7}})});
  const at::Tensor clp = c->log_prob(mat({{0, 2}, {1, 1}, {2, 0}}));
  ASSERT_EQ(clp.sizes().vec(), (std::vector<int64_t>{3, 2}));
  EXPECT_NEAR(clp[0][1].item<double>(), std::log(0.7), 1e-12);
  EXPECT_EQ(clp[2][0].item<double>(), -kInf);
  EXPECT_NEAR(clp[1][0].item<double>(), std::log(0.5), 1e-12);
}

// ---- argument checks -----------------------------------------------------------------

TEST(DistributionArguments, CountIsCheckedWithTheParameterNames) {
  EXPECT_EQ(message_of<std::invalid_argument>([] { make_distribution("Normal", {t(0), t(1), t(2)}); }),
            "Normal: expected 2 arguments (loc, scale), got 3");
  EXPECT_EQ(message_of<std::invalid_argument>([] { make_distribution("HalfNormal", {}); }),
            "HalfNormal: expected 1 argument (scale), got 0");
  EXPECT_EQ(message_of<std::invalid_argument>([] { make_distribution("TruncatedNormal", {t(0), t(1)}); }),
            "TruncatedNormal: expected 4 arguments (loc, scale, low, high), got 2");
  EXPECT_EQ(message_of<std::invalid_argument>([] { make_distribution("Normal", {t(0), at::Tensor()}); }),
            "Normal: scale is an undefined tensor");
}

TEST(DistributionArguments, UnknownFamilySuggestsTheClosest) {
  EXPECT_EQ(message_of<std::invalid_argument>([] { make_distribution("Normla", {t(0), t(1)}); }),
            "unknown family 'Normla'; did you mean 'Normal'?");
  EXPECT_EQ(message_of<std::invalid_argument>([] { make_distribution("Zebra", {t(0)}); }),
            "unknown family 'Zebra'");
  EXPECT_EQ(closest_family("Normla"), "Normal");
  EXPECT_EQ(closest_family("normal"), "Normal");
  EXPECT_EQ(closest_family("Gama"), "Gamma");
  EXPECT_EQ(closest_family("HalfCauhy"), "HalfCauchy");
  EXPECT_EQ(closest_family("Dirichelt"), "Dirichlet");
  EXPECT_EQ(closest_family("Bernouli"), "Bernoulli");
  EXPECT_EQ(closest_family("poissonlog"), "PoissonLog");
  EXPECT_EQ(closest_family("Zebra"), "");
  EXPECT_EQ(closest_family(""), "");
}

TEST(DistributionArguments, DomainMessagesNameFamilyArgumentAndValue) {
  struct Bad {
    std::string family;
    std::vector<at::Tensor> args;
    std::string message;
  };
  const double nan = std::nan("");
  const std::vector<Bad> bad = {
      {"Normal", {t(0), t(-1)}, "Normal: scale is -1, but must be positive!"},
      {"Normal", {t(0), t(0)}, "Normal: scale is 0, but must be positive!"},
      {"Normal", {t(0), t(-0.0)}, "Normal: scale is -0, but must be positive!"},
      {"Normal", {t(nan), t(1)}, "Normal: loc is nan, but must be finite!"},
      {"Normal", {t(0), t(kInf)}, "Normal: scale is inf, but must be finite!"},
      {"Normal", {t(0), vec({1, 2, -3})}, "Normal: scale[3] is -3, but must be positive!"},
      {"Normal", {t(0), mat({{1, 2}, {3, nan}})}, "Normal: scale[2, 2] is nan, but must be positive!"},
      {"HalfCauchy", {t(-2)}, "HalfCauchy: scale is -2, but must be positive!"},
      {"StudentT", {t(0), t(0), t(1)}, "StudentT: df is 0, but must be positive!"},
      {"Gamma", {t(2), t(-0.5)}, "Gamma: rate is -0.5, but must be positive!"},
      {"Exponential", {t(0)}, "Exponential: rate is 0, but must be positive!"},
      {"Beta", {t(-1), t(1)}, "Beta: concentration1 is -1, but must be positive!"},
      {"Pareto", {t(1), t(0)}, "Pareto: alpha is 0, but must be positive!"},
      {"GeneralizedPareto", {t(0), t(1), t(nan)}, "GeneralizedPareto: concentration is nan, but must be finite!"},
      {"Uniform", {t(1), t(0)}, "Uniform: high is 0, but must be greater than low (1)!"},
      {"Uniform", {t(0), vec({1, 0})}, "Uniform: high[2] is 0, but must be greater than low (0)!"},
      {"TruncatedNormal", {t(0), t(1), t(2), t(2)}, "TruncatedNormal: high is 2, but must be greater than low (2)!"},
      {"ContinuousBernoulli", {t(1)}, "ContinuousBernoulli: probs is 1, but must be in (0, 1)!"},
      {"Bernoulli", {t(1.5)}, "Bernoulli: probs is 1.5, but must be in [0, 1]!"},
      {"Bernoulli", {vec({0.5, -0.1})}, "Bernoulli: probs[2] is -0.1, but must be in [0, 1]!"},
      {"RelaxedBernoulli", {t(0), t(0.5)}, "RelaxedBernoulli: temperature is 0, but must be positive!"},
      {"Poisson", {t(-1)}, "Poisson: rate is -1, but must be nonnegative!"},
      {"PoissonLog", {t(kInf)}, "PoissonLog: log_rate is inf, but must be finite!"},
      {"Binomial", {t(2.5), t(0.5)}, "Binomial: total_count is 2.5, but must be a nonnegative integer!"},
      {"Binomial", {t(3), t(1.2)}, "Binomial: probs is 1.2, but must be in [0, 1]!"},
      {"NegativeBinomial", {t(3), t(1)}, "NegativeBinomial: probs is 1, but must be in [0, 1)!"},
      {"NegativeBinomial", {t(0), t(0.5)}, "NegativeBinomial: total_count is 0, but must be positive!"},
      {"Categorical", {vec({0.5, -0.1, 0.6})}, "Categorical: probs[2] is -0.1, but must be nonnegative!"},
      {"Categorical", {vec({0.5, 0.4})}, "Categorical: probs sums to 0.9, but must sum to 1!"},
      {"Categorical", {mat({{0.5, 0.5}, {0.5, 0.6}})}, "Categorical: probs[2, :] sums to 1.1, but must sum to 1!"},
      {"RelaxedOneHotCategorical", {t(1), vec({0.5, 0.6})},
       "RelaxedOneHotCategorical: probs sums to 1.1, but must sum to 1!"},
      {"Dirichlet", {vec({1, 0, 2})}, "Dirichlet: concentration[2] is 0, but must be positive!"},
      {"MultivariateNormal", {vec({0, 0}), mat({{1, 2}, {2, 1}})},
       "MultivariateNormal: covariance_matrix is not positive definite!"},
      {"MultivariateNormal", {vec({0, 0}), mat({{1, 0.5}, {0, 1}})},
       "MultivariateNormal: covariance_matrix is not symmetric!"},
      {"LowRankMVN", {vec({0, 0}), mat({{1}, {1}}), vec({1, -1})}, "LowRankMVN: cov_diag[2] is -1, but must be positive!"},
      {"Wishart", {t(1), mat({{1, 0}, {0, 1}})}, "Wishart: df is 1, but must be greater than dim - 1 (1)!"},
      {"Wishart", {t(-3), mat({{1, 0}, {0, 1}})}, "Wishart: df is -3, but must be positive!"},
      {"LKJCholesky", {t(1), t(1)}, "LKJCholesky: dim is 1, but must be an integer at least 2!"},
      {"LKJCholesky", {t(2.5), t(1)}, "LKJCholesky: dim is 2.5, but must be an integer at least 2!"},
      {"LKJCholesky", {t(3), t(0)}, "LKJCholesky: concentration is 0, but must be positive!"},
  };
  for (const auto& b : bad) {
    EXPECT_EQ(message_of<std::domain_error>([&] { make_distribution(b.family, b.args); }), b.message);
  }
}

TEST(DistributionArguments, BatchedMatrixChecksNameTheBatchIndex) {
  const at::Tensor cov = at::stack({mat({{1, 0}, {0, 1}}), mat({{1, 3}, {3, 1}})});
  EXPECT_EQ(message_of<std::domain_error>([&] { make_distribution("MultivariateNormal", {vec({0, 0}), cov}); }),
            "MultivariateNormal: covariance_matrix[2, :, :] is not positive definite!");
}

TEST(DistributionArguments, ShapeErrorsAreInvalidArguments) {
  EXPECT_EQ(message_of<std::invalid_argument>([] { make_distribution("Normal", {vec({0, 1}), vec({1, 2, 3})}); }),
            "Normal: shapes [2] (loc) and [3] (scale) do not broadcast!");
  EXPECT_EQ(message_of<std::invalid_argument>(
                [] { make_distribution("MultivariateNormal", {vec({0, 0, 0}), mat({{1, 0}, {0, 1}})}); }),
            "MultivariateNormal: covariance_matrix has shape [2, 2], but must end in [3, 3] to match loc (3)!");
  EXPECT_EQ(message_of<std::invalid_argument>([] { make_distribution("Dirichlet", {t(1.0)}); }),
            "Dirichlet: concentration must have at least 1 dim, got shape []!");
  EXPECT_EQ(message_of<std::invalid_argument>(
                [] { make_distribution("LowRankMVN", {vec({0, 0}), mat({{1}, {1}, {1}}), vec({1, 1})}); }),
            "LowRankMVN: cov_factor has shape [3, 1], but must have 2 rows to match loc!");
  EXPECT_EQ(message_of<std::invalid_argument>([] { make_distribution("Wishart", {t(3), mat({{1, 0, 0}, {0, 1, 0}})}); }),
            "Wishart: covariance_matrix has shape [2, 3], but must be square!");
}

TEST(DistributionArguments, DifferentiableArgumentsAndValidationOffSkipTheChecks) {
  // A latent-dependent scale is not inspected (no device sync on the hot path).
  const at::Tensor negative = t(-1.0).requires_grad_();
  EXPECT_NO_THROW(make_distribution("Normal", {t(0), negative}));
  EXPECT_NO_THROW(make_distribution("Normal", {t(0), t(-1)}, /*validate_args=*/false));
  // The argument count and shapes are still checked.
  EXPECT_THROW(make_distribution("Normal", {t(0)}, false), std::invalid_argument);
  EXPECT_THROW(make_distribution("Normal", {vec({0, 1}), vec({1, 2, 3})}, false), std::invalid_argument);
}

}  // namespace
}  // namespace vguide::model
