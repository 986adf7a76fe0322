// Vector helpers of the channel walk shared by every *_kernel_vec.cpp (each includes this once,
// compiled per CPU capability, so fVec is that build's at::vec::Vectorized<float>).
#pragma once

#include <ATen/cpu/vec/vec.h>

#include <algorithm>
#include <cstdint>
#include <type_traits>

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

// Lanes of the vector of channels [c, c + lanes) that exist in a row of C channels.
inline int lanes_at(int64_t c, int64_t C) {
  return static_cast<int>(std::min<int64_t>(at::vec::Vectorized<float>::size(), C - c));
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

}  // namespace CPU_CAPABILITY
}  // namespace cpu
}  // namespace torch_rational
