// mixture: q(z) = Σ_k π_k q_k(z), components built by family name through the
// factory context (the seed's AutoMixtureGuide), π = softmax(logits), logits at 0.
//
// Estimators:
//  - stratified (default): ELBO = Σ_k π_k E_{q_k}[log p(z) - log q(z)], every
//    component's reparameterised draws weighted by π_k (Morningstar et al.,
//    "Automatic Differentiation Variational Inference with Mixtures", AISTATS 2021,
//    arXiv:2003.01687). Unbiased gradients for the components and for π.
//  - gumbel_softmax (the seed's): a relaxed one-hot weight w per draw and the draw
//    Σ_k w_k z_k, scored by the mixture density; temperature annealed in before_step.
// Output draws (sample) are exact: one component per draw, picked with probability π_k.
#include <ATen/ATen.h>

#include <cmath>
#include <ostream>
#include <sstream>

#include "vguide/guide.hpp"
#include "vguide/plugins/mixture/options.hpp"
#include "vguide/plugin.hpp"

namespace {

std::string join(const std::vector<std::string>& names) {
  std::string out;
  for (const auto& n : names) out += (out.empty() ? "" : ", ") + n;
  return "[" + out + "]";
}

class MixtureGuide final : public vguide::Guide {
 public:
  MixtureGuide(const vguide::FactoryArgs& args, vguide::MixtureOptions options)
      : Guide("mixture", vguide::LatentRegistry::from_model(args.model, args.observed_names), args.context.next_seed()),
        options_(std::move(options)) {
    options_.validate();
    registry().require_latents("mixture");
    const auto& families = options_.components();
    for (const auto& assignment : options_.component_options()) {
      const size_t k = std::stoul(assignment.substr(0, assignment.find('.')));
      if (k > families.size())
        throw std::invalid_argument("mixture: option '" + assignment + "' names component " + std::to_string(k) +
                                    ", but there are " + std::to_string(families.size()));
    }
    for (size_t k = 0; k < families.size(); ++k) {
      const std::string label = "mixture: component " + std::to_string(k + 1) + " (" + families[k] + ")";
      if (families[k] == "mixture")
        throw std::invalid_argument(label + " is itself a mixture; list all the components in one mixture instead");
      if (families[k] == "delta" || families[k] == "laplace")
        throw std::invalid_argument(label + " is a point mass while it is fitted, so it has no density to mix; "
                                            "use normal, mvn, lowrank_mvn or a flow");
      std::vector<std::string> own;
      const std::string prefix = std::to_string(k + 1) + ".";
      for (const auto& assignment : options_.component_options())
        if (assignment.rfind(prefix, 0) == 0) own.push_back(assignment.substr(prefix.size()));
      std::shared_ptr<vguide::Guide> component;
      try {
        component = args.context.create(families[k], args.model, args.observed_names, own);
      } catch (const std::exception& e) {
        throw std::invalid_argument(label + ": " + e.what());
      }
      // Components share one registry: the same latents in the same order.
      const auto reference = components_.empty() ? latent_names() : components_.front()->latent_names();
      if (component->latent_names() != reference)
        throw std::invalid_argument(label + " has latents " + join(component->latent_names()) + ", but " +
                                    (components_.empty() ? std::string("the model has ")
                                                         : "component 1 (" + families[0] + ") has ") +
                                    join(reference));
      components_.push_back(register_module("component_" + std::to_string(k + 1), component));
    }
    logits_ = register_parameter("logits", at::zeros({static_cast<int64_t>(families.size())}));
    temperature_ = register_buffer("temperature", at::full({}, options_.init_temperature()));
  }

  void set_temperature(double t) {
    vguide::check_positive("mixture", "temperature", t);
    temperature_.fill_(t);
  }

  void before_step(const vguide::StepInfo& info) override {
    for (auto& c : components_) c->before_step(info);
    if (options_.final_temperature() <= 0.0 || info.num_steps <= 1) return;
    const double t = std::min(1.0, static_cast<double>(info.step) / static_cast<double>(info.num_steps - 1));
    const double t0 = options_.init_temperature(), t1 = options_.final_temperature();
    set_temperature(options_.anneal() == "linear" ? t0 + (t1 - t0) * t : t0 * std::pow(t1 / t0, t));
  }

  void after_fit(const vguide::FitContext& context) override {
    for (auto& c : components_) c->after_fit(context);
  }

  /// Each component at the location moved by half a marginal sd in a random
  /// direction (without a scale: by 0.5), so that the components start apart and
  /// can take different parts of the posterior; each with the given scale.
  void initialize(const at::Tensor& location, const at::Tensor& scale) override {
    const int64_t D = registry().total_unconstrained_dim();
    check_scale(scale, D);
    const at::Tensor sd = scale.defined() ? vguide::marginal_sd(scale) : at::ones({D}, location.options());
    for (auto& c : components_) {
      const at::Tensor offset = at::randn({D}, generator(), location.options()) * sd * 0.5;
      c->initialize(location + offset, scale);
    }
  }

  vguide::SiteValues rsample(const at::Tensor& x) override {
    // Stratified: one component per draw, reparameterised within it (the gradient
    // for the weights comes from elbo(), not from this draw).
    if (options_.estimator() == "stratified") return hard_draw(x, "rsample");
    // Relaxed one-hot weights per draw: softmax((logits + Gumbel noise) / temperature).
    const int64_t S = num_particles("rsample", x), K = size();
    at::Tensor u = at::rand({S, K}, generator(), logits_.options()).clamp(1e-12, 1.0 - 1e-7);
    at::Tensor w = at::softmax((logits_ - at::log(-at::log(u))) / temperature_, -1);  // (S, K)
    std::vector<vguide::SiteValues> draws = component_draws(x);
    vguide::SiteValues out;
    for (const auto& name : latent_names()) {
      at::Tensor mixed;
      for (int64_t k = 0; k < K; ++k) {
        const at::Tensor& v = draws[k].at(name);
        at::Tensor term = v * w.select(1, k).reshape(weight_shape(v));
        mixed = mixed.defined() ? mixed + term : term;
      }
      out.emplace(name, mixed);
    }
    return out;
  }

  /// Exact draws for output: component c_s ~ Categorical(π) per draw.
  vguide::SiteValues sample(const at::Tensor& x) override {
    at::NoGradGuard no_grad;
    return hard_draw(x, "sample");
  }

  /// One component per draw, picked with probability π_k (the seed's hard_rsample).
  vguide::SiteValues hard_draw(const at::Tensor& x, const char* function) {
    const int64_t S = num_particles(function, x);
    at::Tensor pick = at::multinomial(at::softmax(logits_.detach(), -1), S, /*replacement=*/true, generator());
    std::vector<vguide::SiteValues> draws = component_draws(x);
    vguide::SiteValues out;
    for (const auto& name : latent_names()) {
      std::vector<at::Tensor> per_component;
      for (const auto& d : draws) per_component.push_back(d.at(name));
      at::Tensor stacked = at::stack(per_component, 0);  // (K, S, *shape)
      out.emplace(name, stacked.index({pick, at::arange(S, pick.options())}));
    }
    return out;
  }

  at::Tensor log_prob(const at::Tensor& x, const vguide::SiteValues& values) override {
    num_particles("log_prob", x);
    at::Tensor log_pi = at::log_softmax(logits_, -1);
    std::vector<at::Tensor> terms;
    for (int64_t k = 0; k < size(); ++k) terms.push_back(log_pi[k] + components_[k]->log_prob(x, values));
    return at::logsumexp(at::stack(terms, 0), 0);
  }

  at::Tensor elbo(const vguide::Model& model, const at::Tensor& x) override {
    if (options_.estimator() != "stratified") return Guide::elbo(model, x);
    at::Tensor pi = at::softmax(logits_, -1), total;
    for (int64_t k = 0; k < size(); ++k) {
      vguide::SiteValues draws = components_[k]->rsample(x);
      at::Tensor term = pi[k] * (model.log_joint(x, draws) - log_prob(x, draws)).mean();
      total = total.defined() ? total + term : term;
    }
    return total;
  }

  std::map<std::string, double> diagnostics() const override {
    std::map<std::string, double> out;
    at::Tensor pi = at::softmax(logits_.detach(), -1);
    for (int64_t k = 0; k < size(); ++k) out["mixture.weight_" + std::to_string(k + 1)] = pi[k].item<double>();
    out["mixture.temperature"] = temperature_.item<double>();
    for (int64_t k = 0; k < size(); ++k)
      for (const auto& [key, value] : components_[k]->diagnostics())
        out["mixture.component_" + std::to_string(k + 1) + "." + key] = value;
    return out;
  }

  void pretty_print(std::ostream& out) const override {
    out << "vguide::MixtureGuide(components=";
    for (size_t k = 0; k < options_.components().size(); ++k) out << (k ? "," : "") << options_.components()[k];
    out << ", estimator=" << options_.estimator() << ")";
  }

 private:
  int64_t size() const { return static_cast<int64_t>(components_.size()); }

  std::vector<vguide::SiteValues> component_draws(const at::Tensor& x) {
    std::vector<vguide::SiteValues> draws;
    for (auto& c : components_) draws.push_back(c->rsample(x));
    return draws;
  }

  // (S,) weights broadcast against a (S, *shape) value.
  static std::vector<int64_t> weight_shape(const at::Tensor& v) {
    std::vector<int64_t> shape(static_cast<size_t>(v.dim()), 1);
    shape[0] = v.size(0);
    return shape;
  }

  vguide::MixtureOptions options_;
  std::vector<std::shared_ptr<vguide::Guide>> components_;
  at::Tensor logits_, temperature_;
};

std::shared_ptr<vguide::Guide> make_mixture(const vguide::FactoryArgs& args) {
  return std::make_shared<MixtureGuide>(args, vguide::MixtureOptions::from(args.options));
}

}  // namespace

VGUIDE_DECLARE_PLUGIN("mixture", "finite mixture of guide families built by name (stratified or Gumbel-softmax)",
                      vguide::MixtureOptions, make_mixture)
