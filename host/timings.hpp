#pragma once
// `vguide-host --timings`: one stderr line per phase of a run (docs/cli.md), so that
// the time from process start to written outputs can be taken apart.
#include <chrono>
#include <string>

namespace vguide::host {

/// Marks the end of each phase of a run and says how long it took. Constructed at the
/// top of vguide::host::main, before the flags are read (it costs two clock reads when
/// it stays off); `enable` once --timings is seen says the time from process start to
/// main, and every `phase` after that says one line through `say`:
///   timing: start to main: 612 ms
///   timing: options: 0.4 ms
///   ...
///   timing: total: 1480 ms
class PhaseTimer {
 public:
  using Say = void (*)(const std::string& line);
  explicit PhaseTimer(Say say);

  /// Turns the lines on and says "start to main": the time from the process's start
  /// (/proc/self/stat, in clock ticks of 10 ms) to this object's construction, i.e.
  /// loading the shared libraries and their static initialisers.
  void enable();
  bool enabled() const { return enabled_; }

  /// "timing: NAME: T ms" for the time since the previous phase ended (or main began).
  void phase(const char* name);

  /// "timing: total: T ms": process start to now (start to main + every phase).
  void total();

 private:
  Say say_;
  bool enabled_ = false;
  std::chrono::steady_clock::time_point main_, last_;
  double boot_seconds_at_main_ = 0;  ///< CLOCK_BOOTTIME at main, the clock /proc's starttime counts on
  double start_to_main_ms_ = 0;
};

/// Seconds from the process's start to CLOCK_BOOTTIME `boot_seconds_now`, from
/// /proc/self/stat's starttime (field 22, clock ticks since boot; a tick is 10 ms on
/// Linux, so the result is late by up to one tick). Negative if it cannot be read.
double seconds_since_process_start(double boot_seconds_now);

}  // namespace vguide::host
