#pragma once
// The output folder of a fit (docs/outputs.md): summary.json, draws.csv in Stan's
// variational layout, elbo.csv and, with --psis-resample, draws_psis.csv.
#include <cstdint>
#include <filesystem>
#include <string>
#include <utility>
#include <vector>

#include "vguide/guide.hpp"
#include "vguide/model.hpp"
#include "vguide/runtime/fit.hpp"
#include "vguide/runtime/posterior.hpp"

namespace vguide::host {

/// What the output files record besides the fit itself.
struct Outputs {
  std::filesystem::path dir;
  std::string model_name, family, guide_options;
  uint64_t seed = 0;
  int64_t draws = 1000, elbo_particles = 1000;
  bool psis_resample = false;
  bool write = true;  // false on the ranks other than 0 of a distributed fit
  std::vector<std::pair<std::string, std::string>> settings;
};

/// What the user should know about the answer (bad PSIS k-hat, not converged,
/// skipped steps): one line each, with what to try (docs/fitting.md).
std::vector<std::string> fit_warnings(const Fit& fit, const std::string& family, double khat);

/// What write_outputs computed: the final ELBO estimate and the warnings it recorded.
struct Written {
  ElboEstimate elbo;
  std::vector<std::string> warnings;
};

/// Writes the output folder (the warnings under summary.json's `warnings`).
/// Distributed, every rank computes the estimates (`model` averages the log joint
/// over the ranks) and rank 0 writes.
Written write_outputs(const Outputs& o, const Model& model, Guide& guide, const Fit& fit, double wall_time);

}  // namespace vguide::host
