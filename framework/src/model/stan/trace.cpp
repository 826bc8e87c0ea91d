#include "trace.hpp"

#include <ATen/ATen.h>

#include <utility>

namespace vguide::model::stan {

namespace {

constexpr int64_t kElementMask = (int64_t{1} << 32) - 1;
// Past this many nodes (loops unrolled over long data) tracing costs seconds and
// the interpreter's vectorised kernels are the better choice.
constexpr size_t kMaxNodes = 20'000;

std::vector<int64_t> shape_of(const at::Tensor& t) { return t.sizes().vec(); }

}  // namespace

Tracer::Tracer() : tape_(std::make_shared<fused::Tape>()) {}

at::Tensor Tracer::latent(int k, const std::vector<int64_t>& shape) {
  std::vector<int64_t> own{1};
  own.insert(own.end(), shape.begin(), shape.end());
  const int node = tape_->latent(k, own);
  int64_t numel = 1;
  for (int64_t n : own) numel *= n;
  return (at::arange(numel, at::kLong) + tape_id(node, 0)).reshape(own);
}

at::Tensor Tracer::ids_of(const Val& v) {
  if (v.ids.defined()) return v.ids;
  return at::full(v.t.sizes(), -1, at::kLong);
}

int Tracer::node(const Val& v, const std::vector<int64_t>& shape) {
  if (tape_->num_nodes() >= kMaxNodes)
    abort("the compiled program would have more than " + std::to_string(kMaxNodes) + " steps");
  if (!v.ids.defined()) {
    if (!v.data_only) abort("a value that depends on parameters was computed outside the traced operations");
    return tape_->constant(v.t.reshape(shape));
  }
  const at::Tensor ids = v.ids.reshape({-1}).contiguous();
  const int64_t* p = ids.data_ptr<int64_t>();
  const int64_t n = ids.numel();
  if (n > 0 && p[0] >= 0 && (p[0] & kElementMask) == 0) {
    const int first = static_cast<int>(p[0] >> 32);
    bool in_order = tape_->shape(first) == shape;
    for (int64_t j = 0; in_order && j < n; ++j) in_order = p[j] == tape_id(first, j);
    if (in_order) return first;
  }
  const at::Tensor values = v.t.to(at::kDouble).reshape({-1}).contiguous();
  const double* x = values.data_ptr<double>();
  std::vector<int> sources(static_cast<size_t>(n));
  std::vector<int64_t> offsets(static_cast<size_t>(n));
  std::vector<double> constants(static_cast<size_t>(n), 0.0);
  for (int64_t j = 0; j < n; ++j) {
    const size_t k = static_cast<size_t>(j);
    if (p[j] < 0) {
      sources[k] = -1;
      constants[k] = x[j];
    } else {
      sources[k] = static_cast<int>(p[j] >> 32);
      offsets[k] = p[j] & kElementMask;
    }
  }
  const int out = tape_->collect(sources, offsets, constants, shape);
  if (out < 0) abort("a gather of elements the tape does not hold");
  return out;
}

Val Tracer::row_input(const std::string& name, const Val& data) {
  const int node = tape_->constant(data.t);
  row_inputs_.push_back({name, node});
  Val out{data.t, data.type, false};
  out.ids = (at::arange(data.t.numel(), at::kLong) + tape_id(node, 0)).reshape(data.t.sizes());
  return out;
}

at::Tensor Tracer::index_by_rows(const at::Tensor& base_t, const at::Tensor& base_ids, const Val& index,
                                 const at::Tensor& positions, const at::Tensor& out_t) {
  if (base_t.size(0) != 1) abort("an index read from the rows into a value that differs by row");
  // Every element of the index must be an element of one row input, as it is.
  const at::Tensor ids = index.ids.reshape({-1}).contiguous();
  const int64_t* p = ids.data_ptr<int64_t>();
  const int64_t n = ids.numel();
  size_t input = row_inputs_.size();
  std::vector<int64_t> elements(static_cast<size_t>(n));
  for (int64_t j = 0; j < n; ++j) {
    const int source = p[j] < 0 ? -1 : static_cast<int>(p[j] >> 32);
    size_t k = 0;
    while (k < row_inputs_.size() && row_inputs_[k].node != source) ++k;
    if (k == row_inputs_.size() || (input != row_inputs_.size() && k != input))
      abort("an index computed from the rows or from parameters");
    input = k;
    elements[static_cast<size_t>(j)] = p[j] & kElementMask;
  }
  if (n == 0) abort("an empty index read from the rows");
  const std::vector<int64_t> own(base_t.sizes().begin() + 1, base_t.sizes().end());
  Val base{base_t, Type{Base::real, 0}, !base_ids.defined()};
  base.ids = base_ids;
  const at::Tensor flat = positions.reshape({-1}).contiguous();
  const std::vector<int64_t> at(flat.data_ptr<int64_t>(), flat.data_ptr<int64_t>() + flat.numel());
  const int node = tape_->index(this->node(base, own), at, {flat.numel()});
  if (node < 0) abort("an index read from the rows that the tape cannot hold");
  row_indexes_.push_back({node, input, std::move(elements)});
  const Val out = result(node, out_t, Type{Base::real, 0});
  return out.ids;
}

Val Tracer::result(int node, at::Tensor t, const Type& type) {
  if (node < 0) abort("shapes the tape cannot combine");
  int64_t numel = 1;
  for (int64_t d : tape_->shape(node)) numel *= d;
  if (numel != t.numel()) abort("a result whose size differs from the tape's");
  Val out{std::move(t), type, false};
  out.ids = (at::arange(numel, at::kLong) + tape_id(node, 0)).reshape(out.t.sizes());
  return out;
}

Val Tracer::unary(fused::Op op, const Val& a, at::Tensor t, const Type& type) {
  return result(tape_->unary(op, node(a)), std::move(t), type);
}

Val Tracer::binary(fused::Op op, const Val& a, const Val& b, at::Tensor t, const Type& type) {
  const int n = tape_->binary(op, node(a), node(b));
  if (n < 0 || tape_->shape(n) != shape_of(t)) abort("shapes the tape cannot combine");
  return result(n, std::move(t), type);
}

void Tracer::add_target(const Val& v) {
  const int64_t leading = v.t.dim() == 0 ? 1 : v.t.size(0);
  if (!tape_->sum_term(node(v), scale_for(leading))) abort("a target term the tape cannot hold");
}

void Tracer::reject_if_nan(const Val& v) {
  if (!v.ids.defined()) return;  // data: its NaNs are known now
  if (!tape_->reject_if_nan(node(v))) abort("a check the tape cannot hold");
}

Val Tracer::density(fused::Family family, const std::vector<Val>& args, at::Tensor t) {
  std::vector<int> nodes;
  for (const Val& a : args)
    nodes.push_back(node(view(a, [](const at::Tensor& v) { return v.dim() == 1 ? v.unsqueeze(1) : v.flatten(1); })));
  const std::vector<int> params(nodes.begin() + 1, nodes.end());
  return result(tape_->density(family, nodes[0], params), std::move(t), Type{Base::real, 0});
}

namespace {

using fused::Op;

Val ones_like_rank(const Val& a, double value) {
  return {at::full(std::vector<int64_t>(static_cast<size_t>(a.t.dim()), 1), value, at::kDouble), Type{Base::real, 0}, true};
}

// (rows, K): every dim but the first flattened, as the reductions take them.
Val rows_flat(const Val& v) {
  return Tracer::view(v, [](const at::Tensor& t) { return t.dim() == 1 ? t.unsqueeze(1) : t.flatten(1); });
}

// The functions that only move elements (and fill zeros): run on the ids instead of
// the values, they give the result's ids. Ids travel as double id + 1 (exact below
// 2^53), so a filled zero reads as data.
bool moves_elements(const std::string& name) {
  static const char* const kNames[] = {"to_vector", "to_row_vector", "to_matrix",  "to_array_1d", "head",
                                       "tail",      "segment",       "block",      "col",         "row",
                                       "append_row", "append_col",   "rep_vector", "rep_row_vector", "rep_array",
                                       "rep_matrix", "reverse",      "diag_matrix", "to_array_2d"};
  for (const char* n : kNames)
    if (name == n) return true;
  return false;
}

}  // namespace

bool stan_family(const std::string& name, fused::Family* family) {
  using F = fused::Family;
  static const std::vector<std::pair<const char*, F>> kTable = {
      {"normal", F::normal},         {"std_normal", F::normal},       {"student_t", F::student_t},
      {"cauchy", F::cauchy},         {"double_exponential", F::laplace}, {"lognormal", F::log_normal},
      {"gamma", F::gamma},           {"inv_gamma", F::inverse_gamma}, {"exponential", F::exponential},
      {"beta", F::beta},             {"uniform", F::uniform},         {"bernoulli", F::bernoulli},
      {"bernoulli_logit", F::bernoulli_logit}, {"poisson", F::poisson}, {"poisson_log", F::poisson_log},
  };
  for (const auto& [n, f] : kTable)
    if (name == n) {
      *family = f;
      return true;
    }
  return false;
}

bool trace_builtin(Tracer& tracer, const std::string& name, const Builtin& builtin, const std::vector<Val>& args,
                   RunContext& context, Val* out) {
  static const std::vector<std::pair<const char*, Op>> kUnary = {
      {"exp", Op::exp},     {"log", Op::log},           {"sqrt", Op::sqrt},   {"log1p", Op::log1p},
      {"expm1", Op::expm1}, {"inv_logit", Op::sigmoid}, {"logit", Op::logit}, {"fabs", Op::abs},
      {"abs", Op::abs},     {"tanh", Op::tanh},         {"log1p_exp", Op::softplus},
  };
  const Type type = out->type;
  const at::Tensor t = out->t;
  for (const auto& [n, op] : kUnary)
    if (name == n) {
      *out = tracer.unary(op, args[0], t, type);
      return true;
    }
  const Val& a = args[0];
  const auto neg = [&](const Val& v) { return tracer.unary(Op::neg, v, -v.t, v.type); };
  if (name == "square") {
    *out = tracer.binary(Op::mul, a, a, t, type);
  } else if (name == "inv") {
    *out = tracer.binary(Op::div, ones_like_rank(a, 1.0), a, t, type);
  } else if (name == "inv_sqrt") {
    *out = tracer.binary(Op::div, ones_like_rank(a, 1.0), tracer.unary(Op::sqrt, a, at::sqrt(a.t), type), t, type);
  } else if (name == "log1m") {
    *out = tracer.unary(Op::log1p, neg(a), t, type);
  } else if (name == "log1m_inv_logit") {
    const Val sp = tracer.unary(Op::softplus, a, at::softplus(a.t), type);
    *out = tracer.unary(Op::neg, sp, t, type);
  } else if (name == "log_inv_logit") {
    const Val m = neg(a);
    const Val sp = tracer.unary(Op::softplus, m, at::softplus(m.t), type);
    *out = tracer.unary(Op::neg, sp, t, type);
  } else if (name == "pow" && args.size() == 2) {
    Val x = a, y = args[1];
    const int64_t dims = std::max(x.t.dim(), y.t.dim());
    x = Tracer::view(x, [&](const at::Tensor& v) { return lift(v, dims); });
    y = Tracer::view(y, [&](const at::Tensor& v) { return lift(v, dims); });
    *out = tracer.binary(Op::pow, x, y, t, type);
  } else if ((name == "sum" || name == "mean") && args.size() == 1) {
    const Val f = rows_flat(a);
    const int64_t K = f.t.size(1);
    if (K == 0) return false;
    const double w = name == "sum" ? 1.0 : 1.0 / static_cast<double>(K);
    const Val weights{at::full({K}, w, at::kDouble), Type{Base::vector, 0}, true};
    *out = tracer.binary(Op::dot, f, weights, t, type);
  } else if ((name == "dot_product" || name == "dot_self") && !args.empty()) {
    const Val x = rows_flat(a), y = rows_flat(name == "dot_self" ? a : args[1]);
    if (x.t.size(1) == 0) return false;
    *out = tracer.binary(Op::dot, x, y, t, type);
  } else if (moves_elements(name)) {
    // The first argument holds values (both of append_row's and append_col's); the
    // rest are sizes and positions, passed as they are.
    const size_t values = name == "append_row" || name == "append_col" ? 2 : 1;
    std::vector<Val> id_args(args);
    for (size_t i = 0; i < values && i < args.size(); ++i)
      id_args[i] = Val{(Tracer::ids_of(args[i]) + 1).to(at::kDouble), args[i].type, true};
    RunContext double_context = context;
    double_context.dtype = at::kDouble;
    Val moved;
    try {
      moved = builtin.run(id_args, double_context);
    } catch (const std::exception&) {
      return false;
    }
    if (moved.t.sizes() != t.sizes() || !moved.t.is_floating_point()) return false;
    out->ids = at::round(moved.t).to(at::kLong) - 1;
    out->data_only = false;
  } else {
    return false;
  }
  return true;
}

}  // namespace vguide::model::stan
