#pragma once
// The model and the fit vguide-host runs: the program and this rank's rows of the
// data, the guide, the vguide::Fit over them, the communicator of a distributed fit
// and the fingerprints a checkpoint is checked against.
#include <ATen/core/Generator.h>

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "settings.hpp"
#include "vguide/guide.hpp"
#include "vguide/model/data_rows.hpp"
#include "vguide/model/program_model.hpp"
#include "vguide/runtime/distributed.hpp"
#include "vguide/runtime/fit.hpp"
#include "vguide/runtime/init.hpp"
#include "vguide/runtime/plugin_manager.hpp"

namespace vguide::host {

/// The program and the data it is fitted to, as read.
struct ModelInputs {
  std::string model_text;
  std::string data_path;  ///< "{rank}" replaced by this rank
  std::string data_text;
  bool per_rank_data = false;  ///< --data named one file per rank
  std::vector<std::string> data_names;
  std::unique_ptr<Model> model;  ///< a .qvr program over this rank's rows, or a Stan program
  model::ProgramModel* program = nullptr;  ///< `model` if it is a .qvr program, else null
  model::DataRows* rows = nullptr;         ///< `model`'s rows, for minibatches and ranks
  /// A distributed fit split from one file: the start Pathfinder found on the whole
  /// data, so that every rank starts where one process would.
  std::optional<InitialPoint> whole_data_start;
};

/// Reads --model and --data and builds the model: a Stan program (settings.stan) or a
/// .qvr program. Distributed, the model covers this rank's block of rows (a .qvr
/// program may also read its own file), its log joint weighted by the number of ranks.
/// @throw InputError for a file that cannot be read or rows that cannot be split;
/// the parsers' errors for a bad program or bad data.
ModelInputs load_model(const Settings& settings);

/// --init-file's values into settings.fit.init.values (with --init value).
/// @throw InputError if it cannot be read; the data parser's errors.
void read_init_values(Settings& settings);

/// The guide and the fit over the model. Members are destroyed in reverse order:
/// the fit before the guide it trains.
struct FitSession {
  std::shared_ptr<Guide> guide;
  at::Generator rows;  ///< the minibatch stream, this rank's
  std::optional<Fit> fit;
  std::shared_ptr<Communicator> comm;  ///< null unless distributed
  std::map<std::string, std::string> fingerprints;
};

/// Creates the guide, builds the fit, joins the other ranks of a distributed fit and,
/// with --resume, loads the checkpoint. @throw UsageError, InputError,
/// PluginError, DistributedError.
void build_fit(const Settings& settings, ModelInputs& inputs, PluginManager& plugins, FitSession& session);

/// After the last step: the model scores the full data again, the guide's after_fit
/// runs (unless the fit failed numerically), the checkpoint is written and the
/// guide's diagnostics are logged.
void finish_fit(const Settings& settings, ModelInputs& inputs, FitSession& session, const FitResult& result);

/// checkpoint.pt in the output folder.
std::string checkpoint_path(const Settings& settings);

}  // namespace vguide::host
