// vguide_bench_svi: times complete SVI steps (ELBO, backward, Adam update) through
// the public runtime for every shipped guide family on the suite's models, beside
// a hand-written LibTorch step (bench/baselines/) timed in the same run, block for
// block, and prints one JSON line per configuration. See bench/README.md.
//
//   vguide_bench_svi > results.jsonl          the full suite (about 6 minutes)
//   vguide_bench_svi --smoke                  every code path once, tiny sizes
//   vguide_bench_svi --only N,D               some curves (table, N, D, S, threads)
//   vguide_bench_svi --report results.jsonl --plot-dir plots/   tables + plot data
//   vguide_bench_svi --report results.jsonl --stan stan.jsonl     ... with the Stan ADVI column
//   vguide_bench_svi [--smoke ...] --stan-plan > plan.tsv          the configurations Stan is timed
//                                                                  on (bench/stan/stan_column.R)
//
// Exit codes: 0 done; 1 a self-check or a configuration failed; 2 bad usage.
#include <torch/torch.h>

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Parallel.h>

#include <boost/program_options.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <map>
#include <set>
#include <sstream>
#include <tuple>

#include "baselines/baselines.hpp"
#include "models.hpp"
#include "report.hpp"
#include "self_check.hpp"
#include "timing.hpp"
#include "vguide/guide.hpp"
#include "vguide/model/program_model.hpp"
#include "vguide/runtime/fit.hpp"
#include "vguide/runtime/heap.hpp"
#include "vguide/runtime/plugin_manager.hpp"

namespace po = boost::program_options;
using vguide::bench::ModelKind;
using vguide::bench::ModelSpec;

namespace {

// ---------------------------------------------------------------------------
// The framework's SVI step: vguide::Fit::step(), the public runtime's step (the
// guide's before_step, the ELBO with S particles, backward, the non-finite guard,
// one Adam update with lr 0.01). Everything the suite times on the framework side
// is in this class.
// ---------------------------------------------------------------------------

vguide::FitOptions fit_options(int64_t S, at::ScalarType dtype, vguide::StepPath path) {
  vguide::FitOptions o;
  o.step_path = path;
  o.steps = int64_t{1} << 40;  // the planned total, for schedules; never reached
  o.dtype = dtype;
  o.objective.particles = S;
  o.optimizer.lr = 0.01;
  return o;
}

class FrameworkSvi {
 public:
  FrameworkSvi(const vguide::Model& model, vguide::Guide& guide, int64_t S, at::ScalarType dtype,
               vguide::StepPath path)
      : fit_(model, guide, fit_options(S, dtype, path)) {}
  void step() { fit_.step(); }

 private:
  vguide::Fit fit_;
};

// ---------------------------------------------------------------------------
// Configurations.
// ---------------------------------------------------------------------------

struct Case {
  std::string curve;   ///< "table", "N", "D", "S", "threads"
  std::string series;  ///< a table group, or one line of a curve
  int64_t x = 0;       ///< the curve's abscissa (0 in tables)
  ModelSpec spec;
  std::string guide;
  std::vector<std::string> options;
  int64_t S = 1;
  int64_t B = 0;  ///< minibatch rows; 0 = full batch
  int threads = 1;
  at::ScalarType dtype = at::kDouble;  ///< the framework's and the baseline's
};

const std::vector<std::string> kFamilies{"normal", "delta", "mvn", "lowrank_mvn", "laplace", "iaf", "spline", "mixture"};

std::vector<std::string> default_options(const std::string& family) {
  if (family == "mixture") return {"components=normal,normal"};
  return {};
}

// The sizes of one suite: the full one, or the smoke run's.
struct Sizes {
  int64_t logistic_N = 5000, logistic_P = 20;  ///< the logistic regression of the tables
  int64_t means_N = 20, means_K = 50;          ///< the Normal-means table
  int64_t wide_K = 10000;                      ///< the many-latent table (N = 1)
  int64_t batch = 256;                         ///< the minibatch of the tables and the N curve
  std::vector<int64_t> extra_batches{64, 1024};  ///< more minibatches, normal guide only
  std::vector<int64_t> table_S{1, 16};
  std::vector<int64_t> curve_N{1000, 3000, 10000, 30000, 100000, 300000, 1000000};
  std::vector<int64_t> curve_D{10, 30, 100, 300, 1000, 3000, 10000};
  int64_t mvn_max_D = 1000;  ///< mvn's D x D factor makes larger D take seconds a step
  std::vector<int64_t> curve_S{1, 2, 4, 8, 16, 32, 64, 128};
  int64_t threads_logistic_N = 100000;  ///< the data-heavy point of the thread curve
};

// Every code path of the full suite, at sizes that run in seconds.
Sizes smoke_sizes() {
  Sizes z;
  z.logistic_N = 300;
  z.wide_K = 300;
  z.batch = 64;
  z.extra_batches = {32};
  z.table_S = {1, 4};
  z.curve_N = {300, 1000};
  z.curve_D = {10, 30};
  z.mvn_max_D = 30;
  z.curve_S = {1, 4};
  z.threads_logistic_N = 1000;
  return z;
}

std::vector<Case> make_cases(const Sizes& z) {
  std::vector<Case> cs;
  const ModelSpec schools{ModelKind::eight_schools, 0, 0};
  const ModelSpec logistic{ModelKind::logistic, z.logistic_N, z.logistic_P};
  const ModelSpec means{ModelKind::normal_means, z.means_N, z.means_K};
  const ModelSpec wide{ModelKind::normal_means, 1, z.wide_K};
  const std::string b = "B=" + std::to_string(z.batch);

  // Tables: every family on every model, S = 1 and 16.
  const auto table = [&](const std::string& series, const ModelSpec& spec, const std::vector<std::string>& families,
                         int64_t B) {
    for (const auto& f : families)
      for (int64_t S : z.table_S) cs.push_back({"table", series, 0, spec, f, default_options(f), S, B, 1});
  };
  table("eight schools (D = 10)", schools, kFamilies, 0);
  table("logistic regression, N = " + std::to_string(z.logistic_N) + ", full batch (D = 21)", logistic, kFamilies, 0);
  table("logistic regression, N = " + std::to_string(z.logistic_N) + ", minibatch " + b, logistic, kFamilies,
        z.batch);
  for (int64_t B : z.extra_batches)
    table("logistic regression, N = " + std::to_string(z.logistic_N) + ", minibatch B=" + std::to_string(B),
          logistic, {"normal"}, B);
  table("normal means, K = " + std::to_string(z.means_K) + ", N = " + std::to_string(z.means_N), means, kFamilies, 0);
  // mvn (a D x D factor), iaf and spline (D x 2D MADE weights) do not fit D = 10^4.
  table("normal means, K = " + std::to_string(z.wide_K) + " latents, N = 1", wide,
        {"normal", "delta", "lowrank_mvn", "laplace", "mixture"}, 0);

  // Step time against N: normal guide, S = 1, full batch and minibatch.
  for (int64_t N : z.curve_N) {
    const ModelSpec spec{ModelKind::logistic, N, z.logistic_P};
    cs.push_back({"N", "full", N, spec, "normal", {}, 1, 0, 1});
    cs.push_back({"N", b, N, spec, "normal", {}, 1, z.batch, 1});
  }
  // Step time against D.
  for (int64_t D : z.curve_D) {
    const ModelSpec spec{ModelKind::normal_means, 1, D};
    cs.push_back({"D", "normal", D, spec, "normal", {}, 1, 0, 1});
    cs.push_back({"D", "lowrank_mvn", D, spec, "lowrank_mvn", {"rank=5"}, 1, 0, 1});
    if (D <= z.mvn_max_D) cs.push_back({"D", "mvn", D, spec, "mvn", {}, 1, 0, 1});
  }
  // Step time against S.
  for (int64_t S : z.curve_S) {
    cs.push_back({"S", "eight_schools", S, schools, "normal", {}, S, 0, 1});
    cs.push_back({"S", "logistic", S, logistic, "normal", {}, S, 0, 1});
  }
  // Step time against threads.
  const ModelSpec logistic_big{ModelKind::logistic, z.threads_logistic_N, z.logistic_P};
  for (int t : {1, 2}) {
    cs.push_back({"threads", "eight_schools_normal_S1", t, schools, "normal", {}, 1, 0, t});
    cs.push_back({"threads", "logistic_N" + std::to_string(z.logistic_N) + "_normal_S16", t, logistic, "normal", {},
                  16, 0, t});
    cs.push_back({"threads", "logistic_N" + std::to_string(z.threads_logistic_N) + "_normal_S1", t, logistic_big,
                  "normal", {}, 1, 0, t});
    cs.push_back({"threads", "means_K" + std::to_string(z.wide_K) + "_lowrank_mvn_S16", t, wide, "lowrank_mvn",
                  {"rank=5"}, 16, 0, t});
  }
  // Every configuration in both precisions (float64 is the fit's default). A table's
  // heading names its dtype; a curve's float32 series gets a suffix without spaces
  // (the series names the plots' .dat files; bench/plot.gp draws the float64 ones).
  std::vector<Case> both;
  for (const Case& c : cs) {
    for (const at::ScalarType dtype : {at::kDouble, at::kFloat}) {
      Case d = c;
      d.dtype = dtype;
      if (c.curve == "table") d.series += ", " + vguide::dtype_name(dtype);
      else if (dtype == at::kFloat) d.series += "_float32";
      both.push_back(std::move(d));
    }
  }
  return both;
}

std::string join(const std::vector<std::string>& v, const char* sep) {
  std::string out;
  for (const auto& s : v) out += (out.empty() ? "" : sep) + s;
  return out;
}

// What --filter matches: "curve model guide S=.. B=.. t=..", with a space after each.
std::string case_line(const Case& c) {
  return c.curve + " " + c.spec.key() + " " + c.guide + " S=" + std::to_string(c.S) + " B=" + std::to_string(c.B) +
         " t=" + std::to_string(c.threads) + " " + vguide::dtype_name(c.dtype) + " ";
}

std::set<std::string> split_set(const std::string& s) {
  std::set<std::string> out;
  std::stringstream in(s);
  for (std::string item; std::getline(in, item, ',');)
    if (!item.empty()) out.insert(item);
  return out;
}

// --stan-plan: one row per distinct (model and sizes, Stan algorithm, S) among the
// cases, for bench/stan/stan_column.R. Stan computes in double on one thread, so the
// dtype and the thread count do not make a row of their own.
void print_stan_plan(const std::vector<Case>& cases, std::ostream& out) {
  std::set<std::tuple<std::string, std::string, int64_t>> seen;
  out << "key\tmodel\tN\tsize\talgorithm\tS\n";
  for (const Case& c : cases) {
    const std::string algorithm = vguide::bench::stan_algorithm(c.guide, c.B == 0);
    if (algorithm.empty() || !seen.insert({c.spec.key(), algorithm, c.S}).second) continue;
    out << c.spec.key() << "\t" << c.spec.name() << "\t" << c.spec.rows << "\t" << c.spec.size << "\t" << algorithm
        << "\t" << c.S << "\n";
  }
}

// ---------------------------------------------------------------------------
// Running.
// ---------------------------------------------------------------------------

// The autograd node the model's log joint ends in for this configuration: the fused
// node, or the last LibTorch op of the reference path.
std::string log_joint_path(const vguide::model::ProgramModel& model, vguide::Guide& guide, int64_t S) {
  const at::Tensor x = vguide::particles(S);
  const at::Tensor lj = model.log_joint(x, guide.rsample(x));
  return lj.grad_fn() ? lj.grad_fn()->name() : "(none)";
}

nlohmann::ordered_json run_case(vguide::PluginManager& plugins, const Case& c, const vguide::bench::ModelData& md,
                                const vguide::bench::TimingSettings& timing, vguide::model::Evaluator evaluator,
                                vguide::StepPath step_path) {
  at::set_num_threads(c.threads);
  vguide::model::ProgramModel model(md.program, md.data);
  if (c.B != 0) model.set_minibatch(c.B, at::detail::createCPUGenerator(11));
  if (evaluator != vguide::model::Evaluator::fused || model.fusion_blocker().empty()) model.set_evaluator(evaluator);
  plugins.set_seed(1);
  auto guide = plugins.create(c.guide, model, model.observed_names(), c.options);
  const std::string path = log_joint_path(model, *guide, c.S);
  FrameworkSvi framework(model, *guide, c.S, c.dtype, step_path);
  auto baseline = vguide::bench::make_baseline(c.spec, md.data, c.S, c.B, 1, c.dtype);

  const auto [fw, base] = vguide::bench::time_pair([&] { framework.step(); }, [&] { baseline->step(); }, timing);

  nlohmann::ordered_json j;
  j["curve"] = c.curve;
  j["series"] = c.series;
  j["x"] = c.x;
  j["model"] = c.spec.name();
  j["key"] = c.spec.key();  // what the Stan column is matched on
  j["guide"] = c.guide;
  j["options"] = join(c.options, " ");
  j["S"] = c.S;
  j["N"] = model.num_rows();
  j["B"] = model.batch_size();
  j["D"] = guide->registry().total_unconstrained_dim();
  j["threads"] = c.threads;
  j["dtype"] = vguide::dtype_name(c.dtype);
  j["log_joint"] = path;
  j["us_per_step"] = fw.median_us;
  j["baseline_us_per_step"] = base.median_us;
  j["ratio"] = fw.median_us / base.median_us;
  j["cpu_us_per_step"] = fw.cpu_median_us;
  j["baseline_cpu_us_per_step"] = base.cpu_median_us;
  j["cpu_ratio"] = fw.cpu_median_us / base.cpu_median_us;
  j["us_q1"] = fw.q1_us;
  j["us_q3"] = fw.q3_us;
  j["baseline_us_q1"] = base.q1_us;
  j["baseline_us_q3"] = base.q3_us;
  j["steps_per_block"] = fw.steps_per_block;
  j["baseline_steps_per_block"] = base.steps_per_block;
  j["blocks"] = fw.blocks;
  return j;
}

int run(int argc, char** argv) {
  po::options_description desc("vguide_bench_svi options");
  desc.add_options()("help,h", "this help")("smoke", "every configuration kind once, tiny sizes and few steps")(
      "only", po::value<std::string>(), "comma-separated curves to run: table,N,D,S,threads (default: all)")(
      "blocks", po::value<int>(), "timed blocks per configuration (default 21; smoke 2)")(
      "source-dir", po::value<std::string>()->default_value(VGUIDE_SOURCE_DIR),
      "the vguide source tree (examples/models, bench/models)")(
      "report", po::value<std::string>(), "read a results file and print its tables instead of running")(
      "plot-dir", po::value<std::string>(), "with --report: write the curves' .dat files here")(
      "stan", po::value<std::string>(),
      "with --report: Stan ADVI's times per iteration (bench/stan/stan_column.R's JSON lines) for the Stan column")(
      "stan-plan",
      "print the configurations that have a Stan ADVI peer, as a TSV for bench/stan/stan_column.R, instead of running")(
      "filter", po::value<std::string>(),
      "run only the configurations whose line contains this text, e.g. 'eight_schools normal S=1 ' or 'float32 '")(
      "evaluator", po::value<std::string>()->default_value("automatic"),
      "the model's log joint: automatic, reference (LibTorch ops only) or fused (wherever the program can be)")(
      "step", po::value<std::string>()->default_value("auto"),
      "the fit's step: auto, direct (a configuration it cannot take fails) or autograd")(
      "heap", po::value<std::string>()->default_value("keep"),
      "keep: freed memory stays in the heap between steps, as vguide-host sets it (vguide/runtime/heap.hpp); "
      "system: glibc's own thresholds");
  po::variables_map vm;
  try {
    po::store(po::parse_command_line(argc, argv, desc), vm);
    po::notify(vm);
  } catch (const po::error& e) {
    std::cerr << "vguide_bench_svi: " << e.what() << "\n" << desc;
    return 2;
  }
  if (vm.count("help")) {
    std::cout << desc;
    return 0;
  }
  if (vm.count("report")) {
    vguide::bench::write_report(vm["report"].as<std::string>(),
                                vm.count("plot-dir") ? vm["plot-dir"].as<std::string>() : "",
                                vm.count("stan") ? vm["stan"].as<std::string>() : "", std::cout);
    return 0;
  }
  if (vm.count("stan") || vm.count("plot-dir")) {
    std::cerr << "vguide_bench_svi: --" << (vm.count("stan") ? "stan" : "plot-dir") << " goes with --report\n";
    return 2;
  }

  const bool smoke = vm.count("smoke") != 0;
  const std::string source_dir = vm["source-dir"].as<std::string>();
  vguide::bench::TimingSettings timing;
  if (smoke) timing = {1, 0.0, 0.0, 2};
  if (vm.count("blocks")) timing.blocks = vm["blocks"].as<int>();
  if (timing.blocks < 1) {
    std::cerr << "vguide_bench_svi: --blocks is " << timing.blocks << ", but must be at least 1\n";
    return 2;
  }
  std::vector<Case> cases = make_cases(smoke ? smoke_sizes() : Sizes());
  if (vm.count("only")) {
    const auto only = split_set(vm["only"].as<std::string>());
    for (const auto& o : only)
      if (!std::set<std::string>{"table", "N", "D", "S", "threads"}.count(o)) {
        std::cerr << "vguide_bench_svi: --only: unknown curve '" << o << "' (expected table, N, D, S or threads)\n";
        return 2;
      }
    cases.erase(std::remove_if(cases.begin(), cases.end(), [&](const Case& c) { return !only.count(c.curve); }),
                cases.end());
  }

  const std::string evaluator_name = vm["evaluator"].as<std::string>();
  const std::map<std::string, vguide::model::Evaluator> evaluators{{"automatic", vguide::model::Evaluator::automatic},
                                                                   {"reference", vguide::model::Evaluator::reference},
                                                                   {"fused", vguide::model::Evaluator::fused}};
  if (!evaluators.count(evaluator_name)) {
    std::cerr << "vguide_bench_svi: --evaluator: unknown evaluator '" << evaluator_name
              << "' (expected automatic, reference or fused)\n";
    return 2;
  }
  const vguide::model::Evaluator evaluator = evaluators.at(evaluator_name);
  vguide::StepPath step_path;
  try {
    step_path = vguide::parse_step_path(vm["step"].as<std::string>());
  } catch (const std::invalid_argument& e) {
    std::cerr << "vguide_bench_svi: --step: " << e.what() << "\n";
    return 2;
  }
  if (vm.count("filter")) {
    const std::string filter = vm["filter"].as<std::string>();
    cases.erase(std::remove_if(cases.begin(), cases.end(),
                               [&](const Case& c) { return case_line(c).find(filter) == std::string::npos; }),
                cases.end());
  }

  if (vm.count("stan-plan")) {
    print_stan_plan(cases, std::cout);
    return 0;
  }

  const std::string heap = vm["heap"].as<std::string>();
  if (heap != "keep" && heap != "system") {
    std::cerr << "vguide_bench_svi: --heap: unknown setting '" << heap << "' (expected keep or system)\n";
    return 2;
  }
  const std::string heap_tuning = heap == "keep" ? vguide::to_string(vguide::keep_freed_memory()) : "system";
  std::cout << nlohmann::ordered_json{{"heap", heap_tuning}}.dump() << std::endl;

  at::set_num_threads(1);
  vguide::PluginManager plugins(1);
  for (const auto& f : kFamilies) plugins.load(f);

  // Apples to apples before any timing.
  bool ok = true;
  for (const auto& r : vguide::bench::check_baselines(plugins, source_dir)) {
    nlohmann::ordered_json j{{"check", r.name}, {"S", r.S}, {"framework", r.framework}, {"other", r.other},
                             {"max_grad_diff", r.max_grad_diff}, {"max_grad", r.max_grad}, {"ok", r.ok}};
    std::cout << j.dump() << std::endl;
    if (!r.ok) {
      std::cerr << "vguide_bench_svi: self-check failed: " << r.name << " (S = " << r.S << "): " << r.framework
                << " vs " << r.other << ", max gradient difference " << r.max_grad_diff << "\n";
      ok = false;
    }
  }
  if (!ok) return 1;

  std::map<std::string, vguide::bench::ModelData> data;  // generated once per size
  const auto start = std::chrono::steady_clock::now();
  for (size_t i = 0; i < cases.size(); ++i) {
    const Case& c = cases[i];
    try {
      auto it = data.find(c.spec.key());
      if (it == data.end()) it = data.emplace(c.spec.key(), vguide::bench::make_model_data(c.spec, source_dir)).first;
      const auto j = run_case(plugins, c, it->second, timing, evaluator, step_path);
      std::cout << j.dump() << std::endl;
      std::fprintf(stderr, "[%3zu/%zu %5.0fs] %-7s %-28s %-12s S=%-3lld B=%-5lld t=%d %-7s  %9.1f us  floor %9.1f us  x%.2f  (CPU x%.2f)\n",
                   i + 1, cases.size(), vguide::bench::detail::seconds_since(start), c.curve.c_str(),
                   c.spec.key().c_str(), c.guide.c_str(), static_cast<long long>(c.S), static_cast<long long>(c.B),
                   c.threads, vguide::dtype_name(c.dtype).c_str(), j["us_per_step"].get<double>(), j["baseline_us_per_step"].get<double>(),
                   j["ratio"].get<double>(), j["cpu_ratio"].get<double>());
    } catch (const std::exception& e) {
      nlohmann::ordered_json j{{"error", e.what()}, {"curve", c.curve}, {"model", c.spec.key()}, {"guide", c.guide},
                               {"S", c.S}, {"B", c.B}};
      std::cout << j.dump() << std::endl;
      std::cerr << "vguide_bench_svi: " << c.spec.key() << " " << c.guide << " S=" << c.S << ": " << e.what() << "\n";
      ok = false;
    }
  }
  at::set_num_threads(1);
  return ok ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {
    std::cerr << "vguide_bench_svi: " << e.what() << "\n";
    return 1;
  }
}
