// The one CPU skeleton of the grouped element-wise ops (rational, ERA, PWLU): layout walk, task
// split, half/bfloat16 tile conversion, per-task parameter-gradient partials and their fixed-order
// finish. A family supplies only its math: a "run" body (one group, consecutive elements) and a
// "block" body (whole rows of a channel-innermost layout, a vector of consecutive channels at a
// time, each lane with its own channel's parameters).
//
// Two walks over any non-overlapping dense tensor, in memory order, without a copy:
//  - group-constant runs: with G > 1 groups along channel_dim, the group is constant on runs of
//    span = stride(channel_dim) * channels_per_group consecutive memory elements, the runs cycling
//    through the groups (NCHW, or G = 1: one run);
//  - channel-innermost (stride(channel_dim) == 1, G > 1: channels_last, channels_last_3d, (..., C)
//    with channel_dim = -1): memory is a [numel / C, C] matrix, cut into blocks of whole rows. A
//    run there would be C / G elements long (one element for G = C), so the block body vectorises
//    ACROSS channels instead, with the parameters laid out per channel (ChannelParams).
// float64 x always takes the run walk (its bodies are scalar, so nothing is gained by the other).
//
// Threads: the elements (rows, for the channel walk) are cut into equal tasks (one per thread,
// fewer for small tensors); each task keeps its own float64 partials per unit (group for the run
// walk, channel for the channel walk), and group_sums adds them task by task, unit by unit: bitwise
// reproducible for a fixed thread count.
#pragma once

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <ATen/cpu/vec/functional.h>
#include <ATen/cpu/vec/vec.h>

#include <algorithm>
#include <cstdint>
#include <type_traits>
#include <vector>

namespace torch_rational {
namespace cpu {

constexpr int64_t kMinTaskSize = 16384;  // elements; below this, fewer tasks than threads
constexpr int64_t kTile = 512;           // float32 tile for half/bfloat16 inputs (run walk)
// Channel walk: elements per block of whole rows. A block's arrays and the next block's, which the
// body requests while it walks this one (walk_channel_block), fit in L2 (backward: 6 x 128 KiB in
// float), and a block has enough rows (42 for C = 768) to amortise the per-vector-of-channels
// setup (parameter loads) and the flush of the gradient accumulators into the per-channel float64
// partials.
constexpr int64_t kBlockElements = 32768;
constexpr int64_t kMaxLanes = 16;  // float32 lanes of the widest build (AVX-512)

// Math type of a dtype: float64 for double x, float32 for float, half and bfloat16 x.
template <typename scalar_t>
using math_t = std::conditional_t<std::is_same_v<scalar_t, double>, double, float>;

struct GroupLayout {
  int64_t numel;
  int64_t span;  // run walk: elements per group-constant run, stride(channel_dim) * channels_per_group
  int64_t groups;
  int64_t channels;   // C (1 when groups == 1)
  int64_t per_group;  // C / G
  bool channel_walk;  // stride(channel_dim) == 1, G > 1, not float64: memory is [numel / C, C]

  // Units of the per-task partials: channels (channel walk) or groups (run walk).
  int64_t units() const { return channel_walk ? channels : groups; }
  int64_t group_of_unit(int64_t u) const { return channel_walk ? u / per_group : u; }
};

// Config: any of the ops' checked configs (groups, channel_dim, channels, channels_per_group).
// allow_channel_walk = false keeps the run walk (e.g. the rational noise path, keyed by the
// element index and scalar anyway).
template <typename Config>
GroupLayout make_layout(const at::Tensor& xin, const Config& cfg, bool allow_channel_walk = true) {
  GroupLayout l;
  l.numel = xin.numel();
  l.groups = cfg.groups;
  l.channels = cfg.groups > 1 ? cfg.channels : 1;
  l.per_group = cfg.groups > 1 ? cfg.channels_per_group : 1;
  l.span = cfg.groups > 1 ? xin.stride(cfg.channel_dim) * cfg.channels_per_group : l.numel;
  l.channel_walk = allow_channel_walk && cfg.groups > 1 && xin.stride(cfg.channel_dim) == 1 &&
                   xin.scalar_type() != at::kDouble;
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

// grad_output with xin's strides, so one offset addresses both (e.g. the expanded ones_like of
// .sum().backward() is copied).
inline at::Tensor grad_output_like(const at::Tensor& grad_output, const at::Tensor& xin) {
  if (grad_output.strides() == xin.strides()) return grad_output;
  at::Tensor g = at::empty_like(xin);
  g.copy_(grad_output);
  return g;
}

// Per-channel parameters of the channel walk, the channels of a group repeating its values, built
// once per call. Parameter k of channel c is at soa[offset(c) + k * ld], zero-padded to whole vectors
// of kMaxLanes channels, so parameter k of the channels of a vector (starting at a multiple of the
// lanes) is one vector load. Two layouts:
//  - by parameter (default): row k holds parameter k of every channel, ld = C rounded up to
//    kMaxLanes, offset(c) = c;
//  - by vector (by_vector): the K rows of each kMaxLanes channels are one contiguous K x kMaxLanes
//    block (ld = kMaxLanes), so lanes that each read a different row of their channel (PWLU's
//    heights, by piece) stay within K * 64 bytes instead of touching K rows C * 4 bytes apart.
struct ChannelParams {
  std::vector<float> soa;
  int64_t ld = 0;
  int64_t rows = 0;  // K
  ChannelParams() = default;
  // per_group_params: K floats per group, group-major ([G][K]).
  ChannelParams(const GroupLayout& l, const float* per_group_params, int64_t K, bool by_vector = false) {
    const int64_t padded = (l.channels + kMaxLanes - 1) / kMaxLanes * kMaxLanes;
    ld = by_vector ? kMaxLanes : padded;
    rows = K;
    soa.assign(K * padded, 0.0f);
    for (int64_t c = 0; c < l.channels; ++c) {
      const float* p = per_group_params + (c / l.per_group) * K;
      for (int64_t k = 0; k < K; ++k) soa[offset(c) + k * ld] = p[k];
    }
  }
  // Both layouts: c / ld is 0 by parameter; by vector, the block of c's vector, then its lane.
  int64_t offset(int64_t c) const { return c / ld * (rows * ld) + c % ld; }
};

namespace detail {

// Calls fn(begin, end) for each task's share [begin, end) of [0, total) (rows or elements).
template <typename Fn>
void for_each_task(int64_t total, int64_t tasks, Fn&& fn) {
  at::parallel_for(0, tasks, 1, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) fn(t, total * t / tasks, total * (t + 1) / tasks);
  });
}

// Number of tasks of a walk: rows of C elements are never split.
inline int64_t walk_tasks(const GroupLayout& l) {
  const int64_t tasks = num_tasks(l.numel);
  return l.channel_walk ? std::max<int64_t>(1, std::min(tasks, l.numel / l.channels)) : tasks;
}

inline int64_t block_rows(const GroupLayout& l) { return std::max<int64_t>(1, kBlockElements / l.channels); }

}  // namespace detail

// Forward over all elements of x (dense, layout l) into y (same strides).
//   run(group, offset, const math_t* x, math_t* y, n): a group-constant run of n elements starting
//     at memory offset `offset` (half/bfloat16 arrive converted, in tiles of at most kTile);
//   block(const float* x, float* y, rows, C): channel walk, `rows` whole rows of C elements.
template <typename scalar_t, typename Run, typename Block>
void grouped_forward(const GroupLayout& l, const scalar_t* x, scalar_t* y, Run&& run, Block&& block) {
  constexpr bool kConvert = !std::is_same_v<scalar_t, math_t<scalar_t>>;
  if (l.channel_walk) {
    if constexpr (!std::is_same_v<scalar_t, double>) {
      const int64_t C = l.channels, R = detail::block_rows(l);
      detail::for_each_task(l.numel / C, detail::walk_tasks(l), [&](int64_t, int64_t r0, int64_t r1) {
        std::vector<float> xb(kConvert ? R * C : 0), yb(kConvert ? R * C : 0);
        for (int64_t r = r0; r < r1; r += R) {
          const int64_t rows = std::min(R, r1 - r), n = rows * C, o = r * C;
          if constexpr (kConvert) {
            at::vec::convert(x + o, xb.data(), n);
            block(xb.data(), yb.data(), rows, C);
            at::vec::convert(yb.data(), y + o, n);
          } else {
            block(x + o, y + o, rows, C);
          }
        }
      });
    }
    return;
  }
  detail::for_each_task(l.numel, detail::walk_tasks(l), [&](int64_t, int64_t begin, int64_t end) {
    for_each_run(l, begin, end, [&](int64_t g, int64_t b, int64_t e) {
      if constexpr (kConvert) {
        float xb[kTile], yb[kTile];
        for (int64_t t = b; t < e; t += kTile) {
          const int64_t len = std::min(kTile, e - t);
          at::vec::convert(x + t, xb, len);
          run(g, t, xb, yb, len);
          at::vec::convert(yb, y + t, len);
        }
      } else {
        run(g, b, x + b, y + b, e - b);
      }
    });
  });
}

// Backward over all elements: grad_x (gx, may be null) and, when want_params, K float64 parameter-
// gradient partials per unit and task. Returns the per-group sums [G][K] (empty without
// want_params), added in a fixed order: task 0, 1, ..., within a task unit 0, 1, ...
//   run(group, offset, x, gy, gx, n, acc, scratch): acc = the task's K partials of this group (or
//     null), gx null when not requested;
//   block(x, gy, gx, rows, C, acc, scratch): acc = the task's C * K per-channel partials (or null).
// scratch: scratch_doubles doubles per task for the body's own use.
template <typename scalar_t, typename Run, typename Block>
std::vector<double> grouped_backward(const GroupLayout& l, const scalar_t* x, const scalar_t* gy, scalar_t* gx,
                                     int64_t K, bool want_params, int64_t scratch_doubles, Run&& run,
                                     Block&& block) {
  constexpr bool kConvert = !std::is_same_v<scalar_t, math_t<scalar_t>>;
  const int64_t tasks = l.numel == 0 ? 0 : detail::walk_tasks(l);
  const int64_t per_task = l.units() * K;
  std::vector<double> partials(want_params ? tasks * per_task : 0, 0.0);
  auto task_acc = [&](int64_t t) { return want_params ? partials.data() + t * per_task : nullptr; };
  if (tasks > 0 && l.channel_walk) {
    if constexpr (!std::is_same_v<scalar_t, double>) {
      const int64_t C = l.channels, R = detail::block_rows(l);
      detail::for_each_task(l.numel / C, tasks, [&](int64_t t, int64_t r0, int64_t r1) {
        std::vector<double> scratch(scratch_doubles);
        std::vector<float> xb(kConvert ? R * C : 0), gb(kConvert ? R * C : 0), gxb(kConvert && gx ? R * C : 0);
        double* acc = task_acc(t);
        for (int64_t r = r0; r < r1; r += R) {
          const int64_t rows = std::min(R, r1 - r), n = rows * C, o = r * C;
          if constexpr (kConvert) {
            at::vec::convert(x + o, xb.data(), n);
            at::vec::convert(gy + o, gb.data(), n);
            block(xb.data(), gb.data(), gx ? gxb.data() : nullptr, rows, C, acc, scratch.data());
            if (gx) at::vec::convert(gxb.data(), gx + o, n);
          } else {
            block(x + o, gy + o, gx ? gx + o : nullptr, rows, C, acc, scratch.data());
          }
        }
      });
    }
  } else if (tasks > 0) {
    detail::for_each_task(l.numel, tasks, [&](int64_t t, int64_t begin, int64_t end) {
      std::vector<double> scratch(scratch_doubles);
      double* part = task_acc(t);
      for_each_run(l, begin, end, [&](int64_t g, int64_t b, int64_t e) {
        double* acc = part ? part + g * K : nullptr;
        if constexpr (kConvert) {
          float xb[kTile], gb[kTile], gxb[kTile];
          for (int64_t s = b; s < e; s += kTile) {
            const int64_t len = std::min(kTile, e - s);
            at::vec::convert(x + s, xb, len);
            at::vec::convert(gy + s, gb, len);
            run(g, s, xb, gb, gx ? gxb : nullptr, len, acc, scratch.data());
            if (gx) at::vec::convert(gxb, gx + s, len);
          }
        } else {
          run(g, b, x + b, gy + b, gx ? gx + b : nullptr, e - b, acc, scratch.data());
        }
      });
    });
  }
  std::vector<double> sums(want_params ? l.groups * K : 0, 0.0);
  for (int64_t t = 0; t < tasks && want_params; ++t)
    for (int64_t u = 0; u < l.units(); ++u) {
      const double* p = partials.data() + t * per_task + u * K;
      double* s = sums.data() + l.group_of_unit(u) * K;
      for (int64_t k = 0; k < K; ++k) s[k] += p[k];
    }
  return sums;
}

}  // namespace cpu
}  // namespace torch_rational
