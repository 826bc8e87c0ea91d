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
  /// space, shape (D,): the mean / mode of the guide before fitting (the host's init
  /// strategies). Default: std::invalid_argument saying the family has no location.
  /// A family with a location parameter overrides it with `copy_location`.
  virtual void initialize(const at::Tensor& location);

  virtual void before_step(const StepInfo& /*info*/) {}
  virtual void after_fit(const FitContext& /*context*/) {}

  /// Named numbers a family wants reported with the fit (the host logs them and
  /// writes them to the summary), e.g. {"laplace.num_clamped", 2}.
  virtual std::map<std::string, double> diagnostics() const { return {}; }

  /// The generator all of this guide's noise is drawn from.
  at::Generator& generator() noexcept { return generator_; }
  void set_seed(uint64_t seed);

 protected:
  /// S = x.size(0). @throw std::invalid_argument if x has no leading dim or S < 1.
  static int64_t num_particles(const char* function, const at::Tensor& x);
  /// Copies `location` (D,) into `parameter` without recording it for autograd.
  /// @throw std::invalid_argument if the sizes differ or a value is not finite.
  void copy_location(at::Tensor& parameter, const at::Tensor& location) const;

 private:
  std::string family_;
  LatentRegistry registry_;
  at::Generator generator_;
};

/// A particle template for S draws: shape (S, 0), float32 on the CPU unless told.
VGUIDE_API at::Tensor particles(int64_t S, at::ScalarType dtype = at::kFloat);

}  // namespace vguide
