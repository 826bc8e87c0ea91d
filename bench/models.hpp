#pragma once
/// The suite's models, written as `.qvr` programs and bound to data through the
/// public model front-end, as a user of vguide-host would. Generated data come from
/// fixed seeds, so every run times the same problem.
///
/// Example: auto md = vguide::bench::make_model_data({ModelKind::logistic, 5000, 20}, VGUIDE_SOURCE_DIR);
///          vguide::model::ProgramModel model(md.program, md.data);
#include <cstdint>
#include <string>

#include "vguide/model/data.hpp"
#include "vguide/model/program.hpp"

namespace vguide::bench {

enum class ModelKind {
  eight_schools,  ///< examples/models/eight_schools.{qvr,json}; 10 latent coordinates
  logistic,       ///< examples/models/logistic_regression.qvr; N rows, P predictors; D = P + 1
  normal_means,   ///< bench/models/normal_means.qvr; K means, N rows of K observations; D = K
};

struct ModelSpec {
  ModelKind kind = ModelKind::eight_schools;
  int64_t rows = 0;  ///< N (eight schools: ignored, the example's 8)
  int64_t size = 0;  ///< logistic: P; normal_means: K (eight schools: ignored)

  std::string name() const;
  /// A key for caching generated data: "logistic/N=5000/P=20".
  std::string key() const;
};

/// A program and the data it is bound to, as separate values: the baseline reads
/// the same data the framework's ProgramModel gets.
struct ModelData {
  model::ProgramFile program;
  model::Data data;
};

/// Reads the program (and, for eight schools, the data) under `source_dir`; generates
/// the data of the other models from fixed seeds, with the dtypes `load_data` gives
/// (double for reals, int64 for counts and sizes).
/// @throw model::ProgramError, model::DataError if a file is missing or bad.
ModelData make_model_data(const ModelSpec& spec, const std::string& source_dir);

}  // namespace vguide::bench
