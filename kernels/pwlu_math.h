// Shared per-element math of the PWLU (piecewise linear unit) activation, used by the CPU kernels
// (csrc/ops/cpu/pwlu_kernel.cpp) and the CUDA kernels (kernels/pwlu.cuh). Free of ATen, like
// rational_math.h, so nvcc compiles it on a machine whose torch has no CUDA.
//
// N uniform pieces on [L, R], d = (R - L) / N, heights Y_0..Y_N, outer slopes K_L, K_R:
//   x <  L: y = Y_0 + (x - L) K_L
//   x >= R: y = Y_N + (x - R) K_R
//   else:   piece i = the k in [0, N - 1] with x_k <= x < x_{k+1}, t = (x - x_i) / d,
//           y = Y_i + t (Y_{i+1} - Y_i)
// The breakpoints are defined in the math type T (float for half/bf16/float x, double for double):
//   d = (R - L) / N   (one rounding),   x_k = fma(k, d, L) = L + k d with one rounding,
// and the piece is chosen by comparing x with them (pwlu_locate), so x exactly on a breakpoint x_k
// (1 <= k <= N - 1) takes piece k, the right one, on every backend (CPU scalar, CPU vector, CUDA).
// u = (x - L) N / (R - L) only gives a first guess, which can be one piece off at a breakpoint.
#pragma once

#include <cmath>
#include <cstdint>

#include "host_device.h"

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
  T d;         // (R - L) / N: the breakpoints are x_k = fma(k, d, L)
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
  p.d = (right - left) / T(n);
  p.inv_d = T(n) * p.inv_width;
  p.n = n;
  return p;
}

// floorf / floor exist on host and device alike (std::floor has no float overload in device code
// on every toolkit).
TR_HOST_DEVICE float pwlu_floor(float v) { return floorf(v); }
TR_HOST_DEVICE double pwlu_floor(double v) { return floor(v); }
// Fused multiply-add (one rounding) on host and device alike: the breakpoint x_k must not depend on
// whether a compiler contracts k * d + L into an FMA or not.
TR_HOST_DEVICE float pwlu_fma(float a, float b, float c) { return fmaf(a, b, c); }
TR_HOST_DEVICE double pwlu_fma(double a, double b, double c) { return fma(a, b, c); }

// Breakpoint x_k = L + k d, rounded once to T (x_0 = L exactly).
template <typename T>
TR_HOST_DEVICE T pwlu_breakpoint(const PwluGroup<T>& p, int k) {
  return pwlu_fma(T(k), p.d, p.left);
}

// Piece index clamp(floor(u), 0, N - 1). Written so that a NaN u gives 0 (a float -> int
// conversion of NaN is undefined behaviour), and u == N (x just below R after rounding) gives N - 1.
template <typename T>
TR_HOST_DEVICE int pwlu_piece(T u, int n) {
  const T f = pwlu_floor(u);
  if (!(f >= T(0))) return 0;
  if (f > T(n - 1)) return n - 1;
  return static_cast<int>(f);
}

// Piece of an x with L <= x < R (or NaN): the i in [0, N - 1] with x_i <= x < x_{i+1} (x_N taken
// as R). The guess clamp(floor(u), 0, N - 1) is off by at most one piece when a piece is wider
// than the rounding of the breakpoints (d above ~2 ulp of max(|L|, |R|) in T; u and d are rounded
// by a few ulps relative, below 1/4 piece for N <= 2^20 in float), and one comparison with a
// breakpoint corrects it. Narrower pieces (several x_k rounding to the same value) get a piece
// within one of the guess, the same on every backend. Sets t = (x - x_i) / d (0 on a breakpoint,
// NaN for NaN x, whose piece is 0). Branch-free (the two comparisons cannot both hold, the x_k
// being non-decreasing in k): with an if/else, ptxas spilled in the float64 CUDA backward. The CPU
// vector path (pwlu_kernel_vec.cpp) does the same steps lane-wise.
template <typename T>
TR_HOST_DEVICE int pwlu_locate(const PwluGroup<T>& p, T x, T& t) {
  const int guess = pwlu_piece((x - p.left) * p.inv_d, p.n);
  const bool down = guess > 0 && x < pwlu_breakpoint(p, guess);
  const bool up = guess + 1 < p.n && x >= pwlu_breakpoint(p, guess + 1);
  const int i = guess + (up ? 1 : 0) - (down ? 1 : 0);
  t = (x - pwlu_breakpoint(p, i)) * p.inv_d;
  return i;
}

template <typename T>
TR_HOST_DEVICE T pwlu_forward_element(const PwluGroup<T>& p, T x) {
  if (x < p.left) return p.heights[0] + (x - p.left) * p.slope_left;
  if (x >= p.right) return p.heights[p.n] + (x - p.right) * p.slope_right;
  // NaN x falls through to here and gives NaN (t is NaN).
  T t;
  const int i = pwlu_locate(p, x, t);
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
    T t;
    const int i = pwlu_locate(p, x, t);
    const T u = T(i) + t;
    const T s = p.heights[i + 1] - p.heights[i];
    // A NaN x gets a NaN input gradient (not the slope of piece 0): the NaN stays visible in its
    // own element in backward as in forward.
    r.dydx = x == x ? s * p.inv_d : x;
    r.i = i;
    r.w_lo = T(1) - t;
    r.w_hi = t;
    // The piece i is locally constant, so dy/dbound = s du/dbound with u = i + t = (x - L) N / (R - L):
    // du/dL = (u - N) / (R - L), du/dR = -u / (R - L).
    r.d_left = s * (u - T(p.n)) * p.inv_width;
    r.d_right = -s * u * p.inv_width;
  }
  return r;
}

}  // namespace kernels
}  // namespace torch_rational
