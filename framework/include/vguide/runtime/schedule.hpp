#pragma once
/// Learning-rate schedules: the rate for step t (0-based) of T planned steps.
///
///   constant     lr
///   exponential  lr * gamma^t                                  (gamma default 0.999)
///   step         lr * gamma^floor(t / step_size)                (gamma 0.5, step_size 1000)
///   cosine       min_lr + (lr - min_lr) * (1 + cos(pi t / T)) / 2  (min_lr 0)
///
/// Example: double lr = vguide::scheduled_lr({vguide::Schedule::cosine}, 0.01, step, steps);
#include <cstdint>
#include <string>

#include "vguide/export.hpp"

namespace vguide {

enum class Schedule { constant, exponential, step, cosine };

struct ScheduleOptions {
  Schedule kind = Schedule::constant;
  double gamma = 0.0;       ///< 0: the kind's default (0.999 exponential, 0.5 step)
  int64_t step_size = 1000;
  double min_lr = 0.0;
};

/// @throw std::invalid_argument for gamma outside (0, 1], step_size < 1, min_lr < 0
///        or min_lr > lr (each message names the setting and its value).
VGUIDE_API void validate(const ScheduleOptions& options, double base_lr);

VGUIDE_API double scheduled_lr(const ScheduleOptions& options, double base_lr, int64_t step, int64_t total_steps);

/// "constant" | "exponential" | "step" | "cosine". @throw std::invalid_argument.
VGUIDE_API Schedule parse_schedule(const std::string& name);
VGUIDE_API std::string to_string(Schedule kind);

}  // namespace vguide
