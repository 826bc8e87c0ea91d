#pragma once
/// Multivariate Normal log densities without forming an inverse.
///
/// Example: auto lp = vguide::math::mvn_tril_log_prob(z, loc, L);  // z (S, D) -> (S,)
#include <ATen/core/Tensor.h>

#include <cmath>

#include "vguide/export.hpp"

namespace vguide::math {

/// log N(z; loc, L Lᵀ) for a lower-triangular L with positive diagonal, by one
/// triangular solve. z: (*batch, D); loc: (D); L: (D, D). Returns (*batch).
VGUIDE_API at::Tensor mvn_tril_log_prob(const at::Tensor& z, const at::Tensor& loc, const at::Tensor& scale_tril);

/// log N(z; loc, W Wᵀ + diag(sigma²)) in O(D r²) time and O(D r) memory (Woodbury
/// identity and the matrix determinant lemma); never forms a D × D matrix.
/// z: (*batch, D); loc, sigma: (D); W: (D, r). Returns (*batch).
VGUIDE_API at::Tensor lowrank_mvn_log_prob(const at::Tensor& z, const at::Tensor& loc, const at::Tensor& W,
                                           const at::Tensor& sigma);

/// The x with softplus(x) = y, for y > 0 (to initialise softplus-positive parameters).
VGUIDE_API double softplus_inverse(double y);
/// The same elementwise, for a tensor of positive values.
VGUIDE_API at::Tensor softplus_inverse(const at::Tensor& y);
/// softplus(x) = log(1 + eˣ) as at::softplus computes it (beta 1, threshold 20: the
/// identity above it), for loops that must agree with the tensor op to rounding.
inline double softplus(double x) { return x > 20.0 ? x : std::log1p(std::exp(x)); }

}  // namespace vguide::math
