#include "direct_step.hpp"

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>

#include "vguide/location_scale.hpp"
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

}  // namespace

std::unique_ptr<DirectStep> DirectStep::make(const Model& model, Guide& guide, const ObjectiveOptions& objective,
                                             bool any_size, std::string& why) {
  const std::optional<LocationScale> structure = location_scale(guide);
  if (!structure) {
    why = "the family '" + guide.family() + "' declares no location-scale structure";
    return nullptr;
  }
  if (objective.kind != Objective::elbo) {
    why = "the objective is " + to_string(objective.kind) + ", not the ELBO";
    return nullptr;
  }
  const auto* direct = dynamic_cast<const model::DirectLogJoint*>(&model);
  if (!direct) {
    why = "the model has no compiled log joint (a data-parallel fit's ranks, or a model of its own)";
    return nullptr;
  }
  const int64_t S = objective.particles;
  if (!direct->direct_applies(S, any_size)) {
    why = any_size ? "the model's log joint is not compiled for these rows"
                   : "the model's log joint is not compiled, or is evaluated with LibTorch's kernels at " +
                         std::to_string(S) + " particles";
    return nullptr;
  }
  const std::vector<at::Tensor> parameters = guide.parameters(/*recurse=*/true);
  const auto is_parameter = [&](const at::Tensor& t) {
    for (const auto& p : parameters)
      if (p.unsafeGetTensorImpl() == t.unsafeGetTensorImpl()) return true;
    return false;
  };
  const size_t declared = structure->log_scale.defined() ? 2 : 1;
  if (parameters.size() != declared || !is_parameter(structure->loc) ||
      (structure->log_scale.defined() && !is_parameter(structure->log_scale))) {
    why = "the family '" + guide.family() + "' has parameters besides its declared location and scale";
    return nullptr;
  }
  const at::ScalarType dtype = structure->loc.scalar_type();
  if ((dtype != at::kFloat && dtype != at::kDouble) || !structure->loc.device().is_cpu()) {
    why = "the guide's parameters are not float32 or float64 on the CPU";
    return nullptr;
  }
  std::unique_ptr<DirectStep> step(new DirectStep(*direct, guide, S, any_size));
  step->stick_the_landing_ = objective.stick_the_landing;
  step->loc_ = structure->loc;
  step->log_scale_ = structure->log_scale;
  step->D_ = guide.registry().total_unconstrained_dim();
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
  const size_t SD = static_cast<size_t>(S * step->D_);
  step->z_.resize(SD);
  step->dv_.resize(SD);
  step->dladj_.resize(SD);
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
  if (step->log_scale_.defined()) step->eps_ = at::empty({S, step->D_}, step->loc_.options());
  why = step->disagreement(model, objective);
  if (!why.empty()) return nullptr;
  return step;
}

// One step both ways from the same state of the guide's stream, which is then put
// back: a declaration that does not describe the family's draws shows here.
std::string DirectStep::disagreement(const Model& model, const ObjectiveOptions& objective) {
  at::Generator& stream = guide_.generator();
  const at::Tensor state = stream.get_state();
  std::vector<at::Tensor> params{loc_};
  if (log_scale_.defined()) params.push_back(log_scale_);
  bool finite = false;
  const double direct = run(finite);
  std::vector<at::Tensor> direct_grads;
  for (auto& p : params) direct_grads.push_back(p.grad().clone());
  stream.set_state(state);
  for (auto& p : params) p.mutable_grad().zero_();
  const at::Tensor value = vguide::objective(model, guide_, objective);
  (-value).backward();
  const double autograd = value.item<double>();
  stream.set_state(state);
  std::string why;
  const double tol = loc_.scalar_type() == at::kDouble ? 1e-8 : 1e-3;
  const auto close = [tol](double a, double b) { return std::abs(a - b) <= tol * std::max({1.0, std::abs(a), std::abs(b)}); };
  if (finite && std::isfinite(autograd)) {
    bool same = close(direct, autograd);
    for (size_t k = 0; k < params.size(); ++k) {
      const at::Tensor g = params[k].grad().to(at::kDouble), d = direct_grads[k].to(at::kDouble);
      same = same && close(0.0, (g - d).abs().max().item<double>() / std::max(1.0, g.abs().max().item<double>()));
    }
    if (!same)
      why = "the family '" + guide_.family() + "' does not draw as its declared location-scale structure says " +
            "(at the start, the ELBO is " + std::to_string(autograd) + " by autograd and " + std::to_string(direct) +
            " computed from the declaration)";
  }
  for (auto& p : params) p.mutable_grad().zero_();
  return why;
}

double DirectStep::run(bool& finite) {
  const int64_t S = S_, D = D_;
  const bool diagonal = log_scale_.defined();
  std::vector<double>& loc = loc_values_;
  std::vector<double>& log_scale = log_scale_values_;
  std::vector<double>& eps = eps_values_;
  std::vector<double>& scale = scale_;
  read(loc_, loc);
  // ε as the family's rsample draws it: at::randn({S, D}, generator(), loc.options()).
  if (diagonal) {
    read(log_scale_, log_scale);
    eps_.normal_(0, 1, guide_.generator());
    read(eps_, eps);
  }
  scale.assign(static_cast<size_t>(D), 0.0);
  double entropy = 0.0;  // -log q(z) summed over particles, but for the ε terms
  for (int64_t d = 0; d < D && diagonal; ++d) scale[static_cast<size_t>(d)] = std::exp(log_scale[static_cast<size_t>(d)]);
  for (int64_t s = 0; s < S; ++s)
    for (int64_t d = 0; d < D; ++d) {
      const size_t i = static_cast<size_t>(s * D + d);
      z_[i] = diagonal ? loc[static_cast<size_t>(d)] + scale[static_cast<size_t>(d)] * eps[i] : loc[static_cast<size_t>(d)];
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
  double elbo = diagonal ? log_det : 0.0;
  for (int64_t s = 0; s < S; ++s) elbo += log_p_[static_cast<size_t>(s)];
  // -log q = Σ (ε²/2 + log σ + log √(2π)) over particles and dims; a point mass's is 0.
  if (diagonal) {
    for (double e : eps) entropy += 0.5 * e * e;
    for (double ls : log_scale) entropy += S * (ls + kHalfLog2Pi);
  }
  elbo = (elbo + entropy) / static_cast<double>(S);

  // d(-ELBO)/dz per particle, then into loc and log_scale (the mean over particles).
  grad_loc_.assign(static_cast<size_t>(D), 0.0);
  grad_log_scale_.assign(static_cast<size_t>(D), 0.0);
  const double inv_S = 1.0 / static_cast<double>(S);
  for (const Site& site : sites_) {
    const std::vector<double>& g = grads_[static_cast<size_t>(site.tape)];
    for (int64_t s = 0; s < S; ++s)
      for (int64_t j = 0; j < site.numel; ++j) {
        const int64_t d = site.offset + j;
        const size_t i = static_cast<size_t>(s * D + d);
        double dz = g[static_cast<size_t>(s * site.numel + j)] * dv_[i] + (diagonal ? dladj_[i] : 0.0);
        // Sticking the landing: log q's parameters held, its z-derivative -(z - loc)/σ².
        if (diagonal && stick_the_landing_) dz += eps[i] / scale[static_cast<size_t>(d)];
        grad_loc_[static_cast<size_t>(d)] -= dz * inv_S;
        if (diagonal) grad_log_scale_[static_cast<size_t>(d)] -= dz * scale[static_cast<size_t>(d)] * eps[i] * inv_S;
      }
  }
  // The entropy's own gradient in log σ (held under sticking the landing).
  if (diagonal && !stick_the_landing_)
    for (double& g : grad_log_scale_) g -= 1.0;
  double total = elbo;
  for (double g : grad_loc_) total += g;
  for (double g : grad_log_scale_) total += g;
  finite = std::isfinite(total);
  write(grad_loc_, grad_of(loc_));
  if (diagonal) write(grad_log_scale_, grad_of(log_scale_));
  return elbo;
}

}  // namespace vguide::detail
