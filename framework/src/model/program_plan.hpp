#pragma once
// The compiled form of a program that ProgramModel evaluates (internal to
// libvguide): one StepPlan per step, the cache of constant tensors, and the entry
// points of the two evaluators over it: the reference evaluator with LibTorch ops
// (reference_evaluator.cpp) and the compiler to the fused tape (fused_compile.cpp,
// evaluated by fused_log_joint.cpp).
#include <ATen/ATen.h>

#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "fused_log_joint.hpp"
#include "vguide/model/distribution.hpp"
#include "vguide/model/program_model.hpp"

namespace vguide::model {

namespace detail {

/// Event rank of each parameter and of the value, for the families with event dims.
struct EventRanks {
  std::vector<int64_t> params;
  int64_t value = 0;
};

EventRanks event_ranks(const std::string& family, size_t num_params);

/// A value during evaluation: (S or 1, *own dims).
struct Value {
  at::Tensor t;
  bool rows = false;    // depends on data rows
  bool latent = false;  // depends on a latent
};

/// Inserts `k` size-1 dims after the particle dim.
at::Tensor pad(const at::Tensor& t, int64_t k);

/// Sum over every dim but the particle dim: (S or 1, ...) -> (S or 1).
at::Tensor sum_own(const at::Tensor& t);

/// Largest declared site or data shape, in elements.
constexpr double kMaxSiteElements = 1e8;

/// An evaluation error at a known place in the source.
struct LocatedError : std::invalid_argument {
  LocatedError(const SourceLoc& where, const std::string& what) : std::invalid_argument(what), loc(where) {}
  SourceLoc loc;
};

bool has_slice(const Expr& e);

std::string shape_text(at::IntArrayRef shape);

}  // namespace detail

struct StepPlan {
  enum class Role { latent, observed, let, data, ret };
  const Step* step = nullptr;
  Role role = Role::let;
  at::Tensor data;  // observed / data: as loaded (N, ...)
  bool row_data = false;
  std::vector<int64_t> shape;     // latent: one draw's shape
  std::vector<int64_t> declared;  // latent: declared shape (extension), resolved
  bool per_row = false;
  bool from_value = false;  // observed: an earlier let/data value rather than a data variable
  bool in_support = false;  // observed: every row checked in its support, in double and in float32
  detail::EventRanks ranks;
};

/// Tensors that depend only on the program and its data (data arrays, numbers),
/// converted once per dtype and device instead of on every log_joint call. They
/// never require grad and are never written to.
class ConstantCache {
 public:
  at::Tensor get(const void* owner, const at::TensorOptions& opts, const std::function<at::Tensor()>& make) {
    const Key key{owner, static_cast<int>(opts.dtype().toScalarType()), static_cast<int>(opts.device().type()),
                  opts.device().index()};
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = entries_.find(key);
    if (it == entries_.end()) {
      at::NoGradGuard no_grad;
      it = entries_.emplace(key, make()).first;
    }
    return it->second;
  }

 private:
  using Key = std::tuple<const void*, int, int, int>;
  std::mutex mutex_;
  std::map<Key, at::Tensor> entries_;
};

struct ProgramModel::Plan {
  std::shared_ptr<const ProgramFile> file;  // what the steps point into
  std::vector<StepPlan> steps;
  ConstantCache constants;
  std::shared_ptr<const fused::Tape> tape;  // null if the program cannot be fused
  std::string unfused;                      // why not
};

namespace detail {

struct Context {
  at::TensorOptions opts;
  int64_t S = 1;
  at::Tensor index;  // minibatch rows, undefined for the full data
  bool check_indices = false;  // range-check integer indices (once, at construction)
  ConstantCache* constants = nullptr;  // unset while the constructor checks the program
  std::map<std::string, Value> env;
};

/// A data or observed step's tensor as a value: (1, N or B, ...).
Value data_value(const StepPlan& sp, const Context& ctx);

/// Evaluates an expression with LibTorch ops. @throw LocatedError for a bad index,
/// slice or argument.
Value eval(const Expr& e, Context& ctx);

/// The step's distribution with its arguments' batch dims padded to a common rank
/// (at least `value_batch_rank`).
std::shared_ptr<Distribution> build_dist(const StepPlan& sp, Context& ctx, int64_t value_batch_rank, bool validate,
                                         bool* rows = nullptr, bool* latent = nullptr);

/// log density of `value` (S or 1, *own dims) summed over its own dims; without the
/// support mask's ops if the value is known to be in the support.
at::Tensor site_log_prob(const Distribution& d, const at::Tensor& value, int64_t value_event_rank,
                         bool in_support = false);

// Chooses a latent's value when the program is run without given values (the
// prior init strategies): (sp, its prior given the earlier values) -> (1, *sp.shape).
using LatentPicker = std::function<at::Tensor(const StepPlan&, const Distribution&)>;
// Receives each site's log density term, (S,), in program order.
using TermSink = std::vector<std::pair<std::string, at::Tensor>>;

/// The reference evaluator: runs the steps in order with LibTorch ops and returns
/// the log joint (S,). Latents come from `values`, or from `pick` when set; `terms`
/// receives each site's term; row terms are scaled by row_weight * N / B.
at::Tensor run(const ProgramModel::Plan& plan, Context& ctx, const SiteValues& values, int64_t num_rows,
               int64_t batch_size, const LatentPicker* pick = nullptr, TermSink* terms = nullptr,
               double row_weight = 1.0);

/// A context for evaluating with the dtype and device of `x` over the plan's constants.
Context make_context(const at::Tensor& x, ProgramModel::Plan& plan);

/// A part of a minibatch's tape that depends on which rows were drawn: a constant's
/// values, or an index node's positions, that `ctx.index` changed when compiled.
struct RowRefill {
  bool positions = false;  // an index node's positions (1-based in the data), else a constant's values
  int node = -1;
  const Expr* expr = nullptr;          // evaluated on the drawn rows, or
  const StepPlan* observed = nullptr;  // an observed step's value
  /// When the value is a data array's rows as they are (the common case), that
  /// array (N, row size) in double, so that a batch is gathered in a loop.
  at::Tensor rows_of;
};

/// The latent-dependent part of the program as a fused tape (fused_log_joint.hpp).
/// `ctx` is an evaluation of the program (S = 1, double, every name bound): each
/// value that does not depend on a latent is folded into a constant evaluated here
/// once with the reference path, so that only latent-dependent expressions become
/// tape nodes. With `ctx.index` set (a minibatch), `refills` receives what depends on
/// the rows. Returns null, with the reason in `why`, at the first thing the tape
/// does not support.
std::shared_ptr<fused::Tape> compile_fused(const ProgramModel::Plan& plan, Context& ctx, std::string& why,
                                           std::vector<RowRefill>* refills = nullptr);

}  // namespace detail

/// The tape of a minibatch of B rows (the direct step's, docs/performance.md):
/// compiled once over B rows, then given each batch's rows (RowRefill) before it
/// is evaluated. The rows' values are gathered in loops when they are data arrays
/// as they are; anything else computed from the rows is evaluated with the
/// reference path on the drawn rows, as log_joint evaluates it.
struct ProgramModel::BatchTape {
  std::mutex mutex;
  bool tried = false;
  std::shared_ptr<fused::Tape> tape;  // null: the batch is not compiled (`why`)
  std::string why;
  std::vector<detail::RowRefill> refills;
  /// What the refills that are not a data array's rows are evaluated over: the
  /// values that do not depend on a latent or on the rows, as compiled, and the steps
  /// (data, lets of data only, observed sites) that depend on the rows, in program
  /// order, replayed on the drawn rows.
  std::map<std::string, detail::Value> fixed;
  std::vector<const StepPlan*> row_steps;
  bool evaluates = false;  // some refill needs data_steps
  std::vector<double> scratch;
  std::vector<int64_t> positions;
};

}  // namespace vguide::model
