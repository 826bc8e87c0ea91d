#pragma once
/// A family's declaration that its draws are a location plus a scaled noise in the
/// registry's flat unconstrained space, so that the runtime can take the whole SVI
/// step without autograd (the direct step, docs/performance.md): it draws the noise,
/// forms z, asks the model for its log joint's gradient and applies the update in
/// plain loops. A family that declares nothing takes the autograd path, unchanged.
///
/// The declaration is a promise about rsample and log_prob, for S = x.size(0):
///   - diagonal (log_scale defined): ε = at::randn({S, D}, generator(), loc.options()),
///     z = loc + exp(log_scale) ⊙ ε, and log q is the diagonal Normal's density of z;
///   - point (log_scale undefined): z = loc for every particle, no noise drawn, and
///     log q = 0 (the delta family).
/// `loc` and `log_scale` are the family's registered (D,) parameters. The runtime's
/// tests hold every shipped declaration to the autograd path's ELBO, gradients and
/// trajectory.
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

/// What `guide` declared, if anything. The runtime also checks, once per fit, that
/// one step computed from the declaration matches the autograd step.
VGUIDE_API std::optional<LocationScale> location_scale(const Guide& guide);

}  // namespace vguide
