#pragma once
/// A `.qvr` program bound to its data: the vguide::Model that guides fit.
///
/// Conditioning is by name, as in quivers: a sample site (`<-`, `draw` or `observe`)
/// whose name is in the data is observed, every other `<-`/`draw` site is a latent,
/// and an `observe` site without data is an error. Values are evaluated with a
/// leading particle dim (S, or 1 for values that do not depend on latents) followed
/// by the value's own dims; two values combine with numpy broadcasting of their own
/// dims (the lower-rank one gets size-1 dims inserted after the particle dim). So a
/// latent (S,) times data (N,) is (S, N), and `log_joint` sums each site's log density
/// over every dim but the particle dim. Data arrays of observed sites share their
/// leading dim N, the data rows; `set_minibatch(B, gen)` evaluates a random subset
/// of B rows per call and scales the row terms by N/B.
///
/// Construction evaluates the program once (one particle drawn from the priors) so
/// that shape errors, bad constant arguments and observations outside their
/// family's support are reported before any fit starts.
///
/// Example: vguide::model::ProgramModel model(vguide::model::load_program("m.qvr"),
///                                            vguide::model::load_data("d.json"));
///          auto guide = plugins.create("normal", model, model.observed_names(), {});
#include <ATen/core/Generator.h>
#include <ATen/core/Tensor.h>

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "vguide/export.hpp"
#include "vguide/model.hpp"
#include "vguide/model/data.hpp"
#include "vguide/model/data_rows.hpp"
#include "vguide/model/direct_log_joint.hpp"
#include "vguide/model/program.hpp"

namespace vguide::model {

/// How ProgramModel::log_joint evaluates the program.
enum class Evaluator {
  /// The fused log joint where it applies and the step is small (S times the
  /// program's elements at most kFusedAutoWork), else LibTorch ops. The default.
  automatic,
  /// LibTorch ops, one per formula term: the reference path.
  reference,
  /// The fused log joint wherever it applies (full batch, CPU, float32 or float64
  /// latents), whatever the size.
  fused,
};

/// The largest step (particles times elements computed per particle) that
/// `Evaluator::automatic` evaluates fused: beyond it LibTorch's vectorised kernels
/// beat plain loops (docs/performance.md).
inline constexpr int64_t kFusedAutoWork = 8192;
/// The same bound for a fit's direct step, which saves autograd's bookkeeping as
/// well: logistic regression minibatches at S = 16 take 114 µs direct against 221
/// through autograd at about 23k, and 380 against 311 at about 90k (docs/performance.md).
inline constexpr int64_t kDirectAutoWork = 32768;

class VGUIDE_API ProgramModel : public Model, public DataRows, public DirectLogJoint {
 public:
  /// Binds the output program of `file` to `data`.
  /// @throw ProgramError (located) for an observe site without data, an unknown size
  ///        name, shapes that do not fit, constant arguments out of their domain, a
  ///        latent whose support depends on its arguments;
  ///        DataError for a missing variable, rows that disagree in N, an
  ///        observation outside its family's support.
  ProgramModel(ProgramFile file, Data data);
  ~ProgramModel() override;

  const std::vector<SiteInfo>& sites() const override { return sites_; }
  /// Every prior term once plus every observed term summed over its rows (scaled by
  /// N/B under a minibatch): shape (S,), dtype and device of `x`.
  /// @throw std::invalid_argument naming a latent site that is missing from `values`
  ///        or has the wrong shape.
  at::Tensor log_joint(const at::Tensor& x, const SiteValues& values) const override;
  std::string name() const override;

  /// The sites bound to data, in program order.
  std::vector<std::string> observed_names() const;
  /// The latent sites, in program order.
  std::vector<std::string> latent_names() const;
  /// The `let` values, in program order.
  std::vector<std::string> let_names() const;
  /// The `let` values that have one element per data row (dim 1 of an evaluated
  /// (S, N, ...) value): what a data-parallel fit gathers from every rank's rows.
  std::vector<std::string> row_let_names() const;
  /// The number of data rows N (0 if no observed site has an array).
  int64_t num_rows() const noexcept override { return num_rows_; }

  /// Evaluate B < N random rows per `log_joint` call, drawn from `generator`, with the
  /// row terms scaled by N/B. B == N restores full batches.
  /// @throw std::invalid_argument if B < 1, B > N, or a latent has one value per data
  ///        row (a per-row latent cannot be subsampled: its rows would drop out of
  ///        the log joint while the guide still draws all of them).
  void set_minibatch(int64_t batch_size, at::Generator generator) override;
  /// The current batch size (N when not subsampling).
  int64_t batch_size() const noexcept override { return batch_size_; }

  /// The data cut to rows [begin, end) for one rank of a data-parallel fit
  /// (docs/distributed.md): every array the program reads row by row (the observed
  /// arrays and `data` arrays with N leading rows) keeps those rows, a size variable
  /// that declares their leading dim becomes end - begin, anything else is kept.
  /// @throw std::invalid_argument if the range is empty or outside [0, N], or the
  ///        rows cannot be split: a latent with one value per row, or a slice.
  Data data_rows(int64_t begin, int64_t end) const;
  /// The refusals of data_rows alone, for a rank whose rows come from its own file.
  /// @throw std::invalid_argument for a latent with one value per row, or a slice.
  void check_rows_can_split() const;

  /// Multiplies every data-row term of the log joint by `weight` (on top of N/B under
  /// a minibatch). A data-parallel fit with W ranks sets W: the mean over the ranks
  /// of their log joints is then exactly the full log joint. Default 1.
  /// @throw std::invalid_argument unless weight is finite and > 0.
  void set_row_weight(double weight) override;
  double row_weight() const noexcept { return row_weight_; }

  /// Chooses how log_joint evaluates the program (every other method uses LibTorch
  /// ops). The fused log joint computes the same value and gradients as the
  /// reference path to rounding, as one autograd node (docs/performance.md).
  /// @throw std::invalid_argument for Evaluator::fused if the program cannot be
  ///        fused, with the reason (fusion_blocker()).
  void set_evaluator(Evaluator evaluator);
  Evaluator evaluator() const noexcept { return evaluator_; }
  /// Why the program cannot be fused ("family MultivariateNormal", "function
  /// cholesky of a latent value", ...), or "" if it can.
  const std::string& fusion_blocker() const noexcept;

  /// The fused tape of the rows evaluated now (all of them, or the minibatch's tape)
  /// when it exists and, without `any_size`, S times its work is at most
  /// kDirectAutoWork; see DirectLogJoint.
  bool direct_applies(int64_t S, bool any_size) const override;
  std::vector<std::string> direct_latents() const override;
  void direct_log_joint(int64_t S, const std::vector<const double*>& latents, double* log_joint,
                        const std::vector<double*>& grads) const override;
  std::function<void()> rows_rewinder() const override;
  std::string direct_blocker() const override;

  /// Each latent drawn, in program order, from its prior given the values chosen for
  /// the earlier ones (the host's median / mean / sample init strategies).
  SiteValues prior_values(PriorInit kind, at::Generator& generator) const override;

  /// Every site's log density term for the given latents, (S,) each, in program order
  /// (full batch): how the host names the site whose density went non-finite.
  std::vector<std::pair<std::string, at::Tensor>> site_log_densities(const at::Tensor& x,
                                                                     const SiteValues& values) const;

  /// The `let` values (and sites) for the given latents: name -> (S, *shape).
  SiteValues evaluate(const at::Tensor& x, const SiteValues& values) const;

  const ProgramFile& file() const noexcept { return *file_; }
  const Program& program() const noexcept { return *program_; }

  struct Plan;
  struct BatchTape;

 private:
  /// The minibatch's compiled tape, compiled the first time it is asked for; null if
  /// the batch cannot be compiled.
  BatchTape* batch_tape() const;
  /// Puts the drawn rows' values into the minibatch's tape.
  void refill_batch(BatchTape& batch, const at::Tensor& rows) const;

  std::shared_ptr<const ProgramFile> file_;
  const Program* program_;
  Data data_;
  std::vector<SiteInfo> sites_;
  std::shared_ptr<Plan> plan_;
  int64_t num_rows_ = 0;
  int64_t batch_size_ = 0;
  std::optional<at::Generator> generator_;
  Evaluator evaluator_ = Evaluator::automatic;
  double row_weight_ = 1.0;
  std::shared_ptr<BatchTape> batch_;  // set by set_minibatch when B < N
  /// Whether each evaluation draws a minibatch of the rows.
  bool subsampled() const noexcept { return batch_ != nullptr; }
};

/// B distinct rows of N, uniformly among all B-subsets, ascending (int64, CPU): the
/// rows of one minibatch. O(B) time and memory, whatever N is.
/// @throw std::invalid_argument unless 0 <= B <= N; c10::Error for a generator that is
///        not a CPU generator.
VGUIDE_API at::Tensor sample_rows(int64_t N, int64_t B, at::Generator& generator);
/// A function that puts `generator` back in the state it has now (a model's
/// DirectLogJoint::rows_rewinder over its stream of minibatch rows).
VGUIDE_API std::function<void()> stream_rewinder(at::Generator generator);

}  // namespace vguide::model
