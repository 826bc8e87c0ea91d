// vguide_bench_distributed: data-parallel SVI steps (vguide::Fit::distribute) against
// the number of ranks, on the logistic regression with N rows (default 10^6, P = 20),
// full batch and minibatch, with the time of the step's one all-reduce measured
// alone; then the bytes each shipped family sends per step. One JSON line per
// configuration (docs/distributed.md, bench/README.md).
//
//   vguide_bench_distributed > distributed.jsonl     ranks 1 and 2, N = 10^6
//   vguide_bench_distributed --smoke                 tiny N, few blocks
//   vguide_bench_distributed --report distributed.jsonl   a Markdown table
//
// Every rank is a process of its own (forked before LibTorch starts any thread), on
// one LibTorch thread, meeting the others on 127.0.0.1, with freed memory kept in the
// heap as vguide-host keeps it (vguide/runtime/heap.hpp).
#include <torch/torch.h>

#include <sys/wait.h>
#include <unistd.h>


#include <boost/program_options.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <iostream>
#include <sstream>

#include "models.hpp"
#include "vguide/model/program_model.hpp"
#include "vguide/runtime/distributed.hpp"
#include "vguide/runtime/fit.hpp"
#include "vguide/runtime/heap.hpp"
#include "vguide/runtime/plugin_manager.hpp"

namespace po = boost::program_options;

namespace {

struct Config {
  int64_t ranks = 1;
  int64_t rows = 1000000;
  int64_t batch = 0;  // per rank; 0 = the rank's full shard
  int blocks = 11;
  double block_seconds = 0.5;
};

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

double quartile(std::vector<double> v, double q) {
  std::sort(v.begin(), v.end());
  return v[static_cast<size_t>(q * static_cast<double>(v.size() - 1))];
}

// The same number on every rank: rank 0's.
int64_t from_rank0(vguide::Communicator* comm, int64_t value) {
  if (!comm) return value;
  at::Tensor t = at::full({1}, comm->rank() == 0 ? value : 0, at::kLong);
  comm->all_reduce_sum(t, "the bench's block size");
  return t.item<int64_t>();
}

// Microseconds per call of f over `blocks` blocks of n calls each; every rank makes
// the same calls, n chosen by rank 0 from a probe.
std::vector<double> time_blocks(vguide::Communicator* comm, const std::function<void()>& f, int blocks,
                                double block_seconds) {
  for (int i = 0; i < 5; ++i) f();  // warm-up: allocations, caches, the Gloo pairs
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < 5; ++i) f();
  const double probe = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / 5.0;
  const int64_t n = from_rank0(comm, std::max<int64_t>(1, static_cast<int64_t>(block_seconds / std::max(probe, 1e-9))));
  std::vector<double> out;
  for (int b = 0; b < blocks; ++b) {
    const auto start = std::chrono::steady_clock::now();
    for (int64_t i = 0; i < n; ++i) f();
    out.push_back(1e6 * std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() /
                  static_cast<double>(n));
  }
  return out;
}

// One rank's part of a configuration; rank 0 prints the JSON line.
int run_rank(const Config& c, int64_t rank, int port, const std::string& source_dir) {
  at::set_num_threads(1);
  const vguide::bench::ModelData md =
      vguide::bench::make_model_data({vguide::bench::ModelKind::logistic, c.rows, 20}, source_dir);
  auto model = std::make_unique<vguide::model::ProgramModel>(md.program, md.data);
  if (c.ranks > 1) {
    const int64_t N = model->num_rows();
    model = std::make_unique<vguide::model::ProgramModel>(
        md.program, model->data_rows(N * rank / c.ranks, N * (rank + 1) / c.ranks));
    model->set_row_weight(static_cast<double>(c.ranks));
  }
  if (c.batch > 0) model->set_minibatch(c.batch, at::detail::createCPUGenerator(11 + static_cast<uint64_t>(rank)));
  vguide::PluginManager plugins(1);
  plugins.load("normal");
  auto guide = plugins.create("normal", *model, model->observed_names(), {});
  vguide::FitOptions options;
  options.steps = int64_t{1} << 40;
  vguide::Fit fit(*model, *guide, options);
  std::shared_ptr<vguide::Communicator> comm;
  if (c.ranks > 1) {
    vguide::RendezvousOptions r;
    r.rank = rank;
    r.world_size = c.ranks;
    r.master_port = port;
    comm = vguide::rendezvous(r, {{"bench", "logistic"}});
    fit.distribute(comm);
  }
  const std::vector<double> step = time_blocks(comm.get(), [&] { fit.step(); }, c.blocks, c.block_seconds);
  // The step's all-reduce alone: objective, interrupt flag and every gradient, in float64.
  int64_t numel = 2;
  for (const auto& p : guide->parameters()) numel += p.numel();
  at::Tensor buffer = at::ones({numel}, at::kDouble);
  std::vector<double> reduce{0.0};
  if (comm)
    reduce = time_blocks(comm.get(), [&] { comm->all_reduce_sum(buffer, "the bench"); }, c.blocks, c.block_seconds / 5);
  if (rank == 0) {
    const double us = median(step);
    const int64_t rows_per_step = c.batch > 0 ? c.batch * c.ranks : c.rows;
    nlohmann::ordered_json j;
    j["bench"] = "distributed";
    j["model"] = "logistic";
    j["guide"] = "normal";
    j["ranks"] = c.ranks;
    j["N"] = c.rows;
    j["B_per_rank"] = c.batch;
    j["us_per_step"] = us;
    j["us_q1"] = quartile(step, 0.25);
    j["us_q3"] = quartile(step, 0.75);
    j["rows_per_s"] = static_cast<double>(rows_per_step) / (us * 1e-6);
    j["allreduce_us"] = median(reduce);
    j["allreduce_bytes"] = numel * 8;
    j["blocks"] = c.blocks;
    std::cout << j.dump() << std::endl;
  }
  return 0;
}

// Forks the ranks of one configuration and waits for them.
bool run_config(const Config& c, const std::string& source_dir) {
  const int port = vguide::free_loopback_port();
  std::vector<pid_t> pids;
  for (int64_t r = 0; r < c.ranks; ++r) {
    const pid_t pid = ::fork();
    if (pid == 0) {
      int status = 1;
      try {
        status = run_rank(c, r, port, source_dir);
      } catch (const std::exception& e) {
        std::cerr << "vguide_bench_distributed: rank " << r << ": " << e.what() << "\n";
      }
      std::cout.flush();
      ::_exit(status);
    }
    pids.push_back(pid);
  }
  bool ok = true;
  for (pid_t pid : pids) {
    int status = 0;
    ::waitpid(pid, &status, 0);
    ok = ok && WIFEXITED(status) && WEXITSTATUS(status) == 0;
  }
  return ok;
}

// What one step sends: the float64 buffer of every shipped family's parameters
// (plus the objective and the interrupt flag), on the logistic model (D = 21) and
// on K = 1000 Normal means (D = 1000).
void print_sizes(const std::string& source_dir) {
  vguide::PluginManager plugins(1);
  for (const auto& [kind, rows, size] :
       std::vector<std::tuple<vguide::bench::ModelKind, int64_t, int64_t>>{{vguide::bench::ModelKind::logistic, 100, 20},
                                                                           {vguide::bench::ModelKind::normal_means, 20, 1000}}) {
    const auto md = vguide::bench::make_model_data({kind, rows, size}, source_dir);
    vguide::model::ProgramModel model(md.program, md.data);
    for (const std::string family : {"normal", "delta", "mvn", "lowrank_mvn", "laplace", "iaf", "spline", "mixture"}) {
      plugins.load(family);
      const std::vector<std::string> options =
          family == "mixture" ? std::vector<std::string>{"components=normal,normal"} : std::vector<std::string>{};
      auto guide = plugins.create(family, model, model.observed_names(), options);
      int64_t numel = 2;
      for (const auto& p : guide->parameters()) numel += p.numel();
      nlohmann::ordered_json j;
      j["bench"] = "allreduce_size";
      j["model"] = model.name();
      j["D"] = guide->registry().total_unconstrained_dim();
      j["guide"] = family;
      j["options"] = options.empty() ? "" : options[0];
      j["values"] = numel;
      j["bytes"] = numel * 8;
      std::cout << j.dump() << std::endl;
    }
  }
}

void report(const std::string& path) {
  std::ifstream in(path);
  std::string line;
  std::vector<nlohmann::json> steps, sizes;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] != '{') continue;
    auto j = nlohmann::json::parse(line);
    (j["bench"] == "distributed" ? steps : sizes).push_back(j);
  }
  std::cout << "\n## Data-parallel steps (logistic regression, normal guide, P = 20)\n\n"
            << "| ranks | N | rows per rank per step | µs per step (q1–q3) | rows per second | all-reduce µs | bytes |\n"
            << "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n";
  char buf[256];
  for (const auto& j : steps) {
    const int64_t B = j["B_per_rank"].get<int64_t>(), N = j["N"].get<int64_t>(), W = j["ranks"].get<int64_t>();
    std::snprintf(buf, sizeof buf, "| %lld | %lld | %s | %.0f (%.0f–%.0f) | %.3g | %.1f | %lld |\n",
                  static_cast<long long>(W), static_cast<long long>(N),
                  B > 0 ? std::to_string(B).c_str() : ("all " + std::to_string(N / W)).c_str(),
                  j["us_per_step"].get<double>(), j["us_q1"].get<double>(), j["us_q3"].get<double>(),
                  j["rows_per_s"].get<double>(), j["allreduce_us"].get<double>(),
                  static_cast<long long>(j["allreduce_bytes"].get<int64_t>()));
    std::cout << buf;
  }
  std::cout << "\n## Bytes all-reduced per step, by family\n\n| model | D | guide | values | bytes |\n| --- | ---: | --- | ---: | ---: |\n";
  for (const auto& j : sizes)
    std::cout << "| " << j["model"].get<std::string>() << " | " << j["D"] << " | " << j["guide"].get<std::string>()
              << " | " << j["values"] << " | " << j["bytes"] << " |\n";
}

}  // namespace

int main(int argc, char** argv) {
  po::options_description desc("vguide_bench_distributed options");
  desc.add_options()("help,h", "this help")("smoke", "N = 4096, 2 blocks: every path once")(
      "rows", po::value<int64_t>()->default_value(1000000), "N, the data rows")(
      "ranks", po::value<std::string>()->default_value("1,2"), "comma-separated numbers of ranks")(
      "blocks", po::value<int>()->default_value(11), "timed blocks per configuration")(
      "report", po::value<std::string>(), "print a Markdown table of this JSONL file and exit")(
      "source-dir", po::value<std::string>()->default_value(VGUIDE_SOURCE_DIR), "the vguide source tree");
  po::variables_map vm;
  try {
    po::store(po::parse_command_line(argc, argv, desc), vm);
    po::notify(vm);
  } catch (const po::error& e) {
    std::cerr << "vguide_bench_distributed: " << e.what() << "\n";
    return 2;
  }
  if (vm.count("help")) {
    std::cout << desc;
    return 0;
  }
  if (vm.count("report")) {
    report(vm["report"].as<std::string>());
    return 0;
  }
  const bool smoke = vm.count("smoke") != 0;
  std::vector<int64_t> ranks;
  std::stringstream list(vm["ranks"].as<std::string>());
  for (std::string item; std::getline(list, item, ',');) {
    try {
      ranks.push_back(std::stoll(item));
    } catch (const std::exception&) {
      std::cerr << "vguide_bench_distributed: --ranks: '" << item << "' is not a number\n";
      return 2;
    }
    if (ranks.back() < 1) {
      std::cerr << "vguide_bench_distributed: --ranks: " << item << " is not a positive number\n";
      return 2;
    }
  }
  const std::string source_dir = vm["source-dir"].as<std::string>();
  bool ok = true;
  vguide::keep_freed_memory();  // as vguide-host's ranks do; the forks inherit it
  // Ranks first: the forks happen before this process starts LibTorch's threads.
  for (const int64_t batch : {int64_t{0}, int64_t{1024}}) {
    for (const int64_t w : ranks) {
      Config c;
      c.ranks = w;
      c.rows = smoke ? 4096 : vm["rows"].as<int64_t>();
      c.batch = batch;
      c.blocks = smoke ? 2 : vm["blocks"].as<int>();
      c.block_seconds = smoke ? 0.02 : 0.5;
      ok = run_config(c, source_dir) && ok;
    }
  }
  print_sizes(source_dir);
  return ok ? 0 : 1;
}
