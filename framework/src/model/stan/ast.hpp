#pragma once
// The Stan reader's syntax tree: what parser.cpp builds, checker.cpp types and
// interpreter.cpp runs. Plain data; expressions carry the type the checker gave them.
#include <memory>
#include <string>
#include <vector>

#include "vguide/model/program.hpp"

namespace vguide::model::stan {

enum class Base { int_, real, vector, row_vector, matrix, void_ };

/// A value's type: a base plus array dims (`array[N, M] vector[K]` is vector, 2).
struct Type {
  Base base = Base::real;
  int array_dims = 0;
  bool operator==(const Type& o) const { return base == o.base && array_dims == o.array_dims; }
  bool operator!=(const Type& o) const { return !(*this == o); }
  bool is_int() const { return base == Base::int_ && array_dims == 0; }
  bool is_real() const { return base == Base::real && array_dims == 0; }
  bool is_scalar() const { return (base == Base::int_ || base == Base::real) && array_dims == 0; }
  /// The element type of one level of indexing.
  int own_dims() const { return base == Base::vector || base == Base::row_vector ? 1 : base == Base::matrix ? 2 : 0; }
};
std::string to_string(const Type& t);

struct Expr;
using ExprP = std::shared_ptr<Expr>;

/// One index of `x[...]`: a single index, `:`, `a:`, `:b`, `a:b`, or an int array.
struct Index {
  enum class Kind { single, all, lower, upper, range, multi } kind = Kind::single;
  ExprP lo, hi;  ///< single / multi use lo
};

struct Expr {
  enum class Kind { int_lit, real_lit, string_lit, name, unary, binary, ternary, call, index, transpose, array_lit, row_vector_lit };
  Kind kind = Kind::int_lit;
  long long int_value = 0;
  double real_value = 0.0;
  std::string text;  ///< name, operator, function or string literal
  std::vector<ExprP> args;
  std::vector<Index> indices;
  SourceLoc loc;
  Type type;                 ///< set by the checker
  bool conditional = false;  ///< a call written with `|` (`normal_lpdf(y | mu, sigma)`)
  /// Depends on literals, data and transformed data only (set by the checker): the
  /// same value in every evaluation once transformed data have run.
  bool constant = false;
};

/// A declared type with its sizes and constraints.
struct DeclType {
  Base base = Base::real;
  /// "", or simplex, ordered, positive_ordered, unit_vector, cholesky_factor_corr,
  /// cholesky_factor_cov, corr_matrix, cov_matrix.
  std::string special;
  std::vector<ExprP> sizes;        ///< vector/row_vector: 1, matrix: 2, special: 1 or 2
  std::vector<ExprP> array_sizes;  ///< outermost first
  ExprP lower, upper, offset, multiplier;
  SourceLoc loc;
  Type type() const { return {base, static_cast<int>(array_sizes.size())}; }
};

struct Stmt;
using StmtP = std::shared_ptr<Stmt>;

struct Stmt {
  enum class Kind {
    decl, assign, tilde, target, for_range, foreach, while_, if_, block, break_, continue_, return_, print,
    reject, call, empty
  };
  Kind kind = Kind::empty;
  SourceLoc loc;
  // decl
  DeclType decl_type;
  std::string name;  ///< decl / assign target / loop variable
  SourceLoc name_loc;
  ExprP value;  ///< decl initialiser, assign rhs, tilde lhs, target term, return value, call, loop bound/lo
  // assign
  std::vector<Index> indices;
  std::string op;  ///< "=", "+=", "-=", "*=", "/=", ".*=", "./="
  Type target_type;  ///< assign: the type of the (indexed) target, set by the checker
  // tilde: value ~ dist(args) T[lo, hi]
  std::string dist;
  SourceLoc dist_loc;
  std::vector<ExprP> args;  ///< tilde args, print/reject args
  ExprP hi;                 ///< for_range upper bound
  ExprP cond;               ///< while / if
  std::vector<StmtP> body;  ///< block / loop body / if branch
  std::vector<StmtP> else_body;
  bool has_else = false;
  /// for_range: its iterations may run at once (checker.cpp decides).
  bool vectorisable = false;
};

struct Param {
  Type type;
  bool data_only = false;
  std::string name;
  SourceLoc loc;
};

struct Function {
  Type ret;  ///< Base::void_ for void
  std::string name;
  std::vector<Param> params;
  std::vector<StmtP> body;
  bool defined = false;  ///< false for a forward declaration
  SourceLoc loc;
};

enum class BlockKind { functions, data, transformed_data, parameters, transformed_parameters, model, generated_quantities };

struct StanAst {
  std::vector<Function> functions;
  std::vector<StmtP> data;  ///< declarations only
  std::vector<StmtP> transformed_data;
  std::vector<StmtP> parameters;  ///< declarations only
  std::vector<StmtP> transformed_parameters;
  std::vector<StmtP> model;
  std::vector<StmtP> generated_quantities;
};

}  // namespace vguide::model::stan

namespace vguide::model {
/// What parse_stan returns: the checked tree and the source for located errors.
struct StanProgram {
  ProgramFile file;  ///< filename and lines (the rest unused)
  stan::StanAst ast;
};
}  // namespace vguide::model
