#pragma once
/// The monotone rational-quadratic spline (Durkan, Bekasov, Murray, Papamakarios,
/// "Neural Spline Flows", NeurIPS 2019, arXiv:1906.04032), with identity tails.
///
/// On [-B, B] the map passes through K + 1 knots whose gaps come from softmax(widths)
/// and softmax(heights) (each at least `min_bin_size` of the range), with positive
/// derivatives min_derivative + softplus(d + c) at the K - 1 interior knots (c chosen
/// so that d = 0 gives derivative 1) and derivative 1 at ±B, so value and slope are
/// continuous into the identity tails. Outside [-B, B] y = x.
///
/// @param x           points (...)
/// @param widths      (..., K) unnormalised bin widths
/// @param heights     (..., K) unnormalised bin heights
/// @param derivatives (..., K - 1) unnormalised interior derivatives
/// @param tail_bound  B > 0
/// @param inverse     evaluate the inverse map instead
/// @return            (y, log|dy/dx|) elementwise, shape of x (for the inverse: log|dx/dy|)
///
/// Example: auto [y, ladj] = vguide::flow::rational_quadratic_spline(x, w, h, d, 3.0, false);
#include <ATen/core/Tensor.h>

#include <utility>

#include "vguide/export.hpp"

namespace vguide::flow {

struct SplineConstants {
  double min_bin_size = 1e-3;
  double min_derivative = 1e-3;
};

VGUIDE_API std::pair<at::Tensor, at::Tensor> rational_quadratic_spline(const at::Tensor& x, const at::Tensor& widths,
                                                                       const at::Tensor& heights,
                                                                       const at::Tensor& derivatives, double tail_bound,
                                                                       bool inverse, SplineConstants constants = {});

}  // namespace vguide::flow
