#pragma once
/// Stan programs as a second model front-end (docs/stan.md).
///
/// `parse_stan` reads and type-checks a program; `StanModel` binds it to CmdStan
/// JSON data and is the vguide::Model that guides fit. The parameters block gives
/// the latent sites (each declared constraint through the SDK's bijectors, as Stan
/// transforms it); the log joint is the model block's `target` with every `~`
/// statement's full log density (constants kept), evaluated for S particles at
/// once (a leading particle dim). Transformed data run once, when the data are bound.
///
/// Example: vguide::model::StanModel model(vguide::model::load_stan("m.stan"),
///                                         vguide::model::load_data("d.json"));
///          auto guide = plugins.create("normal", model, {}, {});
#include <ATen/core/Generator.h>
#include <ATen/core/Tensor.h>

#include <memory>
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

/// A parsed and type-checked Stan program; immutable, shareable between models.
struct StanProgram;

/// Parses and type-checks Stan text. Every syntax error, construct outside the
/// supported language, type error, undeclared name and wrong argument count throws
/// ProgramError ("file:line:col: message", the source line and a caret line); no
/// other exception escapes.
VGUIDE_API std::shared_ptr<const StanProgram> parse_stan(const std::string& text,
                                                         const std::string& filename = "<stan>");
/// Reads and parses a file. @throw ProgramError (also if the file cannot be read).
VGUIDE_API std::shared_ptr<const StanProgram> load_stan(const std::string& path);

/// One output quantity of a draw, named and shaped as Stan writes it.
struct StanQuantity {
  std::string name;
  std::vector<int64_t> shape;  ///< one draw's shape (array dims, then vector/matrix dims)
  at::Tensor values;           ///< (S, *shape), float64
  enum class Block { parameters, transformed_parameters, generated_quantities } block = Block::parameters;
};

/// How StanModel::log_joint runs the program (docs/stan.md#speed).
enum class StanEvaluator {
  /// Compiled for the fused evaluator when the program allows it, and used when the
  /// step is small for it (S times its elements at most kStanTapeWorkPerNode times
  /// its nodes); else interpreted, with LibTorch's vectorised kernels. The default.
  automatic,
  /// Compiled when the program allows it, and then used at any size.
  compiled,
  /// Always interpreted.
  interpreted,
};

/// See StanEvaluator::automatic: the interpreter issues a few LibTorch ops (about
/// 10 us each, forward and backward) per compiled node, the tape a few ns per element.
constexpr int64_t kStanTapeWorkPerNode = 8000;

struct StanOptions {
  StanEvaluator evaluator = StanEvaluator::automatic;
};

class VGUIDE_API StanModel : public Model, public DataRows, public DirectLogJoint {
 public:
  /// Reads the data block's variables from `data` (sizes, integer-ness and declared
  /// constraints checked, naming the variable and element) and runs transformed data.
  /// @throw DataError for missing or malformed data; ProgramError (located) for a
  ///        size that is not a non-negative integer, a `reject` or an error while
  ///        running transformed data, a bound that depends on parameters.
  /// `seed` seeds the `_rng` calls of transformed data (the host passes --seed).
  StanModel(std::shared_ptr<const StanProgram> program, Data data, uint64_t seed = 0, StanOptions options = {});
  ~StanModel() override;

  /// One latent site per parameters-block variable, in declaration order.
  const std::vector<SiteInfo>& sites() const override { return sites_; }
  /// `target` after transformed parameters and the model block, shape (S,), dtype and
  /// device of `x`. A particle for which `reject` runs or a transformed parameter
  /// breaks its declared constraint gets -inf (a non-finite step, as in Stan).
  at::Tensor log_joint(const at::Tensor& x, const SiteValues& values) const override;
  /// The file name without folder and extension.
  std::string name() const override;
  /// Parameters, transformed parameters and generated quantities of S draws, in
  /// Stan's order; generated quantities' `_rng` calls draw from `generator`.
  std::vector<StanQuantity> quantities(const SiteValues& values, at::Generator& generator) const;

  /// The program's source file name, as given to parse_stan.
  const std::string& filename() const;

  /// True if the log joint was compiled; if not, interpreted_because() says why
  /// (the first construct the tape cannot express, e.g. "an if whose condition
  /// depends on parameters").
  bool compiled() const;
  const std::string& interpreted_because() const;
  /// The log joint by the interpreter, whether or not the model is compiled.
  at::Tensor log_joint_interpreted(const at::Tensor& x, const SiteValues& values) const;

  /// Data rows (docs/stan.md#minibatches). The rows are those of a data size N that
  /// is the first size of data variables (`vector[N] y; matrix[N, K] x;`): the largest
  /// such size whose declarations can be cut and whose log density sums over its rows,
  /// which is checked at random points (all rows against two halves and none). A cut
  /// log joint is target(no rows) + scale * (target(the rows) - target(no rows)), so
  /// the terms that do not depend on the rows count once; it is interpreted.
  /// The rows the log joint covers, 0 if the program has none that can be cut.
  int64_t num_rows() const override;
  /// The data size that counts the rows ("N"); "" if none can be cut.
  std::string rows_size() const;
  /// Why no rows can be cut ("" if they can).
  std::string rows_refusal() const;
  /// @throw std::invalid_argument with rows_refusal(), or for B out of [1, num_rows()].
  void set_minibatch(int64_t batch_size, at::Generator generator) override;
  int64_t batch_size() const override;
  /// One rank's block [begin, end) of the rows, for a data-parallel fit in which every
  /// rank has read all the data: the log joint covers those rows (and a minibatch
  /// set before is dropped). Generated quantities still see all of them. The
  /// setters are not to be called while another thread evaluates the log joint.
  /// @throw std::invalid_argument with rows_refusal(), or for a range that is empty or
  ///        outside [0, N].
  void set_row_range(int64_t begin, int64_t end);
  /// @throw std::invalid_argument for a weight that is not a positive number, or with
  ///        rows_refusal() when no rows can be cut.
  void set_row_weight(double weight) override;

  /// Whether a compiled log joint applies to the rows evaluated: all of them, a
  /// rank's block, or a minibatch, whose tape takes the rows as inputs and is traced
  /// the first time this asks (with `any_size` false, also the automatic evaluator's
  /// size rule); see DirectLogJoint.
  bool direct_applies(int64_t S, bool any_size) const override;
  std::vector<std::string> direct_latents() const override;
  void direct_log_joint(int64_t S, const std::vector<const double*>& latents, double* log_joint,
                        const std::vector<double*>& grads) const override;
  std::function<void()> rows_rewinder() const override;
  std::string direct_blocker() const override;

 private:
  void compile();
  struct Impl;
  std::unique_ptr<Impl> impl_;
  std::vector<SiteInfo> sites_;
};

/// True if `path` names a Stan program by its extension (".stan").
VGUIDE_API bool is_stan_path(const std::string& path);

}  // namespace vguide::model
