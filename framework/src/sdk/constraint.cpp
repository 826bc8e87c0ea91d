#include "vguide/constraint.hpp"

#include <ATen/ATen.h>

#include <cmath>
#include <limits>
#include <sstream>

#include "vguide/check.hpp"

namespace vguide {
namespace {
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

bool same_double(double a, double b) { return (std::isnan(a) && std::isnan(b)) || a == b; }

// All-true over the last `rank` dims.
at::Tensor all_last(const at::Tensor& t, int rank) {
  at::Tensor out = t;
  for (int i = 0; i < rank; ++i) out = out.all(-1);
  return out;
}

at::Tensor is_lower_cholesky(const at::Tensor& v) {
  at::Tensor upper_zero = all_last(at::triu(v, 1) == 0, 2);
  at::Tensor diag_positive = (v.diagonal(0, -2, -1) > 0).all(-1);
  return upper_zero.logical_and(diag_positive).logical_and(all_last(at::isfinite(v), 2));
}
}  // namespace

Constraint::Constraint(ConstraintKind kind, double lower, double upper) : kind_(kind), lower_(lower), upper_(upper) {}

int Constraint::event_rank() const noexcept {
  switch (kind_) {
    case ConstraintKind::simplex:
    case ConstraintKind::ordered:
    case ConstraintKind::positive_ordered:
      return 1;
    case ConstraintKind::lower_cholesky:
    case ConstraintKind::corr_cholesky:
    case ConstraintKind::positive_definite:
      return 2;
    default:
      return 0;
  }
}

std::string Constraint::to_string() const {
  std::ostringstream s;
  switch (kind_) {
    case ConstraintKind::real: return "real";
    case ConstraintKind::positive: return "positive";
    case ConstraintKind::greater_than: s << "greater_than(" << lower_ << ")"; return s.str();
    case ConstraintKind::less_than: s << "less_than(" << upper_ << ")"; return s.str();
    case ConstraintKind::interval: s << "interval(" << lower_ << ", " << upper_ << ")"; return s.str();
    case ConstraintKind::unit_interval: return "unit_interval";
    case ConstraintKind::simplex: return "simplex";
    case ConstraintKind::ordered: return "ordered";
    case ConstraintKind::positive_ordered: return "positive_ordered";
    case ConstraintKind::lower_cholesky: return "lower_cholesky";
    case ConstraintKind::corr_cholesky: return "corr_cholesky";
    case ConstraintKind::positive_definite: return "positive_definite";
  }
  return "unknown";
}

bool Constraint::operator==(const Constraint& other) const {
  return kind_ == other.kind_ && same_double(lower_, other.lower_) && same_double(upper_, other.upper_);
}

at::Tensor Constraint::check(const at::Tensor& v, double tol) const {
  switch (kind_) {
    case ConstraintKind::real: return at::isfinite(v);
    case ConstraintKind::positive: return (v > 0).logical_and(at::isfinite(v));
    case ConstraintKind::greater_than: return (v > lower_).logical_and(at::isfinite(v));
    case ConstraintKind::less_than: return (v < upper_).logical_and(at::isfinite(v));
    case ConstraintKind::interval:
    case ConstraintKind::unit_interval: return (v >= lower_).logical_and(v <= upper_);
    case ConstraintKind::simplex:
      return (v >= 0).all(-1).logical_and((v.sum(-1) - 1).abs() <= tol);
    case ConstraintKind::ordered: {
      at::Tensor increasing = v.size(-1) < 2 ? at::ones_like(v.select(-1, 0), at::kBool)
                                             : (at::diff(v, 1, -1) > 0).all(-1);
      return increasing.logical_and(at::isfinite(v).all(-1));
    }
    case ConstraintKind::positive_ordered: {
      at::Tensor increasing = v.size(-1) < 2 ? at::ones_like(v.select(-1, 0), at::kBool)
                                             : (at::diff(v, 1, -1) > 0).all(-1);
      return increasing.logical_and((v.select(-1, 0) > 0)).logical_and(at::isfinite(v).all(-1));
    }
    case ConstraintKind::lower_cholesky: return is_lower_cholesky(v);
    case ConstraintKind::corr_cholesky: {
      at::Tensor unit_rows = ((v * v).sum(-1) - 1).abs().le(tol).all(-1);
      return is_lower_cholesky(v).logical_and(unit_rows);
    }
    case ConstraintKind::positive_definite: {
      at::Tensor symmetric = all_last((v - v.transpose(-1, -2)).abs() <= tol * (1 + v.abs()), 2);
      at::Tensor info = std::get<1>(at::linalg_cholesky_ex(v.detach()));
      return symmetric.logical_and(info == 0);
    }
  }
  return at::zeros_like(v, at::kBool);
}

namespace constraints {
Constraint real() { return Constraint(ConstraintKind::real, kNaN, kNaN); }
Constraint positive() { return Constraint(ConstraintKind::positive, 0.0, kNaN); }
Constraint greater_than(double lower) {
  check_finite("greater_than", "lower bound", lower);
  return Constraint(ConstraintKind::greater_than, lower, kNaN);
}
Constraint less_than(double upper) {
  check_finite("less_than", "upper bound", upper);
  return Constraint(ConstraintKind::less_than, kNaN, upper);
}
Constraint interval(double lower, double upper) {
  check_finite("interval", "lower bound", lower);
  check_finite("interval", "upper bound", upper);
  if (!(lower < upper)) {
    std::ostringstream msg;
    msg << "interval: lower bound " << lower << " must be less than upper bound " << upper << "!";
    throw std::domain_error(msg.str());
  }
  return Constraint(ConstraintKind::interval, lower, upper);
}
Constraint unit_interval() { return Constraint(ConstraintKind::unit_interval, 0.0, 1.0); }
Constraint simplex() { return Constraint(ConstraintKind::simplex, kNaN, kNaN); }
Constraint ordered() { return Constraint(ConstraintKind::ordered, kNaN, kNaN); }
Constraint positive_ordered() { return Constraint(ConstraintKind::positive_ordered, kNaN, kNaN); }
Constraint lower_cholesky() { return Constraint(ConstraintKind::lower_cholesky, kNaN, kNaN); }
Constraint corr_cholesky() { return Constraint(ConstraintKind::corr_cholesky, kNaN, kNaN); }
Constraint positive_definite() { return Constraint(ConstraintKind::positive_definite, kNaN, kNaN); }
}  // namespace constraints

}  // namespace vguide
