#include "vguide/math/diag_normal_rsample.hpp"

#include <ATen/ATen.h>
#include <torch/csrc/autograd/function.h>
#include <torch/csrc/autograd/functions/utils.h>

#include <cmath>
#include <stdexcept>
#include <vector>

#include "vguide/math/normal_log_prob.hpp"

namespace vguide::math {
namespace {

using torch::autograd::variable_list;

constexpr double kHalfLog2Pi = 0.918938533204672741780329736406;

// The same values through LibTorch ops: other devices and dtypes, and gradients of
// gradients (each op knows its own derivative).
std::pair<at::Tensor, at::Tensor> with_ops(const at::Tensor& loc, const at::Tensor& log_scale, const at::Tensor& eps) {
  at::Tensor z = at::addcmul(loc, at::exp(log_scale), eps);
  at::Tensor log_q = (standard_normal_log_prob(eps) - log_scale).sum(-1);
  return {z, log_q};
}

// Reads a (rows, D) or (rows) gradient through its strides: a gradient LibTorch
// expanded from a scalar (stride 0) needs no copy.
template <class T>
struct Strided {
  const T* data;
  int64_t row_stride, col_stride;
  T at(int64_t r, int64_t c = 0) const { return data[r * row_stride + c * col_stride]; }
};

class DiagNormalRsampleBackward final : public torch::autograd::Node {
 public:
  variable_list apply(variable_list&& grads) override {
    const at::Tensor& gz = grads.at(0);
    const at::Tensor& gq = grads.at(1);
    variable_list out(2);
    if (at::GradMode::is_enabled()) {
      // create_graph: the gradient as LibTorch ops of the saved inputs, so that it
      // can be differentiated again.
      const at::Tensor scale = at::exp(log_scale_);
      at::Tensor g_loc, g_ls;
      if (gz.defined()) {
        g_loc = gz.reshape({-1, D_}).sum(0);
        g_ls = (gz * eps_).reshape({-1, D_}).sum(0) * scale;
      }
      if (gq.defined()) {
        const at::Tensor total = gq.sum();
        g_ls = g_ls.defined() ? g_ls - total : (-total).expand({D_}).clone();
      }
      if (!g_loc.defined() && should_compute_output(0)) g_loc = at::zeros({D_}, eps_.options());
      out[0] = should_compute_output(0) ? g_loc : at::Tensor();
      out[1] = should_compute_output(1) ? g_ls : at::Tensor();
      return out;
    }
    if (eps_.scalar_type() == at::kDouble) apply_loops<double>(gz, gq, out);
    else apply_loops<float>(gz, gq, out);
    return out;
  }

  std::string name() const override { return "DiagNormalRsampleBackward"; }
  void release_variables() override {
    eps_ = at::Tensor();
    log_scale_ = at::Tensor();
    scale_.clear();
  }

  at::Tensor eps_;        // (rows, D) contiguous, the noise of the draw
  at::Tensor log_scale_;  // the input, for create_graph
  std::vector<double> scale_;
  int64_t D_ = 0;

 private:
  template <class T>
  void apply_loops(const at::Tensor& gz, const at::Tensor& gq, variable_list& out) {
    const int64_t rows = D_ == 0 ? 0 : eps_.numel() / D_;
    const T* e = eps_.data_ptr<T>();
    // dz/dloc = 1, dz/dlog_scale = scale * eps, dlog_q/dlog_scale = -1.
    std::vector<double> g_loc(static_cast<size_t>(D_), 0.0), g_ls(static_cast<size_t>(D_), 0.0);
    if (gz.defined()) {
      const at::Tensor g = gz.reshape({rows, D_});  // a view of the incoming gradient
      const Strided<T> s{g.data_ptr<T>(), g.stride(0), g.stride(1)};
      for (int64_t r = 0; r < rows; ++r)
        for (int64_t d = 0; d < D_; ++d) {
          const double v = s.at(r, d);
          g_loc[d] += v;
          g_ls[d] += v * e[r * D_ + d];
        }
      for (int64_t d = 0; d < D_; ++d) g_ls[d] *= scale_[d];
    }
    if (gq.defined()) {
      const at::Tensor g = gq.reshape({rows});
      const Strided<T> s{g.data_ptr<T>(), g.stride(0), 0};
      double total = 0.0;
      for (int64_t r = 0; r < rows; ++r) total += s.at(r);
      for (int64_t d = 0; d < D_; ++d) g_ls[d] -= total;
    }
    const auto tensor = [&](const std::vector<double>& v) {
      at::Tensor t = at::empty({D_}, eps_.options());
      T* p = t.data_ptr<T>();
      for (int64_t d = 0; d < D_; ++d) p[d] = static_cast<T>(v[d]);
      return t;
    };
    if (should_compute_output(0)) out[0] = tensor(g_loc);
    if (should_compute_output(1)) out[1] = tensor(g_ls);
  }
};

template <class T>
void forward_loops(const at::Tensor& loc, const at::Tensor& log_scale, const at::Tensor& eps, at::Tensor& z,
                   at::Tensor& log_q, std::vector<double>& scale) {
  const int64_t D = loc.size(0), rows = D == 0 ? 0 : eps.numel() / D;
  const T* m = loc.data_ptr<T>();
  const T* ls = log_scale.data_ptr<T>();
  const T* e = eps.data_ptr<T>();
  T* zp = z.data_ptr<T>();
  T* qp = log_q.data_ptr<T>();
  scale.resize(static_cast<size_t>(D));
  double sum_ls = 0.0;
  std::vector<T> sc(static_cast<size_t>(D));
  for (int64_t d = 0; d < D; ++d) {
    sc[d] = std::exp(ls[d]);
    scale[d] = sc[d];
    sum_ls += ls[d];
  }
  const double constant = -static_cast<double>(D) * kHalfLog2Pi - sum_ls;
  for (int64_t r = 0; r < rows; ++r) {
    double sq = 0.0;
    for (int64_t d = 0; d < D; ++d) {
      const T v = e[r * D + d];
      zp[r * D + d] = m[d] + sc[d] * v;
      sq += static_cast<double>(v) * v;
    }
    qp[r] = static_cast<T>(constant - 0.5 * sq);
  }
}

}  // namespace

std::pair<at::Tensor, at::Tensor> diag_normal_rsample(const at::Tensor& loc, const at::Tensor& log_scale,
                                                     const at::Tensor& eps) {
  static const char* function = "diag_normal_rsample";
  if (!loc.defined() || loc.dim() != 1 || !log_scale.defined() || log_scale.sizes() != loc.sizes())
    throw std::invalid_argument(std::string(function) + ": loc and log_scale must be vectors of the same size");
  if (!eps.defined() || eps.dim() < 1 || eps.size(-1) != loc.size(0))
    throw std::invalid_argument(std::string(function) + ": eps must end in a dim of " + std::to_string(loc.size(0)) +
                                " (the size of loc)");
  const at::ScalarType t = loc.scalar_type();
  const bool fused = (t == at::kFloat || t == at::kDouble) && log_scale.scalar_type() == t && eps.scalar_type() == t &&
                     loc.device().is_cpu() && log_scale.device().is_cpu() && eps.device().is_cpu() &&
                     !eps.requires_grad();
  if (!fused) return with_ops(loc, log_scale, eps);

  const at::Tensor m = loc.detach().contiguous(), ls = log_scale.detach().contiguous(), e = eps.contiguous();
  at::Tensor z = at::empty(eps.sizes(), loc.options().requires_grad(false));
  at::Tensor log_q = at::empty(eps.sizes().slice(0, eps.dim() - 1), loc.options().requires_grad(false));
  std::vector<double> scale;
  if (t == at::kDouble) forward_loops<double>(m, ls, e, z, log_q, scale);
  else forward_loops<float>(m, ls, e, z, log_q, scale);

  const bool needs_grad = at::GradMode::is_enabled() && (loc.requires_grad() || log_scale.requires_grad());
  if (needs_grad) {
    auto node =
        std::shared_ptr<DiagNormalRsampleBackward>(new DiagNormalRsampleBackward(), torch::autograd::deleteNode);
    node->set_next_edges(torch::autograd::collect_next_edges(loc, log_scale));
    node->eps_ = e;
    node->log_scale_ = log_scale;
    node->scale_ = std::move(scale);
    node->D_ = loc.size(0);
    torch::autograd::set_history(z, node);
    torch::autograd::set_history(log_q, node);
  }
  return {z, log_q};
}

}  // namespace vguide::math
