// The Distribution base class, the argument checks shared by the families, and the
// family registry behind make_distribution.
#include "vguide/model/distribution.hpp"

#include <ATen/ATen.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <limits>
#include <sstream>
#include <stdexcept>

#include "distribution_impl.hpp"
#include "vguide/model.hpp"

namespace vguide::model {

// ---- Distribution -----------------------------------------------------------------

Distribution::Distribution(Traits traits)
    : family_(std::move(traits.family)),
      support_(traits.support),
      dependent_support_(traits.dependent_support),
      discrete_(traits.discrete),
      has_rsample_(traits.has_rsample),
      batch_shape_(std::move(traits.batch_shape)),
      event_shape_(std::move(traits.event_shape)) {}

Distribution::~Distribution() = default;

std::vector<int64_t> Distribution::extended_shape(at::IntArrayRef sample_shape) const {
  std::vector<int64_t> shape(sample_shape.begin(), sample_shape.end());
  shape.insert(shape.end(), batch_shape_.begin(), batch_shape_.end());
  shape.insert(shape.end(), event_shape_.begin(), event_shape_.end());
  return shape;
}

at::Tensor Distribution::rsample(at::IntArrayRef, at::Generator&) const {
  throw std::logic_error(family_ + ": rsample is not available (no reparameterised sampler); use sample()");
}

at::Tensor Distribution::sample(at::IntArrayRef sample_shape, at::Generator& gen) const {
  if (!has_rsample_) throw std::logic_error(family_ + ": sample is not available");
  at::NoGradGuard no_grad;
  return rsample(sample_shape, gen);
}

at::Tensor Distribution::mean() const { throw std::logic_error(family_ + ": has no closed-form mean"); }

namespace detail {

// ---- argument checks ---------------------------------------------------------------

namespace {

std::string format_value(double v) {
  std::ostringstream s;
  s << v;
  return s.str();
}

// "name" for a tensor without dims, "name[i, j]" (1-based) for element `flat` of t.
std::string element_name(const char* name, at::IntArrayRef sizes, int64_t flat, int64_t trailing_colons = 0) {
  if (sizes.empty()) return name;
  std::vector<int64_t> index(sizes.size());
  for (int64_t d = static_cast<int64_t>(sizes.size()) - 1; d >= 0; --d) {
    index[d] = flat % sizes[d];
    flat /= sizes[d];
  }
  std::ostringstream s;
  s << name << "[";
  for (size_t d = 0; d < index.size(); ++d) s << (d ? ", " : "") << index[d] + 1;
  for (int64_t c = 0; c < trailing_colons; ++c) s << ", :";
  s << "]";
  return s.str();
}

// Index (row-major) of the first false element of a bool tensor, or -1.
int64_t first_false(const at::Tensor& ok) {
  if (ok.numel() == 0 || ok.all().item<bool>()) return -1;
  return ok.logical_not().reshape({-1}).nonzero()[0][0].item<int64_t>();
}

[[noreturn]] __attribute__((cold, noinline)) void throw_domain(const char* family, const std::string& what,
                                                               double value, const std::string& must) {
  std::ostringstream msg;
  msg << family << ": " << what << " is " << format_value(value) << ", but must be " << must << "!";
  throw std::domain_error(msg.str());
}

struct Stage {
  const char* must;
  bool (*scalar_ok)(double);
  at::Tensor (*tensor_ok)(const at::Tensor&);
};

const Stage kFinite{"finite", [](double v) { return std::isfinite(v); },
                    [](const at::Tensor& t) { return at::isfinite(t); }};
const Stage kPositive{"positive", [](double v) { return v > 0; }, [](const at::Tensor& t) { return t > 0; }};
const Stage kNonnegative{"nonnegative", [](double v) { return v >= 0; },
                         [](const at::Tensor& t) { return t >= 0; }};
const Stage kUnit{"in [0, 1]", [](double v) { return v >= 0 && v <= 1; },
                  [](const at::Tensor& t) { return (t >= 0).logical_and(t <= 1); }};
const Stage kOpenUnit{"in (0, 1)", [](double v) { return v > 0 && v < 1; },
                      [](const at::Tensor& t) { return (t > 0).logical_and(t < 1); }};
const Stage kHalfOpenUnit{"in [0, 1)", [](double v) { return v >= 0 && v < 1; },
                          [](const at::Tensor& t) { return (t >= 0).logical_and(t < 1); }};
const Stage kNonnegativeInteger{
    "a nonnegative integer", [](double v) { return v >= 0 && std::isfinite(v) && std::floor(v) == v; },
    [](const at::Tensor& t) { return (t >= 0).logical_and(at::isfinite(t)).logical_and(at::floor(t) == t); }};

std::vector<const Stage*> stages_of(Domain domain) {
  switch (domain) {
    case Domain::finite: return {&kFinite};
    case Domain::positive: return {&kPositive, &kFinite};
    case Domain::nonnegative: return {&kNonnegative, &kFinite};
    case Domain::unit_interval: return {&kUnit};
    case Domain::open_unit_interval: return {&kOpenUnit};
    case Domain::half_open_unit_interval: return {&kHalfOpenUnit};
    case Domain::nonnegative_integer: return {&kNonnegativeInteger};
  }
  return {};
}

}  // namespace

void check_arg(const char* family, const char* name, const at::Tensor& t, Domain domain) {
  if (t.numel() == 1) {
    const double v = t.item<double>();
    for (const Stage* stage : stages_of(domain)) {
      if (!stage->scalar_ok(v)) throw_domain(family, element_name(name, t.sizes(), 0), v, stage->must);
    }
    return;
  }
  for (const Stage* stage : stages_of(domain)) {
    const int64_t bad = first_false(stage->tensor_ok(t));
    if (bad >= 0) {
      throw_domain(family, element_name(name, t.sizes(), bad), t.reshape({-1})[bad].item<double>(), stage->must);
    }
  }
}

void check_simplex_arg(const char* family, const char* name, const at::Tensor& t) {
  check_arg(family, name, t, Domain::nonnegative);
  const double tol = t.scalar_type() == at::kDouble ? 1e-6 : 1e-5;
  const at::Tensor sums = t.sum(-1);
  const int64_t bad = first_false((sums - 1).abs() <= tol);
  if (bad >= 0) {
    std::ostringstream msg;
    msg << family << ": " << element_name(name, sums.sizes(), bad, sums.dim() > 0 ? 1 : 0) << " sums to "
        << format_value(sums.reshape({-1})[bad].item<double>()) << ", but must sum to 1!";
    throw std::domain_error(msg.str());
  }
}

void check_positive_definite_arg(const char* family, const char* name, const at::Tensor& t) {
  const at::Tensor batch_shape_probe = t.select(-1, 0).select(-1, 0);
  const at::Tensor symmetric =
      ((t - t.transpose(-1, -2)).abs() <= 1e-6 * (1 + t.abs())).all(-1).all(-1).logical_and(
          at::isfinite(t).all(-1).all(-1));
  int64_t bad = first_false(symmetric);
  const char* what = "symmetric";
  if (bad < 0) {
    bad = first_false(std::get<1>(at::linalg_cholesky_ex(t)) == 0);
    what = "positive definite";
  }
  if (bad >= 0) {
    std::ostringstream msg;
    msg << family << ": " << element_name(name, batch_shape_probe.sizes(), bad, batch_shape_probe.dim() > 0 ? 2 : 0)
        << " is not " << what << "!";
    throw std::domain_error(msg.str());
  }
}

void check_ordered_args(const char* family, const char* lo_name, const at::Tensor& lo, const char* hi_name,
                        const at::Tensor& hi) {
  const at::Tensor ok = hi > lo;
  const int64_t bad = first_false(ok);
  if (bad < 0) return;
  const std::vector<int64_t> shape = ok.sizes().vec();
  const double lo_v = lo.expand(shape).reshape({-1})[bad].item<double>();
  const double hi_v = hi.expand(shape).reshape({-1})[bad].item<double>();
  const std::string hi_what = hi.numel() == 1 ? std::string(hi_name) : element_name(hi_name, shape, bad);
  throw_domain(family, hi_what, hi_v, std::string("greater than ") + lo_name + " (" + format_value(lo_v) + ")");
}

void check_min_rank(const char* family, const char* name, const at::Tensor& t, int64_t rank) {
  if (t.dim() < rank) {
    std::ostringstream msg;
    msg << family << ": " << name << " must have at least " << rank << (rank == 1 ? " dim" : " dims")
        << ", got shape " << shape_to_string(t.sizes().vec()) << "!";
    throw std::invalid_argument(msg.str());
  }
}

std::vector<int64_t> broadcast_shapes(const char* family, const std::vector<const char*>& names,
                                      const std::vector<std::vector<int64_t>>& shapes) {
  std::vector<int64_t> out;
  try {
    for (const auto& s : shapes) out = at::infer_size(out, s);
  } catch (const c10::Error&) {
    std::ostringstream msg;
    msg << family << ": shapes ";
    for (size_t i = 0; i < shapes.size(); ++i) {
      msg << (i ? (i + 1 == shapes.size() ? " and " : ", ") : "") << shape_to_string(shapes[i]) << " (" << names[i]
          << ")";
    }
    msg << " do not broadcast!";
    throw std::invalid_argument(msg.str());
  }
  return out;
}

std::vector<int64_t> batch_of(const char* family, const std::vector<const char*>& names,
                              const std::vector<at::Tensor>& params) {
  std::vector<std::vector<int64_t>> shapes;
  shapes.reserve(params.size());
  for (const auto& p : params) shapes.push_back(p.sizes().vec());
  return broadcast_shapes(family, names, shapes);
}

std::vector<int64_t> leading_shape(const at::Tensor& t, int64_t event_rank) {
  const auto sizes = t.sizes();
  return std::vector<int64_t>(sizes.begin(), sizes.end() - event_rank);
}

// ---- numerics ------------------------------------------------------------------------

double tiny_of(const at::Tensor& t) {
  return t.scalar_type() == at::kDouble ? std::numeric_limits<double>::min() : std::numeric_limits<float>::min();
}

at::Tensor clamp_unit(const at::Tensor& x) {
  const double eps =
      x.scalar_type() == at::kDouble ? std::numeric_limits<double>::epsilon() : std::numeric_limits<float>::epsilon();
  return x.clamp(eps, 1.0 - eps);
}

at::Tensor uniform_open(at::IntArrayRef shape, at::Generator& gen, const at::TensorOptions& opts) {
  const bool is_double = opts.dtype() == at::kDouble;
  const double tiny = is_double ? std::numeric_limits<double>::min() : std::numeric_limits<float>::min();
  const double eps = is_double ? std::numeric_limits<double>::epsilon() : std::numeric_limits<float>::epsilon();
  return at::rand(shape, gen, opts).clamp(tiny, 1.0 - eps);
}

at::Tensor standard_gamma(const at::Tensor& alpha, at::Generator& gen) {
  return at::_standard_gamma(alpha.contiguous(), gen).clamp_min(tiny_of(alpha));
}

at::Tensor mask_log_prob(const at::Tensor& ok, const at::Tensor& lp) {
  return at::where(ok, lp, at::scalar_tensor(-std::numeric_limits<double>::infinity(), lp.options()));
}

at::Tensor log_multigamma(const at::Tensor& a, int64_t p) {
  const at::Tensor half_j = at::arange(p, a.options()) * 0.5;
  return at::lgamma(a.unsqueeze(-1) - half_j).sum(-1) + 0.25 * static_cast<double>(p * (p - 1)) * std::log(M_PI);
}

at::Tensor as_dtype(const at::Tensor& value, const at::TensorOptions& opts) {
  return value.dtype() == opts.dtype() ? value : value.to(opts.dtype());
}

namespace {
// Set while ScalarFamily::log_prob_in_support runs on this thread: the families'
// log_prob code is shared by both entry points, and `masked` asks this flag.
thread_local bool support_known = false;
}  // namespace

at::Tensor ScalarFamily::log_prob_in_support(const at::Tensor& value) const {
  const bool previous = support_known;
  support_known = true;
  try {
    at::Tensor lp = log_prob(value);
    support_known = previous;
    return lp;
  } catch (...) {
    support_known = previous;
    throw;
  }
}

at::Tensor ScalarFamily::masked(const at::Tensor& x, const at::Tensor& lp) const {
  if (!support_known) return mask_log_prob(support_mask(x), lp);
  // The mask also broadcast lp (which may not depend on x) to x's shape.
  return x.sizes() == lp.sizes() ? lp : lp.expand(at::infer_size(x.sizes(), lp.sizes()));
}

at::Tensor FamilyBase::expand_to_batch(const at::Tensor& per_event) const {
  const std::vector<int64_t> batch = batch_shape();
  return per_event.expand(at::infer_size(per_event.sizes(), batch));
}

// ---- registry ------------------------------------------------------------------------

namespace {

struct FamilyEntry {
  FamilyDoc doc;
  Maker make;
};

FamilyEntry entry(const char* name, std::vector<std::string> params, const char* support, const char* event,
                  bool discrete, bool reparameterized, Maker make) {
  return FamilyEntry{FamilyDoc{name, std::move(params), support, event, discrete, reparameterized}, make};
}

const std::vector<FamilyEntry>& registry() {
  static const std::vector<FamilyEntry> families = {
      entry("Normal", {"loc", "scale"}, "real", "scalar", false, true, make_normal),
      entry("HalfNormal", {"scale"}, "x >= 0", "scalar", false, true, make_half_normal),
      entry("LogNormal", {"loc", "scale"}, "x > 0", "scalar", false, true, make_log_normal),
      entry("LogitNormal", {"loc", "scale"}, "0 < x < 1", "scalar", false, true, make_logit_normal),
      entry("TruncatedNormal", {"loc", "scale", "low", "high"}, "low <= x <= high", "scalar", false, true,
            make_truncated_normal),
      entry("Cauchy", {"loc", "scale"}, "real", "scalar", false, true, make_cauchy),
      entry("HalfCauchy", {"scale"}, "x >= 0", "scalar", false, true, make_half_cauchy),
      entry("StudentT", {"df", "loc", "scale"}, "real", "scalar", false, true, make_student_t),
      entry("Laplace", {"loc", "scale"}, "real", "scalar", false, true, make_laplace),
      entry("Gumbel", {"loc", "scale"}, "real", "scalar", false, true, make_gumbel),
      entry("Exponential", {"rate"}, "x >= 0", "scalar", false, true, make_exponential),
      entry("Gamma", {"concentration", "rate"}, "x >= 0", "scalar", false, true, make_gamma),
      entry("InverseGamma", {"concentration", "rate"}, "x > 0", "scalar", false, true, make_inverse_gamma),
      entry("Chi2", {"df"}, "x >= 0", "scalar", false, true, make_chi2),
      entry("Weibull", {"scale", "concentration"}, "x >= 0", "scalar", false, true, make_weibull),
      entry("Pareto", {"scale", "alpha"}, "x >= scale", "scalar", false, true, make_pareto),
      entry("GeneralizedPareto", {"loc", "scale", "concentration"},
            "x >= loc; also x <= loc - scale / concentration when concentration < 0", "scalar", false, true,
            make_generalized_pareto),
      entry("Beta", {"concentration1", "concentration0"}, "0 <= x <= 1", "scalar", false, true, make_beta),
      entry("Kumaraswamy", {"concentration1", "concentration0"}, "0 <= x <= 1", "scalar", false, true,
            make_kumaraswamy),
      entry("Uniform", {"low", "high"}, "low <= x <= high", "scalar", false, true, make_uniform),
      entry("FisherSnedecor", {"df1", "df2"}, "x >= 0", "scalar", false, true, make_fisher_snedecor),
      entry("ContinuousBernoulli", {"probs"}, "0 <= x <= 1", "scalar", false, true, make_continuous_bernoulli),
      entry("Dirichlet", {"concentration"}, "simplex", "vector (K)", false, true, make_dirichlet),
      entry("MultivariateNormal", {"loc", "covariance_matrix"}, "real vector", "vector (K)", false, true,
            make_multivariate_normal),
      entry("LowRankMVN", {"loc", "cov_factor", "cov_diag"}, "real vector", "vector (K)", false, true,
            make_lowrank_mvn),
      entry("Wishart", {"df", "covariance_matrix"}, "symmetric positive definite matrix", "matrix (K, K)", false,
            true, make_wishart),
      entry("RelaxedBernoulli", {"temperature", "probs"}, "0 < x < 1", "scalar", false, true,
            make_relaxed_bernoulli),
      entry("RelaxedOneHotCategorical", {"temperature", "probs"}, "simplex", "vector (K)", false, true,
            make_relaxed_one_hot_categorical),
      entry("Bernoulli", {"probs"}, "integers 0, 1", "scalar", true, false, make_bernoulli),
      entry("Categorical", {"probs"}, "integers 0, 1, ..., K-1", "scalar", true, false, make_categorical),
      entry("Poisson", {"rate"}, "integers 0, 1, 2, ...", "scalar", true, false, make_poisson),
      entry("Binomial", {"total_count", "probs"}, "integers 0, 1, ..., total_count", "scalar", true, false,
            make_binomial),
      entry("NegativeBinomial", {"total_count", "probs"}, "integers 0, 1, 2, ...", "scalar", true, false,
            make_negative_binomial),
      entry("BernoulliLogit", {"logits"}, "integers 0, 1", "scalar", true, false, make_bernoulli_logit),
      entry("PoissonLog", {"log_rate"}, "integers 0, 1, 2, ...", "scalar", true, false, make_poisson_log),
      entry("LKJCholesky", {"dim", "concentration"}, "lower Cholesky factor of a correlation matrix",
            "matrix (dim, dim)", false, false, make_lkj_cholesky),
  };
  return families;
}

const FamilyEntry* find_entry(const std::string& name) {
  for (const auto& e : registry()) {
    if (e.doc.name == name) return &e;
  }
  return nullptr;
}

std::string lower(const std::string& s) {
  std::string out = s;
  std::transform(out.begin(), out.end(), out.begin(), [](unsigned char c) { return std::tolower(c); });
  return out;
}

// Optimal string alignment distance: insertions, deletions, substitutions and
// transpositions of adjacent characters each cost one.
size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<std::vector<size_t>> d(a.size() + 1, std::vector<size_t>(b.size() + 1));
  for (size_t i = 0; i <= a.size(); ++i) d[i][0] = i;
  for (size_t j = 0; j <= b.size(); ++j) d[0][j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t cost = a[i - 1] == b[j - 1] ? 0 : 1;
      d[i][j] = std::min({d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost});
      if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1]) {
        d[i][j] = std::min(d[i][j], d[i - 2][j - 2] + 1);
      }
    }
  }
  return d[a.size()][b.size()];
}

at::ScalarType common_float_type(const std::vector<at::Tensor>& args) {
  bool any_float = false;
  at::ScalarType type = at::kFloat;
  for (const auto& a : args) {
    if (!at::isFloatingType(a.scalar_type())) continue;
    type = any_float ? at::promote_types(type, a.scalar_type()) : a.scalar_type();
    any_float = true;
  }
  return any_float ? type : at::typeMetaToScalarType(at::get_default_dtype());
}

}  // namespace
}  // namespace detail

std::shared_ptr<Distribution> make_distribution(const std::string& family, const std::vector<at::Tensor>& args,
                                                bool validate_args) {
  const detail::FamilyEntry* e = detail::find_entry(family);
  if (!e) {
    std::string msg = "unknown family '" + family + "'";
    const std::string suggestion = closest_family(family);
    if (!suggestion.empty()) msg += "; did you mean '" + suggestion + "'?";
    throw std::invalid_argument(msg);
  }
  const auto& params = e->doc.params;
  if (args.size() != params.size()) {
    std::ostringstream msg;
    msg << family << ": expected " << params.size() << (params.size() == 1 ? " argument (" : " arguments (");
    for (size_t i = 0; i < params.size(); ++i) msg << (i ? ", " : "") << params[i];
    msg << "), got " << args.size();
    throw std::invalid_argument(msg.str());
  }
  for (size_t i = 0; i < args.size(); ++i) {
    if (!args[i].defined()) throw std::invalid_argument(family + ": " + params[i] + " is an undefined tensor");
  }
  const at::ScalarType type = detail::common_float_type(args);
  std::vector<at::Tensor> promoted;
  promoted.reserve(args.size());
  for (const auto& a : args) promoted.push_back(a.scalar_type() == type ? a : a.to(type));
  return e->make(promoted, validate_args);
}

std::vector<FamilyDoc> distribution_families() {
  std::vector<FamilyDoc> out;
  for (const auto& e : detail::registry()) out.push_back(e.doc);
  return out;
}

const FamilyDoc* find_family(const std::string& name) {
  const detail::FamilyEntry* e = detail::find_entry(name);
  return e ? &e->doc : nullptr;
}

std::string closest_family(const std::string& name) {
  const std::string key = detail::lower(name);
  std::string best;
  size_t best_distance = std::numeric_limits<size_t>::max();
  for (const auto& e : detail::registry()) {
    const size_t d = detail::edit_distance(key, detail::lower(e.doc.name));
    if (d < best_distance) {
      best_distance = d;
      best = e.doc.name;
    }
  }
  // Suggest only what is plausibly a typo: at most a third of the name's letters.
  const size_t allowed = std::max<size_t>(1, (name.size() + 2) / 3);
  return best_distance <= allowed ? best : std::string();
}

}  // namespace vguide::model
