#pragma once
/// After the fit: draws from the guide in constrained space with every derived
/// (`let`) quantity of a program, their per-element summaries, and the final ELBO
/// with its Monte Carlo standard error.
///
/// Run these on the full data: a model set to minibatches would score draws on a
/// random subset (ProgramModel::set_minibatch(N, ...) restores full batches).
///
/// Example: auto draws = vguide::draw_posterior(model, *guide, 1000);
///          for (const auto& q : vguide::summarize(draws)) ... q.mean, q.q5 ...
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <string>
#include <vector>

#include "vguide/export.hpp"
#include "vguide/guide.hpp"
#include "vguide/model.hpp"

namespace vguide {

struct PosteriorQuantity {
  std::string name;
  std::vector<int64_t> shape;  ///< one draw's shape
  at::Tensor draws;            ///< (N, *shape), float64
  bool derived = false;        ///< a `let` value computed from each draw
};

struct PosteriorDraws {
  std::vector<PosteriorQuantity> quantities;  ///< latent sites, then derived values, in program order
  at::Tensor log_p;                           ///< (N,) float64: log joint of each draw
  at::Tensor log_g;                           ///< (N,) float64: log guide density of each draw
};

/// N exact draws (Guide::sample). For a `.qvr` model (model::ProgramModel) the
/// program's `let` values are computed from each draw and included; for a Stan
/// program (model::StanModel) the quantities are its parameters, transformed
/// parameters and generated quantities, in Stan's order.
/// @throw std::invalid_argument if N < 1.
VGUIDE_API PosteriorDraws draw_posterior(const Model& model, Guide& guide, int64_t num_draws);

struct QuantitySummary {
  std::string name;
  std::vector<int64_t> shape;
  bool derived = false;
  at::Tensor mean, sd, q5, q50, q95;  ///< each of `shape`, float64
};

/// Per element: mean, sd (N - 1 denominator), and the 5/50/95% quantiles (linear
/// interpolation between order statistics, R's type 7).
VGUIDE_API std::vector<QuantitySummary> summarize(const PosteriorDraws& draws);

struct ElboEstimate {
  double elbo = 0.0;     ///< mean of log p - log q over M fresh draws
  double se = 0.0;       ///< its Monte Carlo standard error, sd / sqrt(M)
  at::Tensor log_ratios; ///< (M,) float64, for PSIS
};

/// @throw std::invalid_argument if M < 2.
VGUIDE_API ElboEstimate estimate_elbo(const Model& model, Guide& guide, int64_t num_particles);

}  // namespace vguide
