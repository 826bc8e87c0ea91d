#include "vguide/runtime/objective.hpp"

#include <ATen/ATen.h>

#include <cmath>
#include <stdexcept>

#include "vguide/runtime/elbo.hpp"

namespace vguide {

namespace {

void require_particles(const char* what, int64_t n) {
  if (n < 1) throw std::invalid_argument(std::string(what) + ": particles is " + std::to_string(n) + ", but must be at least 1");
}

}  // namespace

at::Tensor stl_elbo(const Model& model, Guide& guide, int64_t num_particles) {
  require_particles("stl_elbo", num_particles);
  const at::Tensor x = particles(num_particles, guide.dtype());
  SiteValues draws = guide.rsample(x);
  SiteValues detached;
  for (const auto& [name, value] : draws) detached[name] = value.detach();
  const at::Tensor log_q = guide.log_prob(x, draws);
  // d/dφ log q(z(φ), φ) = path + score; the second term carries only the score.
  const at::Tensor score = guide.log_prob(x, detached);
  return (model.log_joint(x, draws) - log_q + score - score.detach()).mean();
}

at::Tensor iwae_bound(const Model& model, Guide& guide, int64_t num_particles) {
  require_particles("iwae_bound", num_particles);
  const at::Tensor x = particles(num_particles, guide.dtype());
  SiteValues draws = guide.rsample(x);
  const at::Tensor log_w = model.log_joint(x, draws) - guide.log_prob(x, draws);
  return at::logsumexp(log_w, 0) - std::log(static_cast<double>(num_particles));
}

at::Tensor objective(const Model& model, Guide& guide, const ObjectiveOptions& options) {
  require_particles("objective", options.particles);
  if (options.kind == Objective::iwae) {
    if (options.stick_the_landing)
      throw std::invalid_argument(
          "objective: sticking the landing applies to the ELBO only (IWAE would need doubly reparameterised "
          "gradients)");
    return iwae_bound(model, guide, options.particles);
  }
  return options.stick_the_landing ? stl_elbo(model, guide, options.particles) : elbo(model, guide, options.particles);
}

Objective parse_objective(const std::string& name) {
  if (name == "elbo") return Objective::elbo;
  if (name == "iwae") return Objective::iwae;
  throw std::invalid_argument("unknown objective '" + name + "'; valid: elbo, iwae");
}

std::string to_string(Objective kind) { return kind == Objective::iwae ? "iwae" : "elbo"; }

}  // namespace vguide
