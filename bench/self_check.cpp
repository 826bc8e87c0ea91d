#include "self_check.hpp"

#include <torch/torch.h>

#include <ATen/CPUGeneratorImpl.h>

#include <cmath>
#include <stdexcept>

#include "baselines/baselines.hpp"
#include "models.hpp"
#include "vguide/model/program_model.hpp"
#include "vguide/runtime/elbo.hpp"

namespace vguide::bench {
namespace {

// float32 sums over a few hundred terms: agreement to ~1e-6 relative is expected;
// the tolerances leave room for op-order rounding, not for a missing term
// (the smallest term, a normalising constant, is ~0.9).
constexpr double kElboRelTol = 2e-5;
constexpr double kGradRelTol = 1e-4;

at::Tensor parameter_named(Guide& guide, const std::string& name) {
  for (const auto& p : guide.named_parameters())
    if (p.key() == name) return p.value();
  throw std::logic_error("self-check: the normal guide has no parameter '" + name + "'");
}

const LatentSite& registry_site(const Guide& guide, const std::string& name, int64_t numel) {
  for (const auto& s : guide.registry().sites()) {
    if (s.name != name) continue;
    if (s.unconstrained_dim != numel)
      throw std::logic_error("self-check: site '" + name + "' has " + std::to_string(s.unconstrained_dim) +
                             " coordinates in the framework, " + std::to_string(numel) + " in the baseline");
    return s;
  }
  throw std::logic_error("self-check: the baseline's site '" + name + "' is not a latent of the framework's model");
}

// Random loc and log_scale, the same in the baseline's per-site tensors and the
// guide's flat ones.
void randomize_and_sync(Baseline& base, Guide& guide, uint64_t seed) {
  at::NoGradGuard no_grad;
  at::Generator gen = at::detail::createCPUGenerator(seed);
  at::Tensor loc = parameter_named(guide, "loc");
  at::Tensor log_scale = parameter_named(guide, "log_scale");
  const auto sites = base.sites();
  if (sites.size() != guide.registry().sites().size())
    throw std::logic_error("self-check: the baseline has " + std::to_string(sites.size()) + " latent sites, the model " +
                           std::to_string(guide.registry().sites().size()));
  for (const auto& site : sites) {
    const LatentSite& r = registry_site(guide, site.name, site.loc.numel());
    site.loc.copy_(0.5 * at::randn(site.loc.sizes(), gen));
    site.log_scale.copy_(-1.0 + 0.3 * at::randn(site.log_scale.sizes(), gen));
    loc.narrow(0, r.offset, r.unconstrained_dim).copy_(site.loc.reshape(-1));
    log_scale.narrow(0, r.offset, r.unconstrained_dim).copy_(site.log_scale.reshape(-1));
  }
}

// The guide's standard-Normal noise for its next draw with this seed, per baseline
// site: recovered from the draw itself, so nothing depends on how the guide draws.
std::vector<at::Tensor> guide_noise(Baseline& base, Guide& guide, int64_t S, uint64_t seed) {
  at::NoGradGuard no_grad;
  guide.set_seed(seed);
  const SiteValues draws = guide.rsample(particles(S));
  const at::Tensor z = guide.registry().unconstrain(draws).first;  // (S, D)
  const at::Tensor eps = (z - parameter_named(guide, "loc")) / at::exp(parameter_named(guide, "log_scale"));
  std::vector<at::Tensor> out;
  for (const auto& site : base.sites()) {
    const LatentSite& r = registry_site(guide, site.name, site.loc.numel());
    std::vector<int64_t> shape{S};
    shape.insert(shape.end(), site.shape.begin(), site.shape.end());
    out.push_back(eps.narrow(1, r.offset, r.unconstrained_dim).reshape(shape).contiguous());
  }
  return out;
}

double max_abs(const at::Tensor& t) { return t.abs().max().item<double>(); }

bool close(double a, double b, double rel) { return std::abs(a - b) <= rel * std::max(1.0, std::abs(a)); }

CheckResult check_same_elbo(PluginManager& plugins, const ModelSpec& spec, const ModelData& md, int64_t S) {
  model::ProgramModel model(md.program, md.data);
  auto guide = plugins.create("normal", model, model.observed_names(), {});
  auto base = make_baseline(spec, md.data, S, 0, 1);
  randomize_and_sync(*base, *guide, 100 + static_cast<uint64_t>(S));
  const uint64_t noise_seed = 200 + static_cast<uint64_t>(S);
  const std::vector<at::Tensor> eps = guide_noise(*base, *guide, S, noise_seed);

  guide->set_seed(noise_seed);
  at::Tensor fw = vguide::elbo(model, *guide, S);
  (-fw).backward();
  at::Tensor bl = base->elbo(eps, {});
  (-bl).backward();

  // The baseline's gradients in the guide's flat layout.
  std::vector<at::Tensor> loc_grads, log_scale_grads;
  for (const auto& site : base->sites()) {
    loc_grads.push_back(site.loc.grad().reshape(-1));
    log_scale_grads.push_back(site.log_scale.grad().reshape(-1));
  }
  const at::Tensor g_fw = at::cat({parameter_named(*guide, "loc").grad(), parameter_named(*guide, "log_scale").grad()});
  const at::Tensor g_bl = at::cat({at::cat(loc_grads), at::cat(log_scale_grads)});

  CheckResult r;
  r.name = spec.key() + ": framework vs baseline";
  r.S = S;
  r.framework = fw.item<double>();
  r.other = bl.item<double>();
  r.max_grad = max_abs(g_fw);
  r.max_grad_diff = max_abs(g_fw - g_bl);
  r.ok = close(r.framework, r.other, kElboRelTol) && r.max_grad_diff <= kGradRelTol * std::max(1.0, r.max_grad);
  return r;
}

// Rows that are all equal make every minibatch's ELBO, scaled by N/B, equal to the
// full-batch ELBO: this pins the N/B scaling of both implementations.
std::vector<CheckResult> check_minibatch_scaling(PluginManager& plugins, const std::string& source_dir) {
  const int64_t N = 64, P = 3, B = 16, S = 3;
  at::Generator gen = at::detail::createCPUGenerator(300);
  model::Data data("identical rows");
  data.set("N", at::scalar_tensor(N, at::kLong));
  data.set("P", at::scalar_tensor(P, at::kLong));
  data.set("X", at::randn({1, P}, gen, at::kDouble).expand({N, P}).contiguous());
  data.set("y", at::ones({N}, at::kLong));
  const ModelSpec spec{ModelKind::logistic, N, P};
  const ModelData md{model::load_program(source_dir + "/examples/models/logistic_regression.qvr"), data};

  model::ProgramModel full(md.program, md.data);
  model::ProgramModel mini(md.program, md.data);
  mini.set_minibatch(B, at::detail::createCPUGenerator(301));
  auto guide = plugins.create("normal", full, full.observed_names(), {});
  auto base = make_baseline(spec, md.data, S, 0, 1);
  randomize_and_sync(*base, *guide, 302);
  const std::vector<at::Tensor> eps = guide_noise(*base, *guide, S, 303);

  at::NoGradGuard no_grad;
  guide->set_seed(303);
  const double fw_full = vguide::elbo(full, *guide, S).item<double>();
  guide->set_seed(303);
  const double fw_mini = vguide::elbo(mini, *guide, S).item<double>();
  const double bl_full = base->elbo(eps, {}).item<double>();
  const double bl_mini = base->elbo(eps, at::randint(N, {B}, gen, at::kLong)).item<double>();

  CheckResult a{spec.name() + " (identical rows): framework full vs B=16", S, fw_full, fw_mini, 0, 0, false};
  a.ok = close(fw_full, fw_mini, kElboRelTol);
  CheckResult b{spec.name() + " (identical rows): baseline full vs B=16", S, bl_full, bl_mini, 0, 0, false};
  b.ok = close(bl_full, bl_mini, kElboRelTol);
  CheckResult c{spec.name() + " (identical rows): framework vs baseline", S, fw_full, bl_full, 0, 0, false};
  c.ok = close(fw_full, bl_full, kElboRelTol);
  return {a, b, c};
}

}  // namespace

std::vector<CheckResult> check_baselines(PluginManager& plugins, const std::string& source_dir) {
  const std::vector<ModelSpec> specs{
      {ModelKind::eight_schools, 0, 0}, {ModelKind::logistic, 200, 5}, {ModelKind::normal_means, 3, 7}};
  std::vector<CheckResult> out;
  for (const auto& spec : specs) {
    const ModelData md = make_model_data(spec, source_dir);
    for (int64_t S : {1, 5}) out.push_back(check_same_elbo(plugins, spec, md, S));
  }
  for (auto& r : check_minibatch_scaling(plugins, source_dir)) out.push_back(r);
  return out;
}

}  // namespace vguide::bench
