// StanModel on the Stan corpus (tests/model/stan/): for every program, the log joint
// at random points of the parameters' support (S = 1 and S = 7 particles, float64)
// against a reference computed independently of the Stan front-end: the same model
// written as a `.qvr` program (NAME.qvr, evaluated by ProgramModel, with its
// gradients), and/or a closed form written below with plain double arithmetic
// (std::lgamma, std::log, ... and a small dense-matrix helper for the linear algebra).
// Every program's latent sites (names, shapes, supports) are checked as well.
//
// The contract (stan_model.hpp): log_joint is the model block's `target` with every
// `~` statement's full log density (constants kept), plus the `target +=` terms,
// transformed parameters computed first, no Jacobian terms (constrained space).
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <functional>
#include <map>
#include <numeric>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "model_paths.hpp"
#include "vguide/constraint.hpp"
#include "vguide/guide.hpp"
#include "vguide/model/data.hpp"
#include "vguide/model/program.hpp"
#include "vguide/model/program_model.hpp"
#include "vguide/model/stan_model.hpp"

namespace vguide::model {
namespace {

const std::string kDir = VGUIDE_TEST_STAN_DIR;
const double kLog2Pi = std::log(2.0 * M_PI);
const double kLog2 = std::log(2.0);

// ---------------------------------------------------------------------------------
// Scalar log densities, Stan's parameterisations, every constant kept.

double normal_lp(double y, double mu, double sigma) {
  const double z = (y - mu) / sigma;
  return -0.5 * z * z - std::log(sigma) - 0.5 * kLog2Pi;
}
double student_t_lp(double y, double nu, double mu, double sigma) {
  const double z = (y - mu) / sigma;
  return std::lgamma((nu + 1) / 2) - std::lgamma(nu / 2) - 0.5 * std::log(nu * M_PI) - std::log(sigma) -
         (nu + 1) / 2 * std::log1p(z * z / nu);
}
double cauchy_lp(double y, double mu, double sigma) {
  const double z = (y - mu) / sigma;
  return -std::log(M_PI) - std::log(sigma) - std::log1p(z * z);
}
double double_exponential_lp(double y, double mu, double sigma) {
  return -kLog2 - std::log(sigma) - std::abs(y - mu) / sigma;
}
double logistic_lp(double y, double mu, double s) {
  const double z = (y - mu) / s;
  return -z - std::log(s) - 2 * std::log1p(std::exp(-z));
}
double lognormal_lp(double y, double mu, double sigma) {
  const double z = (std::log(y) - mu) / sigma;
  return -0.5 * z * z - std::log(sigma) - std::log(y) - 0.5 * kLog2Pi;
}
double gamma_lp(double y, double alpha, double beta) {
  return alpha * std::log(beta) - std::lgamma(alpha) + (alpha - 1) * std::log(y) - beta * y;
}
double inv_gamma_lp(double y, double alpha, double beta) {
  return alpha * std::log(beta) - std::lgamma(alpha) - (alpha + 1) * std::log(y) - beta / y;
}
double exponential_lp(double y, double beta) { return std::log(beta) - beta * y; }
double beta_lp(double y, double a, double b) {
  return std::lgamma(a + b) - std::lgamma(a) - std::lgamma(b) + (a - 1) * std::log(y) + (b - 1) * std::log1p(-y);
}
double uniform_lp(double y, double a, double b) {
  return (y >= a && y <= b) ? -std::log(b - a) : -INFINITY;
}
double weibull_lp(double y, double alpha, double sigma) {
  return std::log(alpha) - std::log(sigma) + (alpha - 1) * (std::log(y) - std::log(sigma)) - std::pow(y / sigma, alpha);
}
double inv_logit(double x) { return 1 / (1 + std::exp(-x)); }
double log_inv_logit(double x) { return x >= 0 ? -std::log1p(std::exp(-x)) : x - std::log1p(std::exp(x)); }
double log1m_inv_logit(double x) { return log_inv_logit(-x); }
double lchoose(double n, double k) { return std::lgamma(n + 1) - std::lgamma(k + 1) - std::lgamma(n - k + 1); }
double bernoulli_lp(int64_t y, double theta) { return y == 1 ? std::log(theta) : std::log1p(-theta); }
double bernoulli_logit_lp(int64_t y, double alpha) { return y == 1 ? log_inv_logit(alpha) : log1m_inv_logit(alpha); }
double binomial_lp(int64_t k, int64_t n, double theta) {
  return lchoose(n, k) + k * std::log(theta) + (n - k) * std::log1p(-theta);
}
double binomial_logit_lp(int64_t k, int64_t n, double alpha) {
  return lchoose(n, k) + k * log_inv_logit(alpha) + (n - k) * log1m_inv_logit(alpha);
}
double poisson_lp(int64_t k, double lambda) { return k * std::log(lambda) - lambda - std::lgamma(k + 1.0); }
double poisson_log_lp(int64_t k, double alpha) { return k * alpha - std::exp(alpha) - std::lgamma(k + 1.0); }
// neg_binomial_2(mu, phi): mean mu, variance mu + mu^2 / phi.
double neg_binomial_2_lp(int64_t n, double mu, double phi) {
  return std::lgamma(n + phi) - std::lgamma(n + 1.0) - std::lgamma(phi) + n * std::log(mu) + phi * std::log(phi) -
         (n + phi) * std::log(mu + phi);
}
double neg_binomial_2_log_lp(int64_t n, double eta, double phi) {
  return std::lgamma(n + phi) - std::lgamma(n + 1.0) - std::lgamma(phi) + n * eta + phi * std::log(phi) -
         (n + phi) * std::log(std::exp(eta) + phi);
}
double log_sum_exp(const std::vector<double>& v) {
  const double m = *std::max_element(v.begin(), v.end());
  double s = 0;
  for (double x : v) s += std::exp(x - m);
  return m + std::log(s);
}
double dirichlet_lp(const std::vector<double>& theta, const std::vector<double>& alpha) {
  double a0 = 0, lp = 0;
  for (size_t k = 0; k < theta.size(); ++k) {
    a0 += alpha[k];
    lp += (alpha[k] - 1) * std::log(theta[k]) - std::lgamma(alpha[k]);
  }
  return lp + std::lgamma(a0);
}
// ordered_logistic(eta, c), k in 1..K with K = c.size() + 1.
double ordered_logistic_lp(int64_t k, double eta, const std::vector<double>& c) {
  const int64_t K = static_cast<int64_t>(c.size()) + 1;
  if (k == 1) return log1m_inv_logit(eta - c[0]);
  if (k == K) return log_inv_logit(eta - c[K - 2]);
  return std::log(inv_logit(eta - c[k - 2]) - inv_logit(eta - c[k - 1]));
}
double categorical_logit_lp(int64_t k, const std::vector<double>& beta) { return beta[k - 1] - log_sum_exp(beta); }
double sum_normal_lp(const std::vector<double>& y, double mu, double sigma) {
  double lp = 0;
  for (double v : y) lp += normal_lp(v, mu, sigma);
  return lp;
}
double sum(const std::vector<double>& v) { return std::accumulate(v.begin(), v.end(), 0.0); }
double mean(const std::vector<double>& v) { return sum(v) / v.size(); }
double variance(const std::vector<double>& v) {  // sample variance, as Stan
  const double m = mean(v);
  double s = 0;
  for (double x : v) s += (x - m) * (x - m);
  return s / (v.size() - 1);
}

// ---------------------------------------------------------------------------------
// A small row-major dense matrix, for the references that need linear algebra.

struct Mat {
  int64_t r = 0, c = 0;
  std::vector<double> a;
  Mat(int64_t rows, int64_t cols) : r(rows), c(cols), a(rows * cols, 0.0) {}
  Mat(int64_t rows, int64_t cols, std::vector<double> values) : r(rows), c(cols), a(std::move(values)) {
    EXPECT_EQ(static_cast<int64_t>(a.size()), r * c);
  }
  double& operator()(int64_t i, int64_t j) { return a[i * c + j]; }
  double operator()(int64_t i, int64_t j) const { return a[i * c + j]; }
};
Mat matmul(const Mat& A, const Mat& B) {
  Mat C(A.r, B.c);
  for (int64_t i = 0; i < A.r; ++i)
    for (int64_t j = 0; j < B.c; ++j)
      for (int64_t k = 0; k < A.c; ++k) C(i, j) += A(i, k) * B(k, j);
  return C;
}
Mat transpose(const Mat& A) {
  Mat T(A.c, A.r);
  for (int64_t i = 0; i < A.r; ++i)
    for (int64_t j = 0; j < A.c; ++j) T(j, i) = A(i, j);
  return T;
}
std::vector<double> matvec(const Mat& A, const std::vector<double>& x) {
  std::vector<double> y(A.r, 0.0);
  for (int64_t i = 0; i < A.r; ++i)
    for (int64_t j = 0; j < A.c; ++j) y[i] += A(i, j) * x[j];
  return y;
}
Mat cholesky(const Mat& A) {
  Mat L(A.r, A.r);
  for (int64_t j = 0; j < A.r; ++j) {
    double d = A(j, j);
    for (int64_t k = 0; k < j; ++k) d -= L(j, k) * L(j, k);
    L(j, j) = std::sqrt(d);
    for (int64_t i = j + 1; i < A.r; ++i) {
      double s = A(i, j);
      for (int64_t k = 0; k < j; ++k) s -= L(i, k) * L(j, k);
      L(i, j) = s / L(j, j);
    }
  }
  return L;
}
// L x = b for lower-triangular L.
std::vector<double> solve_lower(const Mat& L, const std::vector<double>& b) {
  std::vector<double> x(b.size());
  for (int64_t i = 0; i < L.r; ++i) {
    double s = b[i];
    for (int64_t k = 0; k < i; ++k) s -= L(i, k) * x[k];
    x[i] = s / L(i, i);
  }
  return x;
}
// U x = b for upper-triangular U.
std::vector<double> solve_upper(const Mat& U, const std::vector<double>& b) {
  std::vector<double> x(b.size());
  for (int64_t i = U.r - 1; i >= 0; --i) {
    double s = b[i];
    for (int64_t k = i + 1; k < U.r; ++k) s -= U(i, k) * x[k];
    x[i] = s / U(i, i);
  }
  return x;
}
// Inverse of a symmetric positive definite matrix, column by column through its factor.
Mat spd_inverse(const Mat& A) {
  const Mat L = cholesky(A), Lt = transpose(L);
  Mat inv(A.r, A.r);
  for (int64_t j = 0; j < A.r; ++j) {
    std::vector<double> e(A.r, 0.0);
    e[j] = 1;
    const std::vector<double> x = solve_upper(Lt, solve_lower(L, e));
    for (int64_t i = 0; i < A.r; ++i) inv(i, j) = x[i];
  }
  return inv;
}
double spd_log_determinant(const Mat& A) {
  const Mat L = cholesky(A);
  double s = 0;
  for (int64_t i = 0; i < A.r; ++i) s += 2 * std::log(L(i, i));
  return s;
}
double multi_normal_cholesky_lp(const std::vector<double>& y, const std::vector<double>& mu, const Mat& L) {
  std::vector<double> d(y.size());
  for (size_t i = 0; i < y.size(); ++i) d[i] = y[i] - mu[i];
  const std::vector<double> z = solve_lower(L, d);
  double lp = -0.5 * static_cast<double>(y.size()) * kLog2Pi;
  for (int64_t i = 0; i < L.r; ++i) lp -= std::log(L(i, i)) + 0.5 * z[i] * z[i];
  return lp;
}
double multi_normal_lp(const std::vector<double>& y, const std::vector<double>& mu, const Mat& Sigma) {
  return multi_normal_cholesky_lp(y, mu, cholesky(Sigma));
}
// lkj_corr_cholesky(eta) with Stan's normalising constant, written from the LKJ
// normaliser (Lewandowski, Kurowicka and Joe 2009, eq. 16) rather than Stan's form:
// log c_K(eta) = sum_{k=1}^{K-1} [(2 eta - 2 + K - k)(K - k) log 2
//                                 + (K - k) log B(eta + (K-k-1)/2, eta + (K-k-1)/2)],
// log p(L) = -log c_K(eta) + sum_{i=2}^{K} (K - i + 2 eta - 2) log L_ii.
double lkj_corr_cholesky_lp(const Mat& L, double eta) {
  const int64_t K = L.r;
  double log_c = 0;
  for (int64_t k = 1; k < K; ++k) {
    const double b = eta + (K - k - 1) / 2.0;
    log_c += (2 * eta - 2 + K - k) * (K - k) * kLog2 + (K - k) * (2 * std::lgamma(b) - std::lgamma(2 * b));
  }
  double lp = -log_c;
  for (int64_t i = 2; i <= K; ++i) lp += (K - i + 2 * eta - 2) * std::log(L(i - 1, i - 1));
  return lp;
}

// ---------------------------------------------------------------------------------
// One particle's parameter values and the data, as doubles.

class Point {
 public:
  Point(const SiteValues& values, int64_t s, const Data& data) : values_(values), s_(s), data_(data) {}

  /// A scalar parameter.
  double r(const std::string& name) const { return t(name).item<double>(); }
  /// A parameter flattened row-major (an array of vectors [2, 3] gives 6 values).
  std::vector<double> v(const std::string& name) const { return flat_double(t(name)); }
  /// A matrix parameter (the last two dims).
  Mat m(const std::string& name) const {
    const at::Tensor x = t(name);
    return Mat(x.size(0), x.size(1), flat_double(x));
  }
  /// Element i (0-based) of the leading dim of an array-of-vectors parameter.
  std::vector<double> row(const std::string& name, int64_t i) const { return flat_double(t(name)[i]); }

  double dr(const std::string& name) const { return data_.get(name).item().toDouble(); }
  int64_t di(const std::string& name) const { return data_.get(name).item().toLong(); }
  std::vector<double> dv(const std::string& name) const { return flat_double(data_.get(name)); }
  std::vector<int64_t> dk(const std::string& name) const {
    const at::Tensor x = data_.get(name).to(at::kLong).contiguous().reshape({-1});
    return std::vector<int64_t>(x.data_ptr<int64_t>(), x.data_ptr<int64_t>() + x.numel());
  }
  Mat dm(const std::string& name) const {
    const at::Tensor x = data_.get(name);
    return Mat(x.size(0), x.size(1), flat_double(x));
  }
  std::vector<double> drow(const std::string& name, int64_t i) const { return flat_double(data_.get(name)[i]); }

 private:
  at::Tensor t(const std::string& name) const { return values_.at(name)[s_]; }
  static std::vector<double> flat_double(const at::Tensor& x) {
    const at::Tensor c = x.detach().to(at::kDouble).contiguous().reshape({-1});
    return std::vector<double>(c.data_ptr<double>(), c.data_ptr<double>() + c.numel());
  }
  const SiteValues& values_;
  int64_t s_;
  const Data& data_;
};

// ---------------------------------------------------------------------------------
// The corpus: each program's parameters (the sites StanModel must declare, and how
// the test draws them) and its references.

struct Param {
  std::string name;
  std::vector<int64_t> shape;
  Constraint support = constraints::real();
  double scale = 1.0;  ///< spread of the draw (the sd of a real, of log x for positive)
};

struct Case {
  std::string name;
  std::vector<Param> params;
  /// The closed form, if written; per particle.
  std::function<double(const Point&)> closed_form;
  /// If set, NAME.qvr is a reference too: Stan's log joint = ProgramModel's + offset
  /// (the offset accounts for the qvr half-families, see each .qvr file).
  std::optional<double> qvr_offset;
};

Param real_p(std::string name, std::vector<int64_t> shape = {}, double scale = 1.0) {
  return {std::move(name), std::move(shape), constraints::real(), scale};
}
Param pos_p(std::string name, std::vector<int64_t> shape = {}, double scale = 0.7) {
  return {std::move(name), std::move(shape), constraints::positive(), scale};
}
Param con_p(std::string name, std::vector<int64_t> shape, Constraint support, double scale = 1.0) {
  return {std::move(name), std::move(shape), support, scale};
}

// Closed forms shared by the programs that also have a .qvr reference.

double eight_schools_likelihood(const Point& p, const std::vector<double>& theta) {
  const std::vector<double> y = p.dv("y"), sigma = p.dv("sigma");
  double lp = 0;
  for (size_t j = 0; j < y.size(); ++j) lp += normal_lp(y[j], theta[j], sigma[j]);
  return lp;
}

std::vector<Case> corpus() {
  std::vector<Case> cases;

  cases.push_back({"eight_schools_centered",
                   {real_p("mu", {}, 3.0), pos_p("tau"), real_p("theta", {8}, 5.0)},
                   [](const Point& p) {
                     const double mu = p.r("mu"), tau = p.r("tau");
                     const std::vector<double> theta = p.v("theta");
                     return normal_lp(mu, 0, 5) + cauchy_lp(tau, 0, 5) + sum_normal_lp(theta, mu, tau) +
                            eight_schools_likelihood(p, theta);
                   },
                   -kLog2});

  cases.push_back({"eight_schools_noncentered",
                   {real_p("mu", {}, 3.0), pos_p("tau"), real_p("theta_tilde", {8})},
                   [](const Point& p) {
                     const double mu = p.r("mu"), tau = p.r("tau");
                     const std::vector<double> tt = p.v("theta_tilde");
                     std::vector<double> theta(tt.size());
                     for (size_t j = 0; j < tt.size(); ++j) theta[j] = mu + tau * tt[j];
                     return normal_lp(mu, 0, 5) + cauchy_lp(tau, 0, 5) + sum_normal_lp(tt, 0, 1) +
                            eight_schools_likelihood(p, theta);
                   },
                   -kLog2});

  cases.push_back({"linear_regression",
                   {real_p("alpha"), real_p("beta", {}, 2.0), pos_p("sigma")},
                   [](const Point& p) {
                     const double a = p.r("alpha"), b = p.r("beta"), s = p.r("sigma");
                     const std::vector<double> x = p.dv("x"), y = p.dv("y");
                     double lp = normal_lp(a, 0, 10) + normal_lp(b, 0, 10) + exponential_lp(s, 1);
                     for (size_t n = 0; n < y.size(); ++n) lp += normal_lp(y[n], a + b * x[n], s);
                     return lp;
                   },
                   0.0});

  cases.push_back({"linear_regression_loop",
                   {real_p("alpha"), real_p("slope", {}, 2.0), pos_p("sigma")},
                   [](const Point& p) {
                     const double a = p.r("alpha"), b = p.r("slope"), s = p.r("sigma");
                     const std::vector<double> x = p.dv("x"), y = p.dv("y");
                     double lp = student_t_lp(a, 3, 0, 2.5) + double_exponential_lp(b, 0, 1) + lognormal_lp(s, 0, 1);
                     for (size_t n = 0; n < y.size(); ++n) lp += normal_lp(y[n], a + b * x[n], s);
                     return lp;
                   },
                   std::nullopt});

  cases.push_back({"logistic_regression",
                   {real_p("alpha"), real_p("b", {3})},
                   [](const Point& p) {
                     const double a = p.r("alpha");
                     const std::vector<double> beta = p.v("b");
                     const Mat X = p.dm("X");
                     const std::vector<int64_t> y = p.dk("y");
                     const std::vector<double> xb = matvec(X, beta);
                     double lp = normal_lp(a, 0, 5) + sum_normal_lp(beta, 0, 2.5);
                     for (size_t n = 0; n < y.size(); ++n) lp += bernoulli_logit_lp(y[n], a + xb[n]);
                     return lp;
                   },
                   0.0});

  cases.push_back({"logistic_bernoulli_loop",
                   {real_p("b", {2}, 1.5)},
                   [](const Point& p) {
                     const std::vector<double> beta = p.v("b");
                     const std::vector<double> xb = matvec(p.dm("X"), beta);
                     const std::vector<int64_t> y = p.dk("y");
                     double lp = 0;
                     for (double b : beta) lp += logistic_lp(b, 0, 1);
                     for (size_t i = 0; i < y.size(); ++i) {
                       const int64_t n = static_cast<int64_t>(i) + 1;  // Stan's 1-based row
                       lp += n % 2 == 0 ? bernoulli_lp(y[i], inv_logit(xb[i])) : bernoulli_logit_lp(y[i], xb[i]);
                     }
                     return lp;
                   },
                   std::nullopt});

  cases.push_back({"hierarchical_logistic",
                   {real_p("mu_a"), pos_p("sigma_a"), real_p("a_raw", {4}), real_p("b")},
                   [](const Point& p) {
                     const double mu_a = p.r("mu_a"), sigma_a = p.r("sigma_a"), b = p.r("b");
                     const std::vector<double> a_raw = p.v("a_raw"), x = p.dv("x");
                     const std::vector<int64_t> g = p.dk("g"), y = p.dk("y");
                     double lp = normal_lp(mu_a, 0, 2) + normal_lp(sigma_a, 0, 1) + sum_normal_lp(a_raw, 0, 1) +
                                 normal_lp(b, 0, 1);
                     for (size_t n = 0; n < y.size(); ++n)
                       lp += bernoulli_logit_lp(y[n], mu_a + sigma_a * a_raw[g[n] - 1] + b * x[n]);
                     return lp;
                   },
                   std::nullopt});

  cases.push_back({"hierarchical_linear",
                   {real_p("mu"), pos_p("tau"), real_p("alpha_raw", {4}), real_p("b"), pos_p("sigma")},
                   [](const Point& p) {
                     const double mu = p.r("mu"), tau = p.r("tau"), beta = p.r("b"), sigma = p.r("sigma");
                     const std::vector<double> ar = p.v("alpha_raw"), x = p.dv("x"), y = p.dv("y");
                     const std::vector<int64_t> group = p.dk("group");
                     double lp = normal_lp(mu, 0, 5) + normal_lp(tau, 0, 2) + sum_normal_lp(ar, 0, 1) +
                                 normal_lp(beta, 0, 2) + normal_lp(sigma, 0, 1);
                     for (size_t n = 0; n < y.size(); ++n)
                       lp += normal_lp(y[n], mu + tau * ar[group[n] - 1] + beta * x[n], sigma);
                     return lp;
                   },
                   -2 * kLog2});

  cases.push_back({"ar1",
                   {real_p("alpha"), con_p("phi", {}, constraints::interval(-1, 1)), pos_p("sigma")},
                   [](const Point& p) {
                     const double a = p.r("alpha"), b = p.r("phi"), s = p.r("sigma");
                     const std::vector<double> y = p.dv("y");
                     double lp = normal_lp(a, 0, 2) + uniform_lp(b, -1, 1) + lognormal_lp(s, 0, 1);
                     for (size_t n = 1; n < y.size(); ++n) lp += normal_lp(y[n], a + b * y[n - 1], s);
                     return lp;
                   },
                   0.0});

  cases.push_back({"ar5",
                   {real_p("alpha"), real_p("phi", {5}, 0.5), pos_p("sigma")},
                   [](const Point& p) {
                     const double a = p.r("alpha"), s = p.r("sigma");
                     const std::vector<double> beta = p.v("phi"), y = p.dv("y");
                     const int64_t K = p.di("K"), N = p.di("N");
                     double lp = normal_lp(a, 0, 1) + sum_normal_lp(beta, 0, 0.5) + inv_gamma_lp(s, 3, 2);
                     for (int64_t n = K; n < N; ++n) {
                       double mu = a;
                       for (int64_t k = 1; k <= K; ++k) mu += beta[k - 1] * y[n - k];
                       lp += normal_lp(y[n], mu, s);
                     }
                     return lp;
                   },
                   std::nullopt});

  cases.push_back({"poisson_glm",
                   {real_p("a"), real_p("b", {}, 0.5)},
                   [](const Point& p) {
                     const double a = p.r("a"), b = p.r("b");
                     const std::vector<double> x = p.dv("x"), exposure = p.dv("exposure");
                     const std::vector<int64_t> y = p.dk("y");
                     double lp = normal_lp(a, 0, 2.5) + normal_lp(b, 0, 1);
                     for (size_t n = 0; n < y.size(); ++n) lp += poisson_log_lp(y[n], std::log(exposure[n]) + a + b * x[n]);
                     return lp;
                   },
                   std::nullopt});

  cases.push_back({"neg_binomial",
                   {real_p("a"), real_p("b", {}, 0.5), pos_p("phi")},
                   [](const Point& p) {
                     const double a = p.r("a"), b = p.r("b"), phi = p.r("phi");
                     const std::vector<double> x = p.dv("x");
                     const std::vector<int64_t> y = p.dk("y");
                     double lp = normal_lp(a, 0, 2) + normal_lp(b, 0, 1) + gamma_lp(phi, 2, 0.5);
                     for (size_t n = 0; n < y.size(); ++n) {
                       const double eta = a + b * x[n];
                       lp += n < 10 ? neg_binomial_2_lp(y[n], std::exp(eta), phi) : neg_binomial_2_log_lp(y[n], eta, phi);
                     }
                     return lp;
                   },
                   std::nullopt});

  cases.push_back({"mixture_log_mix",
                   {con_p("mu", {2}, constraints::ordered()), pos_p("sigma", {2}),
                    con_p("theta", {}, constraints::interval(0, 1))},
                   [](const Point& p) {
                     const std::vector<double> mu = p.v("mu"), sigma = p.v("sigma"), y = p.dv("y");
                     const double theta = p.r("theta");
                     double lp = lognormal_lp(sigma[0], 0, 2) + lognormal_lp(sigma[1], 0, 2) + sum_normal_lp(mu, 0, 2) +
                                 beta_lp(theta, 5, 5);
                     for (double yn : y)
                       lp += std::log(theta * std::exp(normal_lp(yn, mu[0], sigma[0])) +
                                      (1 - theta) * std::exp(normal_lp(yn, mu[1], sigma[1])));
                     return lp;
                   },
                   std::nullopt});

  cases.push_back({"mixture_simplex",
                   {con_p("theta", {3}, constraints::simplex()), con_p("mu", {3}, constraints::ordered(), 2.0),
                    pos_p("sigma")},
                   [](const Point& p) {
                     const std::vector<double> theta = p.v("theta"), mu = p.v("mu"), y = p.dv("y");
                     const double sigma = p.r("sigma");
                     double lp = dirichlet_lp(theta, {2, 2, 2}) + sum_normal_lp(mu, 0, 5) + lognormal_lp(sigma, 0, 1);
                     for (double yn : y) {
                       std::vector<double> lps(3);
                       for (int k = 0; k < 3; ++k) lps[k] = std::log(theta[k]) + normal_lp(yn, mu[k], sigma);
                       lp += log_sum_exp(lps);
                     }
                     return lp;
                   },
                   std::nullopt});

  cases.push_back({"ordered_logistic",
                   {real_p("b"), con_p("c", {3}, constraints::ordered())},
                   [](const Point& p) {
                     const double beta = p.r("b");
                     const std::vector<double> c = p.v("c"), x = p.dv("x");
                     const std::vector<int64_t> y = p.dk("y");
                     double lp = normal_lp(beta, 0, 2) + sum_normal_lp(c, 0, 3);
                     for (size_t n = 0; n < y.size(); ++n) lp += ordered_logistic_lp(y[n], x[n] * beta, c);
                     return lp;
                   },
                   std::nullopt});

  cases.push_back({"categorical_softmax",
                   {real_p("B", {2, 3})},
                   [](const Point& p) {
                     const Mat beta = p.m("B");
                     const Mat xb = matmul(p.dm("x"), beta);
                     const std::vector<int64_t> y = p.dk("y");
                     double lp = sum_normal_lp(beta.a, 0, 5);
                     for (int64_t n = 0; n < xb.r; ++n) {
                       const std::vector<double> eta(xb.a.begin() + n * xb.c, xb.a.begin() + (n + 1) * xb.c);
                       lp += categorical_logit_lp(y[n], eta);
                     }
                     return lp;
                   },
                   std::nullopt});

  cases.push_back({"mvn_lkj",
                   {real_p("mu", {3}), con_p("L_Omega", {3, 3}, constraints::corr_cholesky()), pos_p("tau", {3}, 0.5)},
                   [](const Point& p) {
                     const std::vector<double> mu = p.v("mu"), tau = p.v("tau");
                     const Mat L_Omega = p.m("L_Omega");
                     Mat L_Sigma = L_Omega;
                     for (int64_t i = 0; i < 3; ++i)
                       for (int64_t j = 0; j < 3; ++j) L_Sigma(i, j) = tau[i] * L_Omega(i, j);
                     double lp = lkj_corr_cholesky_lp(L_Omega, 2.0) + sum_normal_lp(mu, 0, 5);
                     for (double t : tau) lp += cauchy_lp(t, 0, 2.5);
                     for (int64_t n = 0; n < p.di("N"); ++n) lp += multi_normal_cholesky_lp(p.drow("y", n), mu, L_Sigma);
                     return lp;
                   },
                   std::nullopt});

  cases.push_back({"multi_normal_cov",
                   {real_p("mu", {3}), con_p("Sigma", {3, 3}, constraints::positive_definite()),
                    con_p("L", {3, 3}, constraints::lower_cholesky(), 0.5)},
                   [](const Point& p) {
                     const std::vector<double> mu = p.v("mu");
                     const Mat Sigma = p.m("Sigma"), L = p.m("L");
                     const Mat Sigma_inv = spd_inverse(Sigma);
                     const int64_t K = 3, N = p.di("N");
                     double lp = -0.5 * (K + 2) * spd_log_determinant(Sigma);
                     for (int64_t k = 0; k < K; ++k) lp += -0.5 * Sigma_inv(k, k);
                     lp += sum_normal_lp(L.a, 0, 2) + sum_normal_lp(mu, 0, 3);
                     for (int64_t n = 0; n < N; ++n) {
                       lp += multi_normal_lp(p.drow("y", n), mu, Sigma);
                       lp += multi_normal_cholesky_lp(p.drow("y2", n), mu, L);
                     }
                     lp += multi_normal_lp(p.drow("y", 0), mu, matmul(L, transpose(L)));
                     return lp;
                   },
                   std::nullopt});

  cases.push_back({"gp_exp_quad",
                   {pos_p("rho"), pos_p("alpha"), pos_p("sigma")},
                   [](const Point& p) {
                     const double rho = p.r("rho"), alpha = p.r("alpha"), sigma = p.r("sigma");
                     const std::vector<double> x = p.dv("x"), y = p.dv("y");
                     const int64_t N = static_cast<int64_t>(x.size());
                     Mat K(N, N);
                     for (int64_t i = 0; i < N; ++i)
                       for (int64_t j = 0; j < N; ++j)
                         K(i, j) = alpha * alpha * std::exp(-(x[i] - x[j]) * (x[i] - x[j]) / (2 * rho * rho)) +
                                   (i == j ? sigma * sigma + 1e-9 : 0.0);
                     return inv_gamma_lp(rho, 5, 5) + normal_lp(alpha, 0, 1) + normal_lp(sigma, 0, 1) +
                            multi_normal_lp(y, std::vector<double>(N, 0.0), K);
                   },
                   std::nullopt});

  cases.push_back({"gp_latent_poisson",
                   {pos_p("rho", {}, 0.5), pos_p("alpha", {}, 0.5), real_p("eta", {10})},
                   [](const Point& p) {
                     const double rho = p.r("rho"), alpha = p.r("alpha");
                     const std::vector<double> eta = p.v("eta"), x = p.dv("x");
                     const std::vector<int64_t> k = p.dk("k");
                     const int64_t N = static_cast<int64_t>(x.size());
                     Mat K(N, N);
                     for (int64_t i = 0; i < N; ++i)
                       for (int64_t j = 0; j < N; ++j)
                         K(i, j) = alpha * alpha * std::exp(-(x[i] - x[j]) * (x[i] - x[j]) / (2 * rho * rho)) +
                                   (i == j ? 1e-6 : 0.0);
                     const std::vector<double> Le = matvec(cholesky(K), eta);
                     double lp = gamma_lp(rho, 5, 5) + normal_lp(alpha, 0, 1) + sum_normal_lp(eta, 0, 1);
                     for (int64_t n = 0; n < N; ++n) lp += poisson_log_lp(k[n], 1.0 + Le[n]);
                     return lp;
                   },
                   -kLog2});

  cases.push_back({"dirichlet_categorical",
                   {con_p("theta", {4}, constraints::simplex()), con_p("phi", {2, 3}, constraints::simplex())},
                   [](const Point& p) {
                     const std::vector<double> theta = p.v("theta"), phi1 = p.row("phi", 0), phi2 = p.row("phi", 1);
                     double lp = dirichlet_lp(theta, p.dv("alpha")) + dirichlet_lp(phi1, {1.5, 1.5, 1.5}) +
                                 dirichlet_lp(phi2, {1.5, 1.5, 1.5});
                     for (int64_t y : p.dk("y")) lp += std::log(theta[y - 1]);
                     return lp + std::log(phi1[1]) + std::log(phi2[2]);
                   },
                   std::nullopt});

  cases.push_back({"changepoint",
                   {pos_p("e"), pos_p("l")},
                   [](const Point& p) {
                     const double e = p.r("e"), l = p.r("l");
                     const std::vector<int64_t> D = p.dk("D");
                     const int64_t T = p.di("T");
                     std::vector<double> lp(T, -std::log(static_cast<double>(T)));
                     for (int64_t s = 1; s <= T; ++s)
                       for (int64_t t = 1; t <= T; ++t) lp[s - 1] += poisson_lp(D[t - 1], t < s ? e : l);
                     return exponential_lp(e, p.dr("r_e")) + exponential_lp(l, p.dr("r_l")) + log_sum_exp(lp);
                   },
                   std::nullopt});

  cases.push_back({"user_functions",
                   {real_p("mu"), pos_p("s"), real_p("z", {3}, 2.0)},
                   [](const Point& p) {
                     const double mu = p.r("mu"), s = p.r("s");
                     const std::vector<double> z = p.v("z"), y = p.dv("y");
                     int n_pos = 0;
                     for (double yn : y) n_pos += yn > 0;
                     double lp = 0;
                     for (double yn : y) lp += normal_lp(yn, mu + 1, s);
                     lp += normal_lp(mu, 0 + 1, 10) + gamma_lp(s, 2, 2);
                     const double zbar = mean(z);
                     for (double zi : z) lp += -0.5 * (zi - zbar) * (zi - zbar);
                     return lp + sum_normal_lp(z, 0, 5) + n_pos * std::log(s) / 10;
                   },
                   std::nullopt});

  cases.push_back({"while_loop",
                   {real_p("mu", {}, 2.0), pos_p("sigma")},
                   [](const Point& p) {
                     const double mu = p.r("mu"), sigma = p.r("sigma");
                     // 1024 halves 10 times down to 1.
                     return sum_normal_lp(p.dv("y"), mu, sigma) - 0.01 * 10 * mu * mu + gamma_lp(sigma, 2, 1);
                   },
                   std::nullopt});

  cases.push_back({"matrix_regression",
                   {real_p("b", {4}), pos_p("sigma")},
                   [](const Point& p) {
                     const std::vector<double> b = p.v("b"), y = p.dv("y");
                     const double sigma = p.r("sigma");
                     const Mat X = p.dm("X");
                     double lp = sum_normal_lp(b, 0, 5) + weibull_lp(sigma, 2, 1);
                     for (int64_t n = 0; n < X.r; ++n) {
                       double mu = b[0];
                       for (int64_t k = 0; k < X.c; ++k) mu += X(n, k) * b[k + 1];
                       lp += normal_lp(y[n], mu, sigma);
                     }
                     return lp - 0.001 * static_cast<double>(X.r);
                   },
                   std::nullopt});

  cases.push_back({"scalar_math",
                   {con_p("p", {}, constraints::interval(0, 1)), pos_p("s"), real_p("z", {}, 1.5)},
                   [](const Point& pt) {
                     const double p = pt.r("p"), s = pt.r("s"), z = pt.r("z");
                     const double Phi = 0.5 * std::erfc(-(z / 3) / std::sqrt(2.0));
                     const double w = z / 3, Phi_approx = inv_logit(0.07056 * w * w * w + 1.5976 * w);
                     double lp = std::exp(-s) + std::log(s) + std::log1p(s) + std::expm1(-s) + std::log1p(-p);
                     lp += std::sqrt(s) - z * z / 10 + std::pow(s, 1.5) / 10 + 1 / (1 + s);
                     lp += inv_logit(z) + std::log(p / (1 - p)) + log_inv_logit(z) + log1m_inv_logit(z);
                     lp += Phi + Phi_approx + std::lgamma(1 + s);
                     lp += std::abs(z) / 5 + std::abs(z) / 7 + std::min(z, s) + std::max(z, -s);
                     lp += s * s / 20 + std::pow(2.0, z) / 100 + log_sum_exp({z, s});
                     return lp + normal_lp(z, 0, 3);
                   },
                   std::nullopt});

  cases.push_back({"cdfs",
                   {real_p("mu"), pos_p("sigma"), pos_p("rate"), pos_p("k")},
                   [](const Point& p) {
                     const double mu = p.r("mu"), s = p.r("sigma"), rate = p.r("rate"), k = p.r("k");
                     const double u = p.dr("u");
                     const std::vector<double> y = p.dv("y"), c = p.dv("c");
                     // Both tails through erfc, so that neither rounds to 0 or 1.
                     const auto Phi = [](double z) { return 0.5 * std::erfc(-z / std::sqrt(2.0)); };
                     const auto Phic = [](double z) { return 0.5 * std::erfc(z / std::sqrt(2.0)); };
                     double lp = normal_lp(mu, 0, 3) + std::log(1.0) - s + std::log(1.0) - rate - k;
                     for (double v : y) lp += normal_lp(v, mu, s);
                     double cdf_product = 1;
                     for (double v : c) {
                       const double z = (v - mu) / s;
                       lp += std::log(Phic(z)) - rate * v - std::pow(v / 2, k);
                       cdf_product *= Phi(z);
                       lp += z < 0 ? std::log(0.5 * std::exp(z)) : std::log(1 - 0.5 * std::exp(-z));  // double_exponential
                       lp += z < 0 ? std::log(1 - 0.5 * std::exp(z)) : std::log(0.5 * std::exp(-z));
                     }
                     lp += std::log(cdf_product);
                     const double zu = (u - mu) / s;
                     lp += std::log(Phi(zu)) + std::log(Phi(mu / 3));
                     lp += 2 * std::log(-std::expm1(-rate * u));
                     lp += std::log(-std::expm1(-std::pow(u / 2, k)));
                     lp += -std::log1p(std::exp(-zu)) - std::log1p(std::exp(zu));
                     lp += std::log(0.5 + std::atan(zu) / M_PI) + std::log(0.5 - std::atan(zu) / M_PI);
                     const double zl = (std::log(u) - mu) / s;
                     lp += std::log(Phi(zl)) + std::log(Phic(zl));
                     lp += -std::exp(-zu) + std::log(-std::expm1(-std::exp(-zu)));
                     lp += std::log((u + 5) / 10) + std::log(1 - (u + 5) / 10);
                     return lp;
                   },
                   std::nullopt});

  cases.push_back({"vector_math",
                   {real_p("v", {5}), real_p("r", {5})},
                   [](const Point& p) {
                     const std::vector<double> v = p.v("v"), r = p.v("r"), v0 = p.dv("v0");
                     std::vector<double> cs(5), srt = v;
                     std::partial_sum(v.begin(), v.end(), cs.begin());
                     std::sort(srt.begin(), srt.end());
                     const double lse = log_sum_exp(v);
                     const double vr = std::inner_product(v.begin(), v.end(), r.begin(), 0.0);
                     const double vv = std::inner_product(v.begin(), v.end(), v.begin(), 0.0);
                     const double rr = std::inner_product(r.begin(), r.end(), r.begin(), 0.0);
                     double prod = 1;
                     for (double x : v) prod *= x;
                     const std::vector<double> lin = {0.0, 1.0 / 3, 2.0 / 3, 1.0};
                     double lin_head = 0;
                     for (int i = 0; i < 4; ++i) lin_head += lin[i] * v[i];
                     double lp = sum(v) + mean(v) - std::sqrt(variance(v)) - variance(v) + prod / 100;
                     lp += *std::min_element(v.begin(), v.end()) + *std::max_element(v.begin(), v.end()) + cs[4] + cs[1] +
                           std::exp(v[0] - lse) + (v[2] - lse);
                     lp += srt[0] - srt[4] + vr / 10 - vv / 20 - rr / 20;
                     lp += 5 + 4 + 0.1 * lin_head;
                     lp += v[3] + v[4] - (v[1] + v[2] + v[3]) / 2;
                     lp += vr / 10 + sum(v) / 7;
                     lp += lse - log_sum_exp(v0) + *std::max_element(v0.begin(), v0.end()) -
                           *std::min_element(v0.begin(), v0.end());
                     return lp;
                   },
                   std::nullopt});

  cases.push_back({"matrix_math",
                   {real_p("M", {3, 3}), pos_p("d", {3}, 0.5), con_p("L", {3, 3}, constraints::lower_cholesky(), 0.3)},
                   [](const Point& p) {
                     const Mat M = p.m("M"), L = p.m("L"), A = p.dm("A");
                     const std::vector<double> d = p.v("d"), b = p.dv("b"), c9 = p.dv("c9");
                     const Mat S = matmul(L, transpose(L));
                     double lp = 0;
                     // sum(Md) / 10, Md = diag(d) M + M diag(d); sum(D * M) / 10.
                     for (int i = 0; i < 3; ++i)
                       for (int j = 0; j < 3; ++j) lp += (d[i] * M(i, j) + M(i, j) * d[j]) / 10 + d[i] * M(i, j) / 10;
                     const std::vector<double> Sb = matvec(S, b);
                     lp -= std::inner_product(b.begin(), b.end(), Sb.begin(), 0.0) / 50;
                     const std::vector<double> u = solve_lower(L, b);          // L \ b
                     const std::vector<double> w = solve_upper(transpose(L), b);  // (b' / L)' = L' \ b
                     lp += -std::inner_product(u.begin(), u.end(), u.begin(), 0.0) / 10 + sum(w) / 10;
                     // block(M, 2, 1, 2, 2), col(M, 2), row(M, 3).
                     lp += M(1, 0) + M(1, 1) + M(2, 0) + M(2, 1);
                     lp += M(0, 1) + M(1, 1) + M(2, 1) + (M(2, 0) + M(2, 1) + M(2, 2)) / 2;
                     double sAM = 0, sA = 0, sM = 0, sCM = 0, sMAt = 0, rdp = 0, bMb = 0, sMtb = 0;
                     for (int i = 0; i < 3; ++i) {
                       double row_dot = 0;
                       for (int j = 0; j < 3; ++j) {
                         sAM += A(i, j) * M(i, j);
                         sA += A(i, j);
                         sM += M(i, j);
                         sCM += c9[j * 3 + i] * M(i, j);  // to_matrix fills column-major
                         sMAt += M(i, j) * A(j, i);       // to_vector(M') .* to_vector(A)
                         row_dot += M(i, j) * A(i, j);
                         bMb += b[i] * M(i, j) * b[j];
                         sMtb += M(i, j) * b[i];
                       }
                       rdp += row_dot * b[i];
                     }
                     lp += 2 * sAM / 10 + (sA + sM) / 2 / 3;
                     Mat SI = S;
                     for (int i = 0; i < 3; ++i) SI(i, i) += 1;
                     lp += spd_log_determinant(S) + sum(spd_inverse(SI).a);
                     // to_array_1d(M)[2] = M[2, 1] (column-major).
                     lp += sCM / 4 + M(1, 0) / 2 + sMAt / 5;
                     lp += rdp / 6 + bMb / 8 + sMtb / 9;
                     return lp + sum_normal_lp(M.a, 0, 1);
                   },
                   std::nullopt});

  cases.push_back({"indexing",
                   {real_p("v", {6}), real_p("z", {2, 3})},
                   [](const Point& p) {
                     const std::vector<double> v = p.v("v"), z = p.v("z"), y = p.dv("y");
                     const Mat Q = p.dm("Q");
                     // idx = {5, 2, 5}, idx_assign = {6, 1, 3} (tests/model/stan/indexing.json).
                     EXPECT_EQ(p.dk("idx"), (std::vector<int64_t>{5, 2, 5}));
                     EXPECT_EQ(p.dk("idx_assign"), (std::vector<int64_t>{6, 1, 3}));
                     const std::vector<double> w = {-(v[0] + 1), 2 * v[1], 2 * v[2] + 1, 2 * v[3], v[4], v[5] + 1};
                     double lp = sum(w) / 3;
                     lp += (v[0] + v[1] + v[2]) - (v[3] + v[4] + v[5]) + sum(v) / 2 + (v[1] + v[2] + v[3] + v[4]) / 4;
                     lp += -(2 * v[4] * v[4] + v[1] * v[1]) / 10;
                     const double q_row2 = Q(1, 0) + Q(1, 1) + Q(1, 2) + Q(1, 3);
                     const double q_col3 = Q(0, 2) + Q(1, 2) + Q(2, 2);
                     const double q_block = Q(1, 1) + Q(1, 2) + Q(1, 3) + Q(2, 1) + Q(2, 2) + Q(2, 3);
                     lp += q_row2 * v[0] + q_col3 * v[1] + q_block * v[2] + Q(2, 3) * v[3];
                     lp += (2 * y[4] + y[1]) * v[5] + y[5] * v[4];
                     lp += z[5] + z[1] / 2 + (z[3] + z[4] + z[5]) / 3;
                     return lp + sum_normal_lp(v, 0, 2) + sum_normal_lp(z, 0, 1);
                   },
                   std::nullopt});

  cases.push_back({"offset_multiplier_bounds",
                   {real_p("theta", {5}, 2.0), con_p("u", {}, constraints::interval(-1.5, 2.5)),
                    con_p("m", {}, constraints::greater_than(-0.379)), con_p("q", {}, constraints::less_than(-1.5)),
                    con_p("width", {}, constraints::interval(0, 4)), con_p("rr", {2}, constraints::interval(-1, 1))},
                   [](const Point& p) {
                     // As Stan: the site is z, theta = mu0 + tau0 * z, and the density
                     // gains log(tau0) per element.
                     const std::vector<double> z = p.v("theta"), y = p.dv("y");
                     const double mu0 = p.dr("mu0"), tau0 = p.dr("tau0");
                     std::vector<double> theta;
                     for (double zi : z) theta.push_back(mu0 + tau0 * zi);
                     const double lo = p.dr("lo"), hi = p.dr("hi"), y_min = *std::min_element(y.begin(), y.end());
                     double lp = sum_normal_lp(theta, mu0, tau0) + z.size() * std::log(tau0);
                     for (size_t j = 0; j < y.size(); ++j) lp += normal_lp(y[j], theta[j], 1);
                     lp += uniform_lp(p.r("u"), lo, hi) + normal_lp(p.r("m"), y_min + 1, 2) + normal_lp(p.r("q"), lo - 1, 2);
                     lp += uniform_lp(p.r("width"), 0, hi - lo);
                     for (double r : p.v("rr")) lp += uniform_lp(r, -1, 1);
                     return lp;
                   },
                   std::nullopt});

  cases.push_back({"positive_ordered_families",
                   {con_p("c", {3}, constraints::positive_ordered()), pos_p("shape", {}, 0.4), pos_p("scale", {}, 0.4)},
                   [](const Point& p) {
                     const std::vector<double> c = p.v("c");
                     const double shape = p.r("shape"), scale = p.r("scale");
                     double lp = 0;
                     for (double ci : c) lp += gamma_lp(ci, 2, 1);
                     lp += lognormal_lp(shape, 0, 0.5) + inv_gamma_lp(scale, 3, 3);
                     for (double t : p.dv("t")) lp += weibull_lp(t, shape, scale);
                     return lp + exponential_lp(c[2] - c[0], 1);
                   },
                   std::nullopt});

  cases.push_back({"continuous_families",
                   {real_p("m", {}, 0.5), pos_p("s", {}, 0.4), pos_p("k", {}, 0.4),
                    con_p("w", {}, constraints::interval(0, 1))},
                   [](const Point& p) {
                     const double m = p.r("m"), s = p.r("s"), k = p.r("k"), w = p.r("w");
                     double lp = student_t_lp(m, 4, 0, 3) + gamma_lp(s, 3, 2) + inv_gamma_lp(k, 3, 2) + beta_lp(w, 2, 3);
                     for (double x : p.dv("a1")) lp += double_exponential_lp(x, m, s);
                     for (double x : p.dv("a2")) lp += cauchy_lp(x, m, k);
                     for (double x : p.dv("a3")) lp += student_t_lp(x, 5, m, s);
                     for (double x : p.dv("b1")) lp += lognormal_lp(x, m, s);
                     for (double x : p.dv("b2")) lp += weibull_lp(x, k, s);
                     for (double x : p.dv("b3")) lp += exponential_lp(x, k);
                     for (double x : p.dv("b4")) lp += gamma_lp(x, k, s);
                     for (double x : p.dv("b5")) lp += inv_gamma_lp(x, s, k);
                     for (double x : p.dv("c1")) lp += beta_lp(x, k, s);
                     for (double x : p.dv("c2")) lp += uniform_lp(x, -w, 1 + w);
                     return lp;
                   },
                   0.0});

  cases.push_back({"discrete_families",
                   {con_p("p", {}, constraints::interval(0, 1)), real_p("alpha"), pos_p("lambda")},
                   [](const Point& pt) {
                     const double p = pt.r("p"), alpha = pt.r("alpha"), lambda = pt.r("lambda");
                     const std::vector<int64_t> n = pt.dk("n_trials"), k = pt.dk("k"), cnt = pt.dk("cnt"), z = pt.dk("z");
                     double lp = 0;
                     for (size_t i = 0; i < n.size(); ++i) {
                       lp += binomial_lp(k[i], n[i], p) + binomial_logit_lp(k[i], n[i], alpha) +
                             binomial_lp(k[i], n[i], inv_logit(alpha));
                       lp += poisson_lp(cnt[i], lambda) + poisson_log_lp(cnt[i], std::log(lambda) + 0.1);
                       lp += bernoulli_lp(z[i], p) + bernoulli_logit_lp(z[i], alpha);
                     }
                     return lp + gamma_lp(lambda, 2, 1) + normal_lp(alpha, 0, 1.5);
                   },
                   std::nullopt});

  // The _lupdf / _lupmf forms keep every constant under the front-end's contract
  // (like ~): this reference is the full density.
  cases.push_back({"lupdf_forms",
                   {real_p("mu", {}, 2.0), pos_p("sigma"), pos_p("lambda")},
                   [](const Point& p) {
                     const double mu = p.r("mu"), sigma = p.r("sigma"), lambda = p.r("lambda");
                     double lp = sum_normal_lp(p.dv("y"), mu, sigma) + normal_lp(mu, 0, 10) + lognormal_lp(sigma, 0, 1);
                     for (int64_t c : p.dk("cnt")) lp += 2 * poisson_lp(c, lambda);
                     return lp + gamma_lp(lambda, 2, 1);
                   },
                   std::nullopt});

  cases.push_back({"shapes",
                   {real_p("rv", {3}), real_p("M", {2, 3}), real_p("av", {2, 3}), real_p("a2", {2, 2}),
                    real_p("arv", {2, 3}), real_p("s0")},
                   [](const Point& p) {
                     const std::vector<double> rv = p.v("rv"), arv = p.v("arv");
                     const Mat M = p.m("M");
                     double lp = sum_normal_lp(rv, 0, 1) + sum_normal_lp(M.a, 1, 2) + sum_normal_lp(p.v("av"), -1, 1) +
                                 sum_normal_lp(p.v("a2"), 0, 3);
                     for (int r = 0; r < 2; ++r)
                       for (int c = 0; c < 3; ++c) lp += normal_lp(arv[r * 3 + c], rv[c], 1);
                     return lp + normal_lp(p.r("s0"), M(1, 2), 0.5);
                   },
                   std::nullopt});

  cases.push_back({"old_syntax",
                   {real_p("mu"), pos_p("sigma"), real_p("beta_g", {2, 2}, 0.5), real_p("eps", {5})},
                   [](const Point& p) {
                     const double mu = p.r("mu"), sigma = p.r("sigma");
                     const std::vector<double> b1 = p.row("beta_g", 0), b2 = p.row("beta_g", 1), eps = p.v("eps"),
                                               y = p.dv("y");
                     const std::vector<int64_t> k = p.dk("k");
                     const Mat X = p.dm("X");
                     double lp = normal_lp(mu, 0, 1) + exponential_lp(sigma, 1) + sum_normal_lp(p.v("beta_g"), 0, 2) +
                                 sum_normal_lp(eps, 0, 1);
                     for (int64_t n = 0; n < X.r; ++n) {
                       const double x1 = X(n, 0) * b1[0] + X(n, 1) * b1[1], x2 = X(n, 0) * b2[0] + X(n, 1) * b2[1];
                       lp += normal_lp(y[n], mu + x1 + 0.1 * eps[n], sigma) + poisson_log_lp(k[n], x2);
                     }
                     return lp;
                   },
                   std::nullopt});

  cases.push_back({"transformed_data_gq",
                   {real_p("alpha"), real_p("b"), pos_p("sigma")},
                   [](const Point& p) {
                     const double alpha = p.r("alpha"), beta = p.r("b"), sigma = p.r("sigma");
                     const std::vector<double> x = p.dv("x"), y = p.dv("y");
                     const double x_mean = mean(x), x_sd = std::sqrt(variance(x)), y_var = variance(y);
                     double lp = normal_lp(alpha, 0, 1) + normal_lp(beta, 0, 1) + inv_gamma_lp(sigma * sigma, 2, y_var);
                     for (size_t n = 0; n < y.size(); ++n) lp += normal_lp(y[n], alpha + beta * (x[n] - x_mean) / x_sd, sigma);
                     return lp;
                   },
                   std::nullopt});

  cases.push_back({"operators",
                   {real_p("a"), real_p("v", {3})},
                   [](const Point& p) {
                     const double a = p.r("a");
                     const std::vector<double> v = p.v("v"), c = p.dv("c");
                     EXPECT_EQ(p.di("N"), 7);
                     EXPECT_EQ(p.di("M"), 2);
                     // N / M = 3 (truncated), N % M = 1, -N / M = -3 (truncated toward zero),
                     // flags = 1 + 1 + 0 + 0 + 1 + 0 + 0 + 1 + 0 = 4.
                     const double q = 3, r = 1, qr = 3.5, neg_q = -3, flags = 4;
                     const double b = (a + 1 - 0.5) * 3 / 2;
                     std::vector<double> w(3);
                     for (int i = 0; i < 3; ++i) {
                       const double w0 = (v[i] + c[i] - 1) * 2 / 4;
                       w[i] = w0 * c[i] + w0 / (1 + c[i] * c[i]);
                     }
                     double lp = normal_lp(a, 0, 1) + sum_normal_lp(v, 0, 1);
                     lp += b * q + r * a - qr * a * a / 10 + neg_q * 0.1 * a + flags * a;
                     lp += sum(w) / 5 - std::inner_product(w.begin(), w.end(), w.begin(), 0.0) / 10;
                     lp += a > 0 ? -a : 2 * a;
                     lp += (a > 0.5 && v[0] < 0) ? 1 : 0;
                     lp += v[1];  // if (N > M || !(M > 2)): true
                     lp += 512 / 1000.0 + v[0] * v[0] / 7;  // 2 ^ 3 ^ 2 = 2 ^ 9
                     lp += -(a * a) / 4;                     // -a ^ 2 = -(a ^ 2)
                     return lp;
                   },
                   std::nullopt});

  cases.push_back({"foreach_loops",
                   {real_p("mu"), pos_p("sigma")},
                   [](const Point& p) {
                     const double mu = p.r("mu"), sigma = p.r("sigma");
                     double lp = sum_normal_lp(p.dv("y"), mu, sigma);
                     for (int64_t c : p.dk("counts")) lp += c * std::log(sigma) / 10;
                     for (double w : p.dv("wv")) lp += -w * mu * mu / 10;
                     return lp - mu / 3 - sigma / 3 + exponential_lp(sigma, 2);
                   },
                   std::nullopt});

  cases.push_back({"parameter_branching",
                   {real_p("a", {}, 1.5), real_p("v", {3})},
                   [](const Point& p) {
                     const double a = p.r("a");
                     const std::vector<double> v = p.v("v");
                     double lp = normal_lp(a, 0, 1) + sum_normal_lp(v, 0, 1);
                     lp += (v[1] > 0 || !(v[2] > 0)) ? v[1] : -v[2];
                     lp += a > 0 ? -a : (a > -1 ? a / 2 : 2 * a);
                     return lp;
                   },
                   std::nullopt});

  cases.push_back({"reshape",
                   {real_p("M", {3, 3}), real_p("rv", {4})},
                   [](const Point& p) {
                     const Mat M = p.m("M");
                     const std::vector<double> rv = p.v("rv"), c9 = p.dv("c9");
                     const Mat a23 = p.dm("a23");
                     double lp = M(0, 1) / 3 + M(1, 2) / 5;  // to_row_vector(M)[4], [8]: column-major
                     lp += rv[1] * 2 + rv[3];
                     double cM = 0;
                     for (int i = 0; i < 3; ++i)
                       for (int j = 0; j < 3; ++j) cM += c9[j * 3 + i] * M(i, j);
                     lp += cM / 10;
                     lp += a23(0, 1) + a23(1, 0) / 2;  // to_array_1d of a 2-d array: row-major
                     lp += a23(1, 0) * rv[0];
                     return lp + sum_normal_lp(M.a, 0, 1) + sum_normal_lp(rv, 0, 1);
                   },
                   std::nullopt});

  return cases;
}

const std::vector<Case>& all_cases() {
  static const std::vector<Case> cases = corpus();
  return cases;
}

const Case& find_case(const std::string& name) {
  for (const Case& c : all_cases())
    if (c.name == name) return c;
  throw std::invalid_argument("no case " + name);
}

// ---------------------------------------------------------------------------------
// Drawing parameter values in their support: (S, *shape), float64.

at::Tensor draw(const Param& p, int64_t S, at::Generator& gen) {
  std::vector<int64_t> shape = {S};
  shape.insert(shape.end(), p.shape.begin(), p.shape.end());
  const at::Tensor z = at::randn(shape, gen, at::kDouble);
  const Constraint& c = p.support;
  switch (c.kind()) {
    case ConstraintKind::real:
      return p.scale * z;
    case ConstraintKind::positive:
      return at::exp(p.scale * z);
    case ConstraintKind::greater_than:
      return c.lower() + at::exp(p.scale * z);
    case ConstraintKind::less_than:
      return c.upper() - at::exp(p.scale * z);
    case ConstraintKind::interval:
    case ConstraintKind::unit_interval:
      return c.lower() + (c.upper() - c.lower()) * at::sigmoid(p.scale * z);
    case ConstraintKind::simplex:
      return at::softmax(p.scale * z, -1);
    case ConstraintKind::ordered: {
      // The first element real, then positive increments.
      at::Tensor steps = at::exp(0.7 * z);
      steps.select(-1, 0).copy_(p.scale * z.select(-1, 0));
      return at::cumsum(steps, -1);
    }
    case ConstraintKind::positive_ordered:
      return at::cumsum(at::exp(p.scale * z), -1);
    case ConstraintKind::corr_cholesky: {
      // Rows of a lower-triangular matrix with positive diagonal, normalised to unit length.
      const int64_t K = z.size(-1);
      const at::Tensor eye = at::eye(K, at::kDouble);
      at::Tensor L = at::tril(z, -1) + eye * at::exp(0.3 * z);
      return L / L.norm(2, {-1}, true);
    }
    case ConstraintKind::lower_cholesky: {
      const int64_t K = z.size(-1);
      const at::Tensor eye = at::eye(K, at::kDouble);
      return at::tril(z, -1) + eye * at::exp(p.scale * z);
    }
    case ConstraintKind::positive_definite: {
      const int64_t K = z.size(-1);
      return at::matmul(z, z.transpose(-1, -2)) / K + 0.5 * at::eye(K, at::kDouble);
    }
  }
  throw std::logic_error("draw: unhandled constraint " + c.to_string());
}

SiteValues draw_values(const Case& c, int64_t S, uint64_t seed) {
  at::Generator gen = at::detail::createCPUGenerator(seed);
  SiteValues values;
  for (const Param& p : c.params) values[p.name] = draw(p, S, gen);
  return values;
}

// positive == greater_than(0) and unit_interval == interval(0, 1): a front-end may use
// either spelling for <lower=0> and <lower=0, upper=1>.
bool same_support(const Constraint& got, const Constraint& want) {
  auto normal_form = [](const Constraint& c) -> std::tuple<ConstraintKind, double, double> {
    switch (c.kind()) {
      case ConstraintKind::positive:
        return {ConstraintKind::greater_than, 0.0, 0.0};
      case ConstraintKind::greater_than:
        return {ConstraintKind::greater_than, c.lower(), 0.0};
      case ConstraintKind::less_than:
        return {ConstraintKind::less_than, 0.0, c.upper()};
      case ConstraintKind::unit_interval:
        return {ConstraintKind::interval, 0.0, 1.0};
      case ConstraintKind::interval:
        return {ConstraintKind::interval, c.lower(), c.upper()};
      default:
        return {c.kind(), 0.0, 0.0};
    }
  };
  const auto [gk, gl, gu] = normal_form(got);
  const auto [wk, wl, wu] = normal_form(want);
  return gk == wk && std::abs(gl - wl) <= 1e-12 && std::abs(gu - wu) <= 1e-12;
}

std::string path_of(const std::string& name, const std::string& ext) { return kDir + "/" + name + ext; }

StanModel load_model(const std::string& name) {
  return StanModel(load_stan(path_of(name, ".stan")), load_data(path_of(name, ".json")));
}

void expect_sites(const Model& model, const Case& c) {
  const std::vector<SiteInfo>& sites = model.sites();
  ASSERT_EQ(sites.size(), c.params.size()) << c.name;
  for (size_t i = 0; i < sites.size(); ++i) {
    const Param& p = c.params[i];
    EXPECT_EQ(sites[i].name, p.name) << c.name << ": site " << i;
    EXPECT_EQ(sites[i].shape, p.shape) << c.name << ": " << p.name;
    EXPECT_TRUE(same_support(sites[i].support, p.support))
        << c.name << ": " << p.name << " has support " << sites[i].support.to_string() << ", expected "
        << p.support.to_string();
    EXPECT_FALSE(sites[i].discrete) << c.name << ": " << p.name;
  }
}

void expect_close(const at::Tensor& got, const std::vector<double>& want, const std::string& what) {
  ASSERT_EQ(got.sizes(), (std::vector<int64_t>{static_cast<int64_t>(want.size())})) << what;
  ASSERT_EQ(got.scalar_type(), at::kDouble) << what;
  for (size_t s = 0; s < want.size(); ++s) {
    const double g = got[s].item<double>();
    ASSERT_TRUE(std::isfinite(want[s])) << what << ": reference not finite at particle " << s;
    EXPECT_NEAR(g, want[s], 1e-9 * std::max(1.0, std::abs(want[s]))) << what << ", particle " << s;
  }
}

std::vector<double> closed_form_values(const Case& c, const SiteValues& values, const Data& data, int64_t S) {
  std::vector<double> out;
  for (int64_t s = 0; s < S; ++s) out.push_back(c.closed_form(Point(values, s, data)));
  return out;
}

// ---------------------------------------------------------------------------------

class Corpus : public ::testing::TestWithParam<std::string> {};

TEST_P(Corpus, LogJointMatchesTheReference) {
  const Case& c = find_case(GetParam());
  ASSERT_TRUE(c.closed_form || c.qvr_offset) << c.name << " has no reference";
  StanModel model = load_model(c.name);
  EXPECT_EQ(model.name(), c.name);
  expect_sites(model, c);
  const Data data = load_data(path_of(c.name, ".json"));
  std::optional<ProgramModel> qvr;
  if (c.qvr_offset) qvr.emplace(load_program(path_of(c.name, ".qvr")), data);

  uint64_t seed = 1000;
  for (int64_t S : {int64_t{1}, int64_t{7}}) {
    SCOPED_TRACE(c.name + ", S = " + std::to_string(S));
    const SiteValues values = draw_values(c, S, seed++);
    const at::Tensor x = vguide::particles(S, at::kDouble);
    const at::Tensor lj = model.log_joint(x, values);
    if (c.closed_form) expect_close(lj, closed_form_values(c, values, data, S), "closed form");
    if (qvr) {
      const at::Tensor ref = (qvr->log_joint(x, values) + *c.qvr_offset).contiguous();
      expect_close(lj, std::vector<double>(ref.data_ptr<double>(), ref.data_ptr<double>() + S), "qvr");
    }
  }
}

// With a .qvr reference, the gradients with respect to every latent agree too.
class QvrCorpus : public ::testing::TestWithParam<std::string> {};

TEST_P(QvrCorpus, GradientMatchesTheQvrReference) {
  const Case& c = find_case(GetParam());
  StanModel model = load_model(c.name);
  ProgramModel qvr(load_program(path_of(c.name, ".qvr")), load_data(path_of(c.name, ".json")));
  const int64_t S = 5;
  const SiteValues base = draw_values(c, S, 77);
  SiteValues a, b;
  for (const auto& [name, v] : base) {
    a[name] = v.clone().requires_grad_(true);
    b[name] = v.clone().requires_grad_(true);
  }
  const at::Tensor x = vguide::particles(S, at::kDouble);
  model.log_joint(x, a).sum().backward();
  qvr.log_joint(x, b).sum().backward();
  for (const auto& [name, v] : a) {
    ASSERT_TRUE(v.grad().defined()) << c.name << ": no gradient for " << name;
    const at::Tensor want = b.at(name).grad();
    ASSERT_TRUE(want.defined()) << c.name << ": the reference has no gradient for " << name;
    const double err = (v.grad() - want).abs().max().item<double>();
    EXPECT_LE(err, 1e-8 * std::max(1.0, want.abs().max().item<double>())) << c.name << ": gradient of " << name;
  }
}

std::vector<std::string> case_names() {
  std::vector<std::string> names;
  for (const Case& c : all_cases()) names.push_back(c.name);
  return names;
}

std::vector<std::string> qvr_case_names() {
  std::vector<std::string> names;
  for (const Case& c : all_cases())
    if (c.qvr_offset) names.push_back(c.name);
  return names;
}

std::string param_name(const ::testing::TestParamInfo<std::string>& info) { return info.param; }

INSTANTIATE_TEST_SUITE_P(StanCorpus, Corpus, ::testing::ValuesIn(case_names()), param_name);
INSTANTIATE_TEST_SUITE_P(StanCorpus, QvrCorpus, ::testing::ValuesIn(qvr_case_names()), param_name);

// The cdfs at their edges: finite values and gradients where Stan's are finite
// (weibull at y = 0 with alpha < 1, far tails of gumbel, cauchy and exponential).
TEST(StanCorpus, CdfEdgesHaveFiniteValuesAndGradients) {
  const std::string text = R"(
parameters { real<lower=0> alpha; real<lower=0> sigma; real mu; }
model {
  target += weibull_lccdf(0 | alpha, sigma) + weibull_lcdf(1e-3 | 6 * alpha, sigma);
  target += gumbel_lccdf(40 + mu | mu, 1) + cauchy_lccdf(1e17 | mu, sigma) + exponential_lcdf(1e-18 | sigma);
}
)";
  StanModel model(parse_stan(text, "edges.stan"), parse_data("{}", "edges.json"));
  const at::Tensor alpha = at::tensor({0.5}, at::kDouble).requires_grad_(true);
  const at::Tensor sigma = at::tensor({1.0}, at::kDouble).requires_grad_(true);
  const at::Tensor mu = at::tensor({0.0}, at::kDouble).requires_grad_(true);
  const at::Tensor lj = model.log_joint(at::empty({1}, at::kDouble), {{"alpha", alpha}, {"sigma", sigma}, {"mu", mu}});
  // weibull_lccdf(0) = 0; weibull_lcdf(1e-3 | 3, 1) = log(1 - exp(-1e-9)); gumbel_lccdf
  // at z = 40: log(1 - exp(-exp(-40))); cauchy_lccdf(1e17) = log(atan(1e-17) / pi);
  // exponential_lcdf(1e-18 | 1) = log(1 - exp(-1e-18)).
  const double want = std::log(-std::expm1(-1e-9)) + std::log(-std::expm1(-std::exp(-40.0))) +
                      std::log(std::atan(1e-17) / M_PI) + std::log(-std::expm1(-1e-18));
  EXPECT_NEAR(lj.item<double>(), want, 1e-9 * std::abs(want));
  const auto g = torch::autograd::grad({lj.sum()}, {alpha, sigma, mu});
  for (const auto& t : g) EXPECT_TRUE(at::isfinite(t).all().item<bool>()) << t;
}

TEST(StanCorpus, EveryProgramHasDataAndAReference) {
  std::set<std::string> programs;
  for (const auto& entry : std::filesystem::directory_iterator(kDir))
    if (entry.path().extension() == ".stan") programs.insert(entry.path().stem().string());
  EXPECT_GE(programs.size(), 32u);
  std::set<std::string> cases;
  for (const Case& c : all_cases()) {
    EXPECT_TRUE(cases.insert(c.name).second) << "duplicate case " << c.name;
    EXPECT_TRUE(programs.count(c.name)) << c.name << ".stan is missing";
    if (c.qvr_offset) {
      EXPECT_TRUE(std::filesystem::exists(path_of(c.name, ".qvr"))) << c.name;
    }
  }
  for (const std::string& p : programs) {
    EXPECT_TRUE(cases.count(p)) << p << ".stan has no test case";
    EXPECT_TRUE(std::filesystem::exists(path_of(p, ".json"))) << p << ".json is missing";
  }
}

// The references themselves: each .qvr reference agrees with its closed form (so a
// mistake in one of them cannot hide behind the other).
TEST(StanCorpus, QvrReferencesAgreeWithTheClosedForms) {
  for (const Case& c : all_cases()) {
    if (!c.qvr_offset || !c.closed_form) continue;
    SCOPED_TRACE(c.name);
    const Data data = load_data(path_of(c.name, ".json"));
    ProgramModel qvr(load_program(path_of(c.name, ".qvr")), data);
    const int64_t S = 4;
    const SiteValues values = draw_values(c, S, 31);
    const at::Tensor ref = (qvr.log_joint(vguide::particles(S, at::kDouble), values) + *c.qvr_offset).contiguous();
    std::vector<double> want = closed_form_values(c, values, data, S);
    expect_close(ref, want, "qvr vs closed form");
  }
}

// Explicit site checks for programs with constrained types, written out in full.
TEST(StanCorpus, SitesOfConstrainedTypes) {
  {
    StanModel model = load_model("mvn_lkj");
    const auto& s = model.sites();
    ASSERT_EQ(s.size(), 3u);
    EXPECT_EQ(s[1].name, "L_Omega");
    EXPECT_EQ(s[1].shape, (std::vector<int64_t>{3, 3}));
    EXPECT_EQ(s[1].support.kind(), ConstraintKind::corr_cholesky);
    EXPECT_EQ(s[2].name, "tau");
    EXPECT_EQ(s[2].shape, (std::vector<int64_t>{3}));
    EXPECT_TRUE(s[2].support.kind() == ConstraintKind::positive ||
                (s[2].support.kind() == ConstraintKind::greater_than && s[2].support.lower() == 0.0))
        << s[2].support.to_string();
  }
  {
    StanModel model = load_model("multi_normal_cov");
    const auto& s = model.sites();
    ASSERT_EQ(s.size(), 3u);
    EXPECT_EQ(s[1].support.kind(), ConstraintKind::positive_definite);
    EXPECT_EQ(s[1].shape, (std::vector<int64_t>{3, 3}));
    EXPECT_EQ(s[2].support.kind(), ConstraintKind::lower_cholesky);
  }
  {
    StanModel model = load_model("dirichlet_categorical");
    const auto& s = model.sites();
    ASSERT_EQ(s.size(), 2u);
    EXPECT_EQ(s[0].support.kind(), ConstraintKind::simplex);
    EXPECT_EQ(s[0].shape, (std::vector<int64_t>{4}));
    EXPECT_EQ(s[1].name, "phi");
    EXPECT_EQ(s[1].support.kind(), ConstraintKind::simplex);
    EXPECT_EQ(s[1].shape, (std::vector<int64_t>{2, 3}));
  }
  {
    StanModel model = load_model("positive_ordered_families");
    EXPECT_EQ(model.sites().at(0).support.kind(), ConstraintKind::positive_ordered);
    StanModel ordered = load_model("ordered_logistic");
    EXPECT_EQ(ordered.sites().at(1).support.kind(), ConstraintKind::ordered);
    EXPECT_EQ(ordered.sites().at(1).shape, (std::vector<int64_t>{3}));  // ordered[K - 1], K = 4
  }
  {
    // Bounds from data and transformed-data expressions; offset/multiplier leaves the support real.
    StanModel model = load_model("offset_multiplier_bounds");
    const auto& s = model.sites();
    ASSERT_EQ(s.size(), 6u);
    EXPECT_EQ(s[0].support.kind(), ConstraintKind::real);
    EXPECT_EQ(s[0].shape, (std::vector<int64_t>{5}));
    EXPECT_EQ(s[1].support.kind(), ConstraintKind::interval);
    EXPECT_DOUBLE_EQ(s[1].support.lower(), -1.5);
    EXPECT_DOUBLE_EQ(s[1].support.upper(), 2.5);
    EXPECT_EQ(s[2].support.kind(), ConstraintKind::greater_than);
    EXPECT_DOUBLE_EQ(s[2].support.lower(), -0.379);  // min(y)
    EXPECT_EQ(s[3].support.kind(), ConstraintKind::less_than);
    EXPECT_DOUBLE_EQ(s[3].support.upper(), -1.5);
    EXPECT_DOUBLE_EQ(s[4].support.upper(), 4.0);  // hi - lo
    EXPECT_EQ(s[5].shape, (std::vector<int64_t>{2}));
  }
  {
    StanModel model = load_model("shapes");
    const auto& s = model.sites();
    ASSERT_EQ(s.size(), 6u);
    const std::vector<std::vector<int64_t>> shapes = {{3}, {2, 3}, {2, 3}, {2, 2}, {2, 3}, {}};
    for (size_t i = 0; i < s.size(); ++i) EXPECT_EQ(s[i].shape, shapes[i]) << s[i].name;
  }
}

// Transformed parameters and generated quantities do not enter the log density, but
// quantities() reports them; for the non-centred eight schools, theta = mu + tau theta_tilde.
TEST(StanCorpus, QuantitiesOfEightSchoolsNonCentred) {
  StanModel model = load_model("eight_schools_noncentered");
  const Case& c = find_case("eight_schools_noncentered");
  const SiteValues values = draw_values(c, 3, 5);
  at::Generator gen = at::detail::createCPUGenerator(9);
  const std::vector<StanQuantity> q = model.quantities(values, gen);
  std::vector<std::string> names;
  for (const StanQuantity& x : q) names.push_back(x.name);
  ASSERT_EQ(names, (std::vector<std::string>{"mu", "tau", "theta_tilde", "theta", "theta_mean", "z"}));
  const at::Tensor theta = values.at("mu").unsqueeze(1) + values.at("tau").unsqueeze(1) * values.at("theta_tilde");
  EXPECT_EQ(q[3].block, StanQuantity::Block::transformed_parameters);
  EXPECT_EQ(q[3].shape, (std::vector<int64_t>{8}));
  EXPECT_TRUE(at::allclose(q[3].values, theta, 1e-12, 1e-12));
  EXPECT_EQ(q[4].block, StanQuantity::Block::generated_quantities);
  EXPECT_TRUE(at::allclose(q[4].values, theta.mean(1), 1e-12, 1e-12));
  const at::Tensor y = at::tensor({28., 8., -3., 7., -1., 1., 18., 12.}, at::kDouble);
  const at::Tensor sigma = at::tensor({15., 10., 16., 11., 9., 11., 10., 18.}, at::kDouble);
  EXPECT_TRUE(at::allclose(q[5].values, (y - theta) / sigma, 1e-12, 1e-12));
}

}  // namespace
}  // namespace vguide::model
