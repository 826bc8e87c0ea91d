#include "accuracy/reference.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>

namespace vguide::accuracy {
namespace {

constexpr double kPi = 3.14159265358979323846;

void require(bool ok, const std::string& message) {
  if (!ok) throw std::invalid_argument(message);
}

}  // namespace

Matrix cholesky(const Matrix& a) {
  const size_t n = a.size();
  Matrix l(n, Vector(n, 0.0));
  for (size_t j = 0; j < n; ++j) {
    require(a[j].size() == n, "cholesky: the matrix is not square");
    double d = a[j][j];
    for (size_t k = 0; k < j; ++k) d -= l[j][k] * l[j][k];
    if (!(d > 0.0))
      throw std::domain_error("cholesky: pivot " + std::to_string(j) + " is " + std::to_string(d) +
                              ", the matrix is not positive definite");
    l[j][j] = std::sqrt(d);
    for (size_t i = j + 1; i < n; ++i) {
      double s = a[i][j];
      for (size_t k = 0; k < j; ++k) s -= l[i][k] * l[j][k];
      l[i][j] = s / l[j][j];
    }
  }
  return l;
}

Vector cholesky_solve(const Matrix& lower, const Vector& b) {
  const size_t n = lower.size();
  Vector z(b);
  for (size_t i = 0; i < n; ++i) {
    for (size_t k = 0; k < i; ++k) z[i] -= lower[i][k] * z[k];
    z[i] /= lower[i][i];
  }
  for (size_t i = n; i-- > 0;) {
    for (size_t k = i + 1; k < n; ++k) z[i] -= lower[k][i] * z[k];
    z[i] /= lower[i][i];
  }
  return z;
}

Matrix cholesky_inverse(const Matrix& lower) {
  const size_t n = lower.size();
  Matrix inv(n, Vector(n, 0.0));
  for (size_t j = 0; j < n; ++j) {
    Vector e(n, 0.0);
    e[j] = 1.0;
    const Vector column = cholesky_solve(lower, e);
    for (size_t i = 0; i < n; ++i) inv[i][j] = column[i];
  }
  return inv;
}

double cholesky_log_det(const Matrix& lower) {
  double s = 0.0;
  for (size_t i = 0; i < lower.size(); ++i) s += 2.0 * std::log(lower[i][i]);
  return s;
}

Matrix cov_exp_quad(const Vector& x, double alpha, double rho) {
  const size_t n = x.size();
  Matrix k(n, Vector(n, 0.0));
  for (size_t i = 0; i < n; ++i)
    for (size_t j = 0; j < n; ++j) {
      const double d = x[i] - x[j];
      k[i][j] = alpha * alpha * std::exp(-d * d / (2.0 * rho * rho));
    }
  return k;
}

Stream::Stream(uint64_t seed) : engine_(seed) {}

double Stream::uniform() { return (static_cast<double>(engine_() >> 11) + 0.5) * 0x1.0p-53; }

double Stream::normal() {
  if (has_spare_) {
    has_spare_ = false;
    return spare_;
  }
  const double r = std::sqrt(-2.0 * std::log(uniform())), angle = 2.0 * kPi * uniform();
  spare_ = r * std::sin(angle);
  has_spare_ = true;
  return r * std::cos(angle);
}

// ---- the Gaussian linear model ----

namespace {

void check_problem(const RegressionProblem& p) {
  const size_t n = p.y.size(), d = p.prior_mean.size();
  require(n > 0 && d > 0, "regression_posterior: no rows or no coefficients");
  require(p.X.size() == n, "regression_posterior: X has " + std::to_string(p.X.size()) + " rows, y " +
                               std::to_string(n));
  require(p.prior_sd.size() == d, "regression_posterior: prior_sd and prior_mean differ in size");
  for (const Vector& row : p.X) require(row.size() == d, "regression_posterior: a row of X has the wrong size");
  for (double s : p.prior_sd) require(s > 0.0, "regression_posterior: a prior sd is not positive");
  require(p.sigma_scale > 0.0, "regression_posterior: sigma_scale is not positive");
}

}  // namespace

ConditionalGaussian beta_given_sigma(const RegressionProblem& p, double sigma) {
  check_problem(p);
  const size_t n = p.y.size(), d = p.prior_mean.size();
  const double s2 = sigma * sigma;
  // Precision P = XᵀX / sigma² + S⁻¹, and P b = Xᵀy / sigma² + S⁻¹ m.
  Matrix precision(d, Vector(d, 0.0));
  Vector rhs(d, 0.0);
  for (size_t i = 0; i < n; ++i)
    for (size_t a = 0; a < d; ++a) {
      rhs[a] += p.X[i][a] * p.y[i] / s2;
      for (size_t b = 0; b < d; ++b) precision[a][b] += p.X[i][a] * p.X[i][b] / s2;
    }
  double log_det_prior = 0.0;
  for (size_t a = 0; a < d; ++a) {
    const double v = p.prior_sd[a] * p.prior_sd[a];
    precision[a][a] += 1.0 / v;
    rhs[a] += p.prior_mean[a] / v;
    log_det_prior += std::log(v);
  }
  const Matrix l = cholesky(precision);
  ConditionalGaussian out;
  out.mean = cholesky_solve(l, rhs);
  out.cov = cholesky_inverse(l);
  // log N(y; X m, sigma² I + X S Xᵀ): the determinant by the matrix determinant
  // lemma, sigma^(2n) |S| |P|; the quadratic form as the minimum over beta of
  // |y - X beta|² / sigma² + (beta - m)ᵀ S⁻¹ (beta - m), attained at the mean.
  double quadratic = 0.0;
  for (size_t i = 0; i < n; ++i) {
    double r = p.y[i];
    for (size_t a = 0; a < d; ++a) r -= p.X[i][a] * out.mean[a];
    quadratic += r * r / s2;
  }
  for (size_t a = 0; a < d; ++a) {
    const double r = out.mean[a] - p.prior_mean[a];
    quadratic += r * r / (p.prior_sd[a] * p.prior_sd[a]);
  }
  out.log_marginal = -0.5 * static_cast<double>(n) * std::log(2.0 * kPi * s2) - 0.5 * log_det_prior -
                     0.5 * cholesky_log_det(l) - 0.5 * quadratic;
  return out;
}

double RegressionPosterior::correlation(size_t i, size_t j) const {
  return beta_cov[i][j] / std::sqrt(beta_cov[i][i] * beta_cov[j][j]);
}

RegressionPosterior regression_posterior(const RegressionProblem& p, int nodes) {
  check_problem(p);
  require(nodes >= 3, "regression_posterior: nodes must be at least 3");
  const size_t d = p.prior_mean.size();
  // The log density of u = log sigma: HalfNormal prior, the Jacobian sigma, and the
  // marginal likelihood.
  auto log_density = [&](double u) {
    const double sigma = std::exp(u);
    return -0.5 * sigma * sigma / (p.sigma_scale * p.sigma_scale) + u + beta_given_sigma(p, sigma).log_marginal;
  };
  // Locate the mass: a scan in steps of 0.01 over sigma in [e^-25, e^10] times the
  // prior scale, then the interval where the density is within e^-40 of its top.
  const double origin = std::log(p.sigma_scale), step = 0.01;
  const int scan = 3500;
  Vector scanned(scan + 1);
  for (int i = 0; i <= scan; ++i) scanned[i] = log_density(origin - 25.0 + step * i);
  const int top = static_cast<int>(std::max_element(scanned.begin(), scanned.end()) - scanned.begin());
  require(top > 0 && top < scan, "regression_posterior: the posterior of sigma lies outside the scanned range");
  int lo = top, hi = top;
  while (lo > 0 && scanned[lo] > scanned[top] - 40.0) --lo;
  while (hi < scan && scanned[hi] > scanned[top] - 40.0) ++hi;
  const double u_lo = origin - 25.0 + step * lo, u_hi = origin - 25.0 + step * hi;

  const double h = (u_hi - u_lo) / (nodes - 1);
  Vector log_w(nodes);
  std::vector<ConditionalGaussian> conditional(nodes);
  for (int k = 0; k < nodes; ++k) {
    const double u = u_lo + h * k, sigma = std::exp(u);
    conditional[k] = beta_given_sigma(p, sigma);
    log_w[k] = -0.5 * sigma * sigma / (p.sigma_scale * p.sigma_scale) + u + conditional[k].log_marginal;
  }
  const int top_node = static_cast<int>(std::max_element(log_w.begin(), log_w.end()) - log_w.begin());
  const double log_max = log_w[top_node];
  // Moments about the conditional mean at the top node and about its sigma, so that
  // sds far below the means (1e-3 against 2) lose no digits to cancellation.
  const Vector& centre = conditional[top_node].mean;
  const double sigma_centre = std::exp(u_lo + h * top_node);
  double total = 0.0, s1 = 0.0, s2 = 0.0;
  Vector m1(d, 0.0);
  Matrix m2(d, Vector(d, 0.0));
  for (int k = 0; k < nodes; ++k) {
    const double w = ((k == 0 || k == nodes - 1) ? 0.5 : 1.0) * std::exp(log_w[k] - log_max);
    const double sigma = std::exp(u_lo + h * k) - sigma_centre;
    total += w;
    s1 += w * sigma;
    s2 += w * sigma * sigma;
    for (size_t a = 0; a < d; ++a) {
      const double da = conditional[k].mean[a] - centre[a];
      m1[a] += w * da;
      for (size_t b = 0; b < d; ++b)
        m2[a][b] += w * (conditional[k].cov[a][b] + da * (conditional[k].mean[b] - centre[b]));
    }
  }
  RegressionPosterior post;
  post.beta_cov.assign(d, Vector(d, 0.0));
  for (size_t a = 0; a < d; ++a)
    for (size_t b = 0; b < d; ++b) post.beta_cov[a][b] = m2[a][b] / total - (m1[a] / total) * (m1[b] / total);
  for (size_t a = 0; a < d; ++a) post.beta.push_back({centre[a] + m1[a] / total, std::sqrt(post.beta_cov[a][a])});
  const double sigma_shift = s1 / total;
  post.sigma = {sigma_centre + sigma_shift, std::sqrt(std::max(0.0, s2 / total - sigma_shift * sigma_shift))};
  return post;
}

// ---- importance sampling ----

ImportanceResult laplace_t_importance(const Target& target, int64_t draws, int nu, uint64_t seed) {
  require(target.dim > 0 && draws > 1 && nu > 0, "laplace_t_importance: bad dim, draws or nu");
  const size_t d = static_cast<size_t>(target.dim);
  // Newton with step halving to the mode.
  Vector z(d, 0.0), gradient(d);
  Matrix hessian(d, Vector(d));
  bool converged = false;
  for (int iteration = 0; iteration < 200 && !converged; ++iteration) {
    target.derivatives(z, gradient, hessian);
    Matrix negative(d, Vector(d));
    for (size_t a = 0; a < d; ++a)
      for (size_t b = 0; b < d; ++b) negative[a][b] = -hessian[a][b];
    const Vector direction = cholesky_solve(cholesky(negative), gradient);
    const double current = target.log_density(z);
    double t = 1.0;
    Vector next(d);
    for (int halving = 0; halving < 60; ++halving, t *= 0.5) {
      for (size_t a = 0; a < d; ++a) next[a] = z[a] + t * direction[a];
      if (target.log_density(next) >= current - 1e-12) break;
    }
    double change = 0.0;
    for (size_t a = 0; a < d; ++a) change = std::max(change, std::abs(next[a] - z[a]));
    z = next;
    converged = change < 1e-12;
  }
  if (!converged) throw std::runtime_error("laplace_t_importance: Newton's method did not converge");
  target.derivatives(z, gradient, hessian);
  Matrix negative(d, Vector(d));
  for (size_t a = 0; a < d; ++a)
    for (size_t b = 0; b < d; ++b) negative[a][b] = -hessian[a][b];
  const Matrix scale = cholesky(cholesky_inverse(cholesky(negative)));
  double log_det_scale = 0.0;
  for (size_t a = 0; a < d; ++a) log_det_scale += std::log(scale[a][a]);

  // Draws theta = mode + scale eps sqrt(nu / chi²_nu); log q up to a constant is
  // -(nu + d)/2 log(1 + |eps|² / nu) - log det(scale).
  Stream stream(seed);
  Vector log_w(static_cast<size_t>(draws));
  std::vector<Vector> theta(static_cast<size_t>(draws), Vector(d));
  Vector eps(d);
  for (int64_t s = 0; s < draws; ++s) {
    double chi2 = 0.0;
    for (int k = 0; k < nu; ++k) {
      const double g = stream.normal();
      chi2 += g * g;
    }
    const double r = std::sqrt(nu / chi2);
    double norm2 = 0.0;
    for (size_t a = 0; a < d; ++a) {
      eps[a] = stream.normal() * r;
      norm2 += eps[a] * eps[a];
    }
    Vector& t = theta[static_cast<size_t>(s)];
    for (size_t a = 0; a < d; ++a) {
      t[a] = z[a];
      for (size_t b = 0; b <= a; ++b) t[a] += scale[a][b] * eps[b];
    }
    const double log_q = -0.5 * (nu + static_cast<double>(d)) * std::log1p(norm2 / nu) - log_det_scale;
    log_w[static_cast<size_t>(s)] = target.log_density(t) - log_q;
  }
  const double top = *std::max_element(log_w.begin(), log_w.end());
  double sum_w = 0.0, sum_w2 = 0.0;
  Vector w(log_w.size());
  for (size_t s = 0; s < w.size(); ++s) {
    w[s] = std::exp(log_w[s] - top);
    sum_w += w[s];
    sum_w2 += w[s] * w[s];
  }
  ImportanceResult out;
  out.mode = z;
  out.draws = draws;
  out.ess = sum_w * sum_w / sum_w2;
  for (size_t a = 0; a < d; ++a) {
    double m1 = 0.0, m2 = 0.0;
    for (size_t s = 0; s < w.size(); ++s) {
      m1 += w[s] * theta[s][a];
      m2 += w[s] * theta[s][a] * theta[s][a];
    }
    const double mean = m1 / sum_w;
    double se2 = 0.0;
    for (size_t s = 0; s < w.size(); ++s) {
      const double c = w[s] / sum_w * (theta[s][a] - mean);
      se2 += c * c;
    }
    out.moments.push_back({mean, std::sqrt(std::max(0.0, m2 / sum_w - mean * mean))});
    out.mean_se.push_back(std::sqrt(se2));
  }
  return out;
}

Target poisson_gp_target(const PoissonGpProblem& p) {
  require(p.x.size() == p.k.size() && !p.x.empty(), "poisson_gp_target: x and k differ in size or are empty");
  Matrix kernel = cov_exp_quad(p.x, p.alpha, p.rho);
  for (size_t i = 0; i < kernel.size(); ++i) kernel[i][i] += p.jitter;
  const Matrix l = cholesky(kernel);
  const size_t n = p.x.size();
  auto latent = [l, n, offset = p.offset](const Vector& eta) {
    Vector f(n, offset);
    for (size_t i = 0; i < n; ++i)
      for (size_t j = 0; j <= i; ++j) f[i] += l[i][j] * eta[j];
    return f;
  };
  Target t;
  t.dim = static_cast<int>(n);
  t.log_density = [latent, k = p.k, n](const Vector& eta) {
    const Vector f = latent(eta);
    double s = 0.0;
    for (size_t i = 0; i < n; ++i) s += static_cast<double>(k[i]) * f[i] - std::exp(f[i]) - 0.5 * eta[i] * eta[i];
    return s;
  };
  t.derivatives = [latent, l, k = p.k, n](const Vector& eta, Vector& gradient, Matrix& hessian) {
    const Vector f = latent(eta);
    gradient.assign(n, 0.0);
    hessian.assign(n, Vector(n, 0.0));
    // gradient = Lᵀ (k - e^f) - eta; Hessian = -Lᵀ diag(e^f) L - I.
    for (size_t i = 0; i < n; ++i) {
      const double r = static_cast<double>(k[i]) - std::exp(f[i]), e = std::exp(f[i]);
      for (size_t a = 0; a <= i; ++a) {
        gradient[a] += l[i][a] * r;
        for (size_t b = 0; b <= i; ++b) hessian[a][b] -= l[i][a] * e * l[i][b];
      }
    }
    for (size_t a = 0; a < n; ++a) {
      gradient[a] -= eta[a];
      hessian[a][a] -= 1.0;
    }
  };
  return t;
}

}  // namespace vguide::accuracy
