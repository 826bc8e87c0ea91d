#pragma once
// Helpers shared by the Stan library's functions (functions.cpp) and distributions
// (distributions.cpp): the common types, type rules and tensor helpers.
#include <ATen/ATen.h>

#include <cmath>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "library.hpp"

namespace vguide::model::stan::detail {

constexpr double kLogSqrtTwoPi = 0.91893853320467274178;
constexpr double kLogPi = 1.14472988584940017414;

inline const Type kInt{Base::int_, 0};
inline const Type kReal{Base::real, 0};
inline const Type kVector{Base::vector, 0};
inline const Type kRowVector{Base::row_vector, 0};
inline const Type kMatrix{Base::matrix, 0};

inline bool is_1d(const Type& t) {  // vector, row_vector or a 1-d array of scalars
  return (t.array_dims == 0 && (t.base == Base::vector || t.base == Base::row_vector)) ||
         (t.array_dims == 1 && (t.base == Base::int_ || t.base == Base::real));
}
inline bool numeric_or_array(const Type& t) { return t.base != Base::void_; }
inline bool all_data(const std::vector<Val>& a) {
  for (const auto& v : a)
    if (!v.data_only) return false;
  return true;
}
inline Type realed(Type t) {
  if (t.base == Base::int_) t.base = Base::real;
  return t;
}

inline Val make(at::Tensor t, Type type, const std::vector<Val>& args) { return {std::move(t), type, all_data(args)}; }

// A (P,) per-particle scalar broadcast against elements: (P, 1, ...).
inline at::Tensor flat(const Val& v, at::ScalarType dtype) {
  at::Tensor t = as_real(v, dtype);
  return t.dim() == 1 ? t.unsqueeze(1) : t.flatten(1);
}

// ---- type rules -----------------------------------------------------------------------
inline std::optional<Type> elementwise_rule(const std::vector<Type>& a) {  // exp(x): any numeric, int -> real
  if (a.size() != 1 || !numeric_or_array(a[0])) return std::nullopt;
  return realed(a[0]);
}
inline std::optional<Type> binary_elementwise_rule(const std::vector<Type>& a) {  // pow, fmin, ...
  if (a.size() != 2) return std::nullopt;
  if (a[0].is_scalar() && a[1].is_scalar()) return kReal;
  if (a[0].is_scalar()) return realed(a[1]);
  if (a[1].is_scalar() || realed(a[0]) == realed(a[1])) return realed(a[0]);
  return std::nullopt;
}
inline TypeRule fixed(std::vector<std::vector<Type>> accepted, Type result) {
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
inline std::optional<Type> reduce_rule(const std::vector<Type>& a) {  // sum(x) etc.: any container -> real
  if (a.size() != 1 || a[0].is_scalar() || !numeric_or_array(a[0])) return std::nullopt;
  return kReal;
}
inline std::optional<Type> same_1d_rule(const std::vector<Type>& a) {
  if (a.size() != 1 || !is_1d(a[0])) return std::nullopt;
  return realed(a[0]);
}

// ---- helpers for evaluation -------------------------------------------------------------
inline Val unary_real(const std::vector<Val>& a, RunContext& c, at::Tensor (*f)(const at::Tensor&)) {
  return make(f(as_real(a[0], c.dtype)), realed(a[0].type), a);
}

// Broadcast two values elementwise, a scalar (P,) against a container (P, ...).
inline std::pair<at::Tensor, at::Tensor> broadcast_pair(const Val& a, const Val& b, at::ScalarType dtype) {
  at::Tensor x = as_real(a, dtype), y = as_real(b, dtype);
  if (x.dim() < y.dim()) x = lift(x, y.dim());
  if (y.dim() < x.dim()) y = lift(y, x.dim());
  return {x, y};
}

inline std::optional<Type> binary_result(const Val& a, const Val& b) { return binary_elementwise_rule({a.type, b.type}); }

inline Val binary_real(const std::vector<Val>& a, RunContext& c, at::Tensor (*f)(const at::Tensor&, const at::Tensor&)) {
  auto [x, y] = broadcast_pair(a[0], a[1], c.dtype);
  return make(f(x, y), *binary_result(a[0], a[1]), a);
}

inline at::Tensor reduce_all(const at::Tensor& t) { return t.dim() == 1 ? t : t.flatten(1); }

inline at::Tensor log1m_exp(const at::Tensor& x) {  // log(1 - exp(x)), x < 0
  // Each branch's input is clamped to its side, so the branch not taken has neither a
  // NaN value nor a NaN gradient (at::where passes both through a zero).
  constexpr double kLog2 = 0.6931471805599453;
  return at::where(x > -kLog2, at::log(-at::expm1(x.clamp_min(-kLog2))), at::log1p(-at::exp(x.clamp_max(-kLog2))));
}
inline at::Tensor log_inv_logit(const at::Tensor& x) { return -at::softplus(-x); }
inline at::Tensor log1m_inv_logit(const at::Tensor& x) { return -at::softplus(x); }
inline at::Tensor lbeta(const at::Tensor& a, const at::Tensor& b) { return at::lgamma(a) + at::lgamma(b) - at::lgamma(a + b); }
inline at::Tensor lchoose(const at::Tensor& n, const at::Tensor& k) {
  return at::lgamma(n + 1) - at::lgamma(k + 1) - at::lgamma(n - k + 1);
}
inline at::Tensor phi(const at::Tensor& x) { return 0.5 * at::erfc(-x / std::sqrt(2.0)); }

inline int64_t int_of(const Val& v) {
  if (v.t.size(0) != 1) throw std::domain_error("an int argument that differs between particles or iterations");
  return v.t.reshape({-1})[0].item<int64_t>();
}

inline at::Tensor scalar_like(double v, RunContext& c) { return at::full({1}, v, at::TensorOptions().dtype(c.dtype)); }

inline void require(bool ok, const std::string& what) {
  if (!ok) throw std::domain_error(what);
}

// x and y joined along `dim`, a shared (P = 1) side broadcast to the other's particles.
inline at::Tensor cat_particles(const at::Tensor& x, const at::Tensor& y, int64_t dim) {
  const int64_t P = std::max(x.size(0), y.size(0));
  std::vector<int64_t> xs = x.sizes().vec(), ys = y.sizes().vec();
  xs[0] = ys[0] = P;
  return at::cat({x.expand(xs), y.expand(ys)}, dim);
}

inline at::Tensor to_column_major(const at::Tensor& m) {  // (P, R, C) -> (P, R*C) column-major
  return m.transpose(-1, -2).reshape({m.size(0), -1});
}

}  // namespace vguide::model::stan::detail
