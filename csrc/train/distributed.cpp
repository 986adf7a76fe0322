#include "distributed.h"

#include <fmt/format.h>
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroup.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#include <torch/csrc/distributed/c10d/reducer.hpp>
#ifdef USE_C10D_NCCL
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

#include <algorithm>
#include <charconv>
#include <cstdlib>
#include <limits>
#include <stdexcept>

namespace rational_train {

namespace {

std::string env_or(const char* name, const std::string& fallback) {
  const char* v = std::getenv(name);
  return v && *v ? std::string(v) : fallback;
}

int env_int(const char* name, int fallback, int lo, int hi) {
  const char* v = std::getenv(name);
  if (!v || !*v) return fallback;
  int x = 0;
  const std::string s(v);
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), x);
  if (ec != std::errc() || end != s.data() + s.size() || x < lo || x > hi)
    throw std::invalid_argument(
        fmt::format("environment variable {}='{}': expected an integer in [{}, {}] (torchrun sets it)", name, s, lo, hi));
  return x;
}

}  // namespace

LaunchEnvironment launch_environment() {
  LaunchEnvironment e;
  e.world_size = env_int("WORLD_SIZE", 1, 1, 1 << 20);
  if (e.world_size == 1) return e;
  e.rank = env_int("RANK", -1, 0, e.world_size - 1);
  if (e.rank < 0) throw std::invalid_argument("WORLD_SIZE is set but RANK is not (launch with torchrun)");
  e.local_rank = env_int("LOCAL_RANK", 0, 0, 1 << 20);
  e.master_addr = env_or("MASTER_ADDR", "");
  e.master_port = env_int("MASTER_PORT", 0, 1, 65535);
  if (e.master_addr.empty() || e.master_port == 0)
    throw std::invalid_argument("WORLD_SIZE is set but MASTER_ADDR or MASTER_PORT is not (launch with torchrun)");
  return e;
}

struct Distributed::Group {
  c10::intrusive_ptr<c10d::ProcessGroup> process_group;
  std::unique_ptr<c10d::Reducer> reducer;
  torch::Device device{torch::kCPU};
};

namespace {

// A dead peer reaches the survivors as c10d's DistBackendError or Gloo's own IoException ("Connection
// reset by peer"), a timeout as DistBackendError: say which rank saw it and what it most likely means.
template <typename F>
auto on_group(int rank, int world, const std::string& what, F f) -> decltype(f()) {
  try {
    return f();
  } catch (const std::exception& e) {
    const auto* torch_error = dynamic_cast<const c10::Error*>(&e);
    throw std::runtime_error(fmt::format(
        "rank {} of {}: {} failed: another process of the run exited, was killed or cannot be reached, or the "
        "collective timed out (--dist-timeout): {}",
        rank, world, what, torch_error ? torch_error->what_without_backtrace() : e.what()));
  }
}

}  // namespace

Distributed::Distributed(const LaunchEnvironment& env, const torch::Device& device, std::chrono::milliseconds timeout)
    : rank_(env.rank), world_size_(env.world_size) {
  if (world_size_ == 1) return;
  group_ = std::make_unique<Group>();
  on_group(rank_, world_size_, fmt::format("joining the group at {}:{}", env.master_addr, env.master_port),
           [&] {
             c10d::TCPStoreOptions so;
             so.port = uint16_t(env.master_port);
             // Under torchrun its agent already serves the store at MASTER_ADDR:MASTER_PORT (as for
             // torch.distributed's env:// init); otherwise rank 0 serves it.
             so.isServer = rank_ == 0 && env_or("TORCHELASTIC_USE_AGENT_STORE", "") != "True";
             so.numWorkers = std::nullopt;
             so.waitWorkers = false;
             so.timeout = timeout;
             auto tcp = c10::make_intrusive<c10d::TCPStore>(env.master_addr, so);
             auto store = c10::make_intrusive<c10d::PrefixStore>(
                 "rational_train/attempt_" + env_or("TORCHELASTIC_RESTART_COUNT", "0"), tcp);
             auto pg = c10::make_intrusive<c10d::ProcessGroup>(store, rank_, world_size_);
             if (device.is_cuda()) {
#ifdef USE_C10D_NCCL
               group_->device = torch::Device(torch::kCUDA, env.local_rank);
               auto opts = c10d::ProcessGroupNCCL::Options::create();
               opts->timeout = timeout;
               auto nccl = c10::make_intrusive<c10d::ProcessGroupNCCL>(store, rank_, world_size_, opts);
               pg->setBackend(c10::DeviceType::CUDA, c10d::ProcessGroup::BackendType::NCCL, nccl);
               pg->setDefaultBackend(c10d::ProcessGroup::BackendType::NCCL);
#else
               throw std::invalid_argument(
                   "--device cuda on several processes needs NCCL: rebuild with -DRATIONAL_TRAIN_NCCL=ON against a "
                   "torch built with NCCL (see docs/distributed.md)");
#endif
             } else {
               auto opts = c10d::ProcessGroupGloo::Options::create(timeout);
               const std::string iface = env_or("GLOO_SOCKET_IFNAME", "");
               opts->devices.push_back(iface.empty() ? c10d::ProcessGroupGloo::createDefaultDevice()
                                                     : c10d::ProcessGroupGloo::createDeviceForInterface(iface));
               auto gloo = c10::make_intrusive<c10d::ProcessGroupGloo>(store, rank_, world_size_, opts);
               pg->setBackend(c10::DeviceType::CPU, c10d::ProcessGroup::BackendType::GLOO, gloo);
               pg->setDefaultBackend(c10d::ProcessGroup::BackendType::GLOO);
             }
             group_->process_group = pg;
           });
}

Distributed::Distributed() = default;
Distributed::~Distributed() = default;

void Distributed::broadcast_from_main(const std::vector<torch::Tensor>& tensors) {
  if (!group_) return;
  on_group(rank_, world_size_, "broadcasting rank 0's parameters", [&] {
    torch::NoGradGuard no_grad;
    for (const auto& t : tensors) {
      std::vector<at::Tensor> one = {t.detach()};
      group_->process_group->broadcast(one, c10d::BroadcastOptions{0})->wait();
    }
  });
}

std::vector<double> Distributed::sum(const std::vector<double>& values) {
  if (!group_ || values.empty()) return values;
  auto t = torch::tensor(values, torch::kFloat64).to(group_->device);
  on_group(rank_, world_size_, "summing the metrics", [&] {
    std::vector<at::Tensor> one = {t};
    group_->process_group->allreduce(one)->wait();
  });
  t = t.cpu();
  return std::vector<double>(t.data_ptr<double>(), t.data_ptr<double>() + t.numel());
}

std::vector<int64_t> Distributed::all_gather(int64_t value) {
  if (!group_) return {value};
  std::vector<at::Tensor> in = {torch::tensor({value}, torch::kInt64).to(group_->device)};
  std::vector<std::vector<at::Tensor>> out(1);
  for (int r = 0; r < world_size_; ++r) out[0].push_back(torch::empty_like(in[0]));
  on_group(rank_, world_size_, "gathering a value of every rank",
           [&] { group_->process_group->allgather(out, in)->wait(); });
  std::vector<int64_t> values;
  for (auto& t : out[0]) values.push_back(t.cpu().item<int64_t>());
  return values;
}

void Distributed::average_gradients_of(const std::vector<torch::Tensor>& params) {
  if (!group_) return;
  // DDP's defaults: one bucket on the first iteration, rebuilt in the order the gradients arrive
  // (25 MiB buckets, a 1 MiB first one) from the second on; gradients copied out of the buckets.
  std::vector<bool> sparse(params.size(), false);
  auto [buckets, limits] = c10d::compute_bucket_assignment_by_size(
      params, {size_t(std::numeric_limits<int64_t>::max())}, sparse);
  (void)limits;
  std::reverse(buckets.begin(), buckets.end());
  group_->reducer = std::make_unique<c10d::Reducer>(
      params, buckets, group_->process_group, sparse, c10d::kDefaultBucketBytesCap,
      /*find_unused_parameters=*/false, /*gradient_as_bucket_view=*/false,
      std::unordered_map<size_t, std::string>{}, c10d::kDefaultFirstBucketBytes,
      /*skip_all_reduce_unused_params=*/false, /*use_python_reducer=*/false, std::vector<int64_t>{});
}

void Distributed::backward(const torch::Tensor& loss) {
  if (!group_ || !group_->reducer) {
    loss.backward();
    return;
  }
  on_group(rank_, world_size_, "averaging the gradients", [&] {
    group_->reducer->rebuild_buckets();
    group_->reducer->prepare_for_forward();
    group_->reducer->prepare_for_backward({});
    loss.backward();
  });
}

}  // namespace rational_train
