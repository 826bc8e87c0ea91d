#pragma once
/// Exact (or Monte Carlo with a checked error) posterior moments for the accuracy
/// suite, computed in plain doubles without LibTorch and without any of vguide's
/// fitting code, so that a reference cannot share a bug with what it checks.
///
/// - `regression_posterior`: a Gaussian linear model with independent Normal priors
///   on the coefficients and a HalfNormal prior on the noise sd. Given sigma the
///   coefficients are Gaussian (exact algebra); sigma is integrated numerically in
///   log sigma (trapezoid rule over the region holding the mass), and the law of
///   total variance gives the coefficients' sds.
/// - `laplace_t_importance`: self-normalised importance sampling from a multivariate
///   Student-t centred at the mode with the Laplace scale, for smooth log-concave
///   targets (the latent Poisson-log GP); reports the effective sample size.
///
/// Example:
///   auto post = vguide::accuracy::regression_posterior(problem);
///   post.beta[1].mean, post.beta[1].sd, post.sigma.mean
#include <cstdint>
#include <functional>
#include <random>
#include <vector>

namespace vguide::accuracy {

using Vector = std::vector<double>;
/// Row-major square or rectangular matrix as rows.
using Matrix = std::vector<Vector>;

struct Moments {
  double mean = 0.0;
  double sd = 0.0;
};

// ---- small dense linear algebra (row-major, plain loops) ----

/// Lower Cholesky factor of a symmetric positive-definite matrix.
/// @throw std::domain_error naming the pivot if it is not positive definite.
Matrix cholesky(const Matrix& a);
/// Solves L Lᵀ x = b for the factor L from `cholesky`.
Vector cholesky_solve(const Matrix& lower, const Vector& b);
/// The inverse of L Lᵀ.
Matrix cholesky_inverse(const Matrix& lower);
/// log det(L Lᵀ).
double cholesky_log_det(const Matrix& lower);

/// Stan's cov_exp_quad: alpha² exp(-(x_i - x_j)² / (2 rho²)).
Matrix cov_exp_quad(const Vector& x, double alpha, double rho);

// ---- a deterministic random stream (the same numbers on every platform) ----

/// std::mt19937_64 (specified exactly by the standard) with Box-Muller normals:
/// std::normal_distribution's algorithm is implementation-defined, this is not.
class Stream {
 public:
  explicit Stream(uint64_t seed);
  double uniform();  ///< in (0, 1)
  double normal();

 private:
  std::mt19937_64 engine_;
  double spare_ = 0.0;
  bool has_spare_ = false;
};

// ---- the Gaussian linear model ----

/// y_i ~ Normal(X_i · beta, sigma), beta_k ~ Normal(prior_mean_k, prior_sd_k),
/// sigma ~ HalfNormal(sigma_scale). X holds every coefficient's column (the
/// intercept's column of ones included).
struct RegressionProblem {
  Matrix X;
  Vector y;
  Vector prior_mean;
  Vector prior_sd;
  double sigma_scale = 1.0;
};

/// beta | sigma, y: Gaussian with this mean and covariance; `log_marginal` is
/// log p(y | sigma) with beta integrated out.
struct ConditionalGaussian {
  Vector mean;
  Matrix cov;
  double log_marginal = 0.0;
};
ConditionalGaussian beta_given_sigma(const RegressionProblem& problem, double sigma);

struct RegressionPosterior {
  std::vector<Moments> beta;
  Moments sigma;
  Matrix beta_cov;  ///< the posterior covariance of beta
  double correlation(size_t i, size_t j) const;
};

/// @param nodes trapezoid nodes in log sigma over the region where the posterior
///   density of log sigma is within e^-40 of its maximum.
/// @throw std::invalid_argument for sizes that do not match.
RegressionPosterior regression_posterior(const RegressionProblem& problem, int nodes = 2001);

// ---- importance sampling ----

/// A smooth target on R^d: log density up to a constant, its gradient and Hessian.
struct Target {
  int dim = 0;
  std::function<double(const Vector&)> log_density;
  /// Fills the gradient and the Hessian at a point.
  std::function<void(const Vector&, Vector&, Matrix&)> derivatives;
};

struct ImportanceResult {
  std::vector<Moments> moments;  ///< per coordinate
  Vector mode;
  double ess = 0.0;              ///< (sum w)² / sum w²
  int64_t draws = 0;
  /// Monte Carlo standard error of each mean (the delta-method se of a
  /// self-normalised estimate).
  Vector mean_se;
};

/// Newton's method from 0 to the mode, then `draws` draws from a multivariate t
/// with `nu` degrees of freedom, location the mode and scale the Cholesky factor of
/// the inverse negative Hessian there.
/// @throw std::runtime_error if Newton does not converge (the target must be
///   strictly log-concave near its mode).
ImportanceResult laplace_t_importance(const Target& target, int64_t draws, int nu, uint64_t seed);

/// eta ~ Normal(0, I_N), f = offset + L eta with L = cholesky(cov_exp_quad(x, alpha,
/// rho) + jitter I), k_i ~ PoissonLog(f_i): the posterior of eta as a Target.
struct PoissonGpProblem {
  Vector x;
  std::vector<int64_t> k;
  double alpha = 1.0;
  double rho = 1.0;
  double jitter = 1e-10;
  double offset = 0.0;
};
Target poisson_gp_target(const PoissonGpProblem& problem);

}  // namespace vguide::accuracy
