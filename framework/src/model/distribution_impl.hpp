#pragma once
// Internal to the distribution library: argument checks, shape helpers, the family
// base class and the factory functions of each family. Not installed.
#include <ATen/ATen.h>

#include <memory>
#include <string>
#include <vector>

#include "vguide/model/distribution.hpp"

namespace vguide::model::detail {

using Args = std::vector<at::Tensor>;

// ---- argument checks (only on tensors that do not require grad) --------------

enum class Domain {
  finite,                   // "finite"
  positive,                 // "positive", then "finite"
  nonnegative,              // "nonnegative", then "finite"
  unit_interval,            // "in [0, 1]"
  open_unit_interval,       // "in (0, 1)"
  half_open_unit_interval,  // "in [0, 1)"
  nonnegative_integer,      // "a nonnegative integer"
};

/// @throw std::domain_error "family: name is v, but must be ...!" (name[i, j], 1-based,
///        for an element of a tensor with dims) unless every element is in `domain`.
void check_arg(const char* family, const char* name, const at::Tensor& t, Domain domain);
/// Elements nonnegative and finite, and each vector along the last dim summing to 1
/// (relative tolerance 1e-6 * K).
void check_simplex_arg(const char* family, const char* name, const at::Tensor& t);
/// Symmetric positive definite matrices in the last two dims.
void check_positive_definite_arg(const char* family, const char* name, const at::Tensor& t);
/// Every element of `hi` greater than the matching element of `lo` (broadcast).
void check_ordered_args(const char* family, const char* lo_name, const at::Tensor& lo, const char* hi_name,
                        const at::Tensor& hi);
/// True if `t` is to be checked: validation on and the tensor carries no gradient.
inline bool checkable(bool validate, const at::Tensor& t) { return validate && !t.requires_grad(); }
/// check_arg when `t` is checkable.
inline void check_if(bool validate, const char* family, const char* name, const at::Tensor& t, Domain domain) {
  if (checkable(validate, t)) check_arg(family, name, t, domain);
}

/// @throw std::invalid_argument "family: name must have at least `rank` dims, got shape [..]!".
void check_min_rank(const char* family, const char* name, const at::Tensor& t, int64_t rank);
/// The broadcast of `shapes` (parameter batch shapes) named by `names`.
/// @throw std::invalid_argument "family: shapes [2] (loc) and [3] (scale) do not broadcast!".
std::vector<int64_t> broadcast_shapes(const char* family, const std::vector<const char*>& names,
                                      const std::vector<std::vector<int64_t>>& shapes);

/// Broadcast batch shape of elementwise parameters (all of their dims are batch dims).
std::vector<int64_t> batch_of(const char* family, const std::vector<const char*>& names,
                              const std::vector<at::Tensor>& params);
/// The leading dims of `t`, without its `event_rank` trailing ones.
std::vector<int64_t> leading_shape(const at::Tensor& t, int64_t event_rank);

// ---- numerics -------------------------------------------------------------------

/// Uniform draws in the open interval (0, 1) (clamped away from both ends).
at::Tensor uniform_open(at::IntArrayRef shape, at::Generator& gen, const at::TensorOptions& opts);
/// Standard Gamma(alpha) draws of alpha's shape, differentiable in alpha, clamped
/// to the smallest positive normal number.
at::Tensor standard_gamma(const at::Tensor& alpha, at::Generator& gen);
/// where(ok, lp, -inf).
at::Tensor mask_log_prob(const at::Tensor& ok, const at::Tensor& lp);
/// log Gamma_p(a), the multivariate log-gamma, elementwise in a.
at::Tensor log_multigamma(const at::Tensor& a, int64_t p);
/// The value as a floating tensor of `opts`' dtype (integer data are common).
at::Tensor as_dtype(const at::Tensor& value, const at::TensorOptions& opts);
/// Clamp into [eps, 1 - eps] (the machine epsilon of x's dtype), like torch's clamp_probs.
at::Tensor clamp_unit(const at::Tensor& x);
/// The smallest positive normal number of the dtype of `t`.
double tiny_of(const at::Tensor& t);
/// A tensor with no gradient and one element.
inline bool constant_scalar(const at::Tensor& t) { return !t.requires_grad() && t.numel() == 1; }

// ---- family base ----------------------------------------------------------------

/// Shared state of every family: the dtype/device of its parameters.
class FamilyBase : public Distribution {
 protected:
  /// `like`: a parameter whose dtype and device the draws take.
  FamilyBase(Traits traits, const at::Tensor& like)
      : Distribution(std::move(traits)), opts_(at::TensorOptions().dtype(like.scalar_type()).device(like.device())) {}
  static Traits traits(const char* family, Constraint support, std::vector<int64_t> batch,
                       std::vector<int64_t> event = {}, bool has_rsample = true, bool discrete = false,
                       bool dependent_support = false) {
    Traits t;
    t.family = family;
    t.support = support;
    t.batch_shape = std::move(batch);
    t.event_shape = std::move(event);
    t.has_rsample = has_rsample;
    t.discrete = discrete;
    t.dependent_support = dependent_support;
    return t;
  }
  at::Tensor cast(const at::Tensor& value) const { return as_dtype(value, opts_); }
  at::Tensor expand_to_batch(const at::Tensor& per_event) const;
  at::TensorOptions opts_;
};

/// An elementwise family (event_shape {}): `in_support` comes from `support_mask`.
class ScalarFamily : public FamilyBase {
 public:
  at::Tensor in_support(const at::Tensor& value) const override {
    return expand_to_batch(support_mask(cast(value)));
  }
  at::Tensor log_prob_in_support(const at::Tensor& value) const override;

 protected:
  using FamilyBase::FamilyBase;
  /// `lp` where `x` is in the support, -inf elsewhere (mask_log_prob); within
  /// log_prob_in_support, `lp` broadcast to x's shape, without the mask.
  at::Tensor masked(const at::Tensor& x, const at::Tensor& lp) const;
  /// Elementwise support membership of `x` (already cast), broadcastable to the
  /// batch shape.
  virtual at::Tensor support_mask(const at::Tensor& x) const = 0;
};

// ---- factories, one per family (args: count checked and promoted) ---------------

using Maker = std::shared_ptr<Distribution> (*)(const Args& args, bool validate);

// continuous_families.cpp
// Factories of families whose parameters are each checked against one domain: one
// parameter (batch shape its own) or two (batch shape broadcast).
template <typename Family>
std::shared_ptr<Distribution> make_one(const char* family, const Args& a, bool validate, const char* name,
                                       Domain domain) {
  check_if(validate, family, name, a[0], domain);
  return std::make_shared<Family>(a[0], a[0].sizes().vec());
}

template <typename Family>
std::shared_ptr<Distribution> make_two(const char* family, const Args& a, bool validate, const char* name0,
                                       Domain domain0, const char* name1, Domain domain1) {
  check_if(validate, family, name0, a[0], domain0);
  check_if(validate, family, name1, a[1], domain1);
  return std::make_shared<Family>(a[0], a[1], batch_of(family, {name0, name1}, a));
}

std::shared_ptr<Distribution> make_normal(const Args& a, bool validate);
std::shared_ptr<Distribution> make_half_normal(const Args& a, bool validate);
std::shared_ptr<Distribution> make_log_normal(const Args& a, bool validate);
std::shared_ptr<Distribution> make_logit_normal(const Args& a, bool validate);
std::shared_ptr<Distribution> make_truncated_normal(const Args& a, bool validate);
std::shared_ptr<Distribution> make_cauchy(const Args& a, bool validate);
std::shared_ptr<Distribution> make_half_cauchy(const Args& a, bool validate);
std::shared_ptr<Distribution> make_student_t(const Args& a, bool validate);
std::shared_ptr<Distribution> make_laplace(const Args& a, bool validate);
std::shared_ptr<Distribution> make_gumbel(const Args& a, bool validate);
std::shared_ptr<Distribution> make_exponential(const Args& a, bool validate);
std::shared_ptr<Distribution> make_gamma(const Args& a, bool validate);
std::shared_ptr<Distribution> make_inverse_gamma(const Args& a, bool validate);
std::shared_ptr<Distribution> make_chi2(const Args& a, bool validate);
std::shared_ptr<Distribution> make_weibull(const Args& a, bool validate);
std::shared_ptr<Distribution> make_pareto(const Args& a, bool validate);
std::shared_ptr<Distribution> make_generalized_pareto(const Args& a, bool validate);
std::shared_ptr<Distribution> make_beta(const Args& a, bool validate);
std::shared_ptr<Distribution> make_kumaraswamy(const Args& a, bool validate);
std::shared_ptr<Distribution> make_uniform(const Args& a, bool validate);
std::shared_ptr<Distribution> make_fisher_snedecor(const Args& a, bool validate);
std::shared_ptr<Distribution> make_continuous_bernoulli(const Args& a, bool validate);
std::shared_ptr<Distribution> make_relaxed_bernoulli(const Args& a, bool validate);

// discrete_families.cpp
std::shared_ptr<Distribution> make_bernoulli(const Args& a, bool validate);
std::shared_ptr<Distribution> make_bernoulli_logit(const Args& a, bool validate);
std::shared_ptr<Distribution> make_categorical(const Args& a, bool validate);
std::shared_ptr<Distribution> make_poisson(const Args& a, bool validate);
std::shared_ptr<Distribution> make_poisson_log(const Args& a, bool validate);
std::shared_ptr<Distribution> make_binomial(const Args& a, bool validate);
std::shared_ptr<Distribution> make_negative_binomial(const Args& a, bool validate);

// multivariate_families.cpp
std::shared_ptr<Distribution> make_dirichlet(const Args& a, bool validate);
std::shared_ptr<Distribution> make_multivariate_normal(const Args& a, bool validate);
std::shared_ptr<Distribution> make_lowrank_mvn(const Args& a, bool validate);
std::shared_ptr<Distribution> make_wishart(const Args& a, bool validate);
std::shared_ptr<Distribution> make_relaxed_one_hot_categorical(const Args& a, bool validate);
std::shared_ptr<Distribution> make_lkj_cholesky(const Args& a, bool validate);

}  // namespace vguide::model::detail
