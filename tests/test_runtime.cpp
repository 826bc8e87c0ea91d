// The host runtime (vguide/runtime/*): objectives, schedules, the convergence rule,
// init strategies, the optimisers, the non-finite guard and checkpoints.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <unistd.h>

#include "test_models.hpp"
#include "test_util.hpp"
#include "vguide/model/data.hpp"
#include "vguide/model/program.hpp"
#include "vguide/model/program_model.hpp"
#include "vguide/runtime/fit.hpp"
#include "vguide/runtime/plugin_manager.hpp"
#include "vguide/runtime/posterior.hpp"

namespace vguide {
namespace {

namespace fs = std::filesystem;

at::Tensor param(Guide& guide, const std::string& name) { return guide.named_parameters()[name]; }

test::ConjugateNormalModel conjugate() {
  auto gen = at::detail::createCPUGenerator(7);
  at::Tensor y = 2.0 + 1.5 * at::randn({10}, gen, at::kFloat);
  return test::ConjugateNormalModel(/*m0=*/0.0, /*s0=*/2.0, /*sigma=*/1.5, y);
}

class RuntimeTest : public ::testing::Test {
 protected:
  std::shared_ptr<Guide> make(const std::string& family, const Model& model, const std::vector<std::string>& observed,
                              const std::vector<std::string>& options = {}) {
    plugins_.load(family);
    return plugins_.create(family, model, observed, options);
  }
  // The normal guide set to the exact posterior of the conjugate model.
  std::shared_ptr<Guide> exact_normal(const test::ConjugateNormalModel& model) {
    auto guide = make("normal", model, {"y"});
    torch::NoGradGuard no_grad;
    param(*guide, "loc").fill_(model.posterior_mean());
    param(*guide, "log_scale").fill_(std::log(model.posterior_sd()));
    return guide;
  }
  PluginManager plugins_{5};
};

// ---- objectives ----------------------------------------------------------------

TEST_F(RuntimeTest, ElboAndIwaeEqualLogEvidenceWhenTheGuideIsExact) {
  auto model = conjugate();
  auto guide = exact_normal(model);
  const double log_z = model.log_evidence();
  // Every importance weight equals p(y): both bounds are tight for any draw.
  EXPECT_NEAR(objective(model, *guide, {Objective::elbo, 64}).item<double>(), log_z, 1e-3);
  EXPECT_NEAR(objective(model, *guide, {Objective::iwae, 64}).item<double>(), log_z, 1e-3);
  EXPECT_NEAR(objective(model, *guide, {Objective::elbo, 8, /*stl=*/true}).item<double>(), log_z, 1e-3);
}

TEST_F(RuntimeTest, IwaeIsAtLeastTheElboInExpectation) {
  auto model = conjugate();
  auto guide = make("normal", model, {"y"});  // loc 0, scale 0.1: far from the posterior
  double elbo_sum = 0, iwae_sum = 0;
  const int reps = 200;
  torch::NoGradGuard no_grad;
  for (int i = 0; i < reps; ++i) {
    elbo_sum += objective(model, *guide, {Objective::elbo, 16}).item<double>();
    iwae_sum += objective(model, *guide, {Objective::iwae, 16}).item<double>();
  }
  EXPECT_GT(iwae_sum / reps, elbo_sum / reps + 0.1);
  EXPECT_LT(iwae_sum / reps, model.log_evidence());  // still a lower bound
}

TEST_F(RuntimeTest, SticksTheLandingHasTheElbosValueAndZeroGradientAtTheOptimum) {
  auto model = conjugate();
  auto guide = exact_normal(model);
  guide->set_seed(11);
  at::Tensor plain = objective(model, *guide, {Objective::elbo, 1});
  guide->set_seed(11);
  at::Tensor stl = objective(model, *guide, {Objective::elbo, 1, true});
  EXPECT_NEAR(plain.item<double>(), stl.item<double>(), 1e-5);
  auto grad_norm = [&](const at::Tensor& value) {
    guide->zero_grad();
    value.backward();
    double total = 0;
    for (const auto& p : guide->parameters()) total += p.grad().pow(2).sum().item<double>();
    return std::sqrt(total);
  };
  // With q = p(z | y) the path derivative vanishes for every draw; the score term
  // of the plain estimator does not.
  EXPECT_LT(grad_norm(stl), 1e-4);
  EXPECT_GT(grad_norm(plain), 1e-2);
}

TEST_F(RuntimeTest, ObjectiveErrors) {
  auto model = conjugate();
  auto guide = make("normal", model, {"y"});
  EXPECT_EQ(test::message_of<std::invalid_argument>([&] { objective(model, *guide, {Objective::iwae, 4, true}); }),
            "objective: sticking the landing applies to the ELBO only (IWAE would need doubly reparameterised "
            "gradients)");
  EXPECT_EQ(test::message_of<std::invalid_argument>([&] { objective(model, *guide, {Objective::elbo, 0}); }),
            "objective: particles is 0, but must be at least 1");
  EXPECT_EQ(test::message_of<std::invalid_argument>([] { parse_objective("kl"); }),
            "unknown objective 'kl'; valid: elbo, iwae");
}

// ---- schedules -------------------------------------------------------------------

TEST(Schedule, ClosedForms) {
  const double lr = 0.1;
  EXPECT_DOUBLE_EQ(scheduled_lr({Schedule::constant}, lr, 500, 1000), 0.1);
  EXPECT_DOUBLE_EQ(scheduled_lr({Schedule::exponential, 0.99}, lr, 10, 1000), 0.1 * std::pow(0.99, 10));
  EXPECT_DOUBLE_EQ(scheduled_lr({Schedule::exponential}, lr, 100, 1000), 0.1 * std::pow(0.999, 100));
  EXPECT_DOUBLE_EQ(scheduled_lr({Schedule::step, 0.5, 100}, lr, 99, 1000), 0.1);
  EXPECT_DOUBLE_EQ(scheduled_lr({Schedule::step, 0.5, 100}, lr, 100, 1000), 0.05);
  EXPECT_DOUBLE_EQ(scheduled_lr({Schedule::step, 0.5, 100}, lr, 250, 1000), 0.025);
  EXPECT_DOUBLE_EQ(scheduled_lr({Schedule::cosine}, lr, 0, 1000), 0.1);
  EXPECT_NEAR(scheduled_lr({Schedule::cosine}, lr, 500, 1000), 0.05, 1e-15);
  EXPECT_NEAR(scheduled_lr({Schedule::cosine, 0, 1000, 0.01}, lr, 1000, 1000), 0.01, 1e-15);
  EXPECT_NEAR(scheduled_lr({Schedule::cosine, 0, 1000, 0.01}, lr, 250, 1000),
              0.01 + 0.09 * 0.5 * (1 + std::cos(M_PI / 4)), 1e-15);
}

TEST(Schedule, Errors) {
  EXPECT_EQ(test::message_of<std::invalid_argument>([] { validate(ScheduleOptions{Schedule::step, 1.5}, 0.1); }),
            "schedule gamma is 1.5, but must be in (0, 1]");
  EXPECT_EQ(test::message_of<std::invalid_argument>([] { validate(ScheduleOptions{Schedule::step, 0.5, 0}, 0.1); }),
            "schedule step size is 0, but must be at least 1");
  EXPECT_EQ(
      test::message_of<std::invalid_argument>([] { validate(ScheduleOptions{Schedule::cosine, 0, 10, 0.5}, 0.1); }),
      "schedule min_lr is 0.5, but must be in [0, lr = 0.1]");
  EXPECT_EQ(test::message_of<std::invalid_argument>([] { parse_schedule("linear"); }),
            "unknown schedule 'linear'; valid: constant, exponential, step, cosine");
}

// ---- Stan's convergence rule ----------------------------------------------------------

TEST(Convergence, MeanWaitsForTheFirstHugeChangeToLeaveTheBuffer) {
  // 0.1 * 1000 / 100 = 1 -> a buffer of 2 (the minimum).
  AdviConvergence rule({ConvergenceRule::mean, 0.01, 100}, 1000);
  EXPECT_FALSE(rule.update(-100.0));  // vs the lowest double: a huge change
  EXPECT_FALSE(rule.update(-100.0));  // buffer {huge, 0}: mean and median huge
  EXPECT_EQ(rule.update(-100.0), std::optional<std::string>("mean"));  // {0, 0}
}

TEST(Convergence, RelativeChangesAgainstHandComputedValues) {
  // 0.1 * 10000 / 100 = 10 entries.
  AdviConvergence rule({ConvergenceRule::median, 0.01, 100}, 10000);
  rule.update(-200.0);
  rule.update(-100.0);  // |(-100 + 200) / -100| = 1
  rule.update(-99.0);   // 1/99
  rule.update(-98.5);   // 0.5/98.5
  EXPECT_NEAR(rule.buffer()[1], 1.0, 1e-15);
  EXPECT_NEAR(rule.buffer()[2], 1.0 / 99.0, 1e-15);
  EXPECT_NEAR(rule.median_relative_change(), 0.5 * (1.0 + 1.0 / 99.0), 1e-12);
  EXPECT_FALSE(rule.update(-98.4));  // {huge, 1, 0.0101, 0.00508, 0.00102}: median 0.0101
  EXPECT_EQ(rule.update(-98.39), std::optional<std::string>("median"));  // median of 6 = (0.00508 + 0.00102)/2
  EXPECT_TRUE(rule.due(200));
  EXPECT_FALSE(rule.due(150));
}

TEST_F(RuntimeTest, AFitStopsEarlyWhenTheElboConverges) {
  auto model = conjugate();
  auto guide = make("normal", model, {"y"});
  FitOptions options;
  options.steps = 20000;
  options.optimizer.lr = 0.05;
  options.convergence = {ConvergenceRule::either, 0.01, 100, 100};
  Fit fit(model, *guide, options);
  const FitResult result = fit.run();
  EXPECT_EQ(result.reason, StopReason::converged);
  EXPECT_TRUE(result.detail == "mean" || result.detail == "median") << result.detail;
  EXPECT_LT(result.steps_done, 20000);
  EXPECT_EQ(result.steps_done % 100, 0);
  EXPECT_NEAR(param(*guide, "loc").item<double>(), model.posterior_mean(), 0.2);
}

// ---- init strategies -------------------------------------------------------------------

const char* kInitProgram = R"(
object One : 1
program init_demo : One -> One
    mu <- Normal(3.0, 1.0)
    sigma <- LogNormal(0.0, 1.0)
    theta[2] <- Normal(mu, sigma)
    c <- Cauchy(1.0, 2.0)
    observe y ~ Normal(theta, 1.0)
    return y
output init_demo
)";

model::ProgramModel init_model() {
  return model::ProgramModel(model::parse_program(kInitProgram, "init.qvr"),
                             model::parse_data(R"({"y": [1.0, 2.0]})", "init.json"));
}

// The registry orders sites by program order: mu, sigma, theta[2], c.
at::Tensor start_of(Guide& guide) { return param(guide, "loc").to(at::kDouble); }

TEST_F(RuntimeTest, InitMeanIsThePriorMeanGivenEarlierSites) {
  auto model = init_model();
  auto guide = make("normal", model, model.observed_names());
  at::Generator gen = at::detail::createCPUGenerator(1);
  initialize(*guide, model, {InitStrategy::mean}, gen);
  at::Tensor loc = start_of(*guide);
  ASSERT_EQ(loc.size(0), 5);
  EXPECT_NEAR(loc[0].item<double>(), 3.0, 1e-6);   // mu
  EXPECT_NEAR(loc[1].item<double>(), 0.5, 1e-6);   // log of LogNormal(0, 1)'s mean exp(1/2)
  EXPECT_NEAR(loc[2].item<double>(), 3.0, 1e-6);   // theta's prior mean is mu's start
  EXPECT_NEAR(loc[3].item<double>(), 3.0, 1e-6);
  EXPECT_TRUE(std::isfinite(loc[4].item<double>()));  // the Cauchy has no mean: its median
  EXPECT_NEAR(loc[4].item<double>(), 1.0, 4.0);
}

TEST_F(RuntimeTest, InitMedianSampleAndUniform) {
  auto model = init_model();
  auto guide = make("normal", model, model.observed_names());
  at::Generator gen = at::detail::createCPUGenerator(2);
  initialize(*guide, model, {InitStrategy::median}, gen);
  at::Tensor median = start_of(*guide).clone();
  EXPECT_NEAR(median[0].item<double>(), 3.0, 1.0);   // the median of 15 draws of N(3, 1)
  EXPECT_NEAR(median[1].item<double>(), 0.0, 1.0);   // log of LogNormal(0, 1)'s median 1
  initialize(*guide, model, {InitStrategy::sample}, gen);
  at::Tensor sample = start_of(*guide).clone();
  EXPECT_FALSE(at::allclose(sample, median));
  EXPECT_TRUE(at::isfinite(sample).all().item<bool>());
  InitOptions uniform{InitStrategy::uniform, 0.5};
  initialize(*guide, model, uniform, gen);
  at::Tensor u = start_of(*guide);
  EXPECT_LT(u.abs().max().item<double>(), 0.5);
  EXPECT_GT(u.std().item<double>(), 0.01);
  // The same stream gives the same start.
  at::Generator a = at::detail::createCPUGenerator(3), b = at::detail::createCPUGenerator(3);
  EXPECT_TRUE(at::equal(initial_location(model, guide->registry(), {InitStrategy::sample}, a),
                        initial_location(model, guide->registry(), {InitStrategy::sample}, b)));
}

TEST_F(RuntimeTest, InitValueSetsGivenSitesAndDrawsTheRestUniformly) {
  auto model = init_model();
  auto guide = make("normal", model, model.observed_names());
  at::Generator gen = at::detail::createCPUGenerator(4);
  InitOptions options{InitStrategy::value};
  options.values["mu"] = torch::tensor(1.5, torch::kDouble);
  options.values["sigma"] = torch::tensor(2.0, torch::kDouble);
  initialize(*guide, model, options, gen);
  at::Tensor loc = start_of(*guide);
  EXPECT_NEAR(loc[0].item<double>(), 1.5, 1e-6);
  EXPECT_NEAR(loc[1].item<double>(), std::log(2.0), 1e-6);
  EXPECT_LT(loc.slice(0, 2).abs().max().item<double>(), 2.0);

  options.values["sigma"] = torch::tensor(-1.0, torch::kDouble);
  EXPECT_EQ(test::message_of<std::invalid_argument>([&] { initialize(*guide, model, options, gen); }),
            "init: value of 'sigma' is outside its support (positive)");
  options.values["sigma"] = torch::tensor({1.0, 2.0}, torch::kDouble);
  EXPECT_EQ(test::message_of<std::invalid_argument>([&] { initialize(*guide, model, options, gen); }),
            "init: value of 'sigma' has shape [2], but the site's shape is []");
  options.values.erase("sigma");
  options.values["sigmaa"] = torch::tensor(1.0, torch::kDouble);
  EXPECT_EQ(test::message_of<std::invalid_argument>([&] { initialize(*guide, model, options, gen); }),
            "init: 'sigmaa' is not a latent site of model 'init_demo'");
}

TEST_F(RuntimeTest, InitWorksForEveryFamilyWithALocation) {
  auto model = init_model();
  at::Generator gen = at::detail::createCPUGenerator(5);
  for (const std::string family : {"normal", "delta", "mvn", "lowrank_mvn", "laplace", "iaf", "spline"}) {
    auto guide = make(family, model, model.observed_names());
    initialize(*guide, model, {InitStrategy::mean}, gen);
    // Drawing from the started guide lands near the prior means.
    at::Tensor mu = guide->sample(particles(400)).at("mu");
    EXPECT_NEAR(mu.mean().item<double>(), 3.0, 0.5) << family;
  }
  // The mixture starts its components around the location (half a unit apart).
  auto mixture = make("mixture", model, model.observed_names(), {"components=normal,normal"});
  initialize(*mixture, model, {InitStrategy::mean}, gen);
  EXPECT_NEAR(mixture->sample(particles(400)).at("mu").mean().item<double>(), 3.0, 1.0);
}

TEST_F(RuntimeTest, InitFromThePriorNeedsAModelThatHasOne) {
  auto model = conjugate();  // a C++ model without prior_values
  auto guide = make("normal", model, {"y"});
  at::Generator gen = at::detail::createCPUGenerator(6);
  EXPECT_EQ(test::message_of<std::invalid_argument>([&] { initialize(*guide, model, {InitStrategy::median}, gen); }),
            "init 'median': model 'conjugate_normal' cannot draw from its prior; use init default, uniform or value");
  EXPECT_EQ(test::message_of<std::invalid_argument>([] { parse_init_strategy("zeros"); }),
            "unknown init strategy 'zeros'; valid: pathfinder, default, median, mean, sample, uniform, value");
}

// ---- optimisers and clipping ----------------------------------------------------------

TEST_F(RuntimeTest, EveryOptimizerFitsTheConjugateModel) {
  auto model = conjugate();
  for (Optimizer kind : {Optimizer::adam, Optimizer::adamw, Optimizer::sgd, Optimizer::rmsprop}) {
    auto guide = make("normal", model, {"y"});
    FitOptions options;
    options.steps = 1500;
    options.objective.particles = 8;
    options.optimizer.kind = kind;
    options.optimizer.lr = kind == Optimizer::sgd ? 0.002 : 0.02;
    options.optimizer.weight_decay = 0.0;
    options.schedule = {Schedule::cosine};
    // The optimisers themselves: the family's start, their own steps, every step run.
    options.init.strategy = InitStrategy::guide_default;
    options.scale_steps = false;
    options.convergence.rule = ConvergenceRule::none;
    Fit fit(model, *guide, options);
    EXPECT_EQ(fit.run().reason, StopReason::steps) << to_string(kind);
    EXPECT_NEAR(param(*guide, "loc").item<double>(), model.posterior_mean(), 0.1 * model.posterior_sd())
        << to_string(kind);
    EXPECT_NEAR(std::exp(param(*guide, "log_scale").item<double>()), model.posterior_sd(), 0.15 * model.posterior_sd())
        << to_string(kind);
  }
}

TEST_F(RuntimeTest, ClippingBoundsTheUpdate) {
  auto model = conjugate();
  auto guide = make("normal", model, {"y"});
  FitOptions options;
  options.steps = 1;
  options.optimizer = {Optimizer::sgd, /*lr=*/1.0, /*momentum=*/0.0};
  options.clip_norm = 1e-3;
  options.init.strategy = InitStrategy::guide_default;  // loc 0, 2 sd from the data
  options.scale_steps = false;
  Fit fit(model, *guide, options);
  std::vector<at::Tensor> before;
  for (const auto& p : guide->parameters()) before.push_back(p.detach().clone());
  fit.step();
  double moved = 0;
  auto after = guide->parameters();
  for (size_t i = 0; i < before.size(); ++i) moved += (after[i].detach() - before[i]).pow(2).sum().item<double>();
  // Unclipped, the gradient's norm here is far above 1e-3 (loc starts 2 sd from the data).
  EXPECT_NEAR(std::sqrt(moved), 1e-3, 1e-6);
}

// ---- the non-finite guard ---------------------------------------------------------------

TEST_F(RuntimeTest, NonFiniteStepsAreSkippedCountedAndNamed) {
  // s overflows to inf for every x: the density of y is never finite.
  model::ProgramModel model(model::parse_program(R"(
object One : 1
program blowup : One -> One
    x <- Normal(0.0, 1.0)
    let s = exp(exp(exp(x * x + 10.0)))
    observe y ~ Normal(0.0, s)
    return y
output blowup
)",
                                                 "blowup.qvr"),
                            model::parse_data(R"({"y": [1.0]})", "blowup.json"));
  auto guide = make("normal", model, model.observed_names());
  const at::Tensor start = param(*guide, "loc").detach().clone();
  FitOptions options;
  options.steps = 100;
  options.max_non_finite = 7;
  options.init.strategy = InitStrategy::guide_default;  // Pathfinder finds no finite start here
  Fit fit(model, *guide, options);
  const FitResult result = fit.run();
  EXPECT_EQ(result.reason, StopReason::non_finite);
  EXPECT_EQ(result.steps_done, 7);
  EXPECT_EQ(result.non_finite_steps, 7);
  EXPECT_EQ(result.detail, "the log density of site 'y' is not finite");
  EXPECT_TRUE(at::equal(param(*guide, "loc").detach(), start));  // the last finite parameters
  EXPECT_TRUE(std::isnan(fit.trace().back()));
}

// ---- checkpoints ---------------------------------------------------------------------------

class CheckpointTest : public RuntimeTest {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("vguide_checkpoint_test_" + std::to_string(::getpid()));
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  fs::path dir_;
};

TEST_F(CheckpointTest, ResumingEqualsAnUninterruptedFitBitForBit) {
  auto model = conjugate();
  FitOptions options;
  options.steps = 200;
  options.objective.particles = 2;
  options.init.strategy = InitStrategy::uniform;
  options.schedule = {Schedule::cosine};
  const std::map<std::string, std::string> prints{{"model", "m"}, {"data", "d"}};
  // The mixture's components draw from streams of their own: all must travel.
  for (const std::string family : {"normal", "mvn", "mixture"}) {
    const std::vector<std::string> guide_options =
        family == "mixture" ? std::vector<std::string>{"components=normal,normal"} : std::vector<std::string>{};
    options.init.strategy = family == "mixture" ? InitStrategy::guide_default : InitStrategy::uniform;
    PluginManager a_plugins(9), b_plugins(9);
    for (auto* p : {&a_plugins, &b_plugins}) {
      p->load("normal");
      p->load(family);
    }
    auto straight = a_plugins.create(family, model, {"y"}, guide_options);
    Fit whole(model, *straight, options);
    whole.run();

    auto first = b_plugins.create(family, model, {"y"}, guide_options);
    Fit part(model, *first, options);
    std::atomic<bool> stop{false};
    part.run(&stop, [&](const StepReport& r) { stop = r.step == 120; });
    ASSERT_EQ(part.steps_done(), 120);
    const std::string path = (dir_ / (family + ".pt")).string();
    part.save_checkpoint(path, prints);

    PluginManager c_plugins(1234);  // another seed: everything must come from the checkpoint
    c_plugins.load("normal");
    c_plugins.load(family);
    auto resumed = c_plugins.create(family, model, {"y"}, guide_options);
    Fit rest(model, *resumed, options);
    rest.load_checkpoint(path, prints);
    EXPECT_EQ(rest.steps_done(), 120);
    rest.run();
    auto pa = straight->named_parameters(), pb = resumed->named_parameters();
    for (const auto& p : pa) EXPECT_TRUE(at::equal(p.value(), pb[p.key()])) << family << " " << p.key();
    EXPECT_EQ(whole.trace(), rest.trace()) << family;
    // and the guides' streams continue alike
    EXPECT_TRUE(at::equal(straight->sample(particles(3)).at("mu"), resumed->sample(particles(3)).at("mu"))) << family;
  }
}

TEST_F(CheckpointTest, AnotherFingerprintIsRefusedNamingWhatDiffers) {
  auto model = conjugate();
  auto guide = make("normal", model, {"y"});
  Fit fit(model, *guide, FitOptions{});
  const std::string path = (dir_ / "c.pt").string();
  fit.save_checkpoint(path, {{"model", "aaaa"}, {"data", "bbbb"}});
  auto other = make("normal", model, {"y"});
  Fit again(model, *other, FitOptions{});
  EXPECT_EQ(test::message_of<CheckpointError>([&] { again.load_checkpoint(path, {{"model", "aaaa"}, {"data", "cccc"}}); }),
            "checkpoint " + path + ": the data differs (checkpoint: bbbb, now: cccc)");
  std::ofstream(dir_ / "junk.pt") << "not a checkpoint";
  const std::string junk = (dir_ / "junk.pt").string();
  EXPECT_EQ(test::message_of<CheckpointError>([&] { again.load_checkpoint(junk, {}); }).rfind("checkpoint " + junk + " cannot be read: ", 0), 0u);
  auto mvn = make("mvn", model, {"y"});
  Fit wrong(model, *mvn, FitOptions{});
  EXPECT_EQ(test::message_of<CheckpointError>([&] { wrong.load_checkpoint(path, {}); }).rfind("checkpoint " + path + " does not fit this guide: ", 0), 0u);
}

TEST_F(CheckpointTest, LaplaceStateTravelsWithTheCheckpoint) {
  auto model = conjugate();
  auto guide = make("laplace", model, {"y"});
  FitOptions options;
  options.steps = 300;
  options.optimizer.lr = 0.05;
  Fit fit(model, *guide, options);
  fit.run();
  fit.finish();
  const std::string path = (dir_ / "laplace.pt").string();
  fit.save_checkpoint(path, {});
  auto loaded = make("laplace", model, {"y"});
  Fit later(model, *loaded, options);
  later.load_checkpoint(path, {});
  EXPECT_TRUE(later.finished());
  EXPECT_EQ(loaded->diagnostics().at("laplace.fitted"), 1.0);
  // Drawing from the loaded guide needs no refit: same density at the same points.
  const SiteValues v = guide->sample(particles(5));
  EXPECT_TRUE(at::allclose(guide->log_prob(particles(5), v), loaded->log_prob(particles(5), v)));
}

// ---- posterior outputs -------------------------------------------------------------------------

TEST_F(RuntimeTest, PosteriorDrawsIncludeLetValuesAndSummariesMatchTheDraws) {
  model::ProgramModel model(model::parse_program(R"(
object One : 1
program lets : One -> One
    mu <- Normal(0.0, 1.0)
    let twice = 2.0 * mu
    observe y ~ Normal(mu, 1.0)
    return y
output lets
)",
                                                 "lets.qvr"),
                            model::parse_data(R"({"y": [0.5, 1.5]})", "lets.json"));
  auto guide = make("normal", model, model.observed_names());
  const PosteriorDraws draws = draw_posterior(model, *guide, 2000);
  ASSERT_EQ(draws.quantities.size(), 2u);
  EXPECT_EQ(draws.quantities[0].name, "mu");
  EXPECT_EQ(draws.quantities[1].name, "twice");
  EXPECT_TRUE(draws.quantities[1].derived);
  EXPECT_TRUE(at::allclose(draws.quantities[1].draws, 2.0 * draws.quantities[0].draws));
  EXPECT_EQ(draws.log_p.sizes().vec(), std::vector<int64_t>{2000});
  const auto summary = summarize(draws);
  const at::Tensor mu = draws.quantities[0].draws;
  EXPECT_NEAR(summary[0].mean.item<double>(), mu.mean().item<double>(), 1e-12);
  EXPECT_NEAR(summary[1].sd.item<double>(), 2.0 * mu.std().item<double>(), 1e-9);
  // Type-7 quantiles: q50 of the sorted draws at position 0.5 * (N - 1).
  at::Tensor sorted = std::get<0>(mu.sort());
  EXPECT_NEAR(summary[0].q50.item<double>(), 0.5 * (sorted[999] + sorted[1000]).item<double>(), 1e-12);
  EXPECT_LT(summary[0].q5.item<double>(), summary[0].q50.item<double>());
  EXPECT_LT(summary[0].q50.item<double>(), summary[0].q95.item<double>());
}

TEST_F(RuntimeTest, FinalElboEstimateAndItsStandardError) {
  auto model = conjugate();
  auto exact = exact_normal(model);
  const ElboEstimate e = estimate_elbo(model, *exact, 1000);
  EXPECT_NEAR(e.elbo, model.log_evidence(), 1e-3);
  EXPECT_LT(e.se, 1e-3);  // every log ratio is log Z
  auto rough = make("normal", model, {"y"});
  const ElboEstimate r = estimate_elbo(model, *rough, 1000);
  EXPECT_LT(r.elbo, model.log_evidence());
  EXPECT_NEAR(r.se, r.log_ratios.std().item<double>() / std::sqrt(1000.0), 1e-12);
}

}  // namespace
}  // namespace vguide
