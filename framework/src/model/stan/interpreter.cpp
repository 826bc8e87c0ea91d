#include "interpreter.hpp"

#include "trace.hpp"

#include <ATen/ATen.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <climits>
#include <cmath>
#include <set>
#include <sstream>

namespace vguide::model::stan {

namespace {

constexpr int kMaxCallDepth = 200;
// A while loop that runs this often in one evaluation is taken to be endless (a
// fit evaluates the program thousands of times; 10^5 iterations already cost a
// second or more there).
constexpr int64_t kMaxWhileIterations = 100'000;
// The most elements one declared variable may hold.
constexpr int64_t kMaxElements = 100'000'000;

// The particle count of a set of tensors (1 if all are shared).
int64_t particles_of(std::initializer_list<const at::Tensor*> ts) {
  int64_t P = 1;
  for (const at::Tensor* t : ts) P = std::max(P, t->size(0));
  return P;
}

at::Tensor expand_particles(const at::Tensor& t, int64_t P) {
  if (t.size(0) == P) return t;
  std::vector<int64_t> shape = t.sizes().vec();
  shape[0] = P;
  return t.expand(shape);
}

std::string shape_text(at::IntArrayRef s) {
  std::string out = "[";
  for (size_t i = 1; i < s.size(); ++i) out += (i > 1 ? ", " : "") + std::to_string(s[i]);
  return out + "]";
}

std::string value_text(const at::Tensor& t) {
  std::ostringstream s;
  const at::Tensor c = t.detach().to(at::kDouble).contiguous();
  if (c.numel() == 1) {
    s << c.item<double>();
    return s.str();
  }
  s << "[";
  const int64_t n = std::min<int64_t>(c.numel(), 20);
  const double* p = c.data_ptr<double>();
  for (int64_t i = 0; i < n; ++i) s << (i ? ", " : "") << p[i];
  if (c.numel() > n) s << ", ...";
  s << "]";
  return s.str();
}

// std_normal(y) is the tape's normal(y | 0, 1).
void standard_normal_arguments(const std::string& dist, std::vector<Val>* args) {
  if (dist != "std_normal") return;
  args->push_back(Val{at::zeros({1}, at::kDouble), Type{Base::real, 0}, true});
  args->push_back(Val{at::ones({1}, at::kDouble), Type{Base::real, 0}, true});
}

}  // namespace

Interpreter::Interpreter(const StanProgram& program, RunContext& context, std::vector<Scope> globals)
    : program_(program), context_(context), scopes_(std::move(globals)) {
  if (scopes_.empty()) scopes_.emplace_back();
  for (const auto& f : program_.ast.functions)
    if (f.defined) functions_[f.name] = &f;
  target_ = at::zeros({1}, at::TensorOptions().dtype(context_.dtype));
}

void Interpreter::trace_only_data(const Val& v, const char* what) const {
  if (traced(v)) Tracer::abort(what);
}

void Interpreter::fail(const SourceLoc& loc, const std::string& message) const {
  throw ProgramError(program_.file, loc, message);
}

void Interpreter::run_block(const std::vector<StmtP>& statements) {
  for (const auto& s : statements) {
    const Flow f = exec(*s);
    (void)f;  // the checker allows break/continue/return only where they belong
  }
}

Interpreter::Flow Interpreter::exec_list(const std::vector<StmtP>& list, bool new_scope) {
  if (new_scope) scopes_.emplace_back();
  Flow flow = Flow::normal;
  try {
    for (const auto& s : list) {
      flow = exec(*s);
      if (flow != Flow::normal) break;
    }
  } catch (...) {
    if (new_scope) scopes_.pop_back();
    throw;
  }
  if (new_scope) scopes_.pop_back();
  return flow;
}

// `lo:hi` (either end may be left out) of dim `dim`; empty when hi < lo, as in Stan.
at::Tensor Interpreter::narrow_to(const at::Tensor& t, int64_t dim, const Index& ix, const SourceLoc& loc,
                                  const std::string& of) {
  const int64_t size = t.size(dim);
  const int64_t lo = ix.lo ? data_int(evaluate(*ix.lo), ix.lo->loc, "an index") : 1;
  const int64_t hi = ix.hi ? data_int(evaluate(*ix.hi), ix.hi->loc, "an index") : size;
  if (hi >= lo && (lo < 1 || hi > size))
    fail(loc, "range " + std::to_string(lo) + ":" + std::to_string(hi) + " is out of range" + of + " (1 to " +
                  std::to_string(size) + ")");
  return hi < lo ? t.narrow(dim, 0, 0) : t.narrow(dim, lo - 1, hi - lo + 1);
}

// The 1-based positions of a multi-index, checked against `size`. One list for all
// particles: an index list that differs by particle or by iteration of a loop run
// at once is refused (the loop then runs one iteration at a time).
at::Tensor Interpreter::multi_index(const Index& ix, const Val& idx, int64_t size, const std::string& of) {
  if (!idx.data_only) fail(ix.lo->loc, "an index that depends on parameters is not supported");
  if (idx.t.size(0) != 1) fail(ix.lo->loc, "a multi-index that differs between iterations of a vectorised loop");
  const at::Tensor flat = idx.t.reshape({-1});
  if (flat.numel() > 0 && (flat.min().item<int64_t>() < 1 || flat.max().item<int64_t>() > size))
    fail(ix.lo->loc, "a multi-index is out of range" + of + " (1 to " + std::to_string(size) + ")");
  return flat;
}

// One iteration of a for loop: the loop variable in a scope of its own.
Interpreter::Flow Interpreter::iteration(const Stmt& loop, Val value) {
  scopes_.emplace_back();
  scopes_.back()[loop.name] = {std::move(value), true};
  Flow f;
  try {
    f = exec_list(loop.body, false);
  } catch (...) {
    scopes_.pop_back();
    throw;
  }
  scopes_.pop_back();
  return f;
}

Variable& Interpreter::lookup(const std::string& name, const SourceLoc& loc) {
  for (auto it = scopes_.rbegin(); it != scopes_.rend(); ++it) {
    const auto found = it->find(name);
    if (found != it->end()) return found->second;
  }
  fail(loc, "'" + name + "' has no value here");
}

std::vector<int64_t> Interpreter::declared_shape(const DeclType& d) {
  std::vector<int64_t> shape;
  auto size = [&](const ExprP& e) {
    const int64_t n = data_int(evaluate(*e), e->loc, "a size");
    if (n < 0) fail(e->loc, "a size must not be negative, but this is " + std::to_string(n));
    shape.push_back(n);
  };
  for (const auto& e : d.array_sizes) size(e);
  if (!d.special.empty()) {
    size(d.sizes[0]);
    const bool square = d.base == Base::matrix;
    if (square) {
      if (d.sizes.size() == 2) {
        size(d.sizes[1]);
        if (shape[shape.size() - 2] != shape.back())
          fail(d.loc, d.special + " with " + std::to_string(shape[shape.size() - 2]) + " rows and " +
                          std::to_string(shape.back()) + " columns is not supported (only square factors)");
      } else {
        shape.push_back(shape.back());
      }
    }
    return shape;
  }
  for (const auto& e : d.sizes) size(e);
  return shape;
}

Val Interpreter::declared_value(const DeclType& d) {
  std::vector<int64_t> shape{1};
  const std::vector<int64_t> sizes = declared_shape(d);
  shape.insert(shape.end(), sizes.begin(), sizes.end());
  if (std::find(sizes.begin(), sizes.end(), 0) == sizes.end()) {
    int64_t elements = 1;
    for (int64_t n : sizes) {
      if (elements > kMaxElements / n)
        fail(d.loc, "this declaration holds more than " + std::to_string(kMaxElements) + " elements");
      elements *= n;
    }
  }
  if (d.base == Base::int_) return {at::full(shape, static_cast<int64_t>(INT_MIN), at::kLong), d.type(), true};
  return {at::full(shape, NAN, at::TensorOptions().dtype(context_.dtype)), d.type(), true};
}

int64_t Interpreter::data_int(const Val& v, const SourceLoc& loc, const char* what) const {
  if (!v.data_only) fail(loc, std::string(what) + " that depends on parameters is not supported");
  // More than one row without parameters: a vectorised loop's variable, which a
  // size or a bound cannot be (the loop then runs one iteration at a time).
  if (v.t.size(0) != 1) fail(loc, std::string(what) + " that differs between iterations of a vectorised loop");
  return v.t.reshape({-1})[0].item<int64_t>();
}

Val Interpreter::convert(Val v, const Type& to) const {
  if (to.base != Base::int_ && v.t.scalar_type() != context_.dtype) v.t = v.t.to(context_.dtype);
  v.type = to;
  return v;
}

void Interpreter::declare(const Stmt& s) {
  Val v = declared_value(s.decl_type);
  if (s.value) {
    Val init = convert(evaluate(*s.value), s.decl_type.type());
    if (init.t.sizes().slice(1) != v.t.sizes().slice(1))
      fail(s.value->loc, "'" + s.name + "' is declared with size " + shape_text(v.t.sizes()) + ", but its value has size " +
                             shape_text(init.t.sizes()));
    scopes_.back()[s.name] = {init, true};
    return;
  }
  scopes_.back()[s.name] = {v, false};
}

void Interpreter::add_target(const at::Tensor& lp, const SourceLoc& loc) {
  at::Tensor term = lp;
  if (term.dim() > 1) term = term.flatten(1).sum(1);
  if (term.scalar_type() != context_.dtype) term = term.to(context_.dtype);
  if (term.dim() == 0) term = term.reshape({1});
  (void)loc;
  target_ = target_ + term;
}

bool Interpreter::data_condition(const Expr& e) {
  const Val c = evaluate(e);
  if (!c.data_only || c.t.size(0) != 1)
    fail(e.loc, "a while condition that depends on parameters is not supported");
  return c.t.reshape({-1})[0].item<double>() != 0.0;
}

Interpreter::Flow Interpreter::exec(const Stmt& s) {
  if (!tracer_) return exec_statement(s);
  try {
    return exec_statement(s);
  } catch (TraceAbort& a) {
    // The innermost statement names the line.
    if (a.why.find(" (line ") == std::string::npos) a.why += " (line " + std::to_string(s.loc.line) + ")";
    throw;
  }
}

Interpreter::Flow Interpreter::exec_statement(const Stmt& s) {
  switch (s.kind) {
    case Stmt::Kind::empty: return Flow::normal;
    case Stmt::Kind::decl: declare(s); return Flow::normal;
    case Stmt::Kind::block: return exec_list(s.body, true);
    case Stmt::Kind::assign: assign(s); return Flow::normal;
    case Stmt::Kind::target: {
      const Val v = evaluate(*s.value);
      add_target(as_real(v, context_.dtype), s.loc);
      if (tracer_) tracer_->add_target(v);
      return Flow::normal;
    }
    case Stmt::Kind::tilde: {
      std::vector<Val> args{evaluate(*s.value)};
      for (const auto& a : s.args) args.push_back(evaluate(*a));
      const Val lp = density_value(s.dist, s.dist_loc, std::move(args));
      add_target(as_real(lp, context_.dtype), s.loc);
      if (tracer_) tracer_->add_target(lp);
      return Flow::normal;
    }
    case Stmt::Kind::for_range: {
      const int64_t lo = data_int(evaluate(*s.value), s.value->loc, "a loop bound");
      const int64_t hi = data_int(evaluate(*s.hi), s.hi->loc, "a loop bound");
      if (s.vectorisable && hi > lo && !vectorising_ && run_vectorised(s, lo, hi)) return Flow::normal;
      for (int64_t i = lo; i <= hi; ++i) {
        const Flow f = iteration(s, Val{at::full({1}, i, at::kLong), Type{Base::int_, 0}, true});
        if (f == Flow::break_) break;
        if (f == Flow::return_) return f;
      }
      return Flow::normal;
    }
    case Stmt::Kind::foreach: {
      const Val over = evaluate(*s.value);
      const Type& t = over.type;
      at::Tensor items = over.t;
      Type element{t.base, t.array_dims - 1};
      if (t.array_dims == 0) {
        element = Type{Base::real, 0};
        // A matrix's elements in column-major order, as Stan iterates them.
        items = t.base == Base::matrix ? over.t.transpose(-1, -2).reshape({over.t.size(0), -1}) : over.t;
      }
      at::Tensor item_ids;
      if (over.ids.defined())
        item_ids = t.array_dims == 0 && t.base == Base::matrix ? over.ids.transpose(-1, -2).reshape({over.ids.size(0), -1})
                                                               : over.ids;
      const int64_t n = items.size(1);
      for (int64_t i = 0; i < n; ++i) {
        Val item{items.select(1, i), element, over.data_only};
        if (item_ids.defined()) item.ids = item_ids.select(1, i);
        const Flow f = iteration(s, std::move(item));
        if (f == Flow::break_) break;
        if (f == Flow::return_) return f;
      }
      return Flow::normal;
    }
    case Stmt::Kind::while_: {
      for (int64_t i = 0;; ++i) {
        if (!data_condition(*s.cond)) return Flow::normal;
        if (i >= kMaxWhileIterations)
          fail(s.loc, "this while loop ran " + std::to_string(kMaxWhileIterations) + " times without ending");
        const Flow f = exec_list(s.body, true);
        if (f == Flow::break_) return Flow::normal;
        if (f == Flow::return_) return f;
      }
    }
    case Stmt::Kind::if_: {
      const Val c = evaluate(*s.cond);
      trace_only_data(c, "an if whose condition depends on parameters");
      const at::Tensor yes = c.t.reshape({c.t.size(0)}) != 0;
      const bool all = yes.all().item<bool>(), none = !yes.any().item<bool>();
      if (all || none) {
        if (all) return exec_list(s.body, true);
        if (s.has_else) return exec_list(s.else_body, true);
        return Flow::normal;
      }
      return exec_per_particle(s, yes);
    }
    case Stmt::Kind::break_: return Flow::break_;
    case Stmt::Kind::continue_: return Flow::continue_;
    case Stmt::Kind::return_:
      return_value_ = s.value ? evaluate(*s.value) : Val{};
      return Flow::return_;
    case Stmt::Kind::print:
    case Stmt::Kind::reject: {
      if (tracer_) Tracer::abort(s.kind == Stmt::Kind::print ? "a print statement" : "a reject statement that runs");
      std::string text;
      for (const auto& a : s.args) {
        if (a->kind == Expr::Kind::string_lit) text += a->text;
        else text += value_text(evaluate(*a).t);
      }
      if (s.kind == Stmt::Kind::reject) throw Rejected(s.loc, text);
      if (print_budget_) {
        const int left = print_budget_->fetch_sub(1) - 1;
        if (left >= 0)
          spdlog::info("{}:{}: print: {}{}", program_.file.filename, s.loc.line, text,
                       left == 0 ? " (further prints are not shown)" : "");
      }
      return Flow::normal;
    }
    case Stmt::Kind::call: {
      evaluate(*s.value);
      return Flow::normal;
    }
  }
  return Flow::normal;
}

// A for loop whose iterations do not depend on each other (the checker's
// `vectorisable`: nothing declared outside it is assigned, no print, reject, break
// or return) runs once over all of its iterations: each (particle, iteration) pair
// is a row of the particle dim, so every statement and library function serves it
// unchanged; `target` sums the rows back per particle. Anything that cannot run so
// (a size or bound that varies by iteration, an index into an indexed write) throws,
// and the loop then runs one iteration at a time from the same state.
bool Interpreter::run_vectorised(const Stmt& s, int64_t lo, int64_t hi) {
  const int64_t n = hi - lo + 1, S = context_.particles;
  const std::vector<Scope> saved = scopes_;
  const at::Tensor saved_target = target_;
  const fused::Tape::Mark mark = tracer_ ? tracer_->tape()->mark() : fused::Tape::Mark{};
  const auto restore = [&] {
    scopes_ = saved;
    target_ = saved_target;
    vectorising_ = false;
    if (tracer_) {
      tracer_->rows = 0;
      tracer_->tape()->rewind(mark);
    }
  };
  try {
    vectorising_ = true;
    if (tracer_) tracer_->rows = n;
    for (auto& scope : scopes_)
      for (auto& [name, var] : scope) {
        var.shared = true;
        if (S > 1 && var.value.t.size(0) == S) var.value.t = var.value.t.repeat_interleave(n, 0);
      }
    target_ = at::zeros({1}, at::TensorOptions().dtype(context_.dtype));
    const at::Tensor rows = at::arange(lo, hi + 1, at::kLong).repeat({S});  // row s * n + j holds lo + j
    scopes_.emplace_back();
    scopes_.back()[s.name] = {Val{rows, Type{Base::int_, 0}, true}, true};
    const Flow f = exec_list(s.body, false);
    if (f != Flow::normal) throw std::logic_error("control flow");
    const at::Tensor per_row = target_;
    scopes_ = saved;
    vectorising_ = false;
    if (tracer_) tracer_->rows = 0;
    const at::Tensor sum = per_row.size(0) == S * n ? per_row.reshape({S, n}).sum(1) : per_row * static_cast<double>(n);
    target_ = saved_target + sum;
    return true;
  } catch (const std::exception&) {
    restore();
    return false;
  } catch (const TraceAbort&) {
    // Something the tape cannot hold at once (an `if` on data that differs between
    // iterations): one iteration at a time may resolve it, or abort again.
    restore();
    return false;
  }
}

at::Tensor Interpreter::gather_rows(const at::Tensor& t, int64_t dim, const at::Tensor& index, const SourceLoc& loc) {
  const int64_t K = index.size(0), size = t.size(dim);
  if (index.numel() > 0 && (index.min().item<int64_t>() < 1 || index.max().item<int64_t>() > size))
    fail(loc, "index " + std::to_string(index.min().item<int64_t>() < 1 ? index.min().item<int64_t>()
                                                                           : index.max().item<int64_t>()) +
                  " is out of range (1 to " + std::to_string(size) + ")");
  if (t.size(0) != 1 && t.size(0) != K) throw std::logic_error("rows differ");
  std::vector<int64_t> shape = t.sizes().vec();
  shape[0] = K;
  const at::Tensor moved = t.expand(shape).movedim(dim, 1);  // (K, size, the other dims in order)
  std::vector<int64_t> rest(moved.sizes().begin() + 2, moved.sizes().end());
  const at::Tensor flat = moved.reshape({K, size, -1});
  const at::Tensor picked = flat.gather(1, (index - 1).view({K, 1, 1}).expand({K, 1, flat.size(2)})).squeeze(1);
  rest.insert(rest.begin(), K);
  return picked.reshape(rest);
}

// An if whose condition differs between particles: both branches run on every
// particle, from the same state, and each particle keeps its own branch's
// variables and target.
Interpreter::Flow Interpreter::exec_per_particle(const Stmt& s, const at::Tensor& yes) {
  if (tracer_) Tracer::abort("an if whose condition differs between particles");
  for (auto& scope : scopes_)
    for (auto& [name, var] : scope) var.shared = true;  // a branch's writes must not reach the other's
  const std::vector<Scope> before = scopes_;
  const at::Tensor target_before = target_;
  const auto branch = [&](const std::vector<StmtP>& body) {
    Flow f = Flow::normal;
    try {
      f = exec_list(body, true);
    } catch (const Rejected&) {
      target_ = at::full_like(target_, -INFINITY);  // only this branch's particles are rejected
    }
    if (f != Flow::normal)
      fail(s.loc, "break, continue or return under a condition that depends on parameters is not supported");
  };
  branch(s.body);
  const std::vector<Scope> then_scopes = scopes_;
  const at::Tensor then_target = target_;
  scopes_ = before;
  target_ = target_before;
  if (s.has_else) branch(s.else_body);
  for (size_t i = 0; i < scopes_.size(); ++i) {
    for (auto& [name, var] : scopes_[i]) {
      const Variable& other = then_scopes[i].at(name);
      if (other.value.t.is_same(var.value.t)) continue;
      const int64_t dims = std::max(other.value.t.dim(), var.value.t.dim());
      var.value.t = at::where(lift(yes, dims), lift(other.value.t, dims), lift(var.value.t, dims));
      var.value.data_only = false;
      var.shared = true;
    }
  }
  target_ = at::where(yes, then_target, target_);
  return Flow::normal;
}

void Interpreter::assign(const Stmt& s) {
  Variable& var = lookup(s.name, s.name_loc);
  Val rhs = evaluate(*s.value);
  if (s.op != "=") {
    // x op= y is x = x op y, on the indexed part.
    Expr target;
    target.loc = s.name_loc;
    Expr name_expr;
    name_expr.kind = Expr::Kind::name;
    name_expr.text = s.name;
    name_expr.type = var.value.type;
    name_expr.loc = s.name_loc;
    Val current;
    if (s.indices.empty()) {
      current = var.value;
    } else {
      Expr ix;
      ix.kind = Expr::Kind::index;
      ix.args = {std::make_shared<Expr>(name_expr)};
      ix.indices = s.indices;
      ix.loc = s.name_loc;
      ix.type = s.target_type;  // the indexed part's type, as the checker found it
      current = index(ix);
    }
    Expr bin;
    bin.kind = Expr::Kind::binary;
    bin.text = s.op.substr(0, s.op.size() - 1);
    bin.loc = s.value->loc;
    auto left = std::make_shared<Expr>();
    left->kind = Expr::Kind::name;
    left->text = "\x01lhs";
    left->type = current.type;
    auto right = std::make_shared<Expr>();
    right->kind = Expr::Kind::name;
    right->text = "\x01rhs";
    right->type = rhs.type;
    bin.args = {left, right};
    bin.type = current.type;
    scopes_.emplace_back();
    scopes_.back()["\x01lhs"] = {current, true};
    scopes_.back()["\x01rhs"] = {rhs, true};
    try {
      rhs = binary(bin);
    } catch (...) {
      scopes_.pop_back();
      throw;
    }
    scopes_.pop_back();
  }
  Variable& v = lookup(s.name, s.name_loc);
  if (s.indices.empty()) {
    Val value = convert(rhs, v.value.type);
    if (value.t.sizes().slice(1) != v.value.t.sizes().slice(1))
      fail(s.value->loc, "'" + s.name + "' has size " + shape_text(v.value.t.sizes()) + ", but the value has size " +
                             shape_text(value.t.sizes()));
    v.value = value;
    v.shared = true;
    return;
  }
  // An indexed write: into this variable's own copy, over every particle.
  at::Tensor value = rhs.t;
  if (v.value.type.base != Base::int_ && value.scalar_type() != context_.dtype) value = value.to(context_.dtype);
  if (v.value.type.base == Base::int_ && value.scalar_type() != at::kLong)
    fail(s.value->loc, "cannot assign a real to an element of the int '" + s.name + "'");
  const int64_t P = particles_of({&v.value.t, &value});
  if (v.shared || v.value.t.size(0) != P) {
    v.value.t = expand_particles(v.value.t, P).clone();
    v.shared = false;
  }
  v.value.data_only = v.value.data_only && rhs.data_only;
  // While tracing, the same write moves the ids (-1 where the value is data).
  at::Tensor id_view, id_value;
  if (tracer_ && (v.value.ids.defined() || traced(rhs))) {
    v.value.ids = v.value.ids.defined() ? expand_particles(v.value.ids, P).clone()
                                        : at::full(v.value.t.sizes(), -1, at::kLong);
    id_view = v.value.ids;
    id_value = Tracer::ids_of(rhs);
  }
  at::Tensor view = v.value.t;
  int64_t dim = 1;
  for (const auto& ix : s.indices) {
    const int64_t size = view.size(dim);
    switch (ix.kind) {
      case Index::Kind::single: {
        const int64_t i = data_int(evaluate(*ix.lo), ix.lo->loc, "an index");
        if (i < 1 || i > size)
          fail(ix.lo->loc, "index " + std::to_string(i) + " is out of range for '" + s.name + "' (1 to " +
                               std::to_string(size) + ")");
        view = view.select(dim, i - 1);
        if (id_view.defined()) id_view = id_view.select(dim, i - 1);
        break;
      }
      case Index::Kind::all: ++dim; break;
      case Index::Kind::lower:
      case Index::Kind::upper:
      case Index::Kind::range: {
        view = narrow_to(view, dim, ix, s.name_loc, " for '" + s.name + "'");
        if (id_view.defined()) id_view = narrow_to(id_view, dim, ix, s.name_loc, " for '" + s.name + "'");
        ++dim;
        break;
      }
      case Index::Kind::multi: {
        const at::Tensor flat = multi_index(ix, evaluate(*ix.lo), size, " for '" + s.name + "'");
        // Each listed position in turn (a multi-index on the left writes element by element).
        const auto write = [&](const at::Tensor& into, const at::Tensor& from) {
          const at::Tensor src = lift(from, into.dim());
          for (int64_t k = 0; k < flat.numel(); ++k) {
            at::Tensor piece = src.dim() > dim ? src.select(dim, std::min<int64_t>(k, src.size(dim) - 1)) : src;
            at::Tensor slot = into.select(dim, flat[k].item<int64_t>() - 1);
            slot.copy_(piece.dim() < slot.dim() ? lift(piece, slot.dim()).expand_as(slot) : piece.expand_as(slot));
          }
        };
        write(view, value);
        if (id_view.defined()) write(id_view, id_value);
        return;
      }
    }
  }
  const at::Tensor src = value.dim() < view.dim() ? lift(value, view.dim()) : value;
  try {
    view.copy_(src.expand_as(view));
    if (id_view.defined()) id_view.copy_((id_value.dim() < id_view.dim() ? lift(id_value, id_view.dim()) : id_value).expand_as(id_view));
  } catch (const std::exception&) {
    fail(s.value->loc, "the value's size " + shape_text(value.sizes()) + " does not fit '" + s.name + "[...]' of size " +
                           shape_text(view.sizes()));
  }
}

Val Interpreter::evaluate(const Expr& e) {
  if (!cache_ || !e.constant || e.kind == Expr::Kind::name) return evaluate_uncached(e);
  {
    std::lock_guard<std::mutex> lock(cache_->mutex);
    const auto it = cache_->values.find(&e);
    if (it != cache_->values.end()) return it->second;
  }
  Val v = evaluate_uncached(e);
  std::lock_guard<std::mutex> lock(cache_->mutex);
  cache_->values.emplace(&e, v);
  return v;
}

Val Interpreter::evaluate_uncached(const Expr& e) {
  switch (e.kind) {
    case Expr::Kind::int_lit: return {at::full({1}, static_cast<int64_t>(e.int_value), at::kLong), e.type, true};
    case Expr::Kind::real_lit:
      return {at::full({1}, e.real_value, at::TensorOptions().dtype(context_.dtype)), e.type, true};
    case Expr::Kind::string_lit: fail(e.loc, "a string is only allowed in print and reject");
    case Expr::Kind::name: {
      Variable& v = lookup(e.text, e.loc);
      v.shared = true;
      return v.value;
    }
    case Expr::Kind::unary: {
      const Val a = evaluate(*e.args[0]);
      if (e.text == "!") {
        trace_only_data(a, "'!' of a value that depends on parameters");
        return {(a.t == 0).to(at::kLong), e.type, a.data_only};
      }
      if (traced(a)) return tracer_->unary(fused::Op::neg, a, -a.t, e.type);
      return {-a.t, e.type, a.data_only};
    }
    case Expr::Kind::binary: return binary(e);
    case Expr::Kind::ternary: {
      const Val c = evaluate(*e.args[0]);
      if (c.data_only && c.t.size(0) == 1) {
        const bool yes = c.t.reshape({-1})[0].item<double>() != 0.0;
        return convert(evaluate(*e.args[yes ? 1 : 2]), e.type);
      }
      trace_only_data(c, "a ?: whose condition depends on parameters");
      const Val a = convert(evaluate(*e.args[1]), e.type), b = convert(evaluate(*e.args[2]), e.type);
      const int64_t dims = std::max(a.t.dim(), b.t.dim());
      Val out{at::where(lift(c.t != 0, dims), lift(a.t, dims), lift(b.t, dims)), e.type, false};
      if (traced(a) || traced(b))  // a data condition by iteration: it only picks elements
        out.ids = at::where(lift(c.t != 0, dims), lift(Tracer::ids_of(a), dims), lift(Tracer::ids_of(b), dims));
      return out;
    }
    case Expr::Kind::transpose: {
      Val a = evaluate(*e.args[0]);
      if (a.type.base == Base::matrix) a = Tracer::view(a, [](const at::Tensor& t) { return t.transpose(-1, -2); });
      a.type = e.type;
      return a;
    }
    case Expr::Kind::index: return index(e);
    case Expr::Kind::array_lit:
    case Expr::Kind::row_vector_lit: {
      std::vector<at::Tensor> parts;
      bool data_only = true;
      const Type element = e.kind == Expr::Kind::array_lit ? Type{e.type.base, e.type.array_dims - 1}
                                                           : Type{e.type.base == Base::matrix ? Base::row_vector : Base::real, 0};
      std::vector<Val> vals;
      for (const auto& a : e.args) vals.push_back(convert(evaluate(*a), element));
      int64_t P = 1;
      for (const auto& v : vals) {
        P = std::max(P, v.t.size(0));
        data_only = data_only && v.data_only;
      }
      for (auto& v : vals) parts.push_back(expand_particles(v.t, P));
      try {
        Val out{at::stack(parts, 1), e.type, data_only};
        if (tracer_ && !data_only) {
          std::vector<at::Tensor> ids;
          for (const auto& v : vals) ids.push_back(expand_particles(Tracer::ids_of(v), P));
          out.ids = at::stack(ids, 1);
        }
        return out;
      } catch (const std::exception&) {
        fail(e.loc, "the elements of this literal differ in size");
      }
    }
    case Expr::Kind::call: return call(e);
  }
  fail(e.loc, "cannot evaluate this expression");
}

Val Interpreter::binary(const Expr& e) {
  const std::string& op = e.text;
  const Val a = evaluate(*e.args[0]);
  if ((op == "&&" || op == "||") && a.data_only && a.t.size(0) == 1) {
    const bool left = a.t.reshape({-1})[0].item<double>() != 0.0;
    if (op == "&&" && !left) return {at::zeros({1}, at::kLong), e.type, true};
    if (op == "||" && left) return {at::ones({1}, at::kLong), e.type, true};
  }
  const Val b = evaluate(*e.args[1]);
  if (traced(a) || traced(b)) return trace_binary(e, a, b, binary_of(e, a, b));
  return binary_of(e, a, b);
}

// Records a binary operator on values of which one depends on parameters; `r` is
// its value. Elementwise operators are one node; the products of vectors and
// matrices are one dot node over views of their operands.
Val Interpreter::trace_binary(const Expr& e, const Val& a, const Val& b, const Val& r) {
  using fused::Op;
  const std::string& op = e.text;
  const Type &ta = a.type, &tb = b.type;
  const bool sa = ta.is_scalar(), sb = tb.is_scalar();
  const auto with = [](const Val& v, auto f) { return Tracer::view(v, f); };
  if (op == "+" || op == "-" || op == ".*" || op == "./" || op == ".^" || op == "^" || ((op == "*" || op == "/") && (sa || sb))) {
    const int64_t dims = std::max(a.t.dim(), b.t.dim());
    const auto up = [dims](const at::Tensor& t) { return lift(t, dims); };
    const Op f = op == "+" ? Op::add : op == "-" ? Op::sub : (op == ".*" || op == "*") ? Op::mul
               : (op == "./" || op == "/") ? Op::div : Op::pow;
    return tracer_->binary(f, with(a, up), with(b, up), r.t, e.type);
  }
  if (op == "*") {
    const auto last_first = [](const at::Tensor& t) { return t.transpose(-1, -2); };
    if (ta.base == Base::row_vector && tb.base == Base::vector) return tracer_->binary(Op::dot, a, b, r.t, e.type);
    if (ta.base == Base::vector && tb.base == Base::row_vector)
      return tracer_->binary(Op::mul, with(a, [](const at::Tensor& t) { return t.unsqueeze(-1); }),
                             with(b, [](const at::Tensor& t) { return t.unsqueeze(-2); }), r.t, e.type);
    if (ta.base == Base::matrix && tb.base == Base::vector)
      return tracer_->binary(Op::dot, a, with(b, [](const at::Tensor& t) { return t.unsqueeze(-2); }), r.t, e.type);
    if (ta.base == Base::row_vector && tb.base == Base::matrix)
      return tracer_->binary(Op::dot, with(a, [](const at::Tensor& t) { return t.unsqueeze(-2); }), with(b, last_first),
                             r.t, e.type);
    if (ta.base == Base::matrix && tb.base == Base::matrix)
      return tracer_->binary(Op::dot, with(a, [](const at::Tensor& t) { return t.unsqueeze(-2); }),
                             with(b, [&](const at::Tensor& t) { return last_first(t).unsqueeze(-3); }), r.t, e.type);
  }
  Tracer::abort("the operator '" + op + "' on values that depend on parameters");
}

Val Interpreter::binary_of(const Expr& e, const Val& a, const Val& b) {
  const std::string& op = e.text;
  const bool data_only = a.data_only && b.data_only;
  const Type &ta = a.type, &tb = b.type;
  const bool ints = e.type.base == Base::int_;
  at::Tensor x = ints ? a.t : as_real(a, context_.dtype), y = ints ? b.t : as_real(b, context_.dtype);
  if (op == "&&" || op == "||" || op == "==" || op == "!=" || op == "<" || op == "<=" || op == ">" || op == ">=") {
    if (ta.base != tb.base) {
      x = as_real(a, context_.dtype);
      y = as_real(b, context_.dtype);
    }
    at::Tensor r;
    if (op == "&&") r = (x != 0) & (y != 0);
    else if (op == "||") r = (x != 0) | (y != 0);
    else if (op == "==") r = x == y;
    else if (op == "!=") r = x != y;
    else if (op == "<") r = x < y;
    else if (op == "<=") r = x <= y;
    else if (op == ">") r = x > y;
    else r = x >= y;
    return {r.to(at::kLong), e.type, data_only};
  }
  const bool sa = ta.is_scalar(), sb = tb.is_scalar();
  auto lifted = [&]() {
    if (x.dim() < y.dim()) x = lift(x, y.dim());
    if (y.dim() < x.dim()) y = lift(y, x.dim());
  };
  try {
    if (op == "+" || op == "-" || op == ".*" || op == "./" || op == ".^" || (op == "*" && (sa || sb)) ||
        (op == "/" && (sa || sb))) {
      lifted();
      if (op == "+") return {x + y, e.type, data_only};
      if (op == "-") return {x - y, e.type, data_only};
      if (op == ".*" || op == "*") return {x * y, e.type, data_only};
      if (op == ".^") return {at::pow(x, y), e.type, data_only};
      if (ints) {
        if ((y == 0).any().item<bool>()) fail(e.loc, "integer division by zero");
        return {at::div(x, y, "trunc"), e.type, data_only};
      }
      return {x / y, e.type, data_only};
    }
    if (op == "%" || op == "%/%") {
      if ((y == 0).any().item<bool>()) fail(e.loc, "integer division by zero");
      return {op == "%" ? at::fmod(x, y) : at::div(x, y, "trunc"), e.type, data_only};
    }
    if (op == "^") return {at::pow(x, y), e.type, data_only};
    if (op == "*") {
      if (ta.base == Base::row_vector && tb.base == Base::vector) return {(x * y).sum(-1), e.type, data_only};
      if (ta.base == Base::vector && tb.base == Base::row_vector)
        return {x.unsqueeze(-1) * y.unsqueeze(-2), e.type, data_only};
      if (ta.base == Base::matrix && tb.base == Base::vector)
        return {at::matmul(x, y.unsqueeze(-1)).squeeze(-1), e.type, data_only};
      if (ta.base == Base::row_vector && tb.base == Base::matrix)
        return {at::matmul(x.unsqueeze(-2), y).squeeze(-2), e.type, data_only};
      return {at::matmul(x, y), e.type, data_only};
    }
    if (op == "\\") {
      if (tb.base == Base::vector) return {at::linalg_solve(x, y.unsqueeze(-1)).squeeze(-1), e.type, data_only};
      return {at::linalg_solve(x, y), e.type, data_only};
    }
  } catch (const ProgramError&) {
    throw;
  } catch (const std::exception& ex) {
    const std::string what = ex.what();
    if (what.find("size") != std::string::npos)
      fail(e.loc, "'" + op + "' cannot combine sizes " + shape_text(a.t.sizes()) + " and " + shape_text(b.t.sizes()));
    fail(e.loc, "'" + op + "': " + what.substr(0, what.find('\n')));
  }
  fail(e.loc, "the operator '" + op + "' is not supported here");
}

Val Interpreter::index(const Expr& e) {
  const Expr& base = *e.args[0];
  bool copy = false;  // an element of a variable that may be written later is copied
  Val v;
  if (base.kind == Expr::Kind::name) {
    const Variable& var = lookup(base.text, base.loc);
    v = var.value;
    copy = !var.constant;
  } else {
    v = evaluate(base);
  }
  at::Tensor t = v.t;
  at::Tensor ids = traced(v) ? v.ids : at::Tensor();  // moved as t is
  bool data_only = v.data_only;
  int64_t dim = 1;
  // A minibatch's tape (trace.hpp): an index read from the rows moves an index node.
  const auto by_rows = [&](const Val& iv, const at::Tensor& moved) {
    if (dim != 1) Tracer::abort("an index read from the rows after a slice");
    ids = tracer_->index_by_rows(t, ids, iv, iv.t.reshape({-1}) - 1, moved);
    t = moved;
    data_only = false;
  };
  for (const auto& ix : e.indices) {
    if (dim >= t.dim()) fail(e.loc, "too many indexes");
    const int64_t size = t.size(dim);
    switch (ix.kind) {
      case Index::Kind::single: {
        const Val iv = evaluate(*ix.lo);
        if (traced(iv)) {
          const at::Tensor flat = iv.t.reshape({-1});
          if (iv.t.size(0) > 1) {
            by_rows(iv, gather_rows(t, dim, flat, ix.lo->loc));
          } else {
            const int64_t i = flat[0].item<int64_t>();
            if (i < 1 || i > size)
              fail(ix.lo->loc, "index " + std::to_string(i) + " is out of range (1 to " + std::to_string(size) + ")");
            by_rows(iv, t.select(dim, i - 1));
          }
          break;
        }
        if (iv.data_only && iv.t.size(0) > 1) {  // a vectorised loop's index: one per row
          t = gather_rows(t, dim, iv.t.reshape({-1}), ix.lo->loc);
          if (ids.defined()) ids = gather_rows(ids, dim, iv.t.reshape({-1}), ix.lo->loc);
          break;
        }
        const int64_t i = data_int(iv, ix.lo->loc, "an index");
        if (i < 1 || i > size)
          fail(ix.lo->loc, "index " + std::to_string(i) + " is out of range (1 to " + std::to_string(size) + ")");
        t = t.select(dim, i - 1);
        if (ids.defined()) ids = ids.select(dim, i - 1);
        break;
      }
      case Index::Kind::all: ++dim; break;
      case Index::Kind::lower:
      case Index::Kind::upper:
      case Index::Kind::range: {
        t = narrow_to(t, dim, ix, e.loc, "");
        if (ids.defined()) ids = narrow_to(ids, dim, ix, e.loc, "");
        ++dim;
        break;
      }
      case Index::Kind::multi: {
        const Val iv = evaluate(*ix.lo);
        if (traced(iv)) {
          if (iv.t.size(0) != 1) Tracer::abort("a multi-index read from the rows in a vectorised loop");
          const at::Tensor flat = iv.t.reshape({-1});
          if (flat.numel() > 0 && (flat.min().item<int64_t>() < 1 || flat.max().item<int64_t>() > size))
            fail(ix.lo->loc, "a multi-index is out of range (1 to " + std::to_string(size) + ")");
          by_rows(iv, t.index_select(dim, flat - 1));
          ++dim;
          break;
        }
        const at::Tensor flat = multi_index(ix, iv, size, "");
        t = t.index_select(dim, flat - 1);
        if (ids.defined()) ids = ids.index_select(dim, flat - 1);
        ++dim;
        break;
      }
    }
  }
  // A copy, so that later writes into the variable leave this value alone.
  if (copy) t = t.clone();
  Val out{t, e.type, data_only};
  if (ids.defined()) out.ids = ids.clone();
  return out;
}

Val Interpreter::call(const Expr& e) {
  const std::string& name = e.text;
  std::vector<Val> args;
  for (const auto& a : e.args) args.push_back(evaluate(*a));
  if (const auto it = functions_.find(name); it != functions_.end()) return call_user(*it->second, std::move(args), e.loc);
  for (const char* sfx : {"_lpdf", "_lupdf", "_lpmf", "_lupmf"}) {
    const size_t n = std::char_traits<char>::length(sfx);
    if (name.size() > n && name.compare(name.size() - n, n, sfx) == 0) {
      Val lp = density_value(name.substr(0, name.size() - n), e.loc, std::move(args));
      lp.type = e.type;
      return lp;
    }
  }
  if (const CdfDef* c = find_cdf(name); c && !functions_.count(name)) {
    const bool data_only = std::all_of(args.begin(), args.end(), [](const Val& a) { return a.data_only; });
    if (tracer_ && !data_only) Tracer::abort("the function '" + name + "' of values that depend on parameters");
    try {
      return {c->evaluate(args, context_), e.type, data_only};
    } catch (const std::exception& ex) {
      const std::string what = ex.what();
      fail(e.loc, name + ": " + what.substr(0, what.find('\n')));
    }
  }
  const Builtin* b = find_builtin(name);
  if (!b) fail(e.loc, "unknown function '" + name + "'");
  try {
    Val out = b->run(args, context_);
    out.type = e.type;
    // Sizes depend on declarations only, never on the parameters' values.
    static const std::set<std::string> kSizes = {"num_elements", "size", "rows", "cols", "dims"};
    if (kSizes.count(name)) {
      out.data_only = true;
      return out;
    }
    if (tracer_ && std::any_of(args.begin(), args.end(), [&](const Val& a) { return traced(a); }) &&
        !trace_builtin(*tracer_, name, *b, args, context_, &out))
      Tracer::abort("the function '" + name + "' of values that depend on parameters");
    return out;
  } catch (const ProgramError&) {
    throw;
  } catch (const std::exception& ex) {
    std::string what = ex.what();
    what = what.substr(0, what.find('\n'));
    fail(e.loc, what.rfind(name + ":", 0) == 0 ? what : name + ": " + what);
  }
}

Val Interpreter::call_user(const Function& f, std::vector<Val> args, const SourceLoc& loc) {
  if (call_depth_ >= kMaxCallDepth)
    fail(loc, "calls nested deeper than " + std::to_string(kMaxCallDepth) + " (unbounded recursion?)");
  std::vector<Scope> saved;
  saved.swap(scopes_);
  scopes_.emplace_back();
  for (size_t i = 0; i < f.params.size(); ++i) scopes_.back()[f.params[i].name] = {convert(args[i], f.params[i].type), true};
  ++call_depth_;
  const at::Tensor saved_target = target_;
  const fused::Tape::Mark mark = tracer_ ? tracer_->tape()->mark() : fused::Tape::Mark{};
  Flow flow;
  try {
    flow = exec_list(f.body, false);
  } catch (...) {
    --call_depth_;
    scopes_.swap(saved);
    throw;
  }
  --call_depth_;
  scopes_.swap(saved);
  target_ = saved_target;
  if (tracer_) {
    const fused::Tape::Mark after = tracer_->tape()->mark();
    if (after.terms != mark.terms || after.sums != mark.sums) Tracer::abort("a function that adds to target");
  }
  if (f.ret.base == Base::void_) return {at::zeros({1}), f.ret, true};
  if (flow != Flow::return_) fail(f.loc, "'" + f.name + "' ended without returning a value");
  Val out = convert(return_value_, f.ret);
  return out;
}

Val Interpreter::density_value(const std::string& dist, const SourceLoc& loc, std::vector<Val> args) {
  for (const char* sfx : {"_lpdf", "_lpmf"}) {
    const auto it = functions_.find(dist + sfx);
    if (it != functions_.end()) return convert(call_user(*it->second, std::move(args), loc), Type{Base::real, 0});
  }
  const bool data_only = std::all_of(args.begin(), args.end(), [](const Val& a) { return a.data_only; });
  at::Tensor lp = density(dist, loc, args);
  if (!tracer_ || data_only) return {std::move(lp), Type{Base::real, 0}, data_only};
  fused::Family family;
  if (!stan_family(dist, &family)) Tracer::abort("the distribution '" + dist + "' of values that depend on parameters");
  standard_normal_arguments(dist, &args);
  return tracer_->density(family, args, std::move(lp));
}

at::Tensor Interpreter::density(const std::string& dist, const SourceLoc& loc, const std::vector<Val>& args) {
  const DistributionDef* d = find_distribution(dist);
  if (!d) fail(loc, "unknown distribution '" + dist + "'");
  try {
    return d->log_density(args, context_);
  } catch (const ProgramError&) {
    throw;
  } catch (const std::exception& ex) {
    std::string what = ex.what();
    fail(loc, dist + ": " + what.substr(0, what.find('\n')));
  }
}

}  // namespace vguide::model::stan
