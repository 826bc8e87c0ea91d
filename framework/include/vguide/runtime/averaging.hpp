#pragma once
/// Iterate averaging and the default stopping rule, after Dhaka, Catalina, Andersen,
/// Magnusson, Huggins & Vehtari, "Robust, accurate stochastic optimization for
/// variational inference" (NeurIPS 2020, arXiv:2009.00666).
///
/// A fit with a fixed step size does not converge to a point: its iterates wander
/// around the optimum, and the last one is one noisy draw of that wandering. This
/// class watches the iterates of the fit's parameters (those measured in latent
/// units, Guide::step_scales, when the family declares some; else all), at most
/// `monitor` elements of them:
///  1. Stationarity: every `check_every` steps, the last half of the fit so far (at
///     most `window` steps) is cut in two, and each watched element's mean over the
///     newer half is compared with its mean over the older half, in the element's
///     unit. When the largest drift is below `drift` (a tenth of a posterior sd for a
///     location), the iterates have stopped moving and averaging starts. A fit that
///     never gets there keeps its last iterate (and the host warns that it did not
///     converge); the rule depends on the steps done alone, never on the steps
///     planned, so a resumed fit averages exactly as an uninterrupted one. Dhaka et al. use split-R̂ here; with Adam's
///     autocorrelated iterates (about 1/lr steps) R̂ over a few hundred steps stays
///     far above 1.1 long after the drift has ended (measured: 2.5 on eight schools
///     after 10 000 steps), while the drift in units asks the question that matters.
///  2. Stopping: once at least `min_steps` steps are averaged, the Monte Carlo
///     standard error of every watched element's average (batch means) is compared
///     with `mcse` in the element's unit (its step scale: the guide's own sd for a
///     location, so 0.02 means "known to 2% of a posterior sd"). All below: converged.
/// The averages of every parameter (all of them, not only the watched ones) are what
/// apply() writes back into the guide at the end of the fit.
///
/// Example: vguide::IterateAverager avg(params, watched, {});
///          ... after each finite step: avg.record();
///          if (auto why = avg.check(step, units)) stop;  ... avg.apply();
///
/// Checks on many elements at once compare maxima, so a few noisy elements delay the
/// start and the stop a little; at most 20 000 steps bound both.
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "vguide/export.hpp"

namespace torch::serialize {
class InputArchive;
class OutputArchive;
}  // namespace torch::serialize

namespace vguide {

struct AveragingOptions {
  bool enabled = true;        ///< average the iterates (the outputs use the averages)
  int64_t check_every = 100;  ///< steps between checks
  double drift = 0.1;         ///< drift between the window's halves below which the iterates are stationary
  double mcse = 0.02;         ///< stop when every watched average is known to this, in its unit
  int64_t min_steps = 500;    ///< averaged steps before the rule may stop the fit
  int64_t window = 2000;      ///< most recent steps kept for the drift
  int64_t monitor = 1000;     ///< most elements watched (evenly spaced when there are more)
};

/// @throw std::invalid_argument naming the bad setting.
VGUIDE_API void validate(const AveragingOptions& options);

class VGUIDE_API IterateAverager {
 public:
  /// `params`: every parameter of the guide (averaged); `watched[i]`: whether params[i]
  /// is watched.
  IterateAverager(std::vector<at::Tensor> params, const std::vector<bool>& watched, AveragingOptions options);

  /// After every step with an update (the parameters have their new values).
  void record();
  /// At every step: whether a check is due, and if so the check. `units[i]` is the
  /// current unit of params[i] (broadcastable to it; undefined: 1). Returns why the
  /// fit may stop ("iterates stationary from step 700 (drift 0.041 of a unit); 1200
  /// steps averaged, MCSE 0.0180 of a unit").
  std::optional<std::string> check(int64_t step, const std::vector<at::Tensor>& units);

  bool averaging() const noexcept { return count_ > 0; }
  int64_t averaging_from() const noexcept { return start_; }
  int64_t averaged_steps() const noexcept { return count_; }
  double last_drift() const noexcept { return last_drift_; }
  double last_mcse() const noexcept { return last_mcse_; }

  /// Writes the averages into the parameters (no-op before any averaging).
  void apply();

  void save(torch::serialize::OutputArchive& archive) const;
  void load(torch::serialize::InputArchive& archive);

 private:
  at::Tensor watched_values() const;
  at::Tensor watched_units(const std::vector<at::Tensor>& units) const;
  void start_averaging(int64_t step);

  std::vector<at::Tensor> params_;
  std::vector<at::Tensor> indices_;  ///< per param: watched flat indices (int64), maybe empty
  AveragingOptions options_;
  int64_t watched_count_ = 0;
  // Recent watched values, a ring of `window` rows.
  bool record_plain();
  at::Tensor ring_;
  int64_t ring_next_ = 0, ring_filled_ = 0;
  // Averaging.
  int64_t start_ = -1, count_ = 0;
  std::vector<at::Tensor> sums_;  ///< per param, float64
  at::Tensor batch_sum_;          ///< watched, the current batch
  int64_t batch_size_ = 10, batch_filled_ = 0;
  std::vector<at::Tensor> batch_means_;
  double last_drift_ = 0.0, last_mcse_ = 0.0;
};

}  // namespace vguide
