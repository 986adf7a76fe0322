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

// One vector of a run walk's backward body (the channel walk has its own loop,
// walk_channel_block_backward): body(std::true_type) accumulates the parameter gradients into
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
// column(c, count, down) runs the loop down the block's rows (count = lanes in use, kLanes but in
// the last, partial vector of a row): down(from, step) calls step(offset) for the rows from `from`
// on (offset = the vector's first element in that row) until step returns false (that row not
// done: the column handles it, then calls down again from there) or the rows end, and returns the
// row it stopped at. Whatever the column keeps across rows (its parameters as vectors, a backward's
// gradient sums) is then a local of the function that holds the loop, and the compiler can keep it
// in registers. Bodies pass lambdas marked C10_ALWAYS_INLINE_ATTRIBUTE: one that is not inlined
// takes its state by reference, in memory, and sees count as a variable.
// That loop strides by a row, which the hardware prefetchers do not follow; instead the block that
// follows this one in memory (the next rows of the task) is requested one cache line per row done,
// in memory order, so the rows of the next block are in cache when its walk starts. streams: the
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
    auto down = [&](int64_t from, auto&& step) C10_ALWAYS_INLINE_ATTRIBUTE {
      int64_t r = from;
      for (; r < rows_here; ++r) {
        if (!step(r * stride + c)) break;
        if (line < end) {
          for (size_t i = 0; i < NS; ++i)
            if (next[i] != nullptr) __builtin_prefetch(next[i] + line);
          line += kLine;
        }
      }
      return r;
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
    down(0, [&](int64_t offset) C10_ALWAYS_INLINE_ATTRIBUTE {
      step(state, c, offset, count);
      return true;
    });
    finish(state, c, count);
  });
}

// Defaults of walk_channel_block_backward: every vector takes the vector body.
struct EveryVector {
  template <typename Params, typename V>
  bool operator()(const Params&, const V&) const {
    return true;
  }
};
struct NoFallback {
  void operator()(int64_t, int64_t, int) const {}
};

// The backward's channel walk, every family's backward block body. Per vector of channels: the
// parameters from make(c, count) and K float32 vectors of parameter-gradient sums, locals of the
// loop down the rows, added lane by lane, i.e. channel by channel, into the float64 partials every
// kFlushVectors vectors and after the vector's last row. The loop that runs the vector body holds
// no call and no flush: the rare vectors that leave it (a flush due, a fallback) are handled
// outside it and the loop resumes, so the compiler keeps the sums and parameters in registers
// there (a call on any path of a loop otherwise sends them to memory for the whole loop: all
// vector registers are caller-saved).
//   body(params, with, sums, xv, gv): grad_x's vector for x vector xv and grad_output vector gv;
//     with = std::true_type: also adds the parameter gradients into the K vectors sums;
//   flush_factor(params, k): the vector lane l of sums[k] is multiplied by as it is added into
//     channel c + l's partial k (fVec(1) for a plain sum; a constant factor taken out of the loop);
//   vector_ok(params, xv): false sends the vector to fallback(c, offset, count) instead, which
//     computes it on its own and adds straight into partials (not counted towards the flush). The
//     sums are flushed only after it, as they would be row by row, so partials sees the same
//     additions in the same order.
// x, g, gx: the block's rows; gx null when grad_x is not requested. partials: [C][K] float64, added
// to (+=); null when the parameter gradients are not requested.
template <int K, typename Make, typename Body, typename FlushFactor, typename VectorOk = EveryVector,
          typename Fallback = NoFallback>
void walk_channel_block_backward(int64_t rows, int64_t C, const float* x, const float* g, float* gx, double* partials,
                                 Make&& make, Body&& body, FlushFactor&& flush_factor, VectorOk vector_ok = {},
                                 Fallback fallback = {}) {
  using fVec = at::vec::Vectorized<float>;
  walk_channel_columns(rows, C, {x, g, gx}, [&](int64_t c, int count, auto&& down) C10_ALWAYS_INLINE_ATTRIBUTE {
    const auto params = make(c, count);
    fVec sums[K];
    for (auto& v : sums) v = fVec(0.f);
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
    // Runs the vector body from row `from` while it can; returns the row it stopped at.
    auto vector_rows = [&](int64_t from, auto with, int& pending) C10_ALWAYS_INLINE_ATTRIBUTE {
      return down(from, [&](int64_t o) C10_ALWAYS_INLINE_ATTRIBUTE {
        if (decltype(with)::value && pending == kFlushVectors) return false;
        const fVec xv = load_lanes(x + o, count);
        if (!vector_ok(params, xv)) return false;
        const fVec gxv = body(params, with, sums, xv, load_lanes(g + o, count));
        if (gx) store_lanes(gxv, gx + o, count);
        if (decltype(with)::value) ++pending;
        return true;
      });
    };
    auto walk = [&](auto with) C10_ALWAYS_INLINE_ATTRIBUTE {
      int pending = 0;  // vectors in the sums since their last flush
      for (int64_t r = vector_rows(0, with, pending); r < rows; r = vector_rows(r, with, pending)) {
        if (decltype(with)::value && pending == kFlushVectors) {
          flush();
          pending = 0;
        } else {
          fallback(c, r * C + c, count);
          ++r;
        }
      }
      if (decltype(with)::value) flush();
    };
    if (partials != nullptr)
      walk(std::true_type{});
    else
      walk(std::false_type{});
  });
}

}  // namespace CPU_CAPABILITY
}  // namespace cpu
}  // namespace torch_rational
