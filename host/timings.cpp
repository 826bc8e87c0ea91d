#include "timings.hpp"

#include <time.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <sstream>

namespace vguide::host {

namespace {

double boot_seconds() {
  timespec t{};
  ::clock_gettime(CLOCK_BOOTTIME, &t);
  return static_cast<double>(t.tv_sec) + 1e-9 * static_cast<double>(t.tv_nsec);
}

std::string ms_text(double ms) {
  char buf[32];
  // Sub-millisecond phases keep a decimal; long ones do not pretend to it.
  std::snprintf(buf, sizeof buf, ms < 100 ? "%.1f ms" : "%.0f ms", ms);
  return buf;
}

}  // namespace

double seconds_since_process_start(double boot_seconds_now) {
  std::ifstream in("/proc/self/stat");
  std::string stat;
  if (!std::getline(in, stat)) return -1;
  // The command name (field 2) is in parentheses and may hold spaces: count fields
  // after its closing one. starttime is field 22: skip fields 3 to 21.
  const auto close = stat.rfind(')');
  if (close == std::string::npos) return -1;
  std::istringstream fields(stat.substr(close + 1));
  std::string field;
  for (int i = 3; i <= 21 && (fields >> field); ++i) {
  }
  unsigned long long ticks = 0;
  if (!(fields >> ticks)) return -1;
  const long hz = ::sysconf(_SC_CLK_TCK);
  if (hz <= 0) return -1;
  return boot_seconds_now - static_cast<double>(ticks) / static_cast<double>(hz);
}

PhaseTimer::PhaseTimer(Say say)
    : say_(say), main_(std::chrono::steady_clock::now()), last_(main_), boot_seconds_at_main_(boot_seconds()) {}

void PhaseTimer::enable() {
  if (enabled_) return;
  enabled_ = true;
  const double s = seconds_since_process_start(boot_seconds_at_main_);
  if (s < 0) {
    say_("timing: start to main: unknown (/proc/self/stat cannot be read)");
    return;
  }
  start_to_main_ms_ = 1e3 * s;
  say_("timing: start to main: " + ms_text(start_to_main_ms_));
}

void PhaseTimer::phase(const char* name) {
  const auto now = std::chrono::steady_clock::now();
  const double ms = std::chrono::duration<double, std::milli>(now - last_).count();
  last_ = now;
  if (enabled_) say_(std::string("timing: ") + name + ": " + ms_text(ms));
}

void PhaseTimer::total() {
  if (!enabled_) return;
  const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - main_).count();
  say_("timing: total: " + ms_text(start_to_main_ms_ + ms));
}

}  // namespace vguide::host
