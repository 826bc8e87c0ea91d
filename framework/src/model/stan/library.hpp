#pragma once
// The Stan reader's function and distribution library: each entry's type rule (for
// the checker) and its evaluation over particle-batched tensors (for the
// interpreter), side by side so a function is written once.
#include <ATen/core/Generator.h>
#include <ATen/core/Tensor.h>

#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "ast.hpp"

namespace vguide::model::stan {

/// A value at run time: a tensor of shape (P, array dims..., own dims...) where P is
/// 1 (the same for every particle) or S. Ints are int64, reals the fit's dtype.
/// `data_only`: the value does not depend on the parameters.
struct Val {
  Val() = default;
  Val(at::Tensor value, Type type_, bool data_only_ = true) : t(std::move(value)), type(type_), data_only(data_only_) {}

  at::Tensor t;
  Type type;
  bool data_only = true;
  /// While a program is compiled (trace.hpp): for a value that depends on the
  /// parameters, which element of the tape holds each element of `t` (same shape,
  /// int64; -1 for an element that is data, its value in `t`). Undefined otherwise.
  at::Tensor ids;
};

/// What a library function may need besides its arguments.
struct RunContext {
  at::Generator* generator = nullptr;  ///< for `_rng` functions
  at::ScalarType dtype = at::kDouble;  ///< the reals' dtype
  int64_t particles = 1;               ///< S
};

/// A function's result type for the argument types, or nothing if no signature fits.
using TypeRule = std::function<std::optional<Type>(const std::vector<Type>&)>;
using Run = std::function<Val(const std::vector<Val>&, RunContext&)>;

struct Builtin {
  int min_args = 0, max_args = 0;
  TypeRule type;
  Run run;
  bool rng = false;  ///< a `_rng` function: transformed data and generated quantities only
};
const Builtin* find_builtin(const std::string& name);

struct DistributionDef {
  bool discrete = false;
  int min_params = 0, max_params = 0;
  /// The variate's and parameters' types (variate first) -> real if they fit.
  TypeRule type;
  /// Sum of the log densities over every element: shape (P,).
  std::function<at::Tensor(const std::vector<Val>&, RunContext&)> log_density;
};
/// `normal`, `poisson_log`, ... (no suffix).
const DistributionDef* find_distribution(const std::string& name);

/// `normal_cdf`, `normal_lcdf`, `normal_lccdf`: P(Y <= y) (the product over the
/// elements), its log (the sum) and log P(Y > y), for the continuous distributions
/// with a closed-form cdf. Null if `name` is not one of them.
struct CdfDef {
  const DistributionDef* distribution = nullptr;  ///< the parameters' count and type rule
  /// (P,) from the variate and parameters (variate first).
  std::function<at::Tensor(const std::vector<Val>&, RunContext&)> evaluate;
};
const CdfDef* find_cdf(const std::string& name);

/// The element type of a real: int -> real promotion for arithmetic.
at::Tensor as_real(const Val& v, at::ScalarType dtype);
/// Appends size-1 dims to a scalar-per-particle (P,) tensor until it has `dims`.
at::Tensor lift(const at::Tensor& t, int64_t dims);

}  // namespace vguide::model::stan
