#pragma once
/// Data-parallel fitting over several processes ("ranks"), on LibTorch's c10d with
/// the Gloo backend (docs/distributed.md).
///
/// Every rank holds a shard of the data rows and the same guide. Each step every
/// rank draws the same particles, evaluates W x (its rows' log likelihood) + the
/// prior terms, and backpropagates; one all-reduce averages the objective and the
/// gradients, so every rank applies the same update and the parameters stay equal
/// without being sent. The mean over ranks of W x (rows of r) is the full data's
/// log likelihood, so the step is the single-process step, its sums reordered.
///
/// Example (every rank runs this, with its own rank):
///   vguide::RendezvousOptions r = vguide::rendezvous_from_env();  // RANK, WORLD_SIZE, ...
///   auto comm = vguide::rendezvous(r, {{"model", vguide::fingerprint(model_text)}});
///   model.set_row_weight(comm->world_size());  // on a ProgramModel of this rank's rows
///   vguide::Fit fit(model, *guide, options);
///   fit.distribute(comm);
///   fit.run();
#include <ATen/core/Tensor.h>

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "vguide/export.hpp"
#include "vguide/model.hpp"

namespace vguide {

/// A distributed fit cannot go on: a rank was lost or did not answer in time, or the
/// ranks disagree at rendezvous. One line naming the rank.
class VGUIDE_API DistributedError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// Where and how the ranks meet: rank 0 listens on master_addr:master_port (a
/// c10d::TCPStore), the others connect to it.
struct RendezvousOptions {
  int64_t rank = 0;
  int64_t world_size = 1;
  std::string master_addr = "127.0.0.1";
  int master_port = 29500;
  /// How long a rendezvous or a collective may wait for the slowest rank.
  std::chrono::milliseconds timeout{std::chrono::minutes(5)};
};

/// @throw std::invalid_argument naming the first bad field.
VGUIDE_API void validate(const RendezvousOptions& options);

/// PyTorch's variables: RANK, WORLD_SIZE, MASTER_ADDR (default 127.0.0.1),
/// MASTER_PORT (default 29500). Unset RANK and WORLD_SIZE mean one process.
/// @throw std::invalid_argument naming a variable that is not a number.
VGUIDE_API RendezvousOptions rendezvous_from_env();

/// A TCP port on 127.0.0.1 that is free at this moment (the kernel's pick), for a
/// rendezvous of local ranks (`vguide-host --launch`, tests). Another program may
/// take it before the ranks do; the rendezvous then fails with a clear error.
/// @throw std::runtime_error if no socket can be bound.
VGUIDE_API int free_loopback_port();

/// The collectives a data-parallel fit needs. Every rank must make the same calls
/// in the same order.
class VGUIDE_API Communicator {
 public:
  virtual ~Communicator();
  virtual int64_t rank() const noexcept = 0;
  virtual int64_t world_size() const noexcept = 0;
  /// In place: the sum over ranks, the same bits on every rank. `t` is a contiguous
  /// CPU tensor. `during` names the moment for errors ("step 57").
  /// @throw DistributedError naming the rank that was lost, when it can be told.
  virtual void all_reduce_sum(at::Tensor& t, const std::string& during) = 0;
};

/// Connects this rank to the others, then checks that all of them fit the same
/// thing: every rank's `fingerprints` (name -> value: model, data, guide, options,
/// settings) must equal rank 0's.
/// @throw std::invalid_argument for bad options;
///        DistributedError "rendezvous at HOST:PORT: ..." if the ranks do not all
///        arrive within the timeout, or "rank 2 differs from rank 0 in the guide
///        family (rank 0: normal, rank 2: iaf)" (the same message on every rank).
VGUIDE_API std::shared_ptr<Communicator> rendezvous(const RendezvousOptions& options,
                                                    const std::map<std::string, std::string>& fingerprints);

/// Every rank's `text`, in rank order (a collective).
VGUIDE_API std::vector<std::string> all_gather(Communicator& communicator, const std::string& text,
                                               const std::string& during);

/// Every rank's `t` concatenated along `dim`, in rank order (a collective): the ranks'
/// tensors may differ in that dim only. @throw std::invalid_argument if other dims differ.
VGUIDE_API at::Tensor all_gather_along(Communicator& communicator, const at::Tensor& t, int64_t dim,
                                       const std::string& during);

/// A rank's model seen as the whole model, for the outputs after a fit: log_joint
/// is the mean over ranks of each rank's log joint (a collective, values only, no
/// gradient across ranks), which is the full data's log joint when every rank's
/// model weighs its rows by W (ProgramModel::set_row_weight).
class VGUIDE_API DataParallelModel : public Model {
 public:
  DataParallelModel(const Model& local, std::shared_ptr<Communicator> communicator);
  const std::vector<SiteInfo>& sites() const override { return local_.sites(); }
  /// @throw std::logic_error if gradients are on and a value requires one.
  at::Tensor log_joint(const at::Tensor& x, const SiteValues& values) const override;
  std::string name() const override { return local_.name(); }
  SiteValues prior_values(PriorInit kind, at::Generator& generator) const override {
    return local_.prior_values(kind, generator);
  }
  const Model& local() const noexcept { return local_; }
  Communicator& communicator() const noexcept { return *communicator_; }

 private:
  const Model& local_;
  std::shared_ptr<Communicator> communicator_;
};

}  // namespace vguide
