#pragma once
/// Monotone scalar maps with parameters, applied elementwise: the part of an
/// autoregressive or coupling layer that a network parameterises.
///
/// Shapes: x (..., D), params (..., D, num_params()) -> (y (..., D), ladj (..., D)),
/// ladj elementwise log|dy/dx|.
///
/// Example: auto u = vguide::flow::affine_univariate();  // 2 params: shift, log scale
#include <ATen/core/Tensor.h>

#include <memory>
#include <utility>

#include "vguide/export.hpp"

namespace vguide::flow {

class VGUIDE_API UnivariateTransform {
 public:
  virtual ~UnivariateTransform();
  virtual int64_t num_params() const = 0;
  virtual std::pair<at::Tensor, at::Tensor> forward(const at::Tensor& x, const at::Tensor& params) const = 0;
  virtual std::pair<at::Tensor, at::Tensor> inverse(const at::Tensor& y, const at::Tensor& params) const = 0;
};

/// y = shift + exp(log_scale) x, log_scale clamped to [log_scale_min, log_scale_max]
/// (Pyro's AffineAutoregressive defaults, -5 and 3). Params: (shift, log_scale).
/// Zero params are the identity.
VGUIDE_API std::shared_ptr<const UnivariateTransform> affine_univariate(double log_scale_min = -5.0,
                                                                        double log_scale_max = 3.0);

/// The monotone rational-quadratic spline of spline.hpp with `num_bins` bins on
/// [-tail_bound, tail_bound], identity outside. Params: 3 num_bins - 1 (widths,
/// heights, interior derivatives, unnormalised). Zero params are the identity.
/// @throw std::domain_error if num_bins < 2, num_bins >= 1000 (every bin is at least
///        10⁻³ of the range) or tail_bound <= 0.
VGUIDE_API std::shared_ptr<const UnivariateTransform> spline_univariate(int64_t num_bins, double tail_bound);

}  // namespace vguide::flow
