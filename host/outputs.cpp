#include "outputs.hpp"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <torch/version.h>

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include <cmath>
#include <cstdio>
#include <sstream>
#include <stdexcept>

#include "output_folder.hpp"
#include "vguide/runtime/psis.hpp"
#include "vguide/runtime/stan_csv.hpp"
#include "vguide/version.hpp"

namespace vguide::host {

namespace {

nlohmann::json tensor_json(const at::Tensor& t) {
  if (t.dim() == 0) return t.item<double>();
  nlohmann::json out = nlohmann::json::array();
  for (int64_t i = 0; i < t.size(0); ++i) out.push_back(tensor_json(t[i]));
  return out;
}

}  // namespace

std::vector<std::string> fit_warnings(const Fit& fit, const std::string& family, double khat) {
  std::vector<std::string> out;
  const FitResult& r = fit.result();
  const ConvergenceRule rule = fit.options().convergence.rule;
  if (r.reason == StopReason::steps && rule != ConvergenceRule::none)
    out.push_back("the fit did not converge in " + std::to_string(r.steps_done) +
                  " steps; try a larger --steps, or another family");
  if (r.non_finite_steps > 0 && r.reason != StopReason::non_finite)  // that one is an error already
    out.push_back(std::to_string(r.non_finite_steps) + " steps were skipped as not finite" +
                  (r.last_non_finite.empty() ? std::string() : " (last: " + r.last_non_finite + ")") +
                  "; check the model's numerics (jitter, bounds), or try --dtype float64");
  if (std::isfinite(khat) && khat > 0.7) {
    std::ostringstream line;
    line.precision(2);
    line << "PSIS k-hat " << khat << ": the " << family << " family does not fit this posterior well; try ";
    line << (family == "normal" || family == "delta" || family == "laplace" ? "--plugin mvn or iaf"
             : family == "mvn" || family == "lowrank_mvn"                   ? "--plugin iaf or spline"
                                                                            : "a larger flow or --plugin mixture");
    out.push_back(line.str());
  }
  return out;
}

Written write_outputs(const Outputs& o, const Model& model, Guide& guide, const Fit& fit, double wall_time) {
  const vguide::PosteriorDraws draws = vguide::draw_posterior(model, guide, o.draws);
  const vguide::ElboEstimate elbo = vguide::estimate_elbo(model, guide, o.elbo_particles);
  if (!o.write) return {elbo, {}};  // the collective parts are done; the rest is rank 0's
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
  summary["init"] = fit.result().init;
  summary["dtype"] = vguide::dtype_name(fit.options().dtype);
  summary["averaged_steps"] = fit.result().averaged_steps;
  if (fit.result().averaging_from >= 0) summary["averaging_from"] = fit.result().averaging_from;
  const std::vector<std::string> warnings = fit_warnings(fit, o.family, khat);
  summary["warnings"] = warnings;
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
  return {elbo, warnings};
}

}  // namespace vguide::host
