#pragma once
/// Argument checks that name what they check, Stan-style:
///   check_positive("iaf", "num_flows", 0)
///   -> std::domain_error("iaf: num_flows is 0, but must be positive!")
/// Values that are out of their domain throw std::domain_error; sizes and names that
/// do not match throw std::invalid_argument.
///
/// Example: vguide::check_positive("normal", "init_scale", opts.init_scale());
#include <cmath>
#include <sstream>
#include <stdexcept>
#include <string>

namespace vguide {
namespace detail {
template <typename T>
[[noreturn]] __attribute__((cold, noinline)) void throw_domain(const char* function, const char* name,
                                                               const T& value, const char* must) {
  std::ostringstream msg;
  msg << function << ": " << name << " is " << value << ", but must be " << must << "!";
  throw std::domain_error(msg.str());
}
}  // namespace detail

/// @throw std::domain_error unless value > 0 (NaN fails).
template <typename T>
void check_positive(const char* function, const char* name, const T& value) {
  if (!(value > 0)) detail::throw_domain(function, name, value, "positive");
}

/// @throw std::domain_error unless value >= 0 (NaN fails).
template <typename T>
void check_nonnegative(const char* function, const char* name, const T& value) {
  if (!(value >= 0)) detail::throw_domain(function, name, value, "nonnegative");
}

/// @throw std::domain_error unless value is finite.
inline void check_finite(const char* function, const char* name, double value) {
  if (!std::isfinite(value)) detail::throw_domain(function, name, value, "finite");
}

/// @throw std::domain_error unless value >= bound.
template <typename T>
void check_greater_or_equal(const char* function, const char* name, const T& value, const T& bound) {
  if (!(value >= bound)) {
    std::ostringstream must;
    must << "at least " << bound;
    detail::throw_domain(function, name, value, must.str().c_str());
  }
}

/// @throw std::invalid_argument unless size == expected.
inline void check_size_match(const char* function, const char* name, long long size, const char* expected_name,
                             long long expected) {
  if (size != expected) {
    std::ostringstream msg;
    msg << function << ": " << name << " has size " << size << ", but must match " << expected_name << " ("
        << expected << ")!";
    throw std::invalid_argument(msg.str());
  }
}
}  // namespace vguide
