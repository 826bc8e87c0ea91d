#pragma once
// vguide-host's command line read into Settings (docs/cli.md documents every flag).
//
// It is read in two stages, in the order the host checks its flags, so that a command
// line gets the same error whatever else is wrong with it: read_general_settings
// takes what every invocation needs (logging, threads, the seed, the plugins to load,
// --list-plugins, --describe, --check-plugin); read_fit_settings, once the plugins
// are loaded, takes what a fit needs (model, data, guide and its options, fit options, outputs, ranks).
#include <boost/program_options.hpp>
#include <spdlog/common.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "vguide/model/stan_model.hpp"
#include "vguide/runtime/distributed.hpp"
#include "vguide/runtime/fit.hpp"
#include "vguide/runtime/plugin_manager.hpp"

namespace vguide::host {

/// A flag or its value, a guide option: exit code 2.
struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};
/// A file, the model, the data, a checkpoint: exit code 1.
struct InputError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

/// The flags as parsed, and the table they were parsed against (for --help).
struct CommandLine {
  boost::program_options::options_description table;
  boost::program_options::variables_map flags;
  std::vector<std::string> argv;  ///< as given, for the ranks --launch starts
};

/// `vguide-host --launch N`: the local ranks to start instead of fitting.
struct LaunchSettings {
  int ranks = 1;
  std::vector<std::string> args;    ///< the command line without --launch
  std::chrono::milliseconds grace;  ///< how long failed ranks' peers get to stop
};

struct Settings {
  // read_general_settings
  spdlog::level::level_enum log_level = spdlog::level::info;
  bool quiet = false;
  int threads = 1;
  uint64_t seed = 0;
  std::vector<std::string> plugins;  ///< --plugin, in order
  bool list_plugins = false;
  std::optional<std::string> describe;  ///< --describe FAMILY
  std::optional<std::string> check_plugin;  ///< --check-plugin FILE

  // read_fit_settings
  std::string model_path;
  bool stan = false;  ///< a Stan program (by --language or the .stan extension)
  model::StanEvaluator stan_evaluator = model::StanEvaluator::automatic;  ///< --stan-evaluator
  std::string data_path;  ///< may hold "{rank}"
  std::string family;
  std::string guide_options_text;  ///< the parsed guide options, as Options::to_string
  std::vector<std::string> guide_options;
  FitOptions fit;
  std::optional<std::string> init_file;  ///< with --init value
  int64_t draws = 1000;
  int64_t elbo_particles = 1000;
  int64_t batch_size = 0;
  int64_t checkpoint_every = 0;
  bool psis_resample = false;
  std::filesystem::path output;
  bool overwrite = false;
  bool strict = false;  ///< --strict: warnings make the exit code 6
  std::optional<std::filesystem::path> resume;
  std::optional<LaunchSettings> launch;  ///< set: start ranks, nothing else is read
  RendezvousOptions dist;
  /// What changes the fit's trajectory, as text: fingerprinted into checkpoints and
  /// compared between ranks.
  std::string trajectory;
  /// The settings summary.json and draws.csv record (name, value as given).
  std::vector<std::pair<std::string, std::string>> recorded;
};

/// Parses argv against every flag. @throw UsageError for an unknown flag or a value
/// of the wrong type.
CommandLine parse_command_line(int argc, char** argv);

/// --log-level, --quiet, --threads, --seed, --plugin, --list-plugins, --describe,
/// --check-plugin.
/// @throw UsageError for a bad value.
Settings read_general_settings(const CommandLine& command_line);

/// Everything else, into `settings`: the family is chosen among `plugins` and its
/// options are parsed against its schema. With --launch it stops after the launch
/// settings. @throw UsageError for a missing flag, a bad value or a bad combination.
void read_fit_settings(const CommandLine& command_line, const PluginManager& plugins, Settings& settings);

}  // namespace vguide::host
