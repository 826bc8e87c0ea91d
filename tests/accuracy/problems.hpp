#pragma once
/// The accuracy suite's posteriors: each a `.qvr` program in tests/accuracy/models
/// with its data (tests/accuracy/data, written by `vguide_accuracy_reference data`),
/// its reference moments, and its log joint written out by hand, so that a test can
/// check that the program and the reference describe the same posterior.
///
/// Plain doubles; nothing here links LibTorch.
///
/// Example:
///   auto p = vguide::accuracy::load_posterior("kidiq", VGUIDE_TEST_SOURCE_DIR);
///   for (const auto& q : p.reference) ... q.name, q.mean, q.sd
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "accuracy/reference.hpp"

namespace vguide::accuracy {

/// One scalar quantity of a posterior: a latent element or a derived value, named
/// as Stan names it ("beta_1", "theta[3]", 1-based).
struct Quantity {
  std::string name;
  double mean = 0.0;
  double sd = 0.0;
  /// The mean-field family can hold its mean (the normal guide is checked on it).
  bool mean_field = false;
  /// The full-rank Gaussian family can hold its mean and sd (mvn is checked on it).
  bool full_rank = true;
};

/// Values of the latent sites, each flattened in row-major order.
using Point = std::map<std::string, Vector>;

struct Posterior {
  std::string name;
  std::string program_path;
  std::string data_path;
  /// Empty for the normalised targets (banana, funnel): their reference is log Z = 0.
  std::vector<Quantity> reference;
  /// Latent site -> shape ({} for a scalar).
  std::map<std::string, std::vector<int64_t>> latent_shapes;
  /// The program's log joint, written out by hand.
  std::function<double(const Point&)> log_joint;
  /// A few points at which to compare log joints (inside the posterior's bulk).
  std::vector<Point> test_points;
  /// A one-line description of how the reference was computed.
  std::string method;
};

/// kidiq, years, tiny_sd, eight_schools, ar5, gp_poisson, gauss3, banana, funnel.
std::vector<std::string> posterior_names();

/// Reads the program's data from `source_dir` and computes the reference.
/// @throw std::invalid_argument for an unknown name; std::runtime_error if a file
///   cannot be read.
Posterior load_posterior(const std::string& name, const std::string& source_dir);

/// The regression problems as the reference sees them (kidiq, years, tiny_sd,
/// ar5): exposed so that the reference tests can check the design (correlations,
/// sds) and compare methods.
RegressionProblem regression_problem(const std::string& name, const std::string& source_dir);
PoissonGpProblem gp_problem(const std::string& source_dir);

/// Writes every posterior's data as CmdStan JSON (`<name>.json`) and R dump
/// (`<name>.data.R`, for rstan) into `dir`, from fixed-seed streams (eight schools:
/// the example's data, read from `source_dir`).
void write_data(const std::string& dir, const std::string& source_dir);

/// The GP reference's draws (importance sampling from a Laplace t proposal).
constexpr int64_t kGpDraws = 200000;

}  // namespace vguide::accuracy
