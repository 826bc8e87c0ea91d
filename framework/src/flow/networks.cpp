// MADE and the coupling MLP: small networks initialised from an explicit generator.
#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <sstream>

#include "vguide/check.hpp"
#include "vguide/flow/made.hpp"
#include "vguide/flow/mlp.hpp"
#include "vguide/flow/transform.hpp"

namespace vguide::flow {

Transform::~Transform() = default;

namespace {
// U(-1/sqrt(fan_in), 1/sqrt(fan_in)) * scale, as torch.nn.Linear, from `generator`.
at::Tensor init_weight(int64_t out, int64_t in, at::Generator& generator, double scale = 1.0) {
  const double bound = scale / std::sqrt(static_cast<double>(std::max<int64_t>(in, 1)));
  return (at::rand({out, in}, generator, at::kFloat) * 2.0 - 1.0) * bound;
}
}  // namespace

Made::Made(const MadeOptions& options, at::Generator& generator) : options_(options) {
  const int64_t D = options.features(), P = options.outputs_per_feature(), H = options.hidden_dim();
  check_positive("MADE", "features", D);
  check_positive("MADE", "outputs_per_feature", P);
  check_positive("MADE", "num_hidden_layers", options.num_hidden_layers());
  check_greater_or_equal<int64_t>("MADE", "hidden_dim", H, std::max<int64_t>(1, D - 1));

  order_ = options.order();
  if (order_.empty()) {
    order_.resize(D);
    std::iota(order_.begin(), order_.end(), 0);
  }
  std::vector<int64_t> sorted = order_;
  std::sort(sorted.begin(), sorted.end());
  std::vector<int64_t> identity(D);
  std::iota(identity.begin(), identity.end(), 0);
  if (sorted != identity) throw std::invalid_argument("MADE: order must be a permutation of 0..D-1");

  // Degrees: feature order_[k] has degree k + 1; hidden units cycle through 1..D-1.
  std::vector<int64_t> in_degree(D);
  for (int64_t k = 0; k < D; ++k) in_degree[order_[k]] = k + 1;
  at::Tensor deg_in = at::tensor(in_degree, at::kLong);
  at::Tensor deg_hidden = at::remainder(at::arange(H, at::kLong), std::max<int64_t>(1, D - 1)) + 1;

  int64_t fan_in = D;
  at::Tensor prev_degree = deg_in;
  for (int64_t l = 0; l < options.num_hidden_layers(); ++l) {
    // A hidden unit of degree d sees inputs of degree <= d.
    at::Tensor mask = (deg_hidden.unsqueeze(1) >= prev_degree.unsqueeze(0)).to(at::kFloat);
    masks_.push_back(register_buffer("mask" + std::to_string(l), mask));
    weights_.push_back(register_parameter("weight" + std::to_string(l), init_weight(H, fan_in, generator)));
    biases_.push_back(register_parameter("bias" + std::to_string(l), at::zeros({H})));
    prev_degree = deg_hidden;
    fan_in = H;
  }
  // Output (feature i, parameter p) at row i * P + p sees hidden degrees < degree(i).
  at::Tensor deg_out = deg_in.repeat_interleave(P);
  at::Tensor out_mask = (deg_out.unsqueeze(1) > prev_degree.unsqueeze(0)).to(at::kFloat);
  masks_.push_back(register_buffer("mask_out", out_mask));
  weights_.push_back(
      register_parameter("weight_out", init_weight(D * P, fan_in, generator, options.output_init_scale())));
  biases_.push_back(register_parameter("bias_out", at::zeros({D * P})));
}

at::Tensor Made::forward(const at::Tensor& z) {
  at::Tensor h = z;
  const size_t last = weights_.size() - 1;
  for (size_t l = 0; l < last; ++l) h = at::relu(at::linear(h, weights_[l] * masks_[l], biases_[l]));
  at::Tensor out = at::linear(h, weights_[last] * masks_[last], biases_[last]);
  std::vector<int64_t> shape(z.sizes().begin(), z.sizes().end());
  shape.push_back(options_.outputs_per_feature());
  return out.reshape(shape);
}

Mlp::Mlp(int64_t in_features, int64_t out_features, int64_t hidden_dim, int64_t num_hidden_layers,
         at::Generator& generator, double output_init_scale) {
  check_positive("MLP", "in_features", in_features);
  check_positive("MLP", "out_features", out_features);
  check_positive("MLP", "hidden_dim", hidden_dim);
  check_positive("MLP", "num_hidden_layers", num_hidden_layers);
  int64_t fan_in = in_features;
  for (int64_t l = 0; l < num_hidden_layers; ++l) {
    weights_.push_back(register_parameter("weight" + std::to_string(l), init_weight(hidden_dim, fan_in, generator)));
    biases_.push_back(register_parameter("bias" + std::to_string(l), at::zeros({hidden_dim})));
    fan_in = hidden_dim;
  }
  weights_.push_back(
      register_parameter("weight_out", init_weight(out_features, fan_in, generator, output_init_scale)));
  biases_.push_back(register_parameter("bias_out", at::zeros({out_features})));
}

at::Tensor Mlp::forward(const at::Tensor& x) {
  at::Tensor h = x;
  const size_t last = weights_.size() - 1;
  for (size_t l = 0; l < last; ++l) h = at::relu(at::linear(h, weights_[l], biases_[l]));
  return at::linear(h, weights_[last], biases_[last]);
}

}  // namespace vguide::flow
