// vguide-host: a thin command line over the runtime. Loads guide plugins, reads a
// .qvr program and CmdStan JSON data, fits with Adam on the guide's ELBO, and writes
// summary.json (atomically: a temporary file, then rename).
//
//   vguide-host --plugin normal --model m.qvr --data d.json --steps 2000 --output out/
//
// Exit codes: 0 fitted; 1 bad input or a failed fit (one line on stderr); 2 bad usage.
#include <torch/torch.h>

#include <boost/program_options.hpp>
#include <nlohmann/json.hpp>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>

#include "vguide/guide.hpp"
#include "vguide/model/data.hpp"
#include "vguide/model/program.hpp"
#include "vguide/model/program_model.hpp"
#include "vguide/runtime/elbo.hpp"
#include "vguide/runtime/plugin_manager.hpp"

namespace po = boost::program_options;
namespace fs = std::filesystem;

namespace {

struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

void write_atomically(const fs::path& path, const std::string& text) {
  const fs::path tmp = path.string() + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    out << text;
    out.flush();
    if (!out) throw std::runtime_error("cannot write " + tmp.string());
  }
  std::error_code ec;
  fs::rename(tmp, path, ec);
  if (ec) throw std::runtime_error("cannot move " + tmp.string() + " to " + path.string() + ": " + ec.message());
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
}

int run(int argc, char** argv) {
  po::options_description desc("vguide-host options");
  desc.add_options()("help,h", "this help")(
      "plugin", po::value<std::vector<std::string>>()->composing(), "guide plugin to load: a path or a family name (repeatable)")(
      "list-plugins", "list the loaded guide families (without --plugin: every plugin found) and exit")(
      "describe", po::value<std::string>(), "show a loaded family's options with their defaults and exit")(
      "model", po::value<std::string>(), ".qvr program to fit")("data", po::value<std::string>(), "CmdStan JSON data")(
      "guide", po::value<std::string>(), "family to fit with (default: the only loaded one)")(
      "guide-opt", po::value<std::vector<std::string>>()->composing(), "guide option name=value (repeatable)")(
      "steps", po::value<int64_t>()->default_value(2000), "optimiser steps")(
      "lr", po::value<double>()->default_value(0.01), "Adam learning rate")(
      "particles", po::value<int64_t>()->default_value(1), "ELBO particles per step")(
      "batch-size", po::value<int64_t>()->default_value(0), "data rows per step, scaled by N/B (0: all rows)")(
      "draws", po::value<int64_t>()->default_value(1000), "posterior draws for the summary")(
      "seed", po::value<uint64_t>()->default_value(0), "seed of every random stream")(
      "output", po::value<std::string>()->default_value("."), "folder for summary.json");
  po::variables_map vm;
  try {
    po::store(po::parse_command_line(argc, argv, desc), vm);
    po::notify(vm);
  } catch (const po::error& e) {
    throw UsageError(e.what());
  }
  if (vm.count("help")) {
    std::cout << desc << "\n";
    return 0;
  }

  const uint64_t seed = vm["seed"].as<uint64_t>();
  vguide::PluginManager plugins(seed);
  if (vm.count("plugin"))
    for (const auto& p : vm["plugin"].as<std::vector<std::string>>()) plugins.load(p);
  if (vm.count("list-plugins")) {
    if (!vm.count("plugin")) load_every_plugin(plugins);
    list_plugins(plugins);
    return 0;
  }
  if (vm.count("describe")) {
    const std::string family = vm["describe"].as<std::string>();
    std::cout << family << " options:\n" << vguide::describe_options(plugins.options_schema(family));
    return 0;
  }

  if (!vm.count("model")) throw UsageError("--model is required");
  if (!vm.count("data")) throw UsageError("--data is required");
  const auto families = plugins.families();
  std::string family;
  if (vm.count("guide")) {
    family = vm["guide"].as<std::string>();
  } else if (families.size() == 1) {
    family = families.front().name;
  } else {
    throw UsageError(families.empty() ? "load a guide plugin with --plugin" : "several families are loaded: choose one with --guide");
  }
  const int64_t steps = vm["steps"].as<int64_t>(), particles = vm["particles"].as<int64_t>(),
                draws = vm["draws"].as<int64_t>();
  const double lr = vm["lr"].as<double>();
  if (steps < 0) throw UsageError("--steps is " + std::to_string(steps) + ", but must be at least 0");
  if (particles < 1) throw UsageError("--particles is " + std::to_string(particles) + ", but must be at least 1");
  if (draws < 2) throw UsageError("--draws is " + std::to_string(draws) + ", but must be at least 2");
  if (!(lr > 0) || !std::isfinite(lr)) throw UsageError("--lr must be a positive number");
  const fs::path output = vm["output"].as<std::string>();
  if (!fs::is_directory(output)) throw UsageError("--output " + output.string() + " is not a folder");

  torch::manual_seed(seed);
  vguide::model::ProgramModel model(vguide::model::load_program(vm["model"].as<std::string>()),
                                    vguide::model::load_data(vm["data"].as<std::string>()));
  const std::vector<std::string> guide_options =
      vm.count("guide-opt") ? vm["guide-opt"].as<std::vector<std::string>>() : std::vector<std::string>{};
  auto guide = plugins.create(family, model, model.observed_names(), guide_options);
  if (const int64_t batch = vm["batch-size"].as<int64_t>(); batch > 0) {
    at::Generator rows = at::detail::createCPUGenerator(seed ^ 0x5eedba7cULL);  // the minibatch stream
    model.set_minibatch(batch, rows);
  }

  torch::optim::Adam adam(guide->parameters(), torch::optim::AdamOptions(lr));
  double last_elbo = std::nan("");
  for (int64_t step = 0; step < steps; ++step) {
    guide->before_step({step, steps});
    adam.zero_grad();
    at::Tensor elbo = vguide::elbo(model, *guide, particles);
    if (!std::isfinite(elbo.item<double>()))
      throw std::runtime_error("the ELBO is not finite at step " + std::to_string(step));
    (-elbo).backward();
    adam.step();
    last_elbo = elbo.item<double>();
  }
  guide->after_fit({model, steps});

  nlohmann::json summary;
  summary["guide"] = family;
  summary["steps"] = steps;
  summary["seed"] = seed;
  summary["final_elbo"] = last_elbo;
  for (const auto& [key, value] : guide->diagnostics()) summary["diagnostics"][key] = value;
  for (const auto& s : vguide::summarize(*guide, draws)) {
    auto to_json = [](const at::Tensor& t) {
      at::Tensor d = t.to(at::kDouble).contiguous();
      return t.dim() == 0 ? nlohmann::json(d.item<double>())
                          : nlohmann::json(std::vector<double>(d.data_ptr<double>(), d.data_ptr<double>() + d.numel()));
    };
    summary["sites"][s.name] = {{"mean", to_json(s.mean)}, {"sd", to_json(s.sd)}};
  }
  write_atomically(output / "summary.json", summary.dump(2) + "\n");
  std::cout << "fitted " << model.name() << " with " << family << " in " << steps << " steps; ELBO " << last_elbo
            << "; wrote " << (output / "summary.json").string() << "\n";
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const UsageError& e) {
    std::cerr << "vguide-host: error: " << e.what() << " (see --help)\n";
    return 2;
  } catch (const std::exception& e) {
    std::string message = e.what();
    // LibTorch appends a C++ backtrace after the first line; the first line is the error.
    message = message.substr(0, message.find('\n'));
    std::cerr << "vguide-host: error: " << message << "\n";
    return 1;
  }
}
