// ERA's math on a vector of float32 lanes (VecEra), compiled per CPU capability by every file that
// includes it: the ERA op's kernels (era_kernel_vec.cpp) and the fused ERA of a normalised input
// (era_normalize_kernel_vec.cpp).
#pragma once

#include <ATen/cpu/vec/functional.h>
#include <ATen/cpu/vec/vec.h>

#include <type_traits>

#include "ops/cpu/era_kernel_vec.h"

namespace torch_rational {
namespace cpu {
namespace CPU_CAPABILITY {
namespace era_vec {

using fVec = at::vec::Vectorized<float>;
constexpr int kLanes = fVec::size();

template <int N>
struct VecEra {
  static constexpr int kAccumulators = 2 + 4 * N;  // the backward's acc vectors
  fVec a, b;
  fVec c[N], d[N], e[N], f[N], fe[N];  // fe = f^2 + eps
  // Lanes whose line is b alone (era_linear: no 0 * inf at x = +-inf): all or none of them in the
  // run walk (one group), any of them in the channel walk.
  fVec a_zero;
  bool any_a_zero;

  // One group's parameters in every lane (run walk).
  explicit VecEra(const EraGroupParams& p) : a(p.lin[0]), b(p.lin[1]) {
    for (int i = 0; i < N; ++i) {
      c[i] = fVec(p.fr[4 * i]);
      d[i] = fVec(p.fr[4 * i + 1]);
      e[i] = fVec(p.fr[4 * i + 2]);
      f[i] = fVec(p.fr[4 * i + 3]);
    }
    finish(p.eps);
  }

  // Lane l with channel l's parameters of an EraChannelParams soa (offset to the vector's first
  // channel): parameter k at soa[k * ld + l] (channel walk).
  VecEra(const float* soa, int64_t ld, float eps) : a(fVec::loadu(soa)), b(fVec::loadu(soa + ld)) {
    for (int i = 0; i < N; ++i) {
      c[i] = fVec::loadu(soa + (2 + 4 * i) * ld);
      d[i] = fVec::loadu(soa + (3 + 4 * i) * ld);
      e[i] = fVec::loadu(soa + (4 + 4 * i) * ld);
      f[i] = fVec::loadu(soa + (5 + 4 * i) * ld);
    }
    finish(eps);
  }

  void finish(float eps) {
    for (int i = 0; i < N; ++i) fe[i] = f[i] * f[i] + fVec(eps);
    a_zero = a == fVec(0.f);
    any_a_zero = a_zero.zero_mask() != (1 << kLanes) - 1;
  }

  inline fVec forward(fVec x) const {
    fVec y = at::vec::fmadd(a, x, b);
    if (any_a_zero) y = fVec::blendv(y, b, a_zero);
    const fVec zero(0.f);
    for (int i = 0; i < N; ++i) {
      const fVec u = x - e[i];
      const fVec inv = fVec(1.f) / at::vec::fmadd(u, u, fe[i]);
      // c (x / D) + d / D: finite for |x| near the float max, where c x / D would be inf / inf;
      // D = inf (inv = 0, e.g. x = +-inf): x / D is taken as its limit 0 (era_forward_element).
      const fVec x_inv = fVec::blendv(x * inv, zero, inv == zero);
      y = y + at::vec::fmadd(c[i], x_inv, d[i] * inv);
    }
    return y;
  }

  // Returns g dy/dx. acc holds 2 + 4N vectors: (a, b), then per fraction (c, d, e, f / -f): the
  // f slot accumulates g * 2 r / D and is multiplied by -f when flushed (one multiply per flush
  // instead of per element).
  template <bool COEFS>
  inline fVec backward(fVec x, fVec g, fVec* acc) const {
    fVec dydx = a;
    const fVec zero(0.f);
    for (int i = 0; i < N; ++i) {
      const fVec u = x - e[i];
      const fVec inv = fVec(1.f) / at::vec::fmadd(u, u, fe[i]);
      const fVec vanish = inv == zero;  // D = inf: every term at its limit 0, as era_backward_element
      const fVec x_inv = fVec::blendv(x * inv, zero, vanish);
      const fVec r = at::vec::fmadd(c[i], x_inv, d[i] * inv);  // overflow-safe, as in forward
      const fVec two_r_inv = (r + r) * inv;
      const fVec ur = fVec::blendv(u * r, zero, vanish);  // bounded, unlike u + u which can overflow
      dydx = at::vec::fmadd(c[i] - (ur + ur), inv, dydx);
      if (COEFS) {
        const fVec gi = g * inv;
        const fVec gt = g * two_r_inv;
        acc[2 + 4 * i] = at::vec::fmadd(g, x_inv, acc[2 + 4 * i]);
        acc[3 + 4 * i] = acc[3 + 4 * i] + gi;
        acc[4 + 4 * i] = at::vec::fmadd(g * ur, inv + inv, acc[4 + 4 * i]);
        acc[5 + 4 * i] = acc[5 + 4 * i] + gt;
      }
    }
    if (COEFS) {
      acc[0] = at::vec::fmadd(g, x, acc[0]);
      acc[1] = acc[1] + g;
    }
    return g * dydx;
  }
};

// Adds the lanes of one group's backward accumulators (VecEra::backward's acc), each summed in a
// fixed order, into the float64 gradients acc_lin (a, b) and acc_fr (c, d, e, f per fraction; the
// f slot times -f, see VecEra::backward), then zeroes them.
template <int N>
inline void flush_group_accumulators(fVec* acc, const float* fr, double* acc_lin, double* acc_fr) {
  alignas(64) float buf[kLanes];
  for (int k = 0; k < VecEra<N>::kAccumulators; ++k) {
    acc[k].store(buf);
    double s = 0;
    for (int l = 0; l < kLanes; ++l) s += buf[l];
    if (k < 2) {
      acc_lin[k] += s;
    } else {
      const int j = k - 2;
      acc_fr[j] += (j % 4 == 3) ? -static_cast<double>(fr[j]) * s : s;
    }
    acc[k] = fVec(0.f);
  }
}

// Calls fn(std::integral_constant<int, N>) for the specialised n = 1..4; false for other n (the
// caller's scalar path).
template <typename Fn>
bool with_fractions(int n, Fn&& fn) {
  switch (n) {
    case 1: fn(std::integral_constant<int, 1>{}); return true;
    case 2: fn(std::integral_constant<int, 2>{}); return true;
    case 3: fn(std::integral_constant<int, 3>{}); return true;
    case 4: fn(std::integral_constant<int, 4>{}); return true;
    default: return false;
  }
}

}  // namespace era_vec
}  // namespace CPU_CAPABILITY
}  // namespace cpu
}  // namespace torch_rational
