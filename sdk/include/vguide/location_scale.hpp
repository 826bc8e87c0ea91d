#pragma once
/// A family's declaration that its draws are a location plus a linear map of
/// standard-normal noise in the registry's flat unconstrained space, so that the
/// runtime can take the whole SVI step without autograd (the direct step,
/// docs/performance.md): it draws the noise, forms z, asks the model for its log
/// joint's gradient and applies the update in plain loops. A family that declares
/// nothing takes the autograd path, unchanged.
///
/// Each declaration is a promise about rsample and log_prob, for S = x.size(0) and
/// the registry's unconstrained size D:
///   - diagonal (LocationScale, log_scale defined):
///       ε = at::randn({S, D}, generator(), loc.options()), z = loc + exp(log_scale) ⊙ ε,
///       log q the diagonal Normal's density of z;
///   - point (LocationScale, log_scale undefined): z = loc for every particle, no
///       noise drawn, and log q = 0 (the delta family);
///   - full rank (LocationScaleTril): L = tril(offdiag, -1) + diag(softplus(diag_raw)),
///       ε = at::randn({S, D}, generator(), loc.options()), z = loc + ε Lᵀ,
///       log q = Σ log N(ε; 0, 1) - Σ log L_ii;
///   - low rank (LocationLowRank): σ = softplus(diag_raw),
///       ε_w = at::randn({S, r}, ...) then ε_d = at::randn({S, D}, ...) from the same
///       stream, z = loc + ε_w Wᵀ + σ ⊙ ε_d, log q the density of N(loc, W Wᵀ + diag σ²) at z.
/// Every tensor named is a registered parameter of the guide, and they are all of its
/// parameters. The runtime checks once per fit that one step computed from the
/// declaration matches the autograd step, and takes the autograd path (saying why)
/// if it does not; its tests hold every shipped declaration to the autograd path's
/// ELBO, gradients and trajectory.
///
/// Example (in a family's constructor, after registering its parameters):
///   vguide::declare_location_scale(*this, {loc_, log_scale_});
#include <ATen/core/Tensor.h>

#include <optional>

#include "vguide/export.hpp"

namespace vguide {

class Guide;

struct LocationScale {
  at::Tensor loc;        ///< (D,)
  at::Tensor log_scale;  ///< (D,); undefined for a point mass
};

/// Records `structure` for `guide` (until the guide is destroyed), once. Since ABI 3.1.
/// @throw std::invalid_argument unless loc is a (D,) parameter of the guide, with D
///        the registry's unconstrained size, and log_scale, if defined, is too; or
///        if the guide has declared already.
VGUIDE_API void declare_location_scale(Guide& guide, LocationScale structure);

/// What `guide` declared with declare_location_scale, if anything.
VGUIDE_API std::optional<LocationScale> location_scale(const Guide& guide);

/// A full-rank Gaussian with a learnt Cholesky factor (the mvn family). Since ABI 3.2.
struct LocationScaleTril {
  at::Tensor loc;       ///< (D,)
  at::Tensor offdiag;   ///< (D, D); only its strictly lower triangle is read
  at::Tensor diag_raw;  ///< (D,); the factor's diagonal is softplus(diag_raw)
};

/// As declare_location_scale, for a full-rank structure. Since ABI 3.2.
/// @throw std::invalid_argument naming the tensor that is not a parameter of the
///        guide of the shape above, or if the guide has declared already.
VGUIDE_API void declare_location_scale_tril(Guide& guide, LocationScaleTril structure);
VGUIDE_API std::optional<LocationScaleTril> location_scale_tril(const Guide& guide);

/// A Gaussian with covariance W Wᵀ + diag(σ²) (the lowrank_mvn family). Since ABI 3.2.
struct LocationLowRank {
  at::Tensor loc;         ///< (D,)
  at::Tensor cov_factor;  ///< (D, r), 1 <= r <= D
  at::Tensor diag_raw;    ///< (D,); σ = softplus(diag_raw)
};

/// As declare_location_scale, for a low-rank structure. Since ABI 3.2.
/// @throw std::invalid_argument as declare_location_scale_tril.
VGUIDE_API void declare_location_low_rank(Guide& guide, LocationLowRank structure);
VGUIDE_API std::optional<LocationLowRank> location_low_rank(const Guide& guide);

}  // namespace vguide
