#pragma once
// Runs a checked Stan program's statements over particle-batched values
// (library.hpp's Val). Loop bounds, while conditions and indexes must not depend on
// the parameters (data-bounded loops are the common case and run as written); an
// `if` or `?:` whose condition does runs both ways and each particle keeps its own.
#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <unordered_map>
#include <stdexcept>
#include <string>
#include <vector>

#include "ast.hpp"
#include "library.hpp"

namespace vguide::model::stan {

/// A `reject` ran: the draw (every particle of this evaluation) is rejected.
class Rejected : public std::runtime_error {
 public:
  Rejected(const SourceLoc& loc, const std::string& text) : std::runtime_error(text), loc(loc) {}
  SourceLoc loc;
};

struct Variable {
  Val value;
  /// The tensor may be aliased elsewhere: an indexed write copies it first.
  bool shared = false;
  /// Never written while this block runs (data, transformed data and parameters
  /// after their blocks): reading an element needs no copy.
  bool constant = false;
};

/// The variables visible to a block: one map per nested scope.
using Scope = std::map<std::string, Variable>;

/// The values of constant expressions (Expr::constant), kept across evaluations of
/// one model in one dtype: `y[6:N]` is indexed once, not once per step.
struct ConstantCache {
  std::mutex mutex;
  std::unordered_map<const Expr*, Val> values;
};

class Tracer;

class Interpreter {
 public:
  Interpreter(const StanProgram& program, RunContext& context, std::vector<Scope> globals);

  /// Runs top-level statements of a block; declarations land in the outermost scope.
  void run_block(const std::vector<StmtP>& statements);
  /// `target` so far: (P,).
  const at::Tensor& target() const { return target_; }
  Val evaluate(const Expr& e);
  /// target += lp (summed over every dim but the particle dim).
  void add_target(const at::Tensor& lp, const SourceLoc& loc);
  /// The values of the outermost scope (the block's own variables and the globals).
  const std::vector<Scope>& scopes() const { return scopes_; }
  std::vector<Scope>& scopes() { return scopes_; }
  /// Declares a variable with NaN (reals) or the smallest int, sized by its
  /// declaration.
  Val declared_value(const DeclType& d);
  /// The sizes of a declaration: array sizes, then own sizes.
  std::vector<int64_t> declared_shape(const DeclType& d);
  /// Where constant expressions' values are kept (null: computed every time, as
  /// while transformed data run).
  void set_constant_cache(ConstantCache* cache) { cache_ = cache; }
  /// Print statements left before they are suppressed.
  void set_print_budget(std::atomic<int>* budget) { print_budget_ = budget; }
  /// Records what runs into `tracer`'s tape (trace.hpp); run with one particle.
  void set_tracer(Tracer* tracer) { tracer_ = tracer; }

  [[noreturn]] void fail(const SourceLoc& loc, const std::string& message) const;

 private:
  enum class Flow { normal, break_, continue_, return_ };
  Flow exec(const Stmt& s);
  Flow exec_statement(const Stmt& s);
  Flow exec_list(const std::vector<StmtP>& list, bool new_scope);
  Flow exec_per_particle(const Stmt& s, const at::Tensor& yes);
  Flow iteration(const Stmt& loop, Val value);
  /// `idx`: the evaluated index list `ix`.
  at::Tensor multi_index(const Index& ix, const Val& idx, int64_t size, const std::string& of);
  at::Tensor narrow_to(const at::Tensor& t, int64_t dim, const Index& ix, const SourceLoc& loc, const std::string& of);
  bool run_vectorised(const Stmt& s, int64_t lo, int64_t hi);
  at::Tensor gather_rows(const at::Tensor& t, int64_t dim, const at::Tensor& index, const SourceLoc& loc);
  void declare(const Stmt& s);
  void assign(const Stmt& s);
  Variable& lookup(const std::string& name, const SourceLoc& loc);
  Val evaluate_uncached(const Expr& e);
  Val binary(const Expr& e);
  Val binary_of(const Expr& e, const Val& a, const Val& b);
  Val trace_binary(const Expr& e, const Val& a, const Val& b, const Val& r);
  Val index(const Expr& e);
  Val call(const Expr& e);
  Val call_user(const Function& f, std::vector<Val> args, const SourceLoc& loc);
  /// dist(args[0] | args[1..]) summed per particle: a user-defined `_lpdf`/`_lpmf` or
  /// the library's; while tracing, a density node.
  Val density_value(const std::string& dist, const SourceLoc& loc, std::vector<Val> args);
  /// The library's density only.
  at::Tensor density(const std::string& dist, const SourceLoc& loc, const std::vector<Val>& args);
  Val convert(Val v, const Type& to) const;
  int64_t data_int(const Val& v, const SourceLoc& loc, const char* what) const;
  bool data_condition(const Expr& e);

  const StanProgram& program_;
  RunContext& context_;
  std::vector<Scope> scopes_;
  std::map<std::string, const Function*> functions_;
  at::Tensor target_;
  Val return_value_;
  int call_depth_ = 0;
  bool vectorising_ = false;
  ConstantCache* cache_ = nullptr;
  std::atomic<int>* print_budget_ = nullptr;
  Tracer* tracer_ = nullptr;
  /// While tracing: v depends on the parameters (and so has ids).
  bool traced(const Val& v) const { return tracer_ && !v.data_only; }
  void trace_only_data(const Val& v, const char* what) const;
};

}  // namespace vguide::model::stan
