#pragma once
// The files a fit writes: summary.json, draws.csv (Stan's variational layout),
// elbo.csv and checkpoint.pt, each written atomically (a temporary file in the same
// folder, then rename), so an interrupted or failed run never leaves half a file.
#include <filesystem>
#include <string>
#include <vector>

namespace vguide::host {

/// The files this host owns in an output folder.
const std::vector<std::string>& output_file_names();

/// Creates `dir` if needed. @throw std::invalid_argument if it holds a previous run's
/// files and `overwrite` is false (naming the first such file), or is not a folder.
void prepare_output_folder(const std::filesystem::path& dir, bool overwrite);

/// text -> path.tmp -> rename. @throw std::runtime_error naming the file.
void write_atomically(const std::filesystem::path& path, const std::string& text);

}  // namespace vguide::host
