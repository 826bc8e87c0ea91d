// Stan's functions over particle-batched tensors (library.hpp). Every value is
// (P, array dims..., own dims...), P = 1 or S; a function's type rule sits beside its
// evaluation.
#include "library.hpp"

#include <ATen/ATen.h>

#include <cmath>
#include <map>
#include <stdexcept>

#include "library_detail.hpp"
#include "vguide/model/distribution.hpp"

namespace vguide::model::stan {

namespace {

using namespace detail;

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

}  // namespace vguide::model::stan
