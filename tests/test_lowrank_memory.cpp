// lowrank_mvn at D = 10⁴ under a memory ceiling: the process may allocate only
// 256 MiB more than it holds at start, while one D × D float32 matrix is 381 MiB.
// If any step formed a dense covariance, the allocation would fail and so would
// this test. A positive control shows the ceiling really bites.
#include <gtest/gtest.h>
#include <sys/resource.h>
#include <torch/torch.h>

#include <fstream>
#include <string>

#include "test_models.hpp"
#include "vguide/runtime/elbo.hpp"
#include "vguide/runtime/plugin_manager.hpp"

namespace {
constexpr int64_t kD = 10000;
constexpr long long kHeadroom = 256LL << 20;

long long data_segment_bytes() {
  std::ifstream status("/proc/self/status");
  std::string key;
  while (status >> key) {
    if (key == "VmData:") {
      long long kb = 0;
      status >> kb;
      return kb * 1024;
    }
    status.ignore(1 << 16, '\n');
  }
  return -1;
}

class LowRankMemory : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    torch::set_num_threads(1);  // no new thread arenas under the ceiling
    torch::zeros({16}).sum();   // LibTorch's lazy one-time set-up before measuring
    const long long now = data_segment_bytes();
    ASSERT_GT(now, 0);
    rlimit limit{static_cast<rlim_t>(now + kHeadroom), static_cast<rlim_t>(now + kHeadroom)};
    ASSERT_EQ(setrlimit(RLIMIT_DATA, &limit), 0);
  }
};

TEST_F(LowRankMemory, ADenseDxDMatrixDoesNotFitUnderTheCeiling) {
  EXPECT_ANY_THROW(torch::ones({kD, kD}));
}

TEST_F(LowRankMemory, FitsTenThousandLatentsWithoutADenseCovariance) {
  vguide::test::SitesModel model({{"z", {kD}, vguide::constraints::real()}}, "wide");
  vguide::PluginManager manager(1);
  manager.load("lowrank_mvn");
  auto guide = manager.create("lowrank_mvn", model, {}, {"rank=5"});
  const double before = -vguide::elbo(model, *guide, 4).item<double>();
  vguide::test::fit_adam(model, *guide, 4, {{30, 0.05}});
  const double after = -vguide::elbo(model, *guide, 4).item<double>();
  EXPECT_TRUE(std::isfinite(after));
  EXPECT_LT(after, before);  // the loss went down: it really fitted
  auto draws = guide->rsample(vguide::particles(2));
  EXPECT_EQ(draws.at("z").sizes().vec(), (std::vector<int64_t>{2, kD}));
}
}  // namespace
