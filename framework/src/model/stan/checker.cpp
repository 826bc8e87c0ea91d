// Names and types of a Stan program: every expression gets its Type, every name a
// declaration, every call a signature; what Stan refuses, or vguide does not
// support, is a located error here, before any data are read.
#include <map>
#include <optional>
#include <set>

#include "library.hpp"
#include "parser.hpp"

namespace vguide::model::stan {

std::string to_string(const Type& t) {
  static const char* const kNames[] = {"int", "real", "vector", "row_vector", "matrix", "void"};
  std::string s = kNames[static_cast<int>(t.base)];
  if (t.array_dims == 0) return s;
  return "array[" + std::string(static_cast<size_t>(t.array_dims - 1), ',') + "] " + s;
}

namespace {

// "a real", "an int", "an array[] vector".
std::string a(const Type& t) {
  const std::string s = to_string(t);
  return (s[0] == 'i' || s[0] == 'a' ? "an " : "a ") + s;
}

struct Symbol {
  Type type;
  SourceLoc loc;
  BlockKind block;
  bool assignable = false;
  bool loop_variable = false;
};

bool assignable_from(const Type& to, const Type& from) {
  if (to == from) return true;
  return to.base == Base::real && from.base == Base::int_ && to.array_dims == from.array_dims;
}

bool numeric(const Type& t) { return t.array_dims == 0 && t.base != Base::void_; }
bool container(const Type& t) { return t.array_dims == 0 && t.own_dims() > 0; }

std::optional<Type> binary_type(const std::string& op, const Type& a, const Type& b) {
  const Type real{Base::real, 0}, integer{Base::int_, 0};
  if (!numeric(a) || !numeric(b)) return std::nullopt;
  const bool sa = a.is_scalar(), sb = b.is_scalar();
  if (op == "&&" || op == "||" || op == "==" || op == "!=" || op == "<" || op == "<=" || op == ">" || op == ">=") {
    if (sa && sb) return integer;
    return std::nullopt;
  }
  if (op == "%" || op == "%/%") {
    if (a.is_int() && b.is_int()) return integer;
    return std::nullopt;
  }
  if (op == "^") {
    if (sa && sb) return real;
    return std::nullopt;
  }
  if (sa && sb) return a.is_int() && b.is_int() && op != ".^" ? integer : real;
  if (op == "+" || op == "-" || op == ".*" || op == "./" || op == ".^") {
    if (sa) return Type{b.base, 0};
    if (sb) return Type{a.base, 0};
    if (a.base == b.base) return a;
    return std::nullopt;
  }
  if (op == "*") {
    if (sa) return Type{b.base, 0};
    if (sb) return Type{a.base, 0};
    if (a.base == Base::row_vector && b.base == Base::vector) return real;
    if (a.base == Base::vector && b.base == Base::row_vector) return Type{Base::matrix, 0};
    if (a.base == Base::matrix && b.base == Base::vector) return Type{Base::vector, 0};
    if (a.base == Base::row_vector && b.base == Base::matrix) return Type{Base::row_vector, 0};
    if (a.base == Base::matrix && b.base == Base::matrix) return Type{Base::matrix, 0};
    return std::nullopt;
  }
  if (op == "/") {
    if (sb) return Type{a.base, 0};
    if (sa) return Type{b.base, 0};
    return std::nullopt;
  }
  if (op == "\\") {
    if (a.base == Base::matrix && (b.base == Base::vector || b.base == Base::matrix)) return Type{b.base, 0};
    return std::nullopt;
  }
  return std::nullopt;
}

std::string type_list(const std::vector<Type>& ts) {
  std::string s = "(";
  for (size_t i = 0; i < ts.size(); ++i) s += (i ? ", " : "") + to_string(ts[i]);
  return s + ")";
}

std::string count_text(int n, const char* what) {
  return std::to_string(n) + " " + what + (n == 1 ? "" : "s");
}

class Checker {
 public:
  Checker(const ProgramFile& file, StanAst& ast) : file_(file), ast_(ast) {}

  void run() {
    for (auto& f : ast_.functions) declare_function(f);
    for (auto& f : ast_.functions)
      if (f.defined) check_function(f);
    for (const auto& [name, f] : functions_)
      if (!f->defined) fail(f->loc, "the function '" + name + "' is declared but never defined");
    scopes_.emplace_back();
    run_block(BlockKind::data, ast_.data);
    run_block(BlockKind::transformed_data, ast_.transformed_data);
    run_block(BlockKind::parameters, ast_.parameters);
    run_block(BlockKind::transformed_parameters, ast_.transformed_parameters);
    // The model block's variables are its own.
    scopes_.emplace_back();
    run_block(BlockKind::model, ast_.model);
    scopes_.pop_back();
    run_block(BlockKind::generated_quantities, ast_.generated_quantities);
  }

 private:
  [[noreturn]] void fail(const SourceLoc& loc, const std::string& message) const {
    throw ProgramError(file_, loc, message);
  }

  // ---- functions -----------------------------------------------------------------------
  void declare_function(Function& f) {
    if (find_builtin(f.name) || find_distribution(f.name))
      fail(f.loc, "'" + f.name + "' is a built-in function and cannot be redefined");
    for (const char* sfx : {"_lpdf", "_lpmf", "_lupdf", "_lupmf"})
      if (ends_with(f.name, sfx) && find_distribution(f.name.substr(0, f.name.size() - std::char_traits<char>::length(sfx))))
        fail(f.loc, "'" + f.name + "' is a built-in density and cannot be redefined");
    const auto it = functions_.find(f.name);
    if (it != functions_.end()) {
      Function& earlier = *it->second;
      if (earlier.defined && f.defined) fail(f.loc, "the function '" + f.name + "' is defined twice (overloads are not supported)");
      bool same = earlier.ret == f.ret && earlier.params.size() == f.params.size();
      for (size_t i = 0; same && i < f.params.size(); ++i) same = earlier.params[i].type == f.params[i].type;
      if (!same) fail(f.loc, "the function '" + f.name + "' does not match its earlier declaration (overloads are not supported)");
      if (f.defined) it->second = &f;
      return;
    }
    const bool density = ends_with(f.name, "_lpdf") || ends_with(f.name, "_lpmf");
    if (density && (f.params.empty() || f.ret != Type{Base::real, 0}))
      fail(f.loc, "'" + f.name + "' must return real and take the variate as its first argument");
    if (ends_with(f.name, "_rng") || ends_with(f.name, "_lp"))
      fail(f.loc, "user-defined " + std::string(ends_with(f.name, "_rng") ? "_rng" : "_lp") +
                      " functions are not supported");
    functions_[f.name] = &f;
  }

  void check_function(Function& f) {
    scopes_.emplace_back();
    for (const auto& p : f.params) declare(p.name, p.loc, {p.type, p.loc, BlockKind::functions, false, false});
    current_function_ = &f;
    block_ = BlockKind::functions;
    statements(f.body);
    if (f.ret.base != Base::void_ && !always_returns(f.body))
      fail(f.loc, "the function '" + f.name + "' can end without returning a value");
    current_function_ = nullptr;
    scopes_.pop_back();
  }

  static bool always_returns(const std::vector<StmtP>& body) {
    for (const auto& s : body) {
      if (s->kind == Stmt::Kind::return_ || s->kind == Stmt::Kind::reject) return true;
      if (s->kind == Stmt::Kind::block && always_returns(s->body)) return true;
      if (s->kind == Stmt::Kind::if_ && s->has_else && always_returns(s->body) && always_returns(s->else_body))
        return true;
    }
    return false;
  }

  static bool ends_with(const std::string& s, const std::string& suffix) {
    return s.size() > suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
  }

  // ---- scopes --------------------------------------------------------------------------
  void declare(const std::string& name, const SourceLoc& loc, Symbol sym) {
    // Stan lets a variable share a library function's name (a call is told apart by
    // its parentheses), not a user-defined function's.
    if (functions_.count(name)) fail(loc, "'" + name + "' is the name of a function");
    static const std::set<std::string> kReserved = {"for", "in", "while", "if", "else", "return", "break", "continue",
                                                    "target", "lower", "upper", "offset", "multiplier", "void",
                                                    "int", "real", "vector", "row_vector", "matrix", "array", "data"};
    if (kReserved.count(name)) fail(loc, "'" + name + "' is a reserved word");
    if (ends_with(name, "__")) fail(loc, "names ending in '__' are reserved");
    for (const auto& scope : scopes_) {
      const auto it = scope.find(name);
      if (it != scope.end())
        fail(loc, "'" + name + "' is already declared (line " + std::to_string(it->second.loc.line) + ")");
    }
    scopes_.back()[name] = sym;
  }

  const Symbol& lookup(const std::string& name, const SourceLoc& loc) const {
    for (auto it = scopes_.rbegin(); it != scopes_.rend(); ++it) {
      const auto found = it->find(name);
      if (found != it->end()) return found->second;
    }
    if (functions_.count(name) || find_builtin(name))
      fail(loc, "'" + name + "' is a function; call it with (...)");
    fail(loc, "'" + name + "' is not declared");
  }

  // ---- blocks and statements ------------------------------------------------------------
  void run_block(BlockKind kind, std::vector<StmtP>& statements_of_block) {
    block_ = kind;
    for (auto& s : statements_of_block) statement(*s, true);
  }

  void statements(std::vector<StmtP>& list) {
    for (auto& s : list) statement(*s, false);
  }

  void scoped(std::vector<StmtP>& list) {
    scopes_.emplace_back();
    statements(list);
    scopes_.pop_back();
  }

  void declaration(Stmt& s, bool top_level) {
    DeclType& d = s.decl_type;
    for (auto& e : d.array_sizes) size_expr(*e);
    for (auto& e : d.sizes) size_expr(*e);
    for (ExprP* b : {&d.lower, &d.upper, &d.offset, &d.multiplier}) {
      if (!*b) continue;
      expr(**b);
      if (!(*b)->type.is_scalar())
        fail((*b)->loc, "a bound must be an int or a real here; " + a((*b)->type) + " bound is not supported");
    }
    if (d.base == Base::int_ && block_ == BlockKind::parameters) fail(s.loc, "parameters cannot be integers");
    const bool constrained = d.lower || d.upper || !d.special.empty();
    if (constrained && !top_level) fail(s.loc, "local variables cannot have constraints");
    if (block_ == BlockKind::model && (d.lower || d.upper)) fail(s.loc, "model block variables cannot have constraints");
    if (s.value) {
      if (block_ == BlockKind::data || block_ == BlockKind::parameters)
        fail(s.value->loc, "variables of the " + block_name() + " block cannot be given a value");
      expr(*s.value);
      if (!assignable_from(d.type(), s.value->type))
        fail(s.value->loc, "cannot assign " + a(s.value->type) + " to '" + s.name + "', " +
                               a(d.type()));
    }
    const bool assignable = block_ != BlockKind::data && block_ != BlockKind::parameters;
    declare(s.name, s.name_loc, {d.type(), s.name_loc, block_, assignable, false});
    // Later blocks cannot assign this block's variables.
    if (top_level) top_level_.insert(s.name);
  }

  std::string block_name() const {
    static const char* const kNames[] = {"functions",  "data",  "transformed data",     "parameters",
                                         "transformed parameters", "model", "generated quantities"};
    return kNames[static_cast<int>(block_)];
  }

  void size_expr(Expr& e) {
    expr(e);
    if (!e.type.is_int()) fail(e.loc, "a size must be an int, but this is " + a(e.type));
  }

  void condition(Expr& e) {
    expr(e);
    if (!e.type.is_scalar()) fail(e.loc, "a condition must be an int or a real, but this is " + a(e.type));
  }

  void statement(Stmt& s, bool top_level) {
    switch (s.kind) {
      case Stmt::Kind::decl: declaration(s, top_level); return;
      case Stmt::Kind::empty: return;
      case Stmt::Kind::block: scoped(s.body); return;
      case Stmt::Kind::assign: assignment(s); return;
      case Stmt::Kind::tilde: tilde(s); return;
      case Stmt::Kind::target:
        if (block_ != BlockKind::model) fail(s.loc, "target += is only allowed in the model block");
        expr(*s.value);
        if (!numeric(s.value->type) && !(s.value->type.array_dims > 0 && s.value->type.base != Base::void_))
          fail(s.value->loc, "target += needs a number, but this is " + a(s.value->type));
        return;
      case Stmt::Kind::for_range: {
        std::set<std::string> own{s.name};
        s.vectorisable = independent_iterations(s.body, own);
        size_expr_named(*s.value, "a loop bound");
        size_expr_named(*s.hi, "a loop bound");
        scopes_.emplace_back();
        declare(s.name, s.name_loc, {Type{Base::int_, 0}, s.name_loc, block_, false, true});
        loop(s.body);
        scopes_.pop_back();
        return;
      }
      case Stmt::Kind::foreach: {
        expr(*s.value);
        const Type& t = s.value->type;
        Type element;
        if (t.array_dims > 0) element = Type{t.base, t.array_dims - 1};
        else if (container(t)) element = Type{Base::real, 0};
        else fail(s.value->loc, "a foreach loop needs an array, vector or matrix, but this is " + a(t));
        scopes_.emplace_back();
        declare(s.name, s.name_loc, {element, s.name_loc, block_, false, true});
        loop(s.body);
        scopes_.pop_back();
        return;
      }
      case Stmt::Kind::while_:
        condition(*s.cond);
        loop(s.body);
        return;
      case Stmt::Kind::if_:
        condition(*s.cond);
        scoped(s.body);
        if (s.has_else) scoped(s.else_body);
        return;
      case Stmt::Kind::break_:
      case Stmt::Kind::continue_:
        if (loops_ == 0) fail(s.loc, std::string(s.kind == Stmt::Kind::break_ ? "break" : "continue") + " outside a loop");
        return;
      case Stmt::Kind::return_: {
        if (!current_function_) fail(s.loc, "return outside a function");
        const Type& want = current_function_->ret;
        if (!s.value) {
          if (want.base != Base::void_) fail(s.loc, "this function must return " + a(want));
          return;
        }
        expr(*s.value);
        if (want.base == Base::void_) fail(s.value->loc, "a void function cannot return a value");
        if (!assignable_from(want, s.value->type))
          fail(s.value->loc, "returns " + a(s.value->type) + ", but '" + current_function_->name +
                                 "' returns " + a(want));
        return;
      }
      case Stmt::Kind::print:
      case Stmt::Kind::reject:
        for (auto& a : s.args)
          if (a->kind != Expr::Kind::string_lit) expr(*a);
        return;
      case Stmt::Kind::call: {
        expr(*s.value);
        if (s.value->type.base != Base::void_)
          fail(s.value->loc, "the value of '" + s.value->text + "' is not used (only void functions are statements)");
        return;
      }
    }
  }

  // The iterations of a loop with this body may run at once: it assigns only what it
  // declares itself and has no statement whose effect is per iteration in order
  // (print, reject, break, continue, return, a void call, while).
  static bool independent_iterations(const std::vector<StmtP>& body, std::set<std::string>& own) {
    for (const auto& st : body) {
      switch (st->kind) {
        case Stmt::Kind::decl: own.insert(st->name); break;
        case Stmt::Kind::assign:
          if (!own.count(st->name)) return false;
          break;
        case Stmt::Kind::tilde:
        case Stmt::Kind::target:
        case Stmt::Kind::empty: break;
        case Stmt::Kind::block:
          if (!independent_iterations(st->body, own)) return false;
          break;
        case Stmt::Kind::if_:
          if (!independent_iterations(st->body, own) || !independent_iterations(st->else_body, own)) return false;
          break;
        case Stmt::Kind::for_range:
        case Stmt::Kind::foreach:
          own.insert(st->name);
          if (!independent_iterations(st->body, own)) return false;
          break;
        default: return false;
      }
    }
    return true;
  }

  void size_expr_named(Expr& e, const char* what) {
    expr(e);
    if (!e.type.is_int()) fail(e.loc, std::string(what) + " must be an int, but this is " + a(e.type));
  }

  void loop(std::vector<StmtP>& body) {
    ++loops_;
    scoped(body);
    --loops_;
  }

  void assignment(Stmt& s) {
    const Symbol& sym = lookup(s.name, s.name_loc);
    if (sym.loop_variable) fail(s.name_loc, "the loop variable '" + s.name + "' cannot be assigned");
    if (!sym.assignable || (sym.block != block_ && sym.block != BlockKind::functions && top_level_.count(s.name)))
      fail(s.name_loc, "'" + s.name + "' belongs to the " + block_name_of(sym.block) + " block and cannot be assigned here");
    if (sym.block == BlockKind::functions && current_function_) {
      for (const auto& p : current_function_->params)
        if (p.name == s.name) fail(s.name_loc, "the argument '" + s.name + "' cannot be assigned");
    }
    Type target = sym.type;
    if (!s.indices.empty()) target = indexed_type(sym.type, s.indices, s.name_loc);
    s.target_type = target;
    expr(*s.value);
    if (s.op == "=") {
      if (!assignable_from(target, s.value->type))
        fail(s.value->loc, "cannot assign " + a(s.value->type) + " to '" + s.name +
                               (s.indices.empty() ? "" : "[...]") + "', " + a(target));
      return;
    }
    const std::string op = s.op.substr(0, s.op.size() - 1);
    const auto result = binary_type(op, target, s.value->type);
    if (!result || !assignable_from(target, *result))
      fail(s.value->loc, "'" + s.op + "' cannot combine " + a(target) + " with " + a(s.value->type));
  }

  static std::string block_name_of(BlockKind b) {
    static const char* const kNames[] = {"functions",  "data",  "transformed data",     "parameters",
                                         "transformed parameters", "model", "generated quantities"};
    return kNames[static_cast<int>(b)];
  }

  void tilde(Stmt& s) {
    if (block_ != BlockKind::model && !(block_ == BlockKind::functions && current_function_ &&
                                        ends_with(current_function_->name, "_lp")))
      fail(s.loc, "'~' statements are only allowed in the model block");
    expr(*s.value);
    std::vector<Type> types{s.value->type};
    for (auto& a : s.args) {
      expr(*a);
      types.push_back(a->type);
    }
    check_density_call(s.dist, s.dist_loc, types, /*suffix=*/"");
  }

  // A density by name: a library distribution or a user _lpdf/_lpmf.
  void check_density_call(const std::string& dist, const SourceLoc& loc, const std::vector<Type>& types,
                          const std::string& suffix) {
    if (const DistributionDef* d = find_distribution(dist)) {
      if (!suffix.empty()) {
        const bool mass = suffix == "_lpmf" || suffix == "_lupmf";
        if (mass != d->discrete)
          fail(loc, "'" + dist + suffix + "': " + dist + " is " + (d->discrete ? "discrete; write " + dist + "_lpmf"
                                                                                 : "continuous; write " + dist + "_lpdf"));
      }
      const int params = static_cast<int>(types.size()) - 1;
      if (params < d->min_params || params > d->max_params)
        fail(loc, dist + " takes " +
                      (d->min_params == d->max_params ? count_text(d->min_params, "parameter")
                                                      : std::to_string(d->min_params) + " to " +
                                                            count_text(d->max_params, "parameter")) +
                      ", but " + std::to_string(params) + (params == 1 ? " was" : " were") + " given");
      if (!d->type(types))
        fail(loc, "no version of " + dist + " takes " + type_list(types) + " (variate first)");
      return;
    }
    for (const char* sfx : {"_lpdf", "_lpmf"}) {
      const auto it = functions_.find(dist + sfx);
      if (it != functions_.end()) {
        check_user_call(*it->second, types, loc);
        return;
      }
    }
    fail(loc, "unknown distribution '" + dist + "'");
  }

  void check_user_call(const Function& f, const std::vector<Type>& types, const SourceLoc& loc) {
    if (types.size() != f.params.size())
      fail(loc, f.name + " takes " + count_text(static_cast<int>(f.params.size()), "argument") + ", but " +
                    std::to_string(types.size()) + (types.size() == 1 ? " was" : " were") + " given");
    for (size_t i = 0; i < types.size(); ++i)
      if (!assignable_from(f.params[i].type, types[i]))
        fail(loc, f.name + "'s argument " + std::to_string(i + 1) + " ('" + f.params[i].name + "') is " +
                      a(f.params[i].type) + ", but " + a(types[i]) + " was given");
  }

  // ---- expressions ---------------------------------------------------------------------
  Type indexed_type(Type t, std::vector<Index>& indices, const SourceLoc& loc) {
    int remaining_array = t.array_dims;
    int own = t.own_dims();
    int own_kept = 0, own_seen = 0;
    bool matrix_row_single = false;
    int array_kept = 0;
    for (auto& ix : indices) {
      bool single = false;
      for (ExprP* e : {&ix.lo, &ix.hi}) {
        if (!*e) continue;
        expr(**e);
      }
      if (ix.kind == Index::Kind::single) {
        const Type& it = ix.lo->type;
        if (it.is_int()) single = true;
        else if (it.base == Base::int_ && it.array_dims == 1) ix.kind = Index::Kind::multi;
        else fail(ix.lo->loc, "an index must be an int or an array of ints, but this is " + a(it));
      } else {
        for (ExprP* e : {&ix.lo, &ix.hi})
          if (*e && !(*e)->type.is_int())
            fail((*e)->loc, "a range bound must be an int, but this is " + a((*e)->type));
      }
      if (remaining_array > 0) {
        --remaining_array;
        if (!single) ++array_kept;
      } else if (own_seen < own) {
        if (own == 2 && own_seen == 0 && single) matrix_row_single = true;
        if (!single) ++own_kept;
        ++own_seen;
      } else {
        fail(loc, "too many indexes for " + a(t));
      }
    }
    Type out;
    out.array_dims = array_kept + remaining_array;
    if (own == 0) {
      out.base = t.base;
    } else if (own == 1) {
      out.base = own_seen == 1 && own_kept == 0 ? Base::real : t.base;
    } else if (own_seen == 0) {
      out.base = Base::matrix;
    } else if (own_seen == 1) {
      out.base = matrix_row_single ? Base::row_vector : Base::matrix;
    } else {  // both matrix dims indexed
      if (own_kept == 0) out.base = Base::real;
      else if (own_kept == 2) out.base = Base::matrix;
      else out.base = matrix_row_single ? Base::row_vector : Base::vector;
    }
    return out;
  }

  void expr(Expr& e) {
    typed(e);
    e.constant = constant(e);
  }

  bool constant(const Expr& e) const {
    switch (e.kind) {
      case Expr::Kind::int_lit:
      case Expr::Kind::real_lit: return true;
      case Expr::Kind::string_lit: return false;
      case Expr::Kind::name: {
        if (!top_level_.count(e.text)) return false;
        const Symbol& sym = lookup(e.text, e.loc);
        return !sym.loop_variable && (sym.block == BlockKind::data || sym.block == BlockKind::transformed_data);
      }
      case Expr::Kind::call: {
        if (functions_.count(e.text)) return false;
        const Builtin* b = find_builtin(e.text);
        if (b && b->rng) return false;
        break;
      }
      default: break;
    }
    for (const auto& a : e.args)
      if (!a->constant) return false;
    for (const auto& ix : e.indices)
      for (const auto* p : {&ix.lo, &ix.hi})
        if (*p && !(*p)->constant) return false;
    return true;
  }

  void typed(Expr& e) {
    switch (e.kind) {
      case Expr::Kind::int_lit: e.type = {Base::int_, 0}; return;
      case Expr::Kind::real_lit: e.type = {Base::real, 0}; return;
      case Expr::Kind::string_lit: fail(e.loc, "a string is only allowed in print and reject");
      case Expr::Kind::name: {
        if (e.text == "target") fail(e.loc, "target() is not supported");

        e.type = lookup(e.text, e.loc).type;
        return;
      }
      case Expr::Kind::unary: {
        expr(*e.args[0]);
        const Type& t = e.args[0]->type;
        if (!numeric(t)) fail(e.loc, "'" + e.text + "' cannot apply to " + a(t));
        if (e.text == "!") {
          if (!t.is_scalar()) fail(e.loc, "'!' needs an int or a real, but this is " + a(t));
          e.type = {Base::int_, 0};
        } else {
          e.type = t;
        }
        return;
      }
      case Expr::Kind::binary: {
        expr(*e.args[0]);
        expr(*e.args[1]);
        const auto t = binary_type(e.text, e.args[0]->type, e.args[1]->type);
        if (!t)
          fail(e.loc, "'" + e.text + "' cannot combine " + a(e.args[0]->type) + " with " +
                          a(e.args[1]->type));
        e.type = *t;
        return;
      }
      case Expr::Kind::ternary: {
        condition(*e.args[0]);
        expr(*e.args[1]);
        expr(*e.args[2]);
        const Type &a = e.args[1]->type, &b = e.args[2]->type;
        if (assignable_from(a, b)) e.type = a;
        else if (assignable_from(b, a)) e.type = b;
        else fail(e.loc, "the branches of '?:' differ: " + to_string(a) + " and " + to_string(b));
        return;
      }
      case Expr::Kind::transpose: {
        expr(*e.args[0]);
        const Type& t = e.args[0]->type;
        if (!container(t)) fail(e.loc, "' (transpose) needs a vector, row_vector or matrix, but this is " + a(t));
        e.type = {t.base == Base::vector ? Base::row_vector : t.base == Base::row_vector ? Base::vector : Base::matrix, 0};
        return;
      }
      case Expr::Kind::index: {
        expr(*e.args[0]);
        e.type = indexed_type(e.args[0]->type, e.indices, e.loc);
        return;
      }
      case Expr::Kind::array_lit: {
        Type t;
        for (size_t i = 0; i < e.args.size(); ++i) {
          expr(*e.args[i]);
          const Type& a = e.args[i]->type;
          if (i == 0 || assignable_from(a, t)) t = a;
          else if (!assignable_from(t, a))
            fail(e.args[i]->loc, "the elements of {...} differ: " + to_string(t) + " and " + to_string(a));
        }
        e.type = {t.base, t.array_dims + 1};
        return;
      }
      case Expr::Kind::row_vector_lit: {
        bool rows = false;
        for (size_t i = 0; i < e.args.size(); ++i) {
          expr(*e.args[i]);
          const Type& a = e.args[i]->type;
          const bool row = a == Type{Base::row_vector, 0};
          if (!a.is_scalar() && !row) fail(e.args[i]->loc, "[...] holds reals or row_vectors, but this is " + stan::a(a));
          if (i > 0 && row != rows) fail(e.args[i]->loc, "[...] mixes reals and row_vectors");
          rows = row;
        }
        e.type = {rows ? Base::matrix : Base::row_vector, 0};
        return;
      }
      case Expr::Kind::call: call(e); return;
    }
  }

  void call(Expr& e) {
    std::vector<Type> types;
    for (auto& a : e.args) {
      if (a->kind == Expr::Kind::string_lit) fail(a->loc, "a string is only allowed in print and reject");
      expr(*a);
      types.push_back(a->type);
    }
    const std::string& name = e.text;
    if (name == "target") fail(e.loc, "target() is not supported");
    for (const char* sfx : {"_lpdf", "_lupdf", "_lpmf", "_lupmf"}) {
      if (!ends_with(name, sfx)) continue;
      const std::string dist = name.substr(0, name.size() - std::char_traits<char>::length(sfx));
      const std::string suffix = sfx;
      if (functions_.count(name)) break;  // a user density called by its full name
      if (types.empty()) fail(e.loc, name + " needs the variate as its first argument");
      check_density_call(dist, e.loc, types, suffix);
      e.type = {Base::real, 0};
      return;
    }
    for (const char* sfx : {"_cdf", "_lcdf", "_lccdf"}) {
      if (!ends_with(name, sfx) || functions_.count(name)) continue;
      const CdfDef* c = find_cdf(name);
      if (!c) fail(e.loc, "the function " + name + " is not supported");
      const std::string dist = name.substr(0, name.size() - std::char_traits<char>::length(sfx));
      if (types.empty()) fail(e.loc, name + " needs the variate as its first argument");
      check_density_call(dist, e.loc, types, "");
      e.type = {Base::real, 0};
      return;
    }
    if (e.conditional && !(ends_with(name, "_lpdf") || ends_with(name, "_lpmf") || ends_with(name, "_lupdf") ||
                           ends_with(name, "_lupmf")))
      fail(e.loc, "'|' separates a density's variate from its parameters; '" + name + "' is not a density");
    if (const auto it = functions_.find(name); it != functions_.end()) {
      check_user_call(*it->second, types, e.loc);
      e.type = it->second->ret;
      return;
    }
    const Builtin* b = find_builtin(name);
    if (!b) {
      for (const char* sfx : {"_cdf", "_lcdf", "_lccdf"})
        if (ends_with(name, sfx)) fail(e.loc, "the function " + name + " is not supported");
      fail(e.loc, "unknown function '" + name + "'");
    }
    const int n = static_cast<int>(types.size());
    if (n < b->min_args || n > b->max_args)
      fail(e.loc, name + " takes " +
                      (b->min_args == b->max_args ? count_text(b->min_args, "argument")
                                                  : std::to_string(b->min_args) + " to " + count_text(b->max_args, "argument")) +
                      ", but " + std::to_string(n) + (n == 1 ? " was" : " were") + " given");
    if (b->rng && block_ != BlockKind::transformed_data && block_ != BlockKind::generated_quantities)
      fail(e.loc, name + " is only allowed in transformed data and generated quantities");
    const auto t = b->type(types);
    if (!t) fail(e.loc, "no version of " + name + " takes " + type_list(types));
    e.type = *t;
  }

  const ProgramFile& file_;
  StanAst& ast_;
  std::map<std::string, Function*> functions_;
  std::vector<std::map<std::string, Symbol>> scopes_;
  std::set<std::string> top_level_;
  BlockKind block_ = BlockKind::data;
  const Function* current_function_ = nullptr;
  int loops_ = 0;
};

}  // namespace

void check(const ProgramFile& file, StanAst& ast) { Checker(file, ast).run(); }

}  // namespace vguide::model::stan
