// What a ProgramModel computes besides the log joint: each site's term
// (site_log_densities), latents drawn from their priors for the init strategies
// (prior_values) and every `let` value for the outputs (evaluate).
#include <ATen/ATen.h>

#include <tuple>

#include "program_plan.hpp"

namespace vguide::model {

using namespace detail;

std::vector<std::pair<std::string, at::Tensor>> ProgramModel::site_log_densities(const at::Tensor& x,
                                                                                const SiteValues& values) const {
  Context ctx = make_context(x, *plan_);
  TermSink terms;
  run(*plan_, ctx, values, num_rows_, num_rows_, nullptr, &terms);
  return terms;
}

SiteValues ProgramModel::prior_values(PriorInit kind, at::Generator& generator) const {
  Context ctx;
  ctx.S = 1;
  ctx.opts = at::TensorOptions().dtype(at::kDouble);
  SiteValues out;
  const LatentPicker pick = [&](const StepPlan& sp, const Distribution& dist) {
    std::vector<int64_t> target{1};
    target.insert(target.end(), sp.shape.begin(), sp.shape.end());
    auto fits = [&](const at::Tensor& v) {
      return v.defined() && at::isfinite(v).all().item<bool>() && dist.support().check(v).all().item<bool>();
    };
    at::Tensor mean;
    if (dist.has_mean()) mean = dist.mean().to(ctx.opts).expand(target).contiguous();
    at::Tensor v;
    switch (kind) {
      case PriorInit::sample: v = dist.sample({}, generator).to(ctx.opts).expand(target).contiguous(); break;
      case PriorInit::mean:
        if (fits(mean)) {
          v = mean;
          break;
        }
        [[fallthrough]];  // no finite mean (a Cauchy): the median
      case PriorInit::median: {
        // Pyro's rule: 15 draws. An element-wise median can leave a joint support
        // (a simplex), and then the mean, or one draw, stands in.
        v = std::get<0>(dist.sample({15}, generator).to(ctx.opts).median(0)).expand(target).contiguous();
        if (!fits(v)) v = fits(mean) ? mean : dist.sample({}, generator).to(ctx.opts).expand(target).contiguous();
        break;
      }
    }
    out[sp.step->name] = v.select(0, 0);
    return v;
  };
  run(*plan_, ctx, {}, num_rows_, num_rows_, &pick);
  return out;
}

SiteValues ProgramModel::evaluate(const at::Tensor& x, const SiteValues& values) const {
  Context ctx = make_context(x, *plan_);
  run(*plan_, ctx, values, num_rows_, num_rows_);
  SiteValues out;
  for (const auto& [name, v] : ctx.env) {
    std::vector<int64_t> shape = v.t.sizes().vec();
    shape[0] = ctx.S;
    // Values of the data alone may be the model's cached tensors: the caller gets a copy.
    out[name] = v.latent ? v.t.expand(shape) : v.t.expand(shape).clone();
  }
  return out;
}

}  // namespace vguide::model
