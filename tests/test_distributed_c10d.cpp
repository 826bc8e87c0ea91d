// An application's own c10d process group handed to vguide
// (vguide/runtime/distributed_c10d.hpp): its collectives, and a rank that stops
// answering named through the store the group met in.
#include <gtest/gtest.h>

#include <ATen/ATen.h>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <exception>
#include <thread>

#include "vguide/runtime/distributed_c10d.hpp"

namespace vguide {
namespace {

// What an application would build itself: a TCPStore and a Gloo group on loopback.
struct OwnGroup {
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<c10d::ProcessGroup> group;
};

OwnGroup own_group(int rank, int world, int port, std::chrono::milliseconds timeout) {
  c10d::TCPStoreOptions so;
  so.port = static_cast<uint16_t>(port);
  so.isServer = rank == 0;
  so.numWorkers = world;
  so.timeout = timeout;
  auto store = c10::make_intrusive<c10d::TCPStore>("127.0.0.1", so);
  auto options = c10d::ProcessGroupGloo::Options::create();
  options->timeout = timeout;
  options->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1"));
  return {store, c10::make_intrusive<c10d::ProcessGroupGloo>(store, rank, world, options)};
}

// Two ranks on threads: both sum once, then rank 1 goes quiet; returns rank 0's
// error for its second sum.
std::string lost_rank_message(bool with_store) {
  const int port = free_loopback_port();
  std::atomic<bool> done{false};
  std::vector<std::string> sums(2);
  std::string error;
  std::vector<std::exception_ptr> failures(2);
  std::vector<std::thread> ranks;
  for (int r = 0; r < 2; ++r)
    ranks.emplace_back([&, r] {
      try {
        OwnGroup g = own_group(r, 2, port, std::chrono::seconds(2));
        auto comm = communicator(g.group, with_store ? g.store : c10::intrusive_ptr<c10d::Store>());
        EXPECT_EQ(comm->rank(), r);
        EXPECT_EQ(comm->world_size(), 2);
        at::Tensor t = at::full({2}, r + 1.0, at::kDouble);
        comm->all_reduce_sum(t, "step 1");
        sums[r] = std::to_string(t[0].item<double>()) + "," + std::to_string(t[1].item<double>());
        if (r == 1) {  // its connections stay open
          while (!done.load()) std::this_thread::sleep_for(std::chrono::milliseconds(10));
          return;
        }
        try {
          comm->all_reduce_sum(t, "step 2");
        } catch (const DistributedError& e) {
          error = e.what();
        }
        done.store(true);
      } catch (...) {
        failures[r] = std::current_exception();
        done.store(true);
      }
    });
  for (auto& t : ranks) t.join();
  for (auto& f : failures)
    if (f) std::rethrow_exception(f);
  EXPECT_EQ(sums[0], "3.000000,3.000000");
  EXPECT_EQ(sums[1], "3.000000,3.000000");
  return error;
}

TEST(DistributedC10d, AnApplicationsGroupWithItsStoreNamesALostRank) {
  const std::string message = lost_rank_message(true);
  EXPECT_EQ(message.rfind("distributed fit: rank 1 stopped answering during step 2 (rank 0 saw: ", 0), 0u) << message;
}

TEST(DistributedC10d, WithoutAStoreTheBackendsMessageIsKept) {
  const std::string message = lost_rank_message(false);
  EXPECT_EQ(message.rfind("distributed fit: step 2 failed on rank 0: ", 0), 0u) << message;
  EXPECT_GT(message.size(), std::string("distributed fit: step 2 failed on rank 0: ").size());
}

TEST(DistributedC10d, ANullGroupIsRefused) { EXPECT_THROW(communicator({}), std::invalid_argument); }

}  // namespace
}  // namespace vguide
