#include "vguide/runtime/elbo.hpp"

#include <ATen/ATen.h>
#include <torch/autograd.h>

namespace vguide {

at::Tensor elbo(const Model& model, Guide& guide, int64_t num_particles) {
  return guide.elbo(model, particles(num_particles, guide.dtype()));
}

std::vector<SiteSummary> summarize(Guide& guide, int64_t num_draws) {
  torch::NoGradGuard no_grad;
  const SiteValues draws = guide.sample(particles(num_draws, guide.dtype()));
  std::vector<SiteSummary> out;
  for (const auto& name : guide.latent_names()) {
    const at::Tensor& d = draws.at(name);
    out.push_back({name, d.mean(0), num_draws > 1 ? d.std(0) : at::zeros_like(d[0])});
  }
  return out;
}

}  // namespace vguide
