// ProgramModel: evaluates the program IR with LibTorch ops (the reference path).
#include "vguide/model/program_model.hpp"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <c10/util/Exception.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <map>
#include <mutex>
#include <sstream>
#include <tuple>
#include <unordered_set>

#include "fused_log_joint.hpp"
#include "vguide/model/distribution.hpp"

namespace vguide::model {

namespace {

/// Event rank of each parameter and of the value, for the families with event dims.
struct EventRanks {
  std::vector<int64_t> params;
  int64_t value = 0;
};

EventRanks event_ranks(const std::string& family, size_t num_params) {
  static const std::map<std::string, EventRanks> table = {
      {"Dirichlet", {{1}, 1}},
      {"MultivariateNormal", {{1, 2}, 1}},
      {"LowRankMVN", {{1, 2, 1}, 1}},
      {"Wishart", {{0, 2}, 2}},
      {"RelaxedOneHotCategorical", {{0, 1}, 1}},
      {"Categorical", {{1}, 0}},
      {"LKJCholesky", {{0, 0}, 2}},
  };
  auto it = table.find(family);
  if (it != table.end()) return it->second;
  return {std::vector<int64_t>(num_params, 0), 0};
}

/// A value during evaluation: (S or 1, *own dims).
struct Value {
  at::Tensor t;
  bool rows = false;    // depends on data rows
  bool latent = false;  // depends on a latent
};

/// Inserts `k` size-1 dims after the particle dim.
at::Tensor pad(const at::Tensor& t, int64_t k) {
  if (k <= 0) return t;
  std::vector<int64_t> shape{t.size(0)};
  shape.insert(shape.end(), static_cast<size_t>(k), 1);
  for (int64_t d = 1; d < t.dim(); ++d) shape.push_back(t.size(d));
  return t.reshape(shape);
}

/// Sum over every dim but the particle dim: (S or 1, ...) -> (S or 1).
at::Tensor sum_own(const at::Tensor& t) { return t.dim() <= 1 ? t : t.flatten(1).sum(1); }

/// Largest declared site or data shape, in elements.
constexpr double kMaxSiteElements = 1e8;

/// An evaluation error at a known place in the source.
struct LocatedError : std::invalid_argument {
  LocatedError(const SourceLoc& where, const std::string& what) : std::invalid_argument(what), loc(where) {}
  SourceLoc loc;
};

bool has_slice(const Expr& e) {
  if (e.kind == Expr::Kind::slice) return true;
  for (const Expr& a : e.args)
    if (has_slice(a)) return true;
  return false;
}

std::string shape_text(at::IntArrayRef shape) {
  return shape_to_string(std::vector<int64_t>(shape.begin(), shape.end()));
}

}  // namespace

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
  EventRanks ranks;
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

namespace {

struct Context {
  at::TensorOptions opts;
  int64_t S = 1;
  at::Tensor index;  // minibatch rows, undefined for the full data
  bool check_indices = false;  // range-check integer indices (once, at construction)
  ConstantCache* constants = nullptr;  // unset while the constructor checks the program
  std::map<std::string, Value> env;
};

Value data_value(const StepPlan& sp, const Context& ctx) {
  at::Tensor t = ctx.constants ? ctx.constants->get(&sp, ctx.opts, [&] { return sp.data.to(ctx.opts); })
                               : sp.data.to(ctx.opts);
  // Only the batch's rows are gathered: O(B) per call, whatever N is.
  if (sp.row_data && ctx.index.defined()) t = t.index_select(0, ctx.index);
  return {t.unsqueeze(0), sp.row_data, false};
}

at::Tensor number(const Expr& e, const Context& ctx) {
  if (!ctx.constants) return at::full({1}, e.value, ctx.opts);
  return ctx.constants->get(&e, ctx.opts, [&] { return at::full({1}, e.value, ctx.opts); });
}

Value combine(const Value& a, const Value& b, at::Tensor t) { return {std::move(t), a.rows || b.rows, a.latent || b.latent}; }

std::pair<at::Tensor, at::Tensor> align(const at::Tensor& a, const at::Tensor& b) {
  const int64_t r = std::max(a.dim(), b.dim());
  return {pad(a, r - a.dim()), pad(b, r - b.dim())};
}

/// dot(m, v) as one matrix product when `v` holds one vector per particle: m is
/// (Sm, n..., P), v is (Sv, 1..., P) (aligned). The broadcast product would build an
/// (S, n..., P) tensor and its gradient; a data matrix shared by the particles
/// (Sm = 1) becomes one (Sv, P) x (P, n) product. Undefined if the shapes are not of
/// this kind.
at::Tensor dot_as_matmul(const at::Tensor& m, const at::Tensor& v) {
  const int64_t r = m.dim(), P = m.size(-1);
  if (r < 3 || v.size(-1) != P || m.scalar_type() != v.scalar_type()) return at::Tensor();
  for (int64_t d = 1; d < r - 1; ++d)
    if (v.size(d) != 1) return at::Tensor();
  const int64_t Sm = m.size(0), Sv = v.size(0);
  if (Sm != Sv && Sm != 1 && Sv != 1) return at::Tensor();
  std::vector<int64_t> shape{std::max(Sm, Sv)};
  shape.insert(shape.end(), m.sizes().begin() + 1, m.sizes().end() - 1);
  const at::Tensor vectors = v.reshape({Sv, P});
  if (Sm == 1) return at::mm(vectors, m.reshape({-1, P}).t()).reshape(shape);
  if (Sv == 1) return at::mv(m.reshape({-1, P}), vectors.reshape({P})).reshape(shape);
  return at::bmm(m.reshape({Sm, -1, P}), vectors.unsqueeze(-1)).reshape(shape);
}

Value eval(const Expr& e, Context& ctx) {
  switch (e.kind) {
    case Expr::Kind::number: return {number(e, ctx), false, false};
    case Expr::Kind::name: return ctx.env.at(e.name);
    case Expr::Kind::negate: {
      Value v = eval(e.args[0], ctx);
      v.t = -v.t;
      return v;
    }
    case Expr::Kind::binary: {
      const Value a = eval(e.args[0], ctx), b = eval(e.args[1], ctx);
      auto [x, y] = align(a.t, b.t);
      switch (e.op) {
        case '+': return combine(a, b, x + y);
        case '-': return combine(a, b, x - y);
        case '*': return combine(a, b, x * y);
        default: return combine(a, b, x / y);
      }
    }
    case Expr::Kind::index: {
      const Value base = eval(e.args[0], ctx), idx = eval(e.args[1], ctx);
      if (base.t.dim() < 2)
        throw LocatedError(e.loc, "cannot index '" + to_string(e.args[0]) + "': it is a scalar");
      if (idx.latent)
        throw LocatedError(e.args[1].loc, "the index " + to_string(e.args[1]) + " depends on a latent; indices must be data");
      const at::Tensor own = idx.t.select(0, 0);
      const at::Tensor pos = own.to(at::kLong);
      const int64_t size = base.t.size(1);
      if (ctx.check_indices) {
        const at::Tensor ok = (pos.to(own.scalar_type()) == own).logical_and(pos >= 1).logical_and(pos <= size);
        if (!ok.all().item<bool>()) {
          const int64_t flat = ok.logical_not().reshape({-1}).nonzero()[0][0].item<int64_t>();
          std::ostringstream msg;
          msg << "index out of range: " << element_name(to_string(e.args[1]), own.sizes(), flat) << " is "
              << own.reshape({-1})[flat].item<double>() << ", but must be an integer in 1.." << size << " (the size of "
              << to_string(e.args[0]) << ")";
          throw LocatedError(e.args[1].loc, msg.str());
        }
      }
      std::vector<int64_t> shape{base.t.size(0)};
      shape.insert(shape.end(), own.sizes().begin(), own.sizes().end());
      shape.insert(shape.end(), base.t.sizes().begin() + 2, base.t.sizes().end());
      at::Tensor out = base.t.index_select(1, pos.reshape({-1}) - 1).reshape(shape);
      return {out, base.rows || idx.rows, base.latent};
    }
    case Expr::Kind::slice: {
      const Value base = eval(e.args[0], ctx), lo = eval(e.args[1], ctx), hi = eval(e.args[2], ctx);
      if (base.t.dim() < 2) throw LocatedError(e.loc, "cannot slice '" + to_string(e.args[0]) + "': it is a scalar");
      for (size_t k = 1; k <= 2; ++k) {
        const Value& b = k == 1 ? lo : hi;
        if (b.latent || b.t.numel() != 1)
          throw LocatedError(e.args[k].loc, "a slice bound must be a single number that does not depend on a latent");
      }
      const double l = lo.t.item<double>(), h = hi.t.item<double>();
      const int64_t size = base.t.size(1);
      if (!(l == std::floor(l) && h == std::floor(h) && l >= 1 && h <= static_cast<double>(size) && l <= h)) {
        std::ostringstream msg;
        msg << "slice out of range: " << to_string(e.args[0]) << "[" << l << ":" << h << "], but the bounds must be "
            << "integers with 1 <= lo <= hi <= " << size << " (the size of " << to_string(e.args[0]) << ")";
        throw LocatedError(e.loc, msg.str());
      }
      const auto start = static_cast<int64_t>(l) - 1, length = static_cast<int64_t>(h) - static_cast<int64_t>(l) + 1;
      return {base.t.narrow(1, start, length), base.rows, base.latent};
    }
    case Expr::Kind::call: {
      if (e.name == "cov_exp_quad") {
        // alpha^2 exp(-(x_i - x_j)^2 / (2 rho^2)) over the last dim of x.
        const Value x = eval(e.args[0], ctx), alpha = eval(e.args[1], ctx), rho = eval(e.args[2], ctx);
        if (x.t.dim() < 2) throw LocatedError(e.args[0].loc, "cov_exp_quad expects a vector of inputs, got a scalar");
        if (alpha.t.dim() != 1 || rho.t.dim() != 1)
          throw LocatedError(e.loc, "cov_exp_quad expects single numbers for alpha and rho");
        const at::Tensor d = x.t.unsqueeze(-1) - x.t.unsqueeze(-2);
        const int64_t extra = d.dim() - 1;
        const at::Tensor a = pad(alpha.t, extra), r = pad(rho.t, extra);
        const at::Tensor k = a * a * at::exp(-0.5 * d * d / (r * r));
        return {k, x.rows || alpha.rows || rho.rows, x.latent || alpha.latent || rho.latent};
      }
      if (e.args.size() == 2) {
        const Value a = eval(e.args[0], ctx), b = eval(e.args[1], ctx);
        auto [x, y] = align(a.t, b.t);
        if (e.name == "pow") return combine(a, b, at::pow(x, y));
        if (e.name == "add_diag") {
          if (a.t.dim() < 3 || a.t.size(-1) != a.t.size(-2))
            throw LocatedError(e.args[0].loc, "add_diag expects a square matrix, got shape " + shape_text(a.t.sizes().slice(1)));
          if (b.t.dim() != 1) throw LocatedError(e.args[1].loc, "add_diag expects a single number to add");
          const at::Tensor eye = at::eye(a.t.size(-1), a.t.options());
          return combine(a, b, a.t + pad(b.t, a.t.dim() - 1) * eye);
        }
        // dot
        if (x.dim() < 2) throw LocatedError(e.loc, "dot expects vectors, got two scalars");
        if (at::Tensor t = dot_as_matmul(x, y); t.defined()) return combine(a, b, t);
        if (at::Tensor t = dot_as_matmul(y, x); t.defined()) return combine(a, b, t);
        return combine(a, b, (x * y).sum(-1));
      }
      Value v = eval(e.args[0], ctx);
      const std::string& f = e.name;
      if (f == "exp") v.t = at::exp(v.t);
      else if (f == "log") v.t = at::log(v.t);
      else if (f == "sigmoid" || f == "inv_logit") v.t = at::sigmoid(v.t);
      else if (f == "softplus") v.t = at::softplus(v.t);
      else if (f == "abs") v.t = at::abs(v.t);
      else if (f == "sqrt") v.t = at::sqrt(v.t);
      else if (f == "log1p") v.t = at::log1p(v.t);
      else if (f == "expm1") v.t = at::expm1(v.t);
      else if (f == "tanh") v.t = at::tanh(v.t);
      else if (f == "logit") v.t = at::log(v.t) - at::log1p(-v.t);
      else if (f == "sum") v.t = sum_own(v.t);
      else if (f == "cholesky") {
        if (v.t.dim() < 3 || v.t.size(-1) != v.t.size(-2))
          throw LocatedError(e.loc, "cholesky expects a square matrix, got shape " + shape_text(v.t.sizes().slice(1)));
        v.t = at::linalg_cholesky(v.t);
      }
      else if (f == "log_sum_exp") {
        if (v.t.dim() < 2) throw LocatedError(e.loc, "log_sum_exp expects a vector, got a scalar");
        v.t = at::logsumexp(v.t, {-1});
      }
      else throw std::logic_error("unknown function " + f);
      return v;
    }
  }
  throw std::logic_error("bad expression");
}

/// The step's distribution with its arguments' batch dims padded to a common rank
/// (at least `value_batch_rank`).
std::shared_ptr<Distribution> build_dist(const StepPlan& sp, Context& ctx, int64_t value_batch_rank, bool validate,
                                         bool* rows = nullptr, bool* latent = nullptr) {
  std::vector<at::Tensor> args;
  int64_t R = value_batch_rank;
  for (size_t i = 0; i < sp.step->args.size(); ++i) {
    const Value v = eval(sp.step->args[i], ctx);
    if (rows) *rows = *rows || v.rows;
    if (latent) *latent = *latent || v.latent;
    const int64_t er = sp.ranks.params[i];
    if (v.t.dim() - er < 1) {
      const FamilyDoc* doc = find_family(sp.step->family);
      const std::string param = doc && i < doc->params.size() ? doc->params[i] : "argument " + std::to_string(i + 1);
      throw LocatedError(sp.step->args[i].loc, sp.step->family + ": " + param + " must be " +
                                                   (er == 1 ? "a vector" : "a matrix") + ", got " +
                                                   (v.t.dim() <= 1 ? std::string("a scalar") : "shape " + shape_text(v.t.sizes().slice(1))));
    }
    args.push_back(v.t);
    R = std::max(R, v.t.dim() - er);
  }
  for (size_t i = 0; i < args.size(); ++i) {
    const int64_t br = args[i].dim() - sp.ranks.params[i];
    if (br >= 1) args[i] = pad(args[i], R - br);
  }
  if (validate) {
    // Check the arguments without the particle dim, so that messages index the
    // value the user wrote ("scale[3]" for the third data row, "scale" for a number).
    std::vector<at::Tensor> own;
    for (size_t i = 0; i < args.size(); ++i)
      own.push_back(args[i].dim() - sp.ranks.params[i] >= 1 ? args[i].select(0, 0) : args[i]);
    make_distribution(sp.step->family, own, true);
  }
  return make_distribution(sp.step->family, args, false);
}

/// log density of `value` (S or 1, *own dims) summed over its own dims; without the
/// support mask's ops if the value is known to be in the support.
at::Tensor site_log_prob(const Distribution& d, const at::Tensor& value, int64_t value_event_rank,
                         bool in_support = false) {
  const int64_t br = value.dim() - value_event_rank;
  const int64_t want = static_cast<int64_t>(d.batch_shape().size());
  const at::Tensor v = br >= 1 ? pad(value, want - br) : value;
  return sum_own(in_support ? d.log_prob_in_support(v) : d.log_prob(v));
}

std::string format_number(double v) {
  std::ostringstream s;
  s << v;
  return s.str();
}

/// Per value, the most elements the fused tape takes: a larger program is data-heavy,
/// and LibTorch's vectorised kernels win there.
constexpr int64_t kFusedMaxElements = 1 << 14;

/// The latent-dependent part of the program as a fused tape (fused_log_joint.hpp).
/// `ctx` is the constructor's evaluation (S = 1, double, every name bound): each
/// value that does not depend on a latent is folded into a constant evaluated here
/// once with the reference path, so that only latent-dependent expressions become
/// tape nodes. Returns null, with the reason in `why`, at the first thing the tape
/// does not support.
std::shared_ptr<const fused::Tape> compile_fused(const ProgramModel::Plan& plan, Context& ctx, std::string& why) {
  auto tape = std::make_shared<fused::Tape>();
  std::map<std::string, int> nodes;  // latent-dependent names
  const auto fail = [&](const std::string& reason) {
    if (why.empty()) why = reason;
    return -1;
  };
  const auto own_shape = [](const at::Tensor& t) { return std::vector<int64_t>(t.sizes().begin() + 1, t.sizes().end()); };
  std::function<int(const Expr&)> compile = [&](const Expr& e) -> int {
    const Value v = eval(e, ctx);
    if (v.t.numel() > kFusedMaxElements)
      return fail("'" + to_string(e) + "' has more than " + std::to_string(kFusedMaxElements) + " elements");
    if (!v.latent) return tape->constant(v.t.select(0, 0));
    int id = -1;
    switch (e.kind) {
      case Expr::Kind::number: break;
      case Expr::Kind::name: {
        auto it = nodes.find(e.name);
        id = it == nodes.end() ? fail("name " + e.name) : it->second;
        break;
      }
      case Expr::Kind::negate: id = tape->unary(fused::Op::neg, compile(e.args[0])); break;
      case Expr::Kind::binary: {
        const fused::Op op = e.op == '+'   ? fused::Op::add
                             : e.op == '-' ? fused::Op::sub
                             : e.op == '*' ? fused::Op::mul
                                           : fused::Op::div;
        const int a = compile(e.args[0]), b = compile(e.args[1]);
        id = tape->binary(op, a, b);
        break;
      }
      case Expr::Kind::index: {
        const int a = compile(e.args[0]);
        const at::Tensor own = eval(e.args[1], ctx).t.select(0, 0);
        const at::Tensor pos = (own.to(at::kLong) - 1).contiguous().reshape({-1});
        id = tape->index(a, std::vector<int64_t>(pos.data_ptr<int64_t>(), pos.data_ptr<int64_t>() + pos.numel()),
                         own.sizes().vec());
        break;
      }
      case Expr::Kind::slice: return fail("a slice of a latent value");
      case Expr::Kind::call: {
        fused::Op op;
        if (e.args.size() == 2 && (e.name == "pow" || e.name == "dot")) {
          const int a = compile(e.args[0]), b = compile(e.args[1]);
          id = tape->binary(e.name == "pow" ? fused::Op::pow : fused::Op::dot, a, b);
        } else if (e.args.size() == 1 && fused::function_of(e.name, &op)) {
          id = tape->unary(op, compile(e.args[0]));
        } else {
          return fail("function " + e.name + " of a latent value");
        }
        break;
      }
    }
    if (id >= 0 && tape->shape(id) != own_shape(v.t)) return fail("the shape of '" + to_string(e) + "'");
    return id < 0 ? fail("'" + to_string(e) + "'") : id;
  };

  int latents = 0;
  for (const auto& sp : plan.steps) {
    const Step& step = *sp.step;
    if (sp.role == StepPlan::Role::let && ctx.env.at(step.name).latent) {
      const int id = compile(step.value);
      if (id < 0) return nullptr;
      nodes[step.name] = id;
    }
    if (sp.role != StepPlan::Role::observed && sp.role != StepPlan::Role::latent) continue;
    fused::Family family;
    if (!fused::family_of(step.family, &family)) {
      fail("family " + step.family);
      return nullptr;
    }
    std::vector<int> params;
    for (const Expr& arg : step.args) {
      params.push_back(compile(arg));
      if (params.back() < 0) return nullptr;
    }
    const Value& value = ctx.env.at(step.name);
    if (value.t.numel() > kFusedMaxElements) {
      fail("'" + step.name + "' has more than " + std::to_string(kFusedMaxElements) + " elements");
      return nullptr;
    }
    int id;
    if (sp.role == StepPlan::Role::observed) {
      id = tape->constant(value.t.select(0, 0));
    } else {
      if (find_family(step.family)->discrete) {
        fail("discrete latent '" + step.name + "'");
        return nullptr;
      }
      id = tape->latent(latents++, sp.shape);
      nodes[step.name] = id;
    }
    if (!tape->term(family, id, params)) {
      fail("the shapes of '" + step.name + "'");
      return nullptr;
    }
  }
  if (tape->work() > kFusedMaxElements) {
    fail("the program computes " + std::to_string(tape->work()) + " elements per particle (at most " +
         std::to_string(kFusedMaxElements) + " are fused)");
    return nullptr;
  }
  return tape;
}

}  // namespace

ProgramModel::~ProgramModel() = default;

ProgramModel::ProgramModel(ProgramFile file, Data data)
    : file_(std::make_shared<const ProgramFile>(std::move(file))),
      program_(&file_->output_program()),
      data_(std::move(data)),
      plan_(std::make_shared<Plan>()) {
  plan_->file = file_;
  // The data rows: the leading dim shared by every observed array.
  std::string first_rows;
  for (const auto& step : program_->steps) {
    if ((step.kind != Step::Kind::draw && step.kind != Step::Kind::observe) || !data_.contains(step.name)) continue;
    const at::Tensor& t = data_.get(step.name);
    if (t.dim() == 0) continue;
    if (first_rows.empty()) {
      first_rows = step.name;
      num_rows_ = t.size(0);
    } else if (t.size(0) != num_rows_) {
      data_.fail(step.name, " has " + std::to_string(t.size(0)) + " rows, but '" + first_rows + "' has " +
                                std::to_string(num_rows_) + " (observed arrays must agree in their number of rows N)");
    }
  }
  batch_size_ = num_rows_;

  // One evaluation with a particle drawn from the priors: shapes, constant
  // arguments and the support of every observation are checked here, once.
  Context ctx;
  ctx.opts = at::TensorOptions().dtype(at::kDouble);
  ctx.check_indices = true;
  at::Generator gen = at::detail::createCPUGenerator(0);
  // Declared sizes: literals, objects, or positive integer scalars of the data.
  auto resolve_shape = [&](const Step& step) {
    std::vector<int64_t> shape;
    for (const auto& dim : step.shape) {
      if (dim.name.empty()) {
        shape.push_back(dim.size);
        continue;
      }
      auto obj = file_->objects.find(dim.name);
      if (obj != file_->objects.end()) {
        shape.push_back(obj->second);
        continue;
      }
      const std::string where = "a size of '" + step.name + "' at line " + std::to_string(dim.loc.line);
      const at::Tensor& size = data_.get(dim.name, where);
      if (size.dim() != 0 || at::isFloatingType(size.scalar_type()) || size.item<int64_t>() < 1)
        data_.fail(dim.name, " must be a positive integer (it is " + where + ")");
      shape.push_back(size.item<int64_t>());
    }
    double elements = 1;
    for (int64_t d : shape) elements *= static_cast<double>(d);
    if (elements > kMaxSiteElements)
      throw ProgramError(*file_, step.name_loc,
                         "'" + step.name + "' is declared " + shape_to_string(shape) + ": more than " +
                             std::to_string(static_cast<int64_t>(kMaxSiteElements)) + " elements");
    return shape;
  };
  for (const auto& step : program_->steps) {
    StepPlan sp;
    sp.step = &step;
    try {
      switch (step.kind) {
        case Step::Kind::ret: sp.role = StepPlan::Role::ret; break;
        case Step::Kind::let: {
          sp.role = StepPlan::Role::let;
          ctx.env[step.name] = eval(step.value, ctx);
          sp.row_data = ctx.env[step.name].rows;
          break;
        }
        case Step::Kind::data: {
          sp.role = StepPlan::Role::data;
          sp.data = data_.get(step.name, "declared by 'data " + step.name + "' at line " + std::to_string(step.loc.line));
          const std::vector<int64_t> declared = resolve_shape(step);
          if (!step.shape.empty() && sp.data.sizes().vec() != declared)
            data_.fail(step.name, " has shape " + shape_text(sp.data.sizes()) + ", but the program declares " +
                                      shape_to_string(declared));
          sp.row_data = sp.data.dim() >= 1 && num_rows_ > 0 && sp.data.size(0) == num_rows_;
          ctx.env[step.name] = data_value(sp, ctx);
          break;
        }
        case Step::Kind::draw:
        case Step::Kind::observe: {
          sp.ranks = event_ranks(step.family, step.args.size());
          sp.declared = resolve_shape(step);
          sp.from_value = step.kind == Step::Kind::observe && ctx.env.count(step.name) != 0;
          if (sp.from_value || data_.contains(step.name)) {
            sp.role = StepPlan::Role::observed;
            if (sp.from_value) {
              const Value& v = ctx.env.at(step.name);
              if (v.latent)
                throw ProgramError(*file_, step.name_loc,
                                   "observe site '" + step.name + "' depends on a latent; only data can be observed");
              sp.data = v.t.select(0, 0);
              sp.row_data = v.rows;
            } else {
              sp.data = data_.get(step.name);
              sp.row_data = sp.data.dim() >= 1 && num_rows_ > 0;
            }
            if (!sp.declared.empty() && sp.data.sizes().vec() != sp.declared)
              data_.fail(step.name, " has shape " + shape_text(sp.data.sizes()) + ", but the program declares " +
                                        shape_to_string(sp.declared));
            const Value value = sp.from_value ? ctx.env.at(step.name) : data_value(sp, ctx);
            bool latent_args = false;
            auto dist = build_dist(sp, ctx, value.t.dim() - sp.ranks.value, true, nullptr, &latent_args);
            const int64_t vbr = value.t.dim() - sp.ranks.value;
            const at::Tensor padded = vbr >= 1 ? pad(value.t, static_cast<int64_t>(dist->batch_shape().size()) - vbr) : value.t;
            at::Tensor ok = latent_args && dist->dependent_support() ? dist->support().check(padded) : dist->in_support(padded);
            // Reduce to the observation's own batch dims (the trailing ones).
            std::vector<int64_t> own(sp.data.sizes().begin(), sp.data.sizes().end() - sp.ranks.value);
            const int64_t nb = static_cast<int64_t>(own.size());
            if (ok.dim() > nb) ok = ok.flatten(0, ok.dim() - nb - 1).all(0);
            if (!ok.all().item<bool>()) {
              const FamilyDoc* doc = find_family(step.family);
              const std::string support = doc ? doc->support : dist->support().to_string();
              if (ok.sizes().vec() == own) {
                const int64_t flat = ok.logical_not().reshape({-1}).nonzero()[0][0].item<int64_t>();
                std::string what = ": " + element_name(step.name, own, flat);
                if (sp.ranks.value == 0) {
                  const at::Tensor v = sp.data.reshape({-1})[flat];
                  what += " = " + (at::isFloatingType(v.scalar_type()) ? format_number(v.item<double>())
                                                                        : std::to_string(v.item<int64_t>()));
                }
                data_.fail(step.name, what + " is outside the support of " + step.family + " (" + support + ")");
              }
              data_.fail(step.name, " has values outside the support of " + step.family + " (" + support + ")");
            }
            // Support by the parameters' values, not only by the family: rows
            // checked here need no mask on every evaluation, as long as their
            // float32 rounding is in the support too.
            if (!(latent_args && dist->dependent_support()))
              sp.in_support = dist->in_support(padded.to(at::kFloat).to(padded.scalar_type())).all().item<bool>();
            site_log_prob(*dist, value.t, sp.ranks.value);
            SiteInfo info{step.name, sp.data.sizes().vec(), dist->support(), dist->discrete(), false};
            sites_.push_back(info);
            ctx.env[step.name] = value;
          } else {
            if (step.kind == Step::Kind::observe)
              throw ProgramError(*file_, step.name_loc,
                                 "observe site '" + step.name + "' has no data (expected a variable '" + step.name +
                                     "' in " + data_.filename() + ")");
            sp.role = StepPlan::Role::latent;
            const int64_t vbr = sp.declared.empty() ? 0 : 1 + static_cast<int64_t>(sp.declared.size());
            bool rows = false;
            auto dist = build_dist(sp, ctx, vbr, true, &rows);
            if (dist->dependent_support())
              throw ProgramError(*file_, step.family_loc,
                                 "site '" + step.name + "' cannot be a latent: the support of " + step.family +
                                     " depends on arguments that are not constants");
            std::vector<int64_t> batch = dist->batch_shape();
            if (batch.empty()) throw LocatedError(step.family_loc, step.family + ": its arguments have no particle dim");
            batch.erase(batch.begin());
            const std::vector<int64_t> event = dist->event_shape();
            // One draw from the prior stands in for the latent while the program is checked.
            at::Tensor prior_draw = dist->sample({}, gen).to(ctx.opts);
            if (!sp.declared.empty()) {
              std::vector<int64_t> target{1};
              target.insert(target.end(), sp.declared.begin(), sp.declared.end());
              bool fits = batch.size() <= sp.declared.size();
              for (size_t i = 0; fits && i < batch.size(); ++i) {
                const int64_t b = batch[batch.size() - 1 - i], d = sp.declared[sp.declared.size() - 1 - i];
                fits = b == 1 || b == d;
              }
              if (!fits)
                throw ProgramError(*file_, step.name_loc,
                                   "shape mismatch: '" + step.name + "' is declared " + shape_to_string(sp.declared) +
                                       ", but its arguments have shape " + shape_to_string(batch));
              target.insert(target.end(), event.begin(), event.end());
              prior_draw = prior_draw.expand(target);
              sp.shape = std::vector<int64_t>(target.begin() + 1, target.end());
            } else {
              sp.shape = batch;
              sp.shape.insert(sp.shape.end(), event.begin(), event.end());
            }
            sp.per_row = rows || (!sp.declared.empty() && num_rows_ > 0 && sp.declared[0] == num_rows_);
            prior_draw = prior_draw.clone().detach().requires_grad_(true);
            site_log_prob(*dist, prior_draw, sp.ranks.value);
            sites_.push_back(SiteInfo{step.name, sp.shape, dist->support(), dist->discrete(), sp.per_row});
            ctx.env[step.name] = Value{prior_draw, sp.per_row, true};
          }
          break;
        }
      }
    } catch (const ProgramError&) {
      throw;
    } catch (const DataError&) {
      throw;
    } catch (const LocatedError& e) {
      throw ProgramError(*file_, e.loc, e.what());
    } catch (const c10::Error& e) {
      throw ProgramError(*file_, step.kind == Step::Kind::let ? step.value.loc : step.family_loc, e.what_without_backtrace());
    } catch (const std::invalid_argument& e) {
      throw ProgramError(*file_, step.kind == Step::Kind::let ? step.value.loc : step.family_loc, e.what());
    } catch (const std::exception& e) {
      throw ProgramError(*file_, step.kind == Step::Kind::let ? step.value.loc : step.family_loc, e.what());
    }
    plan_->steps.push_back(std::move(sp));
  }
  plan_->tape = compile_fused(*plan_, ctx, plan_->unfused);
}

std::string ProgramModel::name() const { return program_->name; }

std::vector<std::string> ProgramModel::observed_names() const {
  std::vector<std::string> out;
  for (const auto& sp : plan_->steps)
    if (sp.role == StepPlan::Role::observed) out.push_back(sp.step->name);
  return out;
}

std::vector<std::string> ProgramModel::latent_names() const {
  std::vector<std::string> out;
  for (const auto& sp : plan_->steps)
    if (sp.role == StepPlan::Role::latent) out.push_back(sp.step->name);
  return out;
}

std::vector<std::string> ProgramModel::row_let_names() const {
  std::vector<std::string> out;
  for (const auto& sp : plan_->steps)
    if (sp.role == StepPlan::Role::let && sp.row_data) out.push_back(sp.step->name);
  return out;
}

std::vector<std::string> ProgramModel::let_names() const {
  std::vector<std::string> out;
  for (const auto& sp : plan_->steps)
    if (sp.role == StepPlan::Role::let) out.push_back(sp.step->name);
  return out;
}

namespace {

// What keeps the rows from being taken apart (minibatches, ranks): a slice, whose
// result over some rows is not those rows of the slice, and a latent with one value
// per row, which the guide draws whole.
const StepPlan* first_slicing_step(const ProgramModel::Plan& plan) {
  for (const auto& sp : plan.steps) {
    bool sliced = false;
    for (const Expr& e : sp.step->args) sliced = sliced || has_slice(e);
    if (sp.step->kind == Step::Kind::let) sliced = sliced || has_slice(sp.step->value);
    if (sliced) return &sp;
  }
  return nullptr;
}

const StepPlan* first_per_row_latent(const ProgramModel::Plan& plan) {
  for (const auto& sp : plan.steps)
    if (sp.role == StepPlan::Role::latent && sp.per_row) return &sp;
  return nullptr;
}

}  // namespace

void ProgramModel::set_minibatch(int64_t batch_size, at::Generator generator) {
  if (num_rows_ == 0)
    throw std::invalid_argument("set_minibatch: program '" + name() + "' has no data rows to subsample");
  if (batch_size < 1 || batch_size > num_rows_)
    throw std::invalid_argument("set_minibatch: batch size is " + std::to_string(batch_size) + ", but must be in [1, " +
                                std::to_string(num_rows_) + "] (N = " + std::to_string(num_rows_) + " rows)");
  if (batch_size < num_rows_) {
    if (const StepPlan* sp = first_slicing_step(*plan_))
      throw std::invalid_argument("set_minibatch: line " + std::to_string(sp->step->loc.line) +
                                  " slices an array, and slices of subsampled rows would not be contiguous; "
                                  "use the full batch");
    if (const StepPlan* sp = first_per_row_latent(*plan_))
      throw std::invalid_argument("set_minibatch: latent '" + sp->step->name +
                                  "' has one value per data row, so it cannot be subsampled (the guide draws all " +
                                  std::to_string(num_rows_) +
                                  " rows of it while the log joint would see only the batch); use the full batch");
  }
  if (generator.device().type() != at::kCPU)
    throw std::invalid_argument("set_minibatch: the rows' generator must be a CPU generator, got one on " +
                                generator.device().str());
  batch_size_ = batch_size;
  generator_ = std::move(generator);
}

namespace {

// Chooses a latent's value when the program is run without given values (the
// prior init strategies): (sp, its prior given the earlier values) -> (1, *sp.shape).
using LatentPicker = std::function<at::Tensor(const StepPlan&, const Distribution&)>;
// Receives each site's log density term, (S,), in program order.
using TermSink = std::vector<std::pair<std::string, at::Tensor>>;

at::Tensor run(const ProgramModel::Plan& plan, Context& ctx, const SiteValues& values, int64_t num_rows,
               int64_t batch_size, const LatentPicker* pick = nullptr, TermSink* terms = nullptr,
               double row_weight = 1.0) {
  at::Tensor total;  // the first term starts the sum: no zeros and one add fewer
  const auto add = [&](const at::Tensor& term) { total = total.defined() ? total + term : term; };
  const double scale = row_weight * static_cast<double>(num_rows) / static_cast<double>(batch_size);
  for (const auto& sp : plan.steps) {
    const Step& step = *sp.step;
    switch (sp.role) {
      case StepPlan::Role::ret: break;
      case StepPlan::Role::let: ctx.env[step.name] = eval(step.value, ctx); break;
      case StepPlan::Role::data: ctx.env[step.name] = data_value(sp, ctx); break;
      case StepPlan::Role::observed: {
        const Value value = sp.from_value ? ctx.env.at(step.name) : data_value(sp, ctx);
        auto dist = build_dist(sp, ctx, value.t.dim() - sp.ranks.value, false);
        const bool checked = sp.in_support && (ctx.opts.dtype() == at::kFloat || ctx.opts.dtype() == at::kDouble);
        at::Tensor term = site_log_prob(*dist, value.t, sp.ranks.value, checked);
        if (value.rows && scale != 1.0) term = term * scale;
        if (terms) terms->emplace_back(step.name, term);
        add(term);
        ctx.env[step.name] = value;
        break;
      }
      case StepPlan::Role::latent: {
        const int64_t vbr = sp.declared.empty() ? 0 : 1 + static_cast<int64_t>(sp.declared.size());
        auto dist = build_dist(sp, ctx, vbr, false);
        at::Tensor v;
        if (pick) {
          v = (*pick)(sp, *dist);
        } else {
          auto it = values.find(step.name);
          if (it == values.end())
            throw std::invalid_argument("log_joint: no value for latent site '" + step.name + "'");
          std::vector<int64_t> want{ctx.S};
          want.insert(want.end(), sp.shape.begin(), sp.shape.end());
          if (it->second.sizes().vec() != want)
            throw std::invalid_argument("log_joint: latent site '" + step.name + "' has shape " +
                                        shape_text(it->second.sizes()) + ", expected " + shape_to_string(want));
          v = it->second.to(ctx.opts.dtype());
        }
        at::Tensor term = site_log_prob(*dist, v, sp.ranks.value);
        if (terms) terms->emplace_back(step.name, term);
        add(term);
        ctx.env[step.name] = Value{v, sp.per_row, true};
        break;
      }
    }
  }
  if (!total.defined()) return at::zeros({ctx.S}, ctx.opts);
  // A term that does not depend on a latent has a particle dim of 1.
  return total.size(0) == ctx.S ? total : total.expand({ctx.S}).contiguous();
}

Context make_context(const at::Tensor& x, ProgramModel::Plan& plan) {
  Context ctx;
  ctx.S = x.size(0);
  const auto dtype = at::isFloatingType(x.scalar_type()) ? x.scalar_type() : at::kFloat;
  ctx.opts = at::TensorOptions().dtype(dtype).device(x.device());
  ctx.constants = &plan.constants;
  return ctx;
}

}  // namespace

at::Tensor sample_rows(int64_t N, int64_t B, at::Generator& generator) {
  if (B < 0 || B > N)
    throw std::invalid_argument("sample_rows: B is " + std::to_string(B) + ", but must be in [0, " + std::to_string(N) + "]");
  // Floyd's algorithm: for j = N-B, ..., N-1 take t uniform in [0, j], or j itself if
  // t is taken already. Every B-subset comes out with the same probability, in B
  // draws, so a batch costs O(B) whatever N is (a randperm of N would cost O(N)).
  std::vector<int64_t> rows;
  rows.reserve(static_cast<size_t>(B));
  std::unordered_set<int64_t> taken;
  taken.reserve(static_cast<size_t>(2 * B));
  {
    auto* gen = at::check_generator<at::CPUGeneratorImpl>(generator);
    std::lock_guard<std::mutex> lock(generator.mutex());
    for (int64_t j = N - B; j < N; ++j) {
      // Uniform in [0, j]: reject the 2^64 mod (j + 1) lowest words, so that no
      // value is favoured.
      const uint64_t n = static_cast<uint64_t>(j) + 1;
      const uint64_t threshold = (0 - n) % n;
      uint64_t r;
      do r = gen->random64();
      while (r < threshold);
      const auto t = static_cast<int64_t>(r % n);
      const int64_t row = taken.insert(t).second ? t : j;
      if (row == j) taken.insert(j);
      rows.push_back(row);
    }
  }
  // Ascending rows make the gather walk the data forwards.
  std::sort(rows.begin(), rows.end());
  return at::tensor(rows, at::TensorOptions().dtype(at::kLong));
}

at::Tensor ProgramModel::log_joint(const at::Tensor& x, const SiteValues& values) const {
  Context ctx = make_context(x, *plan_);
  const bool subsampled = batch_size_ < num_rows_ && generator_;
  const bool float_or_double = ctx.opts.dtype() == at::kFloat || ctx.opts.dtype() == at::kDouble;
  // The tape has no row weight: a rank of a data-parallel fit takes the LibTorch path.
  if (plan_->tape && evaluator_ != Evaluator::reference && !subsampled && row_weight_ == 1.0 &&
      ctx.opts.device().is_cpu() && float_or_double &&
      (evaluator_ == Evaluator::fused || ctx.S * plan_->tape->work() <= kFusedAutoWork)) {
    // The latents in program order, checked as the reference path checks them.
    std::vector<at::Tensor> latents;
    bool fits = true;
    for (const auto& sp : plan_->steps) {
      if (sp.role != StepPlan::Role::latent) continue;
      auto it = values.find(sp.step->name);
      if (it == values.end()) throw std::invalid_argument("log_joint: no value for latent site '" + sp.step->name + "'");
      std::vector<int64_t> want{ctx.S};
      want.insert(want.end(), sp.shape.begin(), sp.shape.end());
      if (it->second.sizes().vec() != want)
        throw std::invalid_argument("log_joint: latent site '" + sp.step->name + "' has shape " +
                                    shape_text(it->second.sizes()) + ", expected " + shape_to_string(want));
      const at::ScalarType t = it->second.scalar_type();
      fits = fits && (t == at::kFloat || t == at::kDouble) && it->second.device().is_cpu();
      latents.push_back(it->second);
    }
    if (fits) {
      fused::Reference reference = [plan = plan_, N = num_rows_, S = ctx.S, opts = ctx.opts](
                                       const std::vector<at::Tensor>& inputs) {
        Context c;
        c.S = S;
        c.opts = opts;
        c.constants = &plan->constants;
        SiteValues v;
        size_t k = 0;
        for (const auto& sp : plan->steps)
          if (sp.role == StepPlan::Role::latent) v[sp.step->name] = inputs.at(k++);
        return run(*plan, c, v, N, N);
      };
      return fused::log_joint(plan_->tape, ctx.S, latents, ctx.opts.dtype().toScalarType(), std::move(reference));
    }
  }
  if (subsampled) {
    at::Generator gen = *generator_;  // a handle: draws advance the shared stream
    ctx.index = sample_rows(num_rows_, batch_size_, gen).to(x.device());
  }
  return run(*plan_, ctx, values, num_rows_, subsampled ? batch_size_ : num_rows_, nullptr, nullptr, row_weight_);
}

void ProgramModel::set_row_weight(double weight) {
  if (!(weight > 0.0) || !std::isfinite(weight))
    throw std::invalid_argument("set_row_weight: weight is " + std::to_string(weight) + ", but must be a positive number");
  row_weight_ = weight;
}

void ProgramModel::check_rows_can_split() const {
  if (const StepPlan* sp = first_per_row_latent(*plan_))
    throw std::invalid_argument("latent '" + sp->step->name + "' has one value per data row, so the " +
                                std::to_string(num_rows_) + " rows cannot be split between ranks (every rank's " +
                                "guide draws all of them)");
  if (const StepPlan* sp = first_slicing_step(*plan_))
    throw std::invalid_argument("line " + std::to_string(sp->step->loc.line) +
                                " slices an array, and the rows cannot be split between ranks under a slice");
}

Data ProgramModel::data_rows(int64_t begin, int64_t end) const {
  if (num_rows_ == 0)
    throw std::invalid_argument("data_rows: program '" + name() + "' has no data rows to split");
  if (begin < 0 || end > num_rows_ || begin >= end)
    throw std::invalid_argument("data_rows: rows [" + std::to_string(begin) + ", " + std::to_string(end) +
                                ") are not a non-empty range of the " + std::to_string(num_rows_) + " rows");
  check_rows_can_split();
  Data out(data_.filename() + " rows " + std::to_string(begin + 1) + "-" + std::to_string(end));
  for (const auto& name : data_.names()) out.set(name, data_.get(name));
  for (const auto& sp : plan_->steps) {
    const bool row_array = (sp.role == StepPlan::Role::data || (sp.role == StepPlan::Role::observed && !sp.from_value)) &&
                           sp.row_data && sp.data.dim() >= 1 && sp.data.size(0) == num_rows_;
    if (!row_array) continue;
    out.set(sp.step->name, data_.get(sp.step->name).slice(0, begin, end).clone());
    // A size variable that declares the leading dim ("X[N, P]") counts the rows.
    if (!sp.step->shape.empty() && !sp.step->shape[0].name.empty() && data_.contains(sp.step->shape[0].name))
      out.set(sp.step->shape[0].name, at::scalar_tensor(end - begin, at::kLong));
  }
  return out;
}

void ProgramModel::set_evaluator(Evaluator evaluator) {
  if (evaluator == Evaluator::fused && !plan_->tape)
    throw std::invalid_argument("set_evaluator: program '" + name() + "' cannot be fused: " + plan_->unfused);
  evaluator_ = evaluator;
}

const std::string& ProgramModel::fusion_blocker() const noexcept { return plan_->unfused; }

std::vector<std::pair<std::string, at::Tensor>> ProgramModel::site_log_densities(const at::Tensor& x,
                                                                                const SiteValues& values) const {
  Context ctx = make_context(x, *plan_);
  TermSink terms;
  run(*plan_, ctx, values, num_rows_, num_rows_, nullptr, &terms);
  return terms;
}

SiteValues ProgramModel::prior_values(PriorInit kind, at::Generator& generator) const {
  Context ctx;
  ctx.S = 1;
  ctx.opts = at::TensorOptions().dtype(at::kDouble);
  SiteValues out;
  const LatentPicker pick = [&](const StepPlan& sp, const Distribution& dist) {
    std::vector<int64_t> target{1};
    target.insert(target.end(), sp.shape.begin(), sp.shape.end());
    auto fits = [&](const at::Tensor& v) {
      return v.defined() && at::isfinite(v).all().item<bool>() && dist.support().check(v).all().item<bool>();
    };
    at::Tensor mean;
    if (dist.has_mean()) mean = dist.mean().to(ctx.opts).expand(target).contiguous();
    at::Tensor v;
    switch (kind) {
      case PriorInit::sample: v = dist.sample({}, generator).to(ctx.opts).expand(target).contiguous(); break;
      case PriorInit::mean:
        if (fits(mean)) {
          v = mean;
          break;
        }
        [[fallthrough]];  // no finite mean (a Cauchy): the median
      case PriorInit::median: {
        // Pyro's rule: 15 draws. An element-wise median can leave a joint support
        // (a simplex), and then the mean, or one draw, stands in.
        v = std::get<0>(dist.sample({15}, generator).to(ctx.opts).median(0)).expand(target).contiguous();
        if (!fits(v)) v = fits(mean) ? mean : dist.sample({}, generator).to(ctx.opts).expand(target).contiguous();
        break;
      }
    }
    out[sp.step->name] = v.select(0, 0);
    return v;
  };
  run(*plan_, ctx, {}, num_rows_, num_rows_, &pick);
  return out;
}

SiteValues ProgramModel::evaluate(const at::Tensor& x, const SiteValues& values) const {
  Context ctx = make_context(x, *plan_);
  run(*plan_, ctx, values, num_rows_, num_rows_);
  SiteValues out;
  for (const auto& [name, v] : ctx.env) {
    std::vector<int64_t> shape = v.t.sizes().vec();
    shape[0] = ctx.S;
    // Values of the data alone may be the model's cached tensors: the caller gets a copy.
    out[name] = v.latent ? v.t.expand(shape) : v.t.expand(shape).clone();
  }
  return out;
}

}  // namespace vguide::model
