#include "vguide/runtime/distributed.hpp"

#include <ATen/ATen.h>
#include <c10/core/GradMode.h>
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <nlohmann/json.hpp>
#include <thread>

#include "vguide/runtime/distributed_c10d.hpp"

namespace vguide {

namespace {

constexpr const char* kFailedKey = "vguide/failed/";
constexpr const char* kFingerprintKey = "vguide/fingerprints/";
constexpr const char* kCheckedKey = "vguide/checked/";
constexpr const char* kRefusedKey = "vguide/refused/";

std::string first_line(const std::string& s) { return s.substr(0, s.find('\n')); }

std::string key(const char* prefix, int64_t rank) { return prefix + std::to_string(rank); }

std::string rank_list(const std::vector<int64_t>& ranks) {
  std::string out = ranks.size() == 1 ? "rank " : "ranks ";
  for (size_t i = 0; i < ranks.size(); ++i) out += (i ? ", " : "") + std::to_string(ranks[i]);
  return out;
}

class ProcessGroupCommunicator final : public Communicator {
 public:
  ProcessGroupCommunicator(c10::intrusive_ptr<c10d::ProcessGroup> group, c10::intrusive_ptr<c10d::Store> store,
                           std::chrono::milliseconds grace)
      : group_(std::move(group)), store_(std::move(store)), grace_(grace) {}

  int64_t rank() const noexcept override { return group_->getRank(); }
  int64_t world_size() const noexcept override { return group_->getSize(); }

  void all_reduce_sum(at::Tensor& t, const std::string& during) override {
    if (world_size() == 1) return;
    std::vector<at::Tensor> tensors{t};
    try {
      group_->allreduce(tensors)->wait();
    } catch (const std::exception& e) {
      throw DistributedError(explain(during, first_line(e.what())));
    }
  }

 private:
  // Which rank broke the collective: every rank that saw the failure leaves a note in
  // the store and waits a moment for the others' notes; a rank without one died or
  // hangs. The store lives in rank 0's process, so losing it means losing rank 0.
  std::string explain(const std::string& during, const std::string& cause) const {
    const std::string me = "rank " + std::to_string(rank());
    if (!store_) return "distributed fit: " + during + " failed on " + me + ": " + cause;
    try {
      store_->set(key(kFailedKey, rank()), std::vector<uint8_t>(during.begin(), during.end()));
      const auto deadline = std::chrono::steady_clock::now() + grace_;
      std::vector<int64_t> silent;
      while (true) {
        silent.clear();
        for (int64_t k = 0; k < world_size(); ++k)
          if (k != rank() && !store_->check({key(kFailedKey, k)})) silent.push_back(k);
        if (silent.empty() || std::chrono::steady_clock::now() >= deadline) break;
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
      }
      if (silent.empty()) return "distributed fit: every rank failed during " + during + " (" + me + " saw: " + cause + ")";
      return "distributed fit: " + rank_list(silent) + " stopped answering during " + during + " (" + me + " saw: " + cause +
             ")";
    } catch (const std::exception&) {
      return "distributed fit: rank 0 (the rendezvous host) is gone: " + during + " failed (" + me + " saw: " + cause + ")";
    }
  }

  c10::intrusive_ptr<c10d::ProcessGroup> group_;
  c10::intrusive_ptr<c10d::Store> store_;
  std::chrono::milliseconds grace_;
};

int64_t env_number(const char* name, int64_t fallback) {
  const char* text = std::getenv(name);
  if (!text || !*text) return fallback;
  char* end = nullptr;
  errno = 0;
  const long long v = std::strtoll(text, &end, 10);
  if (*end != '\0' || errno != 0)
    throw std::invalid_argument(std::string("environment variable ") + name + " is '" + text + "', not a whole number");
  return v;
}

bool is_loopback(const std::string& host) { return host == "localhost" || host.rfind("127.", 0) == 0 || host == "::1"; }

std::vector<uint8_t> bytes_of(const std::string& s) { return std::vector<uint8_t>(s.begin(), s.end()); }

// The first fingerprint in which rank k differs from rank 0, as the message every
// rank prints.
std::string first_difference(const std::vector<std::map<std::string, std::string>>& all) {
  for (size_t k = 1; k < all.size(); ++k) {
    std::vector<std::string> keys;
    for (const auto& [name, value] : all[0]) keys.push_back(name);
    for (const auto& [name, value] : all[k])
      if (!all[0].count(name)) keys.push_back(name);
    for (const auto& name : keys) {
      auto a = all[0].find(name), b = all[k].find(name);
      const std::string va = a == all[0].end() ? "none" : a->second, vb = b == all[k].end() ? "none" : b->second;
      if (va != vb)
        return "rank " + std::to_string(k) + " differs from rank 0 in the " + name + " (rank 0: " + va + ", rank " +
               std::to_string(k) + ": " + vb + ")";
    }
  }
  return "";
}

}  // namespace

Communicator::~Communicator() = default;

int free_loopback_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) throw std::runtime_error(std::string("no socket for a free port: ") + std::strerror(errno));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof addr;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    const std::string why = std::strerror(errno);
    ::close(fd);
    throw std::runtime_error("no free port on 127.0.0.1: " + why);
  }
  ::close(fd);
  return ntohs(addr.sin_port);
}

void validate(const RendezvousOptions& o) {
  if (o.world_size < 1)
    throw std::invalid_argument("world size is " + std::to_string(o.world_size) + ", but must be at least 1");
  if (o.rank < 0 || o.rank >= o.world_size)
    throw std::invalid_argument("rank is " + std::to_string(o.rank) + ", but must be in [0, " +
                                std::to_string(o.world_size - 1) + "] for a world size of " +
                                std::to_string(o.world_size));
  if (o.master_addr.empty()) throw std::invalid_argument("master address is empty");
  if (o.master_port < 1 || o.master_port > 65535)
    throw std::invalid_argument("master port is " + std::to_string(o.master_port) + ", but must be in [1, 65535]");
  if (o.timeout.count() <= 0) throw std::invalid_argument("timeout must be positive");
}

RendezvousOptions rendezvous_from_env() {
  RendezvousOptions o;
  o.rank = env_number("RANK", 0);
  o.world_size = env_number("WORLD_SIZE", 1);
  if (const char* addr = std::getenv("MASTER_ADDR"); addr && *addr) o.master_addr = addr;
  o.master_port = static_cast<int>(env_number("MASTER_PORT", o.master_port));
  return o;
}

std::shared_ptr<Communicator> rendezvous(const RendezvousOptions& o,
                                         const std::map<std::string, std::string>& fingerprints) {
  validate(o);
  const std::string where = "rendezvous at " + o.master_addr + ":" + std::to_string(o.master_port);
  c10::intrusive_ptr<c10d::TCPStore> store;
  try {
    c10d::TCPStoreOptions so;
    so.port = static_cast<uint16_t>(o.master_port);
    so.isServer = o.rank == 0;
    so.numWorkers = static_cast<int>(o.world_size);
    so.waitWorkers = true;
    so.timeout = o.timeout;
    store = c10::make_intrusive<c10d::TCPStore>(o.master_addr, so);
  } catch (const std::exception& e) {
    throw DistributedError(where + " (rank " + std::to_string(o.rank) + " of " + std::to_string(o.world_size) +
                           "): " + first_line(e.what()));
  }

  // Every rank reads every rank's fingerprints and names the same first difference;
  // nobody leaves (rank 0 hosts the store) until all have read.
  const std::string seconds = std::to_string(std::chrono::duration_cast<std::chrono::seconds>(o.timeout).count());
  // Names the ranks whose key is missing after a wait timed out.
  const auto missing = [&](const char* prefix, const std::string& what, const std::string& cause) {
    std::vector<int64_t> absent;
    try {
      for (int64_t k = 0; k < o.world_size; ++k)
        if (!store->check({key(prefix, k)})) absent.push_back(k);
    } catch (const std::exception&) {
      return DistributedError(where + ": rank 0 (the rendezvous host) is gone (" + first_line(cause) + ")");
    }
    if (absent.empty()) return DistributedError(where + ": " + first_line(cause));
    return DistributedError(where + ": " + rank_list(absent) + " did not " + what + " within " + seconds + " s");
  };
  std::string mismatch;
  std::vector<std::map<std::string, std::string>> all;
  try {
    store->set(key(kFingerprintKey, o.rank), bytes_of(nlohmann::json(fingerprints).dump()));
    for (int64_t k = 0; k < o.world_size; ++k) {
      const std::vector<uint8_t> text = store->get(key(kFingerprintKey, k));
      all.push_back(nlohmann::json::parse(text.begin(), text.end()).get<std::map<std::string, std::string>>());
    }
  } catch (const std::exception& e) {
    throw missing(kFingerprintKey, "arrive", e.what());
  }
  mismatch = first_difference(all);
  try {
    store->set(key(kCheckedKey, o.rank), bytes_of("1"));
    std::vector<std::string> checked;
    for (int64_t k = 0; k < o.world_size; ++k) checked.push_back(key(kCheckedKey, k));
    store->wait(checked);
  } catch (const std::exception& e) {
    throw missing(kCheckedKey, "finish the check", e.what());
  }
  if (!mismatch.empty()) {
    // Rank 0 hosts the store: were it to leave as soon as its own wait returned, the
    // others' waits could still be in flight and end in "connection reset" instead of
    // the shared message. So the others say they have read it, and rank 0 waits for
    // that (bounded by the timeout; a rank that died meanwhile changes nothing).
    try {
      if (o.rank != 0) {
        store->set(key(kRefusedKey, o.rank), bytes_of("1"));
      } else {
        std::vector<std::string> refused;
        for (int64_t k = 1; k < o.world_size; ++k) refused.push_back(key(kRefusedKey, k));
        store->wait(refused);
      }
    } catch (const std::exception&) {
    }
    throw DistributedError(mismatch);
  }

  c10::intrusive_ptr<c10d::ProcessGroup> group;
  try {
    auto options = c10d::ProcessGroupGloo::Options::create();
    options->timeout = o.timeout;
    // GLOO_SOCKET_IFNAME as in PyTorch; loopback rendezvous stays on loopback;
    // otherwise the address this host's name resolves to.
    const char* interface_name = std::getenv("GLOO_SOCKET_IFNAME");
    if (interface_name && *interface_name)
      options->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(interface_name));
    else if (is_loopback(o.master_addr))
      options->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1"));
    else
      options->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
    group = c10::make_intrusive<c10d::ProcessGroupGloo>(c10::make_intrusive<c10d::PrefixStore>("vguide/gloo", store),
                                                        static_cast<int>(o.rank), static_cast<int>(o.world_size),
                                                        options);
  } catch (const std::exception& e) {
    throw DistributedError(where + ": the Gloo group did not form: " + first_line(e.what()));
  }
  return std::make_shared<ProcessGroupCommunicator>(group, store, std::min<std::chrono::milliseconds>(o.timeout, std::chrono::seconds(5)));
}

std::shared_ptr<Communicator> communicator(c10::intrusive_ptr<c10d::ProcessGroup> group,
                                           c10::intrusive_ptr<c10d::Store> store) {
  if (!group) throw std::invalid_argument("communicator: the process group is null");
  return std::make_shared<ProcessGroupCommunicator>(std::move(group), std::move(store), std::chrono::seconds(5));
}

std::vector<std::string> all_gather(Communicator& c, const std::string& text, const std::string& during) {
  const int64_t W = c.world_size();
  at::Tensor lengths = at::zeros({W}, at::kLong);
  lengths[c.rank()] = static_cast<int64_t>(text.size());
  c.all_reduce_sum(lengths, during);
  std::vector<int64_t> offsets(W + 1, 0);
  for (int64_t k = 0; k < W; ++k) offsets[k + 1] = offsets[k] + lengths[k].item<int64_t>();
  // Each rank fills its own slot of zeros: the sum is every rank's bytes.
  at::Tensor bytes = at::zeros({std::max<int64_t>(offsets[W], 1)}, at::kByte);
  std::copy(text.begin(), text.end(), bytes.data_ptr<uint8_t>() + offsets[c.rank()]);
  c.all_reduce_sum(bytes, during);
  std::vector<std::string> out;
  const auto* p = reinterpret_cast<const char*>(bytes.data_ptr<uint8_t>());
  for (int64_t k = 0; k < W; ++k) out.emplace_back(p + offsets[k], p + offsets[k + 1]);
  return out;
}

at::Tensor all_gather_along(Communicator& c, const at::Tensor& t, int64_t dim, const std::string& during) {
  const int64_t W = c.world_size();
  const at::Tensor mine = t.contiguous();
  // Every rank's shape, to check the other dims and place each block.
  at::Tensor shapes = at::zeros({W, mine.dim()}, at::kLong);
  for (int64_t d = 0; d < mine.dim(); ++d) shapes[c.rank()][d] = mine.size(d);
  c.all_reduce_sum(shapes, during);
  std::vector<int64_t> offsets(W + 1, 0);
  for (int64_t k = 0; k < W; ++k) {
    for (int64_t d = 0; d < mine.dim(); ++d)
      if (d != dim && shapes[k][d].item<int64_t>() != mine.size(d))
        throw std::invalid_argument("all_gather_along: rank " + std::to_string(k) + "'s tensor differs in dim " +
                                    std::to_string(d) + " (" + during + ")");
    offsets[k + 1] = offsets[k] + shapes[k][dim].item<int64_t>();
  }
  std::vector<int64_t> size = mine.sizes().vec();
  size[dim] = offsets[W];
  // Zeros everywhere but this rank's block: the sum is every rank's block.
  at::Tensor out = at::zeros(size, mine.options());
  out.narrow(dim, offsets[c.rank()], mine.size(dim)).copy_(mine);
  c.all_reduce_sum(out, during);
  return out;
}

DataParallelModel::DataParallelModel(const Model& local, std::shared_ptr<Communicator> communicator)
    : local_(local), communicator_(std::move(communicator)) {
  if (!communicator_) throw std::invalid_argument("DataParallelModel: the communicator is null");
}

at::Tensor DataParallelModel::log_joint(const at::Tensor& x, const SiteValues& values) const {
  if (c10::GradMode::is_enabled())
    for (const auto& [name, v] : values)
      if (v.requires_grad())
        throw std::logic_error("DataParallelModel::log_joint gives values only; site '" + name +
                               "' requires a gradient (a fit averages gradients in Fit::step instead)");
  const at::Tensor local = local_.log_joint(x, values);
  at::Tensor total = local.detach().to(at::kDouble).contiguous().clone();
  communicator_->all_reduce_sum(total, "the log joint of the outputs");
  return (total / static_cast<double>(communicator_->world_size())).to(local.scalar_type());
}

}  // namespace vguide
