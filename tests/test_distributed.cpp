// Data-parallel fitting (vguide/runtime/distributed.hpp), on loopback only. The
// in-process tests run each rank on its own thread with its own Gloo process group;
// the host tests start real processes (vguide-host --launch, or one per rank).
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <unistd.h>

#include <chrono>
#include <cmath>
#include <exception>
#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <thread>

#include "host_run.hpp"
#include "test_config.hpp"
#include "vguide/model/data.hpp"
#include "vguide/model/program.hpp"
#include "vguide/model/program_model.hpp"
#include "vguide/runtime/distributed.hpp"
#include "vguide/runtime/fit.hpp"
#include "vguide/runtime/plugin_manager.hpp"

namespace vguide {
namespace {

namespace fs = std::filesystem;
using model::ProgramModel;

const std::string kModels = std::string(VGUIDE_TEST_SOURCE_DIR) + "/examples/models/";

std::string read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

RendezvousOptions loopback(int64_t rank, int64_t world, int port, std::chrono::milliseconds timeout = std::chrono::seconds(30)) {
  RendezvousOptions o;
  o.rank = rank;
  o.world_size = world;
  o.master_addr = "127.0.0.1";
  o.master_port = port;
  o.timeout = timeout;
  return o;
}

// Runs body(rank) on `world` threads; rethrows the first failure.
void on_ranks(int64_t world, const std::function<void(int64_t)>& body) {
  std::vector<std::exception_ptr> errors(static_cast<size_t>(world));
  std::vector<std::thread> threads;
  for (int64_t r = 0; r < world; ++r)
    threads.emplace_back([&, r] {
      try {
        body(r);
      } catch (...) {
        errors[static_cast<size_t>(r)] = std::current_exception();
      }
    });
  for (auto& t : threads) t.join();
  for (auto& e : errors)
    if (e) std::rethrow_exception(e);
}

// The example logistic regression (60 rows), whole or as rank r's block of rows.
std::unique_ptr<ProgramModel> logistic(int64_t rank = 0, int64_t world = 1) {
  const std::string path = kModels + "logistic_regression.qvr";
  auto whole = std::make_unique<ProgramModel>(model::parse_program(read_file(path), path),
                                              model::load_data(kModels + "logistic_regression.json"));
  if (world == 1) return whole;
  const int64_t N = whole->num_rows();
  auto shard = std::make_unique<ProgramModel>(model::parse_program(read_file(path), path),
                                              whole->data_rows(N * rank / world, N * (rank + 1) / world));
  shard->set_row_weight(static_cast<double>(world));
  return shard;
}

void copy_parameters(Guide& from, Guide& to) {
  torch::NoGradGuard no_grad;
  auto source = from.parameters();
  auto target = to.parameters();
  for (size_t i = 0; i < source.size(); ++i) target[i].copy_(source[i]);
}

// Largest |a - b| over the tensor, relative to the tensor's largest |a|.
double relative_difference(const at::Tensor& a, const at::Tensor& b) {
  return ((a - b).abs().max() / a.abs().max().clamp_min(1e-12)).item<double>();
}

class DistributedFit : public ::testing::Test {
 protected:
  std::shared_ptr<Guide> make(const std::string& family, const Model& model) {
    plugins_.load(family);
    auto guide = plugins_.create(family, model, {"y"}, {});
    guide->set_seed(42);
    return guide;
  }
  PluginManager plugins_{9};
};

// ---- the step equals the single process's --------------------------------------

TEST_F(DistributedFit, TwoAndFourRanksFitTheSameParametersAsOneProcess) {
  at::set_num_threads(1);
  for (const std::string family : {"normal", "iaf"}) {
    FitOptions options;
    options.steps = 200;
    options.objective.particles = 2;
    options.seed = 3;
    options.init.strategy = InitStrategy::guide_default;  // keep the copied start
    auto whole = logistic();
    auto single = make(family, *whole);
    auto start = make(family, *whole);  // the same initial parameters for every run
    copy_parameters(*single, *start);
    Fit(*whole, *single, options).run();

    for (const int64_t world : {2, 4}) {
      std::vector<std::unique_ptr<ProgramModel>> models;
      std::vector<std::shared_ptr<Guide>> guides;
      for (int64_t r = 0; r < world; ++r) {
        models.push_back(logistic(r, world));
        guides.push_back(make(family, *models.back()));
        copy_parameters(*start, *guides.back());
      }
      const int port = free_loopback_port();
      on_ranks(world, [&](int64_t r) {
        auto comm = rendezvous(loopback(r, world, port), {{"family", family}});
        Fit fit(*models[r], *guides[r], options);
        fit.distribute(comm);
        fit.run();
      });
      const auto expected = single->named_parameters();
      for (int64_t r = 0; r < world; ++r) {
        const auto got = guides[r]->named_parameters();
        for (const auto& p : expected) {
          // The same sums, reordered: equal to rounding, and the ranks equal to each other bit for bit.
          EXPECT_LE(relative_difference(p.value(), got[p.key()]), 1e-5)
              << family << ", " << world << " ranks, rank " << r << ", parameter " << p.key();
          EXPECT_TRUE(torch::equal(got[p.key()], guides[0]->named_parameters()[p.key()]))
              << family << ", rank " << r << " drifted from rank 0 in " << p.key();
        }
      }
      // A fit that moved: the comparison is not between two untouched starts.
      for (const auto& p : start->named_parameters())
        EXPECT_GT(relative_difference(p.value(), expected[p.key()]), 1e-3) << family << " " << p.key();
    }
  }
}

// ---- minibatches ----------------------------------------------------------------

TEST_F(DistributedFit, MinibatchGradientAveragedOverRanksIsUnbiased) {
  at::set_num_threads(1);
  // The delta guide draws no noise, and an SGD step of 1e-30 leaves the parameters
  // where they are: every step's gradient is an estimate at the same point, whose
  // only randomness is each rank's choice of rows.
  FitOptions options;
  options.optimizer.kind = Optimizer::sgd;
  options.optimizer.lr = 1e-30;
  options.optimizer.momentum = 0.0;
  options.init.strategy = InitStrategy::uniform;
  options.seed = 5;
  auto whole = logistic();
  auto full_guide = make("delta", *whole);
  options.steps = 1;
  Fit full(*whole, *full_guide, options);
  full.step();
  std::vector<at::Tensor> full_grad;
  for (const auto& p : full_guide->parameters()) full_grad.push_back(p.grad().reshape({-1}).to(at::kDouble));
  const at::Tensor exact = at::cat(full_grad);

  const int64_t world = 2, batch = 5, steps = 1500;
  options.steps = steps;
  std::vector<std::unique_ptr<ProgramModel>> models;
  std::vector<std::shared_ptr<Guide>> guides;
  std::vector<at::Generator> rows;
  for (int64_t r = 0; r < world; ++r) {
    models.push_back(logistic(r, world));
    rows.push_back(at::detail::createCPUGenerator(100 + static_cast<uint64_t>(r)));
    models.back()->set_minibatch(batch, rows.back());
    guides.push_back(make("delta", *models.back()));
  }
  std::vector<at::Tensor> estimates(steps);
  const int port = free_loopback_port();
  on_ranks(world, [&](int64_t r) {
    auto comm = rendezvous(loopback(r, world, port), {});
    Fit fit(*models[r], *guides[r], options);
    fit.distribute(comm);
    for (int64_t t = 0; t < steps; ++t) {
      fit.step();
      if (r != 0) continue;
      std::vector<at::Tensor> g;
      for (const auto& p : guides[0]->parameters()) g.push_back(p.grad().reshape({-1}).to(at::kDouble));
      estimates[t] = at::cat(g);
    }
  });
  // Still at the full fit's point (the test's premise).
  for (size_t i = 0; i < guides[0]->parameters().size(); ++i)
    ASSERT_TRUE(torch::equal(guides[0]->parameters()[i], full_guide->parameters()[i]));
  const at::Tensor all = at::stack(estimates);
  const at::Tensor mean = all.mean(0), se = all.std(0) / std::sqrt(static_cast<double>(steps));
  // Within 4.5 standard errors everywhere, and the errors are small enough that a
  // bias of a few percent of the gradient would show.
  EXPECT_TRUE(((mean - exact).abs() <= 4.5 * se + 1e-6).all().item<bool>())
      << "mean " << mean << "\nexact " << exact << "\nse " << se;
  EXPECT_LT((se.max() / exact.abs().max()).item<double>(), 0.02);
  // Each step's estimate is a real subsample (not the full gradient every time).
  EXPECT_GT(all.std(0).max().item<double>(), 1e-3);
}

// ---- rendezvous and faults ------------------------------------------------------

TEST(Distributed, RanksThatDisagreeAreRefusedWithTheSameMessageEverywhere) {
  const int port = free_loopback_port();
  std::vector<std::string> messages(3);
  on_ranks(3, [&](int64_t r) {
    std::map<std::string, std::string> fingerprints{{"model", "m1"}, {"guide family", r == 2 ? "iaf" : "normal"}};
    try {
      rendezvous(loopback(r, 3, port), fingerprints);
    } catch (const DistributedError& e) {
      messages[r] = e.what();
    }
  });
  for (const auto& m : messages) EXPECT_EQ(m, "rank 2 differs from rank 0 in the guide family (rank 0: normal, rank 2: iaf)");
}

TEST(Distributed, ARankThatStopsAnsweringIsNamedWithinTheTimeout) {
  const int port = free_loopback_port();
  const auto timeout = std::chrono::seconds(2);
  std::string message;
  double waited = 0.0;
  std::atomic<bool> done{false};
  on_ranks(2, [&](int64_t r) {
    auto comm = rendezvous(loopback(r, 2, port, timeout), {});
    at::Tensor t = at::ones({3}, at::kDouble);
    comm->all_reduce_sum(t, "step 1");  // both take part once
    if (r == 1) {  // then rank 1 hangs, holding its connections open
      while (!done.load()) std::this_thread::sleep_for(std::chrono::milliseconds(10));
      return;
    }
    const auto start = std::chrono::steady_clock::now();
    try {
      comm->all_reduce_sum(t, "step 2");
    } catch (const DistributedError& e) {
      message = e.what();
    }
    waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    done.store(true);
  });
  EXPECT_EQ(message.rfind("distributed fit: rank 1 stopped answering during step 2 (rank 0 saw: ", 0), 0u) << message;
  // The collective's timeout, then up to as long again for the others' notes.
  EXPECT_GE(waited, 1.5);
  EXPECT_LT(waited, 10.0);
}

TEST(Distributed, OptionsAreChecked) {
  auto message = [](const RendezvousOptions& o) {
    try {
      validate(o);
    } catch (const std::invalid_argument& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_EQ(message(loopback(2, 2, 1234)), "rank is 2, but must be in [0, 1] for a world size of 2");
  EXPECT_EQ(message(loopback(0, 0, 1234)), "world size is 0, but must be at least 1");
  EXPECT_EQ(message(loopback(0, 2, 70000)), "master port is 70000, but must be in [1, 65535]");
  EXPECT_EQ(message(loopback(0, 2, 1234, std::chrono::milliseconds(0))), "timeout must be positive");
  EXPECT_EQ(message(loopback(1, 2, 1234)), "no error");
}

TEST(Distributed, AllGatherAlongConcatenatesTheRanksBlocksInOrder) {
  const int port = free_loopback_port();
  std::vector<at::Tensor> out(3);
  on_ranks(3, [&](int64_t r) {
    auto comm = rendezvous(loopback(r, 3, port), {});
    // Rank r holds r + 1 columns, each filled with its rank.
    const at::Tensor mine = at::full({2, r + 1}, static_cast<double>(r), at::kDouble);
    out[r] = all_gather_along(*comm, mine, 1, "test");
    EXPECT_EQ(all_gather(*comm, "rank" + std::to_string(r), "test"),
              (std::vector<std::string>{"rank0", "rank1", "rank2"}));
  });
  const at::Tensor expected = at::tensor({0.0, 1.0, 1.0, 2.0, 2.0, 2.0}, at::kDouble).expand({2, 6});
  for (const auto& t : out) EXPECT_TRUE(torch::equal(t, expected)) << t;
}

TEST_F(DistributedFit, RefusesWhatADataParallelFitCannotDo) {
  auto model = logistic(0, 1);
  FitOptions iwae;
  iwae.objective.kind = Objective::iwae;
  auto guide = make("normal", *model);
  // A one-rank "world" suffices: the refusal comes before any collective.
  struct Solo final : Communicator {
    int64_t rank() const noexcept override { return 0; }
    int64_t world_size() const noexcept override { return 1; }
    void all_reduce_sum(at::Tensor&, const std::string&) override {}
  };
  Fit a(*model, *guide, iwae);
  try {
    a.distribute(std::make_shared<Solo>());
    FAIL() << "IWAE was accepted";
  } catch (const std::invalid_argument& e) {
    EXPECT_STREQ(e.what(),
                 "a data-parallel fit cannot use IWAE: its log-sum-exp over particles needs every rank's likelihood "
                 "before any gradient; use the ELBO");
  }
  auto laplace = make("laplace", *model);
  Fit b(*model, *laplace, FitOptions{});
  try {
    b.distribute(std::make_shared<Solo>());
    FAIL() << "laplace was accepted";
  } catch (const std::invalid_argument& e) {
    EXPECT_STREQ(e.what(),
                 "a data-parallel fit cannot use the laplace family: its Hessian needs the whole log joint in one "
                 "process");
  }
}

TEST(Distributed, RowsAreSplitWithTheirSizeVariable) {
  auto whole = logistic();
  const model::Data part = whole->data_rows(10, 25);
  EXPECT_EQ(part.get("N").item<int64_t>(), 15);
  EXPECT_EQ(part.get("P").item<int64_t>(), whole->data_rows(0, 60).get("P").item<int64_t>());
  const auto full = model::load_data(kModels + "logistic_regression.json");
  EXPECT_TRUE(torch::equal(part.get("X"), full.get("X").slice(0, 10, 25)));
  EXPECT_TRUE(torch::equal(part.get("y"), full.get("y").slice(0, 10, 25)));
  // A row weight of W times the block's rows, averaged over the blocks, is the whole log joint.
  const at::Tensor x = particles(3, at::kDouble);
  at::Generator gen = at::detail::createCPUGenerator(1);
  SiteValues values{{"alpha", at::randn({3}, gen, at::kDouble)}, {"beta", at::randn({3, 3}, gen, at::kDouble)}};
  at::Tensor mean = at::zeros({3}, at::kDouble);
  for (int64_t r = 0; r < 4; ++r) mean += logistic(r, 4)->log_joint(x, values) / 4.0;
  EXPECT_TRUE(at::allclose(mean, whole->log_joint(x, values), 1e-12, 1e-9)) << mean << whole->log_joint(x, values);

  const std::string eight = kModels + "eight_schools.qvr";
  ProgramModel schools(model::parse_program(read_file(eight), eight), model::load_data(kModels + "eight_schools.json"));
  try {
    schools.data_rows(0, 4);
    FAIL() << "a per-row latent was split";
  } catch (const std::invalid_argument& e) {
    EXPECT_STREQ(e.what(),
                 "latent 'theta_raw' has one value per data row, so the 8 rows cannot be split between ranks "
                 "(every rank's guide draws all of them)");
  }
  EXPECT_THROW(whole->data_rows(30, 30), std::invalid_argument);
  EXPECT_THROW(whole->data_rows(0, 61), std::invalid_argument);
}

}  // namespace
}  // namespace vguide
