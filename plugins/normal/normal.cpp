// normal: mean-field Normal over the flat unconstrained vector (the seed's
// AutoNormalGuide). q(z) = ∏_d N(z_d; loc_d, exp(log_scale_d)); loc starts at 0 and
// log_scale at log(init_scale). One op over the flat vector per step, not one per site.
#include <ATen/ATen.h>

#include <cmath>
#include <ostream>

#include "vguide/flat_guide.hpp"
#include "vguide/kept_tensor.hpp"
#include "vguide/location_scale.hpp"
#include "vguide/math/diag_normal_rsample.hpp"
#include "vguide/math/normal_log_prob.hpp"
#include "vguide/plugins/normal/options.hpp"
#include "vguide/plugin.hpp"

namespace {

class NormalGuide final : public vguide::FlatGuide {
 public:
  NormalGuide(const vguide::Model& model, const std::vector<std::string>& observed, vguide::NormalOptions options,
              uint64_t seed)
      : FlatGuide("normal", vguide::LatentRegistry::from_model(model, observed), seed), options_(options) {
    options_.validate();
    registry().require_latents("normal");
    const int64_t D = registry().total_unconstrained_dim();
    loc_ = register_parameter("loc", at::zeros({D}));
    log_scale_ = register_parameter("log_scale", at::full({D}, std::log(options_.init_scale())));
    // sample_flat draws as location_scale.hpp says: the runtime may take the step itself.
    vguide::declare_location_scale(*this, {loc_, log_scale_});
  }

  void initialize(const at::Tensor& location, const at::Tensor& scale) override {
    check_scale(scale, loc_.size(0));
    copy_location(loc_, location);
    if (scale.defined()) copy_location(log_scale_, at::log(vguide::marginal_sd(scale)));
  }

  std::vector<StepScale> step_scales() const override {
    // A loop into a kept tensor rather than at::exp: on the runtime's direct step an
    // op's dispatch, or a tensor's allocation, is a sizeable part of a small model's
    // whole step (docs/performance.md).
    const at::Tensor& log_scale = log_scale_;
    const bool loop = log_scale.is_contiguous() && log_scale.device().is_cpu();
    if (loop && (log_scale.scalar_type() == at::kDouble || log_scale.scalar_type() == at::kFloat)) {
      at::Tensor& scales = vguide::reuse_or_allocate(scales_, log_scale.sizes(), log_scale);
      if (log_scale.scalar_type() == at::kDouble) exp_into<double>(log_scale, scales);
      else exp_into<float>(log_scale, scales);
      return {{loc_, scales}};
    }
    return {{loc_, at::exp(log_scale.detach())}};
  }

  void pretty_print(std::ostream& out) const override {
    out << "vguide::NormalGuide(latent_dim=" << loc_.size(0) << ", init_scale=" << options_.init_scale() << ")";
  }

 protected:
  std::pair<at::Tensor, at::Tensor> sample_flat(int64_t S, const at::TensorOptions&) override {
    const at::Tensor eps = at::randn({S, loc_.size(0)}, generator(), loc_.options());
    // z and log q from the same noise, as one autograd node (eight ops with LibTorch's).
    return vguide::math::diag_normal_rsample(loc_, log_scale_, eps);
  }

  at::Tensor log_prob_flat(const at::Tensor& z) override {
    return vguide::math::normal_log_prob(z, loc_, at::exp(log_scale_)).sum(-1);
  }

 private:
  template <class T>
  static void exp_into(const at::Tensor& x, at::Tensor& out) {
    const T* in = x.data_ptr<T>();
    T* o = out.data_ptr<T>();
    for (int64_t i = 0; i < x.numel(); ++i) o[i] = std::exp(in[i]);
  }

  vguide::NormalOptions options_;
  at::Tensor loc_;
  at::Tensor log_scale_;
  mutable at::Tensor scales_;  // step_scales' last result
};

std::shared_ptr<vguide::Guide> make_normal(const vguide::FactoryArgs& args) {
  return std::make_shared<NormalGuide>(args.model, args.observed_names, vguide::NormalOptions::from(args.options),
                                       args.context.next_seed());
}

}  // namespace

VGUIDE_DECLARE_PLUGIN("normal", "mean-field Normal in unconstrained space", vguide::NormalOptions, make_normal)
