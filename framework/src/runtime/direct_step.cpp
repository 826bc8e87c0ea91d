#include "direct_step.hpp"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/core/DistributionsHelper.h>

#include <algorithm>
#include <cmath>
#include <mutex>

#include "vguide/location_scale.hpp"
#include "vguide/math/mvn_log_prob.hpp"
#include "vguide/runtime/objective.hpp"

namespace vguide::detail {

namespace {

constexpr double kHalfLog2Pi = 0.91893853320467274178;

// Reads a (D,) float or double tensor as doubles.
void read(const at::Tensor& t, std::vector<double>& out) {
  const int64_t n = t.numel();
  out.resize(static_cast<size_t>(n));
  if (t.scalar_type() == at::kDouble) {
    std::copy_n(t.data_ptr<double>(), n, out.begin());
  } else {
    const float* p = t.data_ptr<float>();
    for (int64_t i = 0; i < n; ++i) out[static_cast<size_t>(i)] = p[i];
  }
}

// ε ~ N(0, 1) as `eps.normal_(0, 1, generator)` draws it, as doubles. LibTorch fills
// a CPU tensor of fewer than 16 elements one element at a time with
// at::normal_distribution<double> from the generator, cast to the tensor's dtype;
// that is done here without the op's dispatch, which is about a third of a small
// model's step. Larger tensors take the op.
void draw_standard_normal(at::Tensor& eps, at::Generator& generator, std::vector<double>& out) {
  const int64_t n = eps.numel();
  if (n >= 16 || !eps.is_cpu() || generator.device().type() != at::kCPU) {
    eps.normal_(0, 1, generator);
    read(eps, out);
    return;
  }
  out.resize(static_cast<size_t>(n));
  auto* impl = at::check_generator<at::CPUGeneratorImpl>(generator);
  std::lock_guard<std::mutex> lock(generator.mutex());
  const bool single = eps.scalar_type() == at::kFloat;
  for (int64_t i = 0; i < n; ++i) {
    at::normal_distribution<double> normal(0.0, 1.0);
    const double e = normal(impl);
    out[static_cast<size_t>(i)] = single ? static_cast<double>(static_cast<float>(e)) : e;
  }
}

void write(const std::vector<double>& in, at::Tensor& t) {
  const int64_t n = t.numel();
  if (t.scalar_type() == at::kDouble) {
    std::copy_n(in.begin(), n, t.data_ptr<double>());
  } else {
    float* p = t.data_ptr<float>();
    for (int64_t i = 0; i < n; ++i) p[i] = static_cast<float>(in[static_cast<size_t>(i)]);
  }
}

// The parameter's grad, allocated once (autograd would allocate it on backward).
at::Tensor& grad_of(at::Tensor& parameter) {
  at::Tensor& g = parameter.mutable_grad();
  if (!g.defined() || !g.is_contiguous() || g.scalar_type() != parameter.scalar_type())
    g = at::zeros_like(parameter, at::MemoryFormat::Contiguous);
  return g;
}

double sigmoid(double z) {
  if (z >= 0) return 1.0 / (1.0 + std::exp(-z));
  const double e = std::exp(z);
  return e / (1.0 + e);
}

// at::softplus's derivative as LibTorch computes it (beta 1, threshold 20).
double softplus_derivative(double x) { return x > 20.0 ? 1.0 : sigmoid(x); }

bool same_tensor(const at::Tensor& a, const at::Tensor& b) {
  return a.defined() && b.defined() && a.unsafeGetTensorImpl() == b.unsafeGetTensorImpl();
}

}  // namespace

std::unique_ptr<DirectStep> DirectStep::make(const Model& model, Guide& guide, const ObjectiveOptions& objective,
                                             bool any_size, std::string& why) {
  Form form = Form::point;
  std::vector<at::Tensor> declared;
  if (const auto d = location_scale(guide)) {
    form = d->log_scale.defined() ? Form::diagonal : Form::point;
    declared = {d->loc};
    if (d->log_scale.defined()) declared.push_back(d->log_scale);
  } else if (const auto t = location_scale_tril(guide)) {
    form = Form::tril;
    declared = {t->loc, t->offdiag, t->diag_raw};
  } else if (const auto l = location_low_rank(guide)) {
    form = Form::low_rank;
    declared = {l->loc, l->cov_factor, l->diag_raw};
  } else {
    why = "the family '" + guide.family() + "' declares no location-scale structure";
    return nullptr;
  }
  if (objective.kind != Objective::elbo) {
    why = "the objective is " + to_string(objective.kind) + ", not the ELBO";
    return nullptr;
  }
  const auto* direct = dynamic_cast<const model::DirectLogJoint*>(&model);
  if (!direct) {
    why = "the model has no compiled log joint (a model of its own, not a .qvr or Stan program)";
    return nullptr;
  }
  const std::vector<at::Tensor> parameters = guide.parameters(/*recurse=*/true);
  bool all_declared = parameters.size() == declared.size();
  for (const auto& p : parameters)
    all_declared = all_declared && std::any_of(declared.begin(), declared.end(),
                                               [&](const at::Tensor& d) { return same_tensor(d, p); });
  if (!all_declared) {
    why = "the family '" + guide.family() + "' has parameters besides its declared location and scale";
    return nullptr;
  }
  const at::Tensor& loc = declared.front();
  const at::ScalarType dtype = loc.scalar_type();
  for (const auto& p : declared)
    if ((dtype != at::kFloat && dtype != at::kDouble) || p.scalar_type() != dtype || !p.device().is_cpu() ||
        !p.is_contiguous()) {
      why = "the guide's parameters are not contiguous float32 or float64 tensors on the CPU";
      return nullptr;
    }
  const int64_t S = objective.particles;
  std::unique_ptr<DirectStep> step(new DirectStep(model, *direct, guide, objective, any_size));
  step->stick_the_landing_ = objective.stick_the_landing;
  step->form_ = form;
  step->params_ = declared;
  step->D_ = guide.registry().total_unconstrained_dim();
  step->r_ = form == Form::low_rank ? declared[1].size(1) : 0;
  const std::vector<std::string> order = direct->direct_latents();
  const auto& sites = guide.registry().sites();
  if (order.size() != sites.size()) {
    why = "the guide's latents are not the model's";
    return nullptr;
  }
  for (const LatentSite& latent : sites) {
    Site site;
    site.offset = latent.offset;
    site.numel = latent.unconstrained_dim;
    const auto at = std::find(order.begin(), order.end(), latent.name);
    if (at == order.end() || latent.constrained_dim != latent.unconstrained_dim) {
      why = "the site '" + latent.name + "' is not a latent the model's compiled log joint takes";
      return nullptr;
    }
    site.tape = static_cast<int>(at - order.begin());
    const Constraint& c = latent.support;
    switch (c.kind()) {  // as biject_to maps each kind (framework/src/sdk/bijectors.cpp)
      case ConstraintKind::real: break;
      case ConstraintKind::positive: site.map = Site::Map::exp; break;
      case ConstraintKind::greater_than: site.map = Site::Map::exp, site.origin = c.lower(); break;
      case ConstraintKind::less_than: site.map = Site::Map::exp, site.origin = c.upper(), site.sign = -1.0; break;
      case ConstraintKind::interval:
      case ConstraintKind::unit_interval:
        site.map = Site::Map::interval, site.lower = c.lower(), site.width = c.upper() - c.lower();
        break;
      default:
        why = "the site '" + latent.name + "' has a bijector that is not element-wise (" + c.to_string() + ")";
        return nullptr;
    }
    step->sites_.push_back(site);
  }
  const int64_t D = step->D_, r = step->r_;
  const size_t SD = static_cast<size_t>(S * D);
  step->z_.resize(SD);
  step->dv_.resize(SD);
  step->dladj_.resize(SD);
  step->dz_.resize(SD);
  step->param_values_.resize(declared.size());
  step->param_grads_.resize(declared.size());
  for (size_t k = 0; k < declared.size(); ++k) {
    step->param_values_[k].resize(static_cast<size_t>(declared[k].numel()));
    step->param_grads_[k].resize(static_cast<size_t>(declared[k].numel()));
  }
  step->scale_.resize(static_cast<size_t>(D));
  if (form == Form::tril) {
    step->factor_.resize(static_cast<size_t>(D * D));  // L, row-major
    step->work_.resize(SD);                            // L⁻ᵀ ε per particle (sticking the landing)
  } else if (form == Form::low_rank) {
    step->factor_.resize(static_cast<size_t>(2 * D * r));  // M = diag(σ⁻²) W, then Q = Σ⁻¹ W
    step->work_.resize(static_cast<size_t>(D) + SD + 2 * static_cast<size_t>(r));  // diag Σ⁻¹, v, b, c
    step->small_.resize(static_cast<size_t>(r * r));          // the capacitance's Cholesky factor
    step->small_inverse_.resize(static_cast<size_t>(r * r));  // its inverse, I + Wᵀ M
  }
  step->log_p_.resize(static_cast<size_t>(S));
  step->values_.resize(order.size());
  step->grads_.resize(order.size());
  for (const Site& site : step->sites_) {
    step->values_[static_cast<size_t>(site.tape)].resize(static_cast<size_t>(S * site.numel));
    step->grads_[static_cast<size_t>(site.tape)].resize(static_cast<size_t>(S * site.numel));
  }
  for (size_t k = 0; k < order.size(); ++k) {  // the buffers never move after this
    step->value_ptrs_.push_back(step->values_[k].data());
    step->grad_ptrs_.push_back(step->grads_[k].data());
  }
  if (form != Form::point) step->eps_ = at::empty({S, D}, loc.options());
  if (form == Form::low_rank) step->eps_w_ = at::empty({S, r}, loc.options());
  // Checked now if the model's rows have a compiled log joint now, else at the first
  // step where they do.
  if (step->applies() && !step->agrees(why)) return nullptr;
  return step;
}

std::string DirectStep::why_not() const {
  // A blocker names why the rows have no compiled log joint; without one, the size
  // rule may be why.
  const std::string blocker = model_.direct_blocker();
  if (!blocker.empty()) return "the model's log joint is not compiled for these rows (" + blocker + ")";
  return any_size_ ? "the model's log joint is not compiled for these rows"
                   : "the model's log joint is not compiled for these rows, or is evaluated with LibTorch's kernels "
                     "at " + std::to_string(S_) + " particles";
}

bool DirectStep::agrees(std::string& why) {
  if (!checked_) {
    checked_ = true;
    try {
      disagrees_ = disagreement();
    } catch (const std::exception& e) {
      disagrees_ = std::string("the start-up check of the direct step failed: ") + e.what();
    }
  }
  why = disagrees_;
  return disagrees_.empty();
}

// One step both ways from the same state of the guide's stream, which is then put
// back: a declaration that does not describe the family's draws shows here.
std::string DirectStep::disagreement() {
  const Model& model = full_model_;
  const ObjectiveOptions& objective = objective_;
  // A draw whose ELBO is not finite proves nothing: the next draws are tried. If none
  // of them is finite (a start where the model rejects every draw), the step is taken
  // unchecked, as the path cannot be chosen by the luck of the start; the shipped
  // declarations are held to autograd by the tests.
  constexpr int kAttempts = 8;
  at::Generator& stream = guide_.generator();
  const at::Tensor start = stream.get_state();
  // A minibatch's rows come from the model's own stream: both ways see the same rows.
  const std::function<void()> rows_at_start = model_.rows_rewinder();
  const auto rewind_rows = [](const std::function<void()>& rewind) {
    if (rewind) rewind();
  };
  std::vector<at::Tensor>& params = params_;
  const bool single = params_.front().scalar_type() == at::kFloat;
  const double tol = single ? 1e-3 : 1e-8;
  const auto close = [tol](double a, double b) { return std::abs(a - b) <= tol * std::max({1.0, std::abs(a), std::abs(b)}); };
  std::string why;
  for (int attempt = 0; attempt < kAttempts; ++attempt) {
    const at::Tensor state = stream.get_state();
    const std::function<void()> rows_at_attempt = model_.rows_rewinder();
    bool finite = false;
    const double direct = run(finite);
    std::vector<at::Tensor> direct_grads;
    for (auto& p : params) direct_grads.push_back(p.grad().clone());
    stream.set_state(state);
    rewind_rows(rows_at_attempt);
    for (auto& p : params) p.mutable_grad().zero_();
    const at::Tensor value = vguide::objective(model, guide_, objective);
    (-value).backward();
    const double autograd = value.item<double>();
    if (!finite || !std::isfinite(autograd)) continue;  // the stream has moved past this draw
    std::string differs = close(direct, autograd) ? "" : "the ELBO";
    for (size_t k = 0; k < params.size() && differs.empty(); ++k) {
      const at::Tensor g = params[k].grad().to(at::kDouble), d = direct_grads[k].to(at::kDouble);
      if (close(0.0, (g - d).abs().max().item<double>() / std::max(1.0, g.abs().max().item<double>()))) continue;
      for (const auto& item : guide_.named_parameters(/*recurse=*/true))
        if (same_tensor(item.value(), params[k])) differs = "the gradient in '" + item.key() + "'";
    }
    why = differs.empty() ? ""
                          : "the family '" + guide_.family() +
                                "' does not draw as its declared location-scale structure says (at the start, " +
                                differs + " differs: the ELBO is " + std::to_string(autograd) + " by autograd and " +
                                std::to_string(direct) + " computed from the declaration" +
                                // The direct step computes in double; float32 autograd can
                                // lose more than the tolerance on a stiff start.
                                (single ? "; in float32 autograd's own rounding can differ as much on a stiff start, "
                                          "which a float64 fit tells apart)"
                                        : ")");
    break;
  }
  stream.set_state(start);
  rewind_rows(rows_at_start);
  for (auto& p : params) p.mutable_grad().zero_();
  return why;
}

double DirectStep::run(bool& finite) {
  const int64_t S = S_, D = D_;
  for (size_t k = 0; k < params_.size(); ++k) read(params_[k], param_values_[k]);
  const std::vector<double>& loc = param_values_[0];
  double neg_log_q = 0.0;  // -Σ log q(z) over the particles
  switch (form_) {
    case Form::point:
      for (int64_t s = 0; s < S; ++s) std::copy(loc.begin(), loc.end(), z_.begin() + s * D);
      break;
    case Form::diagonal: neg_log_q = draw_diagonal(); break;
    case Form::tril: neg_log_q = draw_tril(); break;
    case Form::low_rank: neg_log_q = draw_low_rank(); break;
  }
  // The constrained values, the bijectors' derivatives and their log-dets.
  double log_det = 0.0;
  for (const Site& site : sites_) {
    std::vector<double>& v = values_[static_cast<size_t>(site.tape)];
    for (int64_t s = 0; s < S; ++s)
      for (int64_t j = 0; j < site.numel; ++j) {
        const size_t i = static_cast<size_t>(s * D + site.offset + j);
        double& out = v[static_cast<size_t>(s * site.numel + j)];
        const double z = z_[i];
        switch (site.map) {
          case Site::Map::identity:
            out = z, dv_[i] = 1.0, dladj_[i] = 0.0;
            break;
          case Site::Map::exp: {
            const double e = std::exp(z);
            out = site.origin + site.sign * e, dv_[i] = site.sign * e, dladj_[i] = 1.0;
            log_det += z;
            break;
          }
          case Site::Map::interval: {
            const double p = sigmoid(z), a = std::abs(z);
            out = site.lower + site.width * p, dv_[i] = site.width * p * (1.0 - p), dladj_[i] = 1.0 - 2.0 * p;
            log_det += -a - 2.0 * std::log1p(std::exp(-a)) + std::log(site.width);
            break;
          }
        }
      }
  }
  for (auto& g : grads_) std::fill(g.begin(), g.end(), 0.0);
  model_.direct_log_joint(S, value_ptrs_, log_p_.data(), grad_ptrs_);
  // A point mass's log_prob is 0 with no Jacobian: its objective is the log joint of
  // the constrained point (MAP in the constrained space, as the delta family defines it).
  const bool point = form_ == Form::point;
  double elbo = point ? 0.0 : log_det + neg_log_q;
  for (int64_t s = 0; s < S; ++s) elbo += log_p_[static_cast<size_t>(s)];
  elbo /= static_cast<double>(S);

  // d ELBO / dz per particle, then into the parameters (gradients of -ELBO, the mean
  // over particles).
  for (const Site& site : sites_) {
    const std::vector<double>& g = grads_[static_cast<size_t>(site.tape)];
    for (int64_t s = 0; s < S; ++s)
      for (int64_t j = 0; j < site.numel; ++j) {
        const size_t i = static_cast<size_t>(s * D + site.offset + j);
        dz_[i] = g[static_cast<size_t>(s * site.numel + j)] * dv_[i] + (point ? 0.0 : dladj_[i]);
      }
  }
  for (auto& g : param_grads_) std::fill(g.begin(), g.end(), 0.0);
  switch (form_) {
    case Form::point: {
      const double inv_S = 1.0 / static_cast<double>(S);
      for (int64_t s = 0; s < S; ++s)
        for (int64_t d = 0; d < D; ++d) param_grads_[0][static_cast<size_t>(d)] -= dz_[static_cast<size_t>(s * D + d)] * inv_S;
      break;
    }
    case Form::diagonal: gradients_diagonal(); break;
    case Form::tril: gradients_tril(); break;
    case Form::low_rank: gradients_low_rank(); break;
  }
  double total = elbo;
  for (const auto& g : param_grads_)
    for (double x : g) total += x;
  finite = std::isfinite(total);
  for (size_t k = 0; k < params_.size(); ++k) write(param_grads_[k], grad_of(params_[k]));
  return elbo;
}

// z = loc + exp(log_scale) ⊙ ε; -log q = Σ (ε²/2 + log σ + log √(2π)).
double DirectStep::draw_diagonal() {
  const int64_t S = S_, D = D_;
  const std::vector<double>& loc = param_values_[0];
  const std::vector<double>& log_scale = param_values_[1];
  draw_standard_normal(eps_, guide_.generator(), eps_values_);  // as at::randn({S, D}, generator(), loc.options())
  for (int64_t d = 0; d < D; ++d) scale_[static_cast<size_t>(d)] = std::exp(log_scale[static_cast<size_t>(d)]);
  double neg_log_q = 0.0;
  for (int64_t s = 0; s < S; ++s)
    for (int64_t d = 0; d < D; ++d) {
      const size_t i = static_cast<size_t>(s * D + d);
      const double e = eps_values_[i];
      z_[i] = loc[static_cast<size_t>(d)] + scale_[static_cast<size_t>(d)] * e;
      neg_log_q += 0.5 * e * e;
    }
  for (double ls : log_scale) neg_log_q += static_cast<double>(S) * (ls + kHalfLog2Pi);
  return neg_log_q;
}

void DirectStep::gradients_diagonal() {
  const int64_t S = S_, D = D_;
  const double inv_S = 1.0 / static_cast<double>(S);
  std::vector<double>& grad_loc = param_grads_[0];
  std::vector<double>& grad_log_scale = param_grads_[1];
  for (int64_t s = 0; s < S; ++s)
    for (int64_t d = 0; d < D; ++d) {
      const size_t i = static_cast<size_t>(s * D + d), k = static_cast<size_t>(d);
      double dz = dz_[i];
      // Sticking the landing: log q's parameters held, its z-derivative -(z - loc)/σ².
      if (stick_the_landing_) dz += eps_values_[i] / scale_[k];
      grad_loc[k] -= dz * inv_S;
      grad_log_scale[k] -= dz * scale_[k] * eps_values_[i] * inv_S;
    }
  // The entropy's own gradient in log σ (held under sticking the landing).
  if (!stick_the_landing_)
    for (double& g : grad_log_scale) g -= 1.0;
}

// z = loc + L ε with L = tril(offdiag, -1) + diag(softplus(diag_raw));
// -log q = Σ (ε²/2 + log √(2π)) + Σ log L_ii per particle.
double DirectStep::draw_tril() {
  const int64_t S = S_, D = D_;
  const std::vector<double>& loc = param_values_[0];
  const std::vector<double>& offdiag = param_values_[1];
  const std::vector<double>& diag_raw = param_values_[2];
  draw_standard_normal(eps_, guide_.generator(), eps_values_);
  double log_diag = 0.0;
  for (int64_t i = 0; i < D; ++i) {
    for (int64_t j = 0; j < i; ++j) factor_[static_cast<size_t>(i * D + j)] = offdiag[static_cast<size_t>(i * D + j)];
    const double l = math::softplus(diag_raw[static_cast<size_t>(i)]);
    factor_[static_cast<size_t>(i * D + i)] = scale_[static_cast<size_t>(i)] = l;
    log_diag += std::log(l);
  }
  double neg_log_q = static_cast<double>(S) * (log_diag + static_cast<double>(D) * kHalfLog2Pi);
  for (int64_t s = 0; s < S; ++s) {
    const double* e = eps_values_.data() + s * D;
    for (int64_t i = 0; i < D; ++i) {
      const double* row = factor_.data() + i * D;
      double z = loc[static_cast<size_t>(i)];
      for (int64_t j = 0; j <= i; ++j) z += row[j] * e[j];
      z_[static_cast<size_t>(s * D + i)] = z;
      neg_log_q += 0.5 * e[i] * e[i];
    }
  }
  return neg_log_q;
}

void DirectStep::gradients_tril() {
  const int64_t S = S_, D = D_;
  const double inv_S = 1.0 / static_cast<double>(S);
  if (stick_the_landing_) {
    // log q's z-derivative with its parameters held is -Σ⁻¹(z - loc) = -L⁻ᵀ ε: add
    // L⁻ᵀ ε, by back substitution on Lᵀ.
    for (int64_t s = 0; s < S; ++s) {
      const double* e = eps_values_.data() + s * D;
      double* x = work_.data() + s * D;
      for (int64_t i = D; i-- > 0;) {
        double v = e[i];
        for (int64_t j = i + 1; j < D; ++j) v -= factor_[static_cast<size_t>(j * D + i)] * x[j];
        x[i] = v / factor_[static_cast<size_t>(i * D + i)];
      }
      for (int64_t i = 0; i < D; ++i) dz_[static_cast<size_t>(s * D + i)] += x[i];
    }
  }
  std::vector<double>& grad_loc = param_grads_[0];
  std::vector<double>& grad_offdiag = param_grads_[1];
  std::vector<double>& grad_diag_raw = param_grads_[2];
  for (int64_t s = 0; s < S; ++s) {
    const double* e = eps_values_.data() + s * D;
    const double* g = dz_.data() + s * D;
    for (int64_t i = 0; i < D; ++i) {
      grad_loc[static_cast<size_t>(i)] -= g[i] * inv_S;
      double* row = grad_offdiag.data() + i * D;
      for (int64_t j = 0; j < i; ++j) row[j] -= g[i] * e[j] * inv_S;
      row[i] -= g[i] * e[i] * inv_S;  // L_ii's, moved to diag_raw below
    }
  }
  const std::vector<double>& diag_raw = param_values_[2];
  for (int64_t i = 0; i < D; ++i) {
    double& g_ii = grad_offdiag[static_cast<size_t>(i * D + i)];
    // The entropy's own gradient in L_ii, 1 / L_ii (held under sticking the landing).
    const double g = g_ii - (stick_the_landing_ ? 0.0 : 1.0 / scale_[static_cast<size_t>(i)]);
    grad_diag_raw[static_cast<size_t>(i)] = g * softplus_derivative(diag_raw[static_cast<size_t>(i)]);
    g_ii = 0.0;  // offdiag's diagonal is not read
  }
}

// z = loc + W ε_w + σ ⊙ ε_d with σ = softplus(diag_raw), Σ = W Wᵀ + diag(σ²). With
// u = z - loc, v = Σ⁻¹ u by Woodbury (the capacitance I + Wᵀ diag(σ⁻²) W is r × r):
// -log q = uᵀv/2 + log|Σ|/2 + D log √(2π), log|Σ| = log|I + Wᵀ diag(σ⁻²) W| + Σ log σ².
double DirectStep::draw_low_rank() {
  const int64_t S = S_, D = D_, r = r_;
  const std::vector<double>& loc = param_values_[0];
  const std::vector<double>& W = param_values_[1];
  const std::vector<double>& diag_raw = param_values_[2];
  draw_standard_normal(eps_w_, guide_.generator(), eps_w_values_);  // the family draws ε_w first, then ε_d
  draw_standard_normal(eps_, guide_.generator(), eps_values_);
  double log_det_sigma = 0.0;
  for (int64_t i = 0; i < D; ++i) {
    scale_[static_cast<size_t>(i)] = math::softplus(diag_raw[static_cast<size_t>(i)]);
    log_det_sigma += 2.0 * std::log(scale_[static_cast<size_t>(i)]);
  }
  double* M = factor_.data();
  double* Q = factor_.data() + D * r;
  double* diag_inverse = work_.data();
  double* V = work_.data() + D;
  double* b = V + S * D;
  double* c = b + r;
  for (int64_t i = 0; i < D; ++i) {
    const double inv_var = 1.0 / (scale_[static_cast<size_t>(i)] * scale_[static_cast<size_t>(i)]);
    for (int64_t k = 0; k < r; ++k) M[i * r + k] = inv_var * W[static_cast<size_t>(i * r + k)];
  }
  // The capacitance C = I + Wᵀ M, its Cholesky factor (small_) and its inverse.
  double* chol = small_.data();
  double* inverse = small_inverse_.data();
  for (int64_t k = 0; k < r; ++k)
    for (int64_t l = 0; l <= k; ++l) {
      double sum = k == l ? 1.0 : 0.0;
      for (int64_t i = 0; i < D; ++i) sum += W[static_cast<size_t>(i * r + k)] * M[i * r + l];
      for (int64_t m = 0; m < l; ++m) sum -= chol[k * r + m] * chol[l * r + m];
      chol[k * r + l] = k == l ? std::sqrt(sum) : sum / chol[l * r + l];
    }
  double log_det_capacitance = 0.0;
  for (int64_t k = 0; k < r; ++k) log_det_capacitance += 2.0 * std::log(chol[k * r + k]);
  const auto solve = [&](const double* rhs, double* out) {  // C out = rhs
    for (int64_t k = 0; k < r; ++k) {
      double v = rhs[k];
      for (int64_t m = 0; m < k; ++m) v -= chol[k * r + m] * out[m];
      out[k] = v / chol[k * r + k];
    }
    for (int64_t k = r; k-- > 0;) {
      double v = out[k];
      for (int64_t m = k + 1; m < r; ++m) v -= chol[m * r + k] * out[m];
      out[k] = v / chol[k * r + k];
    }
  };
  for (int64_t k = 0; k < r; ++k) {
    for (int64_t l = 0; l < r; ++l) b[l] = k == l ? 1.0 : 0.0;
    solve(b, c);
    for (int64_t l = 0; l < r; ++l) inverse[l * r + k] = c[l];
  }
  // Q = Σ⁻¹ W = M C⁻¹, and diag Σ⁻¹ = σ⁻² - rows of Q ⋅ rows of M.
  for (int64_t i = 0; i < D; ++i) {
    const double inv_var = 1.0 / (scale_[static_cast<size_t>(i)] * scale_[static_cast<size_t>(i)]);
    double d = inv_var;
    for (int64_t k = 0; k < r; ++k) {
      double q = 0.0;
      for (int64_t l = 0; l < r; ++l) q += M[i * r + l] * inverse[l * r + k];
      Q[i * r + k] = q;
      d -= q * M[i * r + k];
    }
    diag_inverse[i] = d;
  }
  double neg_log_q = static_cast<double>(S) * (0.5 * (log_det_capacitance + log_det_sigma) + static_cast<double>(D) * kHalfLog2Pi);
  for (int64_t s = 0; s < S; ++s) {
    const double* ew = eps_w_values_.data() + s * r;
    const double* ed = eps_values_.data() + s * D;
    double* z = z_.data() + s * D;
    double* v = V + s * D;
    for (int64_t k = 0; k < r; ++k) b[k] = 0.0;
    for (int64_t i = 0; i < D; ++i) {
      double u = scale_[static_cast<size_t>(i)] * ed[i];
      for (int64_t k = 0; k < r; ++k) u += W[static_cast<size_t>(i * r + k)] * ew[k];
      z[i] = loc[static_cast<size_t>(i)] + u;
      v[i] = u / (scale_[static_cast<size_t>(i)] * scale_[static_cast<size_t>(i)]);  // σ⁻² u, then less M c
      for (int64_t k = 0; k < r; ++k) b[k] += W[static_cast<size_t>(i * r + k)] * v[i];
    }
    for (int64_t k = 0; k < r; ++k) {
      double ck = 0.0;
      for (int64_t l = 0; l < r; ++l) ck += inverse[k * r + l] * b[l];
      c[k] = ck;
    }
    for (int64_t i = 0; i < D; ++i) {
      for (int64_t k = 0; k < r; ++k) v[i] -= M[i * r + k] * c[k];
      neg_log_q += 0.5 * (z[i] - loc[static_cast<size_t>(i)]) * v[i];
    }
  }
  return neg_log_q;
}

// With f = log q(z(θ); θ) per particle: df/dloc = 0, df/dW = -v ε_wᵀ + v vᵀ W - Σ⁻¹ W,
// df/dσ = -v ⊙ ε_d + σ ⊙ v² - σ ⊙ diag Σ⁻¹. Sticking the landing keeps only the path
// through z, -v ε_wᵀ and -v ⊙ ε_d (and -v for loc).
void DirectStep::gradients_low_rank() {
  const int64_t S = S_, D = D_, r = r_;
  const double inv_S = 1.0 / static_cast<double>(S);
  const bool full = !stick_the_landing_;
  const std::vector<double>& W = param_values_[1];
  const std::vector<double>& diag_raw = param_values_[2];
  const double* Q = factor_.data() + D * r;
  const double* diag_inverse = work_.data();
  const double* V = work_.data() + D;
  double* vW = work_.data() + D + S * D;  // vᵀW, r wide, in b's slot (free after the draw)
  std::vector<double>& grad_loc = param_grads_[0];
  std::vector<double>& grad_W = param_grads_[1];
  std::vector<double>& grad_raw = param_grads_[2];  // in σ until the end
  for (int64_t s = 0; s < S; ++s) {
    const double* ew = eps_w_values_.data() + s * r;
    const double* ed = eps_values_.data() + s * D;
    const double* g = dz_.data() + s * D;
    const double* v = V + s * D;
    for (int64_t k = 0; k < r; ++k) {
      double sum = 0.0;
      for (int64_t i = 0; i < D; ++i) sum += v[i] * W[static_cast<size_t>(i * r + k)];
      vW[k] = sum;
    }
    for (int64_t i = 0; i < D; ++i) {
      const double h = g[i] + v[i];  // the path through z of log p - log q
      grad_loc[static_cast<size_t>(i)] -= (full ? g[i] : h) * inv_S;
      for (int64_t k = 0; k < r; ++k)
        grad_W[static_cast<size_t>(i * r + k)] -= (h * ew[k] - (full ? v[i] * vW[k] : 0.0)) * inv_S;
      grad_raw[static_cast<size_t>(i)] -=
          (h * ed[i] - (full ? scale_[static_cast<size_t>(i)] * v[i] * v[i] : 0.0)) * inv_S;
    }
  }
  for (int64_t i = 0; i < D; ++i) {
    if (full) {
      for (int64_t k = 0; k < r; ++k) grad_W[static_cast<size_t>(i * r + k)] -= Q[i * r + k];
      grad_raw[static_cast<size_t>(i)] -= scale_[static_cast<size_t>(i)] * diag_inverse[i];
    }
    grad_raw[static_cast<size_t>(i)] *= softplus_derivative(diag_raw[static_cast<size_t>(i)]);
  }
}

}  // namespace vguide::detail
