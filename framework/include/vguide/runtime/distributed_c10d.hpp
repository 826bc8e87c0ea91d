#pragma once
/// An application that already has a c10d process group (any backend) hands it to
/// vguide here; `rendezvous` in distributed.hpp builds one itself. Kept apart from
/// distributed.hpp so that only code which uses c10d types includes c10d's headers.
///
/// Example: auto comm = vguide::communicator(group, store);  fit.distribute(comm);
#include <torch/csrc/distributed/c10d/ProcessGroup.hpp>
#include <torch/csrc/distributed/c10d/Store.hpp>

#include <memory>

#include "vguide/runtime/distributed.hpp"

namespace vguide {

/// Wraps `group`. With the `store` its ranks met through, a failed collective names
/// the rank that stopped answering (each surviving rank leaves a note in the store);
/// without it the error carries the backend's own message.
VGUIDE_API std::shared_ptr<Communicator> communicator(c10::intrusive_ptr<c10d::ProcessGroup> group,
                                                      c10::intrusive_ptr<c10d::Store> store = {});

}  // namespace vguide
