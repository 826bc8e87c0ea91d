#include "reference/eight_schools_reference.hpp"

#include <vguide/check.hpp>

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>

namespace vguide::reference {
namespace {

constexpr double kPi = 3.14159265358979323846;

Moments moments(double mean, double second_moment) {
  // Clamp the rounding residue of E[x^2] - E[x]^2 for a (numerically) point mass.
  return {mean, std::sqrt(std::max(0.0, second_moment - mean * mean))};
}

}  // namespace

void gauss_legendre_unit(int n, std::vector<double>& nodes, std::vector<double>& weights) {
  check_greater_or_equal("gauss_legendre_unit", "n", n, 1);
  nodes.assign(n, 0.0);
  weights.assign(n, 0.0);
  // Newton on P_n from the classical first guess; the nodes are symmetric about 0,
  // so each root of the upper half gives two nodes.
  for (int i = 0; i < (n + 1) / 2; ++i) {
    double x = std::cos(kPi * (i + 0.75) / (n + 0.5));
    double derivative = 0.0;
    for (int iteration = 0; iteration < 100; ++iteration) {
      double p_prev = 1.0, p = x;  // P_0, P_1
      for (int k = 2; k <= n; ++k) {
        const double p_next = ((2.0 * k - 1.0) * x * p - (k - 1.0) * p_prev) / k;
        p_prev = p;
        p = p_next;
      }
      derivative = n * (x * p - p_prev) / (x * x - 1.0);
      const double step = p / derivative;
      x -= step;
      if (std::abs(step) < 1e-15) break;
    }
    const double w = 2.0 / ((1.0 - x * x) * derivative * derivative);
    // Map [-1, 1] to (0, 1): x = +-root, weight halves.
    nodes[i] = 0.5 * (1.0 - x);
    nodes[n - 1 - i] = 0.5 * (1.0 + x);
    weights[i] = weights[n - 1 - i] = 0.5 * w;
  }
}

EightSchoolsPosterior eight_schools_posterior(const EightSchoolsProblem& problem,
                                              const QuadratureResolution& resolution) {
  static const char* function = "eight_schools_posterior";
  const auto& y = problem.y;
  const auto& sigma = problem.sigma;
  check_size_match(function, "sigma", static_cast<long long>(sigma.size()), "y", static_cast<long long>(y.size()));
  const int J = static_cast<int>(y.size());
  if (J < 2)
    throw std::invalid_argument(std::string(function) + ": needs at least 2 schools (with " + std::to_string(J) +
                                ", the posterior sd of tau is infinite)!");
  for (int j = 0; j < J; ++j) {
    const std::string y_name = "y[" + std::to_string(j) + "]", sigma_name = "sigma[" + std::to_string(j) + "]";
    check_finite(function, y_name.c_str(), y[j]);
    check_positive(function, sigma_name.c_str(), sigma[j]);
    check_finite(function, sigma_name.c_str(), sigma[j]);
  }
  check_positive(function, "mu_scale", problem.mu_scale);
  check_finite(function, "mu_scale", problem.mu_scale);
  check_positive(function, "tau_scale", problem.tau_scale);
  check_finite(function, "tau_scale", problem.tau_scale);
  check_greater_or_equal(function, "mu_nodes_per_sd", resolution.mu_nodes_per_sd, 1);
  check_greater_or_equal(function, "tau_nodes", resolution.tau_nodes, 2);

  // mu | tau, y is Normal with mean a convex combination of 0 and the y_j, and sd
  // between sd_min (at tau = 0) and mu_scale: 10 prior sds past that range lose
  // nothing a double can hold.
  double precision_at_zero = 1.0 / (problem.mu_scale * problem.mu_scale);
  for (double s : sigma) precision_at_zero += 1.0 / (s * s);
  const double sd_min = 1.0 / std::sqrt(precision_at_zero);
  const double lo = std::min(0.0, *std::min_element(y.begin(), y.end())) - 10.0 * problem.mu_scale;
  const double hi = std::max(0.0, *std::max_element(y.begin(), y.end())) + 10.0 * problem.mu_scale;
  const int n_mu = static_cast<int>(std::ceil((hi - lo) / sd_min * resolution.mu_nodes_per_sd)) + 1;
  const double h = (hi - lo) / (n_mu - 1);

  // tau = tau_scale tan(pi u / 2) carries HalfCauchy(tau_scale) to Uniform(0, 1): the
  // prior becomes the constant 1 and the likelihood, analytic in 1/tau, vanishes
  // smoothly at u = 1.
  std::vector<double> u, u_weight;
  gauss_legendre_unit(resolution.tau_nodes, u, u_weight);
  const int n_tau = resolution.tau_nodes;

  // log of the unnormalised density at every node, then one pass with its maximum
  // subtracted so that nothing underflows for sharply informative data.
  std::vector<double> log_density(static_cast<size_t>(n_mu) * n_tau);
  std::vector<double> tau(n_tau);
  double log_max = -std::numeric_limits<double>::infinity();
  for (int k = 0; k < n_tau; ++k) {
    tau[k] = problem.tau_scale * std::tan(0.5 * kPi * u[k]);
    const double tau2 = tau[k] * tau[k];
    for (int i = 0; i < n_mu; ++i) {
      const double mu = lo + i * h;
      double lp = -0.5 * mu * mu / (problem.mu_scale * problem.mu_scale);
      for (int j = 0; j < J; ++j) {
        const double v = sigma[j] * sigma[j] + tau2, r = y[j] - mu;
        lp -= 0.5 * (std::log(v) + r * r / v);
      }
      log_density[static_cast<size_t>(k) * n_mu + i] = lp;
      log_max = std::max(log_max, lp);
    }
  }

  double total = 0.0, mu1 = 0.0, mu2 = 0.0, tau1 = 0.0, tau2_sum = 0.0;
  std::vector<double> theta1(J, 0.0), theta2(J, 0.0);
  for (int k = 0; k < n_tau; ++k) {
    const double t2 = tau[k] * tau[k];
    for (int i = 0; i < n_mu; ++i) {
      const double mu = lo + i * h;
      const double trapezoid = (i == 0 || i == n_mu - 1) ? 0.5 : 1.0;
      const double w =
          trapezoid * u_weight[k] * std::exp(log_density[static_cast<size_t>(k) * n_mu + i] - log_max);
      total += w;
      mu1 += w * mu;
      mu2 += w * mu * mu;
      tau1 += w * tau[k];
      tau2_sum += w * t2;
      for (int j = 0; j < J; ++j) {
        const double s2 = sigma[j] * sigma[j];
        const double mean = (y[j] * t2 + mu * s2) / (s2 + t2), var = s2 * t2 / (s2 + t2);
        theta1[j] += w * mean;
        theta2[j] += w * (var + mean * mean);
      }
    }
  }

  EightSchoolsPosterior post;
  post.mu = moments(mu1 / total, mu2 / total);
  post.tau = moments(tau1 / total, tau2_sum / total);
  for (int j = 0; j < J; ++j) post.theta.push_back(moments(theta1[j] / total, theta2[j] / total));
  return post;
}

}  // namespace vguide::reference
