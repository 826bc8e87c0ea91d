#pragma once
/// Initialisation strategies: where a guide's location starts, for any family that
/// has one (Guide::initialize).
///
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
#include "vguide/guide.hpp"
#include "vguide/model.hpp"
#include "vguide/registry.hpp"

namespace vguide {

enum class InitStrategy { guide_default, median, mean, sample, uniform, value };

struct InitOptions {
  InitStrategy strategy = InitStrategy::guide_default;
  double radius = 2.0;  ///< `uniform`
  SiteValues values{};  ///< `value`: site -> tensor of the site's shape, constrained
};

/// The flat unconstrained starting point, shape (D,) float64; undefined for `default`.
/// @throw std::invalid_argument if the model cannot draw from its prior (median /
///        mean / sample), a given value has the wrong shape or lies outside its
///        site's support (naming the site), or radius is not positive.
VGUIDE_API at::Tensor initial_location(const Model& model, const LatentRegistry& registry, const InitOptions& options,
                                       at::Generator& generator);

/// initial_location, then guide.initialize (nothing for `default`).
VGUIDE_API void initialize(Guide& guide, const Model& model, const InitOptions& options, at::Generator& generator);

/// "default" | "median" | "mean" | "sample" | "uniform" | "value". @throw std::invalid_argument.
VGUIDE_API InitStrategy parse_init_strategy(const std::string& name);
VGUIDE_API std::string to_string(InitStrategy strategy);

}  // namespace vguide
