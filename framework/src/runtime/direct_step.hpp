#pragma once
// The direct step (internal to Fit; docs/performance.md#the-direct-step): for a
// family that declares z = loc + exp(log_scale) ⊙ ε (or z = loc), a model whose log
// joint is compiled (DirectLogJoint) and element-wise bijectors, the ELBO and its
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
  /// The direct step for this fit, or null with the reason in `why`. `any_size`:
  /// whether to ignore the model's rule of when its compiled form pays.
  static std::unique_ptr<DirectStep> make(const Model& model, Guide& guide, const ObjectiveOptions& objective,
                                          bool any_size, std::string& why);

  /// Whether this step can be direct (the model may have been set to minibatches).
  bool applies() const { return model_.direct_applies(S_, any_size_); }
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
  std::string disagreement(const Model& model, const ObjectiveOptions& objective);
  DirectStep(const model::DirectLogJoint& model, Guide& guide, int64_t S, bool any_size)
      : model_(model), guide_(guide), S_(S), any_size_(any_size) {}

  const model::DirectLogJoint& model_;
  Guide& guide_;
  int64_t S_;
  bool any_size_;
  bool stick_the_landing_ = false;
  at::Tensor loc_, log_scale_, eps_;  // eps_: (S, D) in the parameters' dtype
  std::vector<Site> sites_;
  int64_t D_ = 0;
  // Scratch, particle-major.
  std::vector<double> z_, dv_, dladj_, log_p_, grad_loc_, grad_log_scale_;
  std::vector<std::vector<double>> values_, grads_;  // per model latent
  std::vector<const double*> value_ptrs_;
  std::vector<double*> grad_ptrs_;
  std::vector<double> loc_values_, log_scale_values_, eps_values_, scale_;
};

}  // namespace vguide::detail
