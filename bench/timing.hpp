#pragma once
/// Wall-clock timing of two step functions, interleaved block by block so that both
/// see the same machine load (the suite's machines are shared): warm-up, then
/// `blocks` alternating blocks of each, reported as the median over blocks of the
/// time per step: wall time, and the process's CPU time, which on a loaded machine
/// leaves out the time the process waited for a core (it still counts the threads'
/// spinning and the cache misses other processes cause).
///
/// Example: auto [fw, base] = vguide::bench::time_pair([&] { svi.step(); }, [&] { hand->step(); }, settings);
#include <algorithm>
#include <chrono>
#include <ctime>
#include <cmath>
#include <cstdint>
#include <utility>
#include <vector>

namespace vguide::bench {

struct TimingSettings {
  int64_t warmup_steps = 10;       ///< at least this many steps before timing ...
  double warmup_seconds = 0.15;    ///< ... and at least this long
  double block_seconds = 0.025;    ///< steps per block are chosen to last about this long
  int blocks = 21;                 ///< blocks of each function
};

struct Timing {
  double median_us = 0;  ///< median over blocks of the mean time per step
  double q1_us = 0;      ///< first quartile over blocks
  double q3_us = 0;      ///< third quartile over blocks
  double cpu_median_us = 0;  ///< median over blocks of the process CPU time per step
  int64_t steps_per_block = 0;
  int blocks = 0;
};

namespace detail {

inline double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

inline double cpu_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

// Runs `f` until both warm-up limits are met; returns the median step time of the
// second half of the warm-up (the first steps allocate and fill caches).
template <class F>
double warm_up(F& f, const TimingSettings& s) {
  std::vector<double> times;
  const auto start = std::chrono::steady_clock::now();
  while (static_cast<int64_t>(times.size()) < s.warmup_steps || seconds_since(start) < s.warmup_seconds) {
    const auto t0 = std::chrono::steady_clock::now();
    f();
    times.push_back(seconds_since(t0));
  }
  std::vector<double> tail(times.begin() + static_cast<std::ptrdiff_t>(times.size() / 2), times.end());
  std::nth_element(tail.begin(), tail.begin() + static_cast<std::ptrdiff_t>(tail.size() / 2), tail.end());
  return tail[tail.size() / 2];
}

inline double quantile(std::vector<double> v, double q) {
  std::sort(v.begin(), v.end());
  const double pos = q * static_cast<double>(v.size() - 1);
  const auto lo = static_cast<size_t>(std::floor(pos));
  const auto hi = std::min(lo + 1, v.size() - 1);
  return v[lo] + (pos - static_cast<double>(lo)) * (v[hi] - v[lo]);
}

inline Timing summarize(const std::vector<double>& wall_us, const std::vector<double>& cpu_us,
                        int64_t steps_per_block) {
  return {quantile(wall_us, 0.5), quantile(wall_us, 0.25), quantile(wall_us, 0.75), quantile(cpu_us, 0.5),
          steps_per_block, static_cast<int>(wall_us.size())};
}

// One block of n steps: (wall, CPU) microseconds per step.
template <class F>
std::pair<double, double> time_block(F& f, int64_t n) {
  const double c0 = cpu_seconds();
  const auto t0 = std::chrono::steady_clock::now();
  for (int64_t i = 0; i < n; ++i) f();
  const double wall = seconds_since(t0);
  const double cpu = cpu_seconds() - c0;
  return {1e6 * wall / static_cast<double>(n), 1e6 * cpu / static_cast<double>(n)};
}

}  // namespace detail

template <class F, class G>
std::pair<Timing, Timing> time_pair(F&& a, G&& b, const TimingSettings& s) {
  const double ta = detail::warm_up(a, s);
  const double tb = detail::warm_up(b, s);
  const auto steps_for = [&](double t) {
    return std::max<int64_t>(1, static_cast<int64_t>(std::llround(s.block_seconds / std::max(t, 1e-9))));
  };
  const int64_t na = steps_for(ta), nb = steps_for(tb);
  std::vector<double> wa, ca, wb, cb;
  for (int k = 0; k < s.blocks; ++k) {
    const auto [w1, c1] = detail::time_block(a, na);
    wa.push_back(w1);
    ca.push_back(c1);
    const auto [w2, c2] = detail::time_block(b, nb);
    wb.push_back(w2);
    cb.push_back(c2);
  }
  return {detail::summarize(wa, ca, na), detail::summarize(wb, cb, nb)};
}

}  // namespace vguide::bench
