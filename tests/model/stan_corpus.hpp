#pragma once
// The Stan corpus (tests/model/stan/): its program names, sorted, for the tests
// that run every program.
#include <algorithm>
#include <filesystem>
#include <string>
#include <vector>

#include "model_paths.hpp"

namespace vguide::test {

inline std::vector<std::string> stan_corpus_names() {
  std::vector<std::string> names;
  for (const auto& entry : std::filesystem::directory_iterator(VGUIDE_TEST_STAN_DIR))
    if (entry.path().extension() == ".stan") names.push_back(entry.path().stem().string());
  std::sort(names.begin(), names.end());
  return names;
}

}  // namespace vguide::test
