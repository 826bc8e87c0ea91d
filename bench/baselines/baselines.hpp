#pragma once
/// Hand-written LibTorch SVI steps, one per model of the suite: the floor the
/// framework's step is measured against, in the same process and the same run.
///
/// Each is what a user would write without vguide: the mean-field Normal guide as a
/// loc and a log-scale tensor per latent site, the model's log joint written out with
/// one LibTorch op per formula term (normalising constants included), the positive
/// site through exp with its log-Jacobian, and torch::optim::Adam (lr 0.01) over the
/// per-site tensors. No framework code runs in a step; only the data are taken from
/// the same vguide::model::Data the framework's model is bound to (converted to the
/// step's dtype once, at construction).
///
/// Example: auto base = vguide::bench::make_baseline(spec, md.data, /*S=*/1, /*B=*/0, /*seed=*/1, at::kDouble);
///          base->step();
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "../models.hpp"

namespace vguide::bench {

class Baseline {
 public:
  /// A latent site in model order. These models' sites are all real or positive,
  /// so the unconstrained shape is the site's shape.
  struct Site {
    std::string name;
    std::vector<int64_t> shape;
    at::Tensor loc;        ///< shape, requires grad
    at::Tensor log_scale;  ///< shape, requires grad
  };

  virtual ~Baseline() = default;

  /// The sites with their variational parameters (shared tensors, not copies).
  virtual std::vector<Site> sites() const = 0;
  /// The ELBO estimate for the given unconstrained standard-Normal noise, one
  /// (S, *shape) tensor per site in sites() order, over the data rows `rows` (an
  /// int64 index; undefined for all rows), scaled by N/B when subsampled.
  virtual at::Tensor elbo(const std::vector<at::Tensor>& eps, const at::Tensor& rows) = 0;
  /// One SVI step: draw noise (and B random rows, with replacement, if B < N),
  /// zero the gradients, backward through -ELBO, Adam update.
  virtual void step() = 0;
};

/// The baseline of `spec`'s model with S particles and batch size B (0: all rows).
/// @throw std::invalid_argument for a minibatch on a model without one (only the
///        logistic regression subsamples), or B > N.
std::unique_ptr<Baseline> make_baseline(const ModelSpec& spec, const model::Data& data, int64_t S, int64_t B,
                                        uint64_t seed, at::ScalarType dtype = at::kFloat);

}  // namespace vguide::bench
