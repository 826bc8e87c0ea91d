#pragma once
/// Stan ADVI's stopping rule. Every `eval_elbo` steps the ELBO is estimated with
/// `elbo_particles` fresh draws; its relative change |(elbo - previous) / elbo| goes
/// into a circular buffer of max(0.1 * max_steps / eval_elbo, 2) entries, and the fit
/// stops once the mean (rule `mean`) or the median (rule `median`) of the buffer is
/// below `tol_rel_obj`; rule `either` stops on the first of the two, as Stan does.
/// As in Stan, the first evaluation is compared with the lowest double, so its
/// relative change is huge and the mean can converge only once it has left the
/// buffer.
///
/// Example: vguide::AdviConvergence rule({vguide::ConvergenceRule::median}, 10000);
///          if (auto why = rule.update(elbo)) ... // "median"
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "vguide/export.hpp"

namespace vguide {

/// `automatic` ("auto", the default) is the averaging rule of averaging.hpp; the
/// others are Stan ADVI's rule on the ELBO (`none`: run every step).
enum class ConvergenceRule { none, mean, median, either, automatic };

struct ConvergenceOptions {
  ConvergenceRule rule = ConvergenceRule::automatic;
  double tol_rel_obj = 0.01;    ///< Stan's default
  int64_t eval_elbo = 100;      ///< steps between evaluations (Stan's default)
  int64_t elbo_particles = 100;  ///< draws per evaluation (Stan's elbo_samples)
};

/// @throw std::invalid_argument naming the bad setting.
VGUIDE_API void validate(const ConvergenceOptions& options);

class VGUIDE_API AdviConvergence {
 public:
  AdviConvergence(ConvergenceOptions options, int64_t max_steps);

  /// Record one evaluation; returns the rule that fired ("mean" or "median"), if any.
  std::optional<std::string> update(double elbo);

  /// Whether an evaluation is due after `steps_done` steps.
  bool due(int64_t steps_done) const noexcept;

  double mean_relative_change() const;
  double median_relative_change() const;
  const std::vector<double>& buffer() const noexcept { return buffer_; }

  /// For checkpoints: the buffer (oldest first) and the previous ELBO.
  void restore(std::vector<double> buffer, double previous);
  double previous() const noexcept { return previous_; }

 private:
  ConvergenceOptions options_;
  size_t capacity_;
  std::vector<double> buffer_;  ///< oldest first
  double previous_;
};

/// "auto" | "none" | "mean" | "median" | "either". @throw std::invalid_argument.
VGUIDE_API ConvergenceRule parse_convergence_rule(const std::string& name);
VGUIDE_API std::string to_string(ConvergenceRule rule);

}  // namespace vguide
