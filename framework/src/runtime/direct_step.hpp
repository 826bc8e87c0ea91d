#pragma once
// The direct step (internal to Fit; docs/performance.md#the-direct-step): for a
// family that declares a location-scale structure (location_scale.hpp: a point, a
// diagonal, a full-rank or a low-rank Gaussian), a model whose log joint is
// compiled (DirectLogJoint) and element-wise bijectors, the ELBO and its
// gradient in the guide's parameters are computed in plain loops: draw ε from the
// guide's stream as its rsample would, form z and the constrained values, take the
// log joint's gradient from the model, chain it through the bijectors (with their
// log-det gradients) and add the entropy's closed-form gradient. Fit then applies
// the update exactly as after backward(), so averaging, stopping, checkpoints and
// the non-finite guard are the same.
#include <ATen/core/Tensor.h>

#include <memory>
#include <string>
#include <vector>

#include "vguide/guide.hpp"
#include "vguide/model.hpp"
#include "vguide/model/direct_log_joint.hpp"
#include "vguide/runtime/objective.hpp"

namespace vguide::detail {

class DirectStep {
 public:
  /// The direct step for this fit, or null with the reason in `why`: the family, the
  /// objective and the sites allow it. Whether the model's log joint is compiled for
  /// the rows it evaluates is asked at each step (`applies`), as the rows can change
  /// after the fit starts (a minibatch). `any_size`: whether to ignore the model's
  /// rule of when its compiled form pays.
  static std::unique_ptr<DirectStep> make(const Model& model, Guide& guide, const ObjectiveOptions& objective,
                                          bool any_size, std::string& why);

  /// Whether this step can be direct (the model may have been set to minibatches).
  bool applies() const { return model_.direct_applies(S_, any_size_); }
  /// Why it cannot, when it cannot.
  std::string why_not() const;
  /// Whether the direct step agrees with autograd at its first step (checked once,
  /// when it first applies); if not, why.
  bool agrees(std::string& why);
  /// Draws S particles from the guide's stream and writes the gradient of -ELBO into
  /// the parameters' grads. Returns the ELBO estimate; `finite` says whether it and
  /// every gradient are finite.
  double run(bool& finite);

 private:
  struct Site {
    int64_t offset = 0, numel = 0;  // in z (the constrained value has as many elements)
    enum class Map { identity, exp, interval } map = Map::identity;
    double origin = 0.0, sign = 1.0;  // exp: origin + sign * e^z
    double lower = 0.0, width = 1.0;  // interval: lower + width * sigmoid(z)
    int tape = 0;                     // the model's latent number
  };
  enum class Form { point, diagonal, tril, low_rank };
  std::string disagreement();
  DirectStep(const Model& full_model, const model::DirectLogJoint& model, Guide& guide, ObjectiveOptions objective,
             bool any_size)
      : full_model_(full_model),
        model_(model),
        guide_(guide),
        objective_(std::move(objective)),
        S_(objective_.particles),
        any_size_(any_size) {}
  // From the noise to z (z_) and the entropy -Σ log q over the particles; then from
  // dz (d ELBO / dz per particle, in dz_) to the parameters' gradients of -ELBO.
  double draw_diagonal();
  double draw_tril();
  double draw_low_rank();
  void gradients_diagonal();
  void gradients_tril();
  void gradients_low_rank();

  const Model& full_model_;
  const model::DirectLogJoint& model_;
  Guide& guide_;
  ObjectiveOptions objective_;
  int64_t S_;
  bool any_size_;
  bool checked_ = false;  // the start-up check ran
  std::string disagrees_;  // its verdict
  bool stick_the_landing_ = false;
  Form form_ = Form::point;
  // The declared parameters: loc, then (diagonal) log_scale, (tril) offdiag and
  // diag_raw, or (low rank) cov_factor and diag_raw.
  std::vector<at::Tensor> params_;
  at::Tensor eps_, eps_w_;  // the noise, drawn in the parameters' dtype: (S, D), (S, r)
  std::vector<Site> sites_;
  int64_t D_ = 0, r_ = 0;
  // Scratch, particle-major; sized once by make.
  std::vector<double> z_, dv_, dladj_, dz_, log_p_;
  std::vector<std::vector<double>> values_, grads_;  // per model latent
  std::vector<const double*> value_ptrs_;
  std::vector<double*> grad_ptrs_;
  std::vector<std::vector<double>> param_values_, param_grads_;  // per declared parameter
  std::vector<double> eps_values_, eps_w_values_, scale_, factor_, work_, small_, small_inverse_;
};

}  // namespace vguide::detail
