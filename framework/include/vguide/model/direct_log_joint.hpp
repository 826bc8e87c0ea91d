#pragma once
/// A model front-end whose log joint can be evaluated with its gradient in plain
/// loops over double buffers, with no LibTorch op: what the fit's direct step uses
/// (docs/performance.md). ProgramModel and StanModel offer it when their log joint is
/// compiled to the fused tape.
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "vguide/export.hpp"

namespace vguide::model {

class VGUIDE_API DirectLogJoint {
 public:
  virtual ~DirectLogJoint();
  /// Whether the log joint has a direct form now for S particles: it is compiled for
  /// the rows the model evaluates (all of them, a rank's block, or a minibatch). With
  /// `any_size` false, also whether the model's size rule for the direct step takes
  /// the compiled form at this size (rather than LibTorch's kernels, for large data).
  virtual bool direct_applies(int64_t S, bool any_size) const = 0;
  /// The latent sites in the order direct_log_joint takes them.
  virtual std::vector<std::string> direct_latents() const = 0;
  /// The log joint of S particles into `log_joint` (S doubles) and its gradient with
  /// respect to each latent's constrained values added into `grads[k]`. `latents[k]`
  /// and `grads[k]`: S * numel(site k) contiguous doubles, particle-major.
  virtual void direct_log_joint(int64_t S, const std::vector<const double*>& latents, double* log_joint,
                                const std::vector<double*>& grads) const = 0;
  /// A function that puts the model's stream of minibatch rows back where it is now
  /// (empty if the model draws no rows): the fit's start-up check evaluates one step
  /// both ways, and both must see the same rows.
  virtual std::function<void()> rows_rewinder() const { return {}; }
  /// Why the log joint has no compiled form for the rows it evaluates ("" if it has,
  /// or if the model does not say).
  virtual std::string direct_blocker() const { return {}; }
};

}  // namespace vguide::model
