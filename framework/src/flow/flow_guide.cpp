#include "vguide/flow/flow_guide.hpp"

#include <ATen/ATen.h>

#include "vguide/flow/layers.hpp"
#include "vguide/math/normal_log_prob.hpp"

namespace vguide::flow {

FlowGuide::FlowGuide(std::string family, LatentRegistry registry, uint64_t seed)
    : FlatGuide(std::move(family), std::move(registry), seed) {
  this->registry().require_latents(this->family().c_str());
}

FlowGuide::~FlowGuide() = default;

void FlowGuide::require_dim_at_least_two() const {
  if (latent_dim() >= 2) return;
  throw std::invalid_argument(family() + ": the latent dimension is " + std::to_string(latent_dim()) +
                              ", but must be at least 2 (use the normal guide for 1-D models)");
}

void FlowGuide::pretty_print(std::ostream& out) const {
  out << "vguide::FlowGuide(family=" << family() << ", latent_dim=" << latent_dim()
      << ", transforms=" << transforms_.size() << ")";
}

void FlowGuide::set_transforms(std::vector<std::shared_ptr<Transform>> transforms) {
  if (transforms.empty())
    throw std::invalid_argument(family() + ": the transform stack is empty; a flow needs at least one transform");
  if (!transforms_.empty()) throw std::logic_error(family() + ": set_transforms may be called once");
  for (size_t k = 0; k < transforms.size(); ++k) register_module("transform_" + std::to_string(k), transforms[k]);
  transforms_ = std::move(transforms);
  // Module::to() swaps a parameter's data in place, so this handle follows dtype and
  // device without a per-step search of the stack.
  for (const auto& t : transforms_) {
    auto params = t->parameters();
    if (!params.empty()) {
      parameter_probe_ = params.front();
      break;
    }
  }
}

void FlowGuide::initialize(const at::Tensor& location, const at::Tensor& scale) {
  auto* affine = transforms_.empty() ? nullptr : dynamic_cast<ElementwiseAffine*>(transforms_.back().get());
  if (affine == nullptr) return Guide::initialize(location, scale);
  check_scale(scale, registry().total_unconstrained_dim());
  auto params = affine->named_parameters(/*recurse=*/false);
  at::Tensor shift = params["loc"];
  copy_location(shift, location);
  if (scale.defined()) {
    at::Tensor log_scale = params["log_scale"];
    copy_location(log_scale, at::log(marginal_sd(scale)));
  }
}

std::vector<Guide::StepScale> FlowGuide::step_scales() const {
  auto* affine = transforms_.empty() ? nullptr : dynamic_cast<ElementwiseAffine*>(transforms_.back().get());
  if (affine == nullptr) return {};
  auto params = affine->named_parameters(/*recurse=*/false);
  return {{params["loc"], at::exp(params["log_scale"].detach())}};
}

void FlowGuide::require_stack() const {
  if (transforms_.empty())
    throw std::logic_error(family() + ": the transform stack was never set (call set_transforms in the constructor)");
}

std::pair<at::Tensor, at::Tensor> FlowGuide::push_forward(const at::Tensor& u) {
  require_stack();
  at::Tensor x = u, total;
  for (const auto& t : transforms_) {
    auto [next, ladj] = t->forward(x);
    x = std::move(next);
    total = total.defined() ? total + ladj : ladj;
  }
  return {x, total};
}

std::pair<at::Tensor, at::Tensor> FlowGuide::pull_back(const at::Tensor& x) {
  require_stack();
  at::Tensor u = x, total;
  for (auto it = transforms_.rbegin(); it != transforms_.rend(); ++it) {
    auto [prev, ladj] = (*it)->inverse(u);
    u = std::move(prev);
    total = total.defined() ? total + ladj : ladj;
  }
  return {u, total};
}

std::pair<at::Tensor, at::Tensor> FlowGuide::sample_flat(int64_t S, const at::TensorOptions& options) {
  require_stack();
  // The stack's parameters decide dtype and device; a stack without any uses x's.
  const at::TensorOptions opts = parameter_probe_.defined() ? parameter_probe_.options() : options;
  at::Tensor u = at::randn({S, latent_dim()}, generator(), opts.requires_grad(false));
  auto [z, ladj] = push_forward(u);
  return {z, math::standard_normal_log_prob(u).sum(-1) - ladj};
}

at::Tensor FlowGuide::log_prob_flat(const at::Tensor& z) {
  auto [u, ladj_inverse] = pull_back(z);
  return math::standard_normal_log_prob(u).sum(-1) + ladj_inverse;
}

}  // namespace vguide::flow
