// libFuzzer target for the Stan reader's parser and checker: any byte string either
// is read or is refused with a vguide::model::ProgramError; anything else (a crash,
// another exception, a sanitizer report, a hang) is a bug. Off CI: scripts/fuzz.sh
// builds and runs it (CTest runs the bounded mutation test, StanFuzz.*, instead).
#include <cstddef>
#include <cstdint>
#include <sstream>
#include <string>

#include "../../framework/src/model/stan/parser.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  vguide::model::ProgramFile file;
  file.filename = "fuzz.stan";
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) file.lines.push_back(line);
  try {
    vguide::model::stan::StanAst ast = vguide::model::stan::parse_syntax(file, text);
    vguide::model::stan::check(file, ast);
  } catch (const vguide::model::ProgramError&) {
  }
  return 0;
}
