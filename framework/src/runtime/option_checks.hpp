#pragma once
// The runtime's option checks, one wording for every options struct:
//   "pathfinder: history is 0, but must be at least 1".
#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>

namespace vguide::detail {

/// @throw std::invalid_argument "<owner>: <name> is <value>, but must be at least <least>".
inline void check_at_least(const char* owner, const char* name, int64_t value, int64_t least) {
  if (value < least)
    throw std::invalid_argument(std::string(owner) + ": " + name + " is " + std::to_string(value) +
                                ", but must be at least " + std::to_string(least));
}

/// @throw std::invalid_argument "<owner>: <name> must be a positive number" (NaN and
/// infinity are not).
inline void check_positive_number(const char* owner, const char* name, double value) {
  if (!(value > 0.0) || !std::isfinite(value))
    throw std::invalid_argument(std::string(owner) + ": " + name + " must be a positive number");
}

}  // namespace vguide::detail
