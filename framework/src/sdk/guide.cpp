#include "vguide/guide.hpp"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>

#include <algorithm>
#include <mutex>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <unordered_map>

#include "vguide/flat_guide.hpp"
#include "vguide/location_scale.hpp"
#include "vguide/plugin.hpp"

namespace vguide {

Model::~Model() = default;
FactoryContext::~FactoryContext() = default;

std::string shape_to_string(const std::vector<int64_t>& shape) {
  std::ostringstream s;
  s << "[";
  for (size_t i = 0; i < shape.size(); ++i) s << (i ? ", " : "") << shape[i];
  s << "]";
  return s.str();
}

Guide::Guide(std::string family, LatentRegistry registry, uint64_t seed)
    : torch::nn::Module(family), family_(std::move(family)), registry_(std::move(registry)),
      generator_(at::detail::createCPUGenerator(seed)) {}

namespace {

// The declarations of location_scale.hpp, beside the guides rather than in them, so
// that Guide's layout (and every plugin built against it) stays as it was. A guide
// holds at most one, of one of the three forms.
struct Declared {
  std::optional<LocationScale> diagonal;
  std::optional<LocationScaleTril> tril;
  std::optional<LocationLowRank> low_rank;
};

struct Declarations {
  std::mutex mutex;
  std::unordered_map<const Guide*, Declared> by_guide;
};

Declarations& declarations() {
  static Declarations* d = new Declarations;  // never destroyed: guides may outlive statics
  return *d;
}

// `what` must be a registered parameter of `guide` (its own, not a child's) of `shape`.
void check_parameter(const char* function, const Guide& guide, const at::Tensor& t, const char* what,
                     const std::vector<int64_t>& shape, const std::string& shape_text) {
  bool registered = false;
  if (t.defined())
    for (const auto& p : guide.parameters(/*recurse=*/false))
      registered = registered || p.unsafeGetTensorImpl() == t.unsafeGetTensorImpl();
  if (!registered || t.sizes().vec() != shape)
    throw std::invalid_argument(std::string(function) + ": " + guide.family() + "'s " + what + " must be a " +
                                shape_text + " parameter of the guide");
}

void record(const char* function, const Guide& guide, Declared declared) {
  Declarations& d = declarations();
  std::lock_guard<std::mutex> lock(d.mutex);
  if (!d.by_guide.emplace(&guide, std::move(declared)).second)
    throw std::invalid_argument(std::string(function) + ": " + guide.family() + " has declared its structure already");
}

template <class T>
std::optional<T> declared(const Guide& guide, std::optional<T> Declared::*form) {
  Declarations& d = declarations();
  std::lock_guard<std::mutex> lock(d.mutex);
  const auto it = d.by_guide.find(&guide);
  return it == d.by_guide.end() ? std::nullopt : it->second.*form;
}

}  // namespace

Guide::~Guide() {
  Declarations& d = declarations();
  std::lock_guard<std::mutex> lock(d.mutex);
  d.by_guide.erase(this);
}

void declare_location_scale(Guide& guide, LocationScale structure) {
  const int64_t D = guide.registry().total_unconstrained_dim();
  const std::string vector = "(" + std::to_string(D) + ",)";
  const char* f = "declare_location_scale";
  check_parameter(f, guide, structure.loc, "loc", {D}, vector);
  if (structure.log_scale.defined()) check_parameter(f, guide, structure.log_scale, "log_scale", {D}, vector);
  record(f, guide, {std::move(structure), std::nullopt, std::nullopt});
}

std::optional<LocationScale> location_scale(const Guide& guide) { return declared(guide, &Declared::diagonal); }

void declare_location_scale_tril(Guide& guide, LocationScaleTril structure) {
  const int64_t D = guide.registry().total_unconstrained_dim();
  const std::string vector = "(" + std::to_string(D) + ",)";
  const char* f = "declare_location_scale_tril";
  check_parameter(f, guide, structure.loc, "loc", {D}, vector);
  check_parameter(f, guide, structure.offdiag, "offdiag", {D, D},
                  "(" + std::to_string(D) + ", " + std::to_string(D) + ")");
  check_parameter(f, guide, structure.diag_raw, "diag_raw", {D}, vector);
  record(f, guide, {std::nullopt, std::move(structure), std::nullopt});
}

std::optional<LocationScaleTril> location_scale_tril(const Guide& guide) { return declared(guide, &Declared::tril); }

void declare_location_low_rank(Guide& guide, LocationLowRank structure) {
  const int64_t D = guide.registry().total_unconstrained_dim();
  const std::string vector = "(" + std::to_string(D) + ",)";
  const char* f = "declare_location_low_rank";
  check_parameter(f, guide, structure.loc, "loc", {D}, vector);
  const int64_t r = structure.cov_factor.defined() && structure.cov_factor.dim() == 2 ? structure.cov_factor.size(1) : 0;
  // 1 <= r <= D: a wider factor's draws would have more noise than dimensions.
  check_parameter(f, guide, structure.cov_factor, "cov_factor", {D, std::max<int64_t>(1, std::min(r, D))},
                  "(" + std::to_string(D) + ", r) with 1 <= r <= " + std::to_string(D));
  check_parameter(f, guide, structure.diag_raw, "diag_raw", {D}, vector);
  record(f, guide, {std::nullopt, std::nullopt, std::move(structure)});
}

std::optional<LocationLowRank> location_low_rank(const Guide& guide) { return declared(guide, &Declared::low_rank); }

SiteValues Guide::sample(const at::Tensor& x) {
  at::NoGradGuard no_grad;
  return rsample(x);
}

at::Tensor Guide::elbo(const Model& model, const at::Tensor& x) {
  SiteValues draws = rsample(x);
  const at::Tensor terms = model.log_joint(x, draws) - log_prob(x, draws);
  // The mean of one particle is its value: sum() is the cheaper op (with backward).
  return terms.numel() == 1 ? terms.sum() : terms.mean();
}

void Guide::initialize(const at::Tensor&, const at::Tensor&) {
  throw NoLocation("guide family '" + family_ +
                              "' has no location to initialise; use the family's own default (init strategy 'default')");
}

void Guide::copy_location(at::Tensor& parameter, const at::Tensor& location) const {
  if (!location.defined() || location.dim() != 1 || location.size(0) != parameter.numel())
    throw std::invalid_argument(family_ + ": initial location has shape " +
                                (location.defined() ? shape_to_string(location.sizes().vec()) : std::string("undefined")) +
                                ", expected [" + std::to_string(parameter.numel()) + "]");
  if (!at::isfinite(location).all().item<bool>())
    throw std::invalid_argument(family_ + ": initial location has non-finite values");
  at::NoGradGuard no_grad;
  parameter.copy_(location.reshape(parameter.sizes()));
}

void Guide::check_scale(const at::Tensor& scale, int64_t D) const {
  if (!scale.defined()) return;
  const bool vector = scale.dim() == 1 && scale.size(0) == D;
  const bool factor = scale.dim() == 2 && scale.size(0) == D && scale.size(1) == D;
  if (!vector && !factor)
    throw std::invalid_argument(family_ + ": initial scale has shape " + shape_to_string(scale.sizes().vec()) +
                                ", expected [" + std::to_string(D) + "] or [" + std::to_string(D) + ", " +
                                std::to_string(D) + "]");
  const at::Tensor sd = marginal_sd(scale);
  if (!(at::isfinite(sd).all().item<bool>() && (sd > 0).all().item<bool>()))
    throw std::invalid_argument(family_ + ": initial scale has a non-finite or non-positive standard deviation");
}

at::Tensor marginal_sd(const at::Tensor& scale) {
  if (!scale.defined() || scale.dim() == 1) return scale;
  return at::linalg_vector_norm(at::tril(scale), 2, {1});
}

SiteValues Model::prior_values(PriorInit, at::Generator&) const { return {}; }

at::ScalarType Guide::dtype() const {
  for (const auto& p : parameters(/*recurse=*/true))
    if (p.is_floating_point()) return p.scalar_type();
  return at::kFloat;
}

void Guide::set_seed(uint64_t seed) { generator_.set_current_seed(seed); }

int64_t Guide::num_particles(const char* function, const at::Tensor& x) {
  if (!x.defined() || x.dim() < 1 || x.size(0) < 1) {
    std::ostringstream msg;
    msg << function << ": x must have a leading particle dim S >= 1, got "
        << (x.defined() ? shape_to_string(x.sizes().vec()) : std::string("an undefined tensor"));
    throw std::invalid_argument(msg.str());
  }
  return x.size(0);
}

at::Tensor particles(int64_t S, at::ScalarType dtype) {
  if (S < 1) throw std::invalid_argument("particles: S is " + std::to_string(S) + ", but must be at least 1");
  return at::empty({S, 0}, at::TensorOptions().dtype(dtype));
}

FlatGuide::~FlatGuide() = default;

SiteValues FlatGuide::rsample(const at::Tensor& x) {
  const int64_t S = num_particles("rsample", x);
  auto [z, log_q] = sample_flat(S, x.options());
  auto [values, ladj] = registry().constrain(z);
  cached_values_.clear();
  cached_versions_.clear();
  cached_log_prob_ = at::Tensor();
  if (cache_enabled_) {
    for (const auto& site : registry().sites()) {
      cached_values_.push_back(values.at(site.name));
      cached_versions_.push_back(cached_values_.back()._version());
    }
    cached_log_prob_ = log_q - ladj;
  }
  return values;
}

at::Tensor FlatGuide::log_prob(const at::Tensor& x, const SiteValues& values) {
  num_particles("log_prob", x);
  if (cached_log_prob_.defined()) {
    // The cache is valid for exactly the tensors rsample returned (same storage, not
    // modified since), and is spent on first use.
    bool same = cached_values_.size() == registry().sites().size();
    size_t i = 0;
    for (const auto& site : registry().sites()) {
      if (!same) break;
      auto it = values.find(site.name);
      same = it != values.end() && it->second.is_same(cached_values_[i]) &&
             it->second._version() == cached_versions_[i];
      ++i;
    }
    at::Tensor cached = std::move(cached_log_prob_);
    cached_log_prob_ = at::Tensor();
    cached_values_.clear();
    cached_versions_.clear();
    if (same) return cached;
  }
  auto [z, ladj] = registry().unconstrain(values, "log_prob");
  return log_prob_flat(z) - ladj;
}


}  // namespace vguide
