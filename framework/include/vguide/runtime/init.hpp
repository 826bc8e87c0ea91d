#pragma once
/// Initialisation strategies: where a guide's location (and scale) starts, for any
/// family that has one (Guide::initialize).
///
///   pathfinder  (the default) the best Gaussian along an L-BFGS path from Stan's
///            uniform(-2, 2) start (vguide/runtime/pathfinder.hpp): a location and
///            a scale; a family without a location keeps its own start
///   default  the family's own start (normal/mvn: 0; delta/laplace: 0 + N(0, 0.01))
///   median   each latent at the median of 15 draws of its prior given the earlier
///            latents' starts (Pyro's init_to_median)
///   mean     the prior mean given the earlier starts, the median where none exists
///   sample   one draw of the prior, in program order
///   uniform  Uniform(-radius, radius) in every unconstrained coordinate (Stan's
///            default, radius 2)
///   value    given constrained values per site (a JSON file as for data); sites not
///            given start as for `uniform`, as in Stan
///
/// Example: vguide::initialize(*guide, model, {vguide::InitStrategy::median}, gen);
#include <ATen/core/Generator.h>
#include <ATen/core/Tensor.h>

#include <string>

#include "vguide/export.hpp"
#include "vguide/runtime/pathfinder.hpp"
#include "vguide/guide.hpp"
#include "vguide/model.hpp"
#include "vguide/registry.hpp"

namespace vguide {

enum class InitStrategy { pathfinder, guide_default, median, mean, sample, uniform, value };

/// Where a guide starts: a location (D,) float64, and for pathfinder a scale ((D, D)
/// factor or (D,) sds; else undefined); both undefined for `default`.
struct InitialPoint {
  at::Tensor location;
  at::Tensor scale;
  std::string detail;  ///< pathfinder: "L-BFGS 23 iterations (objective converged), point 17, ELBO -39.1"
};

struct InitOptions {
  InitStrategy strategy = InitStrategy::pathfinder;
  double radius = 2.0;  ///< `uniform` and pathfinder's start
  SiteValues values{};  ///< `value`: site -> tensor of the site's shape, constrained
  PathfinderOptions pathfinder{};
  /// A start computed elsewhere (initial_point on another model: a data-parallel
  /// rank's start from the whole data); used as it is when its location is defined.
  InitialPoint given{};
};

/// The start of `strategy`, evaluating the model in `dtype`.
/// @throw as initial_location; std::runtime_error when pathfinder finds no start
///        with a finite log density.
VGUIDE_API InitialPoint initial_point(const Model& model, const LatentRegistry& registry, const InitOptions& options,
                                      at::Generator& generator, at::ScalarType dtype = at::kDouble);

/// The flat unconstrained starting point, shape (D,) float64; undefined for `default`.
/// @throw std::invalid_argument if the model cannot draw from its prior (median /
///        mean / sample), a given value has the wrong shape or lies outside its
///        site's support (naming the site), or radius is not positive.
VGUIDE_API at::Tensor initial_location(const Model& model, const LatentRegistry& registry, const InitOptions& options,
                                       at::Generator& generator);

/// initial_point, then guide.initialize (nothing for `default`). With pathfinder, a
/// family that has no location (Guide::initialize's NoLocation) keeps its own start.
/// Returns the point used (undefined location: the family's own).
VGUIDE_API InitialPoint initialize(Guide& guide, const Model& model, const InitOptions& options,
                                   at::Generator& generator, at::ScalarType dtype = at::kDouble);

/// "pathfinder" | "default" | "median" | "mean" | "sample" | "uniform" | "value".
/// @throw std::invalid_argument.
VGUIDE_API InitStrategy parse_init_strategy(const std::string& name);
VGUIDE_API std::string to_string(InitStrategy strategy);

}  // namespace vguide
