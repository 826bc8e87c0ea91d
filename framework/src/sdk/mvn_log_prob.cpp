#include "vguide/math/mvn_log_prob.hpp"

#include <ATen/ATen.h>

#include <cmath>

namespace vguide::math {
namespace {
const double kLog2Pi = std::log(2.0 * M_PI);

// (*batch, D) -> (N, D) and back.
std::vector<int64_t> batch_of(const at::Tensor& z) { return {z.sizes().begin(), z.sizes().end() - 1}; }
}  // namespace

at::Tensor mvn_tril_log_prob(const at::Tensor& z, const at::Tensor& loc, const at::Tensor& scale_tril) {
  const int64_t D = loc.size(0);
  at::Tensor diff = (z - loc).reshape({-1, D});
  at::Tensor y = at::linalg_solve_triangular(scale_tril, diff.t(), /*upper=*/false);  // (D, N)
  at::Tensor mahalanobis = (y * y).sum(0);
  at::Tensor half_log_det = at::log(scale_tril.diagonal()).sum();
  return (-0.5 * (mahalanobis + D * kLog2Pi) - half_log_det).reshape(batch_of(z));
}

at::Tensor lowrank_mvn_log_prob(const at::Tensor& z, const at::Tensor& loc, const at::Tensor& W,
                                const at::Tensor& sigma) {
  const int64_t D = loc.size(0), r = W.size(1);
  at::Tensor inv_var = at::reciprocal(sigma * sigma);                              // (D)
  at::Tensor capacitance = at::eye(r, W.options()) + at::matmul(W.t() * inv_var, W);  // (r, r)
  at::Tensor cap_tril = at::linalg_cholesky(capacitance);
  at::Tensor diff = (z - loc).reshape({-1, D});                                       // (N, D)
  at::Tensor scaled = diff * inv_var;                                                 // D⁻¹ d
  at::Tensor v = at::linalg_solve_triangular(cap_tril, at::matmul(scaled, W).t(), /*upper=*/false);  // (r, N)
  at::Tensor mahalanobis = (diff * scaled).sum(-1) - (v * v).sum(0);
  at::Tensor log_det = 2.0 * at::log(cap_tril.diagonal()).sum() + 2.0 * at::log(sigma).sum();
  return (-0.5 * (mahalanobis + log_det + D * kLog2Pi)).reshape(batch_of(z));
}

double softplus_inverse(double y) { return y + std::log(-std::expm1(-y)); }

at::Tensor softplus_inverse(const at::Tensor& y) { return y + at::log(-at::expm1(-y)); }

}  // namespace vguide::math
