// Embedding vguide: an application that fits a `.qvr` program held in a string to
// data held in tensors, with a guide family loaded from its plugin by name, and reads
// the posterior through the API. It writes no files.
//
//   alpha ~ Normal(0, 10),  beta ~ Normal(0, 10)
//   y_i   ~ Normal(alpha + beta * x_i, sigma),  sigma = 2 known,  i = 1..200
//
// With x centred (sum x_i = 0) the exact posterior is two independent Normals, so
// the fit is printed next to its closed form. See docs/embedding.md.
//
// Usage: vguide_embed_demo [FAMILY]   (default: normal; any loaded family works)
#include <torch/torch.h>

#include <cmath>
#include <cstdio>
#include <exception>
#include <string>

#include "vguide/guide.hpp"
#include "vguide/model/data.hpp"
#include "vguide/model/program.hpp"
#include "vguide/model/program_model.hpp"
#include "vguide/runtime/fit.hpp"
#include "vguide/runtime/plugin_manager.hpp"
#include "vguide/runtime/posterior.hpp"

namespace {

const char* const kProgram = R"(object Row : 1

program regression : Row -> Row
    data x
    data sigma
    alpha <- Normal(0.0, 10.0)
    beta <- Normal(0.0, 10.0)
    observe y ~ Normal(alpha + beta * x, sigma)
    return y

output regression
)";

constexpr double kPriorSd = 10.0, kSigma = 2.0;

// Posterior of a coefficient c with prior N(0, kPriorSd^2) and likelihood
// prod_i N(y_i; c * u_i, kSigma^2), when the other coefficient's regressor is
// orthogonal to u: precision sum u^2 / sigma^2 + 1 / prior^2.
std::pair<double, double> exact_posterior(const at::Tensor& u, const at::Tensor& y) {
  const double precision = (u * u).sum().item<double>() / (kSigma * kSigma) + 1.0 / (kPriorSd * kPriorSd);
  const double mean = (u * y).sum().item<double>() / (kSigma * kSigma) / precision;
  return {mean, 1.0 / std::sqrt(precision)};
}

}  // namespace

int main(int argc, char** argv) try {
  const std::string family = argc > 1 ? argv[1] : "normal";

  // The data, simulated in memory from a seeded generator; x centred.
  auto gen = at::detail::createCPUGenerator(2026);
  at::Tensor x = at::rand({200}, gen, at::kDouble) * 4.0 - 2.0;
  x = x - x.mean();
  const at::Tensor y = 1.5 + 0.8 * x + kSigma * at::randn({200}, gen, at::kDouble);

  vguide::model::Data data("<memory>");
  data.set("x", x);
  data.set("y", y);
  data.set("sigma", at::scalar_tensor(kSigma, at::kDouble));
  vguide::model::ProgramModel model(vguide::model::parse_program(kProgram, "<regression>"), std::move(data));

  vguide::PluginManager plugins(/*seed=*/7);
  plugins.load(family);  // lib<family>.so from VGUIDE_PLUGIN_PATH, then next to libvguide.so
  auto guide = plugins.create(family, model, model.observed_names(), /*options=*/{});

  // The runtime's fit loop (the one vguide-host runs) at its defaults (docs/fitting.md):
  // a start from Pathfinder, steps in units of the guide's own scale, the stationary
  // iterates averaged, and a stop once the averages are known to 2% of an sd.
  vguide::FitOptions options;
  vguide::Fit fit(model, *guide, options);
  const vguide::FitResult result = fit.run(/*interrupt=*/nullptr, [](const vguide::StepReport& r) {
    if (r.step % 500 == 1) std::printf("step %4lld  ELBO %10.3f\n", static_cast<long long>(r.step - 1), r.objective);
  });
  std::printf("stopped after %lld steps (%s)\n", static_cast<long long>(result.steps_done),
              vguide::to_string(result.reason).c_str());
  fit.finish();  // the guide's after_fit hook (the laplace family's Hessian)

  const auto exact_alpha = exact_posterior(torch::ones_like(x), y);
  const auto exact_beta = exact_posterior(x, y);
  std::printf("\nposterior (%s guide, 4000 draws) and the exact posterior\n", family.c_str());
  std::printf("%-6s %10s %10s %12s %10s\n", "site", "mean", "sd", "exact mean", "exact sd");
  // Draws from the fitted guide (with the program's let values, none here) and their
  // per-element summaries.
  const vguide::PosteriorDraws draws = vguide::draw_posterior(model, *guide, 4000);
  for (const auto& s : vguide::summarize(draws)) {
    const auto exact = s.name == "alpha" ? exact_alpha : exact_beta;
    std::printf("%-6s %10.4f %10.4f %12.4f %10.4f\n", s.name.c_str(), s.mean.item<double>(), s.sd.item<double>(),
                exact.first, exact.second);
  }
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "vguide_embed_demo: error: %s\n", e.what());
  return 1;
}
