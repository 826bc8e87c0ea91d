#include "vguide/runtime/posterior.hpp"

#include <ATen/ATen.h>
#include <torch/autograd.h>

#include <algorithm>
#include <cmath>
#include <stdexcept>

#include "vguide/model/program_model.hpp"
#include "vguide/model/stan_model.hpp"
#include "vguide/runtime/distributed.hpp"

namespace vguide {

PosteriorDraws draw_posterior(const Model& model, Guide& guide, int64_t num_draws) {
  if (num_draws < 1)
    throw std::invalid_argument("draw_posterior: draws is " + std::to_string(num_draws) + ", but must be at least 1");
  torch::NoGradGuard no_grad;
  const at::Tensor x = particles(num_draws, guide.dtype());
  const SiteValues values = guide.sample(x);
  PosteriorDraws out;
  out.log_p = model.log_joint(x, values).to(at::kDouble);
  out.log_g = guide.log_prob(x, values).to(at::kDouble);
  // A rank's model computes the quantities of a data-parallel fit.
  const auto* parallel = dynamic_cast<const DataParallelModel*>(&model);
  const Model& local = parallel ? parallel->local() : model;
  // A Stan program's parameters, transformed parameters and generated quantities,
  // in Stan's order, over all the data (every rank has read it); `_rng` calls draw
  // from the guide's stream after the draws.
  if (const auto* stan = dynamic_cast<const model::StanModel*>(&local)) {
    for (auto& q : stan->quantities(values, guide.generator()))
      out.quantities.push_back({q.name, q.shape, q.values, q.block != model::StanQuantity::Block::parameters});
    return out;
  }
  std::vector<std::string> latents;
  const auto* program = dynamic_cast<const model::ProgramModel*>(&local);
  if (program) {
    latents = program->latent_names();
  } else {
    for (const auto& site : guide.registry().sites()) latents.push_back(site.name);
  }
  for (const auto& name : latents) {
    const at::Tensor& v = values.at(name);
    out.quantities.push_back({name, v.sizes().slice(1).vec(), v.to(at::kDouble).contiguous(), false});
  }
  if (program) {
    const SiteValues env = program->evaluate(x, values);
    const std::vector<std::string> row_lets = program->row_let_names();
    for (const auto& name : program->let_names()) {
      at::Tensor v = env.at(name).to(at::kDouble).contiguous();
      // Each rank holds its own rows of a per-row value: all of them, in row order.
      if (parallel && std::find(row_lets.begin(), row_lets.end(), name) != row_lets.end())
        v = all_gather_along(parallel->communicator(), v, 1, "the rows of '" + name + "'");
      out.quantities.push_back({name, v.sizes().slice(1).vec(), v, true});
    }
  }
  return out;
}

std::vector<QuantitySummary> summarize(const PosteriorDraws& draws) {
  std::vector<QuantitySummary> out;
  const at::Tensor probs = at::tensor({0.05, 0.5, 0.95}, at::kDouble);
  for (const auto& q : draws.quantities) {
    const int64_t N = q.draws.size(0);
    const at::Tensor flat = q.draws.reshape({N, -1});
    const at::Tensor quant = at::quantile(flat, probs, 0, /*keepdim=*/false, "linear");  // (3, K)
    auto shaped = [&](const at::Tensor& t) { return t.reshape(q.shape).contiguous(); };
    out.push_back({q.name, q.shape, q.derived, shaped(flat.mean(0)),
                   shaped(N > 1 ? flat.std(0) : at::zeros({flat.size(1)}, flat.options())), shaped(quant[0]),
                   shaped(quant[1]), shaped(quant[2])});
  }
  return out;
}

ElboEstimate estimate_elbo(const Model& model, Guide& guide, int64_t num_particles) {
  if (num_particles < 2)
    throw std::invalid_argument("estimate_elbo: particles is " + std::to_string(num_particles) +
                                ", but must be at least 2 (the standard error needs two)");
  torch::NoGradGuard no_grad;
  const at::Tensor x = particles(num_particles, guide.dtype());
  const SiteValues values = guide.sample(x);
  ElboEstimate e;
  e.log_ratios = (model.log_joint(x, values) - guide.log_prob(x, values)).to(at::kDouble);
  e.elbo = e.log_ratios.mean().item<double>();
  e.se = e.log_ratios.std().item<double>() / std::sqrt(static_cast<double>(num_particles));
  return e;
}

}  // namespace vguide
