#pragma once
/// The latent sites of a model given the observed names, and the flat unconstrained
/// vector every joint guide works on: site k occupies [offset, offset + dim) of it.
///
/// Example: auto reg = vguide::LatentRegistry::from_model(model, {"y"});
///          at::Tensor flat = reg.flatten_unconstrained(per_site);  // (*batch, D)
#include <ATen/core/Tensor.h>

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "vguide/bijector.hpp"
#include "vguide/export.hpp"
#include "vguide/model.hpp"

namespace vguide {

struct LatentSite {
  std::string name;
  std::vector<int64_t> shape;
  std::vector<int64_t> unconstrained_shape;
  int64_t constrained_dim = 0;    ///< numel of shape
  int64_t unconstrained_dim = 0;  ///< numel of unconstrained_shape
  bool is_plate = false;          ///< one value per data row
  Constraint support;
  std::shared_ptr<const Bijector> bijector;
  int64_t offset = 0;  ///< start in the flat unconstrained vector
};

class VGUIDE_API LatentRegistry {
 public:
  LatentRegistry() = default;

  /// Every site of `model` not named in `observed_names`, in model order.
  /// @throw std::invalid_argument for an observed name that is not a site of the
  ///        model, and for a discrete latent site (both name the site).
  static LatentRegistry from_model(const Model& model, const std::vector<std::string>& observed_names);

  const std::vector<LatentSite>& sites() const noexcept { return sites_; }
  std::vector<std::string> names() const;
  /// @throw std::out_of_range naming the site if there is none of that name.
  const LatentSite& site(const std::string& name) const;
  bool contains(const std::string& name) const;
  bool empty() const noexcept { return sites_.empty(); }
  int64_t total_unconstrained_dim() const noexcept { return total_dim_; }
  const std::vector<std::string>& observed_names() const noexcept { return observed_; }

  /// @throw std::invalid_argument "<function>: the model has no latent sites ..." if empty.
  void require_latents(const char* function) const;

  /// Per-site unconstrained tensors (*batch, *unconstrained_shape) -> (*batch, D).
  at::Tensor flatten_unconstrained(const SiteValues& per_site) const;
  /// (*batch, D) -> per-site (*batch, *unconstrained_shape).
  SiteValues unflatten_unconstrained(const at::Tensor& flat) const;

  /// Flat unconstrained (*batch, D) -> constrained values per site and the summed
  /// log|det J| of all bijectors, shape (*batch).
  std::pair<SiteValues, at::Tensor> constrain(const at::Tensor& flat) const;
  /// Constrained values per site (*batch, *shape) -> flat (*batch, D) and the summed
  /// log|det J| of forward at that point, shape (*batch). Sites not in the registry
  /// are ignored. @throw std::invalid_argument naming a missing latent site.
  std::pair<at::Tensor, at::Tensor> unconstrain(const SiteValues& values, const char* function = "unconstrain") const;

 private:
  std::vector<LatentSite> sites_;
  std::vector<std::string> observed_;
  int64_t total_dim_ = 0;
};

}  // namespace vguide
