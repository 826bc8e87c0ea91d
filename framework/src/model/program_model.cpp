// ProgramModel: plans the program IR over its data (shapes, supports and the data
// rows checked once, here), then evaluates the plan with the reference evaluator or
// the fused tape (program_plan.hpp).
#include "vguide/model/program_model.hpp"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <c10/util/Exception.h>

#include <sstream>

#include "program_plan.hpp"

namespace vguide::model {

using namespace detail;

namespace {

std::string format_number(double v) {
  std::ostringstream s;
  s << v;
  return s.str();
}

}  // namespace

ProgramModel::~ProgramModel() = default;

DataRows::~DataRows() = default;

DirectLogJoint::~DirectLogJoint() = default;

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

at::Tensor ProgramModel::log_joint(const at::Tensor& x, const SiteValues& values) const {
  Context ctx = make_context(x, *plan_);
  const bool batched = subsampled();
  const bool float_or_double = ctx.opts.dtype() == at::kFloat || ctx.opts.dtype() == at::kDouble;
  // A rank of a data-parallel fit (row weight != 1) takes the LibTorch path here; its
  // direct steps weigh the tape's row terms (direct_log_joint).
  if (plan_->tape && evaluator_ != Evaluator::reference && !batched && row_weight_ == 1.0 &&
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
  if (batched) {
    at::Generator gen = *generator_;  // a handle: draws advance the shared stream
    ctx.index = sample_rows(num_rows_, batch_size_, gen).to(x.device());
  }
  return run(*plan_, ctx, values, num_rows_, batched ? batch_size_ : num_rows_, nullptr, nullptr, row_weight_);
}

void ProgramModel::set_evaluator(Evaluator evaluator) {
  if (evaluator == Evaluator::fused && !plan_->tape)
    throw std::invalid_argument("set_evaluator: program '" + name() + "' cannot be fused: " + plan_->unfused);
  evaluator_ = evaluator;
}

const std::string& ProgramModel::fusion_blocker() const noexcept { return plan_->unfused; }

bool ProgramModel::direct_applies(int64_t S, bool any_size) const {
  // As log_joint's choice of the tape, with the direct step's bound; a rank's block
  // (a row weight) and a minibatch (a tape of its own, refilled with each batch's
  // rows) take the direct step too.
  if (evaluator_ == Evaluator::reference) return false;
  const bool batched = subsampled();
  const fused::Tape* tape = batched ? (batch_tape() ? batch_->tape.get() : nullptr) : plan_->tape.get();
  return tape && (any_size || evaluator_ == Evaluator::fused || S * tape->work() <= kDirectAutoWork);
}

std::vector<std::string> ProgramModel::direct_latents() const { return latent_names(); }

void ProgramModel::direct_log_joint(int64_t S, const std::vector<const double*>& latents, double* log_joint,
                                    const std::vector<double*>& grads) const {
  if (!subsampled()) {
    plan_->tape->evaluate(S, latents, log_joint, &grads, row_weight_);
    return;
  }
  BatchTape* batch = batch_tape();
  if (!batch) throw std::logic_error("direct_log_joint: program '" + name() + "': the minibatch is not compiled");
  std::lock_guard<std::mutex> lock(batch->mutex);
  at::Generator gen = *generator_;  // one batch per evaluation, from the stream log_joint draws from
  refill_batch(*batch, sample_rows(num_rows_, batch_size_, gen));
  // The rows' terms scaled as run() scales them.
  const double scale = row_weight_ * static_cast<double>(num_rows_) / static_cast<double>(batch_size_);
  batch->tape->evaluate(S, latents, log_joint, &grads, scale);
}

std::string ProgramModel::direct_blocker() const {
  if (evaluator_ == Evaluator::reference) return "the evaluator is Evaluator::reference";
  if (!subsampled()) return plan_->unfused;
  if (batch_tape()) return "";
  std::lock_guard<std::mutex> lock(batch_->mutex);
  return "a minibatch of " + std::to_string(batch_size_) + " rows: " + batch_->why;
}

std::function<void()> ProgramModel::rows_rewinder() const {
  return subsampled() ? stream_rewinder(*generator_) : std::function<void()>{};
}

}  // namespace vguide::model
