#pragma once
/// Options of the `lowrank_mvn` family: Σ = W Wᵀ + diag(σ²) with W of shape (D, rank).
///
/// Example: vguide::LowRankMvnOptions().rank(2)
#include <cstdint>
#include <iterator>

#include "vguide/arg.hpp"
#include "vguide/check.hpp"
#include "vguide/options.hpp"

namespace vguide {
struct LowRankMvnOptions {
  /// Columns of the factor W.
  VGUIDE_ARG(int64_t, rank) = 5;
  /// Initial σ of the diagonal part (W starts at 0).
  VGUIDE_ARG(double, init_scale) = 0.1;

 public:
  static constexpr OptionSpec schema_specs[] = {
      {"rank", "int", "5", "columns of the low-rank factor W (1 <= rank <= D)", ">=1"},
      {"init_scale", "real", "0.1", "initial sd of the diagonal part; W starts at 0", ">0"},
  };
  static constexpr OptionSchema schema() { return {schema_specs, std::size(schema_specs)}; }
  static LowRankMvnOptions from(const Options& options) {
    return LowRankMvnOptions().rank(options.get_int("rank")).init_scale(options.get_real("init_scale"));
  }
  /// @throw std::domain_error naming the bad option (rank > D is checked by the guide).
  void validate() const {
    check_greater_or_equal<int64_t>("lowrank_mvn", "rank", rank_, 1);
    check_positive("lowrank_mvn", "init_scale", init_scale_);
  }
};
}  // namespace vguide
