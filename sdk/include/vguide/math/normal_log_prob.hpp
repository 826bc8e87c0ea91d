#pragma once
/// Elementwise Normal log density, log N(x; loc, scale), broadcasting.
///
/// @param x     points
/// @param loc   location
/// @param scale scale, positive (not checked on the hot path; see check.hpp)
/// @return      elementwise log density, broadcast shape of the arguments
///
/// Example: vguide::math::normal_log_prob(x, torch::zeros({}), torch::ones({}))
#include <ATen/core/Tensor.h>

#include "vguide/export.hpp"

namespace vguide::math {
VGUIDE_API at::Tensor normal_log_prob(const at::Tensor& x, const at::Tensor& loc, const at::Tensor& scale);
/// log N(eps; 0, 1), elementwise.
VGUIDE_API at::Tensor standard_normal_log_prob(const at::Tensor& eps);
}  // namespace vguide::math
