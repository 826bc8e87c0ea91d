#pragma once
/// A plain ReLU MLP, the conditioner of coupling layers. Initialised from an explicit
/// generator; the output layer starts small so that a flow starts near identity.
///
/// Example: vguide::flow::Mlp net(in, out, /*hidden_dim=*/64, /*num_hidden_layers=*/2, gen);
#include <ATen/core/Generator.h>
#include <ATen/core/Tensor.h>
#include <torch/nn/module.h>

#include <vector>

#include "vguide/export.hpp"

namespace vguide::flow {

class VGUIDE_API Mlp : public torch::nn::Module {
 public:
  /// @throw std::domain_error for a non-positive size.
  Mlp(int64_t in_features, int64_t out_features, int64_t hidden_dim, int64_t num_hidden_layers,
      at::Generator& generator, double output_init_scale = 1e-2);
  at::Tensor forward(const at::Tensor& x);

 private:
  std::vector<at::Tensor> weights_, biases_;
};

}  // namespace vguide::flow
