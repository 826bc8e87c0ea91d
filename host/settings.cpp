#include "settings.hpp"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <sstream>

#include "vguide/model/stan_model.hpp"
#include "vguide/options.hpp"

namespace po = boost::program_options;
namespace fs = std::filesystem;

namespace vguide::host {

namespace {

po::options_description make_options() {
  po::options_description general("General");
  general.add_options()("help,h", "print this help and exit")("version", "print versions and exit")(
      "plugin", po::value<std::vector<std::string>>()->composing(),
      "guide plugin: a path (./libiaf.so), a file name (libiaf.so) or a family name (iaf); repeatable")(
      "list-plugins", "list the loaded families (without --plugin: every plugin found) and the folders searched, then exit")(
      "describe", po::value<std::string>(), "print a family's description and option table, then exit")(
      "check-plugin", po::value<std::string>(), "load this plugin file in a child process and report it, then exit")(
      "quiet,q", "no progress output (warnings and errors only)")(
      "log-level", po::value<std::string>()->default_value("info"), "trace, debug, info, warn, error or off")(
      "threads", po::value<int>()->default_value(1), "LibTorch intra-op threads")(
      "timings", "log on stderr how long each phase of the run takes, from process start to written outputs");
  po::options_description model("Model and guide");
  model.add_options()("model", po::value<std::string>(), "the program to fit: a .qvr or a .stan file")(
      "language", po::value<std::string>(), "the model's language, qvr or stan (default: by the file's extension)")(
      "stan-evaluator", po::value<std::string>(),
      "auto, compiled or interpreted: how a Stan program's log joint runs (default auto; docs/stan.md)")(
      "data", po::value<std::string>(), "CmdStan JSON data")(
      "guide", po::value<std::string>(), "family to fit with (default: the only one loaded)")(
      "guide-opt", po::value<std::vector<std::string>>()->composing(), "guide option name=value; repeatable");
  po::options_description fit("Fit");
  fit.add_options()("steps", po::value<int64_t>()->default_value(20000),
                    "the most optimiser steps (the convergence rule stops sooner; --convergence none runs them all)")(
      "dtype", po::value<std::string>()->default_value("float64"),
      "float64 or float32: the guide's parameters, the model's evaluation and the data")(
      "particles", po::value<std::string>()->default_value("auto"),
      "particles per step: S for the ELBO, K for IWAE; auto: 8 for flows, 4 for guides with more than two "
      "parameters per latent dimension, else 1 (docs/fitting.md)")(
      "objective", po::value<std::string>()->default_value("elbo"), "elbo or iwae")(
      "stl", "sticking-the-landing gradient (ELBO only)")(
      "optimizer", po::value<std::string>()->default_value("adam"), "adam, adamw, sgd or rmsprop")(
      "step", po::value<std::string>()->default_value("auto"),
      "auto, autograd or direct: how a step gets its gradients (docs/performance.md)")(
      "lr", po::value<double>()->default_value(0.01),
      "learning rate (a location's step is in units of the guide's own scale, see --no-scale-steps)")(
      "no-scale-steps", "take every parameter's step as the optimiser gives it (not in units of the guide's scale)")(
      "no-average", "use the last iterate, not the average of the stationary iterates")(
      "momentum", po::value<double>()->default_value(0.9), "sgd / rmsprop momentum")(
      "weight-decay", po::value<double>()->default_value(-1.0), "weight decay (default: 0.01 for adamw, else 0)")(
      "schedule", po::value<std::string>()->default_value("constant"), "constant, exponential, step or cosine")(
      "gamma", po::value<double>()->default_value(0.0), "decay factor (default 0.999 exponential, 0.5 step)")(
      "step-size", po::value<int64_t>()->default_value(1000), "steps between decays of the step schedule")(
      "min-lr", po::value<double>()->default_value(0.0), "floor of the cosine schedule")(
      "clip-norm", po::value<double>()->default_value(0.0), "clip the gradient's 2-norm to this (0: off)")(
      "convergence", po::value<std::string>()->default_value("auto"),
      "auto (the iterates' drift, then the MCSE of their average; docs/fitting.md), none, or Stan ADVI's rule: mean, median or either")(
      "tol-rel-obj", po::value<double>()->default_value(0.01), "relative ELBO change that counts as converged")(
      "eval-elbo", po::value<int64_t>()->default_value(100), "steps between convergence checks")(
      "init", po::value<std::string>()->default_value("pathfinder"),
      "pathfinder, default, median, mean, sample, uniform or value (with --init-file)")(
      "init-file", po::value<std::string>(), "JSON of initial values per site, for --init value")(
      "init-radius", po::value<double>()->default_value(2.0), "half-width of the uniform start (uniform, pathfinder)")(
      "batch-size", po::value<int64_t>()->default_value(0), "data rows per step, scaled by N/B (0: all)")(
      "max-non-finite", po::value<int64_t>()->default_value(20), "stop after this many non-finite steps in a row")(
      "seed", po::value<uint64_t>()->default_value(0), "seed of every random stream");
  po::options_description out("Output");
  out.add_options()("output,o", po::value<std::string>()->default_value("vguide-output"), "output folder")(
      "overwrite", "replace a previous run's files in --output")(
      "strict", "exit with 6 when the fit has warnings (bad PSIS k-hat, not converged, skipped steps)")(
      "draws", po::value<int64_t>()->default_value(1000), "posterior draws written to draws.csv")(
      "elbo-particles", po::value<int64_t>()->default_value(1000), "fresh draws for the final ELBO and PSIS k-hat")(
      "psis-resample", "also write draws_psis.csv: the draws resampled with their Pareto-smoothed importance weights")(
      "resume", po::value<std::string>(), "continue the fit saved in this folder (written back there by default)")(
      "checkpoint-every", po::value<int64_t>()->default_value(0),
      "also write checkpoint.pt every this many steps (0: only at the end)");
  po::options_description dist("Distributed (docs/distributed.md; default from RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT)");
  dist.add_options()("launch", po::value<int>(), "start this many local ranks on 127.0.0.1 and wait for them")(
      "rank", po::value<int64_t>(), "this process's rank, 0 .. world size - 1")(
      "world-size", po::value<int64_t>(), "number of ranks")(
      "master", po::value<std::string>(), "HOST:PORT where rank 0 listens for the rendezvous")(
      "dist-timeout", po::value<double>()->default_value(300.0),
      "seconds a rendezvous or an all-reduce waits for the slowest rank before the fit stops");
  po::options_description all("vguide-host: fit a .qvr or Stan model with a guide family loaded as a plugin");
  all.add(general).add(model).add(fit).add(out).add(dist);
  return all;
}

template <class T>
T parse_choice(T (*parse)(const std::string&), const std::string& flag, const std::string& value) {
  try {
    return parse(value);
  } catch (const std::invalid_argument& e) {
    throw UsageError("--" + flag + ": " + e.what());
  }
}

// "auto" (0: the fit chooses, vguide::default_particles) or a positive count.
int64_t parse_particles(const std::string& text) {
  if (text == "auto") return 0;
  size_t used = 0;
  long long n = 0;
  try {
    n = std::stoll(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used != text.size() || n < 1) throw std::invalid_argument("'" + text + "' is neither auto nor a positive count");
  return n;
}

std::string trajectory_text(const po::variables_map& vm) {
  // What changes the fit's trajectory; --steps may differ on resume (a longer fit).
  std::ostringstream s;
  for (const char* key : {"objective", "optimizer", "schedule", "convergence", "init", "dtype"})
    s << key << "=" << vm[key].as<std::string>() << ";";
  // As parsed, so that "8" and "08" resume each other ("auto" stays auto: the count it
  // chooses depends on the family, which the checkpoint records apart).
  const std::string particles = vm["particles"].as<std::string>();
  try {
    const int64_t n = parse_particles(particles);
    s << "particles=" << (n == 0 ? std::string("auto") : std::to_string(n)) << ";";
  } catch (const std::invalid_argument&) {
    s << "particles=" << particles << ";";  // refused when the options are read
  }
  for (const char* key : {"lr", "momentum", "weight-decay", "gamma", "min-lr", "clip-norm", "tol-rel-obj", "init-radius"})
    s << key << "=" << vm[key].as<double>() << ";";
  for (const char* key : {"step-size", "eval-elbo", "batch-size", "max-non-finite"})
    s << key << "=" << vm[key].as<int64_t>() << ";";
  s << "stl=" << vm.count("stl") << ";seed=" << vm["seed"].as<uint64_t>() << ";average=" << !vm.count("no-average")
    << ";scale-steps=" << !vm.count("no-scale-steps");
  return s.str();
}

/// --model, --data, --guide and --guide-opt.
void read_model_and_guide(const po::variables_map& vm, const PluginManager& plugins, Settings& s) {
  if (!vm.count("model")) throw UsageError("--model is required");
  if (!vm.count("data")) throw UsageError("--data is required");
  s.model_path = vm["model"].as<std::string>();
  s.stan = model::is_stan_path(s.model_path);
  if (vm.count("language")) {
    const std::string language = vm["language"].as<std::string>();
    if (language != "stan" && language != "qvr")
      throw UsageError("--language " + language + ": must be qvr or stan");
    s.stan = language == "stan";
  }
  if (vm.count("stan-evaluator")) {
    const std::string e = vm["stan-evaluator"].as<std::string>();
    if (e != "auto" && e != "compiled" && e != "interpreted")
      throw UsageError("--stan-evaluator " + e + ": must be auto, compiled or interpreted");
    if (!s.stan) throw UsageError("--stan-evaluator: the model is not a Stan program");
    s.stan_evaluator = e == "compiled"      ? model::StanEvaluator::compiled
                       : e == "interpreted" ? model::StanEvaluator::interpreted
                                            : model::StanEvaluator::automatic;
  }
  s.data_path = vm["data"].as<std::string>();
  const auto families = plugins.families();
  if (vm.count("guide")) {
    s.family = vm["guide"].as<std::string>();
    if (!plugins.has_family(s.family))
      throw UsageError("--guide " + s.family + ": no such family is loaded (load it with --plugin)");
  } else if (families.size() == 1) {
    s.family = families.front().name;
  } else {
    throw UsageError(families.empty() ? "no guide plugin loaded: pass --plugin (see --list-plugins)"
                                      : "several families are loaded: choose one with --guide");
  }
  if (vm.count("guide-opt")) s.guide_options = vm["guide-opt"].as<std::vector<std::string>>();
  try {
    s.guide_options_text = Options::parse(s.family, plugins.options_schema(s.family), s.guide_options).to_string();
  } catch (const std::invalid_argument& e) {
    throw UsageError(std::string("--guide-opt: ") + e.what());
  }
}

/// The fit's options (vguide::FitOptions), then the outputs' counts.
void read_fit_options(const po::variables_map& vm, Settings& s) {
  FitOptions& options = s.fit;
  options.steps = vm["steps"].as<int64_t>();
  options.objective.kind = parse_choice(parse_objective, "objective", vm["objective"].as<std::string>());
  options.objective.particles = parse_choice(parse_particles, "particles", vm["particles"].as<std::string>());
  options.objective.stick_the_landing = vm.count("stl") != 0;
  options.optimizer.kind = parse_choice(parse_optimizer, "optimizer", vm["optimizer"].as<std::string>());
  options.step_path = parse_choice(parse_step_path, "step", vm["step"].as<std::string>());
  options.optimizer.lr = vm["lr"].as<double>();
  options.optimizer.momentum = vm["momentum"].as<double>();
  options.optimizer.weight_decay = vm["weight-decay"].as<double>();
  options.schedule.kind = parse_choice(parse_schedule, "schedule", vm["schedule"].as<std::string>());
  options.schedule.gamma = vm["gamma"].as<double>();
  options.schedule.step_size = vm["step-size"].as<int64_t>();
  options.schedule.min_lr = vm["min-lr"].as<double>();
  options.clip_norm = vm["clip-norm"].as<double>();
  options.convergence.rule = parse_choice(parse_convergence_rule, "convergence", vm["convergence"].as<std::string>());
  options.convergence.tol_rel_obj = vm["tol-rel-obj"].as<double>();
  options.convergence.eval_elbo = vm["eval-elbo"].as<int64_t>();
  options.init.strategy = parse_choice(parse_init_strategy, "init", vm["init"].as<std::string>());
  options.init.radius = vm["init-radius"].as<double>();
  options.dtype = parse_choice(parse_dtype, "dtype", vm["dtype"].as<std::string>());
  options.averaging.enabled = vm.count("no-average") == 0;
  options.scale_steps = vm.count("no-scale-steps") == 0;
  options.max_non_finite = vm["max-non-finite"].as<int64_t>();
  options.seed = s.seed;
  try {
    validate(options);
  } catch (const std::invalid_argument& e) {
    throw UsageError(e.what());
  }
  if ((options.init.strategy == InitStrategy::value) != (vm.count("init-file") != 0))
    throw UsageError("--init value and --init-file go together");
  if (vm.count("init-file")) s.init_file = vm["init-file"].as<std::string>();
  s.draws = vm["draws"].as<int64_t>();
  s.elbo_particles = vm["elbo-particles"].as<int64_t>();
  if (s.draws < 1) throw UsageError("--draws is " + std::to_string(s.draws) + ", but must be at least 1");
  if (s.elbo_particles < 2)
    throw UsageError("--elbo-particles is " + std::to_string(s.elbo_particles) + ", but must be at least 2");
  s.batch_size = vm["batch-size"].as<int64_t>();
  if (s.batch_size < 0)
    throw UsageError("--batch-size is " + std::to_string(s.batch_size) + ", but must be at least 0 (0: all rows)");
  s.checkpoint_every = vm["checkpoint-every"].as<int64_t>();
  if (s.checkpoint_every < 0)
    throw UsageError("--checkpoint-every is " + std::to_string(s.checkpoint_every) +
                     ", but must be at least 0 (0: at the end)");
}

/// --launch, or this process's place in a distributed fit. The flags override
/// PyTorch's environment variables.
void read_ranks(const CommandLine& command_line, Settings& s) {
  const po::variables_map& vm = command_line.flags;
  const double timeout_s = vm["dist-timeout"].as<double>();
  if (!(timeout_s > 0.0) || !std::isfinite(timeout_s))
    throw UsageError("--dist-timeout is " + (std::ostringstream() << timeout_s).str() +
                     ", but must be a positive number of seconds");
  if (vm.count("launch")) {
    LaunchSettings launch;
    launch.ranks = vm["launch"].as<int>();
    if (launch.ranks < 1) throw UsageError("--launch is " + std::to_string(launch.ranks) + ", but must be at least 1");
    if (vm.count("rank") || vm.count("world-size") || vm.count("master"))
      throw UsageError("--launch starts its own ranks; drop --rank, --world-size and --master");
    const std::vector<std::string>& argv = command_line.argv;
    for (size_t i = 0; i < argv.size(); ++i) {
      const std::string& a = argv[i];
      if (a == "--launch") {
        ++i;  // and its value
        continue;
      }
      if (a.rfind("--launch=", 0) == 0) continue;
      launch.args.push_back(a);
    }
    // The ranks notice a lost rank within the timeout; then they are killed.
    launch.grace = std::chrono::milliseconds(static_cast<int64_t>(timeout_s * 1000.0)) + std::chrono::seconds(30);
    s.launch = std::move(launch);
    return;
  }
  RendezvousOptions& dist = s.dist;
  try {
    dist = rendezvous_from_env();
  } catch (const std::invalid_argument& e) {
    throw UsageError(e.what());
  }
  if (vm.count("rank")) dist.rank = vm["rank"].as<int64_t>();
  if (vm.count("world-size")) dist.world_size = vm["world-size"].as<int64_t>();
  if (vm.count("master")) {
    const std::string master = vm["master"].as<std::string>();
    const auto colon = master.rfind(':');
    char* end = nullptr;
    const long port = colon == std::string::npos ? 0 : std::strtol(master.c_str() + colon + 1, &end, 10);
    if (colon == std::string::npos || colon == 0 || !end || *end != '\0' || port < 1 || port > 65535)
      throw UsageError("--master is '" + master + "', but must be HOST:PORT with a port in [1, 65535]");
    dist.master_addr = master.substr(0, colon);
    dist.master_port = static_cast<int>(port);
  }
  dist.timeout = std::chrono::milliseconds(static_cast<int64_t>(timeout_s * 1000.0));
  try {
    validate(dist);
  } catch (const std::invalid_argument& e) {
    throw UsageError(std::string("distributed settings: ") + e.what());
  }
}

}  // namespace

CommandLine parse_command_line(int argc, char** argv) {
  CommandLine command_line{make_options(), {}, std::vector<std::string>(argv, argv + argc)};
  try {
    po::store(po::parse_command_line(argc, argv, command_line.table), command_line.flags);
    po::notify(command_line.flags);
  } catch (const po::error& e) {
    throw UsageError(e.what());
  }
  return command_line;
}

Settings read_general_settings(const CommandLine& command_line) {
  const po::variables_map& vm = command_line.flags;
  Settings s;
  const std::string level = vm["log-level"].as<std::string>();
  s.log_level = spdlog::level::from_str(level);
  if (s.log_level == spdlog::level::off && level != "off")
    throw UsageError("--log-level: unknown level '" + level + "'; valid: trace, debug, info, warn, error, off");
  s.quiet = vm.count("quiet") != 0;
  s.threads = vm["threads"].as<int>();
  if (s.threads < 1) throw UsageError("--threads is " + std::to_string(s.threads) + ", but must be at least 1");
  s.seed = vm["seed"].as<uint64_t>();
  if (vm.count("plugin")) s.plugins = vm["plugin"].as<std::vector<std::string>>();
  s.list_plugins = vm.count("list-plugins") != 0;
  if (vm.count("describe")) s.describe = vm["describe"].as<std::string>();
  if (vm.count("check-plugin")) s.check_plugin = vm["check-plugin"].as<std::string>();
  return s;
}

void read_fit_settings(const CommandLine& command_line, const PluginManager& plugins, Settings& s) {
  const po::variables_map& vm = command_line.flags;
  read_model_and_guide(vm, plugins, s);
  read_fit_options(vm, s);
  read_ranks(command_line, s);
  if (s.launch) return;

  s.output = vm["output"].as<std::string>();
  if (vm.count("resume")) {
    s.resume = fs::path(vm["resume"].as<std::string>());
    if (vm["output"].defaulted()) s.output = *s.resume;
  }
  s.overwrite = vm.count("overwrite") != 0;
  s.psis_resample = vm.count("psis-resample") != 0;
  s.strict = vm.count("strict") != 0;
  s.trajectory = trajectory_text(vm);
  s.recorded = {{"objective", vm["objective"].as<std::string>()},
                {"particles", vm["particles"].as<std::string>()},
                {"optimizer", vm["optimizer"].as<std::string>()},
                {"lr", std::to_string(s.fit.optimizer.lr)},
                {"schedule", vm["schedule"].as<std::string>()},
                {"init", vm["init"].as<std::string>()},
                {"convergence", vm["convergence"].as<std::string>()},
                {"dtype", vm["dtype"].as<std::string>()},
                {"average", vm.count("no-average") ? "0" : "1"}};
}

}  // namespace vguide::host
