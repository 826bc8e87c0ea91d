#include "vguide/runtime/fused_adam.hpp"

#include <ATen/ATen.h>
#include <c10/util/string_utils.h>

#include <cmath>

namespace vguide {
namespace {

// One Adam update of n elements, in the order LibTorch's Adam::step computes it:
//   g = grad + wd * p;  m = m * b1 + (1 - b1) * g;  v = v * b2 + (1 - b2) * g * g;
//   denom = sqrt(v) / sqrt(bc2) + eps;  p = p + (-lr / bc1) * m / denom,
// each scalar rounded to the tensor's type as LibTorch's kernels do.
// `unit` (or null): p += unit * Δ instead of p += Δ, with element i's unit
// unit[i / unit_every] (1: element-wise; a row's length: one unit per row).
template <class T>
void adam_update(int64_t n, T* p, const T* grad, T* m, T* v, const T* unit, int64_t unit_every,
                 const torch::optim::AdamOptions& o, int64_t step) {
  const double beta1 = std::get<0>(o.betas()), beta2 = std::get<1>(o.betas());
  const double bias_correction1 = 1 - std::pow(beta1, step);
  const double bias_correction2 = 1 - std::pow(beta2, step);
  const T b1 = static_cast<T>(beta1), one_minus_b1 = static_cast<T>(1 - beta1);
  const T b2 = static_cast<T>(beta2), one_minus_b2 = static_cast<T>(1 - beta2);
  const T wd = static_cast<T>(o.weight_decay());
  const bool decay = o.weight_decay() != 0;
  const T sqrt_bc2 = static_cast<T>(std::sqrt(bias_correction2));
  const T eps = static_cast<T>(o.eps());
  const T neg_step = static_cast<T>(-(o.lr() / bias_correction1));
  for (int64_t i = 0; i < n; ++i) {
    const T g = decay ? grad[i] + wd * p[i] : grad[i];
    m[i] = m[i] * b1;
    m[i] = m[i] + one_minus_b1 * g;
    v[i] = v[i] * b2;
    v[i] = v[i] + one_minus_b2 * g * g;
    const T denom = std::sqrt(v[i]) / sqrt_bc2 + eps;
    p[i] = unit ? p[i] + unit[i / unit_every] * (neg_step * m[i] / denom) : p[i] + neg_step * m[i] / denom;
  }
}

}  // namespace

bool FusedAdam::fusable() const {
  for (const auto& group : param_groups()) {
    if (static_cast<const torch::optim::AdamOptions&>(group.options()).amsgrad()) return false;
    for (const auto& p : group.params()) {
      if (!p.grad().defined()) continue;
      const at::Tensor& g = p.grad();
      const at::ScalarType t = p.scalar_type();
      if (!(t == at::kFloat || t == at::kDouble) || g.scalar_type() != t || !p.device().is_cpu() ||
          !g.device().is_cpu() || g.is_sparse() || !p.is_contiguous() || !g.is_contiguous())
        return false;
    }
  }
  return true;
}

torch::Tensor FusedAdam::step(LossClosure closure) {
  if (!fusable()) return torch::optim::Adam::step(std::move(closure));
  torch::NoGradGuard no_grad;
  torch::Tensor loss;
  if (closure != nullptr) {
    at::AutoGradMode enable_grad(true);
    loss = closure();
  }
  update(nullptr);
  return loss;
}

bool FusedAdam::step_in_units(const std::vector<at::Tensor>& units) {
  if (!fusable()) return false;
  size_t index = 0;
  for (const auto& group : param_groups())
    for (const auto& p : group.params()) {
      const at::Tensor* u = index < units.size() ? &units[index] : nullptr;
      ++index;
      if (!u || !u->defined()) continue;
      const bool elementwise = u->sizes() == p.sizes();
      const bool rows = p.dim() == 2 && u->dim() == 2 && u->size(0) == p.size(0) && u->size(1) == 1;
      const bool factor = p.dim() == 1 && u->dim() == 2 && u->size(0) == p.size(0) && u->size(1) == p.size(0);
      if (!(elementwise || rows || factor) || u->scalar_type() != p.scalar_type() || !u->is_contiguous() ||
          !u->device().is_cpu())
        return false;
    }
  torch::NoGradGuard no_grad;
  update(&units);
  return true;
}

template <class T>
void FusedAdam::update_one(at::Tensor& p, const at::Tensor& grad, at::Tensor& m, at::Tensor& v, const at::Tensor* unit,
                           const torch::optim::AdamOptions& options, int64_t step) {
  const int64_t n = p.numel();
  T* x = p.data_ptr<T>();
  T* g = grad.data_ptr<T>();
  const bool factor = unit && unit->dim() == 2 && p.dim() == 1;
  if (!factor) {
    const int64_t every = unit && unit->sizes() != p.sizes() ? p.size(1) : 1;
    adam_update<T>(n, x, g, m.data_ptr<T>(), v.data_ptr<T>(), unit ? unit->data_ptr<T>() : nullptr, every, options,
                   step);
    return;
  }
  // As the caller's own scaling would: grad ← Lᵀ grad, the step Δ, p ← before + L Δ.
  const T* L = unit->data_ptr<T>();
  scratch_.assign(static_cast<size_t>(n), 0.0);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < n; ++j) scratch_[static_cast<size_t>(j)] += static_cast<double>(L[i * n + j]) * g[i];
  before_.assign(x, x + n);
  for (int64_t j = 0; j < n; ++j) g[j] = static_cast<T>(scratch_[static_cast<size_t>(j)]);
  adam_update<T>(n, x, g, m.data_ptr<T>(), v.data_ptr<T>(), nullptr, 1, options, step);
  for (int64_t j = 0; j < n; ++j) scratch_[static_cast<size_t>(j)] = static_cast<T>(x[j] - static_cast<T>(before_[static_cast<size_t>(j)]));
  for (int64_t i = 0; i < n; ++i) {
    double step_i = 0.0;
    for (int64_t j = 0; j < n; ++j) step_i += static_cast<double>(L[i * n + j]) * scratch_[static_cast<size_t>(j)];
    x[i] = static_cast<T>(before_[static_cast<size_t>(i)] + static_cast<T>(step_i));
  }
}

void FusedAdam::update(const std::vector<at::Tensor>* units) {
  size_t index = 0;
  for (auto& group : param_groups()) {
    const auto& options = static_cast<const torch::optim::AdamOptions&>(group.options());
    for (auto& p : group.params()) {
      // LibTorch keys a parameter's state by its address; the string is built once.
      if (index == keys_.size()) keys_.push_back(c10::guts::to_string(p.unsafeGetTensorImpl()));
      const size_t position = index;
      const std::string& key = keys_[index++];
      if (!p.grad().defined()) continue;
      const at::Tensor* unit = units && position < units->size() && (*units)[position].defined() ? &(*units)[position] : nullptr;
      auto it = state().find(key);
      if (it == state().end()) {
        auto fresh = std::make_unique<torch::optim::AdamParamState>();
        fresh->step(0);
        fresh->exp_avg(torch::zeros_like(p, at::MemoryFormat::Preserve));
        fresh->exp_avg_sq(torch::zeros_like(p, at::MemoryFormat::Preserve));
        it = state().emplace(key, std::move(fresh)).first;
      }
      auto& s = static_cast<torch::optim::AdamParamState&>(*it->second);
      s.step(s.step() + 1);
      at::Tensor& m = s.exp_avg();
      at::Tensor& v = s.exp_avg_sq();
      if (!m.is_contiguous() || !v.is_contiguous() || m.scalar_type() != p.scalar_type() ||
          v.scalar_type() != p.scalar_type()) {
        // A state loaded in another layout: make it this parameter's, once.
        m = m.to(p.scalar_type()).contiguous();
        v = v.to(p.scalar_type()).contiguous();
      }
      const at::Tensor& g = p.grad();
      if (p.scalar_type() == at::kDouble)
        update_one<double>(p, g, m, v, unit, options, s.step());
      else
        update_one<float>(p, g, m, v, unit, options, s.step());
      // As an in-place op would: autograd then refuses a graph that saved the old values.
      p.unsafeGetTensorImpl()->bump_version();
    }
  }
}

}  // namespace vguide
