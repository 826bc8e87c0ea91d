#pragma once
/// The evidence lower bound with vectorised particles, and posterior summaries
/// from a fitted guide.
///
/// Example: auto loss = -vguide::elbo(model, *guide, 8);  loss.backward();
#include <ATen/core/Tensor.h>

#include <string>
#include <vector>

#include "vguide/export.hpp"
#include "vguide/guide.hpp"
#include "vguide/model.hpp"

namespace vguide {

/// The guide's ELBO estimate with S particles (Guide::elbo: by default the mean over
/// S draws of log p(x, z_s) - log q(z_s)): a differentiable scalar.
/// @throw std::invalid_argument if S < 1.
VGUIDE_API at::Tensor elbo(const Model& model, Guide& guide, int64_t num_particles);

struct SiteSummary {
  std::string name;
  at::Tensor mean;  ///< site.shape
  at::Tensor sd;    ///< site.shape
};

/// Mean and sd of each latent site over `num_draws` exact draws (Guide::sample).
VGUIDE_API std::vector<SiteSummary> summarize(Guide& guide, int64_t num_draws);

}  // namespace vguide
