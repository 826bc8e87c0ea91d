// The bijector library: one small class per support. Each maps ℝ^k onto its
// support, broadcasts over leading dims and is differentiable; log|det J| is
// computed in closed form from z (stable softplus/log-sigmoid forms, not log of
// the constrained value) and checked against autograd Jacobians in the tests.
#include <ATen/ATen.h>

#include <cmath>
#include <sstream>
#include <stdexcept>

#include "vguide/bijector.hpp"
#include "vguide/model.hpp"

namespace vguide {

Bijector::~Bijector() = default;

std::pair<at::Tensor, at::Tensor> Bijector::forward_and_log_det(const at::Tensor& z) const {
  at::Tensor v = forward(z);
  return {v, log_abs_det_jacobian(z, v)};
}

std::pair<at::Tensor, at::Tensor> Bijector::inverse_and_log_det(const at::Tensor& v) const {
  at::Tensor z = inverse(v);
  return {z, log_abs_det_jacobian(z, v)};
}

std::vector<int64_t> Bijector::unconstrained_shape(const std::vector<int64_t>& shape) const { return shape; }
std::vector<int64_t> Bijector::constrained_shape(const std::vector<int64_t>& unconstrained) const {
  return unconstrained;
}

namespace {

// Clamp probabilities away from {0, 1} so that inverses of boundary values stay finite.
at::Tensor clamp_open_unit(const at::Tensor& u) {
  const double eps = u.scalar_type() == at::kDouble ? 1e-15 : 1e-7;
  return u.clamp(eps, 1.0 - eps);
}

at::Tensor safe_logit(const at::Tensor& u) {
  at::Tensor c = clamp_open_unit(u);
  return at::log(c) - at::log1p(-c);
}

// log cosh(z), stable for large |z|: |z| + softplus(-2|z|) - log 2.
at::Tensor log_cosh(const at::Tensor& z) {
  at::Tensor a = z.abs();
  return a + at::softplus(-2.0 * a) - std::log(2.0);
}

[[noreturn]] void bad_shape(const Constraint& c, const std::vector<int64_t>& shape, const char* need) {
  std::ostringstream msg;
  msg << c.to_string() << ": a site of shape " << shape_to_string(shape) << " cannot carry this support; " << need;
  throw std::invalid_argument(msg.str());
}

class ElementwiseBijector : public Bijector {
 public:
  explicit ElementwiseBijector(Constraint c) : constraint_(std::move(c)) {}
  const Constraint& codomain() const override { return constraint_; }

 protected:
  Constraint constraint_;
};

class IdentityBijector final : public ElementwiseBijector {
 public:
  using ElementwiseBijector::ElementwiseBijector;
  at::Tensor forward(const at::Tensor& z) const override { return z; }
  at::Tensor inverse(const at::Tensor& v) const override { return v; }
  at::Tensor log_abs_det_jacobian(const at::Tensor& z, const at::Tensor&) const override {
    return at::zeros_like(z);
  }
};

// v = origin + sign * exp(z): positive (0, +1), greater_than (a, +1), less_than (b, -1).
class ShiftedExpBijector final : public ElementwiseBijector {
 public:
  ShiftedExpBijector(Constraint c, double origin, double sign)
      : ElementwiseBijector(std::move(c)), origin_(origin), sign_(sign) {}
  at::Tensor forward(const at::Tensor& z) const override {
    at::Tensor e = at::exp(z);
    if (sign_ < 0) e = -e;
    return origin_ == 0.0 ? e : e + origin_;
  }
  at::Tensor inverse(const at::Tensor& v) const override {
    at::Tensor d = origin_ == 0.0 ? v : v - origin_;
    return at::log(sign_ < 0 ? -d : d);
  }
  at::Tensor log_abs_det_jacobian(const at::Tensor& z, const at::Tensor&) const override { return z; }

 private:
  double origin_;
  double sign_;
};

// v = a + (b - a) * sigmoid(z).
class IntervalBijector final : public ElementwiseBijector {
 public:
  IntervalBijector(Constraint c, double a, double b) : ElementwiseBijector(std::move(c)), a_(a), width_(b - a) {}
  at::Tensor forward(const at::Tensor& z) const override {
    at::Tensor s = at::sigmoid(z);
    return (a_ == 0.0 && width_ == 1.0) ? s : s * width_ + a_;
  }
  at::Tensor inverse(const at::Tensor& v) const override {
    return safe_logit((a_ == 0.0 && width_ == 1.0) ? v : (v - a_) / width_);
  }
  at::Tensor log_abs_det_jacobian(const at::Tensor& z, const at::Tensor&) const override {
    // log sigmoid(z) + log sigmoid(-z) = -|z| - 2 softplus(-|z|)
    at::Tensor a = z.abs();
    return -a - 2.0 * at::softplus(-a) + std::log(width_);
  }

 private:
  double a_;
  double width_;
};

class VectorBijector : public Bijector {
 public:
  explicit VectorBijector(Constraint c) : constraint_(std::move(c)) {}
  const Constraint& codomain() const override { return constraint_; }
  int event_rank() const override { return 1; }

 protected:
  void require_vector(const std::vector<int64_t>& shape) const {
    if (shape.empty() || shape.back() < 1) bad_shape(constraint_, shape, "its last dim must be at least 1");
  }
  Constraint constraint_;
};

// Stick-breaking: (K-1) -> K. Fraction i of the remaining stick is
// sigmoid(z_i - log(K-1-i)), so z = 0 is the uniform point of the simplex.
class StickBreakingBijector final : public VectorBijector {
 public:
  using VectorBijector::VectorBijector;
  std::vector<int64_t> unconstrained_shape(const std::vector<int64_t>& shape) const override {
    require_vector(shape);
    auto u = shape;
    u.back() -= 1;
    return u;
  }
  std::vector<int64_t> constrained_shape(const std::vector<int64_t>& u) const override {
    auto s = u;
    s.back() += 1;
    return s;
  }
  at::Tensor forward(const at::Tensor& z) const override { return forward_and_log_det(z).first; }
  std::pair<at::Tensor, at::Tensor> forward_and_log_det(const at::Tensor& z) const override {
    at::Tensor y = z - offsets(z);
    at::Tensor log_s = at::log_sigmoid(y);
    at::Tensor log_1ms = at::log_sigmoid(-y);
    // log of the stick left before piece i (exclusive cumulative sum), length K.
    at::Tensor log_rest = at::cumsum(log_1ms, -1);
    at::Tensor log_rest_before = at::constant_pad_nd(log_rest, {1, 0}, 0.0);  // K entries
    at::Tensor log_v = at::cat({log_s, at::zeros_like(log_rest_before.narrow(-1, 0, 1))}, -1) + log_rest_before;
    at::Tensor ladj = (log_s + log_1ms + log_rest_before.narrow(-1, 0, z.size(-1))).sum(-1);
    return {at::exp(log_v), ladj};
  }
  at::Tensor inverse(const at::Tensor& v) const override {
    const int64_t km1 = v.size(-1) - 1;
    // remaining stick after piece i: sum_{j > i} v_j (a reverse cumulative sum).
    at::Tensor rest_after = at::flip(at::cumsum(at::flip(v, {-1}), -1), {-1}).narrow(-1, 1, km1);
    at::Tensor head = v.narrow(-1, 0, km1);
    const double tiny = v.scalar_type() == at::kDouble ? 1e-300 : 1e-37;
    at::Tensor y = at::log(head.clamp_min(tiny)) - at::log(rest_after.clamp_min(tiny));
    return y + offsets(y);
  }
  at::Tensor log_abs_det_jacobian(const at::Tensor& z, const at::Tensor&) const override {
    return forward_and_log_det(z).second;
  }

 private:
  // log(K-1-i) for i = 0..K-2, i.e. log(n), ..., log(1) with n = z.size(-1).
  static at::Tensor offsets(const at::Tensor& z) {
    const int64_t n = z.size(-1);
    return at::log(at::arange(n, 0, -1, z.options()));
  }
};

// v_0 = z_0, v_i = v_{i-1} + exp(z_i) (ordered); v = cumsum(exp(z)) (positive_ordered).
class OrderedBijector final : public VectorBijector {
 public:
  OrderedBijector(Constraint c, bool positive) : VectorBijector(std::move(c)), positive_(positive) {}
  std::vector<int64_t> unconstrained_shape(const std::vector<int64_t>& shape) const override {
    require_vector(shape);
    return shape;
  }
  at::Tensor forward(const at::Tensor& z) const override { return at::cumsum(increments(z), -1); }
  at::Tensor inverse(const at::Tensor& v) const override {
    at::Tensor prev = at::constant_pad_nd(v.narrow(-1, 0, v.size(-1) - 1), {1, 0}, 0.0);
    at::Tensor d = v - prev;
    if (positive_) return at::log(d);
    return at::cat({v.narrow(-1, 0, 1), at::log(d.narrow(-1, 1, v.size(-1) - 1))}, -1);
  }
  at::Tensor log_abs_det_jacobian(const at::Tensor& z, const at::Tensor&) const override {
    return positive_ ? z.sum(-1) : z.narrow(-1, 1, z.size(-1) - 1).sum(-1);
  }

 private:
  at::Tensor increments(const at::Tensor& z) const {
    if (positive_) return at::exp(z);
    return at::cat({z.narrow(-1, 0, 1), at::exp(z.narrow(-1, 1, z.size(-1) - 1))}, -1);
  }
  bool positive_;
};

// Matrix supports: the unconstrained side is the vector of (strictly) lower
// triangular entries in row-major order (torch::tril_indices).
class MatrixBijector : public Bijector {
 public:
  MatrixBijector(Constraint c, int64_t diag_offset) : constraint_(std::move(c)), diag_offset_(diag_offset) {}
  const Constraint& codomain() const override { return constraint_; }
  int event_rank() const override { return 1; }

  std::vector<int64_t> unconstrained_shape(const std::vector<int64_t>& shape) const override {
    if (shape.size() < 2 || shape[shape.size() - 1] != shape[shape.size() - 2] || shape.back() < 1)
      bad_shape(constraint_, shape, "it must end in a square matrix (K, K)");
    std::vector<int64_t> u(shape.begin(), shape.end() - 2);
    u.push_back(num_entries(shape.back()));
    return u;
  }
  std::vector<int64_t> constrained_shape(const std::vector<int64_t>& u) const override {
    const int64_t K = matrix_size(u.back());
    std::vector<int64_t> s(u.begin(), u.end() - 1);
    s.push_back(K);
    s.push_back(K);
    return s;
  }

 protected:
  int64_t num_entries(int64_t K) const { return diag_offset_ == 0 ? K * (K + 1) / 2 : K * (K - 1) / 2; }
  int64_t matrix_size(int64_t n) const {
    // Solve num_entries(K) == n for K.
    const double root = std::sqrt(8.0 * static_cast<double>(n) + 1.0);
    const int64_t K = diag_offset_ == 0 ? static_cast<int64_t>(std::llround((root - 1.0) / 2.0))
                                        : static_cast<int64_t>(std::llround((root + 1.0) / 2.0));
    if (num_entries(K) != n) {
      std::ostringstream msg;
      msg << constraint_.to_string() << ": " << n << " unconstrained entries do not form a triangular matrix";
      throw std::invalid_argument(msg.str());
    }
    return K;
  }
  // Flat positions (row * K + col) of the triangle's entries, row-major.
  at::Tensor flat_positions(int64_t K, const at::Tensor& like) const {
    at::Tensor rc = at::tril_indices(K, K, diag_offset_, like.options().dtype(at::kLong));
    return rc[0] * K + rc[1];
  }
  at::Tensor is_diagonal_entry(int64_t K, const at::Tensor& like) const {
    at::Tensor rc = at::tril_indices(K, K, diag_offset_, like.options().dtype(at::kLong));
    return rc[0] == rc[1];
  }
  // (..., n) -> (..., K, K) with the entries placed, zeros elsewhere.
  at::Tensor to_matrix(const at::Tensor& entries, int64_t K) const {
    std::vector<int64_t> flat_shape(entries.sizes().begin(), entries.sizes().end() - 1);
    flat_shape.push_back(K * K);
    at::Tensor flat = at::zeros(flat_shape, entries.options()).index_copy(-1, flat_positions(K, entries), entries);
    std::vector<int64_t> mat_shape(flat_shape.begin(), flat_shape.end() - 1);
    mat_shape.push_back(K);
    mat_shape.push_back(K);
    return flat.reshape(mat_shape);
  }
  // (..., K, K) -> (..., n).
  at::Tensor from_matrix(const at::Tensor& m) const {
    const int64_t K = m.size(-1);
    return m.flatten(-2, -1).index_select(-1, flat_positions(K, m));
  }

  Constraint constraint_;
  int64_t diag_offset_;
};

// Lower-triangular entries, diagonal through exp.
class LowerCholeskyBijector : public MatrixBijector {
 public:
  explicit LowerCholeskyBijector(Constraint c) : MatrixBijector(std::move(c), 0) {}
  at::Tensor forward(const at::Tensor& z) const override {
    const int64_t K = matrix_size(z.size(-1));
    return to_matrix(at::where(is_diagonal_entry(K, z), at::exp(z), z), K);
  }
  at::Tensor inverse(const at::Tensor& v) const override {
    at::Tensor w = from_matrix(v);
    return at::where(is_diagonal_entry(v.size(-1), v), at::log(w), w);
  }
  at::Tensor log_abs_det_jacobian(const at::Tensor& z, const at::Tensor&) const override {
    const int64_t K = matrix_size(z.size(-1));
    return (z * is_diagonal_entry(K, z).to(z.scalar_type())).sum(-1);
  }
};

// Σ = L Lᵀ over a lower Cholesky factor. The map L -> Σ on lower-triangular entries
// has |det J| = 2^K ∏_i L_ii^(K - i) (0-based i).
class PositiveDefiniteBijector final : public LowerCholeskyBijector {
 public:
  using LowerCholeskyBijector::LowerCholeskyBijector;
  at::Tensor forward(const at::Tensor& z) const override {
    at::Tensor L = LowerCholeskyBijector::forward(z);
    return at::matmul(L, L.transpose(-1, -2));
  }
  at::Tensor inverse(const at::Tensor& v) const override {
    return LowerCholeskyBijector::inverse(at::linalg_cholesky(v));
  }
  at::Tensor log_abs_det_jacobian(const at::Tensor& z, const at::Tensor&) const override {
    const int64_t K = matrix_size(z.size(-1));
    at::Tensor rc = at::tril_indices(K, K, 0, z.options().dtype(at::kLong));
    at::Tensor diag = (rc[0] == rc[1]).to(z.scalar_type());
    // weight 1 (exp) + (K - i) (L -> L Lᵀ) on diagonal entry i.
    at::Tensor weight = diag * (1.0 + (K - rc[0]).to(z.scalar_type()));
    return (z * weight).sum(-1) + static_cast<double>(K) * std::log(2.0);
  }
};

// Cholesky factor of a correlation matrix from K(K-1)/2 reals: tanh gives partial
// correlations t_ij in (-1, 1); row i is built by stick-breaking on squared lengths,
// L_ij = t_ij * prod_{k<j} sqrt(1 - t_ik²), L_ii = prod_{k<i} sqrt(1 - t_ik²).
// Computed in logs: log sqrt(1 - tanh(z)²) = -log cosh(z).
class CorrCholeskyBijector final : public MatrixBijector {
 public:
  explicit CorrCholeskyBijector(Constraint c) : MatrixBijector(std::move(c), -1) {}
  at::Tensor forward(const at::Tensor& z) const override { return forward_and_log_det(z).first; }
  std::pair<at::Tensor, at::Tensor> forward_and_log_det(const at::Tensor& z) const override {
    const int64_t K = matrix_size(z.size(-1));
    at::Tensor Z = to_matrix(z, K);
    at::Tensor log_sech = -log_cosh(Z);                             // 0 off the strict triangle
    at::Tensor log_w = at::cumsum(log_sech, -1) - log_sech;          // exclusive along each row
    at::Tensor eye = at::eye(K, z.options());
    at::Tensor L = (at::tanh(Z) + eye) * at::exp(log_w);
    at::Tensor ladj = from_matrix(log_w + 2.0 * log_sech).sum(-1);
    return {L, ladj};
  }
  at::Tensor inverse(const at::Tensor& v) const override {
    at::Tensor sq = v * v;
    at::Tensor before = at::cumsum(sq, -1) - sq;  // sum_{k<j} L_ik²
    const double tiny = v.scalar_type() == at::kDouble ? 1e-300 : 1e-30;
    at::Tensor t = from_matrix(v / at::sqrt((1.0 - before).clamp_min(tiny)));
    const double eps = v.scalar_type() == at::kDouble ? 1e-15 : 1e-7;
    return at::atanh(t.clamp(-1.0 + eps, 1.0 - eps));
  }
  at::Tensor log_abs_det_jacobian(const at::Tensor& z, const at::Tensor&) const override {
    return forward_and_log_det(z).second;
  }
};

}  // namespace

std::shared_ptr<const Bijector> biject_to(const Constraint& c) {
  switch (c.kind()) {
    case ConstraintKind::real: return std::make_shared<IdentityBijector>(c);
    case ConstraintKind::positive: return std::make_shared<ShiftedExpBijector>(c, 0.0, 1.0);
    case ConstraintKind::greater_than: return std::make_shared<ShiftedExpBijector>(c, c.lower(), 1.0);
    case ConstraintKind::less_than: return std::make_shared<ShiftedExpBijector>(c, c.upper(), -1.0);
    case ConstraintKind::interval:
    case ConstraintKind::unit_interval: return std::make_shared<IntervalBijector>(c, c.lower(), c.upper());
    case ConstraintKind::simplex: return std::make_shared<StickBreakingBijector>(c);
    case ConstraintKind::ordered: return std::make_shared<OrderedBijector>(c, false);
    case ConstraintKind::positive_ordered: return std::make_shared<OrderedBijector>(c, true);
    case ConstraintKind::lower_cholesky: return std::make_shared<LowerCholeskyBijector>(c);
    case ConstraintKind::corr_cholesky: return std::make_shared<CorrCholeskyBijector>(c);
    case ConstraintKind::positive_definite: return std::make_shared<PositiveDefiniteBijector>(c);
  }
  throw std::invalid_argument("biject_to: unknown constraint kind");
}

}  // namespace vguide
