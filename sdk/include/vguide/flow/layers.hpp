#pragma once
/// The transforms flows are stacked from.
///
///  - MaskedAutoregressiveTransform: x_i = f(z_i; θ_i(z_<i)) with θ from a MADE. One
///    network pass forward (the sampling direction of an IAF), D passes inverse.
///    (Kingma et al., "Improved Variational Inference with Inverse Autoregressive
///    Flow", NeurIPS 2016, arXiv:1606.04934.)
///  - CouplingTransform: the masked coordinates pass through and parameterise f on the
///    others; one pass either way (Dinh et al., "Density estimation using Real NVP",
///    ICLR 2017, arXiv:1605.08803).
///  - Permutation: reorders coordinates; log|det| = 0.
///  - ElementwiseAffine: x = loc + exp(log_scale) z, starting at the identity.
///
/// Example: auto layer = std::make_shared<vguide::flow::MaskedAutoregressiveTransform>(
///              D, vguide::flow::affine_univariate(), /*hidden_dim=*/16, /*num_hidden_layers=*/2, gen);
#include <ATen/core/Generator.h>
#include <ATen/core/Tensor.h>

#include <memory>
#include <utility>
#include <vector>

#include "vguide/export.hpp"
#include "vguide/flow/made.hpp"
#include "vguide/flow/mlp.hpp"
#include "vguide/flow/transform.hpp"
#include "vguide/flow/univariate.hpp"

namespace vguide::flow {

class VGUIDE_API MaskedAutoregressiveTransform : public Transform {
 public:
  MaskedAutoregressiveTransform(int64_t features, std::shared_ptr<const UnivariateTransform> univariate,
                                int64_t hidden_dim, int64_t num_hidden_layers, at::Generator& generator,
                                std::vector<int64_t> order = {});
  std::pair<at::Tensor, at::Tensor> forward(const at::Tensor& z) override;
  std::pair<at::Tensor, at::Tensor> inverse(const at::Tensor& x) override;
  /// The conditioner, for inspection and tests.
  Made& made() { return *made_; }

 private:
  std::shared_ptr<const UnivariateTransform> univariate_;
  std::shared_ptr<Made> made_;
};

class VGUIDE_API CouplingTransform : public Transform {
 public:
  /// `mask` (bool, D): true where a coordinate passes through and conditions the rest.
  /// @throw std::invalid_argument unless the mask has both true and false entries.
  CouplingTransform(const at::Tensor& mask, std::shared_ptr<const UnivariateTransform> univariate,
                    int64_t hidden_dim, int64_t num_hidden_layers, at::Generator& generator);
  std::pair<at::Tensor, at::Tensor> forward(const at::Tensor& z) override;
  std::pair<at::Tensor, at::Tensor> inverse(const at::Tensor& x) override;

  /// First half (floor(D/2) coordinates) passes through when `first_half`, else the rest.
  static at::Tensor half_mask(int64_t features, bool first_half);

 private:
  std::pair<at::Tensor, at::Tensor> apply(const at::Tensor& input, bool inverse);
  std::shared_ptr<const UnivariateTransform> univariate_;
  at::Tensor kept_, changed_;  // index tensors
  std::shared_ptr<Mlp> net_;
};

class VGUIDE_API Permutation : public Transform {
 public:
  /// @throw std::invalid_argument unless `perm` is a permutation of 0..D-1.
  explicit Permutation(std::vector<int64_t> perm);
  static std::shared_ptr<Permutation> reverse(int64_t features);
  static std::shared_ptr<Permutation> random(int64_t features, at::Generator& generator);
  std::pair<at::Tensor, at::Tensor> forward(const at::Tensor& z) override;
  std::pair<at::Tensor, at::Tensor> inverse(const at::Tensor& x) override;

 private:
  void follow_device(const at::Tensor& input);
  at::Tensor perm_, inverse_perm_;
};

class VGUIDE_API ElementwiseAffine : public Transform {
 public:
  explicit ElementwiseAffine(int64_t features);
  std::pair<at::Tensor, at::Tensor> forward(const at::Tensor& z) override;
  std::pair<at::Tensor, at::Tensor> inverse(const at::Tensor& x) override;

 private:
  at::Tensor loc_, log_scale_;
};

}  // namespace vguide::flow
