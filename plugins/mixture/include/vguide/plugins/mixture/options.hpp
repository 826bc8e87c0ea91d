#pragma once
/// Options of the `mixture` family: a finite mixture of guides built by family name.
///
/// Example: vguide::MixtureOptions().components({"normal", "iaf"}).component_options({"2.num_flows=2"})
#include <iterator>
#include <string>
#include <utility>
#include <vector>

#include "vguide/arg.hpp"
#include "vguide/check.hpp"
#include "vguide/options.hpp"

namespace vguide {
struct MixtureOptions {
  /// Component families, at least two; a family may repeat.
  VGUIDE_ARG(std::vector<std::string>, components);
  /// Options for component k (1-based): "k.name=value".
  VGUIDE_ARG(std::vector<std::string>, component_options);
  /// "stratified" (unbiased; the default) or "gumbel_softmax" (the seed's).
  VGUIDE_ARG(std::string, estimator) = "stratified";
  VGUIDE_ARG(double, init_temperature) = 1.0;
  /// Gumbel-softmax temperature at the last step; 0 means "no annealing".
  VGUIDE_ARG(double, final_temperature) = 0.0;
  /// "exponential" or "linear" interpolation from init to final temperature.
  VGUIDE_ARG(std::string, anneal) = "exponential";

 public:
  static constexpr OptionSpec schema_specs[] = {
      {"components", "string", "", "comma-separated component families, at least 2 (e.g. normal,iaf)", ""},
      {"estimator", "choice", "stratified", "ELBO estimator", "stratified|gumbel_softmax"},
      {"init_temperature", "real", "1.0", "Gumbel-softmax temperature at the start", ">0"},
      {"final_temperature", "real", "auto", "Gumbel-softmax temperature at the last step (auto: no annealing)",
       ">0"},
      {"anneal", "choice", "exponential", "temperature schedule between init and final", "exponential|linear"},
      {"<k>.<option>", "forward", "", "an option of component k (1-based), e.g. 2.num_flows=2", ""},
  };
  static constexpr OptionSchema schema() { return {schema_specs, std::size(schema_specs)}; }

  static MixtureOptions from(const Options& options) {
    std::vector<std::string> families;
    std::string current;
    for (char c : options.get_string("components") + ",") {
      if (c == ',') {
        if (!current.empty()) families.push_back(current);
        current.clear();
      } else if (c != ' ') {
        current += c;
      }
    }
    std::vector<std::string> forwarded;
    for (const auto& [k, assignment] : options.forwarded()) forwarded.push_back(std::to_string(k) + "." + assignment);
    return MixtureOptions()
        .components(families)
        .component_options(forwarded)
        .estimator(options.get_string("estimator"))
        .init_temperature(options.get_real("init_temperature"))
        .final_temperature(options.has("final_temperature") ? options.get_real("final_temperature") : 0.0)
        .anneal(options.get_string("anneal"));
  }

  /// @throw std::domain_error / std::invalid_argument naming the bad option.
  void validate() const {
    if (components_.size() < 2) {
      std::string listed;
      for (const auto& c : components_) listed += (listed.empty() ? "" : ",") + c;
      throw std::invalid_argument("mixture: components lists " + std::to_string(components_.size()) +
                                  " famil" + (components_.size() == 1 ? "y" : "ies") +
                                  (listed.empty() ? "" : " (" + listed + ")") +
                                  ", but a mixture needs at least 2 (e.g. components=normal,normal)");
    }
    check_positive("mixture", "init_temperature", init_temperature_);
    check_nonnegative("mixture", "final_temperature", final_temperature_);
    if (estimator_ != "stratified" && estimator_ != "gumbel_softmax")
      throw std::invalid_argument("mixture: estimator '" + estimator_ + "' is not one of stratified|gumbel_softmax");
    if (anneal_ != "exponential" && anneal_ != "linear")
      throw std::invalid_argument("mixture: anneal '" + anneal_ + "' is not one of exponential|linear");
  }
};
}  // namespace vguide
