// StanModel: a checked Stan program bound to its data (stan_model.hpp). The data
// block is read and checked once, transformed data run once; every log_joint call
// runs transformed parameters and the model block over S particles.
#include "vguide/model/stan_model.hpp"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <spdlog/spdlog.h>
#include <torch/csrc/autograd/autograd.h>

#include <chrono>
#include <cmath>
#include <fstream>
#include <mutex>
#include <optional>
#include <set>
#include <sstream>

#include "interpreter.hpp"
#include "parser.hpp"
#include "rows.hpp"
#include "trace.hpp"
#include "vguide/bijector.hpp"
#include "vguide/constraint.hpp"
#include "vguide/model/program_model.hpp"  // sample_rows, stream_rewinder

namespace vguide::model {

using stan::Base;
using stan::DeclType;
using stan::Interpreter;
using stan::mentions;
using stan::RunContext;
using stan::Scope;
using stan::Stmt;
using stan::StmtP;
using stan::Type;
using stan::Val;

std::shared_ptr<const StanProgram> parse_stan(const std::string& text, const std::string& filename) {
  auto program = std::make_shared<StanProgram>();
  program->file.filename = filename;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    program->file.lines.push_back(line);
  }
  try {
    program->ast = stan::parse_syntax(program->file, text);
    stan::check(program->file, program->ast);
  } catch (const ProgramError&) {
    throw;
  } catch (const std::exception& e) {
    throw ProgramError(program->file, {1, 1}, std::string("the program could not be read: ") + e.what());
  }
  return program;
}

std::shared_ptr<const StanProgram> load_stan(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    ProgramFile empty;
    empty.filename = path;
    throw ProgramError(empty, {1, 1}, "cannot read the program file");
  }
  std::ostringstream text;
  text << in.rdbuf();
  return parse_stan(text.str(), path);
}

bool is_stan_path(const std::string& path) {
  return path.size() > 5 && path.compare(path.size() - 5, 5, ".stan") == 0;
}

namespace {

std::string number_text(double v) {
  std::ostringstream s;
  s << v;
  return s.str();
}

// A declaration's constraint as a value, its bounds evaluated now.
// The transformed data's `_rng` stream: the model's seed, kept apart from the guide's
// and the init strategies' streams of the same seed.
constexpr uint64_t kTransformedDataSalt = 0x7dA7a5eedULL;

struct Declared {
  Constraint support;
  std::string text;  ///< as declared, e.g. "lower=0" or "simplex"
  /// corr_matrix: the site is its Cholesky factor (support), the value a correlation matrix.
  bool correlation = false;
};

// Per matrix of v (..., K, K): symmetric, unit diagonal and positive definite, to tol.
at::Tensor is_correlation(const at::Tensor& v, double tol) {
  const at::Tensor symmetric = ((v - v.transpose(-1, -2)).abs() <= tol).flatten(-2).all(-1);
  const at::Tensor unit_diagonal = ((v.diagonal(0, -2, -1) - 1.0).abs() <= tol).all(-1);
  const at::Tensor positive_definite = std::get<1>(at::linalg_cholesky_ex(v)) == 0;
  return symmetric & unit_diagonal & positive_definite;
}

// Whether values of a constrained type (simplex, cov_matrix, ...) keep it, to tol.
at::Tensor keeps(const Declared& c, const at::Tensor& v, double tol) {
  return c.correlation ? is_correlation(v, tol) : c.support.check(v, tol);
}

}  // namespace

struct StanModel::Impl {
  std::shared_ptr<const StanProgram> program;
  std::string filename;
  Scope data;  ///< data and transformed data; reals float64, particle dim 1
  mutable std::mutex mutex;
  mutable std::map<at::ScalarType, Scope> data_by_dtype;
  mutable std::map<at::ScalarType, std::unique_ptr<stan::ConstantCache>> constants;
  mutable std::atomic<int> print_budget{100};
  struct Parameter {
    const Stmt* decl;
    std::vector<int64_t> shape;
    Constraint support;
  };
  std::vector<Parameter> parameters;
  /// Transformed parameters, checked per particle: defined (not NaN) and within
  /// their declared constraint.
  std::vector<std::pair<const Stmt*, Declared>> checked_transformed;
  /// Generated quantities with a declared constraint (bounds of data only).
  std::vector<std::pair<const Stmt*, Declared>> checked_generated;
  /// Set once the constructor's trial evaluation at a random point is done: that
  /// point may break a constraint that the fitted draws keep.
  bool built = false;
  /// The log joint compiled for the fused evaluator (trace.hpp), or null; if null, why.
  std::shared_ptr<const fused::Tape> tape;
  std::string interpreted_because;
  StanEvaluator evaluator = StanEvaluator::automatic;

  /// The rows minibatches and ranks cut (rows.hpp), chosen the first time a fit asks.
  mutable std::once_flag rows_chosen;
  mutable std::optional<stan::RowLayout> rows;
  mutable std::string rows_refusal;
  mutable int64_t row_begin = 0, row_end = 0;  ///< the block of rows covered, once chosen
  mutable int64_t batch = 0;                   ///< < row_end - row_begin: a minibatch
  mutable std::optional<at::Generator> row_stream;
  double row_weight = 1.0;
  /// The data with no rows, and with the block of rows, per dtype.
  mutable std::map<at::ScalarType, Scope> no_rows, block_rows;

  const stan::RowLayout* row_layout(const std::vector<SiteInfo>& sites) const;
  std::string row_sum_problem(const std::vector<SiteInfo>& sites, const stan::RowLayout& layout) const;
  const Scope& cut_data(std::map<at::ScalarType, Scope>& cache, at::ScalarType dtype, int64_t begin, int64_t end) const;
  /// True when the log joint covers other rows than all, or weighs them.
  bool cut() const;
  at::Tensor row_log_joint(const at::Tensor& x, const SiteValues& values) const;
  /// Whether log_joint runs the tape for S particles (any_size: whatever S).
  bool takes_tape(int64_t S, bool any_size) const;
  /// A minibatch's tape: traced over the block's first `batch` rows with the rows as
  /// inputs (trace.hpp) the first time a direct step asks, and refilled with every
  /// batch drawn. Null if it does not trace, then `why`.
  struct BatchTape {
    std::shared_ptr<fused::Tape> tape;
    std::string why;
    int64_t begin = -1, end = -1, batch = -1;  // the rows it was traced for
    std::vector<stan::Tracer::RowInput> inputs;
    std::vector<stan::Tracer::RowIndex> indexes;
    std::vector<at::Tensor> block_values;      // per input: the block's rows, (rows, row size) double
    std::vector<std::vector<double>> values;   // per input: the batch's rows
    std::vector<int64_t> positions;
  };
  /// With `batch` given, the rows' variables are the tape's inputs and `batch`
  /// gets what refills them.
  std::shared_ptr<fused::Tape> trace(const std::vector<SiteInfo>& sites, const Scope* subset, std::string& why,
                                     BatchTape* batch = nullptr) const;
  /// A rank's block of rows without minibatches: the tapes of the data with no rows
  /// and with the block, traced the first time a direct step asks (null if either
  /// does not trace); the cut log joint combines them as row_log_joint does.
  mutable std::mutex block_mutex;
  mutable bool block_traced = false;
  mutable std::shared_ptr<const fused::Tape> no_rows_tape, block_tape;
  mutable std::pair<std::vector<double>, std::vector<double>> block_log_joint;  // T0, T_block
  mutable std::vector<std::vector<double>> block_grads;                       // per latent: T0's, T_block's
  bool takes_block_tapes(const std::vector<SiteInfo>& sites, int64_t S, bool any_size) const;
  /// The tape of the rows with none of them (T0 of row_log_joint), traced once.
  const fused::Tape* tape_without_rows(const std::vector<SiteInfo>& sites) const;  // under block_mutex
  mutable bool no_rows_traced = false;

  mutable BatchTape batch_tape;  // under block_mutex
  /// The minibatch's tape for the current rows (traced if it is not yet), or null.
  fused::Tape* minibatch_tape(const std::vector<SiteInfo>& sites) const;  // under block_mutex
  /// Puts rows `drawn` (0-based within the block, as sample_rows draws them) into `bt`.
  static void refill(BatchTape& bt, const at::Tensor& drawn);
  /// Whether the minibatch's tape and the interpreter agree on `rows` (""), or why not.
  std::string disagreement(const std::vector<SiteInfo>& sites, const fused::Tape& tape, const Scope* rows,
                           at::Generator& gen) const;
  bool minibatch() const { return rows && batch < row_end - row_begin; }
  /// Whether the log joint may be traced at all (compile() got past its refusals).
  bool traceable = false;

  [[noreturn]] void fail(const SourceLoc& loc, const std::string& message) const {
    throw ProgramError(program->file, loc, message);
  }

  Declared declared(const DeclType& d, Interpreter& in, const std::set<std::string>& parameters_so_far) {
    if (!d.special.empty()) {
      static const std::map<std::string, Constraint (*)()> kSpecial = {
          {"simplex", constraints::simplex},
          {"ordered", constraints::ordered},
          {"positive_ordered", constraints::positive_ordered},
          {"cholesky_factor_corr", constraints::corr_cholesky},
          {"cholesky_factor_cov", constraints::lower_cholesky},
          {"cov_matrix", constraints::positive_definite}};
      if (d.special == "corr_matrix") return {constraints::corr_cholesky(), d.special, true};
      const auto it = kSpecial.find(d.special);
      if (it == kSpecial.end()) fail(d.loc, d.special + " is not supported");
      return {it->second(), d.special};
    }
    auto bound = [&](const stan::ExprP& e, const char* what) -> double {
      if (!e) return NAN;
      if (mentions(*e, parameters_so_far)) fail(e->loc, std::string("a ") + what + " bound that depends on parameters is not supported");
      const Val v = in.evaluate(*e);
      return v.t.to(at::kDouble).reshape({-1})[0].item<double>();
    };
    const double lo = bound(d.lower, "lower"), hi = bound(d.upper, "upper");
    const bool has_lo = std::isfinite(lo), has_hi = std::isfinite(hi);
    std::string text;
    if (d.lower) text += "lower=" + number_text(lo);
    if (d.upper) text += std::string(text.empty() ? "" : ", ") + "upper=" + number_text(hi);
    if (d.lower && std::isnan(lo)) fail(d.lower->loc, "the lower bound is NaN");
    if (d.upper && std::isnan(hi)) fail(d.upper->loc, "the upper bound is NaN");
    if (has_lo && has_hi) {
      if (!(lo < hi)) fail(d.loc, "the lower bound " + number_text(lo) + " is not below the upper bound " + number_text(hi));
      return {constraints::interval(lo, hi), text};
    }
    if (has_lo) return {lo == 0.0 ? constraints::positive() : constraints::greater_than(lo), text};
    if (has_hi) return {constraints::less_than(hi), text};
    return {constraints::real(), text};
  }

  // The elements of `value` (no particle dim) that break `c`, or -1.
  // `tol`: for the special types (simplex, ...), the rounding of the values' dtype.
  static int64_t first_violation(const Declared& c, const at::Tensor& value, const DeclType& d, double tol = 1e-8) {
    if (c.support.kind() == ConstraintKind::real) return -1;
    const at::Tensor v = value.to(at::kDouble);
    at::Tensor ok;
    const double lo = c.support.lower(), hi = c.support.upper();
    if (d.special.empty()) {
      ok = at::ones(v.sizes(), at::kBool);
      // Bounds are inclusive for data, as Stan checks them.
      if (!std::isnan(lo)) ok = ok & (v >= lo);
      if (!std::isnan(hi)) ok = ok & (v <= hi);
    } else {
      ok = keeps(c, v, tol);
    }
    const at::Tensor bad = (~ok).reshape({-1}).nonzero();
    return bad.numel() == 0 ? -1 : bad[0][0].item<int64_t>();
  }

  Scope data_for(at::ScalarType dtype) const {
    if (dtype == at::kDouble) return data;
    std::lock_guard<std::mutex> lock(mutex);
    auto it = data_by_dtype.find(dtype);
    if (it == data_by_dtype.end()) {
      Scope s = data;
      for (auto& [name, var] : s)
        if (var.value.type.base != Base::int_) var.value.t = var.value.t.to(dtype);
      it = data_by_dtype.emplace(dtype, std::move(s)).first;
    }
    return it->second;
  }

  void read_data(const Data& source) {
    RunContext ctx;
    std::vector<Scope> scopes{Scope{}};
    for (const StmtP& s : program->ast.data) {
      Interpreter in(*program, ctx, scopes);
      const std::vector<int64_t> shape = in.declared_shape(s->decl_type);
      const std::string& name = s->name;
      const at::Tensor raw = source.get(name, "declared in the data block of " + filename);
      const bool is_int = s->decl_type.base == Base::int_;
      if (is_int && !source.is_integer(name)) source.fail(name, " must hold integers (it is declared int)");
      int64_t want = 1;
      for (int64_t n : shape) want *= n;
      at::Tensor t = raw;
      if (t.sizes().vec() != shape) {
        if (!(t.numel() == 0 && want == 0))
          source.fail(name, " has size " + shape_to_string(t.sizes().vec()) + ", but is declared with size " +
                                shape_to_string(shape));
        t = t.reshape(shape);
      }
      t = is_int ? t.to(at::kLong) : t.to(at::kDouble);
      const Declared c = declared(s->decl_type, in, {});
      const int64_t bad = first_violation(c, t, s->decl_type);
      if (bad >= 0) {
        const at::Tensor flat = t.reshape({-1});
        if (s->decl_type.special.empty())
          throw DataError(source.filename() + ": variable '" + element_name(name, t.sizes(), bad) + "' is " +
                          number_text(flat[bad].item<double>()) + ", but is declared <" + c.text + ">");
        const int64_t array_dims = static_cast<int64_t>(s->decl_type.array_sizes.size());
        const std::string which =
            array_dims == 0 ? name : element_name(name, t.sizes().slice(0, static_cast<size_t>(array_dims)), bad);
        throw DataError(source.filename() + ": variable '" + which + "' is not a " + s->decl_type.special);
      }
      scopes[0][name] = {Val{t.unsqueeze(0), s->decl_type.type(), true}, true};
    }
    data = scopes[0];
  }

  void run_transformed_data(uint64_t seed) {
    RunContext ctx;
    at::Generator gen = at::detail::createCPUGenerator(seed ^ kTransformedDataSalt);
    ctx.generator = &gen;
    Interpreter in(*program, ctx, {data});
    in.set_print_budget(&print_budget);
    try {
      in.run_block(program->ast.transformed_data);
    } catch (const stan::Rejected& r) {
      fail(r.loc, std::string("reject in transformed data: ") + r.what());
    }
    data = in.scopes()[0];
    for (auto& [name, var] : data) var.constant = true;  // nothing writes them after this block
    for (const StmtP& s : program->ast.transformed_data) {
      if (s->kind != Stmt::Kind::decl) continue;
      const Declared c = declared(s->decl_type, in, {});
      const at::Tensor v = data.at(s->name).value.t[0];
      const int64_t bad = first_violation(c, v, s->decl_type);
      if (bad >= 0)
        fail(s->name_loc, "transformed data '" + s->name + "' breaks its declared constraint <" +
                              (c.text.empty() ? s->decl_type.special : c.text) + "> at element " +
                              std::to_string(bad + 1));
    }
  }

  void declare_parameters(std::vector<SiteInfo>& sites) {
    RunContext ctx;
    Interpreter in(*program, ctx, {data});
    std::set<std::string> names;
    for (const StmtP& s : program->ast.parameters) names.insert(s->name);
    for (const StmtP& s : program->ast.parameters) {
      const DeclType& d = s->decl_type;
      if (d.special == "unit_vector") fail(d.loc, "unit_vector parameters are not supported");
      for (const auto& e : d.array_sizes)
        if (mentions(*e, names)) fail(e->loc, "a size that depends on parameters is not supported");
      for (const auto& e : d.sizes)
        if (mentions(*e, names)) fail(e->loc, "a size that depends on parameters is not supported");
      const std::vector<int64_t> shape = in.declared_shape(d);
      if (!d.special.empty() && shape.back() == 0)
        fail(d.loc, d.special + " of size 0 is not supported (it has no values)");
      int64_t elements = 1;
      for (int64_t n : shape) {
        if (n > 0 && elements > 10'000'000 / n)
          fail(d.loc, "a parameter with more than 10000000 elements is not supported");
        elements *= n;
      }
      const Declared c = declared(d, in, names);
      parameters.push_back({s.get(), shape, c.support});
      SiteInfo site;
      site.name = s->name;
      site.shape = shape;
      site.support = c.support;
      sites.push_back(site);
    }
    std::set<std::string> transformed;
    for (const StmtP& s : program->ast.transformed_parameters) {
      if (s->kind != Stmt::Kind::decl) continue;
      const DeclType& d = s->decl_type;
      if (d.special == "unit_vector") fail(d.loc, "unit_vector is not supported");
      std::set<std::string> later = names;
      for (const StmtP& t : program->ast.transformed_parameters)
        if (t->kind == Stmt::Kind::decl) later.insert(t->name);
      checked_transformed.emplace_back(s.get(), declared(d, in, later));
    }
    // Generated quantities' constraints are checked on the output draws, as Stan
    // checks them; one whose bound mentions a parameter or a quantity is not.
    std::set<std::string> computed = names;
    for (const auto* block : {&program->ast.transformed_parameters, &program->ast.generated_quantities})
      for (const StmtP& t : *block)
        if (t->kind == Stmt::Kind::decl) computed.insert(t->name);
    for (const StmtP& s : program->ast.generated_quantities) {
      if (s->kind != Stmt::Kind::decl) continue;
      const DeclType& d = s->decl_type;
      if (d.special == "unit_vector" || (d.special.empty() && !d.lower && !d.upper)) continue;
      if ((d.lower && mentions(*d.lower, computed)) || (d.upper && mentions(*d.upper, computed))) continue;
      checked_generated.emplace_back(s.get(), declared(d, in, {}));
    }
  }

  // Throws, naming the quantity, the draw and the element, if a generated quantity
  // breaks its declared constraint (values: (S, *shape)).
  void check_generated(const Interpreter& in) const {
    for (const auto& [decl, c] : checked_generated) {
      const at::Tensor& value = in.scopes()[0].at(decl->name).value.t;
      const double tol = value.scalar_type() == at::kFloat ? 1e-5 : 1e-8;  // as transformed_ok
      const at::Tensor v = value.detach().to(at::kDouble);
      const int64_t S = v.size(0);
      for (int64_t s = 0; s < S; ++s) {
        const int64_t bad = first_violation(c, v[s], decl->decl_type, tol);
        if (bad < 0) continue;
        const std::string where = " (output draw " + std::to_string(s + 1) + ")";
        if (decl->decl_type.special.empty())
          fail(decl->name_loc, "generated quantity '" + element_name(decl->name, v[s].sizes(), bad) + "' is " +
                                   number_text(v[s].reshape({-1})[bad].item<double>()) + ", but is declared <" + c.text +
                                   ">" + where);
        fail(decl->name_loc, "generated quantity '" + decl->name + "' is not a " + decl->decl_type.special + where);
      }
    }
  }

  // Runs transformed parameters (and then `then`) over the particles of `values`.
  // The value of parameter p in `values`, checked and in the fit's dtype.
  at::Tensor parameter_value(const Parameter& p, const SiteValues& values, const RunContext& ctx) const {
    const std::string& name = p.decl->name;
    const auto it = values.find(name);
    if (it == values.end()) throw std::invalid_argument(filename + ": no value for the parameter '" + name + "'");
    std::vector<int64_t> want{ctx.particles};
    want.insert(want.end(), p.shape.begin(), p.shape.end());
    if (it->second.sizes().vec() != want)
      throw std::invalid_argument(filename + ": the parameter '" + name + "' has shape " +
                                  shape_to_string(it->second.sizes().vec()) + ", but must be " + shape_to_string(want));
    return it->second.scalar_type() == ctx.dtype ? it->second : it->second.to(ctx.dtype);
  }

  // `rows`: the data cut to some rows (rows.hpp), else all the data; constant
  // expressions are cached only for all the data.
  Interpreter start(RunContext& ctx, const SiteValues& values, stan::Tracer* tracer = nullptr,
                    const Scope* rows = nullptr) const {
    Interpreter in(*program, ctx, {rows ? *rows : data_for(ctx.dtype)});
    in.set_print_budget(&print_budget);
    in.set_tracer(tracer);
    if (tracer)
      for (const std::string& name : tracer->row_variables) {
        stan::Variable& var = in.scopes()[0].at(name);
        var.value = tracer->row_input(name, var.value);
      }
    if (!rows) {
      std::lock_guard<std::mutex> lock(mutex);
      auto& cache = constants[ctx.dtype];
      if (!cache) cache = std::make_unique<stan::ConstantCache>();
      in.set_constant_cache(cache.get());
    }
    for (size_t k = 0; k < parameters.size(); ++k) {
      const Parameter& p = parameters[k];
      const std::string& name = p.decl->name;
      at::Tensor t = parameter_value(p, values, ctx);
      const DeclType& d = p.decl->decl_type;
      if (tracer) {
        if (d.special == "corr_matrix") stan::Tracer::abort("a corr_matrix parameter");
        Val z{t, d.type(), false};
        z.ids = tracer->latent(static_cast<int>(k), p.shape);
        if (d.offset || d.multiplier) z = offset_multiplier(in, *tracer, d, z);
        in.scopes()[0][name] = {z, true, true};
        continue;
      }
      if (d.offset || d.multiplier) {
        // As Stan: the site is the standardised value z, the parameter offset +
        // multiplier * z (offset and multiplier may use earlier parameters), and the
        // density gains the Jacobian, log(multiplier) per element.
        const int64_t dims = t.dim();
        const auto scalar = [&](const stan::ExprP& e, double otherwise) {
          return e ? stan::lift(stan::as_real(in.evaluate(*e), ctx.dtype), dims)
                   : at::full({1}, otherwise, at::TensorOptions().dtype(ctx.dtype));
        };
        const at::Tensor offset = scalar(d.offset, 0.0), multiplier = scalar(d.multiplier, 1.0);
        in.add_target(at::log(multiplier).expand_as(t), d.loc);
        t = offset + multiplier * t;
      }
      if (d.special == "corr_matrix") {
        // The site is the Cholesky factor L of the correlation matrix, as Stan
        // parameterises it; the density of L is that of L Lᵀ times the Jacobian
        // prod_i L_ii^(K - i) (1-based i; Joe 2006), the LKJ density's two forms.
        const int64_t K = t.size(-1);
        const at::Tensor power = at::arange(K - 1, -1, -1, at::TensorOptions().dtype(ctx.dtype));
        in.add_target(power * at::log(t.diagonal(0, -2, -1)), d.loc);
        t = at::matmul(t, t.transpose(-1, -2));
      }
      in.scopes()[0][name] = {Val{t, d.type(), false}, true, true};
    }
    return in;
  }

  // offset + multiplier * z, and target += log(multiplier) per element, recorded.
  static Val offset_multiplier(Interpreter& in, stan::Tracer& tracer, const DeclType& d, const Val& z) {
    using fused::Op;
    const int64_t dims = z.t.dim();
    const auto scalar = [&](const stan::ExprP& e, double otherwise) {
      if (!e) return Val{at::full({1}, otherwise, at::kDouble), Type{Base::real, 0}, true};
      const Val v = in.evaluate(*e);
      if (!v.t.is_floating_point()) return Val{v.t.to(at::kDouble), Type{Base::real, 0}, true};
      return v;
    };
    const auto up = [dims](const at::Tensor& t) { return stan::lift(t, dims); };
    const Val offset = stan::Tracer::view(scalar(d.offset, 0.0), up);
    const Val multiplier = stan::Tracer::view(scalar(d.multiplier, 1.0), up);
    const auto apply = [&](Op op, const Val& a, const Val& b, const at::Tensor& t) {
      return a.data_only && b.data_only ? Val{t, z.type, true} : tracer.binary(op, a, b, t, z.type);
    };
    const at::Tensor log_m = at::log(multiplier.t);
    const Val log_multiplier = multiplier.data_only ? Val{log_m, z.type, true} : tracer.unary(Op::log, multiplier, log_m, z.type);
    const Val per_element = stan::Tracer::view(log_multiplier, [&](const at::Tensor& t) { return t.expand_as(z.t); });
    in.add_target(per_element.t, d.loc);
    tracer.add_target(per_element);
    const Val scaled = apply(Op::mul, multiplier, z, multiplier.t * z.t);
    return apply(Op::add, offset, scaled, offset.t + scaled.t);
  }

  // The log joint by the interpreter, over all the data or the given rows.
  at::Tensor interpret(const at::Tensor& x, const SiteValues& values, const Scope* rows = nullptr) const {
    RunContext ctx;
    ctx.dtype = x.scalar_type();
    ctx.particles = x.size(0);
    const int64_t S = ctx.particles;
    Interpreter in = start(ctx, values, nullptr, rows);
    try {
      in.run_block(program->ast.transformed_parameters);
      const at::Tensor ok = transformed_ok(in, S);
      in.run_block(program->ast.model);
      at::Tensor target = in.target();
      target = target.size(0) == S ? target : target.expand({S});
      return at::where(ok, target, at::full({S}, -INFINITY, target.options()));
    } catch (const stan::Rejected&) {
      return at::full({S}, -INFINITY, at::TensorOptions().dtype(ctx.dtype));
    }
  }

  // Particles whose transformed parameters keep their declared constraints: (P,) bool.
  at::Tensor transformed_ok(const Interpreter& in, int64_t S) const {
    at::Tensor ok = at::ones({S}, at::kBool);
    for (const auto& [decl, c] : checked_transformed) {
      const at::Tensor v = in.scopes()[0].at(decl->name).value.t.detach();
      at::Tensor each = at::ones(v.sizes(), at::kBool);
      if (v.is_floating_point()) {
        each = ~at::isnan(v);
        each = each.dim() > 1 ? each.flatten(1).all(1) : each;
        ok = ok & each.expand({S});
      }
      const double lo = c.support.lower(), hi = c.support.upper();
      if (c.support.kind() == ConstraintKind::real) continue;
      if (decl->decl_type.special.empty()) {
        each = at::ones(v.sizes(), at::kBool);
        if (!std::isnan(lo)) each = each & (v >= lo);
        if (!std::isnan(hi)) each = each & (v <= hi);
      } else {
        // Rounding of the fit's own dtype: a float32 L Lᵀ misses a unit diagonal by ~1e-7.
        each = keeps(c, v, v.scalar_type() == at::kFloat ? 1e-5 : 1e-8);
      }
      each = each.dim() > 1 ? each.flatten(1).all(1) : each;
      ok = ok & each.expand({S});
    }
    return ok;
  }
};

namespace {

// Stan's default start: uniform(-2, 2) in each site's unconstrained space, S draws.
SiteValues random_point(const std::vector<SiteInfo>& sites, int64_t S, at::Generator& gen) {
  SiteValues values;
  for (const auto& site : sites) {
    const auto bijector = biject_to(site.support);
    std::vector<int64_t> shape{S};
    for (int64_t n : bijector->unconstrained_shape(site.shape)) shape.push_back(n);
    const at::Tensor u = at::empty(shape, at::kDouble).uniform_(-2, 2, gen);
    values[site.name] = bijector->forward(u);
  }
  return values;
}

// While a minibatch's tape is traced, the rows are inputs as the parameters are
// (trace.hpp): a reason that names parameters names the rows too.
std::string naming_the_rows(std::string why) {
  for (const std::string word : {"depends on parameters", "depend on parameters"}) {
    const size_t at = why.find(word);
    if (at != std::string::npos) why.insert(at + word.size(), " or on the rows");
  }
  return why;
}

bool close(double a, double b) {
  if (!std::isfinite(a) || !std::isfinite(b)) return (std::isnan(a) && std::isnan(b)) || a == b;
  return std::abs(a - b) <= 1e-8 * std::max(1.0, std::max(std::abs(a), std::abs(b)));
}

}  // namespace

// Traces the log joint into a tape for the fused evaluator (trace.hpp) and keeps it
// if it gives the interpreter's value and gradient at a few random points.
void StanModel::compile() {
  Impl& m = *impl_;
  for (const auto& [decl, c] : m.checked_transformed)
    if (c.support.kind() != ConstraintKind::real || c.correlation) {
      m.interpreted_because = "the transformed parameter '" + decl->name + "' has a declared constraint, checked per draw";
      return;
    }
  m.traceable = true;
  m.tape = m.trace(sites_, nullptr, m.interpreted_because);
}

// The tape of the log joint on all the data (`rows` null) or on the data cut to some
// rows, or null with the reason in `why`.
std::shared_ptr<fused::Tape> StanModel::Impl::trace(const std::vector<SiteInfo>& sites_, const Scope* subset,
                                                   std::string& why, BatchTape* batch) const {
  const Impl& m = *this;
  at::Generator gen = at::detail::createCPUGenerator(0x7ace);
  stan::Tracer tracer;
  if (batch) tracer.row_variables = rows->variables;
  try {
    RunContext ctx;
    ctx.dtype = at::kDouble;
    ctx.particles = 1;
    Interpreter in = m.start(ctx, random_point(sites_, 1, gen), &tracer, subset);
    in.run_block(m.program->ast.transformed_parameters);
    // As the interpreter rejects a draw whose transformed parameter is NaN: an element
    // that is data is NaN for every draw (left interpreted), one that depends on the
    // parameters is guarded on the tape.
    for (const auto& [decl, c] : m.checked_transformed) {
      const Val& v = in.scopes()[0].at(decl->name).value;
      const at::Tensor data_nan = at::isnan(v.t) & (v.ids.defined() ? v.ids < 0 : at::ones_like(v.t, at::kBool));
      if (data_nan.any().item<bool>()) {
        why = "the transformed parameter '" + decl->name + "' is not defined everywhere";
        return nullptr;
      }
      tracer.reject_if_nan(v);
    }
    in.run_block(m.program->ast.model);
  } catch (const stan::TraceAbort& a) {
    why = batch ? naming_the_rows(a.why) : a.why;
    return nullptr;
  } catch (const stan::Rejected&) {
    why = "a reject statement that runs";
    return nullptr;
  } catch (const std::exception& e) {
    const std::string what = e.what();
    why = what.substr(0, what.find('\n'));
    if (batch) why = naming_the_rows(why);
    return nullptr;
  }
  const std::shared_ptr<fused::Tape>& tape = tracer.tape();
  why = disagreement(sites_, *tape, subset, gen);
  if (!why.empty()) return nullptr;
  if (batch) {
    batch->inputs = tracer.row_inputs();
    batch->indexes = tracer.row_indexes();
  }
  return tape;
}

// Whether `tape` gives the interpreter's value and gradient on `rows` (all the data
// if null) at three random points: "" if it does, else why not.
std::string StanModel::Impl::disagreement(const std::vector<SiteInfo>& sites_, const fused::Tape& tape,
                                          const Scope* subset, at::Generator& gen) const {
  const Impl& m = *this;
  for (int trial = 0; trial < 3; ++trial) {
    constexpr int64_t S = 2;
    SiteValues values = random_point(sites_, S, gen);
    std::vector<at::Tensor> leaves;
    std::vector<const double*> latents;
    for (const auto& site : sites_) {
      at::Tensor& v = values[site.name];
      v = v.detach().contiguous().requires_grad_(true);
      leaves.push_back(v);
      latents.push_back(v.data_ptr<double>());
    }
    const at::Tensor want = m.interpret(at::empty({S}, at::kDouble), values, subset);
    std::vector<at::Tensor> want_grads(leaves.size());
    if (want.requires_grad())
      want_grads = torch::autograd::grad({want.sum()}, leaves, {}, false, false, /*allow_unused=*/true);
    std::vector<double> got(S);
    std::vector<std::vector<double>> grads(leaves.size());
    std::vector<double*> grad_ptrs;
    for (size_t k = 0; k < leaves.size(); ++k) {
      grads[k].assign(static_cast<size_t>(leaves[k].numel()), 0.0);
      grad_ptrs.push_back(grads[k].data());
    }
    tape.evaluate(S, latents, got.data(), &grad_ptrs);
    const at::Tensor w = want.detach().contiguous();
    for (int64_t p = 0; p < S; ++p) {
      const double wp = w[p].item<double>();
      if (!close(wp, got[static_cast<size_t>(p)])) {
        return "the compiled log joint differs from the interpreter's (" + std::to_string(got[p]) + " vs " +
               std::to_string(wp) + ")";
      }
      if (!std::isfinite(wp)) continue;
      for (size_t k = 0; k < leaves.size(); ++k) {
        const int64_t per = leaves[k].numel() / S;
        const at::Tensor g = want_grads[k].defined() ? want_grads[k].contiguous() : at::zeros_like(leaves[k]);
        const double* gp = g.data_ptr<double>();
        for (int64_t j = p * per; j < (p + 1) * per; ++j)
          if (!close(gp[j], grads[k][static_cast<size_t>(j)])) {
            return "the compiled gradient of '" + sites_[k].name + "' differs from the interpreter's";
          }
      }
    }
  }
  return "";
}

// Whether the log density sums over the rows of `layout`: at a random point, all
// the rows must add what two complementary parts add (each against no rows): the
// two halves, and the odd and even rows (a part that is not a block, as minibatches
// are not). And they must add something. Returns why not, or "".
std::string StanModel::Impl::row_sum_problem(const std::vector<SiteInfo>& sites, const stan::RowLayout& layout) const {
  const int64_t N = layout.rows;
  const std::string of = "the rows of " + layout.size;
  if (N < 2) return layout.size + " is " + std::to_string(N) + ": there are no rows to cut";
  at::Generator gen = at::detail::createCPUGenerator(0x2075);
  const auto target = [&](const SiteValues& values, const at::Tensor& rows) {
    const Scope cut = stan::select_rows(data, layout, rows);
    return interpret(at::empty({2}, at::kDouble), values, &cut);
  };
  const std::vector<std::pair<at::Tensor, at::Tensor>> splits = {
      {at::arange(0, N / 2, at::kLong), at::arange(N / 2, N, at::kLong)},
      {at::arange(0, N, 2, at::kLong), at::arange(1, N, 2, at::kLong)}};
  try {
    for (int attempt = 0; attempt < 3; ++attempt) {
      const SiteValues values = random_point(sites, 2, gen);
      const at::Tensor all = interpret(at::empty({2}, at::kDouble), values);
      const at::Tensor none = target(values, at::empty({0}, at::kLong));
      if (!at::cat({all, none}).isfinite().all().item<bool>()) continue;
      bool finite = true;
      for (const auto& [one, other] : splits) {
        const at::Tensor first = target(values, one), second = target(values, other);
        if (!at::cat({first, second}).isfinite().all().item<bool>()) {
          finite = false;
          break;
        }
        const at::Tensor whole = all - none, parts = (first - none) + (second - none);
        const at::Tensor tolerance = 1e-8 * (all.abs() + none.abs() + first.abs() + second.abs() + 1.0);
        const int64_t p = ((whole - parts).abs() - tolerance).argmax().item<int64_t>();
        if ((whole - parts).abs()[p].item<double>() > tolerance[p].item<double>())
          return "the log density is not a sum over " + of + " (at a random point, all " + std::to_string(N) +
                 " rows add " + number_text(whole[p].item<double>()) + " to it, " +
                 (&one == &splits[0].first ? "its two halves " : "its odd and even rows ") +
                 number_text(parts[p].item<double>()) + ")";
      }
      if (!finite) continue;
      if (((all - none) == 0).all().item<bool>()) return "the log density does not depend on " + of;
      return "";
    }
    return "the log density is not finite at random points with all, half or none of " + of;
  } catch (const std::exception& e) {
    const std::string what = e.what();
    return "the program fails on part of " + of + ": " + what.substr(0, what.find('\n'));
  }
}

// The largest data size whose rows can be cut and sum the log density, or why none.
const stan::RowLayout* StanModel::Impl::row_layout(const std::vector<SiteInfo>& sites) const {
  std::call_once(rows_chosen, [&] {
    const std::vector<stan::RowLayout> candidates = stan::row_layouts(program->ast, data);
    for (const stan::RowLayout& layout : candidates) {
      const std::string problem = layout.refusal.empty() ? row_sum_problem(sites, layout) : layout.refusal;
      if (problem.empty()) {
        rows = layout;
        row_end = batch = layout.rows;
        spdlog::debug("{}: the data rows are those of {} ({} rows)", filename, layout.size, layout.rows);
        return;
      }
      if (rows_refusal.empty()) rows_refusal = problem;
    }
    if (candidates.empty())
      rows_refusal = "no data size is the first size of data variables, as N is in `vector[N] y`";
  });
  return rows ? &*rows : nullptr;
}

// The data cut to the block of rows (or to none), per dtype.
const Scope& StanModel::Impl::cut_data(std::map<at::ScalarType, Scope>& cache, at::ScalarType dtype, int64_t begin,
                                       int64_t end) const {
  {
    std::lock_guard<std::mutex> lock(mutex);
    const auto it = cache.find(dtype);
    if (it != cache.end()) return it->second;
  }
  Scope cut = stan::select_rows(data_for(dtype), *rows, at::arange(begin, end, at::kLong));
  std::lock_guard<std::mutex> lock(mutex);
  return cache.emplace(dtype, std::move(cut)).first->second;
}

// target(no rows) + scale * (target(rows) - target(no rows)): the terms without rows
// once, the rows' terms scaled from the minibatch (or the rank's block) to all rows.
// In float64 whatever the fit's dtype: the rows' part is a difference of two log
// joints scaled up by N / B, whose float32 rounding the scale would multiply.
at::Tensor StanModel::Impl::row_log_joint(const at::Tensor& x_in, const SiteValues& values_in) const {
  const at::ScalarType dtype = at::kDouble;
  const at::Tensor x = at::empty({x_in.size(0)}, at::kDouble);
  SiteValues values;
  for (const auto& [name, v] : values_in) values[name] = v.to(at::kDouble);
  const int64_t block = row_end - row_begin;
  const Scope& none = cut_data(no_rows, dtype, 0, 0);
  at::Tensor with_rows;
  if (batch < block) {
    at::Tensor drawn;
    {
      std::lock_guard<std::mutex> lock(mutex);
      drawn = sample_rows(block, batch, *row_stream) + row_begin;
    }
    const Scope cut = stan::select_rows(data_for(dtype), *rows, drawn);
    with_rows = interpret(x, values, &cut);
  } else {
    with_rows = interpret(x, values, &cut_data(block_rows, dtype, row_begin, row_end));
  }
  const at::Tensor without = interpret(x, values, &none);
  const double scale = row_weight * static_cast<double>(block) / static_cast<double>(std::min(batch, block));
  // A rejected draw is rejected with or without the rows (and -inf - -inf is NaN).
  return at::where(at::isfinite(without), without + scale * (with_rows - without), without).to(x_in.scalar_type());
}

bool StanModel::Impl::cut() const {
  return rows && (row_begin != 0 || row_end != rows->rows || batch < row_end - row_begin || row_weight != 1.0);
}

int64_t StanModel::num_rows() const {
  return impl_->row_layout(sites_) ? impl_->row_end - impl_->row_begin : 0;
}

std::string StanModel::rows_size() const {
  const stan::RowLayout* layout = impl_->row_layout(sites_);
  return layout ? layout->size : "";
}

std::string StanModel::rows_refusal() const {
  return impl_->row_layout(sites_) ? "" : impl_->rows_refusal;
}

int64_t StanModel::batch_size() const { return impl_->row_layout(sites_) ? impl_->batch : 0; }

void StanModel::set_minibatch(int64_t batch_size, at::Generator generator) {
  Impl& m = *impl_;
  if (!m.row_layout(sites_))
    throw std::invalid_argument("set_minibatch: " + m.filename + ": no data rows can be subsampled: " + m.rows_refusal);
  const int64_t block = m.row_end - m.row_begin;
  if (batch_size < 1 || batch_size > block)
    throw std::invalid_argument("set_minibatch: batch size is " + std::to_string(batch_size) + ", but must be in [1, " +
                                std::to_string(block) + "] (" + m.rows->size + " = " + std::to_string(block) + " rows)");
  if (generator.device().type() != at::kCPU)
    throw std::invalid_argument("set_minibatch: the rows' generator must be a CPU generator, got one on " +
                                generator.device().str());
  m.batch = batch_size;
  m.row_stream = std::move(generator);
}

void StanModel::set_row_range(int64_t begin, int64_t end) {
  Impl& m = *impl_;
  if (!m.row_layout(sites_))
    throw std::invalid_argument("set_row_range: " + m.filename + ": no data rows can be split: " + m.rows_refusal);
  if (begin < 0 || end > m.rows->rows || begin >= end)
    throw std::invalid_argument("set_row_range: rows [" + std::to_string(begin) + ", " + std::to_string(end) +
                                ") are not a non-empty range of the " + std::to_string(m.rows->rows) + " rows of " +
                                m.rows->size);
  m.row_begin = begin;
  m.row_end = end;
  m.batch = end - begin;
  {
    std::lock_guard<std::mutex> lock(m.block_mutex);
    m.block_traced = false;
    m.block_tape = nullptr;
  }
  std::lock_guard<std::mutex> lock(m.mutex);
  m.block_rows.clear();
}

void StanModel::set_row_weight(double weight) {
  if (!(weight > 0.0) || !std::isfinite(weight))
    throw std::invalid_argument("set_row_weight: weight is " + std::to_string(weight) + ", but must be a positive number");
  if (!impl_->row_layout(sites_))
    throw std::invalid_argument("set_row_weight: " + impl_->filename + ": no data rows can be weighted: " +
                                impl_->rows_refusal);
  impl_->row_weight = weight;
}

bool StanModel::compiled() const { return impl_->tape != nullptr; }

const std::string& StanModel::interpreted_because() const { return impl_->interpreted_because; }

StanModel::~StanModel() = default;

StanModel::StanModel(std::shared_ptr<const StanProgram> program, Data data, uint64_t seed, StanOptions options)
    : impl_(std::make_unique<Impl>()) {
  if (!program) throw std::invalid_argument("StanModel: the program is null");
  impl_->program = std::move(program);
  impl_->filename = impl_->program->file.filename;
  impl_->read_data(data);
  impl_->run_transformed_data(seed);
  impl_->declare_parameters(sites_);
  // One evaluation at Stan's default start (uniform on (-2, 2) unconstrained), so
  // that sizes that do not fit and unsupported uses are reported before a fit.
  at::Generator gen = at::detail::createCPUGenerator(0);
  const SiteValues values = random_point(sites_, 1, gen);
  const at::Tensor x = at::empty({1}, at::kDouble);
  log_joint(x, values);
  quantities(values, gen);
  impl_->built = true;
  const auto started = std::chrono::steady_clock::now();
  impl_->evaluator = options.evaluator;
  if (options.evaluator != StanEvaluator::interpreted) compile();
  else impl_->interpreted_because = "the evaluator is StanEvaluator::interpreted";
  const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - started).count();
  if (impl_->tape)
    spdlog::debug("{}: the log joint is compiled for the fused evaluator ({} nodes, {} elements a particle, {:.0f} ms)",
                  impl_->filename, impl_->tape->num_nodes(), impl_->tape->work(), ms);
  else
    spdlog::debug("{}: the log joint is interpreted: {}", impl_->filename, impl_->interpreted_because);
}

bool StanModel::Impl::takes_tape(int64_t S, bool any_size) const {
  return tape && !cut() &&
         (any_size || evaluator != StanEvaluator::automatic ||
          S * tape->work() <= kStanTapeWorkPerNode * static_cast<int64_t>(tape->num_nodes()));
}

const fused::Tape* StanModel::Impl::tape_without_rows(const std::vector<SiteInfo>& sites) const {
  if (!no_rows_traced) {
    no_rows_traced = true;
    std::string why;
    no_rows_tape = trace(sites, &cut_data(no_rows, at::kDouble, 0, 0), why);
    if (!no_rows_tape) spdlog::debug("{}: the log joint without rows is interpreted: {}", filename, why);
  }
  return no_rows_tape.get();
}

bool StanModel::Impl::takes_block_tapes(const std::vector<SiteInfo>& sites, int64_t S, bool any_size) const {
  if (!traceable || !rows || !cut()) return false;
  const auto size_rule = [&](const fused::Tape& t) {
    return any_size || evaluator != StanEvaluator::automatic ||
           S * t.work() <= kStanTapeWorkPerNode * static_cast<int64_t>(t.num_nodes());
  };
  std::lock_guard<std::mutex> lock(block_mutex);
  if (minibatch()) {
    const fused::Tape* t = minibatch_tape(sites);
    return t && size_rule(*t) && tape_without_rows(sites);
  }
  if (!tape || !size_rule(*tape)) return false;
  if (!block_traced) {
    block_traced = true;
    std::string why;
    if (tape_without_rows(sites)) block_tape = trace(sites, &cut_data(block_rows, at::kDouble, row_begin, row_end), why);
    if (!block_tape) spdlog::debug("{}: a rank's rows are interpreted: {}", filename, why);
  }
  return block_tape && no_rows_tape;
}

fused::Tape* StanModel::Impl::minibatch_tape(const std::vector<SiteInfo>& sites) const {
  BatchTape& bt = batch_tape;
  if (bt.begin == row_begin && bt.end == row_end && bt.batch == batch) return bt.tape.get();
  bt = BatchTape{};
  bt.begin = row_begin;
  bt.end = row_end;
  bt.batch = batch;
  const Scope& all = data_for(at::kDouble);
  const Scope first = stan::select_rows(all, *rows, at::arange(row_begin, row_begin + batch, at::kLong));
  bt.tape = trace(sites, &first, bt.why, &bt);
  if (bt.tape) {
    const int64_t block = row_end - row_begin;
    for (const auto& input : bt.inputs) {
      const at::Tensor t = all.at(input.name).value.t.select(0, 0).narrow(0, row_begin, block);
      bt.block_values.push_back(t.reshape({block, -1}).to(at::kDouble).contiguous());
    }
    bt.values.resize(bt.inputs.size());
    // Traced on the block's first rows: it must also agree on others.
    at::Generator gen = at::detail::createCPUGenerator(0xba7c);
    for (int trial = 0; trial < 2 && bt.why.empty(); ++trial) {
      const at::Tensor drawn = sample_rows(block, batch, gen);
      refill(bt, drawn);
      const Scope cut = stan::select_rows(all, *rows, drawn + row_begin);
      bt.why = disagreement(sites, *bt.tape, &cut, gen);
    }
    if (!bt.why.empty()) bt.tape = nullptr;
  }
  if (!bt.tape) spdlog::debug("{}: a minibatch of {} rows is interpreted: {}", filename, batch, bt.why);
  return bt.tape.get();
}

void StanModel::Impl::refill(BatchTape& bt, const at::Tensor& drawn) {
  const at::Tensor rows = drawn.contiguous();
  const int64_t* r = rows.data_ptr<int64_t>();
  const int64_t B = rows.numel();
  for (size_t k = 0; k < bt.inputs.size(); ++k) {
    const at::Tensor& block = bt.block_values[k];
    const int64_t width = block.size(1);
    const double* from = block.data_ptr<double>();
    std::vector<double>& to = bt.values[k];
    to.resize(static_cast<size_t>(B * width));
    for (int64_t j = 0; j < B; ++j) std::copy(from + r[j] * width, from + (r[j] + 1) * width, to.begin() + j * width);
    if (!bt.tape->set_constant(bt.inputs[k].node, to.data(), B * width))
      throw std::logic_error("refill: the rows of '" + bt.inputs[k].name + "' do not fit their input");
  }
  for (const auto& index : bt.indexes) {
    const std::vector<double>& from = bt.values[index.input];
    bt.positions.resize(index.elements.size());
    for (size_t j = 0; j < index.elements.size(); ++j)
      bt.positions[j] = static_cast<int64_t>(from[static_cast<size_t>(index.elements[j])]) - 1;
    if (!bt.tape->set_positions(index.node, bt.positions))
      throw std::logic_error("refill: an index read from '" + bt.inputs[index.input].name + "' is out of range");
  }
}

bool StanModel::direct_applies(int64_t S, bool any_size) const {
  return impl_->takes_tape(S, any_size) || impl_->takes_block_tapes(sites_, S, any_size);
}

std::string StanModel::direct_blocker() const {
  const Impl& m = *impl_;
  if (!m.traceable || !m.cut() || !m.minibatch()) return m.tape ? "" : m.interpreted_because;
  std::lock_guard<std::mutex> lock(m.block_mutex);
  if (!m.minibatch_tape(sites_))
    return "a minibatch of " + std::to_string(m.batch) + " rows is not compiled: " + m.batch_tape.why;
  if (!m.tape_without_rows(sites_)) return "the log joint without rows is not compiled";
  return "";
}

std::function<void()> StanModel::rows_rewinder() const {
  return impl_->minibatch() && impl_->row_stream ? stream_rewinder(*impl_->row_stream) : std::function<void()>{};
}

std::vector<std::string> StanModel::direct_latents() const {
  std::vector<std::string> names;
  for (const auto& p : impl_->parameters) names.push_back(p.decl->name);
  return names;
}

void StanModel::direct_log_joint(int64_t S, const std::vector<const double*>& latents, double* log_joint,
                                 const std::vector<double*>& grads) const {
  const Impl& m = *impl_;
  if (!m.cut()) {
    m.tape->evaluate(S, latents, log_joint, &grads);
    return;
  }
  // As row_log_joint: T0 + w (T_rows - T0), T0 the log joint with no rows, T_rows
  // that of the block or of a minibatch drawn from it; a draw that T0 rejects is
  // rejected (with T0's gradient, none).
  if (!m.takes_block_tapes(sites_, S, /*any_size=*/true))
    throw std::logic_error("direct_log_joint: " + m.filename + ": the log joint of these rows is not compiled");
  std::lock_guard<std::mutex> lock(m.block_mutex);
  const int64_t block = m.row_end - m.row_begin;
  double w = m.row_weight;
  const fused::Tape* with_rows = m.block_tape.get();
  if (m.minibatch()) {
    at::Tensor drawn;
    {
      std::lock_guard<std::mutex> rows_lock(m.mutex);
      drawn = sample_rows(block, m.batch, *m.row_stream);
    }
    Impl::refill(m.batch_tape, drawn);
    with_rows = m.batch_tape.tape.get();
    w *= static_cast<double>(block) / static_cast<double>(m.batch);
  }
  auto& [lp0, lp1] = m.block_log_joint;
  lp0.resize(static_cast<size_t>(S));
  lp1.resize(static_cast<size_t>(S));
  std::vector<double*> g0(grads.size()), g1(grads.size());
  std::vector<int64_t> per(grads.size(), 1);
  m.block_grads.resize(2 * grads.size());
  for (size_t k = 0; k < grads.size(); ++k) {
    for (int64_t n : m.parameters[k].shape) per[k] *= n;
    for (size_t part : {size_t{0}, size_t{1}}) {
      std::vector<double>& buffer = m.block_grads[2 * k + part];
      buffer.assign(static_cast<size_t>(S * per[k]), 0.0);
      (part ? g1 : g0)[k] = buffer.data();
    }
  }
  m.no_rows_tape->evaluate(S, latents, lp0.data(), &g0);
  with_rows->evaluate(S, latents, lp1.data(), &g1);
  for (int64_t p = 0; p < S; ++p) {
    const bool kept = std::isfinite(lp0[static_cast<size_t>(p)]);
    log_joint[p] = kept ? lp0[static_cast<size_t>(p)] + w * (lp1[static_cast<size_t>(p)] - lp0[static_cast<size_t>(p)])
                        : lp0[static_cast<size_t>(p)];
    for (size_t k = 0; k < grads.size(); ++k)
      for (int64_t j = p * per[k]; j < (p + 1) * per[k]; ++j)
        grads[k][j] += kept ? g0[k][j] + w * (g1[k][j] - g0[k][j]) : g0[k][j];
  }
}

at::Tensor StanModel::log_joint(const at::Tensor& x, const SiteValues& values) const {
  if (impl_->cut()) return impl_->row_log_joint(x, values);
  const int64_t S = x.size(0);
  if (!impl_->takes_tape(S, false)) return log_joint_interpreted(x, values);
  RunContext ctx;
  ctx.dtype = x.scalar_type();
  ctx.particles = S;
  std::vector<at::Tensor> latents;
  for (const auto& p : impl_->parameters) latents.push_back(impl_->parameter_value(p, values, ctx));
  // Higher derivatives (a Laplace guide's Hessian) differentiate the interpreter.
  auto reference = [this, x](const std::vector<at::Tensor>& at_latents) {
    SiteValues v;
    for (size_t k = 0; k < at_latents.size(); ++k) v[impl_->parameters[k].decl->name] = at_latents[k];
    return log_joint_interpreted(x, v);
  };
  return fused::log_joint(impl_->tape, ctx.particles, latents, ctx.dtype, reference);
}

at::Tensor StanModel::log_joint_interpreted(const at::Tensor& x, const SiteValues& values) const {
  return impl_->interpret(x, values);
}

std::vector<StanQuantity> StanModel::quantities(const SiteValues& values, at::Generator& generator) const {
  RunContext ctx;
  const auto any = values.empty() ? at::empty({1}, at::kDouble) : values.begin()->second;
  ctx.dtype = any.scalar_type();
  ctx.particles = values.empty() ? 1 : any.size(0);
  ctx.generator = &generator;
  const int64_t S = ctx.particles;
  Interpreter in = impl_->start(ctx, values);
  std::vector<StanQuantity> out;
  auto take = [&](const Stmt& s, StanQuantity::Block block) {
    const Val& v = in.scopes()[0].at(s.name).value;
    at::Tensor t = v.t.detach().to(at::kDouble);
    std::vector<int64_t> shape = t.sizes().vec();
    shape[0] = S;
    t = t.expand(shape).contiguous();
    out.push_back({s.name, std::vector<int64_t>(shape.begin() + 1, shape.end()), t, block});
  };
  try {
    in.run_block(impl_->program->ast.transformed_parameters);
    in.run_block(impl_->program->ast.generated_quantities);
  } catch (const stan::Rejected& r) {
    throw ProgramError(impl_->program->file, r.loc, std::string("reject while computing the outputs: ") + r.what());
  }
  if (impl_->built) impl_->check_generated(in);
  for (const auto& p : impl_->parameters) take(*p.decl, StanQuantity::Block::parameters);
  for (const auto& s : impl_->program->ast.transformed_parameters)
    if (s->kind == Stmt::Kind::decl) take(*s, StanQuantity::Block::transformed_parameters);
  for (const auto& s : impl_->program->ast.generated_quantities)
    if (s->kind == Stmt::Kind::decl) take(*s, StanQuantity::Block::generated_quantities);
  return out;
}

std::string StanModel::name() const {
  std::string n = impl_->filename;
  const size_t slash = n.find_last_of('/');
  if (slash != std::string::npos) n = n.substr(slash + 1);
  const size_t dot = n.find_last_of('.');
  if (dot != std::string::npos && dot > 0) n = n.substr(0, dot);
  return n;
}

const std::string& StanModel::filename() const { return impl_->filename; }

}  // namespace vguide::model
