// The integer-valued families. Their support constraint is the real hull of the
// integer support (unit_interval for {0, 1}, interval(0, n), interval(0, inf) for
// counts); in_support and log_prob also require integer values.
#include <ATen/ATen.h>

#include <limits>

#include "distribution_impl.hpp"

namespace vguide::model::detail {
namespace {

const double kInf = std::numeric_limits<double>::infinity();

// [lower, upper] without the finiteness rule of constraints::interval: the hull of a
// set of integers may be a single point or unbounded above.
Constraint integer_hull(double lower, double upper) { return Constraint(ConstraintKind::interval, lower, upper); }

at::Tensor is_integer(const at::Tensor& x) { return at::floor(x) == x; }
at::Tensor is_count(const at::Tensor& x) { return (x >= 0).logical_and(x < kInf).logical_and(is_integer(x)); }
at::Tensor is_binary(const at::Tensor& x) { return (x == 0).logical_or(x == 1); }

// A discrete family: no rsample; sample() draws without gradients.
class DiscreteFamily : public ScalarFamily {
 public:
  at::Tensor sample(at::IntArrayRef s, at::Generator& gen) const override {
    at::NoGradGuard no_grad;
    return draw(extended_shape(s), gen);
  }

 protected:
  using ScalarFamily::ScalarFamily;
  virtual at::Tensor draw(const std::vector<int64_t>& shape, at::Generator& gen) const = 0;
};

class Bernoulli final : public DiscreteFamily {
 public:
  Bernoulli(const at::Tensor& probs, std::vector<int64_t> batch)
      : DiscreteFamily(traits("Bernoulli", constraints::unit_interval(), std::move(batch), {}, false, true), probs),
        probs_(probs) {}
  at::Tensor log_prob(const at::Tensor& value) const override {
    const at::Tensor x = cast(value);
    return masked(x, at::xlogy(x, probs_) + at::special_xlog1py(1 - x, -probs_));
  }
  bool has_mean() const override { return true; }
  at::Tensor mean() const override { return probs_.expand(batch_shape()); }

 protected:
  at::Tensor support_mask(const at::Tensor& x) const override { return is_binary(x); }
  at::Tensor draw(const std::vector<int64_t>& shape, at::Generator& gen) const override {
    return at::bernoulli(probs_.expand(shape).contiguous(), gen);
  }

 private:
  at::Tensor probs_;
};

class BernoulliLogit final : public DiscreteFamily {
 public:
  BernoulliLogit(const at::Tensor& logits, std::vector<int64_t> batch)
      : DiscreteFamily(traits("BernoulliLogit", constraints::unit_interval(), std::move(batch), {}, false, true),
                       logits),
        logits_(logits) {}
  at::Tensor log_prob(const at::Tensor& value) const override {
    const at::Tensor x = cast(value);
    return masked(x, x * logits_ - at::softplus(logits_));
  }
  bool has_mean() const override { return true; }
  at::Tensor mean() const override { return at::sigmoid(logits_).expand(batch_shape()); }

 protected:
  at::Tensor support_mask(const at::Tensor& x) const override { return is_binary(x); }
  at::Tensor draw(const std::vector<int64_t>& shape, at::Generator& gen) const override {
    return at::bernoulli(at::sigmoid(logits_).expand(shape).contiguous(), gen);
  }

 private:
  at::Tensor logits_;
};

// Values 0, ..., K-1 (0-based like torch); probs (..., K) are normalised to sum 1.
class Categorical final : public DiscreteFamily {
 public:
  Categorical(const at::Tensor& probs, std::vector<int64_t> batch)
      : DiscreteFamily(make_traits(probs.size(-1), std::move(batch)), probs),
        k_(probs.size(-1)),
        probs_(probs / probs.sum(-1, true)) {
    log_probs_ = at::log(probs_);
  }
  at::Tensor log_prob(const at::Tensor& value) const override {
    const at::Tensor x = cast(value);
    const at::Tensor ok = support_mask(x);
    const std::vector<int64_t> shape = at::infer_size(x.sizes(), batch_shape());
    std::vector<int64_t> full = shape;
    full.push_back(k_);
    const at::Tensor index = at::where(ok, x, at::zeros_like(x)).to(at::kLong).expand(shape).unsqueeze(-1);
    return mask_log_prob(ok, log_probs_.expand(full).gather(-1, index).squeeze(-1));
  }

 protected:
  at::Tensor support_mask(const at::Tensor& x) const override {
    return (x >= 0).logical_and(x <= static_cast<double>(k_ - 1)).logical_and(is_integer(x));
  }
  // int64 indices, like torch.
  at::Tensor draw(const std::vector<int64_t>& shape, at::Generator& gen) const override {
    const at::Tensor flat = probs_.detach().reshape({-1, k_});
    int64_t n = 1;
    for (size_t i = 0; i + batch_shape().size() < shape.size(); ++i) n *= shape[i];
    if (n == 0 || flat.size(0) == 0) return at::empty(shape, opts_.dtype(at::kLong));
    return at::multinomial(flat, n, true, gen).t().reshape(shape);
  }

 private:
  static Traits make_traits(int64_t k, std::vector<int64_t> batch) {
    return traits("Categorical", integer_hull(0.0, static_cast<double>(k - 1)), std::move(batch), {}, false, true);
  }
  int64_t k_;
  at::Tensor probs_, log_probs_;
};

class Poisson final : public DiscreteFamily {
 public:
  Poisson(const at::Tensor& rate, std::vector<int64_t> batch)
      : DiscreteFamily(traits("Poisson", integer_hull(0.0, kInf), std::move(batch), {}, false, true), rate),
        rate_(rate) {}
  at::Tensor log_prob(const at::Tensor& value) const override {
    const at::Tensor x = cast(value);
    return masked(x, at::xlogy(x, rate_) - rate_ - at::lgamma(x + 1));
  }
  bool has_mean() const override { return true; }
  at::Tensor mean() const override { return rate_.expand(batch_shape()); }

 protected:
  at::Tensor support_mask(const at::Tensor& x) const override { return is_count(x); }
  at::Tensor draw(const std::vector<int64_t>& shape, at::Generator& gen) const override {
    return at::poisson(rate_.expand(shape).contiguous(), gen);
  }

 private:
  at::Tensor rate_;
};

class PoissonLog final : public DiscreteFamily {
 public:
  PoissonLog(const at::Tensor& log_rate, std::vector<int64_t> batch)
      : DiscreteFamily(traits("PoissonLog", integer_hull(0.0, kInf), std::move(batch), {}, false, true), log_rate),
        log_rate_(log_rate) {}
  at::Tensor log_prob(const at::Tensor& value) const override {
    const at::Tensor x = cast(value);
    return masked(x, x * log_rate_ - at::exp(log_rate_) - at::lgamma(x + 1));
  }
  bool has_mean() const override { return true; }
  at::Tensor mean() const override { return at::exp(log_rate_).expand(batch_shape()); }

 protected:
  at::Tensor support_mask(const at::Tensor& x) const override { return is_count(x); }
  at::Tensor draw(const std::vector<int64_t>& shape, at::Generator& gen) const override {
    return at::poisson(at::exp(log_rate_).expand(shape).contiguous(), gen);
  }

 private:
  at::Tensor log_rate_;
};

class Binomial final : public DiscreteFamily {
 public:
  Binomial(const at::Tensor& total_count, const at::Tensor& probs, std::vector<int64_t> batch)
      : DiscreteFamily(make_traits(total_count, std::move(batch)), probs), n_(total_count), probs_(probs) {}
  at::Tensor log_prob(const at::Tensor& value) const override {
    const at::Tensor x = cast(value);
    const at::Tensor log_choose = at::lgamma(n_ + 1) - at::lgamma(x + 1) - at::lgamma(n_ - x + 1);
    return masked(x,
                         log_choose + at::xlogy(x, probs_) + at::special_xlog1py(n_ - x, -probs_));
  }
  bool has_mean() const override { return true; }
  at::Tensor mean() const override { return (n_ * probs_).expand(batch_shape()); }

 protected:
  at::Tensor support_mask(const at::Tensor& x) const override { return is_count(x).logical_and(x <= n_); }
  at::Tensor draw(const std::vector<int64_t>& shape, at::Generator& gen) const override {
    return at::binomial(n_.expand(shape).contiguous(), probs_.expand(shape).contiguous(), gen);
  }

 private:
  static Traits make_traits(const at::Tensor& n, std::vector<int64_t> batch) {
    const bool constant = constant_scalar(n);
    const double upper = constant ? n.item<double>() : kInf;
    return traits("Binomial", integer_hull(0.0, upper), std::move(batch), {}, false, true, !constant);
  }
  at::Tensor n_, probs_;
};

// torch's parameterisation: the number of successes (probability `probs` each)
// before `total_count` failures; a Gamma-Poisson mixture.
class NegativeBinomial final : public DiscreteFamily {
 public:
  NegativeBinomial(const at::Tensor& total_count, const at::Tensor& probs, std::vector<int64_t> batch)
      : DiscreteFamily(traits("NegativeBinomial", integer_hull(0.0, kInf), std::move(batch), {}, false, true), probs),
        r_(total_count),
        probs_(probs) {}
  at::Tensor log_prob(const at::Tensor& value) const override {
    const at::Tensor x = cast(value);
    const at::Tensor log_choose = at::lgamma(x + r_) - at::lgamma(x + 1) - at::lgamma(r_);
    return masked(x, log_choose + r_ * at::log1p(-probs_) + at::xlogy(x, probs_));
  }
  bool has_mean() const override { return true; }
  at::Tensor mean() const override { return (r_ * probs_ / (1 - probs_)).expand(batch_shape()); }

 protected:
  at::Tensor support_mask(const at::Tensor& x) const override { return is_count(x); }
  at::Tensor draw(const std::vector<int64_t>& shape, at::Generator& gen) const override {
    const at::Tensor rate = standard_gamma(r_.expand(shape), gen) * (probs_ / (1 - probs_));
    return at::poisson(rate.contiguous(), gen);
  }

 private:
  at::Tensor r_, probs_;
};

}  // namespace

// ---- factories ------------------------------------------------------------------------

std::shared_ptr<Distribution> make_bernoulli(const Args& a, bool validate) {
  return make_one<Bernoulli>("Bernoulli", a, validate, "probs", Domain::unit_interval);
}

std::shared_ptr<Distribution> make_bernoulli_logit(const Args& a, bool validate) {
  return make_one<BernoulliLogit>("BernoulliLogit", a, validate, "logits", Domain::finite);
}

std::shared_ptr<Distribution> make_categorical(const Args& a, bool validate) {
  const char* f = "Categorical";
  check_min_rank(f, "probs", a[0], 1);
  if (a[0].size(-1) < 1) throw std::invalid_argument("Categorical: probs must have at least one category!");
  if (checkable(validate, a[0])) check_simplex_arg(f, "probs", a[0]);
  return std::make_shared<Categorical>(a[0], leading_shape(a[0], 1));
}

std::shared_ptr<Distribution> make_poisson(const Args& a, bool validate) {
  return make_one<Poisson>("Poisson", a, validate, "rate", Domain::nonnegative);
}

std::shared_ptr<Distribution> make_poisson_log(const Args& a, bool validate) {
  return make_one<PoissonLog>("PoissonLog", a, validate, "log_rate", Domain::finite);
}

std::shared_ptr<Distribution> make_binomial(const Args& a, bool validate) {
  return make_two<Binomial>("Binomial", a, validate, "total_count", Domain::nonnegative_integer, "probs", Domain::unit_interval);
}

std::shared_ptr<Distribution> make_negative_binomial(const Args& a, bool validate) {
  return make_two<NegativeBinomial>("NegativeBinomial", a, validate, "total_count", Domain::positive, "probs", Domain::half_open_unit_interval);
}

}  // namespace vguide::model::detail
