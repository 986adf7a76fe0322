// Vector helpers of the channel walk shared by every *_kernel_vec.cpp (each includes this once,
// compiled per CPU capability, so fVec is that build's at::vec::Vectorized<float>).
#pragma once

#include <ATen/cpu/vec/vec.h>
#include <c10/macros/Macros.h>

#include <algorithm>
#include <cstdint>
#include <type_traits>
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
// channel c is channel c + l, with its own parameters: each vector of channels gets its State (the
// family's parameters as vectors, in a backward also its gradient accumulators) from make(c,
// count), as a local of one loop down the block's rows, so the compiler can keep it in registers
// as in the run walk. It does for the forward's parameters (states read from memory on every row
// measured 2x slower); the backward's accumulators still pass through the stack on every row.
// That loop strides by a row, which the hardware prefetchers do not follow; instead the block that
// follows this one in memory (the next rows of the task) is requested one cache line per step, in
// memory order, so the rows of the next block are in cache when its walk starts. streams: the
// arrays the body reads or writes (null ones skipped).
//   step(state, c, offset, count): the vector at channel c of a row, offset = its first element;
//   finish(state, c, count): after the vector's last row (none by default: forward bodies).
struct NoFinish {
  template <typename State>
  void operator()(const State&, int64_t, int) const {}
};

template <typename State, size_t NS, typename Make, typename Step, typename Finish = NoFinish>
void walk_channel_block(int64_t rows, int64_t C, const float* const (&streams)[NS], Make&& make, Step&& step,
                        Finish finish = {}) {
  constexpr int kL = at::vec::Vectorized<float>::size();
  constexpr int64_t kLine = 64 / sizeof(float);
  const int64_t n = rows * C;
  int64_t ahead = n;  // the next line of the following block to request
  // Everything the row loop reads is a local of it (no reference the compiler must reload).
  auto column = [&](int64_t c, auto lanes) C10_ALWAYS_INLINE_ATTRIBUTE {
    const int count = decltype(lanes)::value > 0 ? decltype(lanes)::value : static_cast<int>(C - c);
    const int64_t rows_here = rows, stride = C, end = 2 * n;
    const float* next[NS];
    for (size_t i = 0; i < NS; ++i) next[i] = streams[i];
    int64_t line = ahead;
    State state = make(c, count);
    for (int64_t r = 0; r < rows_here; ++r) {
      if (line < end) {
        for (size_t i = 0; i < NS; ++i)
          if (next[i] != nullptr) __builtin_prefetch(next[i] + line);
        line += kLine;
      }
      step(state, c, r * stride + c, count);
    }
    ahead = line;
    finish(state, c, count);
  };
  int64_t c = 0;
  for (; c + kL <= C; c += kL) column(c, std::integral_constant<int, kL>{});
  if (c < C) column(c, std::integral_constant<int, 0>{});  // the last, partial vector of a row
}

}  // namespace CPU_CAPABILITY
}  // namespace cpu
}  // namespace torch_rational
