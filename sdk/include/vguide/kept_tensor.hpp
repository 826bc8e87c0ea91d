#pragma once
/// A result a guide hands out at every step (its step_scales()), refilled in place
/// when no caller still holds it.
///
/// On the runtime's direct step a small model's whole step is a few microseconds, and
/// allocating fresh step scales was a quarter of it (docs/performance.md). Inline:
/// nothing here is part of the plugin ABI.
///
/// Example, in a step_scales() const:
///   at::Tensor& units = vguide::reuse_or_allocate(units_, {D}, log_scale_);
///   ... fill units.data_ptr<T>() ...; return {{loc_, units}};
/// with `mutable at::Tensor units_;` a member.
#include <ATen/ATen.h>

namespace vguide {

/// `kept`, to be refilled, when neither it nor a view of its storage is held outside
/// (the caller dropped what the last call returned); else a new tensor of `sizes` with
/// `like`'s dtype and device, which is kept from then on. Never requires grad.
inline at::Tensor& reuse_or_allocate(at::Tensor& kept, at::IntArrayRef sizes, const at::Tensor& like) {
  const bool unheld = kept.defined() && kept.use_count() == 1 && kept.storage().use_count() == 1;
  if (!unheld || kept.scalar_type() != like.scalar_type() || kept.device() != like.device() || kept.sizes() != sizes)
    kept = at::empty(sizes, like.options());
  return kept;
}

}  // namespace vguide
