#pragma once
/// Options of the `delta` family: a point mass (MAP).
///
/// Example: vguide::DeltaOptions().init_value(1.0)
#include <iterator>

#include "vguide/arg.hpp"
#include "vguide/check.hpp"
#include "vguide/options.hpp"

namespace vguide {
struct DeltaOptions {
  /// Initial unconstrained value of every coordinate, before the N(0, init_noise) jitter.
  VGUIDE_ARG(double, init_value) = 0.0;
  /// Standard deviation of the jitter that keeps two coordinates from starting equal.
  VGUIDE_ARG(double, init_noise) = 0.01;

 public:
  static constexpr OptionSpec schema_specs[] = {
      {"init_value", "real", "0.0", "initial unconstrained value of every coordinate", ""},
      {"init_noise", "real", "0.01", "sd of the N(0, sd) jitter added to init_value per coordinate", ">=0"},
  };
  static constexpr OptionSchema schema() { return {schema_specs, std::size(schema_specs)}; }
  static DeltaOptions from(const Options& options) {
    return DeltaOptions().init_value(options.get_real("init_value")).init_noise(options.get_real("init_noise"));
  }
  /// @throw std::domain_error naming the bad option.
  void validate() const {
    check_finite("delta", "init_value", init_value_);
    check_nonnegative("delta", "init_noise", init_noise_);
    check_finite("delta", "init_noise", init_noise_);
  }
};
}  // namespace vguide
