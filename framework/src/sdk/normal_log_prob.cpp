#include "vguide/math/normal_log_prob.hpp"

#include <ATen/ATen.h>

#include <cmath>

namespace vguide {
namespace math {
at::Tensor normal_log_prob(const at::Tensor& x, const at::Tensor& loc, const at::Tensor& scale) {
  static const double half_log_2pi = 0.5 * std::log(2.0 * M_PI);
  at::Tensor eps = (x - loc) / scale;
  return -0.5 * eps * eps - at::log(scale) - half_log_2pi;
}
at::Tensor standard_normal_log_prob(const at::Tensor& eps) {
  static const double half_log_2pi = 0.5 * std::log(2.0 * M_PI);
  return -0.5 * eps * eps - half_log_2pi;
}
}  // namespace math
}  // namespace vguide
