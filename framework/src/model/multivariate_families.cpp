// Families whose draws are vectors or matrices: Dirichlet, MultivariateNormal,
// LowRankMVN, Wishart, RelaxedOneHotCategorical and LKJCholesky. Their log_prob
// assumes the value lies in the support (see Distribution::in_support).
#include <ATen/ATen.h>

#include <cmath>
#include <limits>
#include <sstream>

#include "distribution_impl.hpp"
#include "vguide/model.hpp"

namespace vguide::model::detail {
namespace {

const double kLog2Pi = std::log(2.0 * M_PI);
const double kLogPi = std::log(M_PI);
const double kLog2 = std::log(2.0);

std::vector<int64_t> with(std::vector<int64_t> shape, std::initializer_list<int64_t> tail) {
  shape.insert(shape.end(), tail.begin(), tail.end());
  return shape;
}

at::Tensor sum_log_diagonal(const at::Tensor& m) { return at::log(m.diagonal(0, -2, -1)).sum(-1); }

[[noreturn]] void throw_shape(const char* family, const char* name, const at::Tensor& t, const std::string& must) {
  std::ostringstream msg;
  msg << family << ": " << name << " has shape " << shape_to_string(t.sizes().vec()) << ", but " << must << "!";
  throw std::invalid_argument(msg.str());
}

// log Dir(x; alpha) = sum (alpha_k - 1) log x_k + lgamma(sum alpha) - sum lgamma(alpha_k);
// draws normalise independent Gamma(alpha_k) variables.
class Dirichlet final : public FamilyBase {
 public:
  Dirichlet(const at::Tensor& concentration, std::vector<int64_t> batch)
      : FamilyBase(traits("Dirichlet", constraints::simplex(), std::move(batch), {concentration.size(-1)}),
                   concentration),
        alpha_(concentration),
        log_norm_(at::lgamma(concentration.sum(-1)) - at::lgamma(concentration).sum(-1)) {}
  at::Tensor log_prob(const at::Tensor& value) const override {
    return at::xlogy(alpha_ - 1, cast(value)).sum(-1) + log_norm_;
  }
  at::Tensor in_support(const at::Tensor& value) const override {
    return expand_to_batch(support().check(cast(value)));
  }
  at::Tensor rsample(at::IntArrayRef s, at::Generator& gen) const override {
    const at::Tensor g = standard_gamma(alpha_.expand(extended_shape(s)), gen);
    return g / g.sum(-1, true);
  }
  bool has_mean() const override { return true; }
  at::Tensor mean() const override {
    return (alpha_ / alpha_.sum(-1, true)).expand(with(batch_shape(), {alpha_.size(-1)}));
  }

 private:
  at::Tensor alpha_, log_norm_;
};

// One Cholesky factor at construction; log_prob by one triangular solve.
class MultivariateNormal final : public FamilyBase {
 public:
  MultivariateNormal(const at::Tensor& loc, const at::Tensor& cov, std::vector<int64_t> batch)
      : FamilyBase(traits("MultivariateNormal", constraints::real(), std::move(batch), {loc.size(-1)}), loc),
        loc_(loc),
        tril_(at::linalg_cholesky(cov)) {
    half_log_det_ = sum_log_diagonal(tril_);
  }
  at::Tensor log_prob(const at::Tensor& value) const override {
    const at::Tensor diff = (cast(value) - loc_).unsqueeze(-1);
    const at::Tensor m = at::linalg_solve_triangular(tril_, diff, /*upper=*/false).squeeze(-1);
    const double k = static_cast<double>(loc_.size(-1));
    return -0.5 * k * kLog2Pi - half_log_det_ - 0.5 * (m * m).sum(-1);
  }
  at::Tensor in_support(const at::Tensor& value) const override {
    return expand_to_batch(at::isfinite(cast(value)).all(-1));
  }
  at::Tensor rsample(at::IntArrayRef s, at::Generator& gen) const override {
    const at::Tensor eps = at::randn(extended_shape(s), gen, opts_).unsqueeze(-1);
    return loc_ + at::matmul(tril_, eps).squeeze(-1);
  }
  bool has_mean() const override { return true; }
  at::Tensor mean() const override { return loc_.expand(with(batch_shape(), {loc_.size(-1)})); }

 private:
  at::Tensor loc_, tril_, half_log_det_;
};

// Sigma = W W^T + diag(d). log|Sigma| by the matrix determinant lemma and the
// Mahalanobis term by the Woodbury identity, through the r x r capacitance
// C = I + W^T D^-1 W; never forms a K x K matrix.
class LowRankMVN final : public FamilyBase {
 public:
  LowRankMVN(const at::Tensor& loc, const at::Tensor& w, const at::Tensor& d, std::vector<int64_t> batch)
      : FamilyBase(traits("LowRankMVN", constraints::real(), std::move(batch), {loc.size(-1)}), loc),
        loc_(loc),
        w_(w),
        d_(d) {
    const at::Tensor wt_dinv_w = at::matmul(w.transpose(-1, -2), w / d.unsqueeze(-1));
    const at::Tensor eye = at::eye(w.size(-1), opts_);
    cap_tril_ = at::linalg_cholesky(eye + wt_dinv_w);
    log_det_ = at::log(d).sum(-1) + 2.0 * sum_log_diagonal(cap_tril_);
  }
  at::Tensor log_prob(const at::Tensor& value) const override {
    const at::Tensor diff = cast(value) - loc_;
    const at::Tensor scaled = diff / d_;
    const at::Tensor v = at::matmul(w_.transpose(-1, -2), scaled.unsqueeze(-1));
    const at::Tensor u = at::linalg_solve_triangular(cap_tril_, v, /*upper=*/false);
    const at::Tensor mahalanobis = (diff * scaled).sum(-1) - (u * u).sum({-2, -1});
    const double k = static_cast<double>(loc_.size(-1));
    return -0.5 * (k * kLog2Pi + log_det_ + mahalanobis);
  }
  at::Tensor in_support(const at::Tensor& value) const override {
    return expand_to_batch(at::isfinite(cast(value)).all(-1));
  }
  at::Tensor rsample(at::IntArrayRef s, at::Generator& gen) const override {
    const std::vector<int64_t> shape = extended_shape(s);
    std::vector<int64_t> rank_shape = shape;
    rank_shape.back() = w_.size(-1);
    const at::Tensor eps_w = at::randn(rank_shape, gen, opts_).unsqueeze(-1);
    const at::Tensor eps_d = at::randn(shape, gen, opts_);
    return loc_ + at::matmul(w_, eps_w).squeeze(-1) + at::sqrt(d_) * eps_d;
  }
  bool has_mean() const override { return true; }
  at::Tensor mean() const override { return loc_.expand(with(batch_shape(), {loc_.size(-1)})); }

 private:
  at::Tensor loc_, w_, d_, cap_tril_, log_det_;
};

// log W(X; df, S) = (df-K-1)/2 log|X| - tr(S^-1 X)/2 - df K/2 log 2 - df/2 log|S|
// - log Gamma_K(df/2). Draws by the Bartlett decomposition: X = (L A)(L A)^T with
// L L^T = S, A lower triangular, A_ii^2 ~ Chi2(df - i) (i = 0..K-1), A_ij ~ N(0, 1).
class Wishart final : public FamilyBase {
 public:
  Wishart(const at::Tensor& df, const at::Tensor& cov, std::vector<int64_t> batch)
      : FamilyBase(traits("Wishart", constraints::positive_definite(), std::move(batch), {cov.size(-1), cov.size(-1)}),
                   cov),
        df_(df),
        cov_(cov),
        tril_(at::linalg_cholesky(cov)),
        k_(cov.size(-1)) {
    half_log_det_ = sum_log_diagonal(tril_);
  }
  at::Tensor log_prob(const at::Tensor& value) const override {
    const auto [x_tril, info] = at::linalg_cholesky_ex(cast(value));
    const double k = static_cast<double>(k_);
    const at::Tensor log_det_x = 2.0 * sum_log_diagonal(x_tril);
    const at::Tensor m = at::linalg_solve_triangular(tril_, x_tril, /*upper=*/false);
    const at::Tensor trace = (m * m).sum({-2, -1});
    const at::Tensor lp = 0.5 * (df_ - k - 1) * log_det_x - 0.5 * trace - 0.5 * k * kLog2 * df_ -
                          df_ * half_log_det_ - log_multigamma(0.5 * df_, k_);
    return mask_log_prob(info == 0, lp);
  }
  at::Tensor in_support(const at::Tensor& value) const override {
    return expand_to_batch(support().check(cast(value)));
  }
  at::Tensor rsample(at::IntArrayRef s, at::Generator& gen) const override {
    std::vector<int64_t> shape(s.begin(), s.end());
    const std::vector<int64_t> b = batch_shape();
    shape.insert(shape.end(), b.begin(), b.end());
    const at::Tensor dof = df_.expand(shape).unsqueeze(-1) - at::arange(k_, opts_);
    const at::Tensor diag = at::sqrt(2.0 * standard_gamma(0.5 * dof, gen));
    const at::Tensor a = at::tril(at::randn(with(shape, {k_, k_}), gen, opts_), -1) + at::diag_embed(diag);
    const at::Tensor la = at::matmul(tril_, a);
    return at::matmul(la, la.transpose(-1, -2));
  }
  bool has_mean() const override { return true; }
  at::Tensor mean() const override {
    return (df_.unsqueeze(-1).unsqueeze(-1) * cov_).expand(with(batch_shape(), {k_, k_}));
  }

 private:
  at::Tensor df_, cov_, tril_, half_log_det_;
  int64_t k_;
};

// The Concrete distribution (Maddison et al. 2017, arXiv:1611.00712) on the simplex:
// log p(x) = lgamma(K) + (K-1) log T + sum_k (s_k - logsumexp(s)) - sum_k log x_k,
// s_k = logits_k - T log x_k; draws softmax((logits + Gumbel noise) / T).
class RelaxedOneHotCategorical final : public FamilyBase {
 public:
  RelaxedOneHotCategorical(const at::Tensor& temperature, const at::Tensor& probs, std::vector<int64_t> batch)
      : FamilyBase(traits("RelaxedOneHotCategorical", constraints::simplex(), std::move(batch), {probs.size(-1)}),
                   probs),
        temperature_(temperature.unsqueeze(-1)),
        k_(probs.size(-1)) {
    const at::Tensor log_p = at::log(probs.clamp_min(tiny_of(probs)));
    logits_ = log_p - at::logsumexp(log_p, {-1}, true);
  }
  at::Tensor log_prob(const at::Tensor& value) const override {
    const at::Tensor log_x = at::log(cast(value));
    const at::Tensor score = logits_ - temperature_ * log_x;
    const at::Tensor normalised = (score - at::logsumexp(score, {-1}, true)).sum(-1);
    const double k = static_cast<double>(k_);
    return std::lgamma(k) + (k - 1) * at::log(temperature_.squeeze(-1)) + normalised - log_x.sum(-1);
  }
  at::Tensor in_support(const at::Tensor& value) const override {
    const at::Tensor x = cast(value);
    return expand_to_batch(support().check(x).logical_and((x > 0).all(-1)));
  }
  at::Tensor rsample(at::IntArrayRef s, at::Generator& gen) const override {
    const at::Tensor u = uniform_open(extended_shape(s), gen, opts_);
    const at::Tensor score = (logits_ - at::log(-at::log(u))) / temperature_;
    return at::softmax(score, -1).clamp_min(tiny_of(score));
  }

 private:
  at::Tensor temperature_, logits_;
  int64_t k_;
};

// LKJ distribution over Cholesky factors of correlation matrices (Lewandowski,
// Kurowicka and Joe 2009). The density of L (w.r.t. its strictly lower entries) is
// prod_{i=2..K} L_ii^(K - i + 2 eta - 2) / c_K(eta) with
// log c_K = (K-1)/2 log pi + log Gamma_{K-1}(eta + (K-2)/2) - (K-1) lgamma(eta + (K-1)/2).
// Draws by the onion method: row i (0-based, i >= 1) is sqrt(y) u + sqrt(1-y) e_i with
// u uniform on the unit sphere of its first i coordinates and
// y ~ Beta(i/2, eta + (K-1-i)/2).
class LKJCholesky final : public FamilyBase {
 public:
  LKJCholesky(int64_t dim, const at::Tensor& concentration)
      : FamilyBase(traits("LKJCholesky", constraints::corr_cholesky(), concentration.sizes().vec(), {dim, dim}, false),
                   concentration),
        k_(dim),
        eta_(concentration) {
    const double km1 = static_cast<double>(dim - 1);
    const at::Tensor alpha = eta_ + 0.5 * km1;
    log_norm_ = 0.5 * km1 * kLogPi + log_multigamma(alpha - 0.5, dim - 1) - km1 * at::lgamma(alpha);
    // Exponent of L_ii for rows i = 1..K-1 (0-based): K - i - 1 + 2 (eta - 1).
    exponents_ = 2.0 * (eta_.unsqueeze(-1) - 1) + (static_cast<double>(dim - 2) - at::arange(dim - 1, opts_));
  }
  at::Tensor log_prob(const at::Tensor& value) const override {
    const at::Tensor diag = cast(value).diagonal(0, -2, -1).narrow(-1, 1, k_ - 1);
    return (exponents_ * at::log(diag)).sum(-1) - log_norm_;
  }
  at::Tensor in_support(const at::Tensor& value) const override {
    return expand_to_batch(support().check(cast(value)));
  }
  at::Tensor sample(at::IntArrayRef s, at::Generator& gen) const override {
    at::NoGradGuard no_grad;
    std::vector<int64_t> shape(s.begin(), s.end());
    const std::vector<int64_t> b = batch_shape();
    shape.insert(shape.end(), b.begin(), b.end());
    const at::Tensor i = at::arange(1, k_, opts_);
    const at::Tensor conc1 = (0.5 * i).expand(with(shape, {k_ - 1}));
    const at::Tensor conc0 = (eta_.unsqueeze(-1) + 0.5 * (static_cast<double>(k_ - 1) - i)).expand(with(shape, {k_ - 1}));
    const at::Tensor g1 = standard_gamma(conc1, gen);
    const at::Tensor y = g1 / (g1 + standard_gamma(conc0, gen));
    const at::Tensor z = at::tril(at::randn(with(shape, {k_ - 1, k_}), gen, opts_), 0);  // rows 1..K-1, cols < i
    const at::Tensor direction = z / at::linalg_vector_norm(z, 2, {-1}, true);
    const at::Tensor first_row = at::zeros(with(shape, {1, k_}), opts_);
    const at::Tensor off_diagonal = at::cat({first_row, at::sqrt(y).unsqueeze(-1) * direction}, -2);
    const at::Tensor diag = at::cat({at::ones(with(shape, {1}), opts_), at::sqrt((1 - y).clamp_min(tiny_of(y)))}, -1);
    return off_diagonal + at::diag_embed(diag);
  }

 private:
  int64_t k_;
  at::Tensor eta_, log_norm_, exponents_;
};

}  // namespace

// ---- factories ------------------------------------------------------------------------

std::shared_ptr<Distribution> make_dirichlet(const Args& a, bool validate) {
  const char* f = "Dirichlet";
  check_min_rank(f, "concentration", a[0], 1);
  if (a[0].size(-1) < 1) throw_shape(f, "concentration", a[0], "must have at least one category");
  check_if(validate, f, "concentration", a[0], Domain::positive);
  return std::make_shared<Dirichlet>(a[0], leading_shape(a[0], 1));
}

std::shared_ptr<Distribution> make_multivariate_normal(const Args& a, bool validate) {
  const char* f = "MultivariateNormal";
  check_min_rank(f, "loc", a[0], 1);
  check_min_rank(f, "covariance_matrix", a[1], 2);
  const int64_t k = a[0].size(-1);
  if (a[1].size(-1) != k || a[1].size(-2) != k) {
    throw_shape(f, "covariance_matrix", a[1],
                "must end in " + shape_to_string({k, k}) + " to match loc (" + std::to_string(k) + ")");
  }
  check_if(validate, f, "loc", a[0], Domain::finite);
  if (checkable(validate, a[1])) check_positive_definite_arg(f, "covariance_matrix", a[1]);
  auto batch = broadcast_shapes(f, {"loc", "covariance_matrix"}, {leading_shape(a[0], 1), leading_shape(a[1], 2)});
  return std::make_shared<MultivariateNormal>(a[0], a[1], std::move(batch));
}

std::shared_ptr<Distribution> make_lowrank_mvn(const Args& a, bool validate) {
  const char* f = "LowRankMVN";
  check_min_rank(f, "loc", a[0], 1);
  check_min_rank(f, "cov_factor", a[1], 2);
  check_min_rank(f, "cov_diag", a[2], 1);
  const int64_t k = a[0].size(-1);
  if (a[1].size(-2) != k) {
    throw_shape(f, "cov_factor", a[1], "must have " + std::to_string(k) + " rows to match loc");
  }
  if (a[2].size(-1) != k) {
    throw_shape(f, "cov_diag", a[2], "must end in " + std::to_string(k) + " to match loc");
  }
  check_if(validate, f, "loc", a[0], Domain::finite);
  check_if(validate, f, "cov_factor", a[1], Domain::finite);
  check_if(validate, f, "cov_diag", a[2], Domain::positive);
  auto batch = broadcast_shapes(f, {"loc", "cov_factor", "cov_diag"},
                                {leading_shape(a[0], 1), leading_shape(a[1], 2), leading_shape(a[2], 1)});
  return std::make_shared<LowRankMVN>(a[0], a[1], a[2], std::move(batch));
}

std::shared_ptr<Distribution> make_wishart(const Args& a, bool validate) {
  const char* f = "Wishart";
  check_min_rank(f, "covariance_matrix", a[1], 2);
  const int64_t k = a[1].size(-1);
  if (a[1].size(-2) != k) throw_shape(f, "covariance_matrix", a[1], "must be square");
  if (checkable(validate, a[0])) {
    check_arg(f, "df", a[0], Domain::positive);
    check_ordered_args(f, "dim - 1", at::scalar_tensor(static_cast<double>(k - 1), a[0].options()), "df", a[0]);
  }
  if (checkable(validate, a[1])) check_positive_definite_arg(f, "covariance_matrix", a[1]);
  auto batch = broadcast_shapes(f, {"df", "covariance_matrix"}, {a[0].sizes().vec(), leading_shape(a[1], 2)});
  return std::make_shared<Wishart>(a[0], a[1], std::move(batch));
}

std::shared_ptr<Distribution> make_relaxed_one_hot_categorical(const Args& a, bool validate) {
  const char* f = "RelaxedOneHotCategorical";
  check_min_rank(f, "probs", a[1], 1);
  if (a[1].size(-1) < 1) throw_shape(f, "probs", a[1], "must have at least one category");
  check_if(validate, f, "temperature", a[0], Domain::positive);
  if (checkable(validate, a[1])) check_simplex_arg(f, "probs", a[1]);
  auto batch = broadcast_shapes(f, {"temperature", "probs"}, {a[0].sizes().vec(), leading_shape(a[1], 1)});
  return std::make_shared<RelaxedOneHotCategorical>(a[0], a[1], std::move(batch));
}

std::shared_ptr<Distribution> make_lkj_cholesky(const Args& a, bool validate) {
  const char* f = "LKJCholesky";
  if (a[0].numel() != 1) throw_shape(f, "dim", a[0], "must be a single number");
  const double dim = a[0].item<double>();
  if (!(dim >= 2 && std::isfinite(dim) && std::floor(dim) == dim)) {
    std::ostringstream msg;
    msg << f << ": dim is " << dim << ", but must be an integer at least 2!";
    throw std::domain_error(msg.str());
  }
  check_if(validate, f, "concentration", a[1], Domain::positive);
  return std::make_shared<LKJCholesky>(static_cast<int64_t>(dim), a[1]);
}

}  // namespace vguide::model::detail
