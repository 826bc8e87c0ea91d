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
  /// Columns of the factor W; 0 means auto, min(5, D). An explicit rank above D is an error.
  VGUIDE_ARG(int64_t, rank) = 0;
  /// Initial σ of the diagonal part (W starts at 0).
  VGUIDE_ARG(double, init_scale) = 0.1;

 public:
  static constexpr OptionSpec schema_specs[] = {
      {"rank", "int", "auto", "columns of the low-rank factor W, 1 <= rank <= D (auto: min(5, D))", ">=1"},
      {"init_scale", "real", "0.1", "initial sd of the diagonal part; W starts at 0", ">0"},
  };
  static constexpr OptionSchema schema() { return {schema_specs, std::size(schema_specs)}; }
  static LowRankMvnOptions from(const Options& options) {
    return LowRankMvnOptions()
        .rank(options.has("rank") ? options.get_int("rank") : 0)
        .init_scale(options.get_real("init_scale"));
  }
  /// The rank for a latent dimension D: the explicit one, or min(5, D).
  int64_t rank_for(int64_t D) const { return rank_ > 0 ? rank_ : (D < 5 ? D : 5); }
  /// @throw std::domain_error naming the bad option (rank > D is checked by the guide).
  void validate() const {
    check_nonnegative("lowrank_mvn", "rank", rank_);
    check_positive("lowrank_mvn", "init_scale", init_scale_);
  }
};
}  // namespace vguide
