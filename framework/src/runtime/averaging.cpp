#include "vguide/runtime/averaging.hpp"

#include <torch/torch.h>

#include <cmath>
#include <iomanip>
#include <sstream>
#include <stdexcept>

#include "option_checks.hpp"

namespace vguide {

namespace {

constexpr int64_t kMinWindow = 200;   // steps compared, at the least
constexpr int64_t kMaxBatches = 32;   // batch means kept; then pairs merge
constexpr int64_t kMinBatches = 16;   // batch means needed for an MCSE
// Steps per batch before an MCSE counts: batches shorter than the iterates'
// autocorrelation (about 1/lr = 100 steps at the default Adam step) make the batch
// means look independent when they are not, and a fit then stopped 0.2 sd off with a
// claimed MCSE of 0.015 (a ridge, one seed in ten).
constexpr int64_t kMinBatchLength = 128;

std::string fixed(double v, int digits) {
  std::ostringstream s;
  s << std::fixed << std::setprecision(digits) << v;
  return s.str();
}

// The largest drift over the columns of X (n, M) in units: |mean of the newer half -
// mean of the older half| / unit.
double max_drift(const at::Tensor& X, const at::Tensor& units) {
  const int64_t half = X.size(0) / 2;
  const at::Tensor older = X.narrow(0, X.size(0) - 2 * half, half).mean(0);
  const at::Tensor newer = X.narrow(0, X.size(0) - half, half).mean(0);
  return X.size(1) ? ((newer - older).abs() / units).max().item<double>() : 0.0;
}

}  // namespace

void validate(const AveragingOptions& o) {
  detail::check_at_least("averaging", "check_every", o.check_every, 1);
  detail::check_at_least("averaging", "min_steps", o.min_steps, 1);
  detail::check_at_least("averaging", "window", o.window, kMinWindow);
  detail::check_at_least("averaging", "monitor", o.monitor, 1);
  detail::check_positive_number("averaging", "drift", o.drift);
  detail::check_positive_number("averaging", "mcse", o.mcse);
}

IterateAverager::IterateAverager(std::vector<at::Tensor> params, const std::vector<bool>& watched,
                                 AveragingOptions options)
    : params_(std::move(params)), options_(options) {
  validate(options_);
  if (watched.size() != params_.size()) throw std::invalid_argument("IterateAverager: one watched flag per parameter");
  int64_t total = 0;
  for (size_t i = 0; i < params_.size(); ++i)
    if (watched[i]) total += params_[i].numel();
  // Evenly spaced elements when there are more than `monitor` of them.
  const int64_t stride = std::max<int64_t>(1, (total + options_.monitor - 1) / options_.monitor);
  int64_t position = 0;
  for (size_t i = 0; i < params_.size(); ++i) {
    std::vector<int64_t> own;
    if (watched[i]) {
      for (int64_t k = 0; k < params_[i].numel(); ++k, ++position)
        if (position % stride == 0) own.push_back(k);
    }
    watched_count_ += static_cast<int64_t>(own.size());
    indices_.push_back(at::tensor(own, at::kLong));
  }
  ring_ = at::zeros({options_.window, watched_count_}, at::kDouble);
  batch_sum_ = at::zeros({watched_count_}, at::kDouble);
}

at::Tensor IterateAverager::watched_values() const {
  std::vector<at::Tensor> parts;
  for (size_t i = 0; i < params_.size(); ++i)
    if (indices_[i].numel() > 0) parts.push_back(params_[i].detach().reshape({-1}).index_select(0, indices_[i]));
  if (parts.empty()) return at::zeros({0}, at::kDouble);
  return at::cat(parts).to(at::kDouble);
}

void IterateAverager::start_averaging(int64_t step) {
  start_ = step;
  sums_.clear();
  for (const auto& p : params_) sums_.push_back(at::zeros(p.sizes(), at::kDouble));
}

namespace {

// Parameters whose values record() can read as plain arrays.
bool plain(const std::vector<at::Tensor>& params) {
  for (const auto& p : params)
    if (!p.device().is_cpu() || !p.is_contiguous() || (p.scalar_type() != at::kDouble && p.scalar_type() != at::kFloat))
      return false;
  return true;
}

template <class T>
void add_to(double* sum, const T* values, int64_t n) {
  for (int64_t k = 0; k < n; ++k) sum[k] += static_cast<double>(values[k]);
}

}  // namespace

// The sums record() forms with tensor ops, in plain loops: a small model's
// step is a few microseconds, and each LibTorch op costs about one.
bool IterateAverager::record_plain() {
  if (!plain(params_)) return false;
  double* row = ring_.data_ptr<double>() + ring_next_ * watched_count_;
  int64_t j = 0;
  for (size_t i = 0; i < params_.size(); ++i) {
    const int64_t* index = indices_[i].data_ptr<int64_t>();
    const int64_t n = indices_[i].numel();
    if (params_[i].scalar_type() == at::kDouble) {
      const double* values = params_[i].data_ptr<double>();
      for (int64_t k = 0; k < n; ++k) row[j++] = values[index[k]];
    } else {
      const float* values = params_[i].data_ptr<float>();
      for (int64_t k = 0; k < n; ++k) row[j++] = values[index[k]];
    }
  }
  ring_next_ = (ring_next_ + 1) % options_.window;
  ring_filled_ = std::min(ring_filled_ + 1, options_.window);
  if (start_ < 0) return true;
  for (size_t i = 0; i < params_.size(); ++i) {
    double* sum = sums_[i].data_ptr<double>();
    if (params_[i].scalar_type() == at::kDouble) add_to(sum, params_[i].data_ptr<double>(), params_[i].numel());
    else add_to(sum, params_[i].data_ptr<float>(), params_[i].numel());
  }
  ++count_;
  add_to(batch_sum_.data_ptr<double>(), row, watched_count_);
  return true;
}

void IterateAverager::record() {
  if (!options_.enabled) return;
  torch::NoGradGuard no_grad;
  if (!record_plain()) {
    const at::Tensor now = watched_values();
    ring_[ring_next_].copy_(now);
    ring_next_ = (ring_next_ + 1) % options_.window;
    ring_filled_ = std::min(ring_filled_ + 1, options_.window);
    if (start_ < 0) return;
    for (size_t i = 0; i < params_.size(); ++i) sums_[i].add_(params_[i].detach().to(at::kDouble));
    ++count_;
    batch_sum_.add_(now);
  }
  if (start_ < 0) return;
  if (++batch_filled_ < batch_size_) return;
  batch_means_.push_back(batch_sum_ / static_cast<double>(batch_size_));
  batch_sum_.zero_();
  batch_filled_ = 0;
  if (static_cast<int64_t>(batch_means_.size()) == kMaxBatches) {
    std::vector<at::Tensor> merged;
    for (size_t k = 0; k + 1 < batch_means_.size(); k += 2) merged.push_back(0.5 * (batch_means_[k] + batch_means_[k + 1]));
    batch_means_ = std::move(merged);
    batch_size_ *= 2;
  }
}

// The watched elements' units (undefined: 1), in watched order.
at::Tensor IterateAverager::watched_units(const std::vector<at::Tensor>& units) const {
  std::vector<at::Tensor> parts;
  for (size_t i = 0; i < params_.size(); ++i) {
    if (indices_[i].numel() == 0) continue;
    const at::Tensor unit = i < units.size() && units[i].defined()
                                ? units[i].detach().to(at::kDouble).expand(params_[i].sizes()).reshape({-1})
                                : at::ones({params_[i].numel()}, at::kDouble);
    parts.push_back(unit.index_select(0, indices_[i]));
  }
  return parts.empty() ? at::zeros({0}, at::kDouble) : at::cat(parts);
}

std::optional<std::string> IterateAverager::check(int64_t step, const std::vector<at::Tensor>& units) {
  if (!options_.enabled || step % options_.check_every != 0) return std::nullopt;
  torch::NoGradGuard no_grad;
  if (start_ < 0) {
    const int64_t n = std::min(ring_filled_, step / 2);
    if (n < kMinWindow) return std::nullopt;
    // The last n rows of the ring, oldest first.
    const at::Tensor recent =
        at::cat({ring_.narrow(0, ring_next_, options_.window - ring_next_), ring_.narrow(0, 0, ring_next_)})
            .narrow(0, options_.window - n, n);
    last_drift_ = max_drift(recent, watched_units(units));
    if (last_drift_ < options_.drift) start_averaging(step);
    return std::nullopt;
  }
  const int64_t batches = static_cast<int64_t>(batch_means_.size());
  if (count_ < options_.min_steps || batches < kMinBatches || batch_size_ < kMinBatchLength || watched_count_ == 0)
    return std::nullopt;
  // Batch means underestimate the MCSE when a batch is shorter than the iterates'
  // autocorrelation (about 1/lr steps under Adam): the estimate from batches twice as
  // long, half as many, is taken too, and the larger one counts.
  const at::Tensor means = at::stack(batch_means_);
  const at::Tensor mcse = means.std(0, /*unbiased=*/true) / std::sqrt(static_cast<double>(batches));
  const int64_t pairs = batches / 2;
  const at::Tensor merged = 0.5 * (means.narrow(0, 0, 2 * pairs).view({pairs, 2, -1}).sum(1));
  const at::Tensor mcse_long = merged.std(0, /*unbiased=*/true) / std::sqrt(static_cast<double>(pairs));
  last_mcse_ = (at::maximum(mcse, mcse_long) / watched_units(units)).max().item<double>();
  if (!(last_mcse_ <= options_.mcse)) return std::nullopt;
  return "iterates stationary from step " + std::to_string(start_) + " (drift " + fixed(last_drift_, 3) +
         " of a unit); " + std::to_string(count_) + " steps averaged, MCSE " + fixed(last_mcse_, 4) + " of a unit";
}

void IterateAverager::apply() {
  if (count_ == 0) return;
  torch::NoGradGuard no_grad;
  for (size_t i = 0; i < params_.size(); ++i) params_[i].copy_(sums_[i] / static_cast<double>(count_));
}

void IterateAverager::save(torch::serialize::OutputArchive& archive) const {
  archive.write("ring", ring_);
  archive.write("counters", at::tensor({ring_next_, ring_filled_, start_, count_, batch_size_, batch_filled_}, at::kLong));
  archive.write("stats", at::tensor({last_drift_, last_mcse_}, at::kDouble));
  archive.write("batch_sum", batch_sum_);
  archive.write("batch_means", batch_means_.empty() ? at::zeros({0, watched_count_}, at::kDouble) : at::stack(batch_means_));
  for (size_t i = 0; i < sums_.size(); ++i) archive.write("sum." + std::to_string(i), sums_[i]);
}

void IterateAverager::load(torch::serialize::InputArchive& archive) {
  at::Tensor counters, stats, means;
  archive.read("ring", ring_);
  archive.read("counters", counters);
  archive.read("stats", stats);
  archive.read("batch_sum", batch_sum_);
  archive.read("batch_means", means);
  const int64_t* c = counters.data_ptr<int64_t>();
  ring_next_ = c[0];
  ring_filled_ = c[1];
  start_ = c[2];
  count_ = c[3];
  batch_size_ = c[4];
  batch_filled_ = c[5];
  last_drift_ = stats[0].item<double>();
  last_mcse_ = stats[1].item<double>();
  batch_means_.clear();
  for (int64_t k = 0; k < means.size(0); ++k) batch_means_.push_back(means[k].clone());
  sums_.clear();
  if (start_ >= 0) {
    for (size_t i = 0; i < params_.size(); ++i) {
      at::Tensor sum;
      archive.read("sum." + std::to_string(i), sum);
      sums_.push_back(sum);
    }
  }
}

}  // namespace vguide
