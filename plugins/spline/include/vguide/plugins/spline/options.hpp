#pragma once
/// Options of the `spline` family: rational-quadratic neural spline coupling flow.
///
/// Example: vguide::SplineOptions().num_bins(16).tail_bound(5.0)
#include <cstdint>
#include <iterator>

#include "vguide/arg.hpp"
#include "vguide/check.hpp"
#include "vguide/options.hpp"

namespace vguide {
struct SplineOptions {
  /// Coupling layers in the stack (masks alternate between the two halves).
  VGUIDE_ARG(int64_t, num_flows) = 4;
  VGUIDE_ARG(int64_t, num_bins) = 8;
  /// The splines act on [-tail_bound, tail_bound]; identity outside.
  VGUIDE_ARG(double, tail_bound) = 3.0;
  /// Width of each coupling network; 0 means auto, max(64, 2D).
  VGUIDE_ARG(int64_t, hidden_dim) = 0;
  VGUIDE_ARG(int64_t, num_hidden_layers) = 2;
  /// A learnable elementwise affine layer after the stack (our extension to the seed):
  /// identity tails cannot reach mass far outside the box otherwise.
  VGUIDE_ARG(bool, affine) = true;

 public:
  static constexpr OptionSpec schema_specs[] = {
      {"num_flows", "int", "4", "coupling layers in the stack", ">=1"},
      {"num_bins", "int", "8", "spline bins per coordinate (2 to 999)", ">=2"},
      {"tail_bound", "real", "3.0", "splines act on [-tail_bound, tail_bound], identity outside", ">0"},
      {"hidden_dim", "int", "auto", "hidden width of each coupling network (auto: max(64, 2D))", ">=1"},
      {"num_hidden_layers", "int", "2", "hidden layers of each coupling network", ">=1"},
      {"affine", "bool", "true", "learnable elementwise affine layer after the stack", ""},
  };
  static constexpr OptionSchema schema() { return {schema_specs, std::size(schema_specs)}; }
  static SplineOptions from(const Options& options) {
    return SplineOptions()
        .num_flows(options.get_int("num_flows"))
        .num_bins(options.get_int("num_bins"))
        .tail_bound(options.get_real("tail_bound"))
        .hidden_dim(options.has("hidden_dim") ? options.get_int("hidden_dim") : 0)
        .num_hidden_layers(options.get_int("num_hidden_layers"))
        .affine(options.get_bool("affine"));
  }
  /// The hidden width for a latent dimension D.
  int64_t hidden_dim_for(int64_t D) const { return hidden_dim_ > 0 ? hidden_dim_ : (2 * D > 64 ? 2 * D : 64); }
  /// @throw std::domain_error naming the bad option.
  void validate() const {
    check_positive("spline", "num_flows", num_flows_);
    check_greater_or_equal<int64_t>("spline", "num_bins", num_bins_, 2);
    check_positive("spline", "tail_bound", tail_bound_);
    check_nonnegative("spline", "hidden_dim", hidden_dim_);
    check_positive("spline", "num_hidden_layers", num_hidden_layers_);
  }
};
}  // namespace vguide
