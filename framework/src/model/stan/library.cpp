// Stan's functions and distributions over particle-batched tensors (library.hpp).
// Every value is (P, array dims..., own dims...), P = 1 or S; a function's type rule
// sits beside its evaluation.
#include "library.hpp"

#include <ATen/ATen.h>

#include <cmath>
#include <map>
#include <stdexcept>

#include "vguide/model/distribution.hpp"

namespace vguide::model::stan {

namespace {

constexpr double kLogSqrtTwoPi = 0.91893853320467274178;
constexpr double kLogPi = 1.14472988584940017414;

const Type kInt{Base::int_, 0};
const Type kReal{Base::real, 0};
const Type kVector{Base::vector, 0};
const Type kRowVector{Base::row_vector, 0};
const Type kMatrix{Base::matrix, 0};

bool is_1d(const Type& t) {  // vector, row_vector or a 1-d array of scalars
  return (t.array_dims == 0 && (t.base == Base::vector || t.base == Base::row_vector)) ||
         (t.array_dims == 1 && (t.base == Base::int_ || t.base == Base::real));
}
bool numeric_or_array(const Type& t) { return t.base != Base::void_; }
bool all_data(const std::vector<Val>& a) {
  for (const auto& v : a)
    if (!v.data_only) return false;
  return true;
}
Type realed(Type t) {
  if (t.base == Base::int_) t.base = Base::real;
  return t;
}

Val make(at::Tensor t, Type type, const std::vector<Val>& args) { return {std::move(t), type, all_data(args)}; }

// A (P,) per-particle scalar broadcast against elements: (P, 1, ...).
at::Tensor flat(const Val& v, at::ScalarType dtype) {
  at::Tensor t = as_real(v, dtype);
  return t.dim() == 1 ? t.unsqueeze(1) : t.flatten(1);
}

// ---- type rules -----------------------------------------------------------------------
std::optional<Type> elementwise_rule(const std::vector<Type>& a) {  // exp(x): any numeric, int -> real
  if (a.size() != 1 || !numeric_or_array(a[0])) return std::nullopt;
  return realed(a[0]);
}
std::optional<Type> binary_elementwise_rule(const std::vector<Type>& a) {  // pow, fmin, ...
  if (a.size() != 2) return std::nullopt;
  if (a[0].is_scalar() && a[1].is_scalar()) return kReal;
  if (a[0].is_scalar()) return realed(a[1]);
  if (a[1].is_scalar() || realed(a[0]) == realed(a[1])) return realed(a[0]);
  return std::nullopt;
}
TypeRule fixed(std::vector<std::vector<Type>> accepted, Type result) {
  return [accepted = std::move(accepted), result](const std::vector<Type>& a) -> std::optional<Type> {
    for (const auto& sig : accepted) {
      if (sig.size() != a.size()) continue;
      bool ok = true;
      for (size_t i = 0; ok && i < a.size(); ++i) ok = sig[i] == a[i] || (sig[i] == kReal && a[i] == kInt);
      if (ok) return result;
    }
    return std::nullopt;
  };
}
std::optional<Type> reduce_rule(const std::vector<Type>& a) {  // sum(x) etc.: any container -> real
  if (a.size() != 1 || a[0].is_scalar() || !numeric_or_array(a[0])) return std::nullopt;
  return kReal;
}
std::optional<Type> same_1d_rule(const std::vector<Type>& a) {
  if (a.size() != 1 || !is_1d(a[0])) return std::nullopt;
  return realed(a[0]);
}

// ---- helpers for evaluation -------------------------------------------------------------
Val unary_real(const std::vector<Val>& a, RunContext& c, at::Tensor (*f)(const at::Tensor&)) {
  return make(f(as_real(a[0], c.dtype)), realed(a[0].type), a);
}

// Broadcast two values elementwise, a scalar (P,) against a container (P, ...).
std::pair<at::Tensor, at::Tensor> broadcast_pair(const Val& a, const Val& b, at::ScalarType dtype) {
  at::Tensor x = as_real(a, dtype), y = as_real(b, dtype);
  if (x.dim() < y.dim()) x = lift(x, y.dim());
  if (y.dim() < x.dim()) y = lift(y, x.dim());
  return {x, y};
}

std::optional<Type> binary_result(const Val& a, const Val& b) { return binary_elementwise_rule({a.type, b.type}); }

Val binary_real(const std::vector<Val>& a, RunContext& c, at::Tensor (*f)(const at::Tensor&, const at::Tensor&)) {
  auto [x, y] = broadcast_pair(a[0], a[1], c.dtype);
  return make(f(x, y), *binary_result(a[0], a[1]), a);
}

at::Tensor reduce_all(const at::Tensor& t) { return t.dim() == 1 ? t : t.flatten(1); }

at::Tensor log1m_exp(const at::Tensor& x) {  // log(1 - exp(x)), x < 0
  return at::where(x > -0.6931471805599453, at::log(-at::expm1(x)), at::log1p(-at::exp(x)));
}
at::Tensor log_inv_logit(const at::Tensor& x) { return -at::softplus(-x); }
at::Tensor log1m_inv_logit(const at::Tensor& x) { return -at::softplus(x); }
at::Tensor lbeta(const at::Tensor& a, const at::Tensor& b) { return at::lgamma(a) + at::lgamma(b) - at::lgamma(a + b); }
at::Tensor lchoose(const at::Tensor& n, const at::Tensor& k) {
  return at::lgamma(n + 1) - at::lgamma(k + 1) - at::lgamma(n - k + 1);
}
at::Tensor phi(const at::Tensor& x) { return 0.5 * at::erfc(-x / std::sqrt(2.0)); }

int64_t int_of(const Val& v) {
  if (v.t.size(0) != 1) throw std::domain_error("an int argument that differs between particles or iterations");
  return v.t.reshape({-1})[0].item<int64_t>();
}

at::Tensor scalar_like(double v, RunContext& c) { return at::full({1}, v, at::TensorOptions().dtype(c.dtype)); }

void require(bool ok, const std::string& what) {
  if (!ok) throw std::domain_error(what);
}

// x and y joined along `dim`, a shared (P = 1) side broadcast to the other's particles.
at::Tensor cat_particles(const at::Tensor& x, const at::Tensor& y, int64_t dim) {
  const int64_t P = std::max(x.size(0), y.size(0));
  std::vector<int64_t> xs = x.sizes().vec(), ys = y.sizes().vec();
  xs[0] = ys[0] = P;
  return at::cat({x.expand(xs), y.expand(ys)}, dim);
}

at::Tensor to_column_major(const at::Tensor& m) {  // (P, R, C) -> (P, R*C) column-major
  return m.transpose(-1, -2).reshape({m.size(0), -1});
}

std::map<std::string, Builtin> make_builtins() {
  std::map<std::string, Builtin> b;
  auto add = [&](const std::string& name, int lo, int hi, TypeRule rule, Run run, bool rng = false) {
    b[name] = Builtin{lo, hi, std::move(rule), std::move(run), rng};
  };
  // Elementwise reals.
  using F = at::Tensor (*)(const at::Tensor&);
  const std::vector<std::pair<const char*, F>> unary = {
      {"exp", [](const at::Tensor& x) { return at::exp(x); }},
      {"log", [](const at::Tensor& x) { return at::log(x); }},
      {"log2", [](const at::Tensor& x) { return at::log2(x); }},
      {"log10", [](const at::Tensor& x) { return at::log10(x); }},
      {"exp2", [](const at::Tensor& x) { return at::exp2(x); }},
      {"log1p", [](const at::Tensor& x) { return at::log1p(x); }},
      {"expm1", [](const at::Tensor& x) { return at::expm1(x); }},
      {"log1m", [](const at::Tensor& x) { return at::log1p(-x); }},
      {"log1m_exp", [](const at::Tensor& x) { return log1m_exp(x); }},
      {"sqrt", [](const at::Tensor& x) { return at::sqrt(x); }},
      {"cbrt", [](const at::Tensor& x) { return at::sign(x) * at::pow(at::abs(x), 1.0 / 3.0); }},
      {"square", [](const at::Tensor& x) { return x * x; }},
      {"inv", [](const at::Tensor& x) { return 1.0 / x; }},
      {"inv_sqrt", [](const at::Tensor& x) { return at::rsqrt(x); }},
      {"inv_square", [](const at::Tensor& x) { return 1.0 / (x * x); }},
      {"inv_logit", [](const at::Tensor& x) { return at::sigmoid(x); }},
      {"logit", [](const at::Tensor& x) { return at::log(x) - at::log1p(-x); }},
      {"log_inv_logit", [](const at::Tensor& x) { return log_inv_logit(x); }},
      {"log1m_inv_logit", [](const at::Tensor& x) { return log1m_inv_logit(x); }},
      {"Phi", [](const at::Tensor& x) { return phi(x); }},
      {"inv_Phi", [](const at::Tensor& x) { return std::sqrt(2.0) * at::erfinv(2 * x - 1); }},
      {"Phi_approx", [](const at::Tensor& x) { return at::sigmoid(0.07056 * x * x * x + 1.5976 * x); }},
      {"lgamma", [](const at::Tensor& x) { return at::lgamma(x); }},
      {"tgamma", [](const at::Tensor& x) { return at::exp(at::lgamma(x)) * at::where(x > 0, at::ones_like(x), at::sin(M_PI * x).sign()); }},
      {"digamma", [](const at::Tensor& x) { return at::digamma(x); }},
      {"fabs", [](const at::Tensor& x) { return at::abs(x); }},
      {"erf", [](const at::Tensor& x) { return at::erf(x); }},
      {"erfc", [](const at::Tensor& x) { return at::erfc(x); }},
      {"sin", [](const at::Tensor& x) { return at::sin(x); }},
      {"cos", [](const at::Tensor& x) { return at::cos(x); }},
      {"tan", [](const at::Tensor& x) { return at::tan(x); }},
      {"asin", [](const at::Tensor& x) { return at::asin(x); }},
      {"acos", [](const at::Tensor& x) { return at::acos(x); }},
      {"atan", [](const at::Tensor& x) { return at::atan(x); }},
      {"sinh", [](const at::Tensor& x) { return at::sinh(x); }},
      {"cosh", [](const at::Tensor& x) { return at::cosh(x); }},
      {"tanh", [](const at::Tensor& x) { return at::tanh(x); }},
      {"asinh", [](const at::Tensor& x) { return at::asinh(x); }},
      {"acosh", [](const at::Tensor& x) { return at::acosh(x); }},
      {"atanh", [](const at::Tensor& x) { return at::atanh(x); }},
      {"floor", [](const at::Tensor& x) { return at::floor(x); }},
      {"ceil", [](const at::Tensor& x) { return at::ceil(x); }},
      {"round", [](const at::Tensor& x) { return at::round(x); }},
      {"trunc", [](const at::Tensor& x) { return at::trunc(x); }},
      {"step", [](const at::Tensor& x) { return (x >= 0).to(x.scalar_type()); }},
  };
  for (const auto& [name, f] : unary)
    add(name, 1, 1, elementwise_rule, [f = f](const std::vector<Val>& a, RunContext& c) { return unary_real(a, c, f); });
  // abs keeps ints.
  add("abs", 1, 1, [](const std::vector<Type>& a) -> std::optional<Type> {
        if (a.size() != 1 || !numeric_or_array(a[0])) return std::nullopt;
        return a[0];
      },
      [](const std::vector<Val>& a, RunContext&) { return make(at::abs(a[0].t), a[0].type, a); });
  using F2 = at::Tensor (*)(const at::Tensor&, const at::Tensor&);
  const std::vector<std::pair<const char*, F2>> binary = {
      {"pow", [](const at::Tensor& x, const at::Tensor& y) { return at::pow(x, y); }},
      {"fmin", [](const at::Tensor& x, const at::Tensor& y) { return at::minimum(x, y); }},
      {"fmax", [](const at::Tensor& x, const at::Tensor& y) { return at::maximum(x, y); }},
      {"fdim", [](const at::Tensor& x, const at::Tensor& y) { return at::clamp_min(x - y, 0); }},
      {"hypot", [](const at::Tensor& x, const at::Tensor& y) { return at::sqrt(x * x + y * y); }},
      {"atan2", [](const at::Tensor& x, const at::Tensor& y) { return at::atan2(x, y); }},
      {"lbeta", [](const at::Tensor& x, const at::Tensor& y) { return lbeta(x, y); }},
      {"lchoose", [](const at::Tensor& x, const at::Tensor& y) { return lchoose(x, y); }},
      {"binomial_coefficient_log", [](const at::Tensor& x, const at::Tensor& y) { return lchoose(x, y); }},
      {"log_diff_exp", [](const at::Tensor& x, const at::Tensor& y) { return x + log1m_exp(y - x); }},
      {"fmod", [](const at::Tensor& x, const at::Tensor& y) { return at::fmod(x, y); }},
      {"log_inv_logit_diff", [](const at::Tensor& x, const at::Tensor& y) {
         return at::log(at::sigmoid(x) - at::sigmoid(y));
       }},
  };
  for (const auto& [name, f] : binary)
    add(name, 2, 2, binary_elementwise_rule,
        [f = f](const std::vector<Val>& a, RunContext& c) { return binary_real(a, c, f); });
  add("log1p_exp", 1, 1, elementwise_rule, [](const std::vector<Val>& a, RunContext& c) {
    return make(at::softplus(as_real(a[0], c.dtype)), realed(a[0].type), a);
  });
  add("inv_cloglog", 1, 1, elementwise_rule, [](const std::vector<Val>& a, RunContext& c) {
    return make(-at::expm1(-at::exp(as_real(a[0], c.dtype))), realed(a[0].type), a);
  });
  add("lmultiply", 2, 2, binary_elementwise_rule, [](const std::vector<Val>& a, RunContext& c) {
    auto [x, y] = broadcast_pair(a[0], a[1], c.dtype);
    return make(at::where((x == 0) & (y == 0), at::zeros_like(x * y), x * at::log(y)), *binary_result(a[0], a[1]), a);
  });
  add("add_diag", 2, 2, fixed({{kMatrix, kReal}, {kMatrix, kVector}}, kMatrix), [](const std::vector<Val>& a, RunContext& c) {
    const at::Tensor m = as_real(a[0], c.dtype);
    const at::Tensor d = a[1].type.base == Base::vector ? as_real(a[1], c.dtype) : lift(as_real(a[1], c.dtype), 2);
    return make(m + at::diag_embed(d.expand({m.size(0) > d.size(0) ? m.size(0) : d.size(0), m.size(-1)})), kMatrix, a);
  });
  add("append_array", 2, 2, [](const std::vector<Type>& a) -> std::optional<Type> {
        if (a[0].array_dims == 0 || realed(a[0]) != realed(a[1])) return std::nullopt;
        return a[0].base == Base::int_ && a[1].base == Base::int_ ? a[0] : realed(a[0]);
      },
      [](const std::vector<Val>& a, RunContext& c) {
        const bool ints = a[0].type.base == Base::int_ && a[1].type.base == Base::int_;
        at::Tensor x = ints ? a[0].t : as_real(a[0], c.dtype), y = ints ? a[1].t : as_real(a[1], c.dtype);
        return make(cat_particles(x, y, 1), ints ? a[0].type : realed(a[0].type), a);
      });
  add("fma", 3, 3, fixed({{kReal, kReal, kReal}}, kReal), [](const std::vector<Val>& a, RunContext& c) {
    return make(as_real(a[0], c.dtype) * as_real(a[1], c.dtype) + as_real(a[2], c.dtype), kReal, a);
  });
  add("int_step", 1, 1, fixed({{kReal}}, kInt), [](const std::vector<Val>& a, RunContext&) {
    return make((a[0].t > 0).to(at::kLong), kInt, a);
  });
  add("is_inf", 1, 1, fixed({{kReal}}, kInt), [](const std::vector<Val>& a, RunContext& c) {
    return make(at::isinf(as_real(a[0], c.dtype)).to(at::kLong), kInt, a);
  });
  add("is_nan", 1, 1, fixed({{kReal}}, kInt), [](const std::vector<Val>& a, RunContext& c) {
    return make(at::isnan(as_real(a[0], c.dtype)).to(at::kLong), kInt, a);
  });
  // Constants.
  const std::vector<std::pair<const char*, double>> constants = {
      {"pi", M_PI},   {"e", M_E},       {"sqrt2", M_SQRT2}, {"log2", M_LN2}, {"log10", M_LN10},
      {"not_a_number", NAN}, {"positive_infinity", INFINITY}, {"negative_infinity", -INFINITY},
      {"machine_precision", 2.220446049250313e-16}};
  for (const auto& [name, v] : constants) {
    if (b.count(name)) {  // log2() / log10() with no argument
      b[name].min_args = 0;
      const TypeRule inner = b[name].type;
      const Run inner_run = b[name].run;
      b[name].type = [inner](const std::vector<Type>& a) -> std::optional<Type> {
        return a.empty() ? std::optional<Type>(kReal) : inner(a);
      };
      b[name].run = [inner_run, v = v](const std::vector<Val>& a, RunContext& c) {
        return a.empty() ? Val{scalar_like(v, c), kReal, true} : inner_run(a, c);
      };
      continue;
    }
    add(name, 0, 0, fixed({{}}, kReal), [v = v](const std::vector<Val>&, RunContext& c) {
      return Val{scalar_like(v, c), kReal, true};
    });
  }
  // Reductions over every element.
  add("sum", 1, 1, [](const std::vector<Type>& a) -> std::optional<Type> {
        if (a.size() != 1 || a[0].is_scalar()) return std::nullopt;
        return a[0].base == Base::int_ ? kInt : kReal;
      },
      [](const std::vector<Val>& a, RunContext&) {
        return make(reduce_all(a[0].t).sum(1), a[0].type.base == Base::int_ ? kInt : kReal, a);
      });
  add("prod", 1, 1, reduce_rule, [](const std::vector<Val>& a, RunContext& c) {
    return make(reduce_all(as_real(a[0], c.dtype)).prod(1), kReal, a);
  });
  add("mean", 1, 1, reduce_rule, [](const std::vector<Val>& a, RunContext& c) {
    return make(reduce_all(as_real(a[0], c.dtype)).mean(1), kReal, a);
  });
  add("variance", 1, 1, reduce_rule, [](const std::vector<Val>& a, RunContext& c) {
    return make(reduce_all(as_real(a[0], c.dtype)).var(1, /*unbiased=*/true), kReal, a);
  });
  add("sd", 1, 1, reduce_rule, [](const std::vector<Val>& a, RunContext& c) {
    return make(reduce_all(as_real(a[0], c.dtype)).std(1, /*unbiased=*/true), kReal, a);
  });
  add("log_sum_exp", 1, 2, [](const std::vector<Type>& a) -> std::optional<Type> {
        if (a.size() == 2) return a[0].is_scalar() && a[1].is_scalar() ? std::optional<Type>(kReal) : std::nullopt;
        return reduce_rule(a);
      },
      [](const std::vector<Val>& a, RunContext& c) {
        if (a.size() == 2) {
          auto [x, y] = broadcast_pair(a[0], a[1], c.dtype);
          return make(at::logaddexp(x, y), kReal, a);
        }
        return make(at::logsumexp(reduce_all(as_real(a[0], c.dtype)), {1}), kReal, a);
      });
  for (const char* name : {"min", "max"}) {
    const bool is_min = std::string(name) == "min";
    add(name, 1, 2, [](const std::vector<Type>& a) -> std::optional<Type> {
          if (a.size() == 2) {
            if (!a[0].is_scalar() || !a[1].is_scalar()) return std::nullopt;
            return a[0].is_int() && a[1].is_int() ? kInt : kReal;
          }
          if (a[0].is_scalar()) return std::nullopt;
          return a[0].base == Base::int_ ? kInt : kReal;
        },
        [is_min](const std::vector<Val>& a, RunContext& c) {
          if (a.size() == 2) {
            const bool ints = a[0].type.is_int() && a[1].type.is_int();
            at::Tensor x = ints ? a[0].t : as_real(a[0], c.dtype), y = ints ? a[1].t : as_real(a[1], c.dtype);
            return make(is_min ? at::minimum(x, y) : at::maximum(x, y), ints ? kInt : kReal, a);
          }
          const at::Tensor t = reduce_all(a[0].t);
          require(t.size(1) > 0, std::string(is_min ? "min" : "max") + " of an empty container");
          return make(is_min ? std::get<0>(t.min(1)) : std::get<0>(t.max(1)),
                      a[0].type.base == Base::int_ ? kInt : kReal, a);
        });
  }
  add("log_mix", 3, 3, fixed({{kReal, kReal, kReal}}, kReal), [](const std::vector<Val>& a, RunContext& c) {
    const at::Tensor th = as_real(a[0], c.dtype);
    return make(at::logaddexp(at::log(th) + as_real(a[1], c.dtype), at::log1p(-th) + as_real(a[2], c.dtype)), kReal,
                a);
  });
  add("num_elements", 1, 1, [](const std::vector<Type>&) -> std::optional<Type> { return kInt; },
      [](const std::vector<Val>& a, RunContext&) {
        return Val{at::full({1}, a[0].t.numel() / std::max<int64_t>(a[0].t.size(0), 1), at::kLong), kInt, true};
      });
  add("size", 1, 1, [](const std::vector<Type>& a) -> std::optional<Type> {
        if (a[0].is_scalar()) return std::nullopt;
        return kInt;
      },
      [](const std::vector<Val>& a, RunContext&) {
        // The outer array's length; a vector's or matrix's number of elements.
        const int64_t n = a[0].type.array_dims > 0 ? a[0].t.size(1) : a[0].t.numel() / a[0].t.size(0);
        return Val{at::full({1}, n, at::kLong), kInt, true};
      });
  add("rows", 1, 1, fixed({{kVector}, {kRowVector}, {kMatrix}}, kInt), [](const std::vector<Val>& a, RunContext&) {
    const int64_t r = a[0].type.base == Base::row_vector ? 1 : a[0].t.size(1);
    return Val{at::full({1}, r, at::kLong), kInt, true};
  });
  add("cols", 1, 1, fixed({{kVector}, {kRowVector}, {kMatrix}}, kInt), [](const std::vector<Val>& a, RunContext&) {
    const int64_t n = a[0].type.base == Base::vector ? 1 : a[0].t.size(-1);
    return Val{at::full({1}, n, at::kLong), kInt, true};
  });
  // Vectors and matrices.
  add("softmax", 1, 1, fixed({{kVector}}, kVector), [](const std::vector<Val>& a, RunContext& c) {
    return make(at::softmax(as_real(a[0], c.dtype), -1), kVector, a);
  });
  add("log_softmax", 1, 1, fixed({{kVector}}, kVector), [](const std::vector<Val>& a, RunContext& c) {
    return make(at::log_softmax(as_real(a[0], c.dtype), -1), kVector, a);
  });
  add("cumulative_sum", 1, 1, same_1d_rule, [](const std::vector<Val>& a, RunContext& c) {
    if (a[0].type.base == Base::int_) return make(a[0].t.cumsum(-1), a[0].type, a);
    return make(as_real(a[0], c.dtype).cumsum(-1), realed(a[0].type), a);
  });
  add("sort_asc", 1, 1, same_1d_rule, [](const std::vector<Val>& a, RunContext& c) {
    const at::Tensor t = a[0].type.base == Base::int_ ? a[0].t : as_real(a[0], c.dtype);
    return make(std::get<0>(t.sort(-1)), a[0].type, a);
  });
  add("sort_desc", 1, 1, same_1d_rule, [](const std::vector<Val>& a, RunContext& c) {
    const at::Tensor t = a[0].type.base == Base::int_ ? a[0].t : as_real(a[0], c.dtype);
    return make(std::get<0>(t.sort(-1, /*descending=*/true)), a[0].type, a);
  });
  add("dot_product", 2, 2, [](const std::vector<Type>& a) -> std::optional<Type> {
        if (is_1d(a[0]) && is_1d(a[1])) return kReal;
        return std::nullopt;
      },
      [](const std::vector<Val>& a, RunContext& c) {
        return make((as_real(a[0], c.dtype) * as_real(a[1], c.dtype)).sum(-1), kReal, a);
      });
  add("dot_self", 1, 1, fixed({{kVector}, {kRowVector}}, kReal), [](const std::vector<Val>& a, RunContext& c) {
    const at::Tensor x = as_real(a[0], c.dtype);
    return make((x * x).sum(-1), kReal, a);
  });
  add("rows_dot_product", 2, 2, fixed({{kMatrix, kMatrix}, {kVector, kVector}}, kVector),
      [](const std::vector<Val>& a, RunContext& c) {
        const at::Tensor p = as_real(a[0], c.dtype) * as_real(a[1], c.dtype);
        return make(a[0].type.base == Base::matrix ? p.sum(-1) : p, kVector, a);
      });
  add("columns_dot_product", 2, 2, fixed({{kMatrix, kMatrix}}, kRowVector), [](const std::vector<Val>& a, RunContext& c) {
    return make((as_real(a[0], c.dtype) * as_real(a[1], c.dtype)).sum(-2), kRowVector, a);
  });
  add("rows_dot_self", 1, 1, fixed({{kMatrix}}, kVector), [](const std::vector<Val>& a, RunContext& c) {
    const at::Tensor x = as_real(a[0], c.dtype);
    return make((x * x).sum(-1), kVector, a);
  });
  add("columns_dot_self", 1, 1, fixed({{kMatrix}}, kRowVector), [](const std::vector<Val>& a, RunContext& c) {
    const at::Tensor x = as_real(a[0], c.dtype);
    return make((x * x).sum(-2), kRowVector, a);
  });
  add("diag_matrix", 1, 1, fixed({{kVector}}, kMatrix), [](const std::vector<Val>& a, RunContext& c) {
    return make(at::diag_embed(as_real(a[0], c.dtype)), kMatrix, a);
  });
  add("diagonal", 1, 1, fixed({{kMatrix}}, kVector), [](const std::vector<Val>& a, RunContext& c) {
    return make(at::diagonal(as_real(a[0], c.dtype), 0, -2, -1), kVector, a);
  });
  add("trace", 1, 1, fixed({{kMatrix}}, kReal), [](const std::vector<Val>& a, RunContext& c) {
    return make(at::diagonal(as_real(a[0], c.dtype), 0, -2, -1).sum(-1), kReal, a);
  });
  add("identity_matrix", 1, 1, fixed({{kInt}}, kMatrix), [](const std::vector<Val>& a, RunContext& c) {
    const int64_t n = int_of(a[0]);
    require(n >= 0, "identity_matrix: the size is negative");
    return make(at::eye(n, at::TensorOptions().dtype(c.dtype)).unsqueeze(0), kMatrix, a);
  });
  add("diag_pre_multiply", 2, 2, fixed({{kVector, kMatrix}, {kRowVector, kMatrix}}, kMatrix),
      [](const std::vector<Val>& a, RunContext& c) {
        return make(as_real(a[0], c.dtype).unsqueeze(-1) * as_real(a[1], c.dtype), kMatrix, a);
      });
  add("diag_post_multiply", 2, 2, fixed({{kMatrix, kVector}, {kMatrix, kRowVector}}, kMatrix),
      [](const std::vector<Val>& a, RunContext& c) {
        return make(as_real(a[0], c.dtype) * as_real(a[1], c.dtype).unsqueeze(-2), kMatrix, a);
      });
  add("quad_form", 2, 2, fixed({{kMatrix, kMatrix}, {kMatrix, kVector}}, kReal),
      [](const std::vector<Val>& a, RunContext& c) {
        const at::Tensor A = as_real(a[0], c.dtype), B = as_real(a[1], c.dtype);
        if (a[1].type.base == Base::vector)
          return make((B * at::matmul(A, B.unsqueeze(-1)).squeeze(-1)).sum(-1), kReal, a);
        return make(at::matmul(B.transpose(-1, -2), at::matmul(A, B)), kMatrix, a);
      });
  b["quad_form"].type = [](const std::vector<Type>& a) -> std::optional<Type> {
    if (a.size() == 2 && a[0] == kMatrix && a[1] == kVector) return kReal;
    if (a.size() == 2 && a[0] == kMatrix && a[1] == kMatrix) return kMatrix;
    return std::nullopt;
  };
  add("quad_form_diag", 2, 2, fixed({{kMatrix, kVector}}, kMatrix), [](const std::vector<Val>& a, RunContext& c) {
    const at::Tensor v = as_real(a[1], c.dtype);
    return make(v.unsqueeze(-1) * as_real(a[0], c.dtype) * v.unsqueeze(-2), kMatrix, a);
  });
  add("tcrossprod", 1, 1, fixed({{kMatrix}}, kMatrix), [](const std::vector<Val>& a, RunContext& c) {
    const at::Tensor x = as_real(a[0], c.dtype);
    return make(at::matmul(x, x.transpose(-1, -2)), kMatrix, a);
  });
  add("crossprod", 1, 1, fixed({{kMatrix}}, kMatrix), [](const std::vector<Val>& a, RunContext& c) {
    const at::Tensor x = as_real(a[0], c.dtype);
    return make(at::matmul(x.transpose(-1, -2), x), kMatrix, a);
  });
  add("multiply_lower_tri_self_transpose", 1, 1, fixed({{kMatrix}}, kMatrix), [](const std::vector<Val>& a, RunContext& c) {
    const at::Tensor L = at::tril(as_real(a[0], c.dtype));
    return make(at::matmul(L, L.transpose(-1, -2)), kMatrix, a);
  });
  add("cholesky_decompose", 1, 1, fixed({{kMatrix}}, kMatrix), [](const std::vector<Val>& a, RunContext& c) {
    const at::Tensor m = as_real(a[0], c.dtype);
    auto [L, info] = at::linalg_cholesky_ex(m);
    // Not positive definite for some particle: NaN there, a non-finite step (Stan rejects).
    const at::Tensor bad = (info != 0).reshape({-1, 1, 1});
    return make(at::where(bad, at::full_like(L, NAN), L), kMatrix, a);
  });
  add("mdivide_left_tri_low", 2, 2, fixed({{kMatrix, kVector}, {kMatrix, kMatrix}}, kVector),
      [](const std::vector<Val>& a, RunContext& c) {
        const at::Tensor L = at::tril(as_real(a[0], c.dtype));
        at::Tensor B = as_real(a[1], c.dtype);
        const bool vec = a[1].type.base == Base::vector;
        if (vec) B = B.unsqueeze(-1);
        at::Tensor X = at::linalg_solve_triangular(L, B, /*upper=*/false);
        return make(vec ? X.squeeze(-1) : X, vec ? kVector : kMatrix, a);
      });
  b["mdivide_left_tri_low"].type = [](const std::vector<Type>& a) -> std::optional<Type> {
    if (a.size() == 2 && a[0] == kMatrix && (a[1] == kVector || a[1] == kMatrix)) return a[1];
    return std::nullopt;
  };
  add("mdivide_right_tri_low", 2, 2, fixed({{kRowVector, kMatrix}, {kMatrix, kMatrix}}, kRowVector),
      [](const std::vector<Val>& a, RunContext& c) {
        const at::Tensor L = at::tril(as_real(a[1], c.dtype));
        at::Tensor B = as_real(a[0], c.dtype);
        const bool row = a[0].type.base == Base::row_vector;
        if (row) B = B.unsqueeze(-2);
        at::Tensor X = at::linalg_solve_triangular(L, B, /*upper=*/false, /*left=*/false);
        return make(row ? X.squeeze(-2) : X, row ? kRowVector : kMatrix, a);
      });
  b["mdivide_right_tri_low"].type = [](const std::vector<Type>& a) -> std::optional<Type> {
    if (a.size() == 2 && a[1] == kMatrix && (a[0] == kRowVector || a[0] == kMatrix)) return a[0];
    return std::nullopt;
  };
  add("inverse", 1, 1, fixed({{kMatrix}}, kMatrix), [](const std::vector<Val>& a, RunContext& c) {
    return make(at::linalg_inv(as_real(a[0], c.dtype)), kMatrix, a);
  });
  add("inverse_spd", 1, 1, fixed({{kMatrix}}, kMatrix), [](const std::vector<Val>& a, RunContext& c) {
    return make(at::cholesky_inverse(at::linalg_cholesky(as_real(a[0], c.dtype))), kMatrix, a);
  });
  add("log_determinant", 1, 1, fixed({{kMatrix}}, kReal), [](const std::vector<Val>& a, RunContext& c) {
    return make(std::get<1>(at::linalg_slogdet(as_real(a[0], c.dtype))), kReal, a);
  });
  add("determinant", 1, 1, fixed({{kMatrix}}, kReal), [](const std::vector<Val>& a, RunContext& c) {
    return make(at::linalg_det(as_real(a[0], c.dtype)), kReal, a);
  });
  // Building containers.
  add("rep_vector", 2, 2, fixed({{kReal, kInt}}, kVector), [](const std::vector<Val>& a, RunContext& c) {
    const int64_t n = int_of(a[1]);
    require(n >= 0, "rep_vector: the size is negative");
    return make(as_real(a[0], c.dtype).unsqueeze(1).expand({-1, n}).contiguous(), kVector, a);
  });
  add("rep_row_vector", 2, 2, fixed({{kReal, kInt}}, kRowVector), [](const std::vector<Val>& a, RunContext& c) {
    const int64_t n = int_of(a[1]);
    require(n >= 0, "rep_row_vector: the size is negative");
    return make(as_real(a[0], c.dtype).unsqueeze(1).expand({-1, n}).contiguous(), kRowVector, a);
  });
  add("rep_matrix", 2, 3, fixed({{kReal, kInt, kInt}, {kVector, kInt}, {kRowVector, kInt}}, kMatrix),
      [](const std::vector<Val>& a, RunContext& c) {
        const at::Tensor x = as_real(a[0], c.dtype);
        if (a.size() == 3) {
          const int64_t m = int_of(a[1]), n = int_of(a[2]);
          require(m >= 0 && n >= 0, "rep_matrix: a size is negative");
          return make(x.reshape({-1, 1, 1}).expand({-1, m, n}).contiguous(), kMatrix, a);
        }
        const int64_t n = int_of(a[1]);
        require(n >= 0, "rep_matrix: the size is negative");
        if (a[0].type.base == Base::vector) return make(x.unsqueeze(-1).expand({-1, -1, n}).contiguous(), kMatrix, a);
        return make(x.unsqueeze(-2).expand({-1, n, -1}).contiguous(), kMatrix, a);
      });
  add("rep_array", 2, 4, [](const std::vector<Type>& a) -> std::optional<Type> {
        for (size_t i = 1; i < a.size(); ++i)
          if (!a[i].is_int()) return std::nullopt;
        return Type{a[0].base, a[0].array_dims + static_cast<int>(a.size()) - 1};
      },
      [](const std::vector<Val>& a, RunContext&) {
        std::vector<int64_t> reps;
        for (size_t i = 1; i < a.size(); ++i) {
          reps.push_back(int_of(a[i]));
          require(reps.back() >= 0, "rep_array: a size is negative");
        }
        const at::Tensor& x = a[0].t;
        std::vector<int64_t> shape{x.size(0)};
        shape.insert(shape.end(), reps.begin(), reps.end());
        for (int64_t d = 1; d < x.dim(); ++d) shape.push_back(x.size(d));
        std::vector<int64_t> view{x.size(0)};
        for (size_t i = 0; i < reps.size(); ++i) view.push_back(1);
        for (int64_t d = 1; d < x.dim(); ++d) view.push_back(x.size(d));
        return make(x.reshape(view).expand(shape).contiguous(),
                    Type{a[0].type.base, a[0].type.array_dims + static_cast<int>(reps.size())}, a);
      });
  add("to_vector", 1, 1, [](const std::vector<Type>& a) -> std::optional<Type> {
        if (a[0].is_scalar() || a[0].array_dims > 1 || (a[0].array_dims == 1 && a[0].own_dims() > 0)) return std::nullopt;
        return kVector;
      },
      [](const std::vector<Val>& a, RunContext& c) {
        const at::Tensor x = as_real(a[0], c.dtype);
        return make(a[0].type.base == Base::matrix ? to_column_major(x) : x, kVector, a);
      });
  add("to_row_vector", 1, 1, [vector_rule = b["to_vector"].type](const std::vector<Type>& a) -> std::optional<Type> {
        if (!vector_rule(a)) return std::nullopt;
        return kRowVector;
      },
      [](const std::vector<Val>& a, RunContext& c) {
    const at::Tensor x = as_real(a[0], c.dtype);
    return make(a[0].type.base == Base::matrix ? to_column_major(x) : x, kRowVector, a);
  });
  add("to_matrix", 1, 3, [](const std::vector<Type>& a) -> std::optional<Type> {
        if (a.size() == 1) {
          if (a[0] == kMatrix || a[0] == kVector || a[0] == kRowVector) return kMatrix;
          if (a[0].array_dims == 2 && a[0].own_dims() == 0) return kMatrix;
          return std::nullopt;
        }
        if (a.size() == 3 && a[1].is_int() && a[2].is_int() && (is_1d(a[0]) || a[0] == kMatrix)) return kMatrix;
        return std::nullopt;
      },
      [](const std::vector<Val>& a, RunContext& c) {
        const at::Tensor x = as_real(a[0], c.dtype);
        if (a.size() == 1) {
          if (a[0].type.base == Base::vector && a[0].type.array_dims == 0) return make(x.unsqueeze(-1), kMatrix, a);
          if (a[0].type.base == Base::row_vector) return make(x.unsqueeze(-2), kMatrix, a);
          return make(x, kMatrix, a);
        }
        const int64_t m = int_of(a[1]), n = int_of(a[2]);
        const at::Tensor cm = a[0].type.base == Base::matrix ? to_column_major(x) : x.flatten(1);
        require(m >= 0 && n >= 0 && cm.size(1) == m * n,
                "to_matrix: " + std::to_string(cm.size(1)) + " elements do not fill a " + std::to_string(m) + "x" +
                    std::to_string(n) + " matrix");
        // Filled column-major, as Stan does.
        return make(cm.reshape({-1, n, m}).transpose(-1, -2).contiguous(), kMatrix, a);
      });
  add("to_array_1d", 1, 1, [](const std::vector<Type>& a) -> std::optional<Type> {
        if (a[0].is_scalar()) return std::nullopt;
        return Type{a[0].base == Base::int_ ? Base::int_ : Base::real, 1};
      },
      [](const std::vector<Val>& a, RunContext& c) {
        if (a[0].type.base == Base::int_) return make(a[0].t.flatten(1), Type{Base::int_, 1}, a);
        const at::Tensor x = as_real(a[0], c.dtype);
        // Arrays row-major, a matrix (the innermost part) column-major.
        at::Tensor y = a[0].type.base == Base::matrix ? x.transpose(-1, -2) : x;
        return make(y.reshape({x.size(0), -1}), Type{Base::real, 1}, a);
      });
  add("to_int", 1, 1, fixed({{kReal}}, kInt), [](const std::vector<Val>& a, RunContext& c) {
    require(a[0].data_only, "to_int of a value that depends on parameters");
    return make(at::trunc(as_real(a[0], c.dtype)).to(at::kLong), kInt, a);
  });
  add("append_row", 2, 2, [](const std::vector<Type>& a) -> std::optional<Type> {
        const Type x = realed(a[0]), y = realed(a[1]);
        if ((x == kVector || x == kReal) && (y == kVector || y == kReal) && !(x == kReal && y == kReal)) return kVector;
        if ((x == kMatrix || x == kRowVector) && (y == kMatrix || y == kRowVector)) return kMatrix;
        return std::nullopt;
      },
      [](const std::vector<Val>& a, RunContext& c) {
        at::Tensor x = as_real(a[0], c.dtype), y = as_real(a[1], c.dtype);
        const bool matrix = a[0].type.base == Base::matrix || a[0].type.base == Base::row_vector;
        if (matrix) {
          if (x.dim() == 2) x = x.unsqueeze(1);
          if (y.dim() == 2) y = y.unsqueeze(1);
        } else {
          if (x.dim() == 1) x = x.unsqueeze(1);
          if (y.dim() == 1) y = y.unsqueeze(1);
        }
        return make(cat_particles(x, y, 1), matrix ? kMatrix : kVector, a);
      });
  add("append_col", 2, 2, [](const std::vector<Type>& a) -> std::optional<Type> {
        const Type x = realed(a[0]), y = realed(a[1]);
        if ((x == kRowVector || x == kReal) && (y == kRowVector || y == kReal) && !(x == kReal && y == kReal))
          return kRowVector;
        if ((x == kMatrix || x == kVector) && (y == kMatrix || y == kVector)) return kMatrix;
        return std::nullopt;
      },
      [](const std::vector<Val>& a, RunContext& c) {
        at::Tensor x = as_real(a[0], c.dtype), y = as_real(a[1], c.dtype);
        const bool matrix = a[0].type.base == Base::matrix || a[0].type.base == Base::vector;
        int64_t dim = 1;
        if (matrix) {
          if (a[0].type.base == Base::vector) x = x.unsqueeze(-1);
          if (a[1].type.base == Base::vector) y = y.unsqueeze(-1);
          dim = 2;
        } else {
          if (x.dim() == 1) x = x.unsqueeze(1);
          if (y.dim() == 1) y = y.unsqueeze(1);
        }
        return make(cat_particles(x, y, dim), matrix ? kMatrix : kRowVector, a);
      });
  const auto segment_rule = [](size_t ints) {
    return [ints](const std::vector<Type>& a) -> std::optional<Type> {
      if (a.size() != ints + 1 || !(is_1d(a[0]) || (a[0].array_dims == 1))) return std::nullopt;
      for (size_t i = 1; i < a.size(); ++i)
        if (!a[i].is_int()) return std::nullopt;
      return a[0];
    };
  };
  auto slice = [](const Val& v, int64_t start, int64_t n, const char* what) {
    const int64_t len = v.t.size(1);
    require(n >= 0 && start >= 0 && start + n <= len,
            std::string(what) + ": elements " + std::to_string(start + 1) + " to " + std::to_string(start + n) +
                " of a container of size " + std::to_string(len));
    return Val{v.t.narrow(1, start, n), v.type, v.data_only};
  };
  add("head", 2, 2, segment_rule(1), [slice](const std::vector<Val>& a, RunContext&) {
    return slice(a[0], 0, int_of(a[1]), "head");
  });
  add("tail", 2, 2, segment_rule(1), [slice](const std::vector<Val>& a, RunContext&) {
    const int64_t n = int_of(a[1]);
    return slice(a[0], a[0].t.size(1) - n, n, "tail");
  });
  add("segment", 3, 3, segment_rule(2), [slice](const std::vector<Val>& a, RunContext&) {
    return slice(a[0], int_of(a[1]) - 1, int_of(a[2]), "segment");
  });
  add("block", 5, 5, fixed({{kMatrix, kInt, kInt, kInt, kInt}}, kMatrix), [](const std::vector<Val>& a, RunContext&) {
    const int64_t i = int_of(a[1]) - 1, j = int_of(a[2]) - 1, nr = int_of(a[3]), nc = int_of(a[4]);
    const at::Tensor& m = a[0].t;
    require(i >= 0 && j >= 0 && nr >= 0 && nc >= 0 && i + nr <= m.size(1) && j + nc <= m.size(2),
            "block: the block does not fit in the " + std::to_string(m.size(1)) + "x" + std::to_string(m.size(2)) +
                " matrix");
    return make(m.narrow(1, i, nr).narrow(2, j, nc), kMatrix, a);
  });
  add("col", 2, 2, fixed({{kMatrix, kInt}}, kVector), [](const std::vector<Val>& a, RunContext&) {
    const int64_t j = int_of(a[1]);
    require(j >= 1 && j <= a[0].t.size(2), "col: column " + std::to_string(j) + " of " + std::to_string(a[0].t.size(2)));
    return make(a[0].t.select(2, j - 1), kVector, a);
  });
  add("row", 2, 2, fixed({{kMatrix, kInt}}, kRowVector), [](const std::vector<Val>& a, RunContext&) {
    const int64_t i = int_of(a[1]);
    require(i >= 1 && i <= a[0].t.size(1), "row: row " + std::to_string(i) + " of " + std::to_string(a[0].t.size(1)));
    return make(a[0].t.select(1, i - 1), kRowVector, a);
  });
  add("linspaced_vector", 3, 3, fixed({{kInt, kReal, kReal}}, kVector), [](const std::vector<Val>& a, RunContext& c) {
    const int64_t n = int_of(a[0]);
    require(n >= 0, "linspaced_vector: the size is negative");
    const at::Tensor lo = as_real(a[1], c.dtype), hi = as_real(a[2], c.dtype);
    const at::Tensor steps = at::arange(n, at::TensorOptions().dtype(c.dtype)) / std::max<int64_t>(n - 1, 1);
    return make(lo.unsqueeze(1) + (hi - lo).unsqueeze(1) * steps.unsqueeze(0), kVector, a);
  });
  add("linspaced_array", 3, 3, fixed({{kInt, kReal, kReal}}, Type{Base::real, 1}), [](const std::vector<Val>& a, RunContext& c) {
    const int64_t n = int_of(a[0]);
    require(n >= 0, "linspaced_array: the size is negative");
    const at::Tensor lo = as_real(a[1], c.dtype), hi = as_real(a[2], c.dtype);
    const at::Tensor steps = at::arange(n, at::TensorOptions().dtype(c.dtype)) / std::max<int64_t>(n - 1, 1);
    return make(lo.unsqueeze(1) + (hi - lo).unsqueeze(1) * steps.unsqueeze(0), Type{Base::real, 1}, a);
  });
  // Squared-exponential covariance of points given as reals or as vectors.
  const auto gp_rule = [](const std::vector<Type>& a) -> std::optional<Type> {
    if (a.size() != 3 || !a[1].is_scalar() || !a[2].is_scalar()) return std::nullopt;
    if (a[0].array_dims == 1 && (a[0].base == Base::real || a[0].base == Base::int_ || a[0].base == Base::vector))
      return kMatrix;
    return std::nullopt;
  };
  const Run gp_run = [](const std::vector<Val>& a, RunContext& c) {
    at::Tensor x = as_real(a[0], c.dtype);
    if (a[0].type.base != Base::vector) x = x.unsqueeze(-1);  // (P, N, D)
    const at::Tensor d2 = (x.unsqueeze(2) - x.unsqueeze(1)).pow(2).sum(-1);
    const at::Tensor alpha = lift(as_real(a[1], c.dtype), 3), rho = lift(as_real(a[2], c.dtype), 3);
    return make(alpha * alpha * at::exp(-0.5 * d2 / (rho * rho)), kMatrix, a);
  };
  add("gp_exp_quad_cov", 3, 3, gp_rule, gp_run);
  add("cov_exp_quad", 3, 3, gp_rule, gp_run);
  // Random numbers (generated quantities and transformed data).
  const auto rng_rule = [](int params, Base scalar) {
    return [params, scalar](const std::vector<Type>& a) -> std::optional<Type> {
      if (static_cast<int>(a.size()) != params) return std::nullopt;
      bool vectorised = false;
      for (const auto& t : a) {
        if (t.is_scalar()) continue;
        if (is_1d(t)) vectorised = true;
        else return std::nullopt;
      }
      return Type{scalar, vectorised ? 1 : 0};
    };
  };
  auto rng_args = [](const std::vector<Val>& a, RunContext& c) {
    std::vector<at::Tensor> out;
    int64_t n = -1;
    for (const auto& v : a)
      if (v.t.dim() > 1) n = v.t.size(1);
    for (const auto& v : a) {
      at::Tensor t = as_real(v, c.dtype);
      out.push_back(n >= 0 && t.dim() == 1 ? t.unsqueeze(1).expand({-1, n}) : t);
    }
    int64_t P = 1;
    for (const auto& t : out) P = std::max(P, t.size(0));
    for (auto& t : out) {
      std::vector<int64_t> s = t.sizes().vec();
      s[0] = P;
      t = t.expand(s).contiguous();
    }
    return out;
  };
  const auto add_rng = [&](const std::string& name, int params, Base scalar,
                           std::function<at::Tensor(const std::vector<at::Tensor>&, at::Generator&)> draw) {
    add(name, params, params, rng_rule(params, scalar),
        [rng_args, draw, scalar](const std::vector<Val>& a, RunContext& c) {
          require(c.generator != nullptr, "random numbers are not available here");
          const std::vector<at::Tensor> p = rng_args(a, c);
          at::Tensor r = draw(p, *c.generator);
          const Type t{scalar, p.front().dim() > 1 ? 1 : 0};
          return Val{scalar == Base::int_ ? r.to(at::kLong) : r, t, false};
        },
        true);
  };
  add_rng("normal_rng", 2, Base::real, [](const std::vector<at::Tensor>& p, at::Generator& g) {
    return p[0] + p[1] * at::normal(0, 1, p[0].sizes(), g, p[0].options());
  });
  add_rng("uniform_rng", 2, Base::real, [](const std::vector<at::Tensor>& p, at::Generator& g) {
    return p[0] + (p[1] - p[0]) * at::empty(p[0].sizes(), p[0].options()).uniform_(0, 1, g);
  });
  add_rng("exponential_rng", 1, Base::real, [](const std::vector<at::Tensor>& p, at::Generator& g) {
    return at::empty(p[0].sizes(), p[0].options()).exponential_(1, g) / p[0];
  });
  add_rng("lognormal_rng", 2, Base::real, [](const std::vector<at::Tensor>& p, at::Generator& g) {
    return at::exp(p[0] + p[1] * at::normal(0, 1, p[0].sizes(), g, p[0].options()));
  });
  add_rng("cauchy_rng", 2, Base::real, [](const std::vector<at::Tensor>& p, at::Generator& g) {
    return p[0] + p[1] * at::empty(p[0].sizes(), p[0].options()).cauchy_(0, 1, g);
  });
  add_rng("student_t_rng", 3, Base::real, [](const std::vector<at::Tensor>& p, at::Generator& g) {
    const at::Tensor z = at::normal(0, 1, p[0].sizes(), g, p[0].options());
    const at::Tensor chi2 = 2 * at::_standard_gamma(p[0] / 2, g);
    return p[1] + p[2] * z / at::sqrt(chi2 / p[0]);
  });
  add_rng("gamma_rng", 2, Base::real, [](const std::vector<at::Tensor>& p, at::Generator& g) {
    return at::_standard_gamma(p[0], g) / p[1];
  });
  add_rng("inv_gamma_rng", 2, Base::real, [](const std::vector<at::Tensor>& p, at::Generator& g) {
    return p[1] / at::_standard_gamma(p[0], g);
  });
  add_rng("beta_rng", 2, Base::real, [](const std::vector<at::Tensor>& p, at::Generator& g) {
    const at::Tensor x = at::_standard_gamma(p[0], g), y = at::_standard_gamma(p[1], g);
    return x / (x + y);
  });
  add_rng("bernoulli_rng", 1, Base::int_, [](const std::vector<at::Tensor>& p, at::Generator& g) {
    return at::bernoulli(p[0], g);
  });
  add_rng("bernoulli_logit_rng", 1, Base::int_, [](const std::vector<at::Tensor>& p, at::Generator& g) {
    return at::bernoulli(at::sigmoid(p[0]), g);
  });
  add_rng("binomial_rng", 2, Base::int_, [](const std::vector<at::Tensor>& p, at::Generator& g) {
    return at::binomial(p[0], p[1], g);
  });
  add_rng("poisson_rng", 1, Base::int_, [](const std::vector<at::Tensor>& p, at::Generator& g) {
    return at::poisson(p[0], g);
  });
  add_rng("poisson_log_rng", 1, Base::int_, [](const std::vector<at::Tensor>& p, at::Generator& g) {
    return at::poisson(at::exp(p[0]), g);
  });
  add_rng("neg_binomial_2_rng", 2, Base::int_, [](const std::vector<at::Tensor>& p, at::Generator& g) {
    return at::poisson(at::_standard_gamma(p[1], g) * p[0] / p[1], g);
  });
  add_rng("neg_binomial_2_log_rng", 2, Base::int_, [](const std::vector<at::Tensor>& p, at::Generator& g) {
    return at::poisson(at::_standard_gamma(p[1], g) * at::exp(p[0]) / p[1], g);
  });
  add("categorical_rng", 1, 1, fixed({{kVector}}, kInt), [](const std::vector<Val>& a, RunContext& c) {
    require(c.generator != nullptr, "random numbers are not available here");
    return Val{at::multinomial(as_real(a[0], c.dtype), 1, true, *c.generator).squeeze(-1) + 1, kInt, false};
  }, true);
  add("categorical_logit_rng", 1, 1, fixed({{kVector}}, kInt), [](const std::vector<Val>& a, RunContext& c) {
    require(c.generator != nullptr, "random numbers are not available here");
    return Val{at::multinomial(at::softmax(as_real(a[0], c.dtype), -1), 1, true, *c.generator).squeeze(-1) + 1, kInt,
               false};
  }, true);
  add("multi_normal_cholesky_rng", 2, 2, fixed({{kVector, kMatrix}}, kVector), [](const std::vector<Val>& a, RunContext& c) {
    require(c.generator != nullptr, "random numbers are not available here");
    const at::Tensor mu = as_real(a[0], c.dtype), L = as_real(a[1], c.dtype);
    const int64_t P = std::max(mu.size(0), L.size(0));
    const at::Tensor z = at::normal(0, 1, {P, mu.size(-1)}, *c.generator, mu.options());
    return Val{mu + at::matmul(L, z.unsqueeze(-1)).squeeze(-1), kVector, false};
  }, true);
  add("multi_normal_rng", 2, 2, fixed({{kVector, kMatrix}}, kVector), [](const std::vector<Val>& a, RunContext& c) {
    require(c.generator != nullptr, "random numbers are not available here");
    const at::Tensor mu = as_real(a[0], c.dtype), L = at::linalg_cholesky(as_real(a[1], c.dtype));
    const int64_t P = std::max(mu.size(0), L.size(0));
    const at::Tensor z = at::normal(0, 1, {P, mu.size(-1)}, *c.generator, mu.options());
    return Val{mu + at::matmul(L, z.unsqueeze(-1)).squeeze(-1), kVector, false};
  }, true);
  add("dirichlet_rng", 1, 1, fixed({{kVector}}, kVector), [](const std::vector<Val>& a, RunContext& c) {
    require(c.generator != nullptr, "random numbers are not available here");
    const at::Tensor g = at::_standard_gamma(as_real(a[0], c.dtype).contiguous(), *c.generator);
    return Val{g / g.sum(-1, true), kVector, false};
  }, true);
  return b;
}

// ---- distributions ------------------------------------------------------------------------
using Elementwise = at::Tensor (*)(const std::vector<at::Tensor>&);

// Every argument flattened to (P, K) or (P, 1), broadcast, the log density summed.
DistributionDef elementwise(bool discrete, int params, Elementwise f) {
  DistributionDef d;
  d.discrete = discrete;
  d.min_params = d.max_params = params;
  d.type = [discrete](const std::vector<Type>& a) -> std::optional<Type> {
    for (size_t i = 0; i < a.size(); ++i) {
      const Type& t = a[i];
      if (t.base == Base::void_) return std::nullopt;
      if (t.array_dims > 1 || (t.array_dims == 1 && t.own_dims() > 0)) return std::nullopt;  // scalars, 1-d, vectors
      if (t.base == Base::matrix) return std::nullopt;
      if (i == 0 && discrete && t.base != Base::int_) return std::nullopt;
    }
    return kReal;
  };
  d.log_density = [f](const std::vector<Val>& a, RunContext& c) {
    std::vector<at::Tensor> args;
    int64_t K = 1;
    for (const auto& v : a) {
      args.push_back(flat(v, c.dtype));
      const int64_t k = args.back().size(1);
      if (k != 1) {
        require(K == 1 || K == k, "the sizes of the vectorised arguments differ (" + std::to_string(K) + " and " +
                                      std::to_string(k) + ")");
        K = k;
      }
    }
    return f(args).sum(1);
  };
  return d;
}

at::Tensor in_support(const at::Tensor& ok, const at::Tensor& lp) {
  return at::where(ok, lp, at::full_like(lp, -INFINITY));
}

std::map<std::string, DistributionDef> make_distributions() {
  std::map<std::string, DistributionDef> d;
  d["normal"] = elementwise(false, 2, [](const std::vector<at::Tensor>& a) {
    const at::Tensor z = (a[0] - a[1]) / a[2];
    return -0.5 * z * z - at::log(a[2]) - kLogSqrtTwoPi;
  });
  {
    DistributionDef std_normal = elementwise(false, 0, [](const std::vector<at::Tensor>& a) {
      return -0.5 * a[0] * a[0] - kLogSqrtTwoPi;
    });
    d["std_normal"] = std_normal;
  }
  d["beta_binomial"] = elementwise(true, 3, [](const std::vector<at::Tensor>& a) {
    const at::Tensor &y = a[0], &n = a[1], &al = a[2], &be = a[3];
    return in_support((y >= 0) & (y <= n), lchoose(n, y) + lbeta(y + al, n - y + be) - lbeta(al, be));
  });
  d["student_t"] = elementwise(false, 3, [](const std::vector<at::Tensor>& a) {
    const at::Tensor &nu = a[1], z = (a[0] - a[2]) / a[3];
    return at::lgamma((nu + 1) / 2) - at::lgamma(nu / 2) - 0.5 * (at::log(nu) + kLogPi) - at::log(a[3]) -
           (nu + 1) / 2 * at::log1p(z * z / nu);
  });
  d["cauchy"] = elementwise(false, 2, [](const std::vector<at::Tensor>& a) {
    const at::Tensor z = (a[0] - a[1]) / a[2];
    return -kLogPi - at::log(a[2]) - at::log1p(z * z);
  });
  d["double_exponential"] = elementwise(false, 2, [](const std::vector<at::Tensor>& a) {
    return -std::log(2.0) - at::log(a[2]) - at::abs(a[0] - a[1]) / a[2];
  });
  d["logistic"] = elementwise(false, 2, [](const std::vector<at::Tensor>& a) {
    const at::Tensor z = (a[0] - a[1]) / a[2];
    return -z - at::log(a[2]) - 2 * at::softplus(-z);
  });
  d["gumbel"] = elementwise(false, 2, [](const std::vector<at::Tensor>& a) {
    const at::Tensor z = (a[0] - a[1]) / a[2];
    return -at::log(a[2]) - z - at::exp(-z);
  });
  d["lognormal"] = elementwise(false, 2, [](const std::vector<at::Tensor>& a) {
    const at::Tensor ly = at::log(a[0]), z = (ly - a[1]) / a[2];
    return in_support(a[0] > 0, -0.5 * z * z - at::log(a[2]) - kLogSqrtTwoPi - ly);
  });
  d["gamma"] = elementwise(false, 2, [](const std::vector<at::Tensor>& a) {
    return in_support(a[0] >= 0, a[1] * at::log(a[2]) - at::lgamma(a[1]) + (a[1] - 1) * at::log(a[0]) - a[2] * a[0]);
  });
  d["inv_gamma"] = elementwise(false, 2, [](const std::vector<at::Tensor>& a) {
    return in_support(a[0] > 0, a[1] * at::log(a[2]) - at::lgamma(a[1]) - (a[1] + 1) * at::log(a[0]) - a[2] / a[0]);
  });
  d["exponential"] = elementwise(false, 1, [](const std::vector<at::Tensor>& a) {
    return in_support(a[0] >= 0, at::log(a[1]) - a[1] * a[0]);
  });
  d["chi_square"] = elementwise(false, 1, [](const std::vector<at::Tensor>& a) {
    const at::Tensor h = a[1] / 2;
    return in_support(a[0] >= 0, (h - 1) * at::log(a[0]) - a[0] / 2 - h * std::log(2.0) - at::lgamma(h));
  });
  d["beta"] = elementwise(false, 2, [](const std::vector<at::Tensor>& a) {
    return in_support((a[0] >= 0) & (a[0] <= 1),
                      (a[1] - 1) * at::log(a[0]) + (a[2] - 1) * at::log1p(-a[0]) - lbeta(a[1], a[2]));
  });
  d["uniform"] = elementwise(false, 2, [](const std::vector<at::Tensor>& a) {
    return in_support((a[0] >= a[1]) & (a[0] <= a[2]), -at::log(a[2] - a[1]) + 0 * a[0]);
  });
  d["weibull"] = elementwise(false, 2, [](const std::vector<at::Tensor>& a) {
    const at::Tensor &y = a[0], &k = a[1], &s = a[2];
    return in_support(y >= 0, at::log(k) - at::log(s) + (k - 1) * (at::log(y) - at::log(s)) - at::pow(y / s, k));
  });
  d["pareto"] = elementwise(false, 2, [](const std::vector<at::Tensor>& a) {
    const at::Tensor &y = a[0], &ymin = a[1], &alpha = a[2];
    return in_support(y >= ymin, at::log(alpha) + alpha * at::log(ymin) - (alpha + 1) * at::log(y));
  });
  d["bernoulli"] = elementwise(true, 1, [](const std::vector<at::Tensor>& a) {
    const at::Tensor &y = a[0], &th = a[1];
    return in_support((y == 0) | (y == 1), at::where(y == 1, at::log(th), at::log1p(-th)));
  });
  d["bernoulli_logit"] = elementwise(true, 1, [](const std::vector<at::Tensor>& a) {
    const at::Tensor &y = a[0], &al = a[1];
    return in_support((y == 0) | (y == 1), at::where(y == 1, log_inv_logit(al), log1m_inv_logit(al)));
  });
  d["binomial"] = elementwise(true, 2, [](const std::vector<at::Tensor>& a) {
    const at::Tensor &y = a[0], &n = a[1], &th = a[2];
    const at::Tensor lp = lchoose(n, y) + at::where(y > 0, y * at::log(th), at::zeros_like(th)) +
                          at::where(n - y > 0, (n - y) * at::log1p(-th), at::zeros_like(th));
    return in_support((y >= 0) & (y <= n), lp);
  });
  d["binomial_logit"] = elementwise(true, 2, [](const std::vector<at::Tensor>& a) {
    const at::Tensor &y = a[0], &n = a[1], &al = a[2];
    return in_support((y >= 0) & (y <= n), lchoose(n, y) + y * log_inv_logit(al) + (n - y) * log1m_inv_logit(al));
  });
  d["poisson"] = elementwise(true, 1, [](const std::vector<at::Tensor>& a) {
    const at::Tensor &y = a[0], &l = a[1];
    return in_support(y >= 0, at::where(y > 0, y * at::log(l), at::zeros_like(l)) - l - at::lgamma(y + 1));
  });
  d["poisson_log"] = elementwise(true, 1, [](const std::vector<at::Tensor>& a) {
    const at::Tensor &y = a[0], &al = a[1];
    return in_support(y >= 0, y * al - at::exp(al) - at::lgamma(y + 1));
  });
  d["neg_binomial_2"] = elementwise(true, 2, [](const std::vector<at::Tensor>& a) {
    const at::Tensor &y = a[0], &mu = a[1], &ph = a[2];
    const at::Tensor lsum = at::log(mu + ph);
    return in_support(y >= 0, at::lgamma(y + ph) - at::lgamma(y + 1) - at::lgamma(ph) + y * (at::log(mu) - lsum) +
                                  ph * (at::log(ph) - lsum));
  });
  d["neg_binomial_2_log"] = elementwise(true, 2, [](const std::vector<at::Tensor>& a) {
    const at::Tensor &y = a[0], &eta = a[1], &ph = a[2];
    const at::Tensor lph = at::log(ph), lsum = at::logaddexp(eta, lph);
    return in_support(y >= 0, at::lgamma(y + ph) - at::lgamma(y + 1) - at::lgamma(ph) + y * (eta - lsum) +
                                  ph * (lph - lsum));
  });
  d["neg_binomial"] = elementwise(true, 2, [](const std::vector<at::Tensor>& a) {
    const at::Tensor &y = a[0], &al = a[1], &be = a[2];
    return in_support(y >= 0, at::lgamma(y + al) - at::lgamma(y + 1) - at::lgamma(al) +
                                  al * (at::log(be) - at::log1p(be)) - y * at::log1p(be));
  });
  // Categorical outcomes: y an int or int array (1-based), the probabilities a vector.
  const auto categorical = [](bool logit) {
    DistributionDef c;
    c.discrete = true;
    c.min_params = c.max_params = 1;
    c.type = [](const std::vector<Type>& a) -> std::optional<Type> {
      if (a[0].base != Base::int_ || a[0].array_dims > 1 || !(a[1] == kVector)) return std::nullopt;
      return kReal;
    };
    c.log_density = [logit](const std::vector<Val>& a, RunContext& ctx) {
      const at::Tensor th = as_real(a[1], ctx.dtype);
      const at::Tensor lp = logit ? at::log_softmax(th, -1) : at::log(th);  // (P, K)
      const int64_t K = lp.size(-1);
      const at::Tensor y = a[0].t.dim() == 1 ? a[0].t.unsqueeze(1) : a[0].t;  // (P, N)
      require(y.numel() == 0 || (y.min().item<int64_t>() >= 1 && y.max().item<int64_t>() <= K),
              "categorical outcomes must be in 1.." + std::to_string(K));
      const int64_t P = std::max(lp.size(0), y.size(0));
      return lp.expand({P, K}).gather(1, (y - 1).expand({P, y.size(1)})).sum(1);
    };
    return c;
  };
  d["categorical"] = categorical(false);
  d["categorical_logit"] = categorical(true);
  {
    DistributionDef o;
    o.discrete = true;
    o.min_params = o.max_params = 2;
    o.type = [](const std::vector<Type>& a) -> std::optional<Type> {
      if (a[0].base != Base::int_ || a[0].array_dims > 1 || !(a[2] == kVector)) return std::nullopt;
      if (!(a[1].is_scalar() || a[1] == kVector)) return std::nullopt;
      return kReal;
    };
    o.log_density = [](const std::vector<Val>& a, RunContext& ctx) {
      const at::Tensor eta = flat(a[1], ctx.dtype);   // (P, N) or (P, 1)
      const at::Tensor cut = as_real(a[2], ctx.dtype);  // (P, K-1)
      const int64_t K = cut.size(-1) + 1;
      const at::Tensor y = a[0].t.dim() == 1 ? a[0].t.unsqueeze(1) : a[0].t;
      require(y.numel() == 0 || (y.min().item<int64_t>() >= 1 && y.max().item<int64_t>() <= K),
              "ordered_logistic outcomes must be in 1.." + std::to_string(K));
      const int64_t P = std::max({eta.size(0), cut.size(0), y.size(0)});
      const int64_t N = std::max(eta.size(1), y.size(1));
      const at::Tensor inf = at::full({cut.size(0), 1}, INFINITY, cut.options());
      const at::Tensor ext = at::cat({-inf, cut, inf}, 1).expand({P, K + 1});  // c_0 = -inf, c_K = inf
      const at::Tensor yy = y.expand({P, N});
      const at::Tensor lo = ext.gather(1, yy - 1), hi = ext.gather(1, yy);
      const at::Tensor e = eta.expand({P, N});
      // log(inv_logit(e - lo) - inv_logit(e - hi)), stably: the upper tail for y = K.
      const at::Tensor a_lo = e - lo, a_hi = e - hi;
      const at::Tensor lp = at::where(yy == K, log_inv_logit(a_lo),
                                      at::where(yy == 1, log1m_inv_logit(a_hi),
                                                log1m_inv_logit(a_hi) + log_inv_logit(a_lo) +
                                                    at::log1p(-at::exp(lo - hi))));
      return lp.sum(1);
    };
    d["ordered_logistic"] = o;
  }
  {
    DistributionDef dir;
    dir.min_params = dir.max_params = 1;
    dir.type = [](const std::vector<Type>& a) -> std::optional<Type> {
      if (a[0].base != Base::vector || a[0].array_dims > 1 || a[1].base != Base::vector || a[1].array_dims > 1)
        return std::nullopt;
      return kReal;
    };
    dir.log_density = [](const std::vector<Val>& a, RunContext& c) {
      const at::Tensor th = as_real(a[0], c.dtype), al = as_real(a[1], c.dtype);
      const at::Tensor lp = at::lgamma(al.sum(-1)) - at::lgamma(al).sum(-1) + ((al - 1) * at::log(th)).sum(-1);
      return lp.dim() == 1 ? lp : lp.flatten(1).sum(1);
    };
    d["dirichlet"] = dir;
  }
  // Multivariate normals: y a vector or array of vectors, mu likewise.
  const auto mvn = [](bool cholesky) {
    DistributionDef m;
    m.min_params = m.max_params = 2;
    m.type = [](const std::vector<Type>& a) -> std::optional<Type> {
      for (int i = 0; i < 2; ++i)
        if (!((a[i].base == Base::vector || a[i].base == Base::row_vector) && a[i].array_dims <= 1)) return std::nullopt;
      if (!(a[2] == kMatrix)) return std::nullopt;
      return kReal;
    };
    m.log_density = [cholesky](const std::vector<Val>& a, RunContext& c) {
      const at::Tensor S = as_real(a[2], c.dtype);  // (P, K, K)
      at::Tensor L = S;
      if (!cholesky) {
        auto [chol, info] = at::linalg_cholesky_ex(S);
        L = at::where((info != 0).reshape({-1, 1, 1}), at::full_like(chol, NAN), chol);
      }
      at::Tensor y = as_real(a[0], c.dtype), mu = as_real(a[1], c.dtype);
      if (y.dim() == 2) y = y.unsqueeze(1);  // (P, N, K)
      if (mu.dim() == 2) mu = mu.unsqueeze(1);
      const at::Tensor r = (y - mu);            // (P, N, K)
      const int64_t K = r.size(-1);
      const at::Tensor z = at::linalg_solve_triangular(L.unsqueeze(1), r.unsqueeze(-1), /*upper=*/false).squeeze(-1);
      const at::Tensor logdet = at::log(at::diagonal(L, 0, -2, -1)).sum(-1);  // (P,)
      return (-0.5 * (z * z).sum(-1)).sum(1) - r.size(1) * (logdet + K * kLogSqrtTwoPi);
    };
    return m;
  };
  d["multi_normal"] = mvn(false);
  d["multi_normal_cholesky"] = mvn(true);
  {
    DistributionDef lkj;
    lkj.min_params = lkj.max_params = 1;
    lkj.type = [](const std::vector<Type>& a) -> std::optional<Type> {
      if (!(a[0] == kMatrix) || !a[1].is_scalar()) return std::nullopt;
      return kReal;
    };
    lkj.log_density = [](const std::vector<Val>& a, RunContext& c) {
      const at::Tensor L = as_real(a[0], c.dtype);
      const at::Tensor eta = as_real(a[1], c.dtype);
      const auto dist = make_distribution(
          "LKJCholesky", {at::scalar_tensor(static_cast<double>(L.size(-1)), L.options()), eta.reshape({-1})});
      return dist->log_prob(L).reshape({-1});
    };
    d["lkj_corr_cholesky"] = lkj;
    // lkj_corr on the matrix itself: the Cholesky factor's density less the
    // Jacobian of L -> L L', sum over k of (K - k) log L_kk.
    DistributionDef corr = lkj;
    corr.log_density = [](const std::vector<Val>& a, RunContext& c) {
      const at::Tensor omega = as_real(a[0], c.dtype);
      const at::Tensor L = at::linalg_cholesky(omega);
      const int64_t K = L.size(-1);
      const at::Tensor eta = as_real(a[1], c.dtype);
      const auto dist = make_distribution(
          "LKJCholesky", {at::scalar_tensor(static_cast<double>(K), L.options()), eta.reshape({-1})});
      const at::Tensor weights = K - 1 - at::arange(K, L.options());  // K - k for k = 1..K
      return dist->log_prob(L).reshape({-1}) - (weights * at::log(at::diagonal(L, 0, -2, -1))).sum(-1);
    };
    d["lkj_corr"] = corr;
  }
  return d;
}

}  // namespace

at::Tensor as_real(const Val& v, at::ScalarType dtype) {
  return v.t.scalar_type() == dtype ? v.t : v.t.to(dtype);
}

at::Tensor lift(const at::Tensor& t, int64_t dims) {
  if (t.dim() >= dims) return t;
  std::vector<int64_t> shape = t.sizes().vec();
  shape.resize(static_cast<size_t>(dims), 1);
  return t.reshape(shape);
}

const Builtin* find_builtin(const std::string& name) {
  static const std::map<std::string, Builtin> table = make_builtins();
  const auto it = table.find(name);
  return it == table.end() ? nullptr : &it->second;
}

const DistributionDef* find_distribution(const std::string& name) {
  static const std::map<std::string, DistributionDef> table = make_distributions();
  const auto it = table.find(name);
  return it == table.end() ? nullptr : &it->second;
}

}  // namespace vguide::model::stan
