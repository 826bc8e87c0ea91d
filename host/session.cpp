#include "session.hpp"

#include <ATen/CPUGeneratorImpl.h>
#include <spdlog/spdlog.h>

#include <fstream>
#include <sstream>
#include <stdexcept>

#include "vguide/model/data.hpp"
#include "vguide/model/program.hpp"
#include "vguide/model/stan_model.hpp"
#include "vguide/runtime/heap.hpp"
#include "vguide/version.hpp"

namespace vguide::host {

namespace {

std::string read_text(const std::string& path, const char* flag) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw InputError(std::string(flag) + " " + path + ": cannot be read");
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

std::unique_ptr<Model> program_model(model::ProgramFile file, model::Data data, ModelInputs& in) {
  auto program = std::make_unique<model::ProgramModel>(std::move(file), std::move(data));
  in.program = program.get();
  in.rows = program.get();
  return program;
}

// The start Pathfinder finds on the whole data, with the fit's own init stream, for
// a fit whose ranks then see their own rows.
std::optional<InitialPoint> whole_data_start(const Settings& settings, const Model& model,
                                             const std::vector<std::string>& observed) {
  const FitOptions& options = settings.fit;
  if (options.init.strategy != InitStrategy::pathfinder) return std::nullopt;
  at::Generator init_stream = at::detail::createCPUGenerator(options.seed ^ kInitStreamSalt);
  return initial_point(model, LatentRegistry::from_model(model, observed), options.init, init_stream, options.dtype);
}

// A Stan program: every rank reads all the data (transformed data may use all of
// it) and its log joint covers the rank's block of rows.
void split_stan_rows(const Settings& settings, model::StanModel& stan, ModelInputs& in) {
  const int64_t rank = settings.dist.rank, world = settings.dist.world_size;
  const std::string& model_path = settings.model_path;
  if (in.per_rank_data)
    throw InputError("--data " + settings.data_path + ": one data file per rank ({rank}) is not supported for Stan " +
                     "programs; every rank reads all the data and fits its own block of rows (docs/stan.md)");
  const int64_t N = stan.num_rows();
  if (N == 0) throw InputError("--model " + model_path + ": no data rows can be split: " + stan.rows_refusal());
  if (N < world)
    throw InputError("--data " + in.data_path + ": " + std::to_string(N) + " data rows cannot be split between " +
                     std::to_string(world) + " ranks");
  in.whole_data_start = whole_data_start(settings, stan, {});
  stan.set_row_range(N * rank / world, N * (rank + 1) / world);
  stan.set_row_weight(static_cast<double>(world));
}

}  // namespace

ModelInputs load_model(const Settings& settings) {
  const RendezvousOptions& dist = settings.dist;
  const bool distributed = dist.world_size > 1;
  const int64_t rank = dist.rank, world = dist.world_size;
  ModelInputs in;
  // "{rank}" in --data names each rank's own file of rows.
  const std::string& model_path = settings.model_path;
  std::string& data_path = in.data_path;
  data_path = settings.data_path;
  in.per_rank_data = data_path.find("{rank}") != std::string::npos;
  for (size_t at = data_path.find("{rank}"); at != std::string::npos; at = data_path.find("{rank}"))
    data_path.replace(at, 6, std::to_string(rank));
  in.model_text = read_text(model_path, "--model");
  in.data_text = read_text(data_path, "--data");
  model::Data data = model::parse_data(in.data_text, data_path);
  in.data_names = data.names();
  if (settings.stan) {
    auto stan = std::make_unique<model::StanModel>(model::parse_stan(in.model_text, model_path), std::move(data),
                                                   settings.seed, model::StanOptions{settings.stan_evaluator});
    if (distributed) split_stan_rows(settings, *stan, in);
    in.rows = stan.get();
    in.model = std::move(stan);
    return in;
  }
  in.model = program_model(model::parse_program(in.model_text, model_path), std::move(data), in);
  if (distributed && !in.per_rank_data) {
    // Contiguous blocks of rows, as even as N allows.
    const int64_t N = in.program->num_rows();
    if (N < world)
      throw InputError("--data " + data_path + ": " + std::to_string(N) + " data rows cannot be split between " +
                       std::to_string(world) + " ranks");
    model::Data shard;
    try {
      shard = in.program->data_rows(N * rank / world, N * (rank + 1) / world);
    } catch (const std::invalid_argument& e) {
      throw InputError("--model " + model_path + ": " + e.what());
    }
    // Pathfinder on the whole data (then the whole data is let go).
    in.whole_data_start = whole_data_start(settings, *in.model, in.program->observed_names());
    in.model = program_model(model::parse_program(in.model_text, model_path), std::move(shard), in);
  }
  if (distributed) {
    if (in.per_rank_data) {
      try {  // the same refusals as for rows cut from one file
        in.program->check_rows_can_split();
      } catch (const std::invalid_argument& e) {
        throw InputError("--model " + model_path + ": " + e.what());
      }
    }
    in.program->set_row_weight(static_cast<double>(world));
  }
  return in;
}

void read_init_values(Settings& settings) {
  if (!settings.init_file) return;
  const std::string& init_path = *settings.init_file;
  const model::Data init = model::parse_data(read_text(init_path, "--init-file"), init_path);
  for (const auto& name : init.names()) settings.fit.init.values[name] = init.get(name);
}

void build_fit(const Settings& settings, ModelInputs& inputs, PluginManager& plugins, FitSession& session) {
  const RendezvousOptions& dist = settings.dist;
  const bool distributed = dist.world_size > 1;
  const int64_t rank = dist.rank, world = dist.world_size;
  const std::string& family = settings.family;
  Model& model = *inputs.model;
  model::ProgramModel* program = inputs.program;
  model::DataRows* rows = inputs.rows;
  // The steps' freed temporaries stay in the heap for the next step (heap.hpp).
  spdlog::debug("heap: {}", to_string(keep_freed_memory()));

  session.guide = plugins.create(family, model, program ? program->observed_names() : std::vector<std::string>{},
                                 settings.guide_options);
  // The minibatch stream: each rank its own (rank 0's is the single process's).
  session.rows = at::detail::createCPUGenerator(settings.seed ^ 0x5eedba7cULL ^ (0x9e3779b97f4a7c15ULL * rank));
  const int64_t batch = settings.batch_size;
  // The start (Pathfinder's L-BFGS) sees all the rows; the steps then see minibatches.
  // A model that cannot be subsampled is refused before any work.
  if (batch > 0) {
    rows->set_minibatch(batch, session.rows);
    rows->set_minibatch(rows->num_rows(), session.rows);
  }
  FitOptions options = settings.fit;
  if (inputs.whole_data_start) options.init.given = *inputs.whole_data_start;
  Fit& fit = session.fit.emplace(model, *session.guide, options);
  if (!settings.resume) spdlog::info("init: {}", fit.result().init);
  if (batch > 0) rows->set_minibatch(batch, session.rows);
  if (fit.direct_steps()) spdlog::debug("steps: direct (docs/performance.md#the-direct-step)");
  else spdlog::debug("steps: autograd: {}", fit.autograd_because());
  if (batch > 0) fit.track_generator("rows", session.rows);

  std::string data_fingerprint = fingerprint(inputs.data_text);
  if (distributed) {
    // What every rank must agree on. Per-rank files differ by design: their
    // variables must match, and the checkpoint records all of them.
    std::string data_layout = data_fingerprint;
    if (inputs.per_rank_data) {
      data_layout = "per-rank files with";
      for (const auto& name : inputs.data_names) data_layout += " " + name;
    }
    session.comm = rendezvous(dist, {{"model", fingerprint(inputs.model_text)},
                                     {"data", data_layout},
                                     {"guide family", family},
                                     {"guide options", settings.guide_options_text},
                                     {"settings", fingerprint(settings.trajectory)},
                                     {"world size", std::to_string(world)},
                                     {"vguide version", VGUIDE_SDK_VERSION}});
    spdlog::info("rank {} of {} joined at {}:{}; rows {} of this rank", rank, world, dist.master_addr,
                 dist.master_port, rows->num_rows());
    if (inputs.per_rank_data) {
      std::string all;
      for (const auto& f : all_gather(*session.comm, data_fingerprint, "the data fingerprints")) all += f;
      data_fingerprint = fingerprint(all);
    }
    try {
      fit.distribute(session.comm);
    } catch (const std::invalid_argument& e) {
      throw UsageError(e.what());
    }
  }

  session.fingerprints = {{"model", fingerprint(inputs.model_text)},
                          {"data", data_fingerprint},
                          {"guide family", family},
                          {"guide options", settings.guide_options_text},
                          {"settings", fingerprint(settings.trajectory)}};
  if (settings.resume) {
    try {
      fit.load_checkpoint((*settings.resume / "checkpoint.pt").string(), session.fingerprints);
    } catch (const CheckpointError& e) {
      throw InputError(std::string("--resume: ") + e.what());
    }
    if (fit.steps_done() > settings.fit.steps)
      throw UsageError("--resume: the checkpoint has " + std::to_string(fit.steps_done()) +
                       " steps done, more than --steps " + std::to_string(settings.fit.steps));
    spdlog::info("resuming {} at step {}", settings.resume->string(), fit.steps_done());
  }
}

void finish_fit(const Settings& settings, ModelInputs& inputs, FitSession& session, const FitResult& result) {
  Fit& fit = *session.fit;
  // The checkpoint keeps the state to continue training from and, once after_fit has
  // run, the fitted guide to draw from (Fit::save_checkpoint).
  if (settings.batch_size > 0)  // outputs score the full data
    inputs.rows->set_minibatch(inputs.rows->num_rows(), session.rows);
  if (result.reason != StopReason::non_finite) fit.finish();
  fit.save_checkpoint(checkpoint_path(settings), session.fingerprints);
  for (const auto& [key, value] : session.guide->diagnostics()) spdlog::info("{} = {}", key, value);
}

std::string checkpoint_path(const Settings& settings) { return (settings.output / "checkpoint.pt").string(); }

}  // namespace vguide::host
