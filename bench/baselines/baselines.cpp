#include "baselines.hpp"

#include <stdexcept>

namespace vguide::bench {

std::unique_ptr<Baseline> make_eight_schools_baseline(const model::Data& data, int64_t S, uint64_t seed, at::ScalarType dtype);
std::unique_ptr<Baseline> make_logistic_baseline(const model::Data& data, int64_t S, int64_t B, uint64_t seed, at::ScalarType dtype);
std::unique_ptr<Baseline> make_normal_means_baseline(const model::Data& data, int64_t S, uint64_t seed, at::ScalarType dtype);

std::unique_ptr<Baseline> make_baseline(const ModelSpec& spec, const model::Data& data, int64_t S, int64_t B,
                                        uint64_t seed, at::ScalarType dtype) {
  if (B != 0 && spec.kind != ModelKind::logistic)
    throw std::invalid_argument("make_baseline: " + spec.name() + " has no minibatch baseline");
  switch (spec.kind) {
    case ModelKind::eight_schools: return make_eight_schools_baseline(data, S, seed, dtype);
    case ModelKind::logistic: return make_logistic_baseline(data, S, B, seed, dtype);
    case ModelKind::normal_means: return make_normal_means_baseline(data, S, seed, dtype);
  }
  throw std::invalid_argument("make_baseline: unknown model kind");
}

}  // namespace vguide::bench
