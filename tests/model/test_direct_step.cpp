// The direct step (framework/src/runtime/direct_step.hpp) against the autograd step:
// two fits from the same seed, one per path, must give the same ELBO, the same
// gradients and the same parameters step after step, to rounding: on every example
// program, on the compiled Stan corpus programs and on random programs, for every
// family that declares a structure (normal, delta, mvn, lowrank_mvn), S = 1 and 16,
// float64 and float32, with and without sticking the landing. And what a fit has
// besides the step: the averaging and stopping rules, checkpoints that resume bit for
// bit, the non-finite guard, minibatches (a tape of their own, refilled with each
// batch's rows), the choice
// of path and its refusals.
#include <gtest/gtest.h>
#include <unistd.h>
#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "model_paths.hpp"
#include "random_programs.hpp"
#include "vguide/flat_guide.hpp"
#include "vguide/location_scale.hpp"
#include "vguide/model/data.hpp"
#include "vguide/model/program_model.hpp"
#include "vguide/model/stan_model.hpp"
#include "vguide/runtime/fit.hpp"
#include "vguide/runtime/plugin_manager.hpp"

namespace vguide {
namespace {

using model::ProgramModel;
using model::StanModel;

std::unique_ptr<ProgramModel> example(const std::string& name) {
  const std::string base = std::string(VGUIDE_TEST_EXAMPLES_DIR) + "/models/" + name;
  return std::make_unique<ProgramModel>(model::load_program(base + ".qvr"), model::load_data(base + ".json"));
}

std::unique_ptr<StanModel> stan(const std::string& name) {
  const std::string base = std::string(VGUIDE_TEST_STAN_DIR) + "/" + name;
  return std::make_unique<StanModel>(model::load_stan(base + ".stan"), model::load_data(base + ".json"));
}

std::vector<std::string> observed(const Model& m) {
  const auto* program = dynamic_cast<const ProgramModel*>(&m);
  return program ? program->observed_names() : std::vector<std::string>{};
}

struct FitRun {
  std::shared_ptr<Guide> guide;
  std::unique_ptr<Fit> fit;
};

FitRun start(const Model& model, const std::string& family, FitOptions options, StepPath path) {
  PluginManager manager(7);  // the same seed: the same guide and the same streams
  manager.load(family);
  FitRun r;
  r.guide = manager.create(family, model, observed(model), {});
  options.step_path = path;
  r.fit = std::make_unique<Fit>(model, *r.guide, options);
  return r;
}

FitOptions options_for(int64_t S, at::ScalarType dtype, bool stick_the_landing = false) {
  FitOptions o;
  o.dtype = dtype;
  o.objective.particles = S;
  o.objective.stick_the_landing = stick_the_landing;
  return o;
}

// The families whose plugins declare a location-scale structure, one of each form.
const std::vector<std::string> kDeclaringFamilies = {"normal", "delta", "mvn", "lowrank_mvn"};

double max_abs(const at::Tensor& t) { return t.abs().max().item<double>(); }

// `steps` steps of each path: the same ELBO, gradients and parameters after each.
// A model that draws minibatch rows gives the autograd fit its `twin`, whose row
// stream is in the same state, so that both paths see the same rows.
void expect_same_steps(const Model& model, const std::string& family, int64_t S, at::ScalarType dtype, int steps,
                       bool stick_the_landing = false, const Model* twin = nullptr) {
  const bool f64 = dtype == at::kDouble;
  SCOPED_TRACE(family + ", S = " + std::to_string(S) + (f64 ? ", float64" : ", float32") +
               (stick_the_landing ? ", sticking the landing" : ""));
  FitRun direct = start(model, family, options_for(S, dtype, stick_the_landing), StepPath::direct);
  FitRun autograd = start(twin ? *twin : model, family, options_for(S, dtype, stick_the_landing), StepPath::autograd);
  ASSERT_TRUE(direct.fit->direct_steps()) << direct.fit->autograd_because();
  ASSERT_FALSE(autograd.fit->direct_steps());
  const double tol = f64 ? 1e-9 : 2e-4;
  for (int t = 0; t < steps; ++t) {
    const bool ok_direct = direct.fit->step(), ok_autograd = autograd.fit->step();
    ASSERT_EQ(ok_direct, ok_autograd) << "step " << t;
    const double a = direct.fit->trace().back(), b = autograd.fit->trace().back();
    if (!ok_direct) continue;
    ASSERT_NEAR(a, b, tol * std::max(1.0, std::abs(b))) << "ELBO at step " << t;
    const auto pa = direct.guide->named_parameters(), pb = autograd.guide->named_parameters();
    for (const auto& item : pb) {
      const at::Tensor& x = pa[item.key()];
      const at::Tensor& y = item.value();
      const double g_scale = std::max(1.0, max_abs(y.grad()));
      ASSERT_LE(max_abs(x.grad() - y.grad()), 10 * tol * g_scale) << item.key() << " gradient at step " << t;
      ASSERT_LE(max_abs(x - y), 10 * tol * std::max(1.0, max_abs(y))) << item.key() << " at step " << t;
    }
  }
}

void expect_same_everywhere(const Model& model, const std::string& what) {
  SCOPED_TRACE(what);
  for (const std::string& family : kDeclaringFamilies)
    for (int64_t S : {int64_t{1}, int64_t{16}})
      for (at::ScalarType dtype : {at::kDouble, at::kFloat}) expect_same_steps(model, family, S, dtype, 20);
}

TEST(DirectStep, SameStepsAsAutogradOnEveryExampleProgram) {
  for (const std::string name : {"eight_schools", "hierarchical", "logistic_regression", "ar1"})
    expect_same_everywhere(*example(name), name);
}

TEST(DirectStep, SameStepsAsAutogradOnCompiledStanPrograms) {
  for (const std::string name : {"eight_schools_noncentered", "linear_regression_loop", "ar5",
                                 "offset_multiplier_bounds", "poisson_glm"}) {
    const auto model = stan(name);
    ASSERT_TRUE(model->compiled()) << name << ": " << model->interpreted_because();
    expect_same_everywhere(*model, name);
  }
}

TEST(DirectStep, SameStepsAsAutogradOnRandomPrograms) {
  test::ProgramGenerator generator(20261207);
  for (int i = 0; i < 12; ++i) {
    auto [text, data] = generator.next(i);
    SCOPED_TRACE(text);
    ProgramModel model(model::parse_program(text, "random.qvr"), data);
    for (const std::string& family : kDeclaringFamilies)
      for (int64_t S : {int64_t{1}, int64_t{16}})
        for (at::ScalarType dtype : {at::kDouble, at::kFloat}) expect_same_steps(model, family, S, dtype, 8);
  }
}

// Sticking the landing drops the score terms: for the full- and low-rank forms the
// path through z of log q is Σ⁻¹(z - loc), solved rather than read off ε.
TEST(DirectStep, SameStepsAsAutogradWhenStickingTheLanding) {
  const auto program = example("hierarchical");
  const auto stan_model = stan("eight_schools_noncentered");
  for (const Model* model : std::vector<const Model*>{program.get(), stan_model.get()}) {
    for (const std::string& family : kDeclaringFamilies)
      for (int64_t S : {int64_t{1}, int64_t{16}})
        for (at::ScalarType dtype : {at::kDouble, at::kFloat}) expect_same_steps(*model, family, S, dtype, 12, true);
  }
}

// The averaging and stopping rules see the same iterates: the fits stop at the same
// step for the same reason, with the same averages, for every form.
TEST(DirectStep, StopsWhereAutogradStopsWithTheSameAverages) {
  const auto model = example("eight_schools");
  for (const std::string& family : kDeclaringFamilies) {
    SCOPED_TRACE(family);
    FitOptions o;
    o.steps = 4000;
    FitRun direct = start(*model, family, o, StepPath::direct);
    FitRun autograd = start(*model, family, o, StepPath::autograd);
    ASSERT_TRUE(direct.fit->direct_steps()) << direct.fit->autograd_because();
    const FitResult a = direct.fit->run(), b = autograd.fit->run();
    EXPECT_EQ(a.steps_done, b.steps_done);
    EXPECT_EQ(to_string(a.reason), to_string(b.reason));
    EXPECT_EQ(a.averaging_from, b.averaging_from);
    direct.fit->finish();
    autograd.fit->finish();
    for (const auto& item : autograd.guide->named_parameters())
      EXPECT_TRUE(at::allclose(direct.guide->named_parameters()[item.key()], item.value(), 1e-7, 1e-7)) << item.key();
  }
}

// 60 straight steps against 25, a checkpoint, a fresh fit resumed from it and 35
// more: the same bits, for every form, and with a minibatch (whose row stream the
// checkpoint carries as a tracked generator).
TEST(DirectStep, CheckpointsResumeBitForBit) {
  const auto path = std::filesystem::temp_directory_path() / ("vguide_direct_" + std::to_string(::getpid()) + ".pt");
  FitOptions o;
  o.steps = 60;
  o.averaging.enabled = false;
  for (const std::string& family : kDeclaringFamilies)
    for (int64_t batch : {int64_t{0}, int64_t{12}}) {
      SCOPED_TRACE(family + (batch ? ", minibatch" : ""));
      const auto fit_from = [&](ProgramModel& model, at::Generator rows) {
        if (batch) model.set_minibatch(batch, rows);
        FitRun r = start(model, family, o, StepPath::direct);
        if (batch) r.fit->track_generator("rows", rows);
        return r;
      };
      auto straight_model = example("hierarchical"), first_model = example("hierarchical"),
           resumed_model = example("hierarchical");
      FitRun straight = fit_from(*straight_model, at::detail::createCPUGenerator(11));
      ASSERT_TRUE(straight.fit->direct_steps()) << straight.fit->autograd_because();
      for (int t = 0; t < 60; ++t) straight.fit->step();
      FitRun first = fit_from(*first_model, at::detail::createCPUGenerator(11));
      for (int t = 0; t < 25; ++t) first.fit->step();
      first.fit->save_checkpoint(path.string(), {});
      FitRun resumed = fit_from(*resumed_model, at::detail::createCPUGenerator(99));
      resumed.fit->load_checkpoint(path.string(), {});
      for (int t = 25; t < 60; ++t) resumed.fit->step();
      std::filesystem::remove(path);
      for (const auto& item : straight.guide->named_parameters())
        EXPECT_TRUE(at::equal(resumed.guide->named_parameters()[item.key()], item.value())) << item.key();
    }
}

// A draw whose log joint is not finite skips the step on both paths alike.
TEST(DirectStep, NonFiniteStepsAreSkippedAlike) {
  auto model = std::make_unique<StanModel>(
      model::parse_stan("parameters {\n  real mu;\n}\nmodel {\n  mu ~ normal(0, 1);\n  target += log(mu + 1);\n}\n",
                        "shifted_log.stan"),
      model::parse_data("{}"));
  ASSERT_TRUE(model->compiled()) << model->interpreted_because();
  FitOptions o = options_for(1, at::kDouble);
  o.init.strategy = InitStrategy::uniform;
  FitRun direct = start(*model, "normal", o, StepPath::direct);
  FitRun autograd = start(*model, "normal", o, StepPath::autograd);
  int skipped = 0;
  for (int t = 0; t < 60; ++t) {
    const bool a = direct.fit->step(), b = autograd.fit->step();
    ASSERT_EQ(a, b) << "step " << t;
    skipped += a ? 0 : 1;
  }
  EXPECT_GT(skipped, 0);
  EXPECT_EQ(direct.fit->result().non_finite_steps, skipped);
  for (const auto& item : autograd.guide->named_parameters())
    EXPECT_TRUE(at::allclose(direct.guide->named_parameters()[item.key()], item.value(), 1e-9, 1e-9)) << item.key();
}

// A minibatch's tape is compiled over B rows and given each batch's rows: data
// arrays' rows gathered (logistic regression's matrix, hierarchical's group index,
// which moves an index node), and values computed from the rows evaluated on the
// drawn rows as the autograd path evaluates them (a sum over the batch's rows, an
// observed let). Its direct steps are the autograd steps on the same rows.
TEST(DirectStep, MinibatchStepsAsAutogradOnTheSameRows) {
  const std::string centred =
      "object Row : 1\n"
      "program centred : Row -> Row\n"
      "    data x[N]\n"
      "    let xc = x - sum(x) / 6.0\n"
      "    a <- Normal(0.0, 2.0)\n"
      "    b <- Normal(0.0, 2.0)\n"
      "    s <- HalfNormal(1.0)\n"
      "    let v = exp(0.5 * x)\n"
      "    observe v ~ LogNormal(a + 0.1 * b, 2.0 * s)\n"
      "    observe y ~ Normal(a + b * xc, s)\n"
      "    return y\n"
      "output centred\n";
  const std::string centred_data =
      "{\"N\": 20, \"x\": [0.3, -1.2, 0.8, 2.1, -0.4, 0.0, 1.5, -2.2, 0.9, 0.1, -0.7, 1.1, 0.4, -1.6, 2.4, "
      "-0.2, 0.6, -0.9, 1.3, -1.1], \"y\": [1.0, -0.5, 1.7, 3.2, 0.4, 0.8, 2.6, -1.9, 1.9, 1.2, 0.2, 2.0, 1.3, "
      "-0.8, 3.9, 0.7, 1.5, 0.0, 2.2, -0.3]}";
  // Observed arrays read again later, as they are and through a let.
  const std::string chained =
      "object Row : 1\n"
      "program chained : Row -> Row\n"
      "    data x[N]\n"
      "    a <- Normal(0.0, 2.0)\n"
      "    b <- Normal(0.0, 1.0)\n"
      "    s <- HalfNormal(1.0)\n"
      "    observe y ~ Normal(a * x, s)\n"
      "    let r = y - 1.0\n"
      "    observe z ~ Normal(b * r + 0.1 * y, s)\n"
      "    return z\n"
      "output chained\n";
  const std::string chained_data =
      "{\"N\": 10, \"x\": [0.3, -1.2, 0.8, 2.1, -0.4, 0.0, 1.5, -2.2, 0.9, 0.1], "
      "\"y\": [0.5, -1.9, 1.7, 3.2, -0.4, 0.3, 2.6, -3.1, 1.2, 0.4], "
      "\"z\": [-0.2, -1.1, 0.3, 1.9, -0.9, -0.5, 0.8, -2.4, 0.2, -0.3]}";
  const auto make = [&](const std::string& name) -> std::unique_ptr<ProgramModel> {
    if (name == "centred")
      return std::make_unique<ProgramModel>(model::parse_program(centred, "centred.qvr"), model::parse_data(centred_data));
    if (name == "chained")
      return std::make_unique<ProgramModel>(model::parse_program(chained, "chained.qvr"), model::parse_data(chained_data));
    return example(name);
  };
  for (const auto& [name, batch] : std::vector<std::pair<std::string, int64_t>>{
           {"logistic_regression", 10}, {"hierarchical", 12}, {"centred", 6}, {"chained", 4}}) {
    SCOPED_TRACE(name);
    for (const std::string& family : kDeclaringFamilies)
      for (int64_t S : {int64_t{1}, int64_t{16}})
        for (at::ScalarType dtype : {at::kDouble, at::kFloat}) {
          auto a = make(name), b = make(name);
          a->set_minibatch(batch, at::detail::createCPUGenerator(4));
          b->set_minibatch(batch, at::detail::createCPUGenerator(4));
          ASSERT_TRUE(a->direct_applies(S, /*any_size=*/false)) << name;
          expect_same_steps(*a, family, S, dtype, 12, false, b.get());
        }
  }
}

// A Stan program's minibatch tape takes the rows as inputs: its data rows, what is
// computed from them (a matrix product, a log1p, a dot_self) and the group index
// that picks an intercept, as a multi-index and element by element in a loop.
TEST(DirectStep, StanMinibatchesStepAsAutogradOnTheSameRows) {
  const std::string looped =
      "data {\n  int<lower=1> N;\n  int<lower=1> G;\n  array[N] int<lower=1, upper=G> g;\n  vector[N] x;\n"
      "  vector[N] y;\n}\nparameters {\n  vector[G] a;\n  real b;\n  real<lower=0> s;\n}\nmodel {\n"
      "  a ~ normal(0, 1);\n  b ~ normal(0, 1);\n  s ~ normal(0, 1);\n  for (n in 1:N) {\n"
      "    real mu = a[g[n]] + b * log1p(x[n] * x[n]);\n    y[n] ~ normal(mu, s);\n  }\n"
      "  target += -0.01 * b * b * dot_self(x);\n}\n";
  const std::string looped_data =
      "{\"N\": 12, \"G\": 3, \"g\": [1, 2, 3, 3, 2, 1, 1, 3, 2, 2, 1, 3], "
      "\"x\": [0.3, -1.2, 0.8, 2.1, -0.4, 0.0, 1.5, -2.2, 0.9, 0.1, -0.7, 1.1], "
      "\"y\": [1.0, -0.5, 1.7, 3.2, 0.4, 0.8, 2.6, -1.9, 1.9, 1.2, 0.2, 2.0]}";
  const auto make = [&](const std::string& name) -> std::unique_ptr<StanModel> {
    if (name == "looped")
      return std::make_unique<StanModel>(model::parse_stan(looped, "looped.stan"), model::parse_data(looped_data));
    if (name == "matrix_regression") {  // transformed data rows; a prior the tape has for sigma
      const std::string base = std::string(VGUIDE_TEST_STAN_DIR) + "/matrix_regression";
      std::ifstream in(base + ".stan");
      std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
      const size_t at = text.find("weibull(2, 1)");
      EXPECT_NE(at, std::string::npos);
      text.replace(at, 13, "normal(0, 1)");
      return std::make_unique<StanModel>(model::parse_stan(text, "matrix_regression.stan"),
                                         model::load_data(base + ".json"));
    }
    return stan(name);
  };
  for (const auto& [name, batch] : std::vector<std::pair<std::string, int64_t>>{{"hierarchical_logistic", 8},
                                                                                 {"logistic_regression", 7},
                                                                                 {"poisson_glm", 5},
                                                                                 {"matrix_regression", 6},
                                                                                 {"linear_regression_loop", 4},
                                                                                 {"looped", 5}}) {
    SCOPED_TRACE(name);
    for (const std::string& family : kDeclaringFamilies)
      for (int64_t S : {int64_t{1}, int64_t{16}})
        for (at::ScalarType dtype : {at::kDouble, at::kFloat}) {
          // Here float32 autograd's own gradient of lowrank_mvn's entropy (about 1.5e5
          // at the start) is off by about 1%: no reference to hold float32 steps to.
          if (name == "matrix_regression" && family == "lowrank_mvn" && dtype == at::kFloat) continue;
          auto a = make(name), b = make(name);
          ASSERT_GT(a->num_rows(), batch) << a->rows_refusal();
          a->set_minibatch(batch, at::detail::createCPUGenerator(4));
          b->set_minibatch(batch, at::detail::createCPUGenerator(4));
          ASSERT_TRUE(a->direct_applies(S, /*any_size=*/true)) << a->direct_blocker();
          expect_same_steps(*a, family, S, dtype, 12, false, b.get());
        }
  }
}

// What a minibatch's tape cannot hold keeps autograd, and says why: a condition on
// a row's value, an index computed from the rows.
TEST(DirectStep, StanMinibatchesThatDoNotTraceSayWhy) {
  const std::string data = "{\"N\": 6, \"g\": [0, 1, 2, 2, 1, 0], \"y\": [0.1, 0.2, 0.3, 0.4, 0.5, 0.6]}";
  const auto program = [](const std::string& mean) {
    return "data {\n  int<lower=1> N;\n  array[N] int<lower=0, upper=2> g;\n  vector[N] y;\n}\n"
           "parameters {\n  vector[3] a;\n}\nmodel {\n  a ~ normal(0, 1);\n  for (n in 1:N)\n    y[n] ~ normal(" +
           mean + ", 1);\n}\n";
  };
  for (const auto& [mean, why] : std::vector<std::pair<std::string, std::string>>{
           {"g[n] == 0 ? a[1] : a[2]", "the operator '==' on values that depend on parameters or on the rows (line 12)"},
           {"a[g[n] + 1]", "an index computed from the rows or from parameters (line 12)"}}) {
    StanModel model(model::parse_stan(program(mean), "rows.stan"), model::parse_data(data));
    ASSERT_TRUE(model.compiled()) << model.interpreted_because();
    model.set_minibatch(3, at::detail::createCPUGenerator(4));
    EXPECT_FALSE(model.direct_applies(1, true)) << mean;
    EXPECT_EQ(model.direct_blocker(), "a minibatch of 3 rows is not compiled: " + why);
    // Autograd still fits them.
    EXPECT_TRUE(start(model, "normal", options_for(1, at::kDouble), StepPath::automatic).fit->step());
  }
}

// A fit whose model turns to minibatches after it started takes the direct step on
// the batches too, still on autograd's trajectory; back to full batches, the full tape.
TEST(DirectStep, MinibatchesSetDuringAFitStepAsAutograd) {
  auto a = example("logistic_regression"), b = example("logistic_regression");
  FitOptions o = options_for(1, at::kDouble);
  FitRun direct = start(*a, "normal", o, StepPath::automatic);
  FitRun autograd = start(*b, "normal", o, StepPath::autograd);
  ASSERT_TRUE(direct.fit->direct_steps()) << direct.fit->autograd_because();
  for (int64_t batch : {int64_t{10}, a->num_rows()}) {
    a->set_minibatch(batch, at::detail::createCPUGenerator(4));
    b->set_minibatch(batch, at::detail::createCPUGenerator(4));
    EXPECT_TRUE(a->direct_applies(1, false));
    for (int t = 0; t < 10; ++t) {
      direct.fit->step();
      autograd.fit->step();
    }
  }
  for (const auto& item : autograd.guide->named_parameters())
    EXPECT_TRUE(at::allclose(direct.guide->named_parameters()[item.key()], item.value(), 1e-9, 1e-9)) << item.key();
}

// As vguide-host runs a minibatch fit: the fit starts on all the rows (too many for
// the tape here: X is 1000 x 20), then the model turns to minibatches, whose tape
// the steps take, forced or not, on autograd's trajectory. Forced, a step whose
// rows have no compiled log joint throws.
TEST(DirectStep, AFitStartedOnAllRowsStepsDirectlyOnItsMinibatches) {
  std::string x = "[", y = "[";
  uint64_t state = 20261207;
  const auto uniform = [&] {
    state = state * 6364136223846793005ULL + 1442695040888963407ULL;
    return static_cast<double>(state >> 11) / 9007199254740992.0;
  };
  for (int i = 0; i < 1000; ++i) {
    x += std::string(i ? ", " : "") + "[";
    for (int j = 0; j < 20; ++j) x += std::string(j ? ", " : "") + std::to_string(uniform() * 2 - 1);
    x += "]";
    y += std::string(i ? ", " : "") + (uniform() < 0.5 ? "0" : "1");
  }
  const std::string data = "{\"N\": 1000, \"P\": 20, \"X\": " + x + "], \"y\": " + y + "]}";
  const std::string base = std::string(VGUIDE_TEST_EXAMPLES_DIR) + "/models/logistic_regression.qvr";
  const auto make = [&] { return std::make_unique<ProgramModel>(model::load_program(base), model::parse_data(data)); };
  for (StepPath path : {StepPath::automatic, StepPath::direct}) {
    SCOPED_TRACE(to_string(path));
    auto a = make(), b = make();
    FitOptions o = options_for(1, at::kDouble);
    FitRun direct = start(*a, "normal", o, path);
    FitRun autograd = start(*b, "normal", o, StepPath::autograd);
    EXPECT_FALSE(direct.fit->direct_steps());
    EXPECT_EQ(direct.fit->autograd_because().rfind("the model's log joint is not compiled for these rows", 0), 0u)
        << direct.fit->autograd_because();
    a->set_minibatch(32, at::detail::createCPUGenerator(5));
    b->set_minibatch(32, at::detail::createCPUGenerator(5));
    EXPECT_TRUE(direct.fit->direct_steps()) << direct.fit->autograd_because();
    for (int t = 0; t < 15; ++t) {
      direct.fit->step();
      autograd.fit->step();
      ASSERT_NEAR(direct.fit->trace().back(), autograd.fit->trace().back(), 1e-9 * std::abs(autograd.fit->trace().back()))
          << "step " << t;
    }
    for (const auto& item : autograd.guide->named_parameters())
      EXPECT_TRUE(at::allclose(direct.guide->named_parameters()[item.key()], item.value(), 1e-9, 1e-9)) << item.key();
    a->set_minibatch(a->num_rows(), at::detail::createCPUGenerator(5));
    if (path == StepPath::direct) {
      try {
        direct.fit->step();
        FAIL() << "a forced direct step on rows without a compiled log joint";
      } catch (const std::invalid_argument& e) {
        EXPECT_EQ(std::string(e.what()).rfind("the direct step does not apply: the model's log joint is not compiled "
                                              "for these rows ('X' has more than 16384 elements)",
                                              0),
                  0u)
            << e.what();
      }
    } else {
      EXPECT_FALSE(direct.fit->direct_steps());  // autograd on all the rows
      const int64_t before = direct.fit->steps_done();
      direct.fit->step();
      EXPECT_EQ(direct.fit->steps_done(), before + 1);
    }
  }
}

// A rank of a data-parallel fit weighs its block of rows (set_row_weight; a Stan
// program's block is also cut, set_row_range): its direct steps are the autograd
// steps of that rank, for every form.
TEST(DirectStep, ARanksBlockOfRowsStepsAsAutograd) {
  const auto program = example("logistic_regression");
  program->set_row_weight(3.0);
  const auto stan_model = stan("linear_regression_loop");
  ASSERT_FALSE(stan_model->rows_size().empty()) << stan_model->rows_refusal();
  stan_model->set_row_range(2, stan_model->num_rows() / 2 + 1);
  stan_model->set_row_weight(2.5);
  for (const Model* model : std::vector<const Model*>{program.get(), stan_model.get()})
    for (const std::string& family : kDeclaringFamilies)
      for (int64_t S : {int64_t{1}, int64_t{16}}) expect_same_steps(*model, family, S, at::kDouble, 10);
}

// Declares z = loc + exp(log_scale) ε but draws with twice that scale.
class MisdeclaredGuide final : public FlatGuide {
 public:
  explicit MisdeclaredGuide(const Model& model)
      : FlatGuide("misdeclared", LatentRegistry::from_model(model, observed(model)), 5) {
    const int64_t D = registry().total_unconstrained_dim();
    loc_ = register_parameter("loc", at::zeros({D}));
    log_scale_ = register_parameter("log_scale", at::zeros({D}));
    declare_location_scale(*this, {loc_, log_scale_});
  }

 protected:
  std::pair<at::Tensor, at::Tensor> sample_flat(int64_t S, const at::TensorOptions&) override {
    const at::Tensor eps = at::randn({S, loc_.size(0)}, generator(), loc_.options());
    const at::Tensor z = loc_ + 2.0 * at::exp(log_scale_) * eps;
    return {z, log_prob_flat(z)};
  }
  at::Tensor log_prob_flat(const at::Tensor& z) override {
    const at::Tensor scale = 2.0 * at::exp(log_scale_);
    return (-0.5 * ((z - loc_) / scale).pow(2) - at::log(scale) - 0.5 * std::log(2 * M_PI)).sum(-1);
  }

 private:
  at::Tensor loc_, log_scale_;
};

TEST(DirectStep, AFamilyThatDrawsOtherwiseThanItDeclaresIsCaught) {
  const auto model = example("eight_schools");
  FitOptions o;
  o.init.strategy = InitStrategy::guide_default;
  const auto automatic = std::make_shared<MisdeclaredGuide>(*model);  // a module is held by shared_ptr
  Fit fit(*model, *automatic, o);
  EXPECT_FALSE(fit.direct_steps());
  EXPECT_EQ(fit.autograd_because().rfind("the family 'misdeclared' does not draw as its declared location-scale "
                                         "structure says (at the start, the ELBO differs: the ELBO is ",
                                         0),
            0u)
      << fit.autograd_because();
  const auto ends_with = [](const std::string& text, const std::string& end) {
    return text.size() >= end.size() && text.compare(text.size() - end.size(), end.size(), end) == 0;
  };
  const std::string& why = fit.autograd_because();
  EXPECT_TRUE(ends_with(why, " computed from the declaration)")) << why;
  // A float32 fit's reason says that float32 rounding could be the cause too.
  FitOptions single = o;
  single.dtype = at::kFloat;
  const auto in_float = std::make_shared<MisdeclaredGuide>(*model);
  Fit fit32(*model, *in_float, single);
  EXPECT_FALSE(fit32.direct_steps());
  const std::string float32_note =
      " computed from the declaration; in float32 autograd's own rounding can differ as much on a stiff start, "
      "which a float64 fit tells apart)";
  const std::string& why32 = fit32.autograd_because();
  EXPECT_EQ(why32.rfind("the family 'misdeclared' does not draw", 0), 0u) << why32;
  EXPECT_TRUE(ends_with(why32, float32_note)) << why32;
  o.step_path = StepPath::direct;
  const auto forced = std::make_shared<MisdeclaredGuide>(*model);
  EXPECT_THROW(Fit(*model, *forced, o), std::invalid_argument);
  EXPECT_THROW(declare_location_scale(*forced, {forced->named_parameters()["loc"], {}}), std::invalid_argument);
}

// A guide with the parameters of each declared form, to test the declarations' checks.
class Declaring final : public FlatGuide {
 public:
  explicit Declaring(const Model& model)
      : FlatGuide("declaring", LatentRegistry::from_model(model, observed(model)), 5) {
    D = registry().total_unconstrained_dim();
    loc = register_parameter("loc", at::zeros({D}));
    square = register_parameter("square", at::zeros({D, D}));
    wide = register_parameter("wide", at::zeros({D, D + 1}));
    narrow = register_parameter("narrow", at::zeros({D, 2}));
    raw = register_parameter("raw", at::zeros({D}));
  }
  int64_t D = 0;
  at::Tensor loc, square, wide, narrow, raw;

 protected:
  std::pair<at::Tensor, at::Tensor> sample_flat(int64_t, const at::TensorOptions&) override { return {}; }
  at::Tensor log_prob_flat(const at::Tensor&) override { return {}; }
};

std::string declaration_error(const std::function<void()>& declare) {
  try {
    declare();
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  return "(accepted)";
}

TEST(DirectStep, DeclarationsNameTheTensorThatDoesNotFit) {
  const auto model = example("eight_schools");  // D = 10
  const auto g = std::make_shared<Declaring>(*model);
  const at::Tensor stray = at::zeros({g->D});
  EXPECT_EQ(declaration_error([&] { declare_location_scale_tril(*g, {g->loc, g->narrow, g->raw}); }),
            "declare_location_scale_tril: declaring's offdiag must be a (10, 10) parameter of the guide");
  EXPECT_EQ(declaration_error([&] { declare_location_scale_tril(*g, {g->loc, g->square, stray}); }),
            "declare_location_scale_tril: declaring's diag_raw must be a (10,) parameter of the guide");
  EXPECT_EQ(declaration_error([&] { declare_location_low_rank(*g, {g->loc, g->wide, g->raw}); }),
            "declare_location_low_rank: declaring's cov_factor must be a (10, r) with 1 <= r <= 10 parameter of the "
            "guide");
  EXPECT_EQ(declaration_error([&] { declare_location_low_rank(*g, {g->raw.narrow(0, 0, 5), g->narrow, g->raw}); }),
            "declare_location_low_rank: declaring's loc must be a (10,) parameter of the guide");
  EXPECT_FALSE(location_low_rank(*g).has_value());
  EXPECT_EQ(declaration_error([&] { declare_location_low_rank(*g, {g->loc, g->narrow, g->raw}); }), "(accepted)");
  ASSERT_TRUE(location_low_rank(*g).has_value());
  EXPECT_TRUE(location_low_rank(*g)->cov_factor.is_same(g->narrow));
  EXPECT_FALSE(location_scale_tril(*g).has_value());
  EXPECT_FALSE(location_scale(*g).has_value());
  EXPECT_EQ(declaration_error([&] { declare_location_scale_tril(*g, {g->loc, g->square, g->raw}); }),
            "declare_location_scale_tril: declaring has declared its structure already");
}

TEST(DirectStep, ThePathIsChosenAndRefusedWithAReason) {
  const auto model = example("eight_schools");
  FitOptions o;
  EXPECT_TRUE(start(*model, "normal", o, StepPath::automatic).fit->direct_steps());
  FitRun stl = start(*model, "normal", [&] {
    FitOptions s;
    s.objective.stick_the_landing = true;
    return s;
  }(), StepPath::automatic);
  EXPECT_TRUE(stl.fit->direct_steps());
  FitOptions iwae;
  iwae.objective.kind = Objective::iwae;
  iwae.objective.particles = 4;
  const FitRun r = start(*model, "normal", iwae, StepPath::automatic);
  EXPECT_FALSE(r.fit->direct_steps());
  EXPECT_EQ(r.fit->autograd_because(), "the objective is iwae, not the ELBO");
  try {
    start(*model, "iaf", o, StepPath::direct);
    FAIL() << "iaf took the direct step";
  } catch (const std::invalid_argument& e) {
    EXPECT_STREQ(e.what(), "the direct step does not apply: the family 'iaf' declares no location-scale structure");
  }
  const auto simplex = stan("dirichlet_categorical");
  try {
    start(*simplex, "normal", o, StepPath::direct);
    FAIL() << "a simplex site took the direct step";
  } catch (const std::invalid_argument& e) {
    EXPECT_EQ(std::string(e.what()).rfind("the direct step does not apply: ", 0), 0u) << e.what();
  }
  // A minibatch's tape has the direct step's size rule: LibTorch's kernels beyond it.
  auto batched = example("logistic_regression");
  batched->set_minibatch(10, at::detail::createCPUGenerator(1));
  EXPECT_TRUE(batched->direct_applies(1, false));
  EXPECT_FALSE(batched->direct_applies(model::kDirectAutoWork, false));
  EXPECT_TRUE(batched->direct_applies(model::kDirectAutoWork, true));
  EXPECT_EQ(parse_step_path("auto"), StepPath::automatic);
  EXPECT_EQ(to_string(parse_step_path("direct")), "direct");
  try {
    parse_step_path("fast");
    FAIL();
  } catch (const std::invalid_argument& e) {
    EXPECT_STREQ(e.what(), "unknown step path 'fast'; valid: auto, autograd, direct");
  }
}

}  // namespace
}  // namespace vguide
