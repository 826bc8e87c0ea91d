#pragma once
/// The default start of a fit: a Gaussian approximation taken from an optimisation
/// path, in the spirit of Pathfinder (Zhang, Carpenter, Gelman & Vehtari, "Pathfinder:
/// Parallel quasi-Newton variational inference", JMLR 2022, arXiv:2108.03782).
///
/// L-BFGS climbs log p(z) + log|det J(z)| in the registry's flat unconstrained space
/// from Stan's start, uniform(-radius, radius) in every coordinate. At each point of
/// its path the L-BFGS inverse-Hessian estimate H (the last `history` steps applied to
/// γ I) gives a Gaussian N(x + H ∇log p(x), H); its ELBO is estimated with
/// `elbo_draws` draws, and the best one is the start. Not blindly the end of the
/// path: a hierarchical model's mode can be degenerate (a funnel's neck), while the
/// ELBO prefers the approximation that holds the mass.
///
/// Up to `laplace_limit` dimensions the end of the path also gets the Laplace
/// approximation (the exact Hessian, D backward passes), which competes on the same ELBO: the L-BFGS memory sees a few
/// directions only, and on a ridge its H can be far too narrow.
///
/// Above `dense_limit` latent dimensions no D × D matrix is formed: each point's
/// Gaussian has the diagonal of H (from its compact form, O(history² D)) as variances.
///
/// Example: auto start = vguide::pathfinder(model, guide->registry(), {}, generator);
///          guide->initialize(start.location, start.scale);
#include <ATen/core/Generator.h>
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <string>

#include "vguide/export.hpp"
#include "vguide/model.hpp"
#include "vguide/registry.hpp"

namespace vguide {

struct PathfinderOptions {
  int64_t max_iterations = 1000;  ///< L-BFGS iterations (Stan's pathfinder default)
  int64_t history = 6;            ///< L-BFGS memory (Stan's history_size)
  int64_t elbo_draws = 32;        ///< draws per ELBO estimate along the path
  int64_t starts = 10;            ///< uniform starts tried before giving up
  double radius = 2.0;            ///< the uniform start's half-width
  int64_t dense_limit = 1000;     ///< largest D with a full-rank scale
  int64_t laplace_limit = 200;    ///< largest D whose end point also gets a Laplace candidate
};

struct PathfinderResult {
  at::Tensor location;  ///< (D,) float64: the chosen approximation's mean
  at::Tensor scale;     ///< (D, D) lower-triangular factor of its covariance, or (D,) sds above dense_limit
  double elbo = 0.0;    ///< its ELBO estimate (NaN if none was finite)
  int64_t iterations = 0;  ///< L-BFGS iterations of the successful start
  int64_t point = 0;       ///< the chosen point of the path (0: the start)
  int64_t starts = 0;      ///< starts tried
  std::string stopped;     ///< why L-BFGS stopped
  bool laplace = false;    ///< the chosen approximation is the Laplace one at the path's end
};

/// @throw std::invalid_argument if options are out of range; std::runtime_error
///        "init: none of N uniform starts gave a finite log density and gradient
///        (last: ...)" when the model cannot be evaluated near any start.
VGUIDE_API PathfinderResult pathfinder(const Model& model, const LatentRegistry& registry,
                                       const PathfinderOptions& options, at::Generator& generator,
                                       at::ScalarType dtype = at::kDouble);

}  // namespace vguide
