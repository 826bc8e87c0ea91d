// A ProgramModel's data rows: minibatches (set_minibatch, sample_rows, and the tape
// of a minibatch for the direct step), the rows
// of one rank of a data-parallel fit (data_rows, check_rows_can_split) and the
// weight of row terms (set_row_weight).
#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cmath>
#include <mutex>
#include <unordered_set>

#include "program_plan.hpp"

namespace vguide::model {

using namespace detail;

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
  batch_ = batch_size < num_rows_ ? std::make_shared<BatchTape>() : nullptr;
}

ProgramModel::BatchTape* ProgramModel::batch_tape() const {
  if (!batch_) return nullptr;
  BatchTape& b = *batch_;
  std::lock_guard<std::mutex> lock(b.mutex);
  if (b.tried) return b.tape ? &b : nullptr;
  b.tried = true;
  // The program over the first B rows, its latents drawn from their priors: the
  // tape's shapes are those of any B rows, and what depends on the rows is refilled.
  try {
    Context ctx;
    ctx.opts = at::TensorOptions().dtype(at::kDouble);
    ctx.constants = &plan_->constants;
    ctx.index = at::arange(batch_size_, at::kLong);
    at::Generator gen = at::detail::createCPUGenerator(0);
    const LatentPicker pick = [&](const StepPlan& sp, const Distribution& dist) {
      std::vector<int64_t> target{1};
      target.insert(target.end(), sp.shape.begin(), sp.shape.end());
      return dist.sample({}, gen).to(ctx.opts).expand(target).contiguous();
    };
    run(*plan_, ctx, {}, num_rows_, batch_size_, &pick);
    std::vector<RowRefill> refills;
    b.tape = compile_fused(*plan_, ctx, b.why, &refills);
    if (b.tape) {
      for (const auto& sp : plan_->steps) {
        if (sp.role == StepPlan::Role::ret || sp.role == StepPlan::Role::latent) continue;
        const Value& v = ctx.env.at(sp.step->name);
        if (v.latent) continue;
        if (v.rows) b.row_steps.push_back(&sp);
        else b.fixed[sp.step->name] = v;
      }
      // A data array's rows as they are (a data variable, an observed array) are
      // gathered in loops; the rest is evaluated.
      const auto row_array = [&](const std::string& name) -> const StepPlan* {
        const StepPlan* found = nullptr;
        for (const auto& sp : plan_->steps)
          if (sp.step->name == name) found = found ? nullptr : &sp;  // a name bound once
        const bool array = found && found->row_data &&
                           (found->role == StepPlan::Role::data ||
                            (found->role == StepPlan::Role::observed && !found->from_value));
        return array ? found : nullptr;
      };
      for (RowRefill& r : refills) {
        const StepPlan* array = r.observed && !r.observed->from_value ? r.observed
                                : r.expr && r.expr->kind == Expr::Kind::name ? row_array(r.expr->name)
                                                                           : nullptr;
        if (array) r.rows_of = array->data.to(at::kDouble).contiguous().reshape({num_rows_, -1});
        b.evaluates = b.evaluates || !array;
      }
      b.refills = std::move(refills);
    }
  } catch (const std::exception& e) {
    b.tape = nullptr;
    b.why = e.what();
  }
  if (!b.tape) spdlog::debug("program '{}': a minibatch of {} rows is not compiled: {}", name(), batch_size_, b.why);
  return b.tape ? &b : nullptr;
}

void ProgramModel::refill_batch(BatchTape& b, const at::Tensor& rows) const {
  const int64_t B = rows.numel();
  const int64_t* drawn = rows.data_ptr<int64_t>();
  Context ctx;
  if (b.evaluates) {  // the values of the rows, on the drawn rows, as log_joint computes them
    ctx.opts = at::TensorOptions().dtype(at::kDouble);
    ctx.constants = &plan_->constants;
    ctx.index = rows;
    ctx.env = b.fixed;
    for (const StepPlan* sp : b.row_steps) {
      Value& v = ctx.env[sp->step->name];
      switch (sp->role) {
        case StepPlan::Role::let: v = eval(sp->step->value, ctx); break;
        case StepPlan::Role::observed:
          if (!sp->from_value) v = data_value(*sp, ctx);  // else its let has just bound it
          break;
        default: v = data_value(*sp, ctx); break;
      }
    }
  }
  at::Tensor evaluated;
  for (const RowRefill& r : b.refills) {
    const double* values;
    int64_t count;
    if (r.rows_of.defined()) {
      const int64_t width = r.rows_of.size(1);
      const double* from = r.rows_of.data_ptr<double>();
      b.scratch.resize(static_cast<size_t>(B * width));
      for (int64_t i = 0; i < B; ++i)
        std::copy(from + drawn[i] * width, from + (drawn[i] + 1) * width, b.scratch.begin() + i * width);
      values = b.scratch.data();
      count = B * width;
    } else {
      const Value v = r.observed ? ctx.env.at(r.observed->step->name) : eval(*r.expr, ctx);
      evaluated = v.t.select(0, 0).to(at::kDouble).contiguous();
      values = evaluated.data_ptr<double>();
      count = evaluated.numel();
    }
    bool set;
    if (r.positions) {
      b.positions.resize(static_cast<size_t>(count));
      for (int64_t k = 0; k < count; ++k) b.positions[static_cast<size_t>(k)] = static_cast<int64_t>(values[k]) - 1;
      set = b.tape->set_positions(r.node, b.positions);
    } else {
      set = b.tape->set_constant(r.node, values, count);
    }
    if (!set)
      throw std::logic_error("program '" + name() + "': a minibatch's rows do not fit the tape compiled for " +
                             std::to_string(B) + " rows");
  }
}

std::function<void()> stream_rewinder(at::Generator generator) {
  std::lock_guard<std::mutex> lock(generator.mutex());
  return [generator, state = generator.get_state()]() mutable {
    std::lock_guard<std::mutex> lock(generator.mutex());
    generator.set_state(state);
  };
}

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

}  // namespace vguide::model
