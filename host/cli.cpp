// vguide-host: a thin command line over the runtime (vguide/runtime/fit.hpp). Loads
// guide plugins, reads a .qvr or Stan program and CmdStan JSON data, fits, and writes
// summary.json, draws.csv (Stan's variational layout), elbo.csv and a checkpoint.
// docs/cli.md documents every flag; docs/outputs.md every file.
//
//   vguide-host --plugin libiaf.so --model m.qvr --data d.json --output out/
//
// Exit codes: 0 fitted; 1 bad input (a file, the model, the data, a checkpoint);
// 2 bad usage (a flag or its value, a guide option); 3 a plugin that fails to load or
// to build its guide; 4 a numerical failure (outputs of the fit so far are written);
// 5 a distributed fit that lost a rank or whose ranks disagree (docs/distributed.md);
// 6 a fit with warnings under --strict (outputs written); 7 a plugin that killed the
// --check-plugin child (check_plugin.hpp);
// 128 + signal when interrupted by SIGINT / SIGTERM (outputs and a checkpoint written).
//
// `run` is the script: settings (settings.cpp), plugins, the model and the fit
// (session.cpp), the fit's steps, the outputs (outputs.cpp).
#include "cli.hpp"

#include <ATen/Parallel.h>
#include <torch/version.h>

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <optional>
#include <string>
#include <utility>
#include <vector>
#include <unistd.h>

#include "check_plugin.hpp"
#include "launch.hpp"
#include "output_folder.hpp"
#include "outputs.hpp"
#include "progress.hpp"
#include "session.hpp"
#include "settings.hpp"
#include "timings.hpp"
#include "vguide/options.hpp"
#include "vguide/runtime/distributed.hpp"
#include "vguide/runtime/fit.hpp"
#include "vguide/runtime/plugin_manager.hpp"
#include "vguide/version.hpp"

namespace fs = std::filesystem;

namespace vguide::host {

namespace {

enum Exit { kOk = 0, kInput = 1, kUsage = 2, kPlugin = 3, kNumerical = 4, kDistributed = 5, kWarnings = 6 };

// "vguide-host", or "vguide-host[rank 2]" in a distributed fit: whose line it is.
std::string g_who = "vguide-host";

// One line on stderr in one write, so that the lines of ranks sharing a terminal
// do not interleave.
void say(const std::string& line) {
  const std::string text = g_who + ": " + line + "\n";
  if (::write(STDERR_FILENO, text.data(), text.size()) < 0) return;  // nowhere left to say it
}

std::atomic<bool> g_interrupted{false};
volatile std::sig_atomic_t g_signal = 0;

extern "C" void on_signal(int sig) {
  g_signal = sig;
  g_interrupted.store(true);
  std::signal(sig, SIG_DFL);  // a second Ctrl-C ends the process at once
}

int print_help(const CommandLine& command_line) {
  std::cout << command_line.table << "\nExample:\n  vguide-host --plugin libnormal.so --model eight_schools.qvr "
                                     "--data eight_schools.json --output out\n\nSee docs/cli.md.\n";
  return kOk;
}

int print_version() {
  std::cout << "vguide-host " << VGUIDE_SDK_VERSION << " (plugin ABI " << VGUIDE_ABI_MAJOR << "." << VGUIDE_ABI_MINOR
            << ", LibTorch " << TORCH_VERSION << ")\n";
  return kOk;
}

// The log level and LibTorch's threads.
void configure_process(const Settings& s) {
  spdlog::set_level(s.quiet ? std::max(s.log_level, spdlog::level::warn) : s.log_level);
  at::set_num_threads(s.threads);
}

// Every plugin on the search path; one that fails to load is kept as (file, cause)
// and skipped, so that a stray file does not hide the others.
std::vector<std::pair<std::string, std::string>> load_every_plugin(PluginManager& plugins) {
  std::vector<std::pair<std::string, std::string>> broken;
  for (const auto& path : PluginManager::discover()) {
    try {
      plugins.load(path.string());
    } catch (const PluginError& e) {
      const std::string what = e.what(), prefix = "plugin " + path.string() + ": ";
      broken.emplace_back(path.string(), what.rfind(prefix, 0) == 0 ? what.substr(prefix.size()) : what);
    }
  }
  return broken;
}

// --list-plugins: without --plugin, every plugin found; a file that fails the
// loader's checks is listed as "broken" with its cause.
int list_plugins(PluginManager& plugins, const Settings& s) {
  const auto broken = s.plugins.empty() ? load_every_plugin(plugins) : std::vector<std::pair<std::string, std::string>>{};
  for (const auto& f : plugins.families()) std::cout << f.name << "\t" << f.description << "\t" << f.library << "\n";
  for (const auto& [file, cause] : broken) std::cout << "broken\t" << cause << "\t" << file << "\n";
  std::cout << "searched:";
  for (const auto& dir : PluginManager::search_path()) std::cout << " " << dir.string();
  std::cout << "\n";
  return kOk;
}

// --describe FAMILY, loading it by name if no --plugin did.
int describe_family(PluginManager& plugins, const std::string& family) {
  if (!plugins.has_family(family)) {
    try {
      plugins.load(family);
    } catch (const PluginError&) {
      throw UsageError("--describe " + family + ": no such family is loaded or found (see --list-plugins)");
    }
  }
  for (const auto& f : plugins.families())
    if (f.name == family) std::cout << family << ": " << f.description << "\n";
  std::cout << "options:\n" << describe_options(plugins.options_schema(family));
  return kOk;
}

// A rank of a distributed fit names itself in every line; only rank 0 reports progress.
void enter_rank(const RendezvousOptions& dist) {
  if (dist.world_size <= 1) return;
  g_who = "vguide-host[rank " + std::to_string(dist.rank) + "]";
  spdlog::set_pattern(g_who + ": %l: %v");
  // One progress report, rank 0's; the others speak up for warnings and errors.
  if (dist.rank != 0) spdlog::set_level(std::max(spdlog::get_level(), spdlog::level::warn));
}

// Rank 0 creates the output folder; resuming into the folder resumed from replaces
// its files.
void prepare_output(const Settings& s) {
  const bool same_folder = s.resume && fs::exists(s.output) && fs::equivalent(*s.resume, s.output);
  if (s.dist.rank == 0) prepare_output_folder(s.output, s.overwrite || same_folder);
}

// The fit's steps, with a progress line and periodic checkpoints, until it ends or
// SIGINT / SIGTERM stops it at a step boundary.
FitResult run_fit(const Settings& s, FitSession& session) {
  Fit& fit = *session.fit;
  std::signal(SIGINT, on_signal);
  std::signal(SIGTERM, on_signal);
  Progress progress(s.quiet || s.dist.rank != 0, isatty(STDERR_FILENO) != 0);
  const std::string checkpoint = checkpoint_path(s);
  const FitResult result = fit.run(&g_interrupted, [&](const StepReport& r) {
    progress(r);
    if (s.checkpoint_every > 0 && r.step % s.checkpoint_every == 0 && r.step < r.steps)
      fit.save_checkpoint(checkpoint, session.fingerprints);
  });
  progress.done();
  return result;
}

Outputs outputs_of(const Settings& s, const std::string& model_name) {
  Outputs o;
  o.dir = s.output;
  o.model_name = model_name;
  o.family = s.family;
  o.guide_options = s.guide_options_text;
  o.seed = s.seed;
  o.draws = s.draws;
  o.elbo_particles = s.elbo_particles;
  o.psis_resample = s.psis_resample;
  o.write = s.dist.rank == 0;
  o.settings = s.recorded;
  return o;
}

// Writes the outputs and says how the fit ended; returns the exit code.
int report(const Settings& s, const Model& model, FitSession& session, const FitResult& result,
           double wall) {
  const Outputs o = outputs_of(s, model.name());
  // The outputs score the draws on all the data: across ranks when distributed.
  std::optional<DataParallelModel> all_ranks;
  if (session.comm) all_ranks.emplace(model, session.comm);
  const Model& scoring = all_ranks ? static_cast<const Model&>(*all_ranks) : model;
  Guide& guide = *session.guide;
  const Fit& fit = *session.fit;

  if (result.reason == StopReason::non_finite) {
    const std::string message = "the fit stopped after " + std::to_string(s.fit.max_non_finite) +
                                " non-finite steps in a row at step " + std::to_string(result.steps_done) + ": " +
                                result.detail;
    try {
      write_outputs(o, scoring, guide, fit, wall);
    } catch (const DistributedError&) {
      throw;
    } catch (const std::exception& e) {
      spdlog::warn("outputs of the fit so far could not be written: {}", e.what());
    }
    say("error: " + message);
    return kNumerical;
  }
  const auto [elbo, warnings] = write_outputs(o, scoring, guide, fit, wall);
  for (const auto& w : warnings) say("warning: " + w);
  // A distributed fit stops everywhere when any rank is interrupted; a rank that got
  // no signal itself reports SIGINT's status.
  const int interrupted_status = 128 + (g_signal != 0 ? static_cast<int>(g_signal) : SIGINT);
  if (s.dist.rank != 0) return result.reason == StopReason::interrupted ? interrupted_status : kOk;
  const std::string output = s.output.string();
  if (result.reason == StopReason::interrupted) {
    say("interrupted at step " + std::to_string(result.steps_done) + "; wrote " + output + " (resume with --resume " +
        output + ")");
    return interrupted_status;
  }
  if (!s.quiet) {
    const std::string why = result.reason == StopReason::converged ? " (converged: " + result.detail + ")" : "";
    std::printf("fitted %s with %s in %lld steps%s; ELBO %.6g ± %.2g; wrote %s\n", model.name().c_str(),
                s.family.c_str(), static_cast<long long>(result.steps_done), why.c_str(), elbo.elbo, elbo.se,
                output.c_str());
  }
  if (!warnings.empty() && s.strict) {
    const size_t n = warnings.size();
    say("error: --strict: the fit has " + std::to_string(n) + (n == 1 ? " warning" : " warnings") + " (in " +
        (s.output / "summary.json").string() + ")");
    return kWarnings;
  }
  return kOk;
}

std::string first_line(const std::string& s) { return s.substr(0, s.find('\n')); }

int run(int argc, char** argv, PhaseTimer& timer) {
  const auto start = std::chrono::steady_clock::now();
  const CommandLine command_line = parse_command_line(argc, argv);
  if (command_line.flags.count("timings")) timer.enable();
  if (command_line.flags.count("help")) return print_help(command_line);
  if (command_line.flags.count("version")) return print_version();
  Settings settings = read_general_settings(command_line);
  configure_process(settings);
  timer.phase("options");

  if (settings.check_plugin) return check_plugin(*settings.check_plugin);
  PluginManager plugins(settings.seed);
  for (const auto& p : settings.plugins) plugins.load(p);
  timer.phase("plugins");
  if (settings.list_plugins) return list_plugins(plugins, settings);
  if (settings.describe) return describe_family(plugins, *settings.describe);

  // Flags first, so a usage error costs nothing.
  read_fit_settings(command_line, plugins, settings);
  timer.phase("fit settings");
  if (settings.launch) return launch_local(settings.launch->ranks, settings.launch->args, settings.launch->grace);
  enter_rank(settings.dist);

  ModelInputs inputs = load_model(settings);
  read_init_values(settings);
  timer.phase("model and data");
  prepare_output(settings);
  timer.phase("output folder");
  FitSession session;
  build_fit(settings, inputs, plugins, session);
  timer.phase("guide and start");
  const FitResult result = run_fit(settings, session);
  timer.phase("steps");
  finish_fit(settings, inputs, session, result);
  timer.phase("finish");
  const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const int code = report(settings, *inputs.model, session, result, wall);
  timer.phase("outputs");
  return code;
}

// run with its exceptions turned into exit codes and one error line.
int run_reporting_errors(int argc, char** argv, PhaseTimer& timer) {
  try {
    return run(argc, argv, timer);
  } catch (const UsageError& e) {
    say("error: " + first_line(e.what()) + " (see --help)");
    return kUsage;
  } catch (const PluginError& e) {
    say("error: " + first_line(e.what()));
    return kPlugin;
  } catch (const DistributedError& e) {
    say("error: " + first_line(e.what()));
    return kDistributed;
  } catch (const std::exception& e) {
    // The model, the data, a file, a checkpoint; LibTorch appends a backtrace after
    // the first line, and the first line is the error.
    say("error: " + first_line(e.what()));
    return kInput;
  }
}

}  // namespace

int main(int argc, char** argv) {
  PhaseTimer timer(say);  // first: "start to main" ends here
  spdlog::set_default_logger(spdlog::stderr_color_mt("vguide-host"));
  spdlog::set_pattern("vguide-host: %l: %v");
  const int code = run_reporting_errors(argc, argv, timer);
  // run's locals (the fit, the guide, the model, the plugins) are gone by now.
  timer.phase("teardown");
  timer.total();
  return code;
}

}  // namespace vguide::host
