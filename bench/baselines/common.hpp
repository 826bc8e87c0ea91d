#pragma once
// Pieces every hand-written baseline shares: constants and parameter creation.
#include <torch/torch.h>

#include <cmath>
#include <vector>

namespace vguide::bench::detail {

inline const double kHalfLog2Pi = 0.5 * std::log(2.0 * M_PI);

// A variational parameter: a leaf tensor of `shape` filled with `value`.
inline at::Tensor parameter(at::IntArrayRef shape, double value, at::ScalarType dtype) {
  return at::full(shape, value, at::TensorOptions().dtype(dtype)).requires_grad_(true);
}

// The normal guide's defaults: loc 0, scale 0.1 (vguide's NormalOptions::init_scale).
inline const double kInitLogScale = std::log(0.1);

}  // namespace vguide::bench::detail
