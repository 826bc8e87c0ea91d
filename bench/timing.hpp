#pragma once
/// Wall-clock timing of two step functions, interleaved block by block so that both
/// see the same machine load (the suite's machines are shared): warm-up, then
/// `blocks` alternating blocks of each, reported as the median over blocks of the
/// time per step.
///
/// Example: auto [fw, base] = vguide::bench::time_pair([&] { svi.step(); }, [&] { hand->step(); }, settings);
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <utility>
#include <vector>

namespace vguide::bench {

struct TimingSettings {
  int64_t warmup_steps = 10;       ///< at least this many steps before timing ...
  double warmup_seconds = 0.15;    ///< ... and at least this long
  double block_seconds = 0.025;    ///< steps per block are chosen to last about this long
  int blocks = 15;                 ///< blocks of each function
};

struct Timing {
  double median_us = 0;  ///< median over blocks of the mean time per step
  double q1_us = 0;      ///< first quartile over blocks
  double q3_us = 0;      ///< third quartile over blocks
  int64_t steps_per_block = 0;
  int blocks = 0;
};

namespace detail {

inline double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
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

inline Timing summarize(const std::vector<double>& per_step_us, int64_t steps_per_block) {
  return {quantile(per_step_us, 0.5), quantile(per_step_us, 0.25), quantile(per_step_us, 0.75), steps_per_block,
          static_cast<int>(per_step_us.size())};
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
  std::vector<double> xa, xb;
  for (int k = 0; k < s.blocks; ++k) {
    auto t0 = std::chrono::steady_clock::now();
    for (int64_t i = 0; i < na; ++i) a();
    xa.push_back(1e6 * detail::seconds_since(t0) / static_cast<double>(na));
    t0 = std::chrono::steady_clock::now();
    for (int64_t i = 0; i < nb; ++i) b();
    xb.push_back(1e6 * detail::seconds_since(t0) / static_cast<double>(nb));
  }
  return {detail::summarize(xa, na), detail::summarize(xb, nb)};
}

}  // namespace vguide::bench
