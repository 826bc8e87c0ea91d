// Autoregressive and coupling layers, permutations and the elementwise affine layer.
#include <ATen/ATen.h>

#include <algorithm>
#include <numeric>

#include "vguide/flow/layers.hpp"

namespace vguide::flow {
namespace {
std::vector<int64_t> batch_shape(const at::Tensor& t) { return {t.sizes().begin(), t.sizes().end() - 1}; }
}  // namespace

MaskedAutoregressiveTransform::MaskedAutoregressiveTransform(int64_t features,
                                                             std::shared_ptr<const UnivariateTransform> univariate,
                                                             int64_t hidden_dim, int64_t num_hidden_layers,
                                                             at::Generator& generator, std::vector<int64_t> order)
    : univariate_(std::move(univariate)) {
  made_ = register_module("made", std::make_shared<Made>(MadeOptions(features, univariate_->num_params())
                                                             .hidden_dim(hidden_dim)
                                                             .num_hidden_layers(num_hidden_layers)
                                                             .order(std::move(order)),
                                                         generator));
}

std::pair<at::Tensor, at::Tensor> MaskedAutoregressiveTransform::forward(const at::Tensor& z) {
  auto [x, ladj] = univariate_->forward(z, made_->forward(z));
  return {x, ladj.sum(-1)};
}

std::pair<at::Tensor, at::Tensor> MaskedAutoregressiveTransform::inverse(const at::Tensor& x) {
  // Pass k recovers the coordinate of rank k: its parameters depend only on
  // coordinates of lower rank, which earlier passes already recovered.
  const int64_t D = x.size(-1);
  at::Tensor z = at::zeros_like(x);
  at::Tensor ladj;
  for (int64_t k = 0; k < D; ++k) std::tie(z, ladj) = univariate_->inverse(x, made_->forward(z));
  return {z, ladj.sum(-1)};
}

at::Tensor CouplingTransform::half_mask(int64_t features, bool first_half) {
  at::Tensor first = at::arange(features, at::kLong) < features / 2;
  return first_half ? first : first.logical_not();
}

CouplingTransform::CouplingTransform(const at::Tensor& mask, std::shared_ptr<const UnivariateTransform> univariate,
                                     int64_t hidden_dim, int64_t num_hidden_layers, at::Generator& generator)
    : univariate_(std::move(univariate)) {
  at::Tensor m = mask.to(at::kBool).flatten();
  at::Tensor kept = at::nonzero(m).flatten(), changed = at::nonzero(m.logical_not()).flatten();
  if (kept.numel() == 0 || changed.numel() == 0)
    throw std::invalid_argument("CouplingTransform: the mask must keep some coordinates and change others");
  // Index tensors are plain members, not buffers: module.to(dtype) would turn them
  // into floats.
  kept_ = kept;
  changed_ = changed;
  net_ = register_module("net", std::make_shared<Mlp>(kept.numel(), changed.numel() * univariate_->num_params(),
                                                      hidden_dim, num_hidden_layers, generator));
}

std::pair<at::Tensor, at::Tensor> CouplingTransform::apply(const at::Tensor& input, bool inverse) {
  if (kept_.device() != input.device()) {
    kept_ = kept_.to(input.device());
    changed_ = changed_.to(input.device());
  }
  at::Tensor kept = input.index_select(-1, kept_);
  std::vector<int64_t> shape = batch_shape(input);
  shape.push_back(changed_.numel());
  shape.push_back(univariate_->num_params());
  at::Tensor params = net_->forward(kept).reshape(shape);
  at::Tensor target = input.index_select(-1, changed_);
  auto [changed, ladj] = inverse ? univariate_->inverse(target, params) : univariate_->forward(target, params);
  at::Tensor out = at::zeros_like(input).index_copy(-1, kept_, kept).index_copy(-1, changed_, changed);
  return {out, ladj.sum(-1)};
}

std::pair<at::Tensor, at::Tensor> CouplingTransform::forward(const at::Tensor& z) { return apply(z, false); }
std::pair<at::Tensor, at::Tensor> CouplingTransform::inverse(const at::Tensor& x) { return apply(x, true); }

Permutation::Permutation(std::vector<int64_t> perm) {
  std::vector<int64_t> sorted = perm, identity(perm.size());
  std::sort(sorted.begin(), sorted.end());
  std::iota(identity.begin(), identity.end(), 0);
  if (perm.empty() || sorted != identity)
    throw std::invalid_argument("Permutation: expected a permutation of 0..D-1");
  // Plain members, not buffers: module.to(dtype) would turn them into floats.
  perm_ = at::tensor(perm, at::kLong);
  inverse_perm_ = at::argsort(perm_);
}

void Permutation::follow_device(const at::Tensor& input) {
  if (perm_.device() == input.device()) return;
  perm_ = perm_.to(input.device());
  inverse_perm_ = inverse_perm_.to(input.device());
}

std::shared_ptr<Permutation> Permutation::reverse(int64_t features) {
  std::vector<int64_t> perm(features);
  std::iota(perm.rbegin(), perm.rend(), 0);
  return std::make_shared<Permutation>(perm);
}

std::shared_ptr<Permutation> Permutation::random(int64_t features, at::Generator& generator) {
  at::Tensor p = at::randperm(features, generator, at::kLong);
  return std::make_shared<Permutation>(std::vector<int64_t>(p.data_ptr<int64_t>(), p.data_ptr<int64_t>() + features));
}

std::pair<at::Tensor, at::Tensor> Permutation::forward(const at::Tensor& z) {
  follow_device(z);
  return {z.index_select(-1, perm_), at::zeros(batch_shape(z), z.options())};
}
std::pair<at::Tensor, at::Tensor> Permutation::inverse(const at::Tensor& x) {
  follow_device(x);
  return {x.index_select(-1, inverse_perm_), at::zeros(batch_shape(x), x.options())};
}

ElementwiseAffine::ElementwiseAffine(int64_t features) {
  loc_ = register_parameter("loc", at::zeros({features}));
  log_scale_ = register_parameter("log_scale", at::zeros({features}));
}

std::pair<at::Tensor, at::Tensor> ElementwiseAffine::forward(const at::Tensor& z) {
  return {loc_ + at::exp(log_scale_) * z, log_scale_.sum().expand(batch_shape(z))};
}
std::pair<at::Tensor, at::Tensor> ElementwiseAffine::inverse(const at::Tensor& x) {
  return {(x - loc_) * at::exp(-log_scale_), (-log_scale_.sum()).expand(batch_shape(x))};
}

}  // namespace vguide::flow
