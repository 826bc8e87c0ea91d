#pragma once
/// Options of the `mvn` family: full-rank Gaussian with a learnable Cholesky factor.
///
/// Example: vguide::MvnOptions().init_scale(0.05)
#include <iterator>

#include "vguide/arg.hpp"
#include "vguide/check.hpp"
#include "vguide/options.hpp"

namespace vguide {
struct MvnOptions {
  /// Initial diagonal of the Cholesky factor (off-diagonal entries start at 0).
  VGUIDE_ARG(double, init_scale) = 0.1;

 public:
  static constexpr OptionSpec schema_specs[] = {
      {"init_scale", "real", "0.1", "initial diagonal of the Cholesky factor; off-diagonal starts at 0", ">0"},
  };
  static constexpr OptionSchema schema() { return {schema_specs, std::size(schema_specs)}; }
  static MvnOptions from(const Options& options) { return MvnOptions().init_scale(options.get_real("init_scale")); }
  /// @throw std::domain_error naming the bad option.
  void validate() const { check_positive("mvn", "init_scale", init_scale_); }
};
}  // namespace vguide
