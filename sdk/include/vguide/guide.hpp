#pragma once
/// The guide: a torch::nn::Module that draws joint latent values and scores them.
///
/// Shapes (docs/architecture.md): `rsample(x)` returns S = x.size(0) independent joint draws,
/// site -> (S, *site.shape) in constrained space; `log_prob(x, values)` returns (S,),
/// log q of each joint draw with every bijector's Jacobian included. A missing latent
/// site in `values` is an std::invalid_argument naming it; extra (observed) names are
/// ignored. All randomness comes from `generator()`, seeded by the factory context.
///
/// Example: auto draws = guide->rsample(vguide::particles(16));
///          at::Tensor elbo = (model.log_joint(x, draws) - guide->log_prob(x, draws)).mean();
#include <ATen/core/Generator.h>
#include <ATen/core/Tensor.h>
#include <torch/nn/module.h>

#include <cstdint>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

#include "vguide/export.hpp"
#include "vguide/model.hpp"
#include "vguide/registry.hpp"

namespace vguide {

/// What the host tells a guide before each optimiser step.
struct StepInfo {
  int64_t step = 0;       ///< 0-based index of the step about to run
  int64_t num_steps = 0;  ///< planned total (0 if open-ended)
};

/// What the host hands a guide once the fit is over (the Laplace guide computes
/// its Hessian here).
struct FitContext {
  const Model& model;
  int64_t steps_done = 0;
};

/// Guide::initialize's refusal by a family that has no location to start from.
class VGUIDE_API NoLocation : public std::invalid_argument {
 public:
  using std::invalid_argument::invalid_argument;
};

class VGUIDE_API Guide : public torch::nn::Module {
 public:
  Guide(std::string family, LatentRegistry registry, uint64_t seed);
  ~Guide() override;

  const std::string& family() const noexcept { return family_; }
  const LatentRegistry& registry() const noexcept { return registry_; }
  std::vector<std::string> latent_names() const { return registry_.names(); }

  virtual SiteValues rsample(const at::Tensor& x) = 0;
  virtual at::Tensor log_prob(const at::Tensor& x, const SiteValues& values) = 0;

  /// Exact draws from q for output (summaries, draws files); no gradient needed.
  /// Default: rsample. A guide whose rsample is a relaxation (the Gumbel-softmax
  /// mixture) returns exact draws here.
  virtual SiteValues sample(const at::Tensor& x);

  /// The guide's ELBO estimator, a differentiable scalar. Default: the mean over the
  /// S = x.size(0) particles of log p(x, z_s) - log q(z_s), z_s from rsample. A family
  /// with a better estimator overrides it (the mixture's stratified estimator).
  virtual at::Tensor elbo(const Model& model, const at::Tensor& x);

  /// Start the guide at `location`, a point of the registry's flat unconstrained
  /// space, shape (D,), with spread `scale`: either the (D,) marginal standard
  /// deviations or a (D, D) lower-triangular factor L of the covariance L Lᵀ, or
  /// undefined (the family keeps its own scale). The host's init strategies call it
  /// (the default, Pathfinder, passes a full factor when D is small enough, else the
  /// diagonal). A family uses what it can hold: mean-field the marginal sds, full
  /// rank the factor, low rank its leading directions, flows their elementwise
  /// affine layer, point masses only the location. Default: NoLocation (an
  /// std::invalid_argument) saying the family has no location. `marginal_sd(scale)` and `scale_factor(...)`
  /// convert between the two forms.
  virtual void initialize(const at::Tensor& location, const at::Tensor& scale);

  /// Parameters measured in the units of the latent space, with the per-element
  /// multiplier of the optimiser's step for each: the runtime takes a location's
  /// step in units of the guide's current scale (so a posterior sd of 1e-3 and one of
  /// 30 are fitted alike), i.e. `p += scale ⊙ Δ` where Δ is the optimiser's step.
  /// Each `scale` is detached, positive and broadcastable to its parameter; or, for
  /// a (D,) parameter, a (D, D) lower-triangular factor L: the step is then taken in
  /// L's coordinates, the gradient mapped by Lᵀ before the optimiser and its step
  /// by L after it (a full-rank location on a ridge: marginal units step across it).
  /// Default: none (every step as the optimiser takes it).
  struct StepScale {
    at::Tensor parameter;
    at::Tensor scale;
  };
  virtual std::vector<StepScale> step_scales() const { return {}; }

  virtual void before_step(const StepInfo& /*info*/) {}
  virtual void after_fit(const FitContext& /*context*/) {}

  /// Named numbers a family wants reported with the fit (the host logs them and
  /// writes them to the summary), e.g. {"laplace.num_clamped", 2}.
  virtual std::map<std::string, double> diagnostics() const { return {}; }

  /// The floating-point type of the guide's parameters (float32 before a fit
  /// converts them; the runtime draws particles of this type).
  at::ScalarType dtype() const;

  /// The generator all of this guide's noise is drawn from.
  at::Generator& generator() noexcept { return generator_; }
  void set_seed(uint64_t seed);

 protected:
  /// S = x.size(0). @throw std::invalid_argument if x has no leading dim or S < 1.
  static int64_t num_particles(const char* function, const at::Tensor& x);
  /// Copies `location` (D,) into `parameter` without recording it for autograd.
  /// @throw std::invalid_argument if the sizes differ or a value is not finite.
  void copy_location(at::Tensor& parameter, const at::Tensor& location) const;
  /// Checks an initial `scale` for a latent dimension D (undefined is fine).
  /// @throw std::invalid_argument if it is neither (D,) nor (D, D), or has a
  ///        non-finite or non-positive standard deviation.
  void check_scale(const at::Tensor& scale, int64_t D) const;

 private:
  std::string family_;
  LatentRegistry registry_;
  at::Generator generator_;
};

/// The marginal standard deviations (D,) of an initial scale: itself if (D,), the
/// row norms of a factor L if (D, D).
VGUIDE_API at::Tensor marginal_sd(const at::Tensor& scale);

/// A particle template for S draws: shape (S, 0), float32 on the CPU unless told.
VGUIDE_API at::Tensor particles(int64_t S, at::ScalarType dtype = at::kFloat);

}  // namespace vguide
