#include "vguide/runtime/convergence.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <stdexcept>

namespace vguide {

void validate(const ConvergenceOptions& o) {
  if (!(o.tol_rel_obj > 0.0) || !std::isfinite(o.tol_rel_obj))
    throw std::invalid_argument("tol_rel_obj must be a positive number");
  if (o.eval_elbo < 1)
    throw std::invalid_argument("eval_elbo is " + std::to_string(o.eval_elbo) + ", but must be at least 1");
  if (o.elbo_particles < 1)
    throw std::invalid_argument("convergence ELBO particles is " + std::to_string(o.elbo_particles) +
                                ", but must be at least 1");
}

AdviConvergence::AdviConvergence(ConvergenceOptions options, int64_t max_steps)
    : options_(options),
      capacity_(static_cast<size_t>(std::max(0.1 * static_cast<double>(max_steps) / static_cast<double>(options.eval_elbo), 2.0))),
      previous_(std::numeric_limits<double>::lowest()) {
  validate(options_);
}

bool AdviConvergence::due(int64_t steps_done) const noexcept {
  return options_.rule != ConvergenceRule::none && options_.rule != ConvergenceRule::automatic && steps_done > 0 && steps_done % options_.eval_elbo == 0;
}

std::optional<std::string> AdviConvergence::update(double elbo) {
  const double change = std::abs((elbo - previous_) / elbo);
  previous_ = elbo;
  if (buffer_.size() == capacity_) buffer_.erase(buffer_.begin());
  buffer_.push_back(change);
  const bool mean_ok = mean_relative_change() < options_.tol_rel_obj;
  const bool median_ok = median_relative_change() < options_.tol_rel_obj;
  switch (options_.rule) {
    case ConvergenceRule::none:
    case ConvergenceRule::automatic: return std::nullopt;
    case ConvergenceRule::mean: return mean_ok ? std::optional<std::string>("mean") : std::nullopt;
    case ConvergenceRule::median: return median_ok ? std::optional<std::string>("median") : std::nullopt;
    case ConvergenceRule::either:
      if (mean_ok) return "mean";
      if (median_ok) return "median";
      return std::nullopt;
  }
  return std::nullopt;
}

double AdviConvergence::mean_relative_change() const {
  if (buffer_.empty()) return std::numeric_limits<double>::infinity();
  return std::accumulate(buffer_.begin(), buffer_.end(), 0.0) / static_cast<double>(buffer_.size());
}

double AdviConvergence::median_relative_change() const {
  if (buffer_.empty()) return std::numeric_limits<double>::infinity();
  std::vector<double> sorted = buffer_;
  std::sort(sorted.begin(), sorted.end());
  const size_t n = sorted.size();
  return n % 2 ? sorted[n / 2] : 0.5 * (sorted[n / 2 - 1] + sorted[n / 2]);
}

void AdviConvergence::restore(std::vector<double> buffer, double previous) {
  if (buffer.size() > capacity_) buffer.erase(buffer.begin(), buffer.end() - static_cast<std::ptrdiff_t>(capacity_));
  buffer_ = std::move(buffer);
  previous_ = previous;
}

ConvergenceRule parse_convergence_rule(const std::string& name) {
  if (name == "auto") return ConvergenceRule::automatic;
  if (name == "none") return ConvergenceRule::none;
  if (name == "mean") return ConvergenceRule::mean;
  if (name == "median") return ConvergenceRule::median;
  if (name == "either") return ConvergenceRule::either;
  throw std::invalid_argument("unknown convergence rule '" + name + "'; valid: auto, none, mean, median, either");
}

std::string to_string(ConvergenceRule rule) {
  switch (rule) {
    case ConvergenceRule::automatic: return "auto";
    case ConvergenceRule::none: return "none";
    case ConvergenceRule::mean: return "mean";
    case ConvergenceRule::median: return "median";
    case ConvergenceRule::either: return "either";
  }
  return "none";
}

}  // namespace vguide
