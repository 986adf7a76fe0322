// rational_train on several processes (and machines) over PyTorch's own c10d, as launched by
// torchrun: a TCPStore rendezvous at MASTER_ADDR:MASTER_PORT (rank 0 serves it), a Gloo process
// group for CPU or NCCL for CUDA (one device per LOCAL_RANK), and c10d::Reducer, the gradient
// averager of torch's DistributedDataParallel: bucketed all-reduces launched from autograd hooks
// while the backward still runs. See docs/distributed.md.
#pragma once

#include <torch/types.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace rational_train {

// torchrun's environment: RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT. Without
// WORLD_SIZE (a plain run): rank 0 of 1. Throws std::invalid_argument naming a malformed variable.
struct LaunchEnvironment {
  int rank = 0, world_size = 1, local_rank = 0;
  std::string master_addr;
  int master_port = 0;
};
LaunchEnvironment launch_environment();

class Distributed {
 public:
  // One process: every collective is a no-op.
  Distributed();
  // Joins the group of env.world_size processes (world_size 1: no group). `device`: CPU -> Gloo,
  // CUDA -> NCCL on cuda:LOCAL_RANK (only in a torch built with NCCL). Every collective and the
  // rendezvous fail after `timeout` (a dead or missing peer), with a message naming the rank.
  Distributed(const LaunchEnvironment& env, const torch::Device& device, std::chrono::milliseconds timeout);
  ~Distributed();
  Distributed(const Distributed&) = delete;
  Distributed& operator=(const Distributed&) = delete;

  int rank() const { return rank_; }
  int world_size() const { return world_size_; }
  bool is_main() const { return rank_ == 0; }

  // Overwrites `tensors` (parameters, buffers) on every rank with rank 0's values.
  void broadcast_from_main(const std::vector<torch::Tensor>& tensors);
  // Element-wise sum over the ranks (metrics: loss sums, counts).
  std::vector<double> sum(const std::vector<double>& values);
  // The value of every rank, in rank order.
  std::vector<int64_t> all_gather(int64_t value);

  // From now on every backward averages the gradients of `params` over the ranks (c10d::Reducer,
  // 25 MiB buckets as DDP), when run through backward() below.
  void average_gradients_of(const std::vector<torch::Tensor>& params);
  // loss.backward(); with a group, the gradients are averaged over the ranks by its end (the
  // all-reduces of the buckets start while the backward still runs).
  void backward(const torch::Tensor& loss);

 private:
  struct Group;  // the c10d objects (distributed.cpp), absent in a one-process run
  int rank_ = 0, world_size_ = 1;
  std::unique_ptr<Group> group_;
};

}  // namespace rational_train
