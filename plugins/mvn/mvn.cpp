// mvn: a full-rank Gaussian over the flat unconstrained vector (the seed's
// AutoMultivariateNormalGuide). L = tril(offdiag, -1) + diag(softplus(diag_raw));
// the diagonal starts at init_scale (through softplus⁻¹), the rest of L at 0.
#include <ATen/ATen.h>

#include <cmath>
#include <ostream>

#include "vguide/flat_guide.hpp"
#include "vguide/kept_tensor.hpp"
#include "vguide/location_scale.hpp"
#include "vguide/math/mvn_log_prob.hpp"
#include "vguide/math/normal_log_prob.hpp"
#include "vguide/plugins/mvn/options.hpp"
#include "vguide/plugin.hpp"

namespace {

class MvnGuide final : public vguide::FlatGuide {
 public:
  MvnGuide(const vguide::Model& model, const std::vector<std::string>& observed, vguide::MvnOptions options,
           uint64_t seed)
      : FlatGuide("mvn", vguide::LatentRegistry::from_model(model, observed), seed), options_(options) {
    options_.validate();
    registry().require_latents("mvn");
    const int64_t D = registry().total_unconstrained_dim();
    loc_ = register_parameter("loc", at::zeros({D}));
    offdiag_ = register_parameter("scale_tril_offdiag", at::zeros({D, D}));
    diag_raw_ = register_parameter("scale_diag_unconstrained",
                                   at::full({D}, vguide::math::softplus_inverse(options_.init_scale())));
    vguide::declare_location_scale_tril(*this, {loc_, offdiag_, diag_raw_});
  }

  /// The current Cholesky factor of the covariance.
  at::Tensor scale_tril() const { return at::tril(offdiag_, -1) + at::diag_embed(at::softplus(diag_raw_)); }

  void initialize(const at::Tensor& location, const at::Tensor& scale) override {
    const int64_t D = loc_.size(0);
    check_scale(scale, D);
    copy_location(loc_, location);
    if (!scale.defined()) return;
    const at::Tensor L = scale.dim() == 2 ? at::tril(scale) : at::diag_embed(scale);
    // A factor's diagonal may carry signs; L diag(sign) is the same covariance.
    const at::Tensor sign = at::where(L.diagonal() < 0, -1.0, 1.0).to(L.scalar_type());
    const at::Tensor positive = L * sign;
    copy_location(offdiag_, at::tril(positive, -1).reshape({-1}));
    copy_location(diag_raw_, vguide::math::softplus_inverse(positive.diagonal().clamp_min(1e-300)));
  }

  /// The location in L's coordinates, row i of L in units of L_ii; the diagonal's
  /// softplus parameter so that log of the diagonal moves by the step.
  std::vector<StepScale> step_scales() const override {
    // The location steps in the factor's own coordinates, and row i of the factor in
    // units of its diagonal (z_i's conditional sd): across a ridge (correlation
    // -0.99999) marginal units would step off it and inflate the noise scale.
    // Formed in plain loops: a dozen tensor ops here cost more than the whole step
    // the runtime takes without autograd (docs/performance.md).
    if (diag_raw_.device().is_cpu() && diag_raw_.scalar_type() == at::kDouble) return step_scales_of<double>();
    if (diag_raw_.device().is_cpu() && diag_raw_.scalar_type() == at::kFloat) return step_scales_of<float>();
    const at::Tensor L = scale_tril().detach();
    const at::Tensor raw = diag_raw_.detach();
    return {{loc_, L}, {offdiag_, L.diagonal().unsqueeze(1).contiguous()}, {diag_raw_, at::softplus(raw) / at::sigmoid(raw)}};
  }

  void pretty_print(std::ostream& out) const override {
    out << "vguide::MvnGuide(latent_dim=" << loc_.size(0) << ", init_scale=" << options_.init_scale() << ")";
  }

 protected:
  std::pair<at::Tensor, at::Tensor> sample_flat(int64_t S, const at::TensorOptions&) override {
    at::Tensor L = scale_tril();
    at::Tensor eps = at::randn({S, loc_.size(0)}, generator(), loc_.options());
    at::Tensor z = loc_ + at::matmul(eps, L.t());
    at::Tensor log_q = vguide::math::standard_normal_log_prob(eps).sum(-1) - at::log(L.diagonal()).sum();
    return {z, log_q};
  }

  at::Tensor log_prob_flat(const at::Tensor& z) override {
    return vguide::math::mvn_tril_log_prob(z, loc_, scale_tril());
  }

 private:
  // step_scales for CPU parameters of type T, equal to the tensor ops' to rounding
  // (computed in double): L, L's diagonal as a column, softplus(raw) / sigmoid(raw).
  template <class T>
  std::vector<StepScale> step_scales_of() const {
    const int64_t D = loc_.size(0);
    const at::Tensor offdiag = offdiag_.contiguous(), raw = diag_raw_.contiguous();  // already contiguous: no copies
    at::Tensor& L = vguide::reuse_or_allocate(factor_units_, {D, D}, raw);
    at::Tensor& column = vguide::reuse_or_allocate(row_units_, {D, 1}, raw);
    at::Tensor& raw_units = vguide::reuse_or_allocate(raw_units_, {D}, raw);
    const T* o = offdiag.data_ptr<T>();
    const T* r = raw.data_ptr<T>();
    T* l = L.data_ptr<T>();
    T* c = column.data_ptr<T>();
    T* u = raw_units.data_ptr<T>();
    for (int64_t i = 0; i < D; ++i) {
      for (int64_t j = 0; j < D; ++j) l[i * D + j] = j < i ? o[i * D + j] : T(0);
      const double x = r[i];
      const double softplus = vguide::math::softplus(x);
      c[i] = l[i * D + i] = static_cast<T>(softplus);
      u[i] = static_cast<T>(softplus * (1.0 + std::exp(-x)));  // softplus / sigmoid
    }
    return {{loc_, L}, {offdiag_, column}, {diag_raw_, raw_units}};
  }

  vguide::MvnOptions options_;
  at::Tensor loc_, offdiag_, diag_raw_;
  mutable at::Tensor factor_units_, row_units_, raw_units_;  // step_scales' last results
};

std::shared_ptr<vguide::Guide> make_mvn(const vguide::FactoryArgs& args) {
  return std::make_shared<MvnGuide>(args.model, args.observed_names, vguide::MvnOptions::from(args.options),
                                    args.context.next_seed());
}

}  // namespace

VGUIDE_DECLARE_PLUGIN("mvn", "full-rank Gaussian with a learnable Cholesky factor", vguide::MvnOptions, make_mvn)
