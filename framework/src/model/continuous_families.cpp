// The elementwise continuous families. Parameterisations follow torch.distributions;
// every density is written with its normalising constant, and log_prob is -inf
// outside the support.
#include <ATen/ATen.h>

#include <cmath>
#include <limits>

#include "distribution_impl.hpp"
#include "vguide/math/normal_log_prob.hpp"

namespace vguide::model::detail {
namespace {

const double kHalfLog2Pi = 0.5 * std::log(2.0 * M_PI);
const double kLogPi = std::log(M_PI);
const double kLog2 = std::log(2.0);
const double kInf = std::numeric_limits<double>::infinity();
const double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr double kEulerGamma = 0.57721566490153286061;

at::Tensor in_unit(const at::Tensor& x) { return (x >= 0).logical_and(x <= 1); }
at::Tensor in_open_unit(const at::Tensor& x) { return (x > 0).logical_and(x < 1); }
at::Tensor log_beta(const at::Tensor& a, const at::Tensor& b) {
  return at::lgamma(a) + at::lgamma(b) - at::lgamma(a + b);
}

// ---- Normal and relatives ---------------------------------------------------------

class Normal final : public ScalarFamily {
 public:
  Normal(const at::Tensor& loc, const at::Tensor& scale, std::vector<int64_t> batch)
      : ScalarFamily(traits("Normal", constraints::real(), std::move(batch)), loc), loc_(loc), scale_(scale) {}
  at::Tensor log_prob(const at::Tensor& value) const override {
    return math::normal_log_prob(cast(value), loc_, scale_);
  }
  at::Tensor rsample(at::IntArrayRef s, at::Generator& gen) const override {
    return loc_ + scale_ * at::randn(extended_shape(s), gen, opts_);
  }
  bool has_mean() const override { return true; }
  at::Tensor mean() const override { return loc_.expand(batch_shape()); }

 protected:
  at::Tensor support_mask(const at::Tensor& x) const override { return at::isfinite(x); }

 private:
  at::Tensor loc_, scale_;
};

class HalfNormal final : public ScalarFamily {
 public:
  HalfNormal(const at::Tensor& scale, std::vector<int64_t> batch)
      : ScalarFamily(traits("HalfNormal", constraints::positive(), std::move(batch)), scale), scale_(scale) {}
  at::Tensor log_prob(const at::Tensor& value) const override {
    const at::Tensor x = cast(value);
    const at::Tensor z = x / scale_;
    return masked(x, kLog2 - kHalfLog2Pi - at::log(scale_) - 0.5 * z * z);
  }
  at::Tensor rsample(at::IntArrayRef s, at::Generator& gen) const override {
    return (scale_ * at::randn(extended_shape(s), gen, opts_)).abs();
  }
  bool has_mean() const override { return true; }
  at::Tensor mean() const override { return (scale_ * std::sqrt(2.0 / M_PI)).expand(batch_shape()); }

 protected:
  at::Tensor support_mask(const at::Tensor& x) const override { return (x >= 0).logical_and(x < kInf); }

 private:
  at::Tensor scale_;
};

class LogNormal final : public ScalarFamily {
 public:
  LogNormal(const at::Tensor& loc, const at::Tensor& scale, std::vector<int64_t> batch)
      : ScalarFamily(traits("LogNormal", constraints::positive(), std::move(batch)), loc), loc_(loc), scale_(scale) {}
  at::Tensor log_prob(const at::Tensor& value) const override {
    const at::Tensor x = cast(value);
    const at::Tensor y = at::log(x);
    return masked(x, math::normal_log_prob(y, loc_, scale_) - y);
  }
  at::Tensor rsample(at::IntArrayRef s, at::Generator& gen) const override {
    return at::exp(loc_ + scale_ * at::randn(extended_shape(s), gen, opts_));
  }
  bool has_mean() const override { return true; }
  at::Tensor mean() const override { return at::exp(loc_ + 0.5 * scale_ * scale_).expand(batch_shape()); }

 protected:
  at::Tensor support_mask(const at::Tensor& x) const override { return (x > 0).logical_and(x < kInf); }

 private:
  at::Tensor loc_, scale_;
};

class LogitNormal final : public ScalarFamily {
 public:
  LogitNormal(const at::Tensor& loc, const at::Tensor& scale, std::vector<int64_t> batch)
      : ScalarFamily(traits("LogitNormal", constraints::unit_interval(), std::move(batch)), loc),
        loc_(loc),
        scale_(scale) {}
  at::Tensor log_prob(const at::Tensor& value) const override {
    const at::Tensor x = cast(value);
    const at::Tensor log_x = at::log(x);
    const at::Tensor log_1mx = at::log1p(-x);
    return masked(x, math::normal_log_prob(log_x - log_1mx, loc_, scale_) - log_x - log_1mx);
  }
  at::Tensor rsample(at::IntArrayRef s, at::Generator& gen) const override {
    return clamp_unit(at::sigmoid(loc_ + scale_ * at::randn(extended_shape(s), gen, opts_)));
  }

 protected:
  at::Tensor support_mask(const at::Tensor& x) const override { return in_open_unit(x); }

 private:
  at::Tensor loc_, scale_;
};

// N(loc, scale) restricted to [low, high]. In standard units a = (low-loc)/scale,
// b = (high-loc)/scale; when a > 0 both tails are mirrored (a, b) -> (-b, -a) so
// that Phi is always evaluated where it is accurate.
class TruncatedNormal final : public ScalarFamily {
 public:
  TruncatedNormal(const at::Tensor& loc, const at::Tensor& scale, const at::Tensor& low, const at::Tensor& high,
                  std::vector<int64_t> batch)
      : ScalarFamily(make_traits(low, high, std::move(batch)), loc), loc_(loc), scale_(scale), low_(low), high_(high) {
    const at::Tensor a = (low - loc) / scale;
    const at::Tensor b = (high - loc) / scale;
    a_ = a;
    b_ = b;
    const at::Tensor flip = a > 0;
    sign_ = at::where(flip, at::scalar_tensor(-1.0, opts_), at::scalar_tensor(1.0, opts_));
    lo_ = at::where(flip, -b, a);
    hi_ = at::where(flip, -a, b);
    const at::Tensor log_phi_lo = at::special_log_ndtr(lo_);
    const at::Tensor log_phi_hi = at::special_log_ndtr(hi_);
    log_z_ = log_phi_hi + at::log(-at::expm1(log_phi_lo - log_phi_hi));
  }
  at::Tensor log_prob(const at::Tensor& value) const override {
    const at::Tensor x = cast(value);
    const at::Tensor z = (x - loc_) / scale_;
    return masked(x, -0.5 * z * z - kHalfLog2Pi - at::log(scale_) - log_z_);
  }
  at::Tensor rsample(at::IntArrayRef s, at::Generator& gen) const override {
    const at::Tensor u = uniform_open(extended_shape(s), gen, opts_);
    const at::Tensor phi_lo = at::special_ndtr(lo_);
    const at::Tensor phi_hi = at::special_ndtr(hi_);
    const at::Tensor xi = sign_ * at::special_ndtri(phi_lo + u * (phi_hi - phi_lo));
    return loc_ + scale_ * at::clamp(xi, a_, b_);
  }
  bool has_mean() const override { return true; }
  at::Tensor mean() const override {
    const at::Tensor pdf_a = at::exp(-0.5 * a_ * a_ - kHalfLog2Pi);
    const at::Tensor pdf_b = at::exp(-0.5 * b_ * b_ - kHalfLog2Pi);
    return (loc_ + scale_ * (pdf_a - pdf_b) / at::exp(log_z_)).expand(batch_shape());
  }

 protected:
  at::Tensor support_mask(const at::Tensor& x) const override { return (x >= low_).logical_and(x <= high_); }

 private:
  static Traits make_traits(const at::Tensor& low, const at::Tensor& high, std::vector<int64_t> batch) {
    if (constant_scalar(low) && constant_scalar(high)) {
      return traits("TruncatedNormal", constraints::interval(low.item<double>(), high.item<double>()),
                    std::move(batch));
    }
    return traits("TruncatedNormal", constraints::real(), std::move(batch), {}, true, false, true);
  }
  at::Tensor loc_, scale_, low_, high_, a_, b_, sign_, lo_, hi_, log_z_;
};

// ---- heavy tails --------------------------------------------------------------------

class Cauchy final : public ScalarFamily {
 public:
  Cauchy(const at::Tensor& loc, const at::Tensor& scale, std::vector<int64_t> batch)
      : ScalarFamily(traits("Cauchy", constraints::real(), std::move(batch)), loc), loc_(loc), scale_(scale) {}
  at::Tensor log_prob(const at::Tensor& value) const override {
    const at::Tensor z = (cast(value) - loc_) / scale_;
    return -kLogPi - at::log(scale_) - at::log1p(z * z);
  }
  at::Tensor rsample(at::IntArrayRef s, at::Generator& gen) const override {
    const at::Tensor u = uniform_open(extended_shape(s), gen, opts_);
    return loc_ + scale_ * at::tan(M_PI * (u - 0.5));
  }

 protected:
  at::Tensor support_mask(const at::Tensor& x) const override { return at::isfinite(x); }

 private:
  at::Tensor loc_, scale_;
};

class HalfCauchy final : public ScalarFamily {
 public:
  HalfCauchy(const at::Tensor& scale, std::vector<int64_t> batch)
      : ScalarFamily(traits("HalfCauchy", constraints::positive(), std::move(batch)), scale), scale_(scale) {}
  at::Tensor log_prob(const at::Tensor& value) const override {
    const at::Tensor x = cast(value);
    const at::Tensor z = x / scale_;
    return masked(x, kLog2 - kLogPi - at::log(scale_) - at::log1p(z * z));
  }
  at::Tensor rsample(at::IntArrayRef s, at::Generator& gen) const override {
    const at::Tensor u = uniform_open(extended_shape(s), gen, opts_);
    return (scale_ * at::tan(M_PI * (u - 0.5))).abs();
  }

 protected:
  at::Tensor support_mask(const at::Tensor& x) const override { return (x >= 0).logical_and(x < kInf); }

 private:
  at::Tensor scale_;
};

// x = loc + scale * N / sqrt(V / df), V ~ Chi2(df) = 2 Gamma(df / 2).
class StudentT final : public ScalarFamily {
 public:
  StudentT(const at::Tensor& df, const at::Tensor& loc, const at::Tensor& scale, std::vector<int64_t> batch)
      : ScalarFamily(traits("StudentT", constraints::real(), std::move(batch)), loc), df_(df), loc_(loc),
        scale_(scale) {}
  at::Tensor log_prob(const at::Tensor& value) const override {
    const at::Tensor z = (cast(value) - loc_) / scale_;
    const at::Tensor norm = at::lgamma(0.5 * (df_ + 1)) - at::lgamma(0.5 * df_) - 0.5 * (at::log(df_) + kLogPi);
    return norm - at::log(scale_) - 0.5 * (df_ + 1) * at::log1p(z * z / df_);
  }
  at::Tensor rsample(at::IntArrayRef s, at::Generator& gen) const override {
    const std::vector<int64_t> shape = extended_shape(s);
    const at::Tensor g = standard_gamma((0.5 * df_).expand(shape), gen);
    return loc_ + scale_ * at::randn(shape, gen, opts_) * at::rsqrt(2.0 * g / df_);
  }
  bool has_mean() const override { return true; }
  at::Tensor mean() const override {
    return at::where(df_ > 1, loc_, at::scalar_tensor(kNaN, opts_)).expand(batch_shape());
  }

 protected:
  at::Tensor support_mask(const at::Tensor& x) const override { return at::isfinite(x); }

 private:
  at::Tensor df_, loc_, scale_;
};

class Laplace final : public ScalarFamily {
 public:
  Laplace(const at::Tensor& loc, const at::Tensor& scale, std::vector<int64_t> batch)
      : ScalarFamily(traits("Laplace", constraints::real(), std::move(batch)), loc), loc_(loc), scale_(scale) {}
  at::Tensor log_prob(const at::Tensor& value) const override {
    return -kLog2 - at::log(scale_) - (cast(value) - loc_).abs() / scale_;
  }
  at::Tensor rsample(at::IntArrayRef s, at::Generator& gen) const override {
    const at::Tensor u = 2.0 * uniform_open(extended_shape(s), gen, opts_) - 1.0;  // (-1, 1)
    return loc_ - scale_ * at::sign(u) * at::log1p(-u.abs());
  }
  bool has_mean() const override { return true; }
  at::Tensor mean() const override { return loc_.expand(batch_shape()); }

 protected:
  at::Tensor support_mask(const at::Tensor& x) const override { return at::isfinite(x); }

 private:
  at::Tensor loc_, scale_;
};

class Gumbel final : public ScalarFamily {
 public:
  Gumbel(const at::Tensor& loc, const at::Tensor& scale, std::vector<int64_t> batch)
      : ScalarFamily(traits("Gumbel", constraints::real(), std::move(batch)), loc), loc_(loc), scale_(scale) {}
  at::Tensor log_prob(const at::Tensor& value) const override {
    const at::Tensor z = (cast(value) - loc_) / scale_;
    return -(z + at::exp(-z)) - at::log(scale_);
  }
  at::Tensor rsample(at::IntArrayRef s, at::Generator& gen) const override {
    const at::Tensor u = uniform_open(extended_shape(s), gen, opts_);
    return loc_ - scale_ * at::log(-at::log(u));
  }
  bool has_mean() const override { return true; }
  at::Tensor mean() const override { return (loc_ + scale_ * kEulerGamma).expand(batch_shape()); }

 protected:
  at::Tensor support_mask(const at::Tensor& x) const override { return at::isfinite(x); }

 private:
  at::Tensor loc_, scale_;
};

// ---- positive families ------------------------------------------------------------

class Exponential final : public ScalarFamily {
 public:
  Exponential(const at::Tensor& rate, std::vector<int64_t> batch)
      : ScalarFamily(traits("Exponential", constraints::positive(), std::move(batch)), rate), rate_(rate) {}
  at::Tensor log_prob(const at::Tensor& value) const override {
    const at::Tensor x = cast(value);
    return masked(x, at::log(rate_) - rate_ * x);
  }
  at::Tensor rsample(at::IntArrayRef s, at::Generator& gen) const override {
    return -at::log(uniform_open(extended_shape(s), gen, opts_)) / rate_;
  }
  bool has_mean() const override { return true; }
  at::Tensor mean() const override { return at::reciprocal(rate_).expand(batch_shape()); }

 protected:
  at::Tensor support_mask(const at::Tensor& x) const override { return (x >= 0).logical_and(x < kInf); }

 private:
  at::Tensor rate_;
};

class Gamma final : public ScalarFamily {
 public:
  Gamma(const at::Tensor& concentration, const at::Tensor& rate, std::vector<int64_t> batch)
      : ScalarFamily(traits("Gamma", constraints::positive(), std::move(batch)), concentration),
        alpha_(concentration),
        rate_(rate) {}
  at::Tensor log_prob(const at::Tensor& value) const override {
    const at::Tensor x = cast(value);
    const at::Tensor lp = at::xlogy(alpha_ - 1, x) + alpha_ * at::log(rate_) - rate_ * x - at::lgamma(alpha_);
    return masked(x, lp);
  }
  at::Tensor rsample(at::IntArrayRef s, at::Generator& gen) const override {
    return standard_gamma(alpha_.expand(extended_shape(s)), gen) / rate_;
  }
  bool has_mean() const override { return true; }
  at::Tensor mean() const override { return (alpha_ / rate_).expand(batch_shape()); }

 protected:
  at::Tensor support_mask(const at::Tensor& x) const override { return (x >= 0).logical_and(x < kInf); }

 private:
  at::Tensor alpha_, rate_;
};

class InverseGamma final : public ScalarFamily {
 public:
  InverseGamma(const at::Tensor& concentration, const at::Tensor& rate, std::vector<int64_t> batch)
      : ScalarFamily(traits("InverseGamma", constraints::positive(), std::move(batch)), concentration),
        alpha_(concentration),
        rate_(rate) {}
  at::Tensor log_prob(const at::Tensor& value) const override {
    const at::Tensor x = cast(value);
    const at::Tensor lp = alpha_ * at::log(rate_) - at::lgamma(alpha_) - (alpha_ + 1) * at::log(x) - rate_ / x;
    return masked(x, lp);
  }
  at::Tensor rsample(at::IntArrayRef s, at::Generator& gen) const override {
    return rate_ / standard_gamma(alpha_.expand(extended_shape(s)), gen);
  }
  bool has_mean() const override { return true; }
  at::Tensor mean() const override {
    return at::where(alpha_ > 1, rate_ / (alpha_ - 1), at::scalar_tensor(kInf, opts_)).expand(batch_shape());
  }

 protected:
  at::Tensor support_mask(const at::Tensor& x) const override { return (x > 0).logical_and(x < kInf); }

 private:
  at::Tensor alpha_, rate_;
};

// Chi2(df) = Gamma(df / 2, rate 1/2).
class Chi2 final : public ScalarFamily {
 public:
  Chi2(const at::Tensor& df, std::vector<int64_t> batch)
      : ScalarFamily(traits("Chi2", constraints::positive(), std::move(batch)), df), df_(df) {}
  at::Tensor log_prob(const at::Tensor& value) const override {
    const at::Tensor x = cast(value);
    const at::Tensor k = 0.5 * df_;
    return masked(x, at::xlogy(k - 1, x) - 0.5 * x - k * kLog2 - at::lgamma(k));
  }
  at::Tensor rsample(at::IntArrayRef s, at::Generator& gen) const override {
    return 2.0 * standard_gamma((0.5 * df_).expand(extended_shape(s)), gen);
  }
  bool has_mean() const override { return true; }
  at::Tensor mean() const override { return df_.expand(batch_shape()); }

 protected:
  at::Tensor support_mask(const at::Tensor& x) const override { return (x >= 0).logical_and(x < kInf); }

 private:
  at::Tensor df_;
};

class Weibull final : public ScalarFamily {
 public:
  Weibull(const at::Tensor& scale, const at::Tensor& concentration, std::vector<int64_t> batch)
      : ScalarFamily(traits("Weibull", constraints::positive(), std::move(batch)), scale),
        scale_(scale),
        k_(concentration) {}
  at::Tensor log_prob(const at::Tensor& value) const override {
    const at::Tensor x = cast(value);
    const at::Tensor z = x / scale_;
    return masked(x, at::log(k_) - at::log(scale_) + at::xlogy(k_ - 1, z) - at::pow(z, k_));
  }
  at::Tensor rsample(at::IntArrayRef s, at::Generator& gen) const override {
    const at::Tensor e = -at::log(uniform_open(extended_shape(s), gen, opts_));
    return scale_ * at::pow(e, at::reciprocal(k_));
  }
  bool has_mean() const override { return true; }
  at::Tensor mean() const override {
    return (scale_ * at::exp(at::lgamma(1 + at::reciprocal(k_)))).expand(batch_shape());
  }

 protected:
  at::Tensor support_mask(const at::Tensor& x) const override { return (x >= 0).logical_and(x < kInf); }

 private:
  at::Tensor scale_, k_;
};

class Pareto final : public ScalarFamily {
 public:
  Pareto(const at::Tensor& scale, const at::Tensor& alpha, std::vector<int64_t> batch)
      : ScalarFamily(make_traits(scale, std::move(batch)), scale), scale_(scale), alpha_(alpha) {}
  at::Tensor log_prob(const at::Tensor& value) const override {
    const at::Tensor x = cast(value);
    const at::Tensor lp = at::log(alpha_) + alpha_ * at::log(scale_) - (alpha_ + 1) * at::log(x);
    return masked(x, lp);
  }
  at::Tensor rsample(at::IntArrayRef s, at::Generator& gen) const override {
    const at::Tensor e = -at::log(uniform_open(extended_shape(s), gen, opts_));
    return scale_ * at::exp(e / alpha_);
  }
  bool has_mean() const override { return true; }
  at::Tensor mean() const override {
    return at::where(alpha_ > 1, alpha_ * scale_ / (alpha_ - 1), at::scalar_tensor(kInf, opts_))
        .expand(batch_shape());
  }

 protected:
  at::Tensor support_mask(const at::Tensor& x) const override { return (x >= scale_).logical_and(x < kInf); }

 private:
  static Traits make_traits(const at::Tensor& scale, std::vector<int64_t> batch) {
    if (constant_scalar(scale)) {
      return traits("Pareto", constraints::greater_than(scale.item<double>()), std::move(batch));
    }
    return traits("Pareto", constraints::positive(), std::move(batch), {}, true, false, true);
  }
  at::Tensor scale_, alpha_;
};

// Density (1/scale) (1 + c z)^(-1/c - 1), z = (x - loc)/scale >= 0 (and z <= -1/c
// when c < 0); exp(-z)/scale at c = 0.
class GeneralizedPareto final : public ScalarFamily {
 public:
  GeneralizedPareto(const at::Tensor& loc, const at::Tensor& scale, const at::Tensor& c, std::vector<int64_t> batch)
      : ScalarFamily(make_traits(loc, scale, c, std::move(batch)), loc),
        loc_(loc),
        scale_(scale),
        c_(c),
        c_zero_(c == 0),
        c_safe_(at::where(c == 0, at::ones_like(c), c)) {}
  at::Tensor log_prob(const at::Tensor& value) const override {
    const at::Tensor x = cast(value);
    const at::Tensor z = (x - loc_) / scale_;
    const at::Tensor tail = at::where(c_zero_, -z, -(at::reciprocal(c_safe_) + 1) * at::log1p(c_safe_ * z));
    return masked(x, tail - at::log(scale_));
  }
  at::Tensor rsample(at::IntArrayRef s, at::Generator& gen) const override {
    const at::Tensor e = -at::log(uniform_open(extended_shape(s), gen, opts_));  // Exponential(1)
    return loc_ + scale_ * at::where(c_zero_, e, at::expm1(c_safe_ * e) / c_safe_);
  }
  bool has_mean() const override { return true; }
  at::Tensor mean() const override {
    return at::where(c_ < 1, loc_ + scale_ / (1 - c_), at::scalar_tensor(kInf, opts_)).expand(batch_shape());
  }

 protected:
  at::Tensor support_mask(const at::Tensor& x) const override {
    const at::Tensor z = (x - loc_) / scale_;
    return (z >= 0).logical_and(1 + c_ * z >= 0).logical_and(x < kInf);
  }

 private:
  static Traits make_traits(const at::Tensor& loc, const at::Tensor& scale, const at::Tensor& c,
                            std::vector<int64_t> batch) {
    if (constant_scalar(loc) && constant_scalar(scale) && constant_scalar(c)) {
      const double l = loc.item<double>(), sc = scale.item<double>(), cc = c.item<double>();
      return traits("GeneralizedPareto",
                    cc >= 0 ? constraints::greater_than(l) : constraints::interval(l, l - sc / cc), std::move(batch));
    }
    return traits("GeneralizedPareto", constraints::real(), std::move(batch), {}, true, false, true);
  }
  at::Tensor loc_, scale_, c_, c_zero_, c_safe_;
};

class FisherSnedecor final : public ScalarFamily {
 public:
  FisherSnedecor(const at::Tensor& df1, const at::Tensor& df2, std::vector<int64_t> batch)
      : ScalarFamily(traits("FisherSnedecor", constraints::positive(), std::move(batch)), df1), d1_(df1), d2_(df2) {}
  at::Tensor log_prob(const at::Tensor& value) const override {
    const at::Tensor x = cast(value);
    const at::Tensor h1 = 0.5 * d1_, h2 = 0.5 * d2_;
    const at::Tensor lp = h1 * at::log(d1_) + h2 * at::log(d2_) + at::xlogy(h1 - 1, x) -
                          (h1 + h2) * at::log(d2_ + d1_ * x) - log_beta(h1, h2);
    return masked(x, lp);
  }
  at::Tensor rsample(at::IntArrayRef s, at::Generator& gen) const override {
    const std::vector<int64_t> shape = extended_shape(s);
    const at::Tensor g1 = standard_gamma((0.5 * d1_).expand(shape), gen);
    const at::Tensor g2 = standard_gamma((0.5 * d2_).expand(shape), gen);
    return (g1 / d1_) / (g2 / d2_);
  }
  bool has_mean() const override { return true; }
  at::Tensor mean() const override {
    return at::where(d2_ > 2, d2_ / (d2_ - 2), at::scalar_tensor(kNaN, opts_)).expand(batch_shape());
  }

 protected:
  at::Tensor support_mask(const at::Tensor& x) const override { return (x >= 0).logical_and(x < kInf); }

 private:
  at::Tensor d1_, d2_;
};

// ---- the unit interval -------------------------------------------------------------

class Beta final : public ScalarFamily {
 public:
  Beta(const at::Tensor& c1, const at::Tensor& c0, std::vector<int64_t> batch)
      : ScalarFamily(traits("Beta", constraints::unit_interval(), std::move(batch)), c1), a_(c1), b_(c0) {}
  at::Tensor log_prob(const at::Tensor& value) const override {
    const at::Tensor x = cast(value);
    const at::Tensor lp = at::xlogy(a_ - 1, x) + at::special_xlog1py(b_ - 1, -x) - log_beta(a_, b_);
    return masked(x, lp);
  }
  at::Tensor rsample(at::IntArrayRef s, at::Generator& gen) const override {
    const std::vector<int64_t> shape = extended_shape(s);
    const at::Tensor ga = standard_gamma(a_.expand(shape), gen);
    const at::Tensor gb = standard_gamma(b_.expand(shape), gen);
    return clamp_unit(ga / (ga + gb));
  }
  bool has_mean() const override { return true; }
  at::Tensor mean() const override { return (a_ / (a_ + b_)).expand(batch_shape()); }

 protected:
  at::Tensor support_mask(const at::Tensor& x) const override { return in_unit(x); }

 private:
  at::Tensor a_, b_;
};

// Density a b x^(a-1) (1 - x^a)^(b-1); inverse CDF (1 - (1-u)^(1/b))^(1/a).
class Kumaraswamy final : public ScalarFamily {
 public:
  Kumaraswamy(const at::Tensor& c1, const at::Tensor& c0, std::vector<int64_t> batch)
      : ScalarFamily(traits("Kumaraswamy", constraints::unit_interval(), std::move(batch)), c1), a_(c1), b_(c0) {}
  at::Tensor log_prob(const at::Tensor& value) const override {
    const at::Tensor x = cast(value);
    const at::Tensor lp =
        at::log(a_) + at::log(b_) + at::xlogy(a_ - 1, x) + at::special_xlog1py(b_ - 1, -at::pow(x, a_));
    return masked(x, lp);
  }
  at::Tensor rsample(at::IntArrayRef s, at::Generator& gen) const override {
    const at::Tensor log_u = at::log(uniform_open(extended_shape(s), gen, opts_));
    return clamp_unit(at::pow(-at::expm1(log_u / b_), at::reciprocal(a_)));
  }
  bool has_mean() const override { return true; }
  at::Tensor mean() const override {
    const at::Tensor p = 1 + at::reciprocal(a_);
    return at::exp(at::log(b_) + at::lgamma(p) + at::lgamma(b_) - at::lgamma(p + b_)).expand(batch_shape());
  }

 protected:
  at::Tensor support_mask(const at::Tensor& x) const override { return in_unit(x); }

 private:
  at::Tensor a_, b_;
};

class Uniform final : public ScalarFamily {
 public:
  Uniform(const at::Tensor& low, const at::Tensor& high, std::vector<int64_t> batch)
      : ScalarFamily(make_traits(low, high, std::move(batch)), low), low_(low), high_(high) {}
  at::Tensor log_prob(const at::Tensor& value) const override {
    const at::Tensor x = cast(value);
    return masked(x, -at::log(high_ - low_));
  }
  at::Tensor rsample(at::IntArrayRef s, at::Generator& gen) const override {
    return low_ + (high_ - low_) * at::rand(extended_shape(s), gen, opts_);
  }
  bool has_mean() const override { return true; }
  at::Tensor mean() const override { return (0.5 * (low_ + high_)).expand(batch_shape()); }

 protected:
  at::Tensor support_mask(const at::Tensor& x) const override { return (x >= low_).logical_and(x <= high_); }

 private:
  static Traits make_traits(const at::Tensor& low, const at::Tensor& high, std::vector<int64_t> batch) {
    if (constant_scalar(low) && constant_scalar(high)) {
      return traits("Uniform", constraints::interval(low.item<double>(), high.item<double>()), std::move(batch));
    }
    return traits("Uniform", constraints::real(), std::move(batch), {}, true, false, true);
  }
  at::Tensor low_, high_;
};

// Density C(p) p^x (1-p)^(1-x) on [0, 1]. With l = logit(p):
// C = l / tanh(l / 2), the CDF inverts to log1p(u expm1(l)) / l, and the mean is
// 1 / (1 - exp(-l)) - 1 / l; each is replaced by its Taylor series near l = 0.
class ContinuousBernoulli final : public ScalarFamily {
 public:
  ContinuousBernoulli(const at::Tensor& probs, std::vector<int64_t> batch)
      : ScalarFamily(traits("ContinuousBernoulli", constraints::unit_interval(), std::move(batch)), probs),
        log_p_(at::log(probs)),
        log_1mp_(at::log1p(-probs)) {
    logits_ = log_p_ - log_1mp_;
  }
  at::Tensor log_prob(const at::Tensor& value) const override {
    const at::Tensor x = cast(value);
    const at::Tensor small = logits_.abs() < 1e-4;
    const at::Tensor l = at::where(small, at::ones_like(logits_), logits_);
    const at::Tensor log_norm =
        at::where(small, kLog2 + logits_ * logits_ / 12.0, at::log(l / at::tanh(0.5 * l)));
    return masked(x, x * log_p_ + (1 - x) * log_1mp_ + log_norm);
  }
  at::Tensor rsample(at::IntArrayRef s, at::Generator& gen) const override {
    const at::Tensor u = uniform_open(extended_shape(s), gen, opts_);
    const at::Tensor small = logits_.abs() < 1e-6;
    const at::Tensor l = at::where(small, at::ones_like(logits_), logits_);
    const at::Tensor exact = at::log1p(u * at::expm1(l)) / l;
    return clamp_unit(at::where(small, u + 0.5 * u * (1 - u) * logits_, exact));
  }
  bool has_mean() const override { return true; }
  at::Tensor mean() const override {
    const at::Tensor small = logits_.abs() < 1e-2;
    const at::Tensor l = at::where(small, at::ones_like(logits_), logits_);
    const at::Tensor exact = -at::reciprocal(at::expm1(-l)) - at::reciprocal(l);
    const at::Tensor series = 0.5 + logits_ / 12.0 - at::pow(logits_, 3) / 720.0;
    return at::where(small, series, exact).expand(batch_shape());
  }

 protected:
  at::Tensor support_mask(const at::Tensor& x) const override { return in_unit(x); }

 private:
  at::Tensor log_p_, log_1mp_, logits_;
};

// Binary Concrete (Maddison et al. 2017, arXiv:1611.00712): with l = logit(probs)
// and y = logit(x), log p(x) = log T + d - 2 softplus(d) - log x - log(1-x),
// d = l - T y; draws x = sigmoid((l + logit(u)) / T).
class RelaxedBernoulli final : public ScalarFamily {
 public:
  RelaxedBernoulli(const at::Tensor& temperature, const at::Tensor& probs, std::vector<int64_t> batch)
      : ScalarFamily(traits("RelaxedBernoulli", constraints::unit_interval(), std::move(batch)), probs),
        temperature_(temperature) {
    const at::Tensor p = clamp_unit(probs);
    logits_ = at::log(p) - at::log1p(-p);
  }
  at::Tensor log_prob(const at::Tensor& value) const override {
    const at::Tensor x = cast(value);
    const at::Tensor log_x = at::log(x);
    const at::Tensor log_1mx = at::log1p(-x);
    const at::Tensor d = logits_ - temperature_ * (log_x - log_1mx);
    const at::Tensor lp = at::log(temperature_) + d - 2 * at::softplus(d) - log_x - log_1mx;
    return masked(x, lp);
  }
  at::Tensor rsample(at::IntArrayRef s, at::Generator& gen) const override {
    const at::Tensor u = uniform_open(extended_shape(s), gen, opts_);
    return clamp_unit(at::sigmoid((logits_ + at::log(u) - at::log1p(-u)) / temperature_));
  }

 protected:
  at::Tensor support_mask(const at::Tensor& x) const override { return in_open_unit(x); }

 private:
  at::Tensor temperature_, logits_;
};

}  // namespace

// ---- factories ------------------------------------------------------------------------

std::shared_ptr<Distribution> make_normal(const Args& a, bool validate) {
  return make_two<Normal>("Normal", a, validate, "loc", Domain::finite, "scale", Domain::positive);
}

std::shared_ptr<Distribution> make_half_normal(const Args& a, bool validate) {
  return make_one<HalfNormal>("HalfNormal", a, validate, "scale", Domain::positive);
}

std::shared_ptr<Distribution> make_log_normal(const Args& a, bool validate) {
  return make_two<LogNormal>("LogNormal", a, validate, "loc", Domain::finite, "scale", Domain::positive);
}

std::shared_ptr<Distribution> make_logit_normal(const Args& a, bool validate) {
  return make_two<LogitNormal>("LogitNormal", a, validate, "loc", Domain::finite, "scale", Domain::positive);
}

std::shared_ptr<Distribution> make_truncated_normal(const Args& a, bool validate) {
  const char* f = "TruncatedNormal";
  check_if(validate, f, "loc", a[0], Domain::finite);
  check_if(validate, f, "scale", a[1], Domain::positive);
  check_if(validate, f, "low", a[2], Domain::finite);
  check_if(validate, f, "high", a[3], Domain::finite);
  auto batch = batch_of(f, {"loc", "scale", "low", "high"}, a);
  if (checkable(validate, a[2]) && checkable(validate, a[3])) check_ordered_args(f, "low", a[2], "high", a[3]);
  return std::make_shared<TruncatedNormal>(a[0], a[1], a[2], a[3], std::move(batch));
}

std::shared_ptr<Distribution> make_cauchy(const Args& a, bool validate) {
  return make_two<Cauchy>("Cauchy", a, validate, "loc", Domain::finite, "scale", Domain::positive);
}

std::shared_ptr<Distribution> make_half_cauchy(const Args& a, bool validate) {
  return make_one<HalfCauchy>("HalfCauchy", a, validate, "scale", Domain::positive);
}

std::shared_ptr<Distribution> make_student_t(const Args& a, bool validate) {
  const char* f = "StudentT";
  check_if(validate, f, "df", a[0], Domain::positive);
  check_if(validate, f, "loc", a[1], Domain::finite);
  check_if(validate, f, "scale", a[2], Domain::positive);
  return std::make_shared<StudentT>(a[0], a[1], a[2], batch_of(f, {"df", "loc", "scale"}, a));
}

std::shared_ptr<Distribution> make_laplace(const Args& a, bool validate) {
  return make_two<Laplace>("Laplace", a, validate, "loc", Domain::finite, "scale", Domain::positive);
}

std::shared_ptr<Distribution> make_gumbel(const Args& a, bool validate) {
  return make_two<Gumbel>("Gumbel", a, validate, "loc", Domain::finite, "scale", Domain::positive);
}

std::shared_ptr<Distribution> make_exponential(const Args& a, bool validate) {
  return make_one<Exponential>("Exponential", a, validate, "rate", Domain::positive);
}

std::shared_ptr<Distribution> make_gamma(const Args& a, bool validate) {
  return make_two<Gamma>("Gamma", a, validate, "concentration", Domain::positive, "rate", Domain::positive);
}

std::shared_ptr<Distribution> make_inverse_gamma(const Args& a, bool validate) {
  return make_two<InverseGamma>("InverseGamma", a, validate, "concentration", Domain::positive, "rate", Domain::positive);
}

std::shared_ptr<Distribution> make_chi2(const Args& a, bool validate) {
  return make_one<Chi2>("Chi2", a, validate, "df", Domain::positive);
}

std::shared_ptr<Distribution> make_weibull(const Args& a, bool validate) {
  return make_two<Weibull>("Weibull", a, validate, "scale", Domain::positive, "concentration", Domain::positive);
}

std::shared_ptr<Distribution> make_pareto(const Args& a, bool validate) {
  return make_two<Pareto>("Pareto", a, validate, "scale", Domain::positive, "alpha", Domain::positive);
}

std::shared_ptr<Distribution> make_generalized_pareto(const Args& a, bool validate) {
  const char* f = "GeneralizedPareto";
  check_if(validate, f, "loc", a[0], Domain::finite);
  check_if(validate, f, "scale", a[1], Domain::positive);
  check_if(validate, f, "concentration", a[2], Domain::finite);
  return std::make_shared<GeneralizedPareto>(a[0], a[1], a[2], batch_of(f, {"loc", "scale", "concentration"}, a));
}

std::shared_ptr<Distribution> make_beta(const Args& a, bool validate) {
  return make_two<Beta>("Beta", a, validate, "concentration1", Domain::positive, "concentration0", Domain::positive);
}

std::shared_ptr<Distribution> make_kumaraswamy(const Args& a, bool validate) {
  return make_two<Kumaraswamy>("Kumaraswamy", a, validate, "concentration1", Domain::positive, "concentration0", Domain::positive);
}

std::shared_ptr<Distribution> make_uniform(const Args& a, bool validate) {
  const char* f = "Uniform";
  check_if(validate, f, "low", a[0], Domain::finite);
  check_if(validate, f, "high", a[1], Domain::finite);
  auto batch = batch_of(f, {"low", "high"}, a);
  if (checkable(validate, a[0]) && checkable(validate, a[1])) check_ordered_args(f, "low", a[0], "high", a[1]);
  return std::make_shared<Uniform>(a[0], a[1], std::move(batch));
}

std::shared_ptr<Distribution> make_fisher_snedecor(const Args& a, bool validate) {
  return make_two<FisherSnedecor>("FisherSnedecor", a, validate, "df1", Domain::positive, "df2", Domain::positive);
}

std::shared_ptr<Distribution> make_continuous_bernoulli(const Args& a, bool validate) {
  return make_one<ContinuousBernoulli>("ContinuousBernoulli", a, validate, "probs", Domain::open_unit_interval);
}

std::shared_ptr<Distribution> make_relaxed_bernoulli(const Args& a, bool validate) {
  return make_two<RelaxedBernoulli>("RelaxedBernoulli", a, validate, "temperature", Domain::positive, "probs", Domain::unit_interval);
}

}  // namespace vguide::model::detail
