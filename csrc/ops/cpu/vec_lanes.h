// Vector helpers of the channel walk shared by every *_kernel_vec.cpp (each includes this once,
// compiled per CPU capability, so fVec is that build's at::vec::Vectorized<float>).
#pragma once

#include <ATen/cpu/vec/vec.h>
#include <c10/macros/Macros.h>

#include <algorithm>
#include <cstdint>
#include <type_traits>
#include <utility>
#include <vector>

namespace torch_rational {
namespace cpu {
namespace CPU_CAPABILITY {

// count (<= lanes) consecutive floats; the other lanes are zero (not read).
inline at::vec::Vectorized<float> load_lanes(const float* p, int count) {
  using fVec = at::vec::Vectorized<float>;
  return count == fVec::size() ? fVec::loadu(p) : fVec::loadu(p, count);
}

inline void store_lanes(const at::vec::Vectorized<float>& v, float* p, int count) {
  if (count == at::vec::Vectorized<float>::size())
    v.store(p);
  else
    v.store(p, count);
}

namespace detail {
template <typename Fn, int... k>
C10_ALWAYS_INLINE void for_each_index(Fn& fn, std::integer_sequence<int, k...>) {
  (fn(k), ...);
}
}  // namespace detail

// fn(0), ..., fn(K - 1), written out: an array of vectors indexed only by constants stays in
// registers, where one loop the compiler does not unroll (e.g. with an inner loop) puts it in
// memory for the whole function.
template <int K, typename Fn>
C10_ALWAYS_INLINE void for_each_index(Fn&& fn) {
  detail::for_each_index(fn, std::make_integer_sequence<int, K>{});
}

// Vectors of float32 partial sums accumulated before they are added into the float64 partials:
// the float32 sums stay short.
constexpr int kFlushVectors = 128;

// One vector of a backward body: body(std::true_type) accumulates the parameter gradients into
// the body's float32 vector accumulators, flushed (flush()) every kFlushVectors vectors;
// body(std::false_type) skips them (not requested). Returns the body's grad_x vector.
template <typename Body, typename Flush>
inline at::vec::Vectorized<float> backward_step(bool want_params, int& pending, Body&& body, Flush&& flush) {
  if (!want_params) return body(std::false_type{});
  const at::vec::Vectorized<float> out = body(std::true_type{});
  if (++pending == kFlushVectors) {
    flush();
    pending = 0;
  }
  return out;
}

// The channel walk's loop order, shared by the families' block bodies. Lane l of the vector at
// channel c is channel c + l, with its own parameters. For each vector of channels in turn,
// column(c, count, down) runs the whole loop down the block's rows by calling down(row) once, which
// calls row(offset) for each row (offset = the vector's first element in that row; count = lanes
// in use, kLanes but in the last, partial vector of a row). Whatever the column keeps across rows
// (its parameters as vectors, a backward's gradient sums) is then a local of the function that
// holds the loop, and the compiler keeps it in registers as in the run walk. Bodies pass lambdas
// marked C10_ALWAYS_INLINE_ATTRIBUTE: one that is not inlined takes its state by reference, in
// memory, and sees count as a variable.
// That loop strides by a row, which the hardware prefetchers do not follow; instead the block that
// follows this one in memory (the next rows of the task) is requested one cache line per row, in
// memory order, so the rows of the next block are in cache when its walk starts. streams: the
// arrays the body reads or writes (null ones skipped).
template <size_t NS, typename Column>
void walk_channel_columns(int64_t rows, int64_t C, const float* const (&streams)[NS], Column&& column) {
  constexpr int kL = at::vec::Vectorized<float>::size();
  constexpr int64_t kLine = 64 / sizeof(float);
  const int64_t n = rows * C;
  int64_t ahead = n;  // the next line of the following block to request
  // Everything the row loop reads is a local of it (no reference the compiler must reload).
  auto one = [&](int64_t c, auto lanes) C10_ALWAYS_INLINE_ATTRIBUTE {
    const int count = decltype(lanes)::value > 0 ? decltype(lanes)::value : static_cast<int>(C - c);
    const int64_t rows_here = rows, stride = C, end = 2 * n;
    const float* next[NS];
    for (size_t i = 0; i < NS; ++i) next[i] = streams[i];
    int64_t line = ahead;
    auto down = [&](auto&& row) C10_ALWAYS_INLINE_ATTRIBUTE {
      for (int64_t r = 0; r < rows_here; ++r) {
        if (line < end) {
          for (size_t i = 0; i < NS; ++i)
            if (next[i] != nullptr) __builtin_prefetch(next[i] + line);
          line += kLine;
        }
        row(r * stride + c);
      }
    };
    column(c, count, down);
    ahead = line;
  };
  int64_t c = 0;
  for (; c + kL <= C; c += kL) one(c, std::integral_constant<int, kL>{});
  if (c < C) one(c, std::integral_constant<int, 0>{});  // the last, partial vector of a row
}

// The forward's channel walk: each vector of channels gets its State (the family's parameters as
// vectors) from make(c, count), a local of the loop down the rows.
//   step(state, c, offset, count): the vector at channel c of a row, offset = its first element;
//   finish(state, c, count): after the vector's last row (none by default).
struct NoFinish {
  template <typename State>
  void operator()(const State&, int64_t, int) const {}
};

template <typename State, size_t NS, typename Make, typename Step, typename Finish = NoFinish>
void walk_channel_block(int64_t rows, int64_t C, const float* const (&streams)[NS], Make&& make, Step&& step,
                        Finish finish = {}) {
  walk_channel_columns(rows, C, streams, [&](int64_t c, int count, auto&& down) C10_ALWAYS_INLINE_ATTRIBUTE {
    State state = make(c, count);
    down([&](int64_t offset) C10_ALWAYS_INLINE_ATTRIBUTE { step(state, c, offset, count); });
    finish(state, c, count);
  });
}

// The backward's channel walk, every family's backward block body: per vector of channels, the
// parameters from make(c, count) and K float32 vectors of parameter-gradient sums, locals of the
// loop down the rows (so in registers), added lane by lane, i.e. channel by channel, into the
// float64 partials every kFlushVectors vectors (backward_step) and after the vector's last row.
//   step(params, c, offset, count, accumulate): the vector at channel c of a row. The body computes
//     it as accumulate(body), body(with, sums) as in backward_step (sums: the K vectors), which
//     returns grad_x's vector; a vector that does not go through accumulate (e.g. a scalar fallback
//     adding straight into partials) does not count towards the flush;
//   flush_factor(params, k): the vector lane l of sums[k] is multiplied by as it is added into
//     channel c + l's partial k (fVec(1) for a plain sum; a constant factor taken out of the loop).
// partials: [C][K] float64, added to (+=); null when the parameter gradients are not requested.
template <int K, size_t NS, typename Make, typename Step, typename FlushFactor>
void walk_channel_block_backward(int64_t rows, int64_t C, const float* const (&streams)[NS], double* partials,
                                 Make&& make, Step&& step, FlushFactor&& flush_factor) {
  using fVec = at::vec::Vectorized<float>;
  walk_channel_columns(rows, C, streams, [&](int64_t c, int count, auto&& down) C10_ALWAYS_INLINE_ATTRIBUTE {
    const auto params = make(c, count);
    fVec sums[K];
    for (auto& v : sums) v = fVec(0.f);
    int pending = 0;
    auto flush = [&]() C10_ALWAYS_INLINE_ATTRIBUTE {
      alignas(64) float buf[K][fVec::size()], factor[K][fVec::size()];
      for_each_index<K>([&](int k) C10_ALWAYS_INLINE_ATTRIBUTE {
        sums[k].store(buf[k]);
        flush_factor(params, k).store(factor[k]);
        sums[k] = fVec(0.f);
      });
      for (int k = 0; k < K; ++k)
        for (int l = 0; l < count; ++l) partials[(c + l) * K + k] += static_cast<double>(factor[k][l]) * buf[k][l];
    };
    down([&](int64_t offset) C10_ALWAYS_INLINE_ATTRIBUTE {
      step(params, c, offset, count, [&](auto&& body) C10_ALWAYS_INLINE_ATTRIBUTE {
        return backward_step(
            partials != nullptr, pending, [&](auto with) C10_ALWAYS_INLINE_ATTRIBUTE { return body(with, sums); },
            flush);
      });
    });
    if (partials != nullptr) flush();
  });
}

}  // namespace CPU_CAPABILITY
}  // namespace cpu
}  // namespace torch_rational
