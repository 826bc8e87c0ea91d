#include "vguide/runtime/init.hpp"

#include <ATen/ATen.h>

#include <cmath>
#include <sstream>
#include <stdexcept>

#include "vguide/log.hpp"

namespace vguide {

namespace {

at::Tensor uniform_flat(int64_t D, double radius, at::Generator& gen) {
  return at::rand({D}, gen, at::TensorOptions().dtype(at::kDouble)) * (2.0 * radius) - radius;
}

}  // namespace

at::Tensor initial_location(const Model& model, const LatentRegistry& registry, const InitOptions& options,
                            at::Generator& gen) {
  const int64_t D = registry.total_unconstrained_dim();
  switch (options.strategy) {
    case InitStrategy::guide_default: return at::Tensor();
    case InitStrategy::pathfinder: return initial_point(model, registry, options, gen).location;
    case InitStrategy::uniform:
      if (!(options.radius > 0.0) || !std::isfinite(options.radius))
        throw std::invalid_argument("init: uniform radius must be a positive number");
      return uniform_flat(D, options.radius, gen);
    case InitStrategy::median:
    case InitStrategy::mean:
    case InitStrategy::sample: {
      const PriorInit kind = options.strategy == InitStrategy::median ? PriorInit::median
                             : options.strategy == InitStrategy::mean ? PriorInit::mean
                                                                      : PriorInit::sample;
      SiteValues prior = model.prior_values(kind, gen);
      if (prior.empty())
        throw std::invalid_argument("init '" + to_string(options.strategy) + "': model '" + model.name() +
                                    "' cannot draw from its prior; use init default, uniform or value");
      SiteValues batched;
      for (const auto& site : registry.sites()) {
        auto it = prior.find(site.name);
        if (it == prior.end())
          throw std::invalid_argument("init: model '" + model.name() + "' gave no prior value for latent site '" +
                                      site.name + "'");
        batched[site.name] = it->second.to(at::kDouble).unsqueeze(0);
      }
      at::Tensor z = registry.unconstrain(batched, "init").first[0];
      // A prior median can sit on a boundary the bijector maps to infinity
      // (an Exponential's 0 after rounding): fall back to uniform there.
      at::Tensor bad = at::isfinite(z).logical_not();
      if (bad.any().item<bool>()) z = at::where(bad, uniform_flat(D, 2.0, gen), z);
      return z;
    }
    case InitStrategy::value: {
      at::Tensor z = uniform_flat(D, 2.0, gen);
      std::string defaulted;
      for (const auto& site : registry.sites()) {
        auto it = options.values.find(site.name);
        if (it == options.values.end()) {
          defaulted += (defaulted.empty() ? "" : ", ") + site.name;
          continue;
        }
        at::Tensor v = it->second.to(at::kDouble);
        if (v.sizes().vec() != site.shape)
          throw std::invalid_argument("init: value of '" + site.name + "' has shape " + shape_to_string(v.sizes().vec()) +
                                      ", but the site's shape is " + shape_to_string(site.shape));
        if (!site.support.check(v).all().item<bool>())
          throw std::invalid_argument("init: value of '" + site.name + "' is outside its support (" +
                                      site.support.to_string() + ")");
        at::Tensor u = site.bijector->inverse(v.unsqueeze(0)).reshape({-1});
        if (!at::isfinite(u).all().item<bool>())
          throw std::invalid_argument("init: value of '" + site.name + "' lies on the boundary of its support (" +
                                      site.support.to_string() + ")");
        z.narrow(0, site.offset, site.unconstrained_dim).copy_(u);
      }
      for (const auto& [name, value] : options.values) {
        bool known = false;
        for (const auto& site : registry.sites()) known = known || site.name == name;
        if (!known) throw std::invalid_argument("init: '" + name + "' is not a latent site of model '" + model.name() + "'");
      }
      if (!defaulted.empty()) log_info("init: no value given for " + defaulted + "; drawn uniformly in (-2, 2)");
      return z;
    }
  }
  return at::Tensor();
}

InitialPoint initial_point(const Model& model, const LatentRegistry& registry, const InitOptions& options,
                           at::Generator& generator, at::ScalarType dtype) {
  if (options.given.location.defined()) return options.given;
  if (options.strategy != InitStrategy::pathfinder) return {initial_location(model, registry, options, generator), {}, ""};
  PathfinderOptions pf = options.pathfinder;
  pf.radius = options.radius;
  const PathfinderResult r = pathfinder(model, registry, pf, generator, dtype);
  std::ostringstream detail;
  detail << "L-BFGS " << r.iterations << " iterations (" << r.stopped << "), " << (r.laplace ? "Laplace at point " : "point ")
         << r.point << ", ELBO " << r.elbo;
  if (r.starts > 1) detail << ", start " << r.starts;
  return {r.location, r.scale, detail.str()};
}

InitialPoint initialize(Guide& guide, const Model& model, const InitOptions& options, at::Generator& generator,
                        at::ScalarType dtype) {
  InitialPoint start = initial_point(model, guide.registry(), options, generator, dtype);
  if (!start.location.defined()) return start;
  try {
    guide.initialize(start.location, start.scale);
  } catch (const NoLocation& e) {
    if (options.strategy != InitStrategy::pathfinder) throw;
    log_info("init: " + std::string(e.what()) + "; it starts where the family puts it");
    return {};
  }
  return start;
}

InitStrategy parse_init_strategy(const std::string& name) {
  if (name == "pathfinder") return InitStrategy::pathfinder;
  if (name == "default") return InitStrategy::guide_default;
  if (name == "median") return InitStrategy::median;
  if (name == "mean") return InitStrategy::mean;
  if (name == "sample") return InitStrategy::sample;
  if (name == "uniform") return InitStrategy::uniform;
  if (name == "value") return InitStrategy::value;
  throw std::invalid_argument("unknown init strategy '" + name +
                              "'; valid: pathfinder, default, median, mean, sample, uniform, value");
}

std::string to_string(InitStrategy strategy) {
  switch (strategy) {
    case InitStrategy::pathfinder: return "pathfinder";
    case InitStrategy::guide_default: return "default";
    case InitStrategy::median: return "median";
    case InitStrategy::mean: return "mean";
    case InitStrategy::sample: return "sample";
    case InitStrategy::uniform: return "uniform";
    case InitStrategy::value: return "value";
  }
  return "default";
}

}  // namespace vguide
