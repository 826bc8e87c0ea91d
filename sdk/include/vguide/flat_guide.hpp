#pragma once
/// Base for guides that are a density over the registry's flat unconstrained vector
/// z (size D): mean-field and full-rank Gaussians, flows. A subclass provides
/// `sample_flat` and `log_prob_flat`; this class pushes z through every site's
/// bijector and adds the Jacobians.
///
/// The log density of the latest draw is cached, keyed by the identity of the
/// returned tensors, so `log_prob` of a guide's own sample costs no inversion. The
/// cached value keeps its autograd graph, and is used once (a second call, or any
/// other values, are inverted properly).
///
/// Example: class MyGuide : public vguide::FlatGuide { ... sample_flat / log_prob_flat ... };
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <utility>
#include <vector>

#include "vguide/guide.hpp"

namespace vguide {

class VGUIDE_API FlatGuide : public Guide {
 public:
  using Guide::Guide;
  ~FlatGuide() override;

  SiteValues rsample(const at::Tensor& x) override;
  at::Tensor log_prob(const at::Tensor& x, const SiteValues& values) override;

  /// Turn the draw cache off (for tests and for estimators that need a fresh pass).
  void set_draw_cache(bool enabled) noexcept { cache_enabled_ = enabled; }

 protected:
  /// S joint draws z (S, D) and log q(z) (S,), differentiable w.r.t. the parameters.
  virtual std::pair<at::Tensor, at::Tensor> sample_flat(int64_t S, const at::TensorOptions& options) = 0;
  /// log q(z) for any z (*batch, D) -> (*batch).
  virtual at::Tensor log_prob_flat(const at::Tensor& z) = 0;

 private:
  bool cache_enabled_ = true;
  std::vector<at::Tensor> cached_values_;
  std::vector<uint32_t> cached_versions_;
  at::Tensor cached_log_prob_;
};

}  // namespace vguide
