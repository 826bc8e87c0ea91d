// Compiles a ProgramModel's plan (program_plan.hpp) to the tape of the fused log
// joint (fused_log_joint.hpp), folding what does not depend on a latent into
// constants evaluated once with the reference evaluator.
#include <ATen/ATen.h>

#include <functional>
#include <map>

#include "program_plan.hpp"

namespace vguide::model::detail {

namespace {

/// Per value, the most elements the fused tape takes: a larger program is data-heavy,
/// and LibTorch's vectorised kernels win there.
constexpr int64_t kFusedMaxElements = 1 << 14;

}  // namespace

std::shared_ptr<fused::Tape> compile_fused(const ProgramModel::Plan& plan, Context& ctx, std::string& why,
                                           std::vector<RowRefill>* refills) {
  auto tape = std::make_shared<fused::Tape>();
  std::map<std::string, int> nodes;  // latent-dependent names
  const auto fail = [&](const std::string& reason) {
    if (why.empty()) why = reason;
    return -1;
  };
  const auto own_shape = [](const at::Tensor& t) { return std::vector<int64_t>(t.sizes().begin() + 1, t.sizes().end()); };
  // A value of the data rows changes with a minibatch's rows: it is refilled.
  const auto refill = [&](int node, bool positions, const Expr* expr, const StepPlan* observed) {
    if (refills && node >= 0) refills->push_back(RowRefill{positions, node, expr, observed, at::Tensor()});
    return node;
  };
  std::function<int(const Expr&)> compile = [&](const Expr& e) -> int {
    const Value v = eval(e, ctx);
    if (v.t.numel() > kFusedMaxElements)
      return fail("'" + to_string(e) + "' has more than " + std::to_string(kFusedMaxElements) + " elements");
    if (!v.latent) {
      const int id = tape->constant(v.t.select(0, 0));
      return v.rows ? refill(id, false, &e, nullptr) : id;
    }
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
        const Value positions = eval(e.args[1], ctx);
        const at::Tensor own = positions.t.select(0, 0);
        const at::Tensor pos = (own.to(at::kLong) - 1).contiguous().reshape({-1});
        id = tape->index(a, std::vector<int64_t>(pos.data_ptr<int64_t>(), pos.data_ptr<int64_t>() + pos.numel()),
                         own.sizes().vec());
        if (positions.rows) refill(id, true, &e.args[1], nullptr);
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
      if (value.rows) refill(id, false, nullptr, &sp);
    } else {
      if (find_family(step.family)->discrete) {
        fail("discrete latent '" + step.name + "'");
        return nullptr;
      }
      id = tape->latent(latents++, sp.shape);
      nodes[step.name] = id;
    }
    if (!tape->term(family, id, params, sp.role == StepPlan::Role::observed && value.rows)) {
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

}  // namespace vguide::model::detail
