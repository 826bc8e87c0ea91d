#include "vguide/runtime/psis.hpp"

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <numeric>
#include <sstream>
#include <stdexcept>
#include <vector>

namespace vguide {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

struct GpdFit {
  double k;
  double sigma;
};

/// Profile log likelihood of the generalized Pareto at theta = -k / sigma (Zhang &
/// Stephens's parameterisation), up to a constant; NaN where it is undefined.
double gpd_profile_log_lik(double theta, const std::vector<double>& x) {
  const double b = -theta;
  double k = 0.0;
  for (double xi : x) k += std::log1p(b * xi);
  k /= static_cast<double>(x.size());
  return static_cast<double>(x.size()) * (std::log(b / k) - k - 1.0);
}

/// Zhang & Stephens (2009) empirical Bayes fit of a location-0 generalized Pareto to
/// the exceedances `x` (sorted ascending), with loo's weakly informative prior that
/// pulls k toward 0.5. The sign of k is loo's (k > 0: heavy tail), the opposite of
/// Zhang & Stephens's. A failed fit gives k = +inf.
GpdFit gpd_fit(const std::vector<double>& x) {
  const auto n = static_cast<int64_t>(x.size());
  constexpr double prior = 3.0;
  const int64_t grid = 30 + static_cast<int64_t>(std::floor(std::sqrt(static_cast<double>(n))));
  const double xstar = x[static_cast<size_t>(std::floor(static_cast<double>(n) / 4.0 + 0.5)) - 1];  // 1st quartile
  const double xmax = x.back();

  std::vector<double> theta(static_cast<size_t>(grid));
  std::vector<double> log_lik(static_cast<size_t>(grid));
  double log_lik_max = -kInf;
  for (int64_t j = 1; j <= grid; ++j) {
    const double t = 1.0 / xmax + (1.0 - std::sqrt(static_cast<double>(grid) / (static_cast<double>(j) - 0.5))) /
                                      (prior * xstar);
    theta[static_cast<size_t>(j - 1)] = t;
    const double l = gpd_profile_log_lik(t, x);
    log_lik[static_cast<size_t>(j - 1)] = l;
    if (std::isfinite(l)) log_lik_max = std::max(log_lik_max, l);
  }
  if (!std::isfinite(log_lik_max)) return {kInf, std::numeric_limits<double>::quiet_NaN()};

  // Posterior mean of theta over the grid; points where the likelihood is undefined
  // (theta = 0, or a degenerate first quartile) get no weight.
  double weight_sum = 0.0;
  double theta_sum = 0.0;
  for (size_t j = 0; j < theta.size(); ++j) {
    if (!std::isfinite(log_lik[j])) continue;
    const double w = std::exp(log_lik[j] - log_lik_max);
    weight_sum += w;
    theta_sum += w * theta[j];
  }
  const double theta_hat = theta_sum / weight_sum;

  double k = 0.0;
  for (double xi : x) k += std::log1p(-theta_hat * xi);
  k /= static_cast<double>(n);
  const double sigma = -k / theta_hat;
  k = (static_cast<double>(n) * k + 10.0 * 0.5) / (static_cast<double>(n) + 10.0);
  if (std::isnan(k)) k = kInf;
  return {k, sigma};
}

/// Quantile function of the generalized Pareto with location 0.
double gpd_quantile(double p, double k, double sigma) {
  if (k == 0.0) return -sigma * std::log1p(-p);  // the exponential limit
  return sigma * std::expm1(-k * std::log1p(-p)) / k;
}

/// min(ceil(0.2 M), ceil(3 sqrt(M))) in integers, so that no rounding of 0.2 M or of
/// the square root moves the tail by one draw.
int64_t tail_length_for(int64_t m) {
  const int64_t fifth = (m + 4) / 5;
  auto t = static_cast<int64_t>(std::ceil(3.0 * std::sqrt(static_cast<double>(m))));
  while (t > 0 && (t - 1) * (t - 1) >= 9 * m) --t;  // smallest t with t^2 >= 9 M
  while (t * t < 9 * m) ++t;
  return std::min(fifth, t);
}

}  // namespace

PsisResult psis(const at::Tensor& log_ratios) {
  if (!log_ratios.defined() || log_ratios.dim() != 1 || !at::isFloatingType(log_ratios.scalar_type())) {
    std::ostringstream msg;
    msg << "psis: log_ratios must be a vector of floating values, got ";
    if (!log_ratios.defined()) {
      msg << "an undefined tensor";
    } else {
      msg << "shape " << log_ratios.sizes() << " of dtype " << log_ratios.scalar_type();
    }
    throw std::invalid_argument(msg.str());
  }
  const int64_t m = log_ratios.size(0);
  if (m < kPsisMinDraws) {
    throw std::invalid_argument("psis: needs at least " + std::to_string(kPsisMinDraws) + " draws, got " +
                                std::to_string(m));
  }

  const at::Tensor src = log_ratios.detach().to(at::kCPU, at::kDouble).contiguous();
  std::vector<double> lw(static_cast<size_t>(m));
  std::memcpy(lw.data(), src.data_ptr<double>(), lw.size() * sizeof(double));

  const auto non_finite = std::count_if(lw.begin(), lw.end(), [](double v) { return !std::isfinite(v); });
  if (non_finite > 0) {
    throw std::invalid_argument("psis: " + std::to_string(non_finite) + " of " + std::to_string(m) +
                                " log ratios are not finite (NaN or infinite)");
  }

  // Shift so that the largest log ratio is 0: exp() of the tail cannot overflow.
  const double max_lr = *std::max_element(lw.begin(), lw.end());
  for (double& v : lw) v -= max_lr;

  const int64_t tail = tail_length_for(m);
  std::vector<int64_t> order(static_cast<size_t>(m));
  std::iota(order.begin(), order.end(), int64_t{0});
  std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return lw[a] < lw[b]; });
  const auto first_tail = static_cast<size_t>(m - tail);

  double khat = -kInf;
  const double tail_min = lw[order[first_tail]];
  const double tail_max = lw[order.back()];
  if (tail_min != tail_max) {
    // Exceedances of the tail over the largest ratio below it, on the ratio scale.
    const double exp_cutoff = std::exp(lw[order[first_tail - 1]]);
    std::vector<double> exceed(static_cast<size_t>(tail));
    for (size_t i = 0; i < exceed.size(); ++i) exceed[i] = std::exp(lw[order[first_tail + i]]) - exp_cutoff;
    const GpdFit fit = gpd_fit(exceed);
    khat = fit.k;
    if (std::isfinite(fit.k) && std::isfinite(fit.sigma) && fit.sigma > 0) {
      for (size_t i = 0; i < exceed.size(); ++i) {
        const double p = (static_cast<double>(i) + 0.5) / static_cast<double>(tail);
        lw[order[first_tail + i]] = std::log(gpd_quantile(p, fit.k, fit.sigma) + exp_cutoff);
      }
    }
  }
  // A flat tail (all of its ratios equal) has nothing to smooth: its shape is that of a
  // point mass, k = -inf. loo reports +inf there with a warning, which would call an
  // exact guide "bad".

  // Truncate at the largest raw ratio (0 after the shift), then normalise.
  for (double& v : lw) v = std::min(v, 0.0);
  const double top = *std::max_element(lw.begin(), lw.end());
  double sum = 0.0;
  for (double v : lw) sum += std::exp(v - top);
  const double log_norm = top + std::log(sum);
  for (double& v : lw) v -= log_norm;

  at::Tensor out = at::empty({m}, at::TensorOptions().dtype(at::kDouble));
  std::memcpy(out.data_ptr<double>(), lw.data(), lw.size() * sizeof(double));
  return {khat, out, tail};
}

const char* khat_reading(double khat) {
  if (khat < 0.5) return "good";
  if (khat < 0.7) return "ok";
  return "bad";
}

}  // namespace vguide
