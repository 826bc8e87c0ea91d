// vguide-host: a thin command line over the runtime (vguide/runtime/fit.hpp). Loads
// guide plugins, reads a .qvr program and CmdStan JSON data, fits, and writes
// summary.json, draws.csv (Stan's variational layout), elbo.csv and a checkpoint.
// docs/cli.md documents every flag; docs/outputs.md every file.
//
//   vguide-host --plugin libiaf.so --model m.qvr --data d.json --output out/
//
// Exit codes: 0 fitted; 1 bad input (a file, the model, the data, a checkpoint);
// 2 bad usage (a flag or its value, a guide option); 3 a plugin that fails to load or
// to build its guide; 4 a numerical failure (outputs of the fit so far are written);
// 5 a distributed fit that lost a rank or whose ranks disagree (docs/distributed.md);
// 6 a plugin that killed the --check-plugin child (host/check_plugin.hpp);
// 128 + signal when interrupted by SIGINT / SIGTERM (outputs and a checkpoint written).
#include <torch/torch.h>

#include <boost/program_options.hpp>
#include <nlohmann/json.hpp>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>
#include <unistd.h>

#include "check_plugin.hpp"
#include "cli.hpp"
#include "launch.hpp"
#include "output_folder.hpp"
#include "progress.hpp"
#include "vguide/guide.hpp"
#include "vguide/model/data.hpp"
#include "vguide/model/program.hpp"
#include "vguide/model/program_model.hpp"
#include "vguide/runtime/distributed.hpp"
#include "vguide/runtime/fit.hpp"
#include "vguide/runtime/plugin_manager.hpp"
#include "vguide/runtime/posterior.hpp"
#include "vguide/runtime/psis.hpp"
#include "vguide/runtime/stan_csv.hpp"
#include "vguide/version.hpp"

namespace po = boost::program_options;
namespace fs = std::filesystem;
using vguide::host::write_atomically;

namespace {

enum Exit { kOk = 0, kInput = 1, kUsage = 2, kPlugin = 3, kNumerical = 4, kDistributed = 5 };

// "vguide-host", or "vguide-host[rank 2]" in a distributed fit: whose line it is.
std::string g_who = "vguide-host";

// One line on stderr in one write, so that the lines of ranks sharing a terminal
// do not interleave.
void say(const std::string& line) {
  const std::string text = g_who + ": " + line + "\n";
  if (::write(STDERR_FILENO, text.data(), text.size()) < 0) return;  // nowhere left to say it
}

struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};
struct InputError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

std::atomic<bool> g_interrupted{false};
volatile std::sig_atomic_t g_signal = 0;

extern "C" void on_signal(int sig) {
  g_signal = sig;
  g_interrupted.store(true);
  std::signal(sig, SIG_DFL);  // a second Ctrl-C ends the process at once
}

std::string read_text(const std::string& path, const char* flag) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw InputError(std::string(flag) + " " + path + ": cannot be read");
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

nlohmann::json tensor_json(const at::Tensor& t) {
  if (t.dim() == 0) return t.item<double>();
  nlohmann::json out = nlohmann::json::array();
  for (int64_t i = 0; i < t.size(0); ++i) out.push_back(tensor_json(t[i]));
  return out;
}

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
      "threads", po::value<int>()->default_value(1), "LibTorch intra-op threads");
  po::options_description model("Model and guide");
  model.add_options()("model", po::value<std::string>(), ".qvr program to fit")(
      "data", po::value<std::string>(), "CmdStan JSON data")(
      "guide", po::value<std::string>(), "family to fit with (default: the only one loaded)")(
      "guide-opt", po::value<std::vector<std::string>>()->composing(), "guide option name=value; repeatable");
  po::options_description fit("Fit");
  fit.add_options()("steps", po::value<int64_t>()->default_value(2000), "optimiser steps (the most, with --convergence)")(
      "particles", po::value<int64_t>()->default_value(1), "particles per step: S for the ELBO, K for IWAE")(
      "objective", po::value<std::string>()->default_value("elbo"), "elbo or iwae")(
      "stl", "sticking-the-landing gradient (ELBO only)")(
      "optimizer", po::value<std::string>()->default_value("adam"), "adam, adamw, sgd or rmsprop")(
      "lr", po::value<double>()->default_value(0.01), "learning rate")(
      "momentum", po::value<double>()->default_value(0.9), "sgd / rmsprop momentum")(
      "weight-decay", po::value<double>()->default_value(-1.0), "weight decay (default: 0.01 for adamw, else 0)")(
      "schedule", po::value<std::string>()->default_value("constant"), "constant, exponential, step or cosine")(
      "gamma", po::value<double>()->default_value(0.0), "decay factor (default 0.999 exponential, 0.5 step)")(
      "step-size", po::value<int64_t>()->default_value(1000), "steps between decays of the step schedule")(
      "min-lr", po::value<double>()->default_value(0.0), "floor of the cosine schedule")(
      "clip-norm", po::value<double>()->default_value(0.0), "clip the gradient's 2-norm to this (0: off)")(
      "convergence", po::value<std::string>()->default_value("none"),
      "Stan ADVI's rule: none, mean, median or either")(
      "tol-rel-obj", po::value<double>()->default_value(0.01), "relative ELBO change that counts as converged")(
      "eval-elbo", po::value<int64_t>()->default_value(100), "steps between convergence checks")(
      "init", po::value<std::string>()->default_value("default"),
      "default, median, mean, sample, uniform or value (with --init-file)")(
      "init-file", po::value<std::string>(), "JSON of initial values per site, for --init value")(
      "init-radius", po::value<double>()->default_value(2.0), "half-width of --init uniform")(
      "batch-size", po::value<int64_t>()->default_value(0), "data rows per step, scaled by N/B (0: all)")(
      "max-non-finite", po::value<int64_t>()->default_value(20), "stop after this many non-finite steps in a row")(
      "seed", po::value<uint64_t>()->default_value(0), "seed of every random stream");
  po::options_description out("Output");
  out.add_options()("output,o", po::value<std::string>()->default_value("vguide-output"), "output folder")(
      "overwrite", "replace a previous run's files in --output")(
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
  po::options_description all("vguide-host: fit a .qvr model with a guide family loaded as a plugin");
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

// Every plugin on the search path; one that fails to load is reported and skipped,
// so that a stray file does not hide the others.
void load_every_plugin(vguide::PluginManager& plugins) {
  for (const auto& path : vguide::PluginManager::discover()) {
    try {
      plugins.load(path.string());
    } catch (const vguide::PluginError& e) {
      std::cerr << "vguide-host: skipped " << e.what() << "\n";
    }
  }
}

void list_plugins(const vguide::PluginManager& plugins) {
  for (const auto& f : plugins.families()) std::cout << f.name << "\t" << f.description << "\t" << f.library << "\n";
  std::cout << "searched:";
  for (const auto& dir : vguide::PluginManager::search_path()) std::cout << " " << dir.string();
  std::cout << "\n";
}

std::string settings_text(const po::variables_map& vm) {
  // What changes the fit's trajectory; --steps may differ on resume (a longer fit).
  std::ostringstream s;
  for (const char* key : {"objective", "optimizer", "schedule", "convergence", "init"})
    s << key << "=" << vm[key].as<std::string>() << ";";
  for (const char* key : {"lr", "momentum", "weight-decay", "gamma", "min-lr", "clip-norm", "tol-rel-obj", "init-radius"})
    s << key << "=" << vm[key].as<double>() << ";";
  for (const char* key : {"particles", "step-size", "eval-elbo", "batch-size", "max-non-finite"})
    s << key << "=" << vm[key].as<int64_t>() << ";";
  s << "stl=" << vm.count("stl") << ";seed=" << vm["seed"].as<uint64_t>();
  return s.str();
}

struct Outputs {
  fs::path dir;
  std::string model_name, family, guide_options;
  uint64_t seed = 0;
  int64_t draws = 1000, elbo_particles = 1000;
  bool psis_resample = false;
  bool write = true;  // false on the ranks other than 0 of a distributed fit
  std::vector<std::pair<std::string, std::string>> settings;
};

// Writes the output folder; returns the final ELBO estimate.
// Distributed, every rank computes them (`model` averages the log joint over the
// ranks) and rank 0 writes.
vguide::ElboEstimate write_outputs(const Outputs& o, const vguide::Model& model, vguide::Guide& guide,
                                   const vguide::Fit& fit, double wall_time) {
  const vguide::PosteriorDraws draws = vguide::draw_posterior(model, guide, o.draws);
  const vguide::ElboEstimate elbo = vguide::estimate_elbo(model, guide, o.elbo_particles);
  if (!o.write) return elbo;  // the collective parts are done; the rest is rank 0's
  double khat = std::nan("");
  std::string reading = "not computed (non-finite log ratios)";
  if (o.elbo_particles < vguide::kPsisMinDraws) {
    reading = "not computed (fewer than " + std::to_string(vguide::kPsisMinDraws) + " ELBO particles)";
  } else if (at::isfinite(elbo.log_ratios).all().item<bool>()) {
    khat = vguide::psis(elbo.log_ratios).khat;
    reading = vguide::khat_reading(khat);
  }

  nlohmann::json summary;
  summary["model"] = o.model_name;
  summary["guide"] = o.family;
  summary["guide_options"] = o.guide_options;
  for (const auto& q : vguide::summarize(draws)) {
    nlohmann::json site;
    site["shape"] = q.shape;
    site["derived"] = q.derived;
    site["mean"] = tensor_json(q.mean);
    site["sd"] = tensor_json(q.sd);
    site["q5"] = tensor_json(q.q5);
    site["q50"] = tensor_json(q.q50);
    site["q95"] = tensor_json(q.q95);
    summary["sites"][q.name] = site;
  }
  auto finite_or_null = [](double v) { return std::isfinite(v) ? nlohmann::json(v) : nlohmann::json(nullptr); };
  summary["elbo"] = finite_or_null(elbo.elbo);
  summary["elbo_se"] = finite_or_null(elbo.se);
  summary["elbo_particles"] = o.elbo_particles;
  summary["psis_khat"] = finite_or_null(khat);
  summary["psis_reading"] = reading;
  summary["draws"] = o.draws;
  summary["steps"] = fit.steps_done();
  summary["steps_planned"] = fit.options().steps;
  summary["stopped_because"] = vguide::to_string(fit.result().reason);
  if (!fit.result().detail.empty()) summary["stop_detail"] = fit.result().detail;
  summary["non_finite_steps"] = fit.result().non_finite_steps;
  summary["seed"] = o.seed;
  for (const auto& [key, value] : o.settings) summary["settings"][key] = value;
  for (const auto& [key, value] : guide.diagnostics()) summary["diagnostics"][key] = value;
  summary["versions"] = {{"vguide", VGUIDE_SDK_VERSION}, {"torch", TORCH_VERSION}};
  summary["wall_time_s"] = wall_time;  // the one field that differs between identical runs

  vguide::StanCsvContent csv;
  csv.model_name = o.model_name;
  csv.settings = o.settings;
  csv.settings.emplace_back("guide", o.family);
  csv.settings.emplace_back("iter", std::to_string(fit.steps_done()));
  csv.settings.emplace_back("seed", std::to_string(o.seed));
  for (const auto& q : draws.quantities) csv.quantities.push_back({q.name, q.draws});
  csv.log_p = draws.log_p;
  csv.log_g = draws.log_g;
  std::ostringstream csv_text;
  vguide::write_stan_csv(csv_text, csv);
  std::ostringstream psis_text;
  if (o.psis_resample) {
    // Importance resampling of the output draws toward the posterior: each draw's
    // ratio p/q is in its own row (log_p__ - log_g__), smoothed by PSIS.
    const at::Tensor log_ratios = draws.log_p - draws.log_g;
    if (!at::isfinite(log_ratios).all().item<bool>() || o.draws < vguide::kPsisMinDraws)
      throw std::invalid_argument("--psis-resample needs at least " + std::to_string(vguide::kPsisMinDraws) +
                                  " draws with finite densities");
    at::Generator gen = at::detail::createCPUGenerator(o.seed ^ 0x9515ULL);
    const at::Tensor pick = at::multinomial(vguide::psis(log_ratios).log_weights.exp(), o.draws, true, gen);
    vguide::StanCsvContent resampled = csv;
    for (auto& q : resampled.quantities) q.draws = q.draws.index_select(0, pick);
    resampled.log_p = csv.log_p.index_select(0, pick);
    resampled.log_g = csv.log_g.index_select(0, pick);
    resampled.settings.emplace_back("psis_resampled", "1");
    vguide::write_stan_csv(psis_text, resampled);
  }

  std::ostringstream elbo_text;
  elbo_text << "step,elbo\n";
  char buf[64];
  for (size_t i = 0; i < fit.trace().size(); ++i) {
    std::snprintf(buf, sizeof buf, "%zu,%.17g\n", i + 1, fit.trace()[i]);
    elbo_text << buf;
  }
  write_atomically(o.dir / "draws.csv", csv_text.str());
  write_atomically(o.dir / "elbo.csv", elbo_text.str());
  if (o.psis_resample) write_atomically(o.dir / "draws_psis.csv", psis_text.str());
  write_atomically(o.dir / "summary.json", summary.dump(2) + "\n");
  spdlog::info("ELBO {:.6g} ± {:.2g} ({} draws); PSIS k-hat {:.3g}: {}", elbo.elbo, elbo.se, o.elbo_particles, khat,
               reading);
  return elbo;
}

int run(int argc, char** argv) {
  const auto start = std::chrono::steady_clock::now();
  const po::options_description desc = make_options();
  po::variables_map vm;
  try {
    po::store(po::parse_command_line(argc, argv, desc), vm);
    po::notify(vm);
  } catch (const po::error& e) {
    throw UsageError(e.what());
  }
  if (vm.count("help")) {
    std::cout << desc << "\nExample:\n  vguide-host --plugin libnormal.so --model eight_schools.qvr "
                         "--data eight_schools.json --output out\n\nSee docs/cli.md.\n";
    return kOk;
  }
  if (vm.count("version")) {
    std::cout << "vguide-host " << VGUIDE_SDK_VERSION << " (plugin ABI " << VGUIDE_ABI_MAJOR << "." << VGUIDE_ABI_MINOR
              << ", LibTorch " << TORCH_VERSION << ")\n";
    return kOk;
  }

  const std::string level = vm["log-level"].as<std::string>();
  const auto spd_level = spdlog::level::from_str(level);
  if (spd_level == spdlog::level::off && level != "off")
    throw UsageError("--log-level: unknown level '" + level + "'; valid: trace, debug, info, warn, error, off");
  const bool quiet = vm.count("quiet") != 0;
  spdlog::set_level(quiet ? std::max(spd_level, spdlog::level::warn) : spd_level);

  const int threads = vm["threads"].as<int>();
  if (threads < 1) throw UsageError("--threads is " + std::to_string(threads) + ", but must be at least 1");
  at::set_num_threads(threads);

  if (vm.count("check-plugin")) return vguide::host::check_plugin(vm["check-plugin"].as<std::string>());
  const uint64_t seed = vm["seed"].as<uint64_t>();
  vguide::PluginManager plugins(seed);
  if (vm.count("plugin"))
    for (const auto& p : vm["plugin"].as<std::vector<std::string>>()) plugins.load(p);
  if (vm.count("list-plugins")) {
    if (!vm.count("plugin")) load_every_plugin(plugins);
    list_plugins(plugins);
    return kOk;
  }
  if (vm.count("describe")) {
    const std::string family = vm["describe"].as<std::string>();
    if (!plugins.has_family(family)) {
      try {
        plugins.load(family);
      } catch (const vguide::PluginError&) {
        throw UsageError("--describe " + family + ": no such family is loaded or found (see --list-plugins)");
      }
    }
    for (const auto& f : plugins.families())
      if (f.name == family) std::cout << family << ": " << f.description << "\n";
    std::cout << "options:\n" << vguide::describe_options(plugins.options_schema(family));
    return kOk;
  }

  // Flags first, so a usage error costs nothing.
  if (!vm.count("model")) throw UsageError("--model is required");
  if (!vm.count("data")) throw UsageError("--data is required");
  const auto families = plugins.families();
  std::string family;
  if (vm.count("guide")) {
    family = vm["guide"].as<std::string>();
    if (!plugins.has_family(family)) throw UsageError("--guide " + family + ": no such family is loaded (load it with --plugin)");
  } else if (families.size() == 1) {
    family = families.front().name;
  } else {
    throw UsageError(families.empty() ? "no guide plugin loaded: pass --plugin (see --list-plugins)"
                                      : "several families are loaded: choose one with --guide");
  }
  const std::vector<std::string> guide_options =
      vm.count("guide-opt") ? vm["guide-opt"].as<std::vector<std::string>>() : std::vector<std::string>{};
  std::string options_text;
  try {
    options_text = vguide::Options::parse(family, plugins.options_schema(family), guide_options).to_string();
  } catch (const std::invalid_argument& e) {
    throw UsageError(std::string("--guide-opt: ") + e.what());
  }

  vguide::FitOptions options;
  options.steps = vm["steps"].as<int64_t>();
  options.objective.kind = parse_choice(vguide::parse_objective, "objective", vm["objective"].as<std::string>());
  options.objective.particles = vm["particles"].as<int64_t>();
  options.objective.stick_the_landing = vm.count("stl") != 0;
  options.optimizer.kind = parse_choice(vguide::parse_optimizer, "optimizer", vm["optimizer"].as<std::string>());
  options.optimizer.lr = vm["lr"].as<double>();
  options.optimizer.momentum = vm["momentum"].as<double>();
  options.optimizer.weight_decay = vm["weight-decay"].as<double>();
  options.schedule.kind = parse_choice(vguide::parse_schedule, "schedule", vm["schedule"].as<std::string>());
  options.schedule.gamma = vm["gamma"].as<double>();
  options.schedule.step_size = vm["step-size"].as<int64_t>();
  options.schedule.min_lr = vm["min-lr"].as<double>();
  options.clip_norm = vm["clip-norm"].as<double>();
  options.convergence.rule =
      parse_choice(vguide::parse_convergence_rule, "convergence", vm["convergence"].as<std::string>());
  options.convergence.tol_rel_obj = vm["tol-rel-obj"].as<double>();
  options.convergence.eval_elbo = vm["eval-elbo"].as<int64_t>();
  options.init.strategy = parse_choice(vguide::parse_init_strategy, "init", vm["init"].as<std::string>());
  options.init.radius = vm["init-radius"].as<double>();
  options.max_non_finite = vm["max-non-finite"].as<int64_t>();
  options.seed = seed;
  try {
    vguide::validate(options);
  } catch (const std::invalid_argument& e) {
    throw UsageError(e.what());
  }
  if ((options.init.strategy == vguide::InitStrategy::value) != (vm.count("init-file") != 0))
    throw UsageError("--init value and --init-file go together");
  const int64_t num_draws = vm["draws"].as<int64_t>(), elbo_particles = vm["elbo-particles"].as<int64_t>();
  if (num_draws < 1) throw UsageError("--draws is " + std::to_string(num_draws) + ", but must be at least 1");
  if (elbo_particles < 2)
    throw UsageError("--elbo-particles is " + std::to_string(elbo_particles) + ", but must be at least 2");
  const int64_t batch = vm["batch-size"].as<int64_t>();
  if (batch < 0) throw UsageError("--batch-size is " + std::to_string(batch) + ", but must be at least 0 (0: all rows)");
  const int64_t checkpoint_every = vm["checkpoint-every"].as<int64_t>();
  if (checkpoint_every < 0)
    throw UsageError("--checkpoint-every is " + std::to_string(checkpoint_every) + ", but must be at least 0 (0: at the end)");

  // Distributed: the flags override PyTorch's environment variables.
  const double timeout_s = vm["dist-timeout"].as<double>();
  if (!(timeout_s > 0.0) || !std::isfinite(timeout_s))
    throw UsageError("--dist-timeout is " + (std::ostringstream() << timeout_s).str() +
                     ", but must be a positive number of seconds");
  if (vm.count("launch")) {
    const int ranks = vm["launch"].as<int>();
    if (ranks < 1) throw UsageError("--launch is " + std::to_string(ranks) + ", but must be at least 1");
    if (vm.count("rank") || vm.count("world-size") || vm.count("master"))
      throw UsageError("--launch starts its own ranks; drop --rank, --world-size and --master");
    std::vector<std::string> args;
    for (int i = 0; i < argc; ++i) {
      const std::string a = argv[i];
      if (a == "--launch") {
        ++i;  // and its value
        continue;
      }
      if (a.rfind("--launch=", 0) == 0) continue;
      args.push_back(a);
    }
    // The ranks notice a lost rank within the timeout; then they are killed.
    const auto grace = std::chrono::milliseconds(static_cast<int64_t>(timeout_s * 1000.0)) + std::chrono::seconds(30);
    return vguide::host::launch_local(ranks, args, grace);
  }
  vguide::RendezvousOptions dist;
  try {
    dist = vguide::rendezvous_from_env();
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
    vguide::validate(dist);
  } catch (const std::invalid_argument& e) {
    throw UsageError(std::string("distributed settings: ") + e.what());
  }
  const bool distributed = dist.world_size > 1;
  const int64_t rank = dist.rank, world = dist.world_size;
  if (distributed) {
    g_who = "vguide-host[rank " + std::to_string(rank) + "]";
    spdlog::set_pattern(g_who + ": %l: %v");
    // One progress report, rank 0's; the others speak up for warnings and errors.
    if (rank != 0) spdlog::set_level(std::max(spdlog::get_level(), spdlog::level::warn));
  }

  // Inputs. "{rank}" in --data names each rank's own file of rows.
  const std::string model_path = vm["model"].as<std::string>();
  std::string data_path = vm["data"].as<std::string>();
  const bool per_rank_data = data_path.find("{rank}") != std::string::npos;
  for (size_t at = data_path.find("{rank}"); at != std::string::npos; at = data_path.find("{rank}"))
    data_path.replace(at, 6, std::to_string(rank));
  const std::string model_text = read_text(model_path, "--model"), data_text = read_text(data_path, "--data");
  vguide::model::Data data = vguide::model::parse_data(data_text, data_path);
  const std::vector<std::string> data_names = data.names();
  auto model_ptr = std::make_unique<vguide::model::ProgramModel>(vguide::model::parse_program(model_text, model_path),
                                                                 std::move(data));
  if (distributed && !per_rank_data) {
    // Contiguous blocks of rows, as even as N allows.
    const int64_t N = model_ptr->num_rows();
    if (N < world)
      throw InputError("--data " + data_path + ": " + std::to_string(N) + " data rows cannot be split between " +
                       std::to_string(world) + " ranks");
    vguide::model::Data shard;
    try {
      shard = model_ptr->data_rows(N * rank / world, N * (rank + 1) / world);
    } catch (const std::invalid_argument& e) {
      throw InputError("--model " + model_path + ": " + e.what());
    }
    model_ptr = std::make_unique<vguide::model::ProgramModel>(vguide::model::parse_program(model_text, model_path),
                                                              std::move(shard));
  }
  vguide::model::ProgramModel& model = *model_ptr;
  if (distributed) {
    if (per_rank_data) {
      try {  // the same refusals as for rows cut from one file
        model.check_rows_can_split();
      } catch (const std::invalid_argument& e) {
        throw InputError("--model " + model_path + ": " + e.what());
      }
    }
    model.set_row_weight(static_cast<double>(world));
  }
  if (options.init.strategy == vguide::InitStrategy::value) {
    const std::string init_path = vm["init-file"].as<std::string>();
    const vguide::model::Data init = vguide::model::parse_data(read_text(init_path, "--init-file"), init_path);
    for (const auto& name : init.names()) options.init.values[name] = init.get(name);
  }

  fs::path output = vm["output"].as<std::string>();
  std::optional<fs::path> resume;
  if (vm.count("resume")) {
    resume = fs::path(vm["resume"].as<std::string>());
    if (vm["output"].defaulted()) output = *resume;
  }
  const bool same_folder = resume && fs::exists(output) && fs::equivalent(*resume, output);
  if (rank == 0) vguide::host::prepare_output_folder(output, vm.count("overwrite") != 0 || same_folder);

  std::shared_ptr<vguide::Guide> guide = plugins.create(family, model, model.observed_names(), guide_options);
  // The minibatch stream: each rank its own (rank 0's is the single process's).
  at::Generator rows = at::detail::createCPUGenerator(seed ^ 0x5eedba7cULL ^ (0x9e3779b97f4a7c15ULL * rank));
  if (batch > 0) model.set_minibatch(batch, rows);
  vguide::Fit fit(model, *guide, options);
  if (batch > 0) fit.track_generator("rows", rows);

  std::shared_ptr<vguide::Communicator> comm;
  std::string data_fingerprint = vguide::fingerprint(data_text);
  if (distributed) {
    // What every rank must agree on. Per-rank files differ by design: their
    // variables must match, and the checkpoint records all of them.
    std::string data_layout = data_fingerprint;
    if (per_rank_data) {
      data_layout = "per-rank files with";
      for (const auto& name : data_names) data_layout += " " + name;
    }
    comm = vguide::rendezvous(dist, {{"model", vguide::fingerprint(model_text)},
                                     {"data", data_layout},
                                     {"guide family", family},
                                     {"guide options", options_text},
                                     {"settings", vguide::fingerprint(settings_text(vm))},
                                     {"world size", std::to_string(world)},
                                     {"vguide version", VGUIDE_SDK_VERSION}});
    spdlog::info("rank {} of {} joined at {}:{}; rows {} of this rank", rank, world, dist.master_addr,
                 dist.master_port, model.num_rows());
    if (per_rank_data) {
      std::string all;
      for (const auto& f : vguide::all_gather(*comm, data_fingerprint, "the data fingerprints")) all += f;
      data_fingerprint = vguide::fingerprint(all);
    }
    try {
      fit.distribute(comm);
    } catch (const std::invalid_argument& e) {
      throw UsageError(e.what());
    }
  }

  const std::map<std::string, std::string> fingerprints{{"model", vguide::fingerprint(model_text)},
                                                        {"data", data_fingerprint},
                                                        {"guide family", family},
                                                        {"guide options", options_text},
                                                        {"settings", vguide::fingerprint(settings_text(vm))}};
  if (resume) {
    try {
      fit.load_checkpoint((*resume / "checkpoint.pt").string(), fingerprints);
    } catch (const vguide::CheckpointError& e) {
      throw InputError(std::string("--resume: ") + e.what());
    }
    if (fit.steps_done() > options.steps)
      throw UsageError("--resume: the checkpoint has " + std::to_string(fit.steps_done()) + " steps done, more than --steps " +
                       std::to_string(options.steps));
    spdlog::info("resuming {} at step {}", resume->string(), fit.steps_done());
  }

  std::signal(SIGINT, on_signal);
  std::signal(SIGTERM, on_signal);
  vguide::host::Progress progress(quiet || rank != 0, isatty(STDERR_FILENO) != 0);
  const std::string checkpoint_path = (output / "checkpoint.pt").string();
  const vguide::FitResult result = fit.run(&g_interrupted, [&](const vguide::StepReport& r) {
    progress(r);
    if (checkpoint_every > 0 && r.step % checkpoint_every == 0 && r.step < r.steps)
      fit.save_checkpoint(checkpoint_path, fingerprints);
  });
  progress.done();

  Outputs o;
  o.dir = output;
  o.model_name = model.name();
  o.family = family;
  o.guide_options = options_text;
  o.seed = seed;
  o.draws = num_draws;
  o.elbo_particles = elbo_particles;
  o.psis_resample = vm.count("psis-resample") != 0;
  o.write = rank == 0;
  o.settings = {{"objective", vm["objective"].as<std::string>()},
                {"particles", std::to_string(options.objective.particles)},
                {"optimizer", vm["optimizer"].as<std::string>()},
                {"lr", std::to_string(options.optimizer.lr)},
                {"schedule", vm["schedule"].as<std::string>()},
                {"init", vm["init"].as<std::string>()},
                {"convergence", vm["convergence"].as<std::string>()}};
  // The checkpoint keeps the state to continue training from and, once after_fit has
  // run, the fitted guide to draw from (Fit::save_checkpoint).
  if (batch > 0) model.set_minibatch(model.num_rows(), rows);  // outputs score the full data
  if (result.reason != vguide::StopReason::non_finite) fit.finish();
  fit.save_checkpoint(checkpoint_path, fingerprints);
  for (const auto& [key, value] : guide->diagnostics()) spdlog::info("{} = {}", key, value);
  const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  // The outputs score the draws on all the data: across ranks when distributed.
  std::optional<vguide::DataParallelModel> all_ranks;
  if (comm) all_ranks.emplace(model, comm);
  const vguide::Model& scoring = all_ranks ? static_cast<const vguide::Model&>(*all_ranks) : model;

  if (result.reason == vguide::StopReason::non_finite) {
    const std::string message = "the fit stopped after " + std::to_string(options.max_non_finite) +
                                " non-finite steps in a row at step " + std::to_string(result.steps_done) + ": " +
                                result.detail;
    try {
      write_outputs(o, scoring, *guide, fit, wall);
    } catch (const vguide::DistributedError&) {
      throw;
    } catch (const std::exception& e) {
      spdlog::warn("outputs of the fit so far could not be written: {}", e.what());
    }
    say("error: " + message);
    return kNumerical;
  }
  const vguide::ElboEstimate elbo = write_outputs(o, scoring, *guide, fit, wall);
  // A distributed fit stops everywhere when any rank is interrupted; a rank that got
  // no signal itself reports SIGINT's status.
  const int interrupted_status = 128 + (g_signal != 0 ? static_cast<int>(g_signal) : SIGINT);
  if (rank != 0) return result.reason == vguide::StopReason::interrupted ? interrupted_status : kOk;
  if (result.reason == vguide::StopReason::interrupted) {
    say("interrupted at step " + std::to_string(result.steps_done) + "; wrote " + output.string() +
        " (resume with --resume " + output.string() + ")");
    return interrupted_status;
  }
  if (!quiet) {
    const std::string why = result.reason == vguide::StopReason::converged ? " (converged: " + result.detail + ")" : "";
    std::printf("fitted %s with %s in %lld steps%s; ELBO %.6g ± %.2g; wrote %s\n", model.name().c_str(),
                family.c_str(), static_cast<long long>(result.steps_done), why.c_str(), elbo.elbo, elbo.se,
                output.string().c_str());
  }
  return kOk;
}

std::string first_line(const std::string& s) { return s.substr(0, s.find('\n')); }

}  // namespace

namespace vguide::host {

int main(int argc, char** argv) {
  spdlog::set_default_logger(spdlog::stderr_color_mt("vguide-host"));
  spdlog::set_pattern("vguide-host: %l: %v");
  try {
    return run(argc, argv);
  } catch (const UsageError& e) {
    say("error: " + first_line(e.what()) + " (see --help)");
    return kUsage;
  } catch (const vguide::PluginError& e) {
    say("error: " + first_line(e.what()));
    return kPlugin;
  } catch (const vguide::DistributedError& e) {
    say("error: " + first_line(e.what()));
    return kDistributed;
  } catch (const std::exception& e) {
    // The model, the data, a file, a checkpoint; LibTorch appends a backtrace after
    // the first line, and the first line is the error.
    say("error: " + first_line(e.what()));
    return kInput;
  }
}

}  // namespace vguide::host
