#pragma once
// The fused log joint (internal to the model front-end): the latent-dependent part
// of a program compiled into a tape of small kernels over double buffers, evaluated
// with its gradient in plain loops, and handed to LibTorch as a single autograd
// node. On small models LibTorch's per-op dispatch, not arithmetic, is the cost of
// the log joint; this path issues no LibTorch op per program term. ProgramModel
// builds the tape (program_model.cpp) and falls back to its LibTorch-op path for
// anything the tape does not support (docs/performance.md).
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace vguide::model::fused {

enum class Op : uint8_t {
  constant,  // values, no particle dim
  latent,    // input `latent`
  // elementwise in one argument
  neg, exp, log, sigmoid, softplus, abs, sqrt, log1p, expm1, tanh, logit,
  sum,    // over the own dims
  index,  // a's first own dim gathered at `positions`
  // two arguments, numpy broadcasting of the own dims
  add, sub, mul, div, pow,
  dot,  // broadcast product summed over the last own dim
  collect,  // each element read from any earlier node (`sources`, `map_a`) or a constant
  density,  // a family's log density of `sources` (value, params), summed over the last dim
};

/// The scalar families the tape evaluates (their log densities and derivatives
/// mirror framework/src/model/*_families.cpp).
enum class Family : uint8_t {
  normal, half_normal, log_normal, cauchy, half_cauchy, student_t, laplace, exponential, gamma, inverse_gamma,
  beta, uniform, bernoulli, bernoulli_logit, poisson, poisson_log,
};

/// The family of that name, if the tape supports it.
bool family_of(const std::string& name, Family* family);
/// The unary Op of an expression function ("exp", "inv_logit", "sum", ...), if supported.
bool function_of(const std::string& name, Op* op);

/// A program's log joint as a list of nodes and density terms. Every node but a
/// constant has one value per particle. Built once; evaluated from any thread.
class Tape {
 public:
  /// A constant of `own` dims (no particle dim); its values are copied as double.
  int constant(const at::Tensor& own);
  /// Latent number `k` (in the order of the inputs), one value of `shape` per particle.
  int latent(int k, const std::vector<int64_t>& shape);
  /// Each returns the new node, or -1 if the shapes do not fit the op.
  int unary(Op op, int a);
  int binary(Op op, int a, int b);
  /// a[positions] over a's first own dim: positions are 0-based, of shape `index_shape`.
  int index(int a, const std::vector<int64_t>& positions, const std::vector<int64_t>& index_shape);
  /// Adds log family(value | params) summed over the broadcast own dims. False if
  /// the shapes do not broadcast or the parameter count is wrong. A `rows` term (an
  /// observed site of the data rows) is scaled by evaluate's `row_weight`.
  bool term(Family family, int value, const std::vector<int>& params, bool rows = false);
  /// Adds `scale` times the sum of a node's elements.
  bool sum_term(int node, double scale = 1.0);
  /// A particle for which an element of `node` is NaN gets a log joint of -inf and
  /// no gradient (Stan's rejection of a draw whose transformed parameter is undefined).
  bool reject_if_nan(int node);
  /// A node of `shape` whose element j is element `offsets[j]` of node `sources[j]`,
  /// or `constants[j]` where `sources[j]` is -1 (a gather over several nodes, for
  /// values assembled element by element). -1 if a source or offset does not exist.
  int collect(const std::vector<int>& sources, const std::vector<int64_t>& offsets, const std::vector<double>& constants,
              const std::vector<int64_t>& shape);

  /// New values for a constant node (`count` must be its numel), or new 0-based
  /// positions for an index node (as many as before): a minibatch's rows put into a tape compiled
  /// over other rows of the same count. False, with the node unchanged, if the node is
  /// not of that kind or a position is out of range.
  bool set_constant(int node, const double* values, int64_t count);
  bool set_positions(int node, const std::vector<int64_t>& positions);

  /// log family(value | params) as a node: the arguments broadcast, then summed over
  /// the last dim of that shape (a `normal_lpdf(y | mu, sigma)` used in an expression).
  int density(Family family, int value, const std::vector<int>& params);

  /// The tape's size, to undo what a failed attempt recorded (`rewind`).
  struct Mark {
    size_t nodes = 0, terms = 0, sums = 0, guards = 0;
    int64_t work = 0;
  };
  Mark mark() const { return {nodes_.size(), terms_.size(), sums_.size(), guards_.size(), work_}; }
  void rewind(const Mark& m);
  size_t num_nodes() const noexcept { return nodes_.size(); }
  bool empty() const noexcept { return terms_.empty() && sums_.empty(); }

  const std::vector<int64_t>& shape(int node) const { return nodes_.at(static_cast<size_t>(node)).shape; }
  int num_latents() const noexcept { return num_latents_; }
  /// Elements computed per particle (nodes and terms): what a step costs.
  int64_t work() const noexcept { return work_; }

  /// The log joint (S,) of the latents (`latents[k]`: S * numel(shape k) contiguous
  /// doubles), and if `grads` is given, its gradient with respect to each latent
  /// (same layout) added into `(*grads)[k]`. The rows' terms count `row_weight`
  /// times (a rank's block of a data-parallel fit).
  void evaluate(int64_t S, const std::vector<const double*>& latents, double* log_joint,
                const std::vector<double*>* grads, double row_weight = 1.0) const;

  struct Node {
    Op op = Op::constant;
    int a = -1, b = -1;
    std::vector<int64_t> shape;  // own dims
    int64_t numel = 1;
    std::vector<double> values;  // constant
    int latent = -1;
    // Where each output element reads its arguments (offsets into one particle's
    // own elements); empty when the argument has the output's shape. For dot and
    // the terms they run over the broadcast shape, whose last dim (dot) is summed.
    std::vector<int64_t> map_a, map_b;
    int64_t inner = 1;  // dot: the length of the summed dim
    std::vector<int> sources;  // collect: each element's node (-1: `values[j]`); density: value, params
    Family family = Family::normal;                // density
    std::vector<std::vector<int64_t>> arg_maps;  // density: each argument's broadcast map
  };
  struct Term {
    Family family;
    int value = -1;
    bool rows = false;
    std::vector<int> params;
    int64_t numel = 1;                       // broadcast elements
    std::vector<std::vector<int64_t>> maps;  // value, then params; empty = same shape
  };
  struct Sum {
    int node = -1;
    double scale = 1.0;
  };

 private:
  int add(Node node);
  void evaluate_block(int64_t S, const std::vector<const double*>& latents, double* log_joint,
                      const std::vector<double*>* grads, double row_weight) const;
  std::vector<Node> nodes_;
  std::vector<Term> terms_;
  std::vector<Sum> sums_;
  std::vector<int> guards_;  // reject_if_nan
  int num_latents_ = 0;
  int64_t work_ = 0;
};

/// Reference evaluation of the same log joint with LibTorch ops: latents -> (S,).
using Reference = std::function<at::Tensor(const std::vector<at::Tensor>&)>;

/// The tape's log joint of `latents` ((S, *shape k) each, float32 or float64, CPU)
/// as an (S,) tensor of `dtype`, recorded as one autograd node when grad mode is on
/// and a latent requires grad. The node's backward multiplies the gradient computed
/// with the value; when a graph of the gradient itself is asked for
/// (create_graph, e.g. a Hessian), it differentiates `reference` instead, so higher
/// derivatives are exact.
at::Tensor log_joint(const std::shared_ptr<const Tape>& tape, int64_t S, const std::vector<at::Tensor>& latents,
                     at::ScalarType dtype, Reference reference);

}  // namespace vguide::model::fused
