#pragma once
/// The distribution library behind the `.qvr` model language: the families of
/// quivers' program registry (torch.distributions' names, argument order and
/// parameterisation) plus Poisson, Binomial, NegativeBinomial, BernoulliLogit,
/// PoissonLog and LKJCholesky. See docs/distributions.md for the list.
///
/// Shapes follow torch.distributions: the parameters broadcast to `batch_shape()`;
/// one draw has `event_shape()` ({} for scalar families, {K} for Dirichlet and the
/// multivariate Normals, {K, K} for Wishart and LKJCholesky); `rsample(sample_shape)`
/// returns sample_shape + batch_shape + event_shape; `log_prob(value)` broadcasts the
/// value's leading dims against batch_shape and reduces the event dims.
///
/// Example: auto d = vguide::model::make_distribution("Normal", {at::scalar_tensor(0.0), at::scalar_tensor(2.0)});
///          at::Tensor lp = d->log_prob(at::scalar_tensor(1.0));  // log N(1; 0, 2)
#include <ATen/core/Generator.h>
#include <ATen/core/Tensor.h>

#include <memory>
#include <string>
#include <vector>

#include "vguide/constraint.hpp"
#include "vguide/export.hpp"

namespace vguide::model {

/// A distribution with its parameters bound. Built by `make_distribution`; immutable.
///
/// Values out of the support: scalar families return -inf from `log_prob` wherever
/// `in_support(value)` is false; the multivariate families (Dirichlet,
/// MultivariateNormal, LowRankMVN, Wishart, RelaxedOneHotCategorical, LKJCholesky)
/// assume the value is in the support (check it with `in_support` once, e.g. when
/// data are loaded).
class VGUIDE_API Distribution {
 public:
  virtual ~Distribution();
  Distribution(const Distribution&) = delete;
  Distribution& operator=(const Distribution&) = delete;

  /// The family name, e.g. "Normal".
  const std::string& family() const noexcept { return family_; }
  /// The support as a constraint that `biject_to` understands. Where the support
  /// depends on parameters (Uniform, TruncatedNormal, Pareto, GeneralizedPareto,
  /// Binomial) it is exact when those parameters are constant scalars; otherwise it
  /// is the widest constraint that holds and `dependent_support()` is true. For
  /// discrete families it is the real hull of the integer support (e.g.
  /// interval(0, K-1) for Categorical, interval(0, inf) for counts).
  const Constraint& support() const noexcept { return support_; }
  /// True if the support depends on a parameter that is not a constant scalar: such a
  /// site cannot be a latent (no single bijector maps onto its support).
  bool dependent_support() const noexcept { return dependent_support_; }
  /// Integer-valued family (Bernoulli, Categorical, Poisson, ...).
  bool discrete() const noexcept { return discrete_; }
  /// Broadcast shape of the parameters without the event dims.
  std::vector<int64_t> batch_shape() const { return batch_shape_; }
  /// Shape of one draw: {} for scalar families, {K} or {K, K} otherwise.
  std::vector<int64_t> event_shape() const { return event_shape_; }
  /// sample_shape + batch_shape + event_shape.
  std::vector<int64_t> extended_shape(at::IntArrayRef sample_shape) const;

  /// log density (or mass) of `value`, event dims reduced: shape
  /// broadcast(value.shape[:-event_rank], batch_shape). Differentiable in the value
  /// and in the parameters.
  virtual at::Tensor log_prob(const at::Tensor& value) const = 0;
  /// Exact support membership of each event of `value` (integrality and parameter
  /// dependent bounds included), same shape as `log_prob(value)`.
  virtual at::Tensor in_support(const at::Tensor& value) const = 0;
  /// log_prob of a value whose every event is in the support (in_support holds):
  /// the same result without the ops of the support mask. ProgramModel uses it for
  /// data it checked when the model was built.
  virtual at::Tensor log_prob_in_support(const at::Tensor& value) const { return log_prob(value); }

  /// True if `rsample` exists (a reparameterised, differentiable sampler).
  bool has_rsample() const noexcept { return has_rsample_; }
  /// Draws of shape `extended_shape(sample_shape)` that carry gradients to the
  /// parameters.
  /// @throw std::logic_error naming the family if it has no reparameterised sampler.
  virtual at::Tensor rsample(at::IntArrayRef sample_shape, at::Generator& gen) const;
  /// Draws without gradients; every family has one. Discrete families return
  /// floating values, except Categorical, which returns int64 indices like torch.
  virtual at::Tensor sample(at::IntArrayRef sample_shape, at::Generator& gen) const;

  /// True if `mean()` exists in closed form.
  virtual bool has_mean() const { return false; }
  /// The mean, shape batch_shape + event_shape (inf or NaN where the moment does not
  /// exist for some parameter values, e.g. StudentT with df <= 1).
  /// @throw std::logic_error naming the family if it has no closed-form mean.
  virtual at::Tensor mean() const;

 protected:
  struct Traits {
    std::string family;
    Constraint support;
    bool dependent_support = false;
    bool discrete = false;
    bool has_rsample = false;
    std::vector<int64_t> batch_shape;
    std::vector<int64_t> event_shape;
  };
  explicit Distribution(Traits traits);

 private:
  std::string family_;
  Constraint support_;
  bool dependent_support_;
  bool discrete_;
  bool has_rsample_;
  std::vector<int64_t> batch_shape_;
  std::vector<int64_t> event_shape_;
};

/// One family, as listed by `distribution_families()` and docs/distributions.md.
struct FamilyDoc {
  std::string name;
  /// Parameter names in argument order, e.g. {"loc", "scale"}.
  std::vector<std::string> params;
  /// The support in words, e.g. "x > 0" or "integers 0, 1, ..., total_count".
  std::string support;
  /// "scalar", "vector (K)" or "matrix (K, K)".
  std::string event;
  bool discrete = false;
  bool reparameterized = false;
};

/// Builds family `family` with its arguments in order. Integer arguments are
/// promoted to the default floating dtype; floating arguments keep their dtype
/// (promoted to a common one).
///
/// Every argument that does not require grad is checked against its domain, all of
/// its elements (e.g. "Normal: scale is -1, but must be positive!", with a 1-based
/// index for a tensor: "Normal: scale[2] is -1, but must be positive!"); arguments
/// that require grad are not checked, so the hot path stays cheap. Pass
/// `validate_args = false` to skip the domain checks altogether (shapes and the
/// argument count are always checked).
/// @throw std::invalid_argument for an unknown family ("unknown family 'Normla'; did
///        you mean 'Normal'?"), a wrong argument count ("Normal: expected 2 arguments
///        (loc, scale), got 3") or shapes that do not fit together.
/// @throw std::domain_error for an argument out of its domain.
VGUIDE_API std::shared_ptr<Distribution> make_distribution(const std::string& family,
                                                           const std::vector<at::Tensor>& args,
                                                           bool validate_args = true);

/// Every family, in the order of docs/distributions.md.
VGUIDE_API std::vector<FamilyDoc> distribution_families();

/// The documentation of family `name`, or nullptr if there is none.
VGUIDE_API const FamilyDoc* find_family(const std::string& name);

/// The known family closest to `name` (case-insensitive edit distance, a
/// transposition counting as one edit), or "" if none is close enough to suggest.
/// Example: closest_family("Normla") == "Normal"
VGUIDE_API std::string closest_family(const std::string& name);

}  // namespace vguide::model
