// Shared per-element math of the PWLU (piecewise linear unit) activation, used by the CPU kernels
// (csrc/ops/cpu/pwlu_kernel.cpp) and the CUDA kernels (kernels/pwlu.cuh). Free of ATen, like
// rational_math.h, so nvcc compiles it on a machine whose torch has no CUDA.
//
// N uniform pieces on [L, R], d = (R - L) / N, heights Y_0..Y_N, outer slopes K_L, K_R:
//   x <  L: y = Y_0 + (x - L) K_L
//   x >= R: y = Y_N + (x - R) K_R
//   else:   u = (x - L) / d, i = clamp(floor(u), 0, N - 1), t = u - i, y = Y_i + t (Y_{i+1} - Y_i)
#pragma once

#include <cmath>
#include <cstdint>

#ifndef TR_HOST_DEVICE
#if defined(__CUDACC__) || defined(__HIPCC__)
#define TR_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define TR_HOST_DEVICE inline
#endif
#endif

namespace torch_rational {
namespace kernels {

// Slots of one group's parameter gradients, in the order the kernels accumulate them:
// [dY_0 .. dY_N | dL dR | dK_L dK_R]. N + 5 per group.
TR_HOST_DEVICE int pwlu_grad_slots(int n) { return n + 5; }

// One group's parameters, already converted to the math type T.
template <typename T>
struct PwluGroup {
  const T* heights;  // Y_0..Y_N
  T left, right;     // L, R (L < R, checked by the callers)
  T slope_left, slope_right;
  T inv_d;      // N / (R - L)
  T inv_width;  // 1 / (R - L)
  int n;        // N
};

template <typename T>
TR_HOST_DEVICE PwluGroup<T> make_pwlu_group(const T* heights, T left, T right, T slope_left, T slope_right,
                                            int n) {
  PwluGroup<T> p;
  p.heights = heights;
  p.left = left;
  p.right = right;
  p.slope_left = slope_left;
  p.slope_right = slope_right;
  p.inv_width = T(1) / (right - left);
  p.inv_d = T(n) * p.inv_width;
  p.n = n;
  return p;
}

// floorf / floor exist on host and device alike (std::floor has no float overload in device code
// on every toolkit).
TR_HOST_DEVICE float pwlu_floor(float v) { return floorf(v); }
TR_HOST_DEVICE double pwlu_floor(double v) { return floor(v); }

// Piece index clamp(floor(u), 0, N - 1). Written so that a NaN u gives 0 (a float -> int
// conversion of NaN is undefined behaviour), and u == N (x just below R after rounding) gives N - 1.
template <typename T>
TR_HOST_DEVICE int pwlu_piece(T u, int n) {
  const T f = pwlu_floor(u);
  if (!(f >= T(0))) return 0;
  if (f > T(n - 1)) return n - 1;
  return static_cast<int>(f);
}

template <typename T>
TR_HOST_DEVICE T pwlu_forward_element(const PwluGroup<T>& p, T x) {
  if (x < p.left) return p.heights[0] + (x - p.left) * p.slope_left;
  if (x >= p.right) return p.heights[p.n] + (x - p.right) * p.slope_right;
  // NaN x falls through to here and gives NaN (t is NaN).
  const T u = (x - p.left) * p.inv_d;
  const int i = pwlu_piece(u, p.n);
  const T t = u - T(i);
  const T y0 = p.heights[i];
  return y0 + t * (p.heights[i + 1] - y0);
}

// Partial derivatives of y at one element. Only Y_i and Y_{i+1} are touched, so the heights
// gradient is a histogram over pieces: slot i gets g * w_lo, slot i + 1 gets g * w_hi.
template <typename T>
struct PwluElementGrad {
  T dydx;
  int i;
  T w_lo, w_hi;                   // dy/dY_i, dy/dY_{i+1}
  T d_left, d_right;              // dy/dL, dy/dR
  T d_slope_left, d_slope_right;  // dy/dK_L, dy/dK_R
};

template <typename T>
TR_HOST_DEVICE PwluElementGrad<T> pwlu_backward_element(const PwluGroup<T>& p, T x) {
  PwluElementGrad<T> r;
  r.d_left = T(0);
  r.d_right = T(0);
  r.d_slope_left = T(0);
  r.d_slope_right = T(0);
  if (x < p.left) {
    r.dydx = p.slope_left;
    r.i = 0;
    r.w_lo = T(1);
    r.w_hi = T(0);
    r.d_left = -p.slope_left;
    r.d_slope_left = x - p.left;
  } else if (x >= p.right) {
    r.dydx = p.slope_right;
    r.i = p.n - 1;
    r.w_lo = T(0);
    r.w_hi = T(1);
    r.d_right = -p.slope_right;
    r.d_slope_right = x - p.right;
  } else {
    const T u = (x - p.left) * p.inv_d;
    const int i = pwlu_piece(u, p.n);
    const T t = u - T(i);
    const T s = p.heights[i + 1] - p.heights[i];
    // A NaN x gets a NaN input gradient (not the slope of piece 0): the NaN stays visible in its
    // own element in backward as in forward.
    r.dydx = x == x ? s * p.inv_d : x;
    r.i = i;
    r.w_lo = T(1) - t;
    r.w_hi = t;
    // The piece i is locally constant, so dy/dbound = s du/dbound with u = (x - L) N / (R - L):
    // du/dL = (u - N) / (R - L), du/dR = -u / (R - L).
    r.d_left = s * (u - T(p.n)) * p.inv_width;
    r.d_right = -s * u * p.inv_width;
  }
  return r;
}

}  // namespace kernels
}  // namespace torch_rational
