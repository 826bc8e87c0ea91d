#pragma once
/// Options of the `normal` family: mean-field Normal in unconstrained space.
///
/// Example: vguide::NormalOptions().init_scale(0.05)
#include <iterator>

#include "vguide/arg.hpp"
#include "vguide/check.hpp"
#include "vguide/options.hpp"

namespace vguide {
struct NormalOptions {
  /// Initial standard deviation of every unconstrained coordinate.
  VGUIDE_ARG(double, init_scale) = 0.1;

 public:
  static constexpr OptionSpec schema_specs[] = {
      {"init_scale", "real", "0.1", "initial standard deviation of every unconstrained coordinate", ">0"},
  };
  static constexpr OptionSchema schema() { return {schema_specs, std::size(schema_specs)}; }
  static NormalOptions from(const Options& options) {
    return NormalOptions().init_scale(options.get_real("init_scale"));
  }
  /// @throw std::domain_error naming the bad option.
  void validate() const { check_positive("normal", "init_scale", init_scale_); }
};
}  // namespace vguide
