#pragma once
/// Draws written in the CSV layout of Stan's variational output (CmdStan's
/// `variational` method), which rstan::read_stan_csv, CmdStan's stansummary and
/// ArviZ's from_cmdstan read. The layout is described in docs/outputs.md.
///
/// Example:
///   vguide::StanCsvContent c;
///   c.model_name = "eight_schools";
///   c.settings = {{"algorithm", "normal"}, {"iter", "2000"}, {"seed", "1"}};
///   c.quantities = {{"mu", mu_draws}, {"theta", theta_draws}};  // (N,), (N, 8)
///   c.log_p = log_joint;  c.log_g = log_guide;                  // (N,), (N,)
///   vguide::write_stan_csv(file, c);
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <ostream>
#include <string>
#include <utility>
#include <vector>

#include "vguide/export.hpp"

namespace vguide {

/// The Stan release whose CSV layout for variational output this writer follows,
/// written as the stan_version_* comments.
inline constexpr int kStanCsvVersionMajor = 2;
inline constexpr int kStanCsvVersionMinor = 32;
inline constexpr int kStanCsvVersionPatch = 0;

/// Stan's flat names for a quantity of the given shape, in Stan's column order:
/// "mu" for a scalar; "theta.1" ... "theta.J" (1-based) for a vector; for a matrix
/// "L.1.1, L.2.1, ..., L.1.2, ..." — every container in column-major order (the first
/// index varies fastest), as Stan writes them. A shape with a 0 gives no names.
/// @throw std::invalid_argument for a negative dimension.
VGUIDE_API std::vector<std::string> stan_column_names(const std::string& name, const std::vector<int64_t>& shape);

struct StanCsvQuantity {
  std::string name;
  at::Tensor draws;  ///< (N, *shape); any floating, integral or bool dtype, any device
  /// Optional (*shape): the value written in the first (mean) row, e.g. the guide's own
  /// mean. Undefined: the mean of `draws`, accumulated in double in draw order.
  at::Tensor mean = {};
};

struct StanCsvContent {
  /// Written as "# key = value" comment lines after the standard ones. Keys are
  /// [A-Za-z0-9_]+ and may not repeat one another or a standard key (stan_version_major,
  /// stan_version_minor, stan_version_patch, model, method, output_samples).
  std::vector<std::pair<std::string, std::string>> settings;
  std::string model_name;
  std::vector<StanCsvQuantity> quantities;  ///< in output order: latent sites and let values
  at::Tensor log_p;                         ///< (N,) log joint of each draw
  at::Tensor log_g;                         ///< (N,) log guide density of each draw
};

/// Writes the variational CSV that CmdStan/rstan produce: the comment header, then
/// "lp__,log_p__,log_g__,<names>", a first row with the posterior mean (lp__, log_p__,
/// log_g__ = 0), then one row per draw with lp__ = 0. Each number is the shortest text
/// that reads back to the same value of its tensor's dtype (a float32 is printed as a
/// float); NaN is "nan", infinities "inf" and "-inf". The same content gives the same
/// bytes.
/// @throw std::runtime_error if the stream fails.
/// @throw std::invalid_argument naming the quantity or setting at fault: no draws, a
///   name that is not a Stan identifier (or ends in "__", which readers take for a
///   sampler column) or is repeated, draws whose first dimension is not N, a quantity
///   with no elements, a mean of the wrong shape, a setting key or value that would
///   break the comment line.
VGUIDE_API void write_stan_csv(std::ostream& out, const StanCsvContent& content);

}  // namespace vguide
