#include "outputs.hpp"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <torch/version.h>

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include <charconv>
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

namespace {

// PSIS k-hat of the final ELBO's log ratios, and how to read it.
std::pair<double, std::string> psis_diagnostic(const ElboEstimate& elbo, int64_t particles) {
  if (particles < vguide::kPsisMinDraws)
    return {std::nan(""), "not computed (fewer than " + std::to_string(vguide::kPsisMinDraws) + " ELBO particles)"};
  if (!at::isfinite(elbo.log_ratios).all().item<bool>()) return {std::nan(""), "not computed (non-finite log ratios)"};
  const double khat = vguide::psis(elbo.log_ratios).khat;
  return {khat, vguide::khat_reading(khat)};
}

nlohmann::json finite_or_null(double v) { return std::isfinite(v) ? nlohmann::json(v) : nlohmann::json(nullptr); }

nlohmann::json summary_json(const Outputs& o, const PosteriorDraws& draws, const ElboEstimate& elbo, double khat,
                            const std::string& reading, const std::vector<std::string>& warnings, Guide& guide,
                            const Fit& fit, double wall_time) {
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
  summary["particles"] = fit.options().objective.particles;  // as chosen when --particles auto
  summary["averaged_steps"] = fit.result().averaged_steps;
  if (fit.result().averaging_from >= 0) summary["averaging_from"] = fit.result().averaging_from;
  summary["warnings"] = warnings;
  summary["seed"] = o.seed;
  for (const auto& [key, value] : o.settings) summary["settings"][key] = value;
  for (const auto& [key, value] : guide.diagnostics()) summary["diagnostics"][key] = value;
  summary["versions"] = {{"vguide", VGUIDE_SDK_VERSION}, {"torch", TORCH_VERSION}};
  summary["wall_time_s"] = wall_time;  // the one field that differs between identical runs
  return summary;
}

vguide::StanCsvContent draws_content(const Outputs& o, const PosteriorDraws& draws, const Fit& fit) {
  vguide::StanCsvContent csv;
  csv.model_name = o.model_name;
  csv.settings = o.settings;
  csv.settings.emplace_back("guide", o.family);
  csv.settings.emplace_back("iter", std::to_string(fit.steps_done()));
  csv.settings.emplace_back("seed", std::to_string(o.seed));
  for (const auto& q : draws.quantities) csv.quantities.push_back({q.name, q.draws});
  csv.log_p = draws.log_p;
  csv.log_g = draws.log_g;
  return csv;
}

// Importance resampling of the output draws toward the posterior: each draw's ratio
// p/q is in its own row (log_p__ - log_g__), smoothed by PSIS.
vguide::StanCsvContent psis_resampled(const Outputs& o, const vguide::StanCsvContent& csv) {
  const at::Tensor log_ratios = csv.log_p - csv.log_g;
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
  return resampled;
}

std::string stan_csv_text(const vguide::StanCsvContent& csv) {
  std::ostringstream text;
  vguide::write_stan_csv(text, csv);
  return text.str();
}

// The shortest text that reads back as the same double (std::to_chars): exact, and
// several times faster than printf's %.17g on a long fit's trace.
std::string elbo_csv_text(const std::vector<double>& trace) {
  std::string text = "step,elbo\n";
  text.reserve(text.size() + trace.size() * 32);
  char buf[64];
  for (size_t i = 0; i < trace.size(); ++i) {
    char* end = std::to_chars(buf, buf + sizeof buf, i + 1).ptr;
    *end++ = ',';
    end = std::to_chars(end, buf + sizeof buf - 1, trace[i]).ptr;
    *end++ = '\n';
    text.append(buf, end);
  }
  return text;
}

}  // namespace

Written write_outputs(const Outputs& o, const Model& model, Guide& guide, const Fit& fit, double wall_time) {
  const vguide::PosteriorDraws draws = vguide::draw_posterior(model, guide, o.draws);
  const vguide::ElboEstimate elbo = vguide::estimate_elbo(model, guide, o.elbo_particles);
  if (!o.write) return {elbo, {}};  // the collective parts are done; the rest is rank 0's
  const auto [khat, reading] = psis_diagnostic(elbo, o.elbo_particles);
  const std::vector<std::string> warnings = fit_warnings(fit, o.family, khat);
  const nlohmann::json summary = summary_json(o, draws, elbo, khat, reading, warnings, guide, fit, wall_time);
  const vguide::StanCsvContent csv = draws_content(o, draws, fit);
  // Every text is formed before any file is written, so a failure leaves the folder as it was.
  const std::string csv_text = stan_csv_text(csv);
  const std::string psis_text = o.psis_resample ? stan_csv_text(psis_resampled(o, csv)) : std::string();
  write_atomically(o.dir / "draws.csv", csv_text);
  write_atomically(o.dir / "elbo.csv", elbo_csv_text(fit.trace()));
  if (o.psis_resample) write_atomically(o.dir / "draws_psis.csv", psis_text);
  write_atomically(o.dir / "summary.json", summary.dump(2) + "\n");
  spdlog::info("ELBO {:.6g} ± {:.2g} ({} draws); PSIS k-hat {:.3g}: {}", elbo.elbo, elbo.se, o.elbo_particles, khat,
               reading);
  return {elbo, warnings};
}

}  // namespace vguide::host
