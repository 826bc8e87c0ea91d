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
  /// The step in each parameter's Guide::step_scales unit `units[i]` (undefined: 1),
  /// in the same pass: p += unit ⊙ Δ for a unit of the parameter's shape, or of
  /// shape (rows, 1) for a (rows, cols) parameter (one unit per row); for a factor L
  /// (n, n) of a (n,) parameter, the step Δ Adam takes on the gradient Lᵀ∇ (written
  /// into the grad) becomes p += L Δ. Returns false, changing nothing, unless the
  /// parameters are fusable and every unit is one of these, of the parameter's dtype,
  /// contiguous on the CPU; the caller then scales the step itself.
  bool step_in_units(const std::vector<at::Tensor>& units);

 private:
  bool fusable() const;
  void update(const std::vector<at::Tensor>* units);
  template <class T>
  void update_one(at::Tensor& p, const at::Tensor& grad, at::Tensor& m, at::Tensor& v, const at::Tensor* unit,
                  const torch::optim::AdamOptions& options, int64_t step);
  std::vector<std::string> keys_;  // the state key of each parameter, in group order
  std::vector<double> before_, scratch_;  // a factor unit's p before the step, and Lᵀ∇
};

}  // namespace vguide
