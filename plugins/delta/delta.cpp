// delta: a point mass at a learnable unconstrained location (MAP, the seed's
// AutoDelta). log_prob is 0 for every draw, so the ELBO is the log joint at the
// constrained point; every draw of a batch is the same point.
#include <ATen/ATen.h>

#include <ostream>

#include "vguide/guide.hpp"
#include "vguide/location_scale.hpp"
#include "vguide/plugins/delta/options.hpp"
#include "vguide/plugin.hpp"

namespace {

class DeltaGuide final : public vguide::Guide {
 public:
  DeltaGuide(const vguide::Model& model, const std::vector<std::string>& observed, vguide::DeltaOptions options,
             uint64_t seed)
      : Guide("delta", vguide::LatentRegistry::from_model(model, observed), seed), options_(options) {
    options_.validate();
    registry().require_latents("delta");
    const int64_t D = registry().total_unconstrained_dim();
    // Jitter so that no two coordinates start equal (symmetric models stay unstuck).
    at::Tensor init = at::randn({D}, generator(), at::kFloat) * options_.init_noise() + options_.init_value();
    loc_ = register_parameter("loc", init);
    step_scale_ = register_buffer("step_scale", at::ones({D}));
    vguide::declare_location_scale(*this, {loc_, {}});  // a point mass: z = loc
  }

  vguide::SiteValues rsample(const at::Tensor& x) override {
    const int64_t S = num_particles("rsample", x);
    return registry().constrain(loc_.expand({S, loc_.size(0)})).first;
  }

  at::Tensor log_prob(const at::Tensor& x, const vguide::SiteValues& values) override {
    const int64_t S = num_particles("log_prob", x);
    for (const auto& site : registry().sites())
      if (!values.count(site.name))
        throw std::invalid_argument("log_prob: missing value for latent site '" + site.name + "'");
    return at::zeros({S}, loc_.options());
  }

  /// A point mass holds only the location; a given scale sets the units of its
  /// optimiser step (step_scales), not its spread.
  void initialize(const at::Tensor& location, const at::Tensor& scale) override {
    check_scale(scale, loc_.size(0));
    copy_location(loc_, location);
    if (scale.defined()) copy_location(step_scale_, vguide::marginal_sd(scale));
  }

  std::vector<StepScale> step_scales() const override { return {{loc_, step_scale_}}; }

  void pretty_print(std::ostream& out) const override {
    out << "vguide::DeltaGuide(latent_dim=" << loc_.size(0) << ", init_value=" << options_.init_value() << ")";
  }

 private:
  vguide::DeltaOptions options_;
  at::Tensor loc_, step_scale_;
};

std::shared_ptr<vguide::Guide> make_delta(const vguide::FactoryArgs& args) {
  return std::make_shared<DeltaGuide>(args.model, args.observed_names, vguide::DeltaOptions::from(args.options),
                                      args.context.next_seed());
}

}  // namespace

VGUIDE_DECLARE_PLUGIN("delta", "MAP point mass; log_prob = 0", vguide::DeltaOptions, make_delta)
