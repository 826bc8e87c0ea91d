#include "vguide/runtime/schedule.hpp"

#include <algorithm>
#include <cmath>
#include <sstream>
#include <stdexcept>

namespace vguide {

namespace {

double gamma_of(const ScheduleOptions& o) {
  if (o.gamma != 0.0) return o.gamma;
  return o.kind == Schedule::step ? 0.5 : 0.999;
}

std::string number(double v) {
  std::ostringstream s;
  s << v;
  return s.str();
}

}  // namespace

void validate(const ScheduleOptions& o, double base_lr) {
  const double gamma = gamma_of(o);
  if (!(gamma > 0.0 && gamma <= 1.0))
    throw std::invalid_argument("schedule gamma is " + number(gamma) + ", but must be in (0, 1]");
  if (o.step_size < 1)
    throw std::invalid_argument("schedule step size is " + std::to_string(o.step_size) + ", but must be at least 1");
  if (!(o.min_lr >= 0.0) || o.min_lr > base_lr)
    throw std::invalid_argument("schedule min_lr is " + number(o.min_lr) + ", but must be in [0, lr = " + number(base_lr) +
                                "]");
}

double scheduled_lr(const ScheduleOptions& o, double base_lr, int64_t step, int64_t total_steps) {
  const double t = static_cast<double>(std::max<int64_t>(step, 0));
  switch (o.kind) {
    case Schedule::constant: return base_lr;
    case Schedule::exponential: return base_lr * std::pow(gamma_of(o), t);
    case Schedule::step: return base_lr * std::pow(gamma_of(o), std::floor(t / static_cast<double>(o.step_size)));
    case Schedule::cosine: {
      const double T = static_cast<double>(std::max<int64_t>(total_steps, 1));
      const double progress = std::min(t / T, 1.0);
      return o.min_lr + (base_lr - o.min_lr) * 0.5 * (1.0 + std::cos(M_PI * progress));
    }
  }
  return base_lr;
}

Schedule parse_schedule(const std::string& name) {
  if (name == "constant") return Schedule::constant;
  if (name == "exponential") return Schedule::exponential;
  if (name == "step") return Schedule::step;
  if (name == "cosine") return Schedule::cosine;
  throw std::invalid_argument("unknown schedule '" + name + "'; valid: constant, exponential, step, cosine");
}

std::string to_string(Schedule kind) {
  switch (kind) {
    case Schedule::constant: return "constant";
    case Schedule::exponential: return "exponential";
    case Schedule::step: return "step";
    case Schedule::cosine: return "cosine";
  }
  return "constant";
}

}  // namespace vguide
