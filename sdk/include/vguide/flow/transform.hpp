#pragma once
/// A bijective layer of a normalizing flow over vectors of size D.
///
/// forward(z) -> (x, log|det dx/dz|) and inverse(x) -> (z, log|det dz/dx|), both
/// batched over leading dims; the log-determinants have the batch shape.
///
/// Example: auto [x, ladj] = transform->forward(torch::randn({16, D}));
#include <ATen/core/Tensor.h>
#include <torch/nn/module.h>

#include <utility>

#include "vguide/export.hpp"

namespace vguide::flow {

class VGUIDE_API Transform : public torch::nn::Module {
 public:
  Transform() = default;
  ~Transform() override;
  virtual std::pair<at::Tensor, at::Tensor> forward(const at::Tensor& z) = 0;
  virtual std::pair<at::Tensor, at::Tensor> inverse(const at::Tensor& x) = 0;
};

}  // namespace vguide::flow
