#pragma once
/// A reparameterised draw from a diagonal Normal and its log density, as one
/// autograd node: z = loc + exp(log_scale) * eps and
/// log q(z) = Σ_d [log N(eps_d; 0, 1) − log_scale_d], summed over the last dim.
///
/// The SVI step's hot path: written out with LibTorch ops this is eight ops and four
/// autograd nodes per draw (exp, addcmul, the density's arithmetic, sum); here it is
/// one loop forward and one backward. log q uses the noise already drawn, so no
/// (z − loc) / scale is recomputed. CPU float32 / float64 only fuse; anything else
/// (another device or dtype, a graph of the gradient requested with create_graph)
/// gives the same values through LibTorch ops.
///
/// @param loc       (D), location
/// @param log_scale (D), log of the scale
/// @param eps       (S, D), standard-Normal noise (not differentiated)
/// @return          {z (S, D), log_q (S)}, differentiable w.r.t. loc and log_scale
/// @throw std::invalid_argument if the shapes or dtypes do not match
///
/// Example: auto [z, log_q] = vguide::math::diag_normal_rsample(loc, log_scale, at::randn({S, D}, gen));
#include <ATen/core/Tensor.h>

#include <utility>

#include "vguide/export.hpp"

namespace vguide::math {
VGUIDE_API std::pair<at::Tensor, at::Tensor> diag_normal_rsample(const at::Tensor& loc, const at::Tensor& log_scale,
                                                                const at::Tensor& eps);
}  // namespace vguide::math
