#pragma once
/// What minibatches and data-parallel fits need from a model front-end: a log joint
/// that sums over data rows, of which each evaluation may see a subset, scaled up.
/// ProgramModel (.qvr) and StanModel implement it; vguide-host drives either through
/// it (docs/cli.md, --batch-size and --world-size).
///
/// Example: model.set_minibatch(256, rows_stream);  // each log_joint: 256 rows, x N/256
#include <ATen/core/Generator.h>

#include <cstdint>

#include "vguide/export.hpp"

namespace vguide::model {

class VGUIDE_API DataRows {
 public:
  virtual ~DataRows();
  /// The rows the log joint covers (this rank's rows in a data-parallel fit).
  virtual int64_t num_rows() const = 0;
  /// Evaluate B < num_rows() random rows per log_joint call, drawn from `generator`,
  /// the row terms scaled by num_rows()/B. B == num_rows() restores full batches.
  /// @throw std::invalid_argument if B is out of [1, num_rows()] or the model's rows
  ///        cannot be subsampled, saying why.
  virtual void set_minibatch(int64_t batch_size, at::Generator generator) = 0;
  /// The current batch size (num_rows() when not subsampling).
  virtual int64_t batch_size() const = 0;
  /// Multiplies the row terms by `weight` (a data-parallel fit over W ranks sets W).
  /// @throw std::invalid_argument unless weight is finite and > 0.
  virtual void set_row_weight(double weight) = 0;
};

}  // namespace vguide::model
