// lowrank_mvn: Σ = W Wᵀ + diag(σ²) over the flat unconstrained vector (the seed's
// AutoLowRankMultivariateNormalGuide). Draws cost O(S D r), densities O(D r²) by the
// Woodbury identity: no D × D matrix is ever formed, so D = 10⁴ fits.
#include <ATen/ATen.h>

#include <cmath>
#include <ostream>
#include <sstream>

#include "vguide/flat_guide.hpp"
#include "vguide/kept_tensor.hpp"
#include "vguide/location_scale.hpp"
#include "vguide/math/mvn_log_prob.hpp"
#include "vguide/plugins/lowrank_mvn/options.hpp"
#include "vguide/plugin.hpp"

namespace {

class LowRankMvnGuide final : public vguide::FlatGuide {
 public:
  LowRankMvnGuide(const vguide::Model& model, const std::vector<std::string>& observed,
                  vguide::LowRankMvnOptions options, uint64_t seed)
      : FlatGuide("lowrank_mvn", vguide::LatentRegistry::from_model(model, observed), seed), options_(options) {
    options_.validate();
    registry().require_latents("lowrank_mvn");
    const int64_t D = registry().total_unconstrained_dim();
    if (options_.rank() > D) {
      std::ostringstream msg;
      msg << "lowrank_mvn: rank is " << options_.rank() << ", but must be at most the latent dimension D = " << D
          << " (for small D use the full-rank 'mvn' family)";
      throw std::invalid_argument(msg.str());
    }
    rank_ = options_.rank_for(D);
    loc_ = register_parameter("loc", at::zeros({D}));
    cov_factor_ = register_parameter("cov_factor", at::zeros({D, rank_}));
    scale_raw_ = register_parameter("scale_unconstrained",
                                    at::full({D}, vguide::math::softplus_inverse(options_.init_scale())));
    vguide::declare_location_low_rank(*this, {loc_, cov_factor_, scale_raw_});
  }

  /// A full factor gives W the covariance's leading `rank` eigendirections and σ² what
  /// they leave of each variance (at least 1% of it); marginal sds give σ alone.
  void initialize(const at::Tensor& location, const at::Tensor& scale) override {
    const int64_t D = loc_.size(0);
    check_scale(scale, D);
    copy_location(loc_, location);
    if (!scale.defined()) return;
    const at::Tensor variance = vguide::marginal_sd(scale).square();
    at::Tensor W = at::zeros({D, rank_}, scale.options());
    if (scale.dim() == 2) {
      const at::Tensor L = at::tril(scale);
      auto [eigenvalues, eigenvectors] = at::linalg_eigh(at::matmul(L, L.t()));  // ascending
      const at::Tensor top = eigenvalues.narrow(0, D - rank_, rank_).clamp_min(0);
      W = eigenvectors.narrow(1, D - rank_, rank_) * top.sqrt();
    }
    const at::Tensor rest = (variance - W.square().sum(1)).clamp_min(0.01 * variance);
    copy_location(cov_factor_, W.reshape({-1}));
    copy_location(scale_raw_, vguide::math::softplus_inverse(rest.sqrt()));
  }

  /// The location and the rows of W step in units of each coordinate's sd; σ's
  /// softplus parameter so that log σ moves by the step.
  std::vector<StepScale> step_scales() const override {
    // In plain loops: the tensor ops cost more than the runtime's direct step.
    if (scale_raw_.device().is_cpu() && scale_raw_.scalar_type() == at::kDouble) return step_scales_of<double>();
    if (scale_raw_.device().is_cpu() && scale_raw_.scalar_type() == at::kFloat) return step_scales_of<float>();
    const at::Tensor raw = scale_raw_.detach();
    const at::Tensor sigma = at::softplus(raw);
    const at::Tensor sd = (sigma.square() + cov_factor_.detach().square().sum(1)).sqrt();
    return {{loc_, sd}, {cov_factor_, sd.unsqueeze(1)}, {scale_raw_, sigma / at::sigmoid(raw)}};
  }

  void pretty_print(std::ostream& out) const override {
    out << "vguide::LowRankMvnGuide(latent_dim=" << loc_.size(0) << ", rank=" << rank_
        << ", init_scale=" << options_.init_scale() << ")";
  }

 protected:
  std::pair<at::Tensor, at::Tensor> sample_flat(int64_t S, const at::TensorOptions&) override {
    at::Tensor sigma = at::softplus(scale_raw_);
    at::Tensor eps_w = at::randn({S, rank_}, generator(), loc_.options());
    at::Tensor eps_d = at::randn({S, loc_.size(0)}, generator(), loc_.options());
    at::Tensor z = loc_ + at::matmul(eps_w, cov_factor_.t()) + sigma * eps_d;
    return {z, vguide::math::lowrank_mvn_log_prob(z, loc_, cov_factor_, sigma)};
  }

  at::Tensor log_prob_flat(const at::Tensor& z) override {
    return vguide::math::lowrank_mvn_log_prob(z, loc_, cov_factor_, at::softplus(scale_raw_));
  }

 private:
  // step_scales for CPU parameters of type T, equal to the tensor ops' to rounding
  // (computed in double): sd = sqrt(σ² + Σ_k W_ik²) for loc and W's rows, softplus(raw) / sigmoid(raw).
  template <class T>
  std::vector<StepScale> step_scales_of() const {
    const int64_t D = loc_.size(0);
    const at::Tensor W = cov_factor_.contiguous(), raw = scale_raw_.contiguous();  // already contiguous: no copies
    at::Tensor& sd = vguide::reuse_or_allocate(sd_units_, {D}, raw);
    at::Tensor& raw_units = vguide::reuse_or_allocate(raw_units_, {D}, raw);
    const T* w = W.data_ptr<T>();
    const T* r = raw.data_ptr<T>();
    T* s = sd.data_ptr<T>();
    T* u = raw_units.data_ptr<T>();
    for (int64_t i = 0; i < D; ++i) {
      const double x = r[i];
      const double sigma = vguide::math::softplus(x);
      double variance = sigma * sigma;
      for (int64_t k = 0; k < rank_; ++k) variance += static_cast<double>(w[i * rank_ + k]) * w[i * rank_ + k];
      s[i] = static_cast<T>(std::sqrt(variance));
      u[i] = static_cast<T>(sigma * (1.0 + std::exp(-x)));  // softplus / sigmoid
    }
    return {{loc_, sd}, {cov_factor_, sd.view({D, 1})}, {scale_raw_, raw_units}};
  }

  vguide::LowRankMvnOptions options_;
  int64_t rank_ = 0;
  at::Tensor loc_, cov_factor_, scale_raw_;
  mutable at::Tensor sd_units_, raw_units_;  // step_scales' last results
};

std::shared_ptr<vguide::Guide> make_lowrank_mvn(const vguide::FactoryArgs& args) {
  return std::make_shared<LowRankMvnGuide>(args.model, args.observed_names,
                                           vguide::LowRankMvnOptions::from(args.options), args.context.next_seed());
}

}  // namespace

VGUIDE_DECLARE_PLUGIN("lowrank_mvn", "Gaussian with covariance W Wᵀ + diag(σ²), W of shape (D, rank)",
                      vguide::LowRankMvnOptions, make_lowrank_mvn)
