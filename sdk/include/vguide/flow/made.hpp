#pragma once
/// MADE: a masked autoregressive MLP (Germain, Gregor, Murray, Larochelle, "MADE:
/// Masked Autoencoder for Distribution Estimation", ICML 2015, arXiv:1502.03509).
/// Output j of feature i depends only on the features before i in `order`.
///
/// Shapes: (..., D) -> (..., D, outputs_per_feature).
///
/// Example: vguide::flow::Made made(vguide::flow::MadeOptions(4, 2).hidden_dim(16), gen);
#include <ATen/core/Generator.h>
#include <ATen/core/Tensor.h>
#include <torch/nn/module.h>

#include <vector>

#include "vguide/arg.hpp"
#include "vguide/export.hpp"

namespace vguide::flow {

struct MadeOptions {
  MadeOptions(int64_t features, int64_t outputs_per_feature)
      : features_(features), outputs_per_feature_(outputs_per_feature) {}
  VGUIDE_ARG(int64_t, features);
  VGUIDE_ARG(int64_t, outputs_per_feature);
  VGUIDE_ARG(int64_t, hidden_dim) = 16;
  VGUIDE_ARG(int64_t, num_hidden_layers) = 2;
  /// Autoregressive order: a permutation of 0..D-1 (empty: 0, 1, ..., D-1).
  VGUIDE_ARG(std::vector<int64_t>, order);
  /// Scale of the output layer's initial weights: small, so a flow starts near identity.
  VGUIDE_ARG(double, output_init_scale) = 1e-2;
};

class VGUIDE_API Made : public torch::nn::Module {
 public:
  /// @throw std::domain_error for features < 1, outputs_per_feature < 1,
  ///        hidden_dim < features - 1 when D > 1, num_hidden_layers < 1;
  ///        std::invalid_argument for an order that is not a permutation.
  Made(const MadeOptions& options, at::Generator& generator);
  at::Tensor forward(const at::Tensor& z);
  const std::vector<int64_t>& order() const noexcept { return order_; }

 private:
  MadeOptions options_;
  std::vector<int64_t> order_;
  std::vector<at::Tensor> weights_, biases_, masks_;
};

}  // namespace vguide::flow
