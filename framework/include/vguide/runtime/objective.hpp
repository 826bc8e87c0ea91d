#pragma once
/// Training objectives: each a function of (model, guide, particles) that returns a
/// differentiable scalar to maximise.
///
/// - ELBO with S vectorised particles: the guide's own estimator (Guide::elbo; the
///   mixture's is stratified), the mean over S draws of log p(x, z) - log q(z).
/// - Sticking the landing (Roeder, Wu & Duvenaud 2017): the same value, with the
///   score term dropped from the gradient; its variance vanishes as q approaches the
///   posterior. Generic: log q is evaluated a second time at detached draws, whose
///   gradient is exactly the score term, and that gradient is subtracted.
/// - IWAE (Burda, Grosse & Salakhutdinov 2016): log (1/K) Σ_k p(x, z_k) / q(z_k), a
///   bound at least as tight as the ELBO, equal to log p(x) when q is the posterior.
///
/// Example: at::Tensor loss = -vguide::objective(model, *guide, {vguide::Objective::iwae, 8});
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <string>

#include "vguide/export.hpp"
#include "vguide/guide.hpp"
#include "vguide/model.hpp"

namespace vguide {

enum class Objective { elbo, iwae };

struct ObjectiveOptions {
  Objective kind = Objective::elbo;
  int64_t particles = 1;           ///< S for the ELBO, K for IWAE
  bool stick_the_landing = false;  ///< ELBO only: the path-derivative gradient
};

/// @throw std::invalid_argument if particles < 1, or sticking the landing is asked
///        of IWAE (its path-derivative form is biased without the doubly
///        reparameterised correction).
VGUIDE_API at::Tensor objective(const Model& model, Guide& guide, const ObjectiveOptions& options);

/// The ELBO with the score term removed from its gradient (same value as the ELBO).
VGUIDE_API at::Tensor stl_elbo(const Model& model, Guide& guide, int64_t num_particles);

/// The importance-weighted bound with K particles.
VGUIDE_API at::Tensor iwae_bound(const Model& model, Guide& guide, int64_t num_particles);

/// "elbo" | "iwae". @throw std::invalid_argument naming the valid ones.
VGUIDE_API Objective parse_objective(const std::string& name);
VGUIDE_API std::string to_string(Objective kind);

}  // namespace vguide
