#pragma once
/// torch::optim::Adam with its update written as one loop per parameter tensor.
///
/// LibTorch's Adam issues seven tensor ops per parameter tensor per step (two for
/// each moment, sqrt, divide, add eps, addcdiv) and formats each parameter's
/// address into a string twice to find its state; on the small tensors of an SVI
/// step that dispatch costs more than the arithmetic. This class does the same
/// arithmetic, in the same order and precision, in one pass over each contiguous
/// CPU float32 / float64 parameter, and keeps its state in LibTorch's own
/// `AdamParamState` (the same keys), so checkpoints and `torch::optim::Optimizer`
/// code treat it as an `Adam`. Values equal LibTorch's to rounding (LibTorch's
/// vector kernels may fuse a multiply-add). Anything else (amsgrad, sparse
/// gradients, another device or dtype) takes LibTorch's own `Adam::step`.
///
/// Example: vguide::FusedAdam adam(guide->parameters(), torch::optim::AdamOptions(0.01));
#include <torch/optim/adam.h>

#include <string>
#include <vector>

#include "vguide/export.hpp"

namespace vguide {

class VGUIDE_API FusedAdam final : public torch::optim::Adam {
 public:
  using torch::optim::Adam::Adam;
  torch::Tensor step(LossClosure closure = nullptr) override;
  /// The step with each parameter's update multiplied element by element by
  /// `units[i]` (its Guide::step_scales unit; undefined: 1), in the same pass:
  /// p += unit ⊙ Δ. Returns false, changing nothing, unless the parameters are
  /// fusable and every unit has its parameter's shape, dtype and layout; the caller
  /// then scales the step itself.
  bool step_in_units(const std::vector<at::Tensor>& units);

 private:
  bool fusable() const;
  void update(const std::vector<at::Tensor>* units);
  std::vector<std::string> keys_;  // the state key of each parameter, in group order
};

}  // namespace vguide
