// The reference evaluator: runs a ProgramModel's plan (program_plan.hpp) step by
// step with LibTorch ops. Always available; the fused tape (fused_compile.cpp)
// evaluates the same plan faster where it applies, and is checked against this.
#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>
#include <sstream>

#include "program_plan.hpp"

namespace vguide::model::detail {

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

at::Tensor pad(const at::Tensor& t, int64_t k) {
  if (k <= 0) return t;
  std::vector<int64_t> shape{t.size(0)};
  shape.insert(shape.end(), static_cast<size_t>(k), 1);
  for (int64_t d = 1; d < t.dim(); ++d) shape.push_back(t.size(d));
  return t.reshape(shape);
}

at::Tensor sum_own(const at::Tensor& t) { return t.dim() <= 1 ? t : t.flatten(1).sum(1); }

bool has_slice(const Expr& e) {
  if (e.kind == Expr::Kind::slice) return true;
  for (const Expr& a : e.args)
    if (has_slice(a)) return true;
  return false;
}

std::string shape_text(at::IntArrayRef shape) {
  return shape_to_string(std::vector<int64_t>(shape.begin(), shape.end()));
}

Value data_value(const StepPlan& sp, const Context& ctx) {
  at::Tensor t = ctx.constants ? ctx.constants->get(&sp, ctx.opts, [&] { return sp.data.to(ctx.opts); })
                               : sp.data.to(ctx.opts);
  // Only the batch's rows are gathered: O(B) per call, whatever N is.
  if (sp.row_data && ctx.index.defined()) t = t.index_select(0, ctx.index);
  return {t.unsqueeze(0), sp.row_data, false};
}

namespace {

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

}  // namespace

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

std::shared_ptr<Distribution> build_dist(const StepPlan& sp, Context& ctx, int64_t value_batch_rank, bool validate,
                                         bool* rows, bool* latent) {
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

at::Tensor site_log_prob(const Distribution& d, const at::Tensor& value, int64_t value_event_rank,
                         bool in_support) {
  const int64_t br = value.dim() - value_event_rank;
  const int64_t want = static_cast<int64_t>(d.batch_shape().size());
  const at::Tensor v = br >= 1 ? pad(value, want - br) : value;
  return sum_own(in_support ? d.log_prob_in_support(v) : d.log_prob(v));
}

at::Tensor run(const ProgramModel::Plan& plan, Context& ctx, const SiteValues& values, int64_t num_rows,
               int64_t batch_size, const LatentPicker* pick, TermSink* terms,
               double row_weight) {
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

}  // namespace vguide::model::detail
