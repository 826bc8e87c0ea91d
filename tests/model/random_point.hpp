#pragma once
// A model's latents at a random point, as Stan starts: uniform(-2, 2) in each site's
// unconstrained space, pushed through its bijector; S particles of `dtype`.
#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>

#include <cstdint>
#include <vector>

#include "vguide/bijector.hpp"
#include "vguide/model.hpp"

namespace vguide::test {

inline SiteValues random_point(const Model& model, int64_t S, uint64_t seed, at::ScalarType dtype = at::kDouble) {
  at::Generator gen = at::detail::createCPUGenerator(seed);
  SiteValues values;
  for (const auto& site : model.sites()) {
    const auto bijector = biject_to(site.support);
    std::vector<int64_t> shape{S};
    for (int64_t n : bijector->unconstrained_shape(site.shape)) shape.push_back(n);
    values[site.name] = bijector->forward(at::empty(shape, at::kDouble).uniform_(-2, 2, gen)).to(dtype);
  }
  return values;
}

}  // namespace vguide::test
