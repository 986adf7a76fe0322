// Layout and threading helpers shared by the CPU kernels of every op (rational, ERA, PWLU).
//
// Layout: any non-overlapping dense tensor is processed in memory order; with G > 1 groups along
// channel_dim, the group is constant on runs of span = stride(channel_dim) * channels_per_group
// consecutive memory elements, the runs cycling through the groups.
//
// Threads: the elements are cut into equal tasks (one per thread, fewer for small tensors); each
// task keeps its own parameter-gradient partials, summed in task order by the caller.
#pragma once

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cstdint>

namespace torch_rational {
namespace cpu {

constexpr int64_t kMinTaskSize = 16384;  // elements; below this, fewer tasks than threads
constexpr int64_t kTile = 512;           // float32 tile for half/bfloat16 inputs

struct GroupLayout {
  int64_t numel;
  int64_t span;  // elements per group-constant run: stride(channel_dim) * channels_per_group
  int64_t groups;
};

// Config: any of the ops' checked configs (groups, channel_dim, channels_per_group).
template <typename Config>
GroupLayout make_layout(const at::Tensor& xin, const Config& cfg) {
  GroupLayout l;
  l.numel = xin.numel();
  l.groups = cfg.groups;
  l.span = cfg.groups > 1 ? xin.stride(cfg.channel_dim) * cfg.channels_per_group : l.numel;
  return l;
}

// Calls fn(group, begin, end) for each group-constant stretch of [begin, end).
template <typename Fn>
inline void for_each_run(const GroupLayout& l, int64_t begin, int64_t end, Fn&& fn) {
  int64_t o = begin;
  while (o < end) {
    const int64_t blk = o / l.span;
    const int64_t g = blk % l.groups;
    const int64_t stop = std::min(end, (blk + 1) * l.span);
    fn(g, o, stop);
    o = stop;
  }
}

inline int64_t num_tasks(int64_t numel) {
  const int64_t by_size = std::max<int64_t>(1, numel / kMinTaskSize);
  return std::min<int64_t>(at::get_num_threads(), by_size);
}

}  // namespace cpu
}  // namespace torch_rational
