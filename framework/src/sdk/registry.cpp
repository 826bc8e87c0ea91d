#include "vguide/registry.hpp"

#include <ATen/ATen.h>
#include <torch/csrc/autograd/function.h>
#include <torch/csrc/autograd/functions/utils.h>
#include <torch/csrc/autograd/autograd.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <set>
#include <sstream>
#include <stdexcept>

namespace vguide {
namespace {
int64_t numel_of(const std::vector<int64_t>& shape) {
  return std::accumulate(shape.begin(), shape.end(), int64_t{1}, std::multiplies<int64_t>());
}

std::string join(const std::vector<std::string>& names) {
  std::string out;
  for (const auto& n : names) out += (out.empty() ? "" : ", ") + n;
  return out.empty() ? "(none)" : out;
}

// Leading batch dims of `t`, whose trailing dims must equal `event`.
std::vector<int64_t> batch_shape_of(const at::Tensor& t, const std::vector<int64_t>& event, const char* function,
                                    const std::string& site, const char* what) {
  const int64_t nb = t.dim() - static_cast<int64_t>(event.size());
  bool ok = nb >= 0;
  for (size_t i = 0; ok && i < event.size(); ++i) ok = t.size(nb + static_cast<int64_t>(i)) == event[i];
  if (!ok) {
    std::ostringstream msg;
    msg << function << ": site '" << site << "' has shape " << shape_to_string(t.sizes().vec())
        << ", but its " << what << " shape is " << shape_to_string(event) << " (after any batch dims)";
    throw std::invalid_argument(msg.str());
  }
  return std::vector<int64_t>(t.sizes().begin(), t.sizes().begin() + nb);
}

std::vector<int64_t> concat(std::vector<int64_t> a, const std::vector<int64_t>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

// An elementwise bijector whose unconstrained shape is the site's own: applying it to
// the flat slice of several such sites equals applying it to each.
bool elementwise(const LatentSite& s) {
  return s.bijector->event_rank() == 0 && s.support.event_rank() == 0 && s.unconstrained_shape == s.shape;
}

// `t` with `shape`, without an op (or an autograd node) when it already has it.
at::Tensor reshaped(const at::Tensor& t, const std::vector<int64_t>& shape) {
  return t.sizes() == at::IntArrayRef(shape) ? t : t.reshape(shape);
}

// Sum log|det J| over the site dims a bijector did not reduce.
at::Tensor reduce_site_dims(const at::Tensor& ladj, const LatentSite& site) {
  const int64_t extra = static_cast<int64_t>(site.unconstrained_shape.size()) - site.bijector->event_rank();
  if (extra <= 0) return ladj;
  std::vector<int64_t> dims;
  for (int64_t i = 1; i <= extra; ++i) dims.push_back(-i);
  return ladj.sum(dims);
}
}  // namespace

LatentRegistry LatentRegistry::from_model(const Model& model, const std::vector<std::string>& observed_names) {
  const auto& sites = model.sites();
  std::set<std::string> site_names;
  for (const auto& s : sites)
    if (!site_names.insert(s.name).second)
      throw std::invalid_argument("LatentRegistry: site '" + s.name + "' appears twice in " + model.name());
  for (const auto& name : observed_names) {
    if (!site_names.count(name)) {
      std::vector<std::string> all(site_names.begin(), site_names.end());
      throw std::invalid_argument("LatentRegistry: observed name '" + name + "' is not a site of " + model.name() +
                                  " (sites: " + join(all) + ")");
    }
  }
  const std::set<std::string> observed(observed_names.begin(), observed_names.end());

  LatentRegistry reg;
  reg.observed_ = observed_names;
  for (const auto& info : sites) {
    if (observed.count(info.name)) continue;
    if (info.discrete) {
      throw std::invalid_argument("LatentRegistry: latent site '" + info.name +
                                  "' is discrete; these guides need continuous latents (observe it, or "
                                  "marginalise it out of the model)");
    }
    LatentSite site;
    site.name = info.name;
    site.shape = info.shape;
    site.support = info.support;
    site.is_plate = info.per_row;
    site.bijector = biject_to(info.support);
    try {
      site.unconstrained_shape = site.bijector->unconstrained_shape(info.shape);
    } catch (const std::invalid_argument& e) {
      throw std::invalid_argument("LatentRegistry: site '" + info.name + "': " + e.what());
    }
    site.constrained_dim = numel_of(site.shape);
    site.unconstrained_dim = numel_of(site.unconstrained_shape);
    site.offset = reg.total_dim_;
    reg.total_dim_ += site.unconstrained_dim;
    reg.sites_.push_back(std::move(site));
  }
  return reg;
}

std::vector<std::string> LatentRegistry::names() const {
  std::vector<std::string> out;
  out.reserve(sites_.size());
  for (const auto& s : sites_) out.push_back(s.name);
  return out;
}

bool LatentRegistry::contains(const std::string& name) const {
  return std::any_of(sites_.begin(), sites_.end(), [&](const LatentSite& s) { return s.name == name; });
}

const LatentSite& LatentRegistry::site(const std::string& name) const {
  for (const auto& s : sites_)
    if (s.name == name) return s;
  throw std::out_of_range("LatentRegistry: no latent site '" + name + "' (latent sites: " + join(names()) + ")");
}

void LatentRegistry::require_latents(const char* function) const {
  if (!sites_.empty()) return;
  throw std::invalid_argument(std::string(function) +
                              ": the model has no latent sites, so there is nothing to fit (observed: " +
                              join(observed_) + ")");
}

at::Tensor LatentRegistry::flatten_unconstrained(const SiteValues& per_site) const {
  if (sites_.empty()) throw std::invalid_argument("flatten_unconstrained: the registry has no latent sites");
  std::vector<at::Tensor> parts;
  parts.reserve(sites_.size());
  std::vector<int64_t> batch;
  for (size_t i = 0; i < sites_.size(); ++i) {
    const auto& s = sites_[i];
    auto it = per_site.find(s.name);
    if (it == per_site.end())
      throw std::invalid_argument("flatten_unconstrained: missing value for latent site '" + s.name + "'");
    auto b = batch_shape_of(it->second, s.unconstrained_shape, "flatten_unconstrained", s.name, "unconstrained");
    if (i == 0) {
      batch = b;
    } else if (b != batch) {
      throw std::invalid_argument("flatten_unconstrained: site '" + s.name + "' has batch shape " +
                                  shape_to_string(b) + ", but earlier sites have " + shape_to_string(batch));
    }
    parts.push_back(it->second.reshape(concat(batch, {s.unconstrained_dim})));
  }
  return parts.size() == 1 ? parts[0] : at::cat(parts, -1);
}

SiteValues LatentRegistry::unflatten_unconstrained(const at::Tensor& flat) const {
  if (flat.dim() < 1 || flat.size(-1) != total_dim_) {
    std::ostringstream msg;
    msg << "unflatten_unconstrained: expected a last dim of " << total_dim_ << " (the flat unconstrained size), got shape "
        << shape_to_string(flat.sizes().vec());
    throw std::invalid_argument(msg.str());
  }
  const std::vector<int64_t> batch(flat.sizes().begin(), flat.sizes().end() - 1);
  SiteValues out;
  for (const auto& s : sites_)
    out.emplace(s.name, flat.narrow(-1, s.offset, s.unconstrained_dim).reshape(concat(batch, s.unconstrained_shape)));
  return out;
}

namespace {

// The constrained values with LibTorch ops, one per run of sites: every support,
// every device and dtype.
std::pair<SiteValues, at::Tensor> constrain_with_ops(const std::vector<LatentSite>& sites, const at::Tensor& flat) {
  const std::vector<int64_t> batch(flat.sizes().begin(), flat.sizes().end() - 1);
  SiteValues values;
  at::Tensor ladj;
  const auto add = [&](const at::Tensor& l) { ladj = ladj.defined() ? ladj + l : l; };
  // Adjacent sites with the same elementwise support (positive, an interval, ...)
  // share one bijector call over their slice of z and one sum of its log|det J|;
  // real sites need neither (the identity has no Jacobian term). Ops per step grow
  // with the number of runs of constrained sites, not with the number of sites.
  struct Segment {
    size_t begin, end;  // sites [begin, end)
    int64_t width;
  };
  std::vector<Segment> segments;
  for (size_t i = 0; i < sites.size();) {
    const LatentSite& first = sites[i];
    size_t end = i + 1;
    if (elementwise(first) && first.support.kind() != ConstraintKind::real)
      while (end < sites.size() && elementwise(sites[end]) && sites[end].support == first.support) ++end;
    segments.push_back({i, end, sites[end - 1].offset + sites[end - 1].unconstrained_dim - first.offset});
    i = end;
  }
  // One split for all segments: its backward is one op, where a narrow per segment
  // would scatter each gradient into a zero (S, D) tensor and add them up.
  std::vector<int64_t> widths;
  for (const auto& g : segments) widths.push_back(g.width);
  const std::vector<at::Tensor> parts =
      segments.size() == 1 ? std::vector<at::Tensor>{flat} : flat.split_with_sizes(widths, -1);
  for (size_t g = 0; g < segments.size(); ++g) {
    const LatentSite& first = sites[segments[g].begin];
    if (segments[g].end == segments[g].begin + 1) {
      const at::Tensor z = reshaped(parts[g], concat(batch, first.unconstrained_shape));
      if (elementwise(first) && first.support.kind() == ConstraintKind::real) {
        values.emplace(first.name, z);
      } else {
        auto [v, l] = first.bijector->forward_and_log_det(z);
        add(reduce_site_dims(l, first));
        values.emplace(first.name, std::move(v));
      }
      continue;
    }
    auto [v, l] = first.bijector->forward_and_log_det(parts[g]);
    add(l.sum(-1));
    for (size_t k = segments[g].begin; k < segments[g].end; ++k) {
      const LatentSite& s = sites[k];
      values.emplace(s.name, reshaped(v.narrow(-1, s.offset - first.offset, s.unconstrained_dim), concat(batch, s.shape)));
    }
  }
  if (!ladj.defined()) ladj = at::zeros(batch, flat.options());
  return {std::move(values), ladj};
}


// ---- constrain as one autograd node --------------------------------------------
//
// For sites whose bijectors are elementwise and from the library's closed forms
// (identity, shifted exp, scaled sigmoid), constrain is one pass over z and one
// autograd node, where LibTorch ops cost a split, a reshape per site, the bijector's
// ops and the Jacobian sum, each with its backward.

enum class Map { identity, exp, sigmoid };

struct FusedSite {
  Map map = Map::identity;
  double origin = 0.0;  // exp: origin + sign * exp(z); sigmoid: origin + width * sigmoid(z)
  double factor = 1.0;  // sign (exp) or width (sigmoid)
  double log_width = 0.0;
  int64_t offset = 0, dim = 0;
};

bool fused_map(const LatentSite& s, FusedSite& f) {
  if (!elementwise(s)) return false;
  const Constraint& c = s.support;
  f.offset = s.offset;
  f.dim = s.unconstrained_dim;
  switch (c.kind()) {
    case ConstraintKind::real: f.map = Map::identity; return true;
    case ConstraintKind::positive: f.map = Map::exp; return true;
    case ConstraintKind::greater_than:
      f.map = Map::exp;
      f.origin = c.lower();
      return true;
    case ConstraintKind::less_than:
      f.map = Map::exp;
      f.origin = c.upper();
      f.factor = -1.0;
      return true;
    case ConstraintKind::interval:
    case ConstraintKind::unit_interval:
      f.map = Map::sigmoid;
      f.origin = c.lower();
      f.factor = c.upper() - c.lower();
      f.log_width = std::log(f.factor);
      return true;
    default: return false;
  }
}

bool fusable(const std::vector<LatentSite>& sites, const at::Tensor& flat) {
  if (!(flat.scalar_type() == at::kFloat || flat.scalar_type() == at::kDouble) || !flat.device().is_cpu()) return false;
  // One real site of its own shape is z itself: no op at all without the node.
  if (sites.size() == 1 && sites[0].support.kind() == ConstraintKind::real && elementwise(sites[0])) return false;
  FusedSite f;
  for (const auto& s : sites)
    if (!fused_map(s, f)) return false;
  return true;
}

using torch::autograd::variable_list;

class FusedConstrainBackward final : public torch::autograd::Node {
 public:
  variable_list apply(variable_list&& grads) override {
    variable_list out(1);
    if (!should_compute_output(0)) return out;
    if (at::GradMode::is_enabled()) {
      // A graph of the gradient is wanted (create_graph, e.g. a Hessian): the same
      // derivative as LibTorch ops of the input, so that it can be differentiated again.
      std::vector<at::Tensor> parts;
      const at::Tensor& g_ladj = grads.back();
      for (size_t k = 0; k < fused_.size(); ++k) {
        const FusedSite& f = fused_[k];
        const at::Tensor z = flat_.narrow(-1, f.offset, f.dim);
        at::Tensor part = at::zeros_like(z);
        at::Tensor s;
        if (f.map == Map::sigmoid) s = at::sigmoid(z);
        if (grads[k].defined()) {
          const at::Tensor gv = grads[k].reshape(z.sizes());
          switch (f.map) {
            case Map::identity: part = part + gv; break;
            case Map::exp: part = part + gv * (f.factor * at::exp(z)); break;
            case Map::sigmoid: part = part + gv * (f.factor * s * (1 - s)); break;
          }
        }
        if (g_ladj.defined()) {
          const at::Tensor gl = g_ladj.unsqueeze(-1);
          if (f.map == Map::exp) part = part + gl;
          if (f.map == Map::sigmoid) part = part + gl * (1 - 2 * s);
        }
        parts.push_back(part);
      }
      out[0] = at::cat(parts, -1);
      return out;
    }
    if (z_.scalar_type() == at::kDouble) out[0] = loops<double>(grads);
    else out[0] = loops<float>(grads);
    return out;
  }
  std::string name() const override { return "FusedConstrainBackward"; }
  void release_variables() override {
    z_ = at::Tensor();
    flat_ = at::Tensor();
  }

  std::vector<FusedSite> fused_;
  at::Tensor z_;     // the input's values, contiguous
  at::Tensor flat_;  // the input itself, for create_graph

 private:
  template <class T>
  at::Tensor loops(const variable_list& grads) const {
    const int64_t D = z_.size(-1), rows = D == 0 ? 0 : z_.numel() / D;
    const T* z = z_.data_ptr<T>();
    at::Tensor g = at::zeros(z_.sizes(), z_.options());
    T* gp = g.data_ptr<T>();
    const at::Tensor& g_ladj = grads.back();
    at::Tensor gl;
    const T* glp = nullptr;
    int64_t gl_stride = 0;
    if (g_ladj.defined()) {
      gl = g_ladj.reshape({rows});
      glp = gl.data_ptr<T>();
      gl_stride = gl.stride(0);
    }
    for (size_t k = 0; k < fused_.size(); ++k) {
      const FusedSite& f = fused_[k];
      const at::Tensor& gv = grads[k];
      at::Tensor gvr;
      const T* gvp = nullptr;
      int64_t rs = 0, cs = 0;
      if (gv.defined()) {
        gvr = gv.reshape({rows, f.dim});
        gvp = gvr.data_ptr<T>();
        rs = gvr.stride(0);
        cs = gvr.stride(1);
      }
      for (int64_t r = 0; r < rows; ++r) {
        const T l = glp ? glp[r * gl_stride] : T(0);
        for (int64_t j = 0; j < f.dim; ++j) {
          const int64_t i = r * D + f.offset + j;
          const T v = gvp ? gvp[r * rs + j * cs] : T(0);
          switch (f.map) {
            case Map::identity: gp[i] = v; break;
            case Map::exp: gp[i] = v * static_cast<T>(f.factor) * std::exp(z[i]) + l; break;  // ladj = z
            case Map::sigmoid: {
              const T s = T(1) / (T(1) + std::exp(-z[i]));
              gp[i] = v * static_cast<T>(f.factor) * s * (T(1) - s) + l * (T(1) - T(2) * s);
              break;
            }
          }
        }
      }
    }
    return g;
  }
};

template <class T>
void forward_loops(const std::vector<FusedSite>& fused, const at::Tensor& z_, std::vector<at::Tensor>& values,
                   at::Tensor& ladj) {
  const int64_t D = z_.size(-1), rows = D == 0 ? 0 : z_.numel() / D;
  const T* z = z_.data_ptr<T>();
  T* lp = ladj.data_ptr<T>();
  for (int64_t r = 0; r < rows; ++r) lp[r] = T(0);
  for (size_t k = 0; k < fused.size(); ++k) {
    const FusedSite& f = fused[k];
    T* vp = values[k].data_ptr<T>();
    const T origin = static_cast<T>(f.origin), factor = static_cast<T>(f.factor);
    for (int64_t r = 0; r < rows; ++r) {
      T l = 0;
      for (int64_t j = 0; j < f.dim; ++j) {
        const T x = z[r * D + f.offset + j];
        T& v = vp[r * f.dim + j];
        switch (f.map) {
          case Map::identity: v = x; break;
          case Map::exp:
            v = f.origin == 0.0 ? factor * std::exp(x) : origin + factor * std::exp(x);
            l += x;  // log|d/dz exp(z)| = z
            break;
          case Map::sigmoid: {
            const T s = T(1) / (T(1) + std::exp(-x));
            v = (f.origin == 0.0 && f.factor == 1.0) ? s : s * factor + origin;
            // log sigmoid(z) + log sigmoid(-z) + log width, stable: -|z| - 2 log1p(exp(-|z|)).
            const T a = std::abs(x);
            l += -a - T(2) * std::log1p(std::exp(-a)) + static_cast<T>(f.log_width);
            break;
          }
        }
      }
      lp[r] += l;
    }
  }
}

std::pair<SiteValues, at::Tensor> constrain_fused(const std::vector<LatentSite>& sites, const at::Tensor& flat) {
  const std::vector<int64_t> batch(flat.sizes().begin(), flat.sizes().end() - 1);
  std::vector<FusedSite> fused(sites.size());
  for (size_t k = 0; k < sites.size(); ++k) fused_map(sites[k], fused[k]);
  const at::Tensor z = flat.detach().contiguous();
  const at::TensorOptions options = flat.options().requires_grad(false);
  std::vector<at::Tensor> values;
  values.reserve(sites.size());
  for (const auto& s : sites) values.push_back(at::empty(concat(batch, s.shape), options));
  at::Tensor ladj = at::empty(batch, options);
  if (z.scalar_type() == at::kDouble) forward_loops<double>(fused, z, values, ladj);
  else forward_loops<float>(fused, z, values, ladj);

  if (at::GradMode::is_enabled() && flat.requires_grad()) {
    auto node = std::shared_ptr<FusedConstrainBackward>(new FusedConstrainBackward(), torch::autograd::deleteNode);
    node->set_next_edges(torch::autograd::collect_next_edges(flat));
    node->fused_ = std::move(fused);
    node->z_ = z;
    node->flat_ = flat;
    for (auto& v : values) torch::autograd::set_history(v, node);
    torch::autograd::set_history(ladj, node);
  }
  SiteValues out;
  for (size_t k = 0; k < sites.size(); ++k) out.emplace(sites[k].name, std::move(values[k]));
  return {std::move(out), ladj};
}

}  // namespace

std::pair<SiteValues, at::Tensor> LatentRegistry::constrain(const at::Tensor& flat) const {
  if (flat.dim() < 1 || flat.size(-1) != total_dim_) {
    std::ostringstream msg;
    msg << "constrain: expected a last dim of " << total_dim_ << " (the flat unconstrained size), got shape "
        << shape_to_string(flat.sizes().vec());
    throw std::invalid_argument(msg.str());
  }
  if (fusable(sites_, flat)) return constrain_fused(sites_, flat);
  return constrain_with_ops(sites_, flat);
}

std::pair<at::Tensor, at::Tensor> LatentRegistry::unconstrain(const SiteValues& values, const char* function) const {
  SiteValues unconstrained;
  at::Tensor ladj;
  std::vector<int64_t> batch;
  const std::string* first = nullptr;
  for (const auto& s : sites_) {
    auto it = values.find(s.name);
    if (it == values.end())
      throw std::invalid_argument(std::string(function) + ": missing value for latent site '" + s.name + "'");
    auto b = batch_shape_of(it->second, s.shape, function, s.name, "site");
    if (first == nullptr) {
      batch = std::move(b);
      first = &s.name;
    } else if (b != batch) {
      throw std::invalid_argument(std::string(function) + ": site '" + s.name + "' has batch shape " +
                                  shape_to_string(b) + ", but site '" + *first + "' has " + shape_to_string(batch));
    }
    if (elementwise(s) && s.support.kind() == ConstraintKind::real) {
      unconstrained.emplace(s.name, it->second);  // the identity: no op, no Jacobian term
      continue;
    }
    auto [z, l] = s.bijector->inverse_and_log_det(it->second);
    l = reduce_site_dims(l, s);
    ladj = ladj.defined() ? ladj + l : l;
    unconstrained.emplace(s.name, std::move(z));
  }
  if (!ladj.defined() && !sites_.empty()) ladj = at::zeros(batch, values.at(sites_.front().name).options());
  return {flatten_unconstrained(unconstrained), ladj};
}

}  // namespace vguide
