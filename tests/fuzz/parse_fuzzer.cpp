// libFuzzer target for the .qvr parser: any byte string either parses or is refused
// with a vguide::model::ProgramError; anything else (a crash, another exception, a
// sanitizer report, a hang) is a bug. Built with clang by scripts/fuzz.sh.
#include <cstddef>
#include <cstdint>
#include <string>

#include "vguide/model/program.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  try {
    vguide::model::parse_program(text, "fuzz.qvr");
  } catch (const vguide::model::ProgramError&) {
  }
  return 0;
}
