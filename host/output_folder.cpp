#include "output_folder.hpp"

#include <fstream>
#include <stdexcept>

namespace fs = std::filesystem;

namespace vguide::host {

const std::vector<std::string>& output_file_names() {
  static const std::vector<std::string> names{"summary.json", "draws.csv", "draws_psis.csv", "elbo.csv",
                                                   "checkpoint.pt"};
  return names;
}

void prepare_output_folder(const fs::path& dir, bool overwrite) {
  std::error_code ec;
  if (fs::exists(dir, ec)) {
    if (!fs::is_directory(dir, ec)) throw std::invalid_argument("--output " + dir.string() + " is not a folder");
    if (!overwrite)
      for (const auto& name : output_file_names())
        if (fs::exists(dir / name, ec))
          throw std::invalid_argument("--output " + dir.string() + " already holds a run's files (" + name +
                                      "); pass --overwrite or choose another folder");
    return;
  }
  fs::create_directories(dir, ec);
  if (ec) throw std::invalid_argument("--output " + dir.string() + " cannot be created: " + ec.message());
}

void write_atomically(const fs::path& path, const std::string& text) {
  const fs::path tmp = path.string() + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    out << text;
    out.flush();
    if (!out) throw std::runtime_error("cannot write " + tmp.string());
  }
  std::error_code ec;
  fs::rename(tmp, path, ec);
  if (ec) throw std::runtime_error("cannot move " + tmp.string() + " to " + path.string() + ": " + ec.message());
}

}  // namespace vguide::host
