#include "vguide/runtime/fit.hpp"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <sstream>

#include "vguide/flow/flow_guide.hpp"
#include "vguide/model/program_model.hpp"
#include "vguide/runtime/distributed.hpp"
#include "vguide/runtime/elbo.hpp"
#include "vguide/runtime/fused_adam.hpp"
#include "direct_step.hpp"

namespace vguide {

namespace {

constexpr int kCheckpointFormat = 2;  // 2: dtype, averaging state

std::unique_ptr<torch::optim::Optimizer> make_optimizer(const std::vector<at::Tensor>& params,
                                                        const OptimizerOptions& o) {
  const double decay = o.weight_decay >= 0.0 ? o.weight_decay : (o.kind == Optimizer::adamw ? 0.01 : 0.0);
  switch (o.kind) {
    case Optimizer::adam:  // LibTorch's Adam with its update as one loop per tensor (fused_adam.hpp)
      return std::make_unique<FusedAdam>(params, torch::optim::AdamOptions(o.lr).weight_decay(decay));
    case Optimizer::adamw:
      return std::make_unique<torch::optim::AdamW>(params, torch::optim::AdamWOptions(o.lr).weight_decay(decay));
    case Optimizer::sgd:
      return std::make_unique<torch::optim::SGD>(
          params, torch::optim::SGDOptions(o.lr).momentum(o.momentum).weight_decay(decay));
    case Optimizer::rmsprop:
      return std::make_unique<torch::optim::RMSprop>(
          params, torch::optim::RMSpropOptions(o.lr).momentum(o.momentum).weight_decay(decay));
  }
  throw std::logic_error("make_optimizer: unknown kind");
}

// Optimiser state by parameter position. LibTorch's own Optimizer::save keys it by
// the parameters' memory addresses, which differ between processes, so two
// identical fits would write different checkpoints.
template <class State>
void save_param_states(const torch::optim::Optimizer& optimizer, torch::serialize::OutputArchive& archive) {
  int64_t index = 0;
  for (const auto& group : optimizer.param_groups()) {
    for (const auto& p : group.params()) {
      auto it = optimizer.state().find(c10::guts::to_string(p.unsafeGetTensorImpl()));
      if (it != optimizer.state().end()) {
        torch::serialize::OutputArchive one;
        static_cast<const State&>(*it->second).serialize(one);
        archive.write(std::to_string(index), one);
      }
      ++index;
    }
  }
}

template <class State>
void load_param_states(torch::optim::Optimizer& optimizer, torch::serialize::InputArchive& archive) {
  int64_t index = 0;
  optimizer.state().clear();
  for (const auto& group : optimizer.param_groups()) {
    for (const auto& p : group.params()) {
      torch::serialize::InputArchive one;
      if (archive.try_read(std::to_string(index), one)) {
        auto state = std::make_unique<State>();
        state->serialize(one);
        optimizer.state()[c10::guts::to_string(p.unsafeGetTensorImpl())] = std::move(state);
      }
      ++index;
    }
  }
}

void save_optimizer(Optimizer kind, const torch::optim::Optimizer& o, torch::serialize::OutputArchive& a) {
  switch (kind) {
    case Optimizer::adam: return save_param_states<torch::optim::AdamParamState>(o, a);
    case Optimizer::adamw: return save_param_states<torch::optim::AdamWParamState>(o, a);
    case Optimizer::sgd: return save_param_states<torch::optim::SGDParamState>(o, a);
    case Optimizer::rmsprop: return save_param_states<torch::optim::RMSpropParamState>(o, a);
  }
}

void load_optimizer(Optimizer kind, torch::optim::Optimizer& o, torch::serialize::InputArchive& a) {
  switch (kind) {
    case Optimizer::adam: return load_param_states<torch::optim::AdamParamState>(o, a);
    case Optimizer::adamw: return load_param_states<torch::optim::AdamWParamState>(o, a);
    case Optimizer::sgd: return load_param_states<torch::optim::SGDParamState>(o, a);
    case Optimizer::rmsprop: return load_param_states<torch::optim::RMSpropParamState>(o, a);
  }
}

std::string to_bytes(const at::Tensor& t) {
  const at::Tensor c = t.contiguous();
  return std::string(static_cast<const char*>(c.data_ptr()), static_cast<size_t>(c.numel() * c.element_size()));
}

at::Tensor from_bytes(const std::string& b) {
  return torch::from_blob(const_cast<char*>(b.data()), {static_cast<int64_t>(b.size())}, torch::kUInt8).clone();
}

std::string number(double v) {
  std::ostringstream s;
  s << v;
  return s.str();
}

// Every guide in the module tree (a mixture's components too) has its own stream.
std::vector<std::pair<std::string, Guide*>> guides_in(Guide& root) {
  std::vector<std::pair<std::string, Guide*>> out;
  for (const auto& item : root.named_modules("", /*include_self=*/true)) {
    if (auto* g = dynamic_cast<Guide*>(item.value().get())) out.emplace_back(item.key().empty() ? "self" : item.key(), g);
  }
  return out;
}

std::string first_non_finite_site(const SiteValues& values) {
  for (const auto& [name, v] : values)
    if (!at::isfinite(v.detach()).all().item<bool>()) return name;
  return "";
}

// Names what went non-finite: a drawn value, a site's log density, the guide's
// density, or a gradient. Draws fresh particles, so the guide's stream moves; it
// runs only when the fit is about to stop.
std::string diagnose_non_finite(const Model& model, Guide& guide) {
  const at::Tensor x = particles(64, guide.dtype());
  SiteValues draws;
  {
    torch::NoGradGuard no_grad;
    draws = guide.sample(x);
  }
  if (std::string site = first_non_finite_site(draws); !site.empty())
    return "the guide drew a non-finite value for site '" + site + "'";
  if (auto* program = dynamic_cast<const model::ProgramModel*>(&model)) {
    torch::NoGradGuard no_grad;
    for (const auto& [name, term] : program->site_log_densities(x, draws))
      if (!at::isfinite(term).all().item<bool>())
        return "the log density of site '" + name + "' is not finite";
  }
  {
    torch::NoGradGuard no_grad;
    if (!at::isfinite(model.log_joint(x, draws)).all().item<bool>()) return "the model's log joint is not finite";
    if (!at::isfinite(guide.log_prob(x, draws)).all().item<bool>()) return "the guide's log density is not finite";
  }
  guide.zero_grad();
  (-guide.elbo(model, x)).backward();
  for (const auto& p : guide.named_parameters())
    if (p.value().grad().defined() && !at::isfinite(p.value().grad()).all().item<bool>())
      return "the gradient of guide parameter '" + p.key() + "' is not finite";
  return "the objective is not finite for some draws";
}

// Whether the guide is, or holds, a normalizing flow (the particles and the averaging
// rule treat flows apart).
bool holds_flow(Guide& guide) {
  for (const auto& [name, g] : guides_in(guide))
    if (dynamic_cast<const flow::FlowGuide*>(g) != nullptr) return true;
  return false;
}

// Each guide's step scales (a mixture's components too), by the position of their
// parameter in `params`; undefined where a parameter has none.
std::vector<at::Tensor> step_units(const std::vector<Guide*>& guides, const std::vector<at::Tensor>& params) {
  std::vector<at::Tensor> units(params.size());
  for (Guide* g : guides) {
    for (const auto& [parameter, scale] : g->step_scales()) {
      for (size_t i = 0; i < params.size(); ++i)
        if (params[i].unsafeGetTensorImpl() == parameter.unsafeGetTensorImpl()) units[i] = scale;
    }
  }
  return units;
}

// The per-element units the averaging rule measures in: a factor's marginal sds.
std::vector<at::Tensor> elementwise(std::vector<at::Tensor> units, const std::vector<at::Tensor>& params) {
  for (size_t i = 0; i < units.size(); ++i)
    if (units[i].defined() && units[i].dim() == 2 && params[i].dim() == 1) units[i] = marginal_sd(units[i]);
  return units;
}

// A full factor for a (D,) parameter (Guide::StepScale): the step in its coordinates.
bool is_factor(const at::Tensor& unit, const at::Tensor& param) { return unit.dim() == 2 && param.dim() == 1; }

}  // namespace

Optimizer parse_optimizer(const std::string& name) {
  if (name == "adam") return Optimizer::adam;
  if (name == "adamw") return Optimizer::adamw;
  if (name == "sgd") return Optimizer::sgd;
  if (name == "rmsprop") return Optimizer::rmsprop;
  throw std::invalid_argument("unknown optimizer '" + name + "'; valid: adam, adamw, sgd, rmsprop");
}

std::string to_string(Optimizer kind) {
  switch (kind) {
    case Optimizer::adam: return "adam";
    case Optimizer::adamw: return "adamw";
    case Optimizer::sgd: return "sgd";
    case Optimizer::rmsprop: return "rmsprop";
  }
  return "adam";
}

StepPath parse_step_path(const std::string& name) {
  if (name == "auto") return StepPath::automatic;
  if (name == "autograd") return StepPath::autograd;
  if (name == "direct") return StepPath::direct;
  throw std::invalid_argument("unknown step path '" + name + "'; valid: auto, autograd, direct");
}

std::string to_string(StepPath path) {
  switch (path) {
    case StepPath::automatic: return "auto";
    case StepPath::autograd: return "autograd";
    case StepPath::direct: return "direct";
  }
  return "auto";
}

std::string to_string(StopReason reason) {
  switch (reason) {
    case StopReason::steps: return "steps";
    case StopReason::converged: return "converged";
    case StopReason::non_finite: return "non_finite";
    case StopReason::interrupted: return "interrupted";
  }
  return "steps";
}

at::ScalarType parse_dtype(const std::string& name) {
  if (name == "float64" || name == "double") return at::kDouble;
  if (name == "float32" || name == "float") return at::kFloat;
  throw std::invalid_argument("unknown dtype '" + name + "'; valid: float64, float32");
}

std::string dtype_name(at::ScalarType dtype) {
  if (dtype == at::kDouble) return "float64";
  if (dtype == at::kFloat) return "float32";
  return c10::toString(dtype);
}

void convert_guide(Guide& guide, at::ScalarType dtype) {
  torch::NoGradGuard no_grad;
  for (auto& p : guide.parameters(/*recurse=*/true))
    if (p.is_floating_point() && p.scalar_type() != dtype) p.set_data(p.to(dtype));
  for (auto& b : guide.buffers(/*recurse=*/true))
    if (b.is_floating_point() && b.scalar_type() != dtype) b.set_data(b.to(dtype));
}

void validate(const FitOptions& o) {
  if (o.dtype != at::kDouble && o.dtype != at::kFloat)
    throw std::invalid_argument("dtype is " + dtype_name(o.dtype) + ", but must be float64 or float32");
  if (o.steps < 0) throw std::invalid_argument("steps is " + std::to_string(o.steps) + ", but must be at least 0");
  if (o.objective.particles < 0)
    throw std::invalid_argument("particles is " + std::to_string(o.objective.particles) +
                                ", but must be at least 1 (or 0: automatic)");
  if (o.objective.kind == Objective::iwae && o.objective.stick_the_landing)
    throw std::invalid_argument("sticking the landing applies to the ELBO only, not to IWAE");
  if (!(o.optimizer.lr > 0.0) || !std::isfinite(o.optimizer.lr))
    throw std::invalid_argument("lr is " + number(o.optimizer.lr) + ", but must be a positive number");
  if (!(o.optimizer.momentum >= 0.0 && o.optimizer.momentum < 1.0))
    throw std::invalid_argument("momentum is " + number(o.optimizer.momentum) + ", but must be in [0, 1)");
  if (!std::isfinite(o.optimizer.weight_decay))
    throw std::invalid_argument("weight decay must be a finite number");
  if (!(o.clip_norm >= 0.0) || !std::isfinite(o.clip_norm))
    throw std::invalid_argument("clip norm is " + number(o.clip_norm) + ", but must be at least 0 (0: off)");
  if (o.max_non_finite < 1)
    throw std::invalid_argument("max non-finite steps is " + std::to_string(o.max_non_finite) +
                                ", but must be at least 1");
  validate(o.schedule, o.optimizer.lr);
  validate(o.convergence);
  validate(o.averaging);
}

int64_t default_particles(Guide& guide) {
  if (holds_flow(guide)) return 8;
  int64_t parameters = 0;
  for (const auto& p : guide.parameters(/*recurse=*/true)) parameters += p.numel();
  return parameters > 2 * guide.registry().total_unconstrained_dim() ? 4 : 1;
}

std::string fingerprint(const std::string& text) {
  uint64_t h = 1469598103934665603ULL;
  for (unsigned char c : text) {
    h ^= c;
    h *= 1099511628211ULL;
  }
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(h));
  return buf;
}

struct Fit::Impl {
  const Model& model;
  Guide& guide;
  FitOptions options;
  std::unique_ptr<torch::optim::Optimizer> optimizer;
  std::vector<at::Tensor> params;
  AdviConvergence convergence;
  std::unique_ptr<IterateAverager> averager;
  std::vector<Guide*> all_guides;  // the guide and the guides inside it (a mixture's components)
  std::vector<double> trace;
  std::map<std::string, at::Generator> extra_generators;
  FitResult result;
  int64_t non_finite_run = 0;
  bool finished = false;
  std::shared_ptr<Communicator> comm;       // set by distribute()
  const std::atomic<bool>* interrupt = nullptr;  // run()'s, read by a distributed step
  bool stop_everywhere = false;             // some rank was interrupted: all stop after this step
  std::unique_ptr<detail::DirectStep> direct;  // null: every step through autograd
  std::string autograd_because;

  // Whether this step is direct: the model's rows have a compiled log joint, and the
  // step agreed with autograd the first time they did (else autograd from then on).
  // A forced direct step that cannot be taken throws.
  bool direct_now() {
    if (!direct) return false;
    std::string why;
    if (!direct->applies()) why = direct->why_not();
    else if (!direct->agrees(why)) direct.reset();
    if (why.empty()) return true;
    autograd_because = why;
    if (options.step_path == StepPath::direct) throw std::invalid_argument("the direct step does not apply: " + why);
    return false;
  }

  int64_t rank() const { return comm ? comm->rank() : 0; }
  int64_t world_size() const { return comm ? comm->world_size() : 1; }

  std::string training_state;  // captured by finish()

  // The guide's parameters and buffers and every generator's state, as bytes.
  std::string capture_state() const {
    torch::serialize::OutputArchive archive;
    torch::serialize::OutputArchive guide_archive;
    guide.save(guide_archive);
    archive.write("guide", guide_archive);
    for (const auto& [name, g] : guides_in(guide)) archive.write("rng.guide." + name, g->generator().get_state());
    for (const auto& [name, gen] : extra_generators) {
      if (!comm) {
        archive.write("rng.extra." + name, gen.get_state());
        continue;
      }
      // Each rank has its own stream (its own minibatch rows): all of them are kept.
      const auto states = all_gather(*comm, to_bytes(gen.get_state()), "the checkpoint");
      for (size_t k = 0; k < states.size(); ++k)
        archive.write("rng.extra." + name + ".rank" + std::to_string(k), from_bytes(states[k]));
    }
    std::ostringstream out;
    archive.save_to(out);
    return out.str();
  }

  void restore_state(const std::string& bytes) {
    std::istringstream in(bytes);
    torch::serialize::InputArchive archive;
    archive.load_from(in);
    torch::serialize::InputArchive guide_archive;
    archive.read("guide", guide_archive);
    guide.load(guide_archive);
    for (const auto& [name, g] : guides_in(guide)) {
      at::Tensor state;
      archive.read("rng.guide." + name, state);
      g->generator().set_state(state);
    }
    for (auto& [name, gen] : extra_generators) {
      at::Tensor state;
      archive.read("rng.extra." + name + (comm ? ".rank" + std::to_string(comm->rank()) : ""), state);
      gen.set_state(state);
    }
  }

  // The update (or the skip) of a step whose gradients are in place.
  // `in_units`: Adam may scale its own step (the direct step's path).
  bool apply_step(bool ok, double value, bool in_units = false) {
    if (ok) {
      if (options.clip_norm > 0.0) torch::nn::utils::clip_grad_norm_(params, options.clip_norm);
      // A location's step in units of the guide's scale: p_before + scale ⊙ Δ, or with
      // a factor L, p_before + L Δ for the step Δ the optimiser takes on Lᵀ ∇.
      std::vector<std::pair<size_t, at::Tensor>> before;
      bool stepped = false;
      // Dropped at the end of the step, so that a family may refill the same tensors.
      std::vector<at::Tensor> units;
      if (options.scale_steps) {
        units = step_units(all_guides, params);
        // Element-wise units: Adam scales its own step in the same pass.
        if (auto* adam = dynamic_cast<FusedAdam*>(optimizer.get()); adam && in_units) stepped = adam->step_in_units(units);
      }
      if (options.scale_steps && !stepped) {
        torch::NoGradGuard no_grad;
        for (size_t i = 0; i < params.size(); ++i) {
          if (!units[i].defined()) continue;
          before.emplace_back(i, params[i].detach().clone());
          at::Tensor grad = params[i].mutable_grad();
          if (is_factor(units[i], params[i]) && grad.defined()) grad.copy_(at::mv(units[i].t(), grad));
        }
      }
      if (!stepped) optimizer->step();
      {
        torch::NoGradGuard no_grad;
        for (const auto& [i, old] : before) {
          at::Tensor p = params[i].detach();
          if (is_factor(units[i], params[i])) p.copy_(old + at::mv(units[i], p - old));
          else p.sub_(old).mul_(units[i]).add_(old);
        }
      }
      if (averager) averager->record();
      non_finite_run = 0;
    } else {
      optimizer->zero_grad();
      ++non_finite_run;
      ++result.non_finite_steps;
    }
    trace.push_back(ok ? value : std::numeric_limits<double>::quiet_NaN());
    ++result.steps_done;
    return ok;
  }

  Impl(const Model& m, Guide& g, FitOptions o)
      : model(m), guide(g), options(std::move(o)), convergence(options.convergence, std::max<int64_t>(options.steps, 1)) {}

  // Watched by the averaging rule: the parameters in latent units when the family
  // declares some (its locations), else all of them. A flow's declared location is
  // its last affine layer, stationary long before the network weights that shape
  // it (averaging from there halved a spline's gain over mean-field on a banana), so
  // a flow's every parameter is watched, the weights in unit 1.
  void make_averager() {
    const std::vector<at::Tensor> declared = step_units(all_guides, params);
    const bool flow = holds_flow(guide);
    std::vector<bool> watched(params.size(), false);
    bool any = false;
    for (size_t i = 0; i < params.size(); ++i) any = any || declared[i].defined();
    for (size_t i = 0; i < params.size(); ++i) watched[i] = any && !flow ? declared[i].defined() : true;
    averager = std::make_unique<IterateAverager>(params, watched, options.averaging);
  }
};

Fit::Fit(const Model& model, Guide& guide, FitOptions options) {
  validate(options);
  impl_ = std::make_unique<Impl>(model, guide, std::move(options));
  if (impl_->options.objective.particles == 0) impl_->options.objective.particles = default_particles(guide);
  convert_guide(guide, impl_->options.dtype);
  at::Generator init_stream = at::detail::createCPUGenerator(impl_->options.seed ^ kInitStreamSalt);
  const InitialPoint start = initialize(guide, model, impl_->options.init, init_stream, impl_->options.dtype);
  impl_->result.init = to_string(impl_->options.init.strategy) + (start.detail.empty() ? "" : ": " + start.detail);
  if (impl_->options.init.strategy == InitStrategy::pathfinder && !start.location.defined())
    impl_->result.init = "default (the family has no location to start from)";
  impl_->params = guide.parameters();
  for (const auto& [name, g] : guides_in(guide)) impl_->all_guides.push_back(g);
  impl_->optimizer = make_optimizer(impl_->params, impl_->options.optimizer);
  if (impl_->options.averaging.enabled) impl_->make_averager();
  const StepPath path = impl_->options.step_path;
  if (path == StepPath::autograd) {
    impl_->autograd_because = "the step path is autograd";
  } else {
    impl_->direct = detail::DirectStep::make(model, guide, impl_->options.objective, path == StepPath::direct,
                                             impl_->autograd_because);
    // Forced, it must apply to the rows the model evaluates now, unless they may
    // change before the first step (a model with data rows, set to minibatches after
    // the start as vguide-host does): then the first step that cannot take it throws.
    const auto* rows = dynamic_cast<const model::DataRows*>(&model);
    if (path == StepPath::direct &&
        (!impl_->direct || (!impl_->direct->applies() && !(rows && rows->num_rows() > 0))))
      throw std::invalid_argument("the direct step does not apply: " +
                                  (impl_->direct ? impl_->direct->why_not() : impl_->autograd_because));
  }
}

Fit::~Fit() = default;

void Fit::distribute(std::shared_ptr<Communicator> communicator) {
  Impl& s = *impl_;
  if (!communicator) throw std::invalid_argument("distribute: the communicator is null");
  if (s.result.steps_done > 0 || s.comm) throw std::logic_error("distribute: call it once, before the first step");
  if (s.options.objective.kind == Objective::iwae)
    throw std::invalid_argument(
        "a data-parallel fit cannot use IWAE: its log-sum-exp over particles needs every rank's likelihood before "
        "any gradient; use the ELBO");
  if (s.guide.family() == "laplace")
    throw std::invalid_argument(
        "a data-parallel fit cannot use the laplace family: its Hessian needs the whole log joint in one process");
  s.comm = std::move(communicator);
  // Rank 0's parameters everywhere: the others add zeros, so the sum is exact.
  torch::NoGradGuard no_grad;
  for (auto& p : s.params) {
    at::Tensor buffer = s.comm->rank() == 0 ? p.detach().clone().contiguous() : at::zeros_like(p).contiguous();
    s.comm->all_reduce_sum(buffer, "the start (sending rank 0's parameters)");
    p.copy_(buffer);
  }
  // And rank 0's noise: every rank must draw the same particles.
  for (const auto& [name, g] : guides_in(s.guide)) {
    const std::string state = all_gather(*s.comm, to_bytes(g->generator().get_state()), "the start")[0];
    g->generator().set_state(from_bytes(state));
  }
}

namespace {

// The step's all-reduce: this rank's objective, its interrupt flag and its gradients
// in one float64 buffer; after the sum, the mean objective and mean gradients are
// written back, and the flag says whether any rank was interrupted. Returns the mean
// objective and whether it and every gradient are finite (the same on every rank).
std::pair<double, bool> all_reduce_step(Communicator& comm, const at::Tensor& value, bool interrupted,
                                        const std::vector<at::Tensor>& params, int64_t step, bool& interrupt_all) {
  std::vector<at::Tensor> parts{value.detach().to(at::kDouble).reshape({1}),
                                at::full({1}, interrupted ? 1.0 : 0.0, at::kDouble)};
  for (const auto& p : params)
    if (p.grad().defined()) parts.push_back(p.grad().to(at::kDouble).reshape({-1}));
  at::Tensor buffer = at::cat(parts);
  comm.all_reduce_sum(buffer, "step " + std::to_string(step));
  const double* b = buffer.data_ptr<double>();
  interrupt_all = b[1] > 0.0;
  const bool finite = std::isfinite(buffer.sum().item<double>());
  const double W = static_cast<double>(comm.world_size());
  int64_t offset = 2;
  for (const auto& p : params) {
    if (!p.grad().defined()) continue;
    const int64_t n = p.numel();
    at::Tensor grad = p.grad();
    grad.copy_(buffer.slice(0, offset, offset + n).div(W).view(p.sizes()));
    offset += n;
  }
  return {b[0] / W, finite};
}

}  // namespace

bool Fit::step() {
  Impl& s = *impl_;
  const int64_t t = s.result.steps_done;
  s.guide.before_step({t, s.options.steps});
  const double lr = scheduled_lr(s.options.schedule, s.options.optimizer.lr, t, s.options.steps);
  for (auto& group : s.optimizer->param_groups()) group.options().set_lr(lr);
  if (s.direct_now()) {
    bool finite = false;
    const double v = s.direct->run(finite);
    if (!s.comm) return s.apply_step(finite, v, true);
    const auto [mean, all_finite] = all_reduce_step(*s.comm, at::full({}, v, at::kDouble),
                                                    s.interrupt && s.interrupt->load(), s.params, t + 1,
                                                    s.stop_everywhere);
    return s.apply_step(all_finite, mean, true);
  }
  s.optimizer->zero_grad();
  at::Tensor value;
  try {
    value = objective(s.model, s.guide, s.options.objective);
    (-value).backward();
  } catch (const c10::LinAlgError& e) {
    // A factorisation of a latent-dependent matrix failed for this draw (a kernel
    // matrix that is not numerically positive definite): a non-finite step, skipped.
    const std::string why = e.what_without_backtrace();
    s.result.last_non_finite = why.substr(0, why.find('\n'));
    s.optimizer->zero_grad();
    value = at::full({}, std::numeric_limits<double>::quiet_NaN(), at::kDouble);
    for (auto& p : s.params)
      if (p.grad().defined()) p.mutable_grad().fill_(std::numeric_limits<double>::quiet_NaN());
  }
  if (s.comm) {
    // Every rank holds the same mean gradients: the same check and update everywhere.
    const auto [v, finite] =
        all_reduce_step(*s.comm, value, s.interrupt && s.interrupt->load(), s.params, t + 1, s.stop_everywhere);
    return s.apply_step(finite, v);
  }
  // One double-precision sum over the objective and every gradient: a NaN or Inf
  // anywhere makes it non-finite, and one read serves the check and the trace (a
  // check per parameter tensor cost a fifth of a small model's step).
  at::Tensor probe = value.detach().to(at::kDouble).reshape({1});
  at::Tensor total = probe;
  for (const auto& p : s.params)
    if (p.grad().defined()) total = total + p.grad().sum(at::kDouble);
  const at::Tensor both = at::cat({probe, total.reshape({1})}).contiguous();
  return s.apply_step(std::isfinite(both.data_ptr<double>()[1]), both.data_ptr<double>()[0]);
}

FitResult Fit::run(const std::atomic<bool>* interrupt, const std::function<void(const StepReport&)>& on_step) {
  Impl& s = *impl_;
  s.result.reason = StopReason::steps;
  s.result.detail.clear();
  s.interrupt = interrupt;
  s.stop_everywhere = false;
  while (s.result.steps_done < s.options.steps) {
    // A distributed fit learns of an interrupt through the step's all-reduce, so
    // that every rank stops after the same step.
    if (!s.comm && interrupt && interrupt->load()) {
      s.result.reason = StopReason::interrupted;
      break;
    }
    const bool ok = step();
    if (on_step) on_step({s.result.steps_done, s.options.steps, s.trace.back(), !ok});
    if (s.stop_everywhere) {
      s.result.reason = StopReason::interrupted;
      break;
    }
    if (s.non_finite_run >= s.options.max_non_finite) {
      s.result.reason = StopReason::non_finite;
      s.result.detail = diagnose_non_finite(s.model, s.guide);
      break;
    }
    // The averaging rule runs under every stopping rule (it decides when averaging
    // starts); it stops the fit only under its own.
    // The units (every guide's step_scales) are formed only when a check is due.
    if (ok && s.averager && s.result.steps_done % s.options.averaging.check_every == 0) {
      const auto why = s.averager->check(s.result.steps_done, elementwise(step_units(s.all_guides, s.params), s.params));
      if (why && s.options.convergence.rule == ConvergenceRule::automatic) {
        s.result.reason = StopReason::converged;
        s.result.detail = *why;
        break;
      }
    }
    if (s.convergence.due(s.result.steps_done)) {
      double elbo_now;
      {
        torch::NoGradGuard no_grad;
        elbo_now = elbo(s.model, s.guide, s.options.convergence.elbo_particles).item<double>();
      }
      if (s.comm) {  // the mean over ranks is the full data's estimate, the same on every rank
        at::Tensor mean = at::full({1}, elbo_now, at::kDouble);
        s.comm->all_reduce_sum(mean, "the convergence check at step " + std::to_string(s.result.steps_done));
        elbo_now = mean.item<double>() / static_cast<double>(s.world_size());
      }
      if (std::isfinite(elbo_now)) {
        if (auto rule = s.convergence.update(elbo_now)) {
          s.result.reason = StopReason::converged;
          s.result.detail = *rule;
          break;
        }
      }
    }
  }
  if (s.averager) {
    s.result.averaged_steps = s.averager->averaged_steps();
    s.result.averaging_from = s.averager->averaging_from();
  }
  return s.result;
}

void Fit::finish() {
  if (impl_->finished) return;
  // The state a longer fit would continue from, before the averages and after_fit
  // change the guide (the Laplace guide leaves its MAP phase there).
  impl_->training_state = impl_->capture_state();
  if (impl_->averager) impl_->averager->apply();
  impl_->guide.after_fit({impl_->model, impl_->result.steps_done});
  impl_->finished = true;
}

bool Fit::finished() const noexcept { return impl_->finished; }
int64_t Fit::steps_done() const noexcept { return impl_->result.steps_done; }
const std::vector<double>& Fit::trace() const noexcept { return impl_->trace; }
const FitResult& Fit::result() const noexcept { return impl_->result; }
const FitOptions& Fit::options() const noexcept { return impl_->options; }
bool Fit::direct_steps() const noexcept {
  try {
    return impl_->direct && impl_->direct->applies();
  } catch (const std::exception&) {
    return false;
  }
}

const std::string& Fit::autograd_because() const noexcept {
  Impl& s = *impl_;
  try {
    if (s.direct && !s.direct->applies()) s.autograd_because = s.direct->why_not();
  } catch (const std::exception&) {
  }
  return s.autograd_because;
}

void Fit::track_generator(const std::string& name, at::Generator generator) {
  impl_->extra_generators[name] = std::move(generator);
}

void Fit::save_checkpoint(const std::string& path, const std::map<std::string, std::string>& fingerprints) const {
  const Impl& s = *impl_;
  nlohmann::json meta;
  meta["format"] = kCheckpointFormat;
  meta["optimizer"] = to_string(s.options.optimizer.kind);
  meta["steps_done"] = s.result.steps_done;
  meta["finished"] = s.finished;
  meta["interrupted"] = s.result.reason == StopReason::interrupted;
  meta["reason"] = to_string(s.result.reason);
  meta["detail"] = s.result.detail;
  meta["non_finite_steps"] = s.result.non_finite_steps;
  meta["non_finite_run"] = s.non_finite_run;
  meta["fingerprints"] = fingerprints;
  meta["convergence_buffer"] = s.convergence.buffer();
  meta["convergence_previous"] = s.convergence.previous();
  meta["world_size"] = s.world_size();
  meta["dtype"] = dtype_name(s.options.dtype);
  meta["init"] = s.result.init;
  meta["last_non_finite"] = s.result.last_non_finite;

  // Collective parts first (the gathered generator states), then only rank 0 writes.
  const std::string state = s.finished ? s.training_state : s.capture_state();
  const std::string fitted = s.finished ? s.capture_state() : std::string();
  if (s.rank() != 0) return;
  torch::serialize::OutputArchive archive;
  archive.write("meta", c10::IValue(meta.dump()));
  archive.write("trace", torch::tensor(s.trace, torch::kDouble));
  torch::serialize::OutputArchive optimizer_archive;
  save_optimizer(s.options.optimizer.kind, *s.optimizer, optimizer_archive);
  archive.write("optimizer", optimizer_archive);
  if (s.averager) {
    torch::serialize::OutputArchive averaging_archive;
    s.averager->save(averaging_archive);
    archive.write("averaging", averaging_archive);
  }
  // A finished fit carries two guide states: the one to continue training from and
  // the fitted one to draw from.
  archive.write("state", from_bytes(state));
  if (s.finished) archive.write("fitted_state", from_bytes(fitted));

  const std::string tmp = path + ".tmp";
  archive.save_to(tmp);
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) throw std::runtime_error("cannot move " + tmp + " to " + path + ": " + ec.message());
}

void Fit::load_checkpoint(const std::string& path, const std::map<std::string, std::string>& fingerprints) {
  Impl& s = *impl_;
  // Distributed: rank 0 reads the file and sends its bytes (the others' machines
  // need not see rank 0's folder); an empty text means rank 0 could not read it.
  std::string file_bytes;
  if (s.rank() == 0) {
    if (!std::filesystem::is_regular_file(path)) {
      if (s.comm) all_gather(*s.comm, "", "reading the checkpoint");
      throw CheckpointError("checkpoint " + path + " does not exist");
    }
    std::ifstream in(path, std::ios::binary);
    std::ostringstream text;
    text << in.rdbuf();
    file_bytes = text.str();
  }
  if (s.comm) {
    file_bytes = all_gather(*s.comm, s.rank() == 0 ? file_bytes : "", "reading the checkpoint")[0];
    if (file_bytes.empty()) throw CheckpointError("checkpoint " + path + " cannot be read on rank 0");
  }
  torch::serialize::InputArchive archive;
  nlohmann::json meta;
  try {
    std::istringstream in(file_bytes);
    archive.load_from(in);
    c10::IValue text;
    archive.read("meta", text);
    meta = nlohmann::json::parse(text.toStringRef());
  } catch (const std::exception& e) {
    std::string why = e.what();
    throw CheckpointError("checkpoint " + path + " cannot be read: " + why.substr(0, why.find('\n')));
  }
  if (meta.value("format", 0) != kCheckpointFormat)
    throw CheckpointError("checkpoint " + path + " has format " + std::to_string(meta.value("format", 0)) +
                          ", this vguide reads format " + std::to_string(kCheckpointFormat));
  const int64_t saved_world = meta.value("world_size", int64_t{1});
  if (saved_world != s.world_size())
    throw CheckpointError("checkpoint " + path + " was written by a fit on " + std::to_string(saved_world) +
                          (saved_world == 1 ? " rank" : " ranks") + ", this one has " + std::to_string(s.world_size()) +
                          " (resume with the same number of ranks)");
  const std::string saved_dtype = meta.value("dtype", "float32");
  if (saved_dtype != dtype_name(s.options.dtype))
    throw CheckpointError("checkpoint " + path + ": the dtype differs (checkpoint: " + saved_dtype +
                          ", now: " + dtype_name(s.options.dtype) + ")");
  const std::string saved_optimizer = meta.value("optimizer", "");
  if (saved_optimizer != to_string(s.options.optimizer.kind))
    throw CheckpointError("checkpoint " + path + ": the optimizer differs (checkpoint: " + saved_optimizer +
                          ", now: " + to_string(s.options.optimizer.kind) + ")");
  const auto saved = meta.at("fingerprints").get<std::map<std::string, std::string>>();
  for (const auto& [key, now] : fingerprints) {
    auto it = saved.find(key);
    const std::string then = it == saved.end() ? "none" : it->second;
    if (then != now)
      throw CheckpointError("checkpoint " + path + ": the " + key + " differs (checkpoint: " + then + ", now: " + now +
                            ")");
  }
  const int64_t steps_done = meta.at("steps_done").get<int64_t>();
  // Drawing from a finished fit takes the fitted guide; anything else continues training.
  const bool use_fitted = meta.at("finished").get<bool>() && steps_done >= s.options.steps;
  try {
    torch::serialize::InputArchive optimizer_archive;
    archive.read("optimizer", optimizer_archive);
    load_optimizer(s.options.optimizer.kind, *s.optimizer, optimizer_archive);
    if (s.averager) {
      torch::serialize::InputArchive averaging_archive;
      archive.read("averaging", averaging_archive);
      s.averager->load(averaging_archive);
    }
    at::Tensor state;
    archive.read(use_fitted ? "fitted_state" : "state", state);
    state = state.contiguous();
    s.restore_state(std::string(static_cast<const char*>(state.data_ptr()), static_cast<size_t>(state.numel())));
    at::Tensor trace;
    archive.read("trace", trace);
    trace = trace.contiguous();
    s.trace.assign(trace.data_ptr<double>(), trace.data_ptr<double>() + trace.numel());
  } catch (const std::exception& e) {
    std::string why = e.what();
    throw CheckpointError("checkpoint " + path + " does not fit this guide: " + why.substr(0, why.find('\n')));
  }
  s.result.steps_done = meta.at("steps_done").get<int64_t>();
  s.result.non_finite_steps = meta.at("non_finite_steps").get<int64_t>();
  s.non_finite_run = meta.at("non_finite_run").get<int64_t>();
  s.result.init = meta.value("init", s.result.init);
  s.result.last_non_finite = meta.value("last_non_finite", "");
  if (s.averager) {
    s.result.averaged_steps = s.averager->averaged_steps();
    s.result.averaging_from = s.averager->averaging_from();
  }
  s.finished = use_fitted;
  s.convergence.restore(meta.at("convergence_buffer").get<std::vector<double>>(),
                        meta.at("convergence_previous").get<double>());
}

}  // namespace vguide
