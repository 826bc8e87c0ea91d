#pragma once
/// A normalizing-flow guide (the seed's AutoNormalizingFlow): u ~ N(0, I_D) over the
/// registry's flat unconstrained vector, z = T_K(... T_1(u)), then every site's
/// bijector. log q(z) = log N(u) - Σ log|det J_k|.
///
/// Draws are one pass through the stack; `log_prob` of the guide's own latest draw
/// reuses the log density computed while drawing (FlatGuide's cache, autograd graph
/// intact); any other value is inverted through the stack.
///
/// Example: class MyFlow : public vguide::flow::FlowGuide {
///            MyFlow(...) : FlowGuide("myflow", registry, seed) { set_transforms({...}); } };
#include <ATen/core/Tensor.h>

#include <memory>
#include <ostream>
#include <string>
#include <utility>
#include <vector>

#include "vguide/export.hpp"
#include "vguide/flat_guide.hpp"
#include "vguide/flow/transform.hpp"

namespace vguide::flow {

class VGUIDE_API FlowGuide : public FlatGuide {
 public:
  /// @throw std::invalid_argument if the registry has no latent sites.
  FlowGuide(std::string family, LatentRegistry registry, uint64_t seed);
  ~FlowGuide() override;

  int64_t latent_dim() const noexcept { return registry().total_unconstrained_dim(); }
  /// Install the stack, in sampling order; registered as submodules "transform_<k>".
  /// @throw std::invalid_argument "<family>: the transform stack is empty ..." if empty.
  void set_transforms(std::vector<std::shared_ptr<Transform>> transforms);
  const std::vector<std::shared_ptr<Transform>>& transforms() const noexcept { return transforms_; }

  /// Push base points through the stack: (x, Σ log|det J|).
  std::pair<at::Tensor, at::Tensor> push_forward(const at::Tensor& u);
  /// Pull values back to the base: (u, Σ log|det J⁻¹|).
  std::pair<at::Tensor, at::Tensor> pull_back(const at::Tensor& x);

  /// @throw std::invalid_argument "<family>: the latent dimension is 1, but must be at
  ///        least 2 (use the normal guide for 1-D models)" when D < 2.
  void require_dim_at_least_two() const;

  /// Sets the shift (and, given a scale, the log scale to the marginal sds) of the
  /// stack's last map when drawing, if it is an ElementwiseAffine (the flows'
  /// default), so the flow starts near `location` with about the given spread;
  /// otherwise the family has no location (Guide::initialize's error).
  void initialize(const at::Tensor& location, const at::Tensor& scale) override;

  /// The last affine map's shift steps in units of its scale.
  std::vector<StepScale> step_scales() const override;

  /// "vguide::FlowGuide(family=iaf, latent_dim=3, transforms=8)".
  void pretty_print(std::ostream& out) const override;

 protected:
  std::pair<at::Tensor, at::Tensor> sample_flat(int64_t S, const at::TensorOptions& options) override;
  at::Tensor log_prob_flat(const at::Tensor& z) override;

 private:
  void require_stack() const;
  std::vector<std::shared_ptr<Transform>> transforms_;
  at::Tensor parameter_probe_;  ///< a parameter of the stack, for dtype and device
};

}  // namespace vguide::flow
