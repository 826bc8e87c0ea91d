#pragma once
/// Apples to apples: each hand-written baseline must compute the same ELBO, and the
/// same gradients, as the framework's `normal` guide on the same model, given the
/// same variational parameters and the same noise. The driver runs this before it
/// times anything (and the CTest smoke run fails if it does not hold).
#include <string>
#include <vector>

#include "vguide/runtime/plugin_manager.hpp"

namespace vguide::bench {

struct CheckResult {
  std::string name;  ///< the model and what is compared
  int64_t S = 0;
  double framework = 0;  ///< the framework's ELBO (or the full-batch ELBO)
  double other = 0;      ///< the baseline's ELBO (or the minibatch ELBO)
  double max_grad_diff = 0;  ///< max |gradient difference| over loc and log_scale (0 if not compared)
  double max_grad = 0;       ///< max |gradient| of the framework
  bool ok = false;
};

/// Every model of the suite at small sizes, S = 1 and S = 5, plus minibatch scaling:
/// on data whose rows are all equal, a minibatch ELBO must equal the full one, for
/// the framework and for the baseline. `plugins` must have `normal` loaded.
std::vector<CheckResult> check_baselines(PluginManager& plugins, const std::string& source_dir);

}  // namespace vguide::bench
