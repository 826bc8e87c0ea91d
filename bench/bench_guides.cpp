// One SVI step (ELBO with S particles, backward, Adam update) per guide family, as a
// function of the latent dimension D, on a standard-Normal target. The lowrank_mvn
// curve shows its O(D r²) cost against mvn's O(D³)/O(D²).
//
//   build/bench/vguide_bench_guides --benchmark_filter=lowrank
#include <benchmark/benchmark.h>
#include <torch/torch.h>

#include "test_models.hpp"
#include "vguide/runtime/elbo.hpp"
#include "vguide/runtime/plugin_manager.hpp"

namespace {

void svi_step(benchmark::State& state, const std::string& family, std::vector<std::string> options, int64_t S) {
  torch::set_num_threads(1);
  const int64_t D = state.range(0);
  vguide::test::SitesModel model({{"z", {D}, vguide::constraints::real()}}, "standard_normal");
  vguide::PluginManager manager(1);
  manager.load(family);
  auto guide = manager.create(family, model, {}, options);
  torch::optim::Adam adam(guide->parameters(), torch::optim::AdamOptions(0.01));
  for (auto _ : state) {
    adam.zero_grad();
    auto loss = -vguide::elbo(model, *guide, S);
    loss.backward();
    adam.step();
    benchmark::DoNotOptimize(loss.data_ptr());
  }
  state.counters["D"] = static_cast<double>(D);
}

void BM_normal(benchmark::State& s) { svi_step(s, "normal", {}, 1); }
void BM_mvn(benchmark::State& s) { svi_step(s, "mvn", {}, 1); }
void BM_lowrank_mvn_rank5(benchmark::State& s) { svi_step(s, "lowrank_mvn", {"rank=5"}, 1); }
void BM_iaf(benchmark::State& s) { svi_step(s, "iaf", {}, 1); }
void BM_spline(benchmark::State& s) { svi_step(s, "spline", {}, 1); }
void BM_lowrank_mvn_rank5_S16(benchmark::State& s) { svi_step(s, "lowrank_mvn", {"rank=5"}, 16); }

BENCHMARK(BM_normal)->RangeMultiplier(10)->Range(10, 10000);
BENCHMARK(BM_mvn)->RangeMultiplier(10)->Range(10, 1000);
BENCHMARK(BM_lowrank_mvn_rank5)->RangeMultiplier(10)->Range(10, 10000);
BENCHMARK(BM_lowrank_mvn_rank5_S16)->RangeMultiplier(10)->Range(10, 10000);
BENCHMARK(BM_iaf)->RangeMultiplier(10)->Range(10, 100);
BENCHMARK(BM_spline)->RangeMultiplier(10)->Range(10, 100);

}  // namespace

BENCHMARK_MAIN();
