#pragma once
// Small helpers shared by the test suites.
#include <string>

namespace vguide::test {

/// The what() of the E that f throws, or "(no exception)" if it throws none.
template <typename E, typename F>
std::string message_of(F&& f) {
  try {
    f();
  } catch (const E& e) {
    return e.what();
  }
  return "(no exception)";
}

}  // namespace vguide::test
