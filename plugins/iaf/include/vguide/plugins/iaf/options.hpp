#pragma once
/// Options of the `iaf` family: inverse autoregressive flow.
///
/// Example: vguide::IafOptions().num_flows(2).hidden_dim(32)
#include <cstdint>
#include <iterator>

#include "vguide/arg.hpp"
#include "vguide/check.hpp"
#include "vguide/options.hpp"

namespace vguide {
struct IafOptions {
  /// Autoregressive layers in the stack.
  VGUIDE_ARG(int64_t, num_flows) = 4;
  /// Width of each MADE's hidden layers; 0 means auto, max(8, 2D).
  VGUIDE_ARG(int64_t, hidden_dim) = 0;
  VGUIDE_ARG(int64_t, num_hidden_layers) = 2;
  /// A learnable elementwise affine layer after the stack (our extension to the seed).
  VGUIDE_ARG(bool, affine) = true;

 public:
  static constexpr OptionSpec schema_specs[] = {
      {"num_flows", "int", "4", "autoregressive layers in the stack", ">=1"},
      {"hidden_dim", "int", "auto", "hidden width of each MADE (auto: max(8, 2D))", ">=1"},
      {"num_hidden_layers", "int", "2", "hidden layers of each MADE", ">=1"},
      {"affine", "bool", "true", "learnable elementwise affine layer after the stack", ""},
  };
  static constexpr OptionSchema schema() { return {schema_specs, std::size(schema_specs)}; }
  static IafOptions from(const Options& options) {
    return IafOptions()
        .num_flows(options.get_int("num_flows"))
        .hidden_dim(options.has("hidden_dim") ? options.get_int("hidden_dim") : 0)
        .num_hidden_layers(options.get_int("num_hidden_layers"))
        .affine(options.get_bool("affine"));
  }
  /// The hidden width for a latent dimension D.
  int64_t hidden_dim_for(int64_t D) const { return hidden_dim_ > 0 ? hidden_dim_ : (2 * D > 8 ? 2 * D : 8); }
  /// @throw std::domain_error naming the bad option.
  void validate() const {
    check_positive("iaf", "num_flows", num_flows_);
    check_nonnegative("iaf", "hidden_dim", hidden_dim_);
    check_positive("iaf", "num_hidden_layers", num_hidden_layers_);
  }
};
}  // namespace vguide
