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
  SiteValues unconstrained = unflatten_unconstrained(flat);
  SiteValues values;
  at::Tensor ladj;
  for (const auto& s : sites_) {
    auto [v, l] = s.bijector->forward_and_log_det(unconstrained.at(s.name));
    l = reduce_site_dims(l, s);
    ladj = ladj.defined() ? ladj + l : l;
    values.emplace(s.name, std::move(v));
  }
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
    auto [z, l] = s.bijector->inverse_and_log_det(it->second);
    l = reduce_site_dims(l, s);
    ladj = ladj.defined() ? ladj + l : l;
    unconstrained.emplace(s.name, std::move(z));
  }
  return {flatten_unconstrained(unconstrained), ladj};
}

}  // namespace vguide
