// Shared per-element math of the ERA activation (Enhanced Rational Activation), used by the CPU
// kernels (csrc/ops/cpu/era_kernel*.cpp) and the CUDA kernels (kernels/era.cuh). Free of ATen, so
// nvcc compiles it on a machine whose torch has no CUDA.
//
//   y = a x + b + sum_{i=1..n} (c_i x + d_i) / ((x - e_i)^2 + f_i^2 + eps)
//
// Parameters of one group: linear = (a, b); fractions = n rows (c, d, e, f), stored row-major.
// With u = x - e, D = u^2 + f^2 + eps, r = (c x + d) / D (evaluated as c (x / D) + d / D):
//   dy/dx = a + sum (c - 2 u r) / D
//   dy/da = x, dy/db = 1, dy/dc = x / D, dy/dd = 1 / D, dy/de = 2 u r / D, dy/df = -2 f r / D
// D >= eps > 0, so for eps > 0 there is no pole whatever the parameters are.
//
// Infinite x (and any x where D overflows to inf, e.g. |x - e| > 1.8e19 in float): the fractions
// and all their partial derivatives are taken at their limit, 0 (x / D, 1 / D, u r / D -> 0 as
// |x| -> inf), instead of inf * 0 = NaN; the linear part a x + b is +-inf, or b when a == 0 (the
// limit of the line, not 0 * inf). So y(+-inf) = a x + b, dy/dx = a, dy/da = x (+-inf, as for the
// line: g * x), dy/db = 1, dy/d(c, d, e, f) = 0. A NaN x still gives NaN (D is NaN, not inf).
#pragma once

#include <cmath>
#include <cstdint>

#include "host_device.h"

namespace torch_rational {
namespace kernels {

// Fractions per group above this are rejected by the argument checks; it bounds on-stack
// accumulators (CUDA registers / local memory) of the generic paths.
constexpr int kMaxEraFractions = 32;
// Per-group parameter count: 2 linear + 4 per fraction.
TR_HOST_DEVICE int era_params_per_group(int n) { return 2 + 4 * n; }

// a x + b, with the limit b for a == 0 (a x would be 0 * inf = NaN at x = +-inf).
template <typename T>
TR_HOST_DEVICE T era_linear(T x, T a, T b) {
  return a == T(0) ? b : a * x + b;
}

template <typename T>
TR_HOST_DEVICE T era_forward_element(T x, T a, T b, const T* fr, int n, T eps) {
  T y = era_linear(x, a, b);
  for (int i = 0; i < n; ++i) {
    const T c = fr[4 * i], d = fr[4 * i + 1], e = fr[4 * i + 2], f = fr[4 * i + 3];
    const T u = x - e;
    const T inv = T(1) / (u * u + (f * f + eps));
    // c (x / D) + d / D rather than (c x + d) / D: for |x| near the float max, c x overflows to inf
    // while D is already inf, and inf / inf would be NaN; this way the fraction is 0 there. D = inf
    // (inv = 0) with an infinite x: x / D is inf * 0, so the limit 0 is taken explicitly.
    const T x_inv = inv == T(0) ? T(0) : x * inv;
    y += c * x_inv + d * inv;
  }
  return y;
}

// Returns g * dy/dx. When dlin is non-null, adds g * dy/d(a, b) into dlin[0..1] and
// g * dy/d(c, d, e, f) of fraction i into dfr[4i..4i+3] (Acc: the accumulator type, float64 on
// the CPU, the math type on CUDA where block partials are summed in a fixed order later).
template <typename T, typename Acc>
TR_HOST_DEVICE T era_backward_element(T x, T g, T a, const T* fr, int n, T eps, Acc* dlin, Acc* dfr) {
  T dydx = a;
  for (int i = 0; i < n; ++i) {
    const T c = fr[4 * i], d = fr[4 * i + 1], e = fr[4 * i + 2], f = fr[4 * i + 3];
    const T u = x - e;
    const T inv = T(1) / (u * u + (f * f + eps));
    const bool vanish = inv == T(0);  // D = inf: the limit 0 of every term, see era_forward_element
    const T x_inv = vanish ? T(0) : x * inv;
    const T r = c * x_inv + d * inv;  // overflow-safe form, see era_forward_element
    const T two_r_inv = T(2) * r * inv;
    // bounded by ~|c| + |d| / |u|, unlike 2 u, which can overflow; inf * 0 for an infinite u
    const T ur = vanish ? T(0) : u * r;
    dydx += (c - T(2) * ur) * inv;
    if (dlin) {
      const T gi = g * inv;
      dfr[4 * i] += Acc(g * x_inv);
      dfr[4 * i + 1] += Acc(gi);
      dfr[4 * i + 2] += Acc(g * ur * (T(2) * inv));
      dfr[4 * i + 3] -= Acc(g * f * two_r_inv);
    }
  }
  if (dlin) {
    dlin[0] += Acc(g * x);
    dlin[1] += Acc(g);
  }
  return g * dydx;
}

}  // namespace kernels
}  // namespace torch_rational
