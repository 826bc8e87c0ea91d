#pragma once
/// The support of a site, as a value: a kind plus its parameters.
///
/// Example: auto c = vguide::constraints::interval(0.0, 2.0); c.to_string() == "interval(0, 2)"
#include <ATen/core/Tensor.h>

#include <string>

#include "vguide/export.hpp"

namespace vguide {

enum class ConstraintKind {
  real,
  positive,
  greater_than,
  less_than,
  interval,
  unit_interval,
  simplex,
  ordered,
  positive_ordered,
  lower_cholesky,
  corr_cholesky,
  positive_definite,
};

class VGUIDE_API Constraint {
 public:
  /// The real line (the default).
  Constraint() = default;
  Constraint(ConstraintKind kind, double lower, double upper);

  ConstraintKind kind() const noexcept { return kind_; }
  /// Lower bound of greater_than / interval (0 for positive and unit_interval), NaN otherwise.
  double lower() const noexcept { return lower_; }
  /// Upper bound of less_than / interval (1 for unit_interval), NaN otherwise.
  double upper() const noexcept { return upper_; }

  /// 0 for elementwise supports, 1 for vectors (simplex, ordered), 2 for matrices.
  int event_rank() const noexcept;
  /// "real", "greater_than(1.5)", "simplex", ...
  std::string to_string() const;

  /// Support membership of each event of `value`: a bool tensor with the event dims
  /// reduced. `tol` is the slack for equalities (sums, symmetry, unit diagonal).
  at::Tensor check(const at::Tensor& value, double tol = 1e-5) const;

  bool operator==(const Constraint& other) const;
  bool operator!=(const Constraint& other) const { return !(*this == other); }

 private:
  ConstraintKind kind_ = ConstraintKind::real;
  double lower_ = 0.0;
  double upper_ = 0.0;
};

/// Factories, named as in Pyro's `constraints` module.
namespace constraints {
VGUIDE_API Constraint real();
VGUIDE_API Constraint positive();
/// @throw std::domain_error if lower is not finite.
VGUIDE_API Constraint greater_than(double lower);
/// @throw std::domain_error if upper is not finite.
VGUIDE_API Constraint less_than(double upper);
/// @throw std::domain_error unless lower < upper, both finite.
VGUIDE_API Constraint interval(double lower, double upper);
VGUIDE_API Constraint unit_interval();
VGUIDE_API Constraint simplex();
VGUIDE_API Constraint ordered();
VGUIDE_API Constraint positive_ordered();
VGUIDE_API Constraint lower_cholesky();
VGUIDE_API Constraint corr_cholesky();
VGUIDE_API Constraint positive_definite();
}  // namespace constraints

}  // namespace vguide
