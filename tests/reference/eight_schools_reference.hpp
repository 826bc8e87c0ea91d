#pragma once
/// The exact posterior moments of the eight-schools model, by quadrature.
///
///   mu ~ Normal(0, mu_scale),  tau ~ HalfCauchy(tau_scale),
///   theta_j ~ Normal(mu, tau),  y_j ~ Normal(theta_j, sigma_j),  j = 1..J.
///
/// The centred and the non-centred (theta = mu + tau * theta_raw) programs have the
/// same posterior over (mu, tau, theta). Integrating theta out gives
/// y_j | mu, tau ~ Normal(mu, sqrt(sigma_j^2 + tau^2)), so p(mu, tau | y) is known up
/// to a constant in two dimensions, and theta_j | mu, tau, y is Normal with
///   mean (y_j tau^2 + mu sigma_j^2) / (sigma_j^2 + tau^2),
///   var  sigma_j^2 tau^2 / (sigma_j^2 + tau^2)            (both finite at tau = 0).
///
/// Plain doubles: no LibTorch, so the reference cannot share a bug with the code it
/// checks.
///
/// Example:
///   auto post = vguide::reference::eight_schools_posterior({y, sigma, 5.0, 5.0});
///   post.mu.mean, post.tau.sd, post.theta[0].mean
#include <vector>

namespace vguide::reference {

/// Data and prior scales of the model above.
struct EightSchoolsProblem {
  std::vector<double> y;      ///< estimated effects, one per school
  std::vector<double> sigma;  ///< their standard errors, > 0
  double mu_scale = 5.0;      ///< sd of the Normal(0, mu_scale) prior on mu
  double tau_scale = 5.0;     ///< scale of the HalfCauchy(tau_scale) prior on tau
};

/// Resolution of the product rule; doubling both fields must not move the result.
struct QuadratureResolution {
  /// Trapezoid nodes in mu per narrowest conditional sd of mu (that at tau = 0).
  int mu_nodes_per_sd = 8;
  /// Gauss-Legendre nodes in u, where tau = tau_scale * tan(pi u / 2), u in (0, 1).
  int tau_nodes = 128;
};

struct Moments {
  double mean;
  double sd;
};

struct EightSchoolsPosterior {
  Moments mu;
  Moments tau;
  std::vector<Moments> theta;  ///< one per school
};

/// Posterior mean and sd of mu, tau and every theta_j.
///
/// mu is integrated with the trapezoid rule over every value its conditional
/// posterior can reach (10 prior sds beyond the range of 0 and the y_j); tau with
/// Gauss-Legendre in u, which makes the HalfCauchy prior uniform and the integrand
/// smooth up to tau = infinity.
///
/// @throw std::invalid_argument if y and sigma differ in size or there are fewer than
///   two schools (with one, the posterior sd of tau is infinite: p(tau | y) ~ tau^-3).
/// @throw std::domain_error for a non-finite y_j, a sigma_j or prior scale that is not
///   positive and finite, or a resolution below 1 (mu) or 2 (tau).
EightSchoolsPosterior eight_schools_posterior(const EightSchoolsProblem& problem,
                                              const QuadratureResolution& resolution = {});

/// The n Gauss-Legendre nodes and weights on (0, 1) (exact for polynomials of degree
/// < 2n). Exposed for the tests.
void gauss_legendre_unit(int n, std::vector<double>& nodes, std::vector<double>& weights);

}  // namespace vguide::reference
