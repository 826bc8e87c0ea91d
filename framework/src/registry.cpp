#include "vguide/registry.hpp"

#include <ATen/ATen.h>

#include <algorithm>
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

std::pair<SiteValues, at::Tensor> LatentRegistry::constrain(const at::Tensor& flat) const {
  if (flat.dim() < 1 || flat.size(-1) != total_dim_) {
    std::ostringstream msg;
    msg << "constrain: expected a last dim of " << total_dim_ << " (the flat unconstrained size), got shape "
        << shape_to_string(flat.sizes().vec());
    throw std::invalid_argument(msg.str());
  }
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
  for (size_t i = 0; i < sites_.size();) {
    const LatentSite& first = sites_[i];
    size_t end = i + 1;
    if (elementwise(first) && first.support.kind() != ConstraintKind::real)
      while (end < sites_.size() && elementwise(sites_[end]) && sites_[end].support == first.support) ++end;
    segments.push_back({i, end, sites_[end - 1].offset + sites_[end - 1].unconstrained_dim - first.offset});
    i = end;
  }
  // One split for all segments: its backward is one op, where a narrow per segment
  // would scatter each gradient into a zero (S, D) tensor and add them up.
  std::vector<int64_t> widths;
  for (const auto& g : segments) widths.push_back(g.width);
  const std::vector<at::Tensor> parts =
      segments.size() == 1 ? std::vector<at::Tensor>{flat} : flat.split_with_sizes(widths, -1);
  for (size_t g = 0; g < segments.size(); ++g) {
    const LatentSite& first = sites_[segments[g].begin];
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
      const LatentSite& s = sites_[k];
      values.emplace(s.name, reshaped(v.narrow(-1, s.offset - first.offset, s.unconstrained_dim), concat(batch, s.shape)));
    }
  }
  if (!ladj.defined()) ladj = at::zeros(batch, flat.options());
  return {std::move(values), ladj};
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
