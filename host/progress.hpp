#pragma once
// Progress of a fit: a live line on a terminal (step, smoothed ELBO, steps/s, ETA),
// a plain log line every tenth of the fit otherwise, nothing when quiet.
#include <chrono>
#include <cstdint>

#include "vguide/runtime/fit.hpp"

namespace vguide::host {

class Progress {
 public:
  Progress(bool quiet, bool terminal);
  void operator()(const StepReport& report);
  /// Ends the live line (a newline) if one was drawn.
  void done();

 private:
  bool quiet_, terminal_;
  bool drawn_ = false;
  double smoothed_ = 0.0;
  int64_t finite_ = 0;
  int64_t first_step_ = -1;
  std::chrono::steady_clock::time_point start_, last_draw_;
};

}  // namespace vguide::host
