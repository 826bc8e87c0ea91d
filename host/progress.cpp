#include "progress.hpp"

#include <spdlog/spdlog.h>

#include <cmath>
#include <cstdio>

namespace vguide::host {

Progress::Progress(bool quiet, bool terminal)
    : quiet_(quiet), terminal_(terminal), start_(std::chrono::steady_clock::now()), last_draw_(start_) {}

void Progress::operator()(const StepReport& r) {
  if (quiet_) return;
  if (first_step_ < 0) first_step_ = r.step - 1;
  if (!r.skipped) {
    // An exponential moving average over about 50 steps: the per-step estimate is noisy.
    smoothed_ = finite_ == 0 ? r.objective : 0.98 * smoothed_ + 0.02 * r.objective;
    ++finite_;
  }
  const auto now = std::chrono::steady_clock::now();
  const double elapsed = std::chrono::duration<double>(now - start_).count();
  const double rate = elapsed > 0 ? static_cast<double>(r.step - first_step_) / elapsed : 0.0;
  const double eta = rate > 0 ? static_cast<double>(r.steps - r.step) / rate : 0.0;
  if (terminal_) {
    if (r.step != r.steps && now - last_draw_ < std::chrono::milliseconds(100)) return;
    last_draw_ = now;
    std::fprintf(stderr, "\r\033[Kstep %lld/%lld  ELBO %.4g  %.0f steps/s  ETA %.0fs", static_cast<long long>(r.step),
                 static_cast<long long>(r.steps), smoothed_, rate, eta);
    std::fflush(stderr);
    drawn_ = true;
    return;
  }
  const int64_t every = std::max<int64_t>(1, r.steps / 10);
  if (r.step % every == 0 || r.step == r.steps)
    spdlog::info("step {}/{}  ELBO {:.6g} (smoothed)  {:.0f} steps/s  ETA {:.0f}s", r.step, r.steps, smoothed_, rate,
                 eta);
}

void Progress::done() {
  if (drawn_) std::fputc('\n', stderr);
  drawn_ = false;
}

}  // namespace vguide::host
