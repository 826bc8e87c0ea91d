#pragma once
/// The fit: an optimiser loop over a guide's parameters for any model and any guide
/// family, with the host's hooks (before_step, after_fit), a guard against
/// non-finite steps, Stan ADVI's stopping rule and checkpoints that resume bit for
/// bit. The CLI (`vguide-host`) is a thin layer over this class; an application can
/// use it directly.
///
/// Example:
///   vguide::FitOptions options;
///   options.steps = 5000;
///   options.init.strategy = vguide::InitStrategy::median;
///   vguide::Fit fit(model, *guide, options);
///   vguide::FitResult result = fit.run();
///   fit.finish();  // the guide's after_fit (Laplace: the Hessian)
#include <ATen/core/Generator.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "vguide/export.hpp"
#include "vguide/guide.hpp"
#include "vguide/model.hpp"
#include "vguide/runtime/averaging.hpp"
#include "vguide/runtime/convergence.hpp"
#include "vguide/runtime/init.hpp"
#include "vguide/runtime/objective.hpp"
#include "vguide/runtime/schedule.hpp"

namespace vguide {

class Communicator;

enum class Optimizer { adam, adamw, sgd, rmsprop };

struct OptimizerOptions {
  Optimizer kind = Optimizer::adam;
  double lr = 0.01;
  double momentum = 0.9;       ///< sgd and rmsprop
  double weight_decay = -1.0;  ///< < 0: the kind's default (0.01 for adamw, else 0)
};

/// How a step gets its gradients (docs/performance.md#the-direct-step).
enum class StepPath {
  /// direct where it applies and the model would evaluate its compiled log joint at
  /// this many particles, else autograd. The default.
  automatic,
  /// The guide's draw, the objective and backward() through LibTorch's autograd.
  autograd,
  /// No autograd: for a family that declares a location-scale structure
  /// (location_scale.hpp), a model with a compiled log joint (DirectLogJoint), the
  /// ELBO (with or without sticking the landing) and sites whose bijectors act
  /// element by element; the gradients are computed in plain loops. Fit's constructor
  /// throws std::invalid_argument if it cannot apply; for a model with data rows
  /// whose rows may still change (a minibatch set after the start), the first step
  /// that cannot take it throws instead.
  direct,
};

/// "auto" | "autograd" | "direct". @throw std::invalid_argument.
VGUIDE_API StepPath parse_step_path(const std::string& name);
VGUIDE_API std::string to_string(StepPath path);

/// "adam" | "adamw" | "sgd" | "rmsprop". @throw std::invalid_argument.
VGUIDE_API Optimizer parse_optimizer(const std::string& name);
VGUIDE_API std::string to_string(Optimizer kind);

/// The defaults are answers, not settings (docs/fitting.md): float64, a start from
/// Pathfinder with a scale, Adam whose location steps are in units of the guide's
/// own scale, the iterates averaged once stationary, and the fit stopped when the
/// averages are known to 2% of a posterior sd, at most 20 000 steps.
struct FitOptions {
  int64_t steps = 20000;  ///< the most steps (the convergence rule usually stops sooner)
  /// The guide's parameters, the model's evaluation and the data; float64 or float32.
  at::ScalarType dtype = at::kDouble;
  /// particles 0 (the default): default_particles(guide), chosen when the fit starts.
  ObjectiveOptions objective{Objective::elbo, 0, false};
  OptimizerOptions optimizer;
  ScheduleOptions schedule;
  double clip_norm = 0.0;  ///< > 0: clip the gradient's global 2-norm to this
  ConvergenceOptions convergence;
  AveragingOptions averaging;
  /// Take the steps of location-type parameters in units of the guide's scale
  /// (Guide::step_scales); false: every step as the optimiser takes it.
  bool scale_steps = true;
  InitOptions init;
  StepPath step_path = StepPath::automatic;
  int64_t max_non_finite = 20;  ///< stop after this many non-finite steps in a row
  uint64_t seed = 0;            ///< the init strategies' stream
};

/// @throw std::invalid_argument naming the first bad setting.
VGUIDE_API void validate(const FitOptions& options);

/// The particles per step a fit takes when not told (docs/fitting.md): 8 for a
/// normalizing flow (its many weights share each draw's noise, and with one draw a
/// step its averaged iterates lag behind the fit), 4 for a guide with more than two
/// parameters per latent dimension (full- and low-rank Gaussians, mixtures), and 1
/// for mean-field and point-mass guides, as Stan's ADVI and Pyro take. Measured on
/// the accuracy suite: one draw a step left full-rank fits 0.15-0.27 sd off on a
/// ridge and flows at 0.4-1.8 times mean-field's KL on a banana; these counts bring
/// both within the suite's tolerances.
VGUIDE_API int64_t default_particles(Guide& guide);

enum class StopReason { steps, converged, non_finite, interrupted };
VGUIDE_API std::string to_string(StopReason reason);

/// What the progress callback sees after every step.
struct StepReport {
  int64_t step = 0;         ///< steps done, this one included
  int64_t steps = 0;        ///< planned
  double objective = 0.0;   ///< this step's estimate (NaN if not finite)
  bool skipped = false;     ///< not finite: no update
};

struct FitResult {
  int64_t steps_done = 0;
  StopReason reason = StopReason::steps;
  /// converged: the rule that fired ("mean" / "median"); non_finite: what went
  /// non-finite, naming the site; else empty.
  std::string detail;
  int64_t non_finite_steps = 0;  ///< skipped steps over the whole fit
  std::string last_non_finite;   ///< why the latest skipped step was skipped
  std::string init;              ///< how the guide was started (the init strategy's detail)
  int64_t averaged_steps = 0;    ///< steps whose iterates the outputs average
  int64_t averaging_from = -1;   ///< the first of them (-1: no averaging)
};

/// A checkpoint that does not fit this fit, or cannot be read.
class VGUIDE_API CheckpointError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class VGUIDE_API Fit {
 public:
  /// Validates the options, applies the init strategy, builds the optimiser.
  Fit(const Model& model, Guide& guide, FitOptions options);
  ~Fit();
  Fit(const Fit&) = delete;
  Fit& operator=(const Fit&) = delete;

  /// Makes this fit one rank of a data-parallel fit (vguide/runtime/distributed.hpp,
  /// docs/distributed.md). Call it on every rank after construction and before any
  /// step or load_checkpoint; the model must be this rank's shard with its rows
  /// weighed by W. Sends rank 0's parameters and guide streams to all (every rank
  /// starts equal and draws the same particles); from then on step, run,
  /// save_checkpoint, load_checkpoint and finish are collectives: every rank calls
  /// them in the same order.
  /// @throw std::invalid_argument for what a data-parallel fit cannot do: IWAE (its
  ///        log-sum-exp over particles needs every rank's likelihood before any
  ///        gradient) and the laplace family (its Hessian needs the whole log joint
  ///        in one process); std::logic_error after the first step.
  void distribute(std::shared_ptr<Communicator> communicator);

  /// One optimiser step (before_step, objective, backward, clip, update). Returns
  /// false when the objective or a gradient was not finite: the step is skipped and
  /// the parameters keep their last finite values. Afterwards each parameter's grad
  /// holds the gradient the update used (averaged over ranks when distributed).
  bool step();

  /// Steps until `options.steps` are done, the convergence rule fires, K non-finite
  /// steps come in a row, or `*interrupt` becomes true (checked between steps; in a
  /// distributed fit on any rank, and all ranks stop after the same step).
  FitResult run(const std::atomic<bool>* interrupt = nullptr,
                const std::function<void(const StepReport&)>& on_step = {});

  /// Writes the averaged iterates into the guide (when averaging ran), then the
  /// guide's after_fit hook; once.
  void finish();
  bool finished() const noexcept;

  int64_t steps_done() const noexcept;
  /// The objective estimate of every step so far (NaN for a skipped step).
  const std::vector<double>& trace() const noexcept;
  const FitResult& result() const noexcept;
  const FitOptions& options() const noexcept;
  /// Whether the next step is direct (StepPath) for the rows the model evaluates now,
  /// and if not, why not.
  bool direct_steps() const noexcept;
  const std::string& autograd_because() const noexcept;

  /// A generator outside the guide whose state a checkpoint must carry (the
  /// minibatch rows stream).
  void track_generator(const std::string& name, at::Generator generator);

  /// Writes the guide's parameters and buffers, the optimiser state, the step,
  /// every generator's state and `fingerprints` (name -> value) to `path`
  /// atomically (a temporary file, then rename). Distributed: every rank calls it,
  /// rank 0 writes (with every rank's tracked generators).
  void save_checkpoint(const std::string& path, const std::map<std::string, std::string>& fingerprints) const;
  /// Restores a checkpoint written by save_checkpoint.
  /// A finished checkpoint (after_fit has run) with at least `options.steps` steps
  /// restores the fitted guide, to draw from; otherwise the training state, to
  /// continue. @throw CheckpointError if it cannot be read, or a fingerprint differs
  ///        ("checkpoint PATH: the data differs (checkpoint: X, now: Y)"), or it was
  ///        written by a fit with another number of ranks. Distributed: rank 0
  ///        reads the file and sends it to every rank.
  void load_checkpoint(const std::string& path, const std::map<std::string, std::string>& fingerprints);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

/// The init strategies' stream is seeded with FitOptions::seed ^ kInitStreamSalt.
inline constexpr uint64_t kInitStreamSalt = 0x1417ba5eULL;

/// "float64" | "float32" (also "double", "float"). @throw std::invalid_argument.
VGUIDE_API at::ScalarType parse_dtype(const std::string& name);
VGUIDE_API std::string dtype_name(at::ScalarType dtype);

/// Converts a guide's floating-point parameters and buffers to `dtype` in place (its
/// integer and boolean buffers stay), as the fit does before it starts.
VGUIDE_API void convert_guide(Guide& guide, at::ScalarType dtype);

/// A short stable fingerprint of a text (64-bit FNV-1a, 16 hex digits).
VGUIDE_API std::string fingerprint(const std::string& text);

}  // namespace vguide
