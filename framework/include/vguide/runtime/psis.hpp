#pragma once
/// Pareto-smoothed importance sampling (PSIS) and its k̂ diagnostic of a guide
/// against the posterior.
///
/// References: Vehtari, Simpson, Gelman, Yao, Gabry, "Pareto smoothed importance
/// sampling", JMLR 25 (2024), arXiv:1507.02646; Yao, Vehtari, Simpson, Gelman, "Yes,
/// but did it work?: Evaluating variational inference", ICML 2018, arXiv:1802.02538;
/// Zhang, Stephens, "A new and efficient estimation method for the generalized Pareto
/// distribution", Technometrics 51 (2009).
///
/// Example: auto r = vguide::psis(log_p - log_q);  r.khat;  vguide::khat_reading(r.khat);
#include <ATen/core/Tensor.h>

#include <cstdint>

#include "vguide/export.hpp"

namespace vguide {

/// The fewest draws psis() accepts: the generalized Pareto fit needs a tail of at
/// least 5 draws (as in loo), and min(ceil(0.2 M), ceil(3 sqrt(M))) >= 5 from M = 21 on.
inline constexpr int64_t kPsisMinDraws = 21;

struct PsisResult {
  /// Estimated Pareto shape of the upper tail of the importance ratios. -inf when the
  /// tail is flat (all of its ratios equal: nothing to smooth, e.g. an exact guide);
  /// +inf when the generalized Pareto fit failed (its weights are then only truncated).
  double khat;
  at::Tensor log_weights;  ///< (M,) float64, Pareto-smoothed and normalised (logsumexp = 0)
  int64_t tail_length;     ///< number of draws in the fitted tail
};

/// PSIS of M draws from q, as the loo R package does it for independent draws:
/// the M_tail = min(ceil(0.2 M), ceil(3 sqrt(M))) largest ratios are replaced by the
/// expected order statistics of a generalized Pareto distribution fitted (Zhang &
/// Stephens's empirical Bayes estimate, then loo's weakly informative prior
/// k <- (n k + 10 * 0.5) / (n + 10)) to their exceedances over the next largest ratio;
/// every weight is then truncated at the largest raw ratio and the weights normalised.
/// All arithmetic is in double, after shifting by the largest log ratio.
/// @param log_ratios (M,) log p(x, z_m) - log q(z_m) of M draws z_m from q; any
///   floating dtype, any device.
/// @throw std::invalid_argument if log_ratios is not a floating vector, has fewer than
///   kPsisMinDraws entries, or has entries that are not finite (the message gives the count).
VGUIDE_API PsisResult psis(const at::Tensor& log_ratios);

/// The usual reading of k̂: "good" (k < 0.5), "ok" (k < 0.7), "bad" (otherwise,
/// NaN included: do not trust the guide).
VGUIDE_API const char* khat_reading(double khat);

}  // namespace vguide
