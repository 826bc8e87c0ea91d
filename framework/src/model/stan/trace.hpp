#pragma once
// Compiling a Stan program's log joint to the fused evaluator's tape
// (../fused_log_joint.hpp). The interpreter runs transformed parameters and the
// model block once, for one particle, with a Tracer attached: every value that
// depends on the parameters carries the ids of the tape elements that hold it
// (Val::ids), every arithmetic step on such values records a tape node, and every
// `~` or `target +=` records a term. Indexing, slicing and element-wise writes only
// move ids, so a loop that fills a vector element by element costs one gather, not
// one node per element. Data-bounded loops and data conditions are resolved while
// tracing: the tape is the straight-line program of this data set. Anything the tape
// cannot express (a condition on parameters, a function outside the table below)
// aborts the trace and the model stays interpreted.
#include <ATen/core/Tensor.h>

#include <memory>
#include <string>
#include <vector>

#include "../fused_log_joint.hpp"
#include "library.hpp"

namespace vguide::model::stan {

/// The trace cannot go on; `why` says what stopped it. Deliberately not a
/// std::exception, so that no recovery path of the interpreter (a vectorised loop's
/// retry one iteration at a time) takes it for an ordinary failure.
struct TraceAbort {
  std::string why;
};

class Tracer {
 public:
  Tracer();

  const std::shared_ptr<fused::Tape>& tape() const { return tape_; }

  /// Parameter number k of `shape`: the ids of its value, shaped (1, *shape).
  at::Tensor latent(int k, const std::vector<int64_t>& shape);

  /// The node holding v's elements arranged as `shape` (v.t's numel): a constant
  /// for data, the node itself when v is one node's elements in order, else a gather.
  int node(const Val& v, const std::vector<int64_t>& shape);
  int node(const Val& v) { return node(v, v.t.sizes().vec()); }

  /// v with `f` applied to its value and to its ids alike (a view: select, narrow,
  /// transpose, reshape, expand, stack, ...).
  template <class F>
  static Val view(const Val& v, F f) {
    Val out{f(v.t), v.type, v.data_only};
    if (v.ids.defined()) out.ids = f(v.ids);
    return out;
  }
  /// The ids of v, or -1 (data) for every element when v does not depend on parameters.
  static at::Tensor ids_of(const Val& v);

  /// A value computed as `op` of node(s): `t` is what the interpreter computed, whose
  /// shape the new node takes.
  Val unary(fused::Op op, const Val& a, at::Tensor t, const Type& type);
  /// a and b of one rank (the interpreter lifts a scalar against a container first).
  Val binary(fused::Op op, const Val& a, const Val& b, at::Tensor t, const Type& type);
  /// A node that is already built, as a value of shape t.
  Val result(int node, at::Tensor t, const Type& type);

  /// target += the sum of v's elements (a constant for data). Inside a vectorised
  /// loop a value without a row per iteration counts once per iteration, as the
  /// interpreter counts it.
  void add_target(const Val& v);
  /// A particle for which an element of v is NaN is rejected (see Tape::reject_if_nan).
  void reject_if_nan(const Val& v);
  /// family(value | params) as a value (of `~`, or `normal_lpdf(...)` in an
  /// expression), whose interpreted value is t, (rows,); each argument flattened to
  /// (rows, K) as the library's elementwise densities take them.
  Val density(fused::Family family, const std::vector<Val>& args, at::Tensor t);

  /// Iterations of the vectorised loop being traced (0: none).
  int64_t rows = 0;

  /// A minibatch's tape takes the data rows as inputs: each row variable is a
  /// constant node refilled with every batch's rows (Tape::set_constant), and its
  /// uses are recorded like a parameter's rather than folded, since they change
  /// with the rows. A condition, size or bound on them aborts the trace, as one on
  /// a parameter does; an int row variable used as an index moves an index node
  /// whose positions are refilled too (index_by_rows).
  struct RowInput {
    std::string name;
    int node = -1;
  };
  /// Index node `node`'s positions are element `elements[j]` of input `input`'s
  /// node, minus 1.
  struct RowIndex {
    int node = -1;
    size_t input = 0;
    std::vector<int64_t> elements;
  };
  /// Names of the row variables to take as inputs (set before the interpreter starts).
  std::vector<std::string> row_variables;
  /// `data`, the value of row variable `name`, as an input.
  Val row_input(const std::string& name, const Val& data);
  /// The ids of `base` (value `base_t`, ids `base_ids` or undefined for data)
  /// indexed along dim 1 by `index`, an int read from a row input: the ids of an
  /// index node, shaped as the interpreter's result `out_t`.
  at::Tensor index_by_rows(const at::Tensor& base_t, const at::Tensor& base_ids, const Val& index,
                           const at::Tensor& positions, const at::Tensor& out_t);
  const std::vector<RowInput>& row_inputs() const { return row_inputs_; }
  const std::vector<RowIndex>& row_indexes() const { return row_indexes_; }

  [[noreturn]] static void abort(const std::string& why) { throw TraceAbort{why}; }

 private:
  double scale_for(int64_t leading) const { return rows > 0 && leading == 1 ? static_cast<double>(rows) : 1.0; }
  std::shared_ptr<fused::Tape> tape_;
  std::vector<RowInput> row_inputs_;
  std::vector<RowIndex> row_indexes_;
};

/// The tape's family for a Stan distribution's name, if it has one with Stan's
/// parameterisation (`double_exponential` is the tape's laplace, ...).
bool stan_family(const std::string& name, fused::Family* family);

/// Records builtin `name` of `args`, whose value the interpreter computed as `*out`,
/// and gives `*out` its ids; false if the tape has no recipe for it.
bool trace_builtin(Tracer& tracer, const std::string& name, const Builtin& builtin, const std::vector<Val>& args,
                   RunContext& context, Val* out);

/// Ids in the tape: (node << 32) | element.
inline int64_t tape_id(int node, int64_t element) { return (static_cast<int64_t>(node) << 32) | element; }

}  // namespace vguide::model::stan
