#pragma once
/// Options of the `laplace` family: MAP, then N(z*, H⁻¹) from the Hessian at the MAP.
///
/// Example: vguide::LaplaceOptions().jitter(1e-3)
#include <iterator>

#include "vguide/arg.hpp"
#include "vguide/check.hpp"
#include "vguide/options.hpp"

namespace vguide {
struct LaplaceOptions {
  /// Initial unconstrained value of every coordinate, before the jitter.
  VGUIDE_ARG(double, init_value) = 0.0;
  /// Standard deviation of the N(0, init_noise) jitter per coordinate.
  VGUIDE_ARG(double, init_noise) = 0.01;
  /// Hessian eigenvalues below this are raised to it before inverting.
  VGUIDE_ARG(double, jitter) = 1e-4;

 public:
  static constexpr OptionSpec schema_specs[] = {
      {"init_value", "real", "0.0", "initial unconstrained value of every coordinate", ""},
      {"init_noise", "real", "0.01", "sd of the N(0, sd) jitter added to init_value per coordinate", ">=0"},
      {"jitter", "real", "1e-4", "Hessian eigenvalues below this are raised to it before inverting", ">0"},
  };
  static constexpr OptionSchema schema() { return {schema_specs, std::size(schema_specs)}; }
  static LaplaceOptions from(const Options& options) {
    return LaplaceOptions()
        .init_value(options.get_real("init_value"))
        .init_noise(options.get_real("init_noise"))
        .jitter(options.get_real("jitter"));
  }
  /// @throw std::domain_error naming the bad option.
  void validate() const {
    check_finite("laplace", "init_value", init_value_);
    check_nonnegative("laplace", "init_noise", init_noise_);
    check_positive("laplace", "jitter", jitter_);
  }
};
}  // namespace vguide
