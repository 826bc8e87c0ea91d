// laplace: the Laplace approximation (the seed's AutoLaplaceApproximation), in two
// phases.
//  1. Before after_fit: a point mass at z* in unconstrained space. Its log_prob is
//     minus the bijectors' log|det J|, so the ELBO is log p(T(z*)) + log|det J(z*)|:
//     the optimiser finds the mode of the same unconstrained density whose Hessian
//     phase 2 takes (for real-valued sites this is log_prob = 0 exactly).
//  2. after_fit: H = -∇²[log p(T(z)) + log|det J(z)|] at z* by autograd, symmetrised,
//     eigenvalues below `jitter` raised to it (counted and reported), Σ = H⁻¹ through
//     the clamped spectrum, L = chol(Σ). From then on q = N(z*, Σ) pushed forward.
// State (z*, the fitted flag, L, the clamp report) lives in parameters and buffers,
// so it is saved and restored with the module.
#include <ATen/ATen.h>
#include <torch/autograd.h>

#include <cmath>
#include <ostream>
#include <sstream>
#include <stdexcept>

#include "vguide/flat_guide.hpp"
#include "vguide/log.hpp"
#include "vguide/math/mvn_log_prob.hpp"
#include "vguide/math/normal_log_prob.hpp"
#include "vguide/plugins/laplace/options.hpp"
#include "vguide/plugin.hpp"

namespace {

class LaplaceGuide final : public vguide::FlatGuide {
 public:
  LaplaceGuide(const vguide::Model& model, const std::vector<std::string>& observed, vguide::LaplaceOptions options,
               uint64_t seed)
      : FlatGuide("laplace", vguide::LatentRegistry::from_model(model, observed), seed), options_(options) {
    options_.validate();
    registry().require_latents("laplace");
    const int64_t D = registry().total_unconstrained_dim();
    at::Tensor init = at::randn({D}, generator(), at::kFloat) * options_.init_noise() + options_.init_value();
    loc_ = register_parameter("loc", init);
    step_scale_ = register_buffer("step_scale", at::ones({D}));
    scale_tril_ = register_buffer("scale_tril", at::zeros({D, D}));
    fitted_ = register_buffer("fitted", at::zeros({}, at::kBool));
    num_clamped_ = register_buffer("num_clamped", at::zeros({}, at::kLong));
    min_eigenvalue_ = register_buffer("min_eigenvalue", at::full({}, std::nan("")));
  }

  bool fitted() const { return fitted_.item<bool>(); }

  void after_fit(const vguide::FitContext& context) override {
    const int64_t D = loc_.size(0);
    torch::AutoGradMode enable_grad(true);
    at::Tensor z = loc_.detach().clone().requires_grad_(true);
    auto [values, ladj] = registry().constrain(z.unsqueeze(0));
    at::Tensor neg_log_density = -(context.model.log_joint(vguide::particles(1, z.scalar_type()), values) + ladj).sum();
    if (!std::isfinite(neg_log_density.item<double>()))
      throw std::runtime_error("laplace: the log joint at the MAP point is not finite; cannot take its Hessian");
    at::Tensor grad = torch::autograd::grad({neg_log_density}, {z}, {}, /*retain_graph=*/true,
                                            /*create_graph=*/true)[0];
    at::Tensor H = at::zeros({D, D}, z.options().requires_grad(false));
    for (int64_t i = 0; i < D; ++i) {
      at::Tensor row = torch::autograd::grad({grad[i]}, {z}, {}, /*retain_graph=*/true, /*create_graph=*/false,
                                             /*allow_unused=*/true)[0];
      if (row.defined()) H[i] = row.detach();
    }
    H = 0.5 * (H + H.t());
    auto [eigenvalues, eigenvectors] = at::linalg_eigh(H);
    const int64_t clamped = (eigenvalues < options_.jitter()).sum().item<int64_t>();
    const double smallest = eigenvalues.min().item<double>();
    at::Tensor covariance = at::matmul(eigenvectors / eigenvalues.clamp_min(options_.jitter()), eigenvectors.t());
    at::Tensor L = at::linalg_cholesky(0.5 * (covariance + covariance.t()));

    torch::NoGradGuard no_grad;
    scale_tril_.copy_(L);
    fitted_.fill_(true);
    num_clamped_.fill_(clamped);
    min_eigenvalue_.fill_(smallest);
    if (clamped > 0) {
      std::ostringstream msg;
      msg << "laplace: " << clamped << " of " << D << " Hessian eigenvalues were below jitter = " << options_.jitter()
          << " and were raised to it (smallest " << smallest
          << "); the MAP is not a strict maximum there, so the approximation is not trustworthy in those directions";
      vguide::log_warning(msg.str());
    }
  }

  std::map<std::string, double> diagnostics() const override {
    return {{"laplace.fitted", fitted() ? 1.0 : 0.0},
            {"laplace.num_clamped", static_cast<double>(num_clamped_.item<int64_t>())},
            {"laplace.min_eigenvalue", min_eigenvalue_.item<double>()}};
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
    out << "vguide::LaplaceGuide(latent_dim=" << loc_.size(0) << ", jitter=" << options_.jitter()
        << ", fitted=" << (fitted() ? "true" : "false") << ")";
  }

 protected:
  std::pair<at::Tensor, at::Tensor> sample_flat(int64_t S, const at::TensorOptions&) override {
    const int64_t D = loc_.size(0);
    if (!fitted()) return {loc_.expand({S, D}), at::zeros({S}, loc_.options())};
    at::Tensor eps = at::randn({S, D}, generator(), loc_.options());
    at::Tensor z = loc_ + at::matmul(eps, scale_tril_.t());
    at::Tensor log_q = vguide::math::standard_normal_log_prob(eps).sum(-1) - at::log(scale_tril_.diagonal()).sum();
    return {z, log_q};
  }

  at::Tensor log_prob_flat(const at::Tensor& z) override {
    if (!fitted()) return at::zeros(z.sizes().slice(0, z.dim() - 1), z.options());
    return vguide::math::mvn_tril_log_prob(z, loc_, scale_tril_);
  }

 private:
  vguide::LaplaceOptions options_;
  at::Tensor loc_, step_scale_, scale_tril_, fitted_, num_clamped_, min_eigenvalue_;
};

std::shared_ptr<vguide::Guide> make_laplace(const vguide::FactoryArgs& args) {
  return std::make_shared<LaplaceGuide>(args.model, args.observed_names, vguide::LaplaceOptions::from(args.options),
                                        args.context.next_seed());
}

}  // namespace

VGUIDE_DECLARE_PLUGIN("laplace", "MAP, then N(z*, H⁻¹) from the Hessian of the negative log joint at the MAP",
                      vguide::LaplaceOptions, make_laplace)
