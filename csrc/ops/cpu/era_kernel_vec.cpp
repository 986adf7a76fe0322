// Vectorised CPU bodies of the ERA op, compiled once per CPU capability (CPU_CAPABILITY =
// DEFAULT, AVX2 or AVX512, with the matching -m flags) like rational_kernel_vec.cpp, so
// at::vec::Vectorized<float> is 8 or 16 lanes wide and the library still runs without AVX2.
//
// The number of fractions n is a template parameter for n = 1..4 (n = 1 is the recommended ERA):
// the parameter broadcasts and the per-parameter gradient accumulators then stay in registers.
// Other n return false and take the scalar path of the caller (kernels/era_math.h).
#include <ATen/cpu/vec/functional.h>
#include <ATen/cpu/vec/vec.h>

#include <algorithm>
#include <type_traits>

#include "era_math.h"
#include "ops/cpu/era_kernel_vec.h"
#include "ops/cpu/vec_lanes.h"

namespace torch_rational {
namespace cpu {
namespace CPU_CAPABILITY {
namespace era_vec {

using fVec = at::vec::Vectorized<float>;
constexpr int kLanes = fVec::size();

template <int N>
struct VecEra {
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

template <int N>
void forward_run(const EraGroupParams& p, const float* x, float* y, int64_t len) {
  const VecEra<N> E(p);
  int64_t i = 0;
  for (; i + kLanes <= len; i += kLanes) E.forward(fVec::loadu(x + i)).store(y + i);
  if (i < len) E.forward(fVec::loadu(x + i, len - i)).store(y + i, len - i);
}

template <int N>
void backward_run(const EraGroupParams& p, const float* x, const float* g, float* gx, int64_t len, double* acc_lin,
                  double* acc_fr) {
  constexpr int K = 2 + 4 * N;
  const VecEra<N> E(p);
  const bool coefs = acc_lin != nullptr;
  fVec acc[K];
  for (int k = 0; k < K; ++k) acc[k] = fVec(0.f);
  // Lanes are summed in a fixed order into the float64 accumulators every kFlushVectors vectors.
  auto flush = [&] {
    float buf[kLanes];
    for (int k = 0; k < K; ++k) {
      acc[k].store(buf);
      double s = 0;
      for (int l = 0; l < kLanes; ++l) s += buf[l];
      if (k < 2) {
        acc_lin[k] += s;
      } else {
        const int j = k - 2;
        acc_fr[j] += (j % 4 == 3) ? -static_cast<double>(p.fr[j]) * s : s;
      }
      acc[k] = fVec(0.f);
    }
  };
  int pending = 0;
  int64_t i = 0;
  for (; i + kLanes <= len; i += kLanes) {
    const fVec xv = fVec::loadu(x + i);
    const fVec gv = fVec::loadu(g + i);
    const fVec gxv =
        backward_step(coefs, pending, [&](auto with) { return E.template backward<decltype(with)::value>(xv, gv, acc); }, flush);
    if (gx) gxv.store(gx + i);
  }
  if (coefs) flush();
  // The tail goes through the scalar float path: zero-padded lanes could turn into 0 * inf = NaN
  // in the accumulators (x = e, f = 0, eps = 0).
  for (; i < len; ++i) {
    const float v = kernels::era_backward_element<float, double>(x[i], g[i], p.lin[0], p.fr, N, p.eps,
                                                                 acc_lin, acc_fr);
    if (gx) gx[i] = v;
  }
}

// ---------------------------------------------------------------------------------------------
// Channel walk (walk_channel_block): a vector holds kLanes consecutive channels of one row (fewer
// in the last vector of a row: padded lanes are neither stored nor accumulated, so a NaN there
// does no harm); each vector of channels has its own parameters and, in the backward, its own
// accumulators, flushed per lane, i.e. per channel.

template <int N>
void forward_block(const EraChannelParams& p, const float* x, float* y, int64_t rows, int64_t C) {
  walk_channel_block<VecEra<N>>(
      rows, C, {x, y}, [&](int64_t c, int) { return VecEra<N>(p.soa + c, p.ld, p.eps); },
      [&](const VecEra<N>& E, int64_t, int64_t o, int count) {
        store_lanes(E.forward(load_lanes(x + o, count)), y + o, count);
      });
}

template <int N>
void backward_block(const EraChannelParams& p, const float* x, const float* g, float* gx, int64_t rows, int64_t C,
                    double* acc_all) {
  // sums: (a, b), then per fraction (c, d, e, f); the f slot holds g 2 r / D, times -f at the flush.
  constexpr int K = 2 + 4 * N;
  walk_channel_block_backward<K>(
      rows, C, x, g, gx, acc_all,
      [&](int64_t c, int) C10_ALWAYS_INLINE_ATTRIBUTE { return VecEra<N>(p.soa + c, p.ld, p.eps); },
      [](const VecEra<N>& E, auto with, fVec* sums, fVec xv, fVec gv) C10_ALWAYS_INLINE_ATTRIBUTE {
        return E.template backward<decltype(with)::value>(xv, gv, sums);
      },
      [](const VecEra<N>& E, int k) C10_ALWAYS_INLINE_ATTRIBUTE {
        return k >= 2 && (k - 2) % 4 == 3 ? E.f[(k - 2) / 4].neg() : fVec(1.f);
      });
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

bool forward_entry(const EraGroupParams& p, const float* x, float* y, int64_t len) {
  return with_fractions(p.n, [&](auto N) { forward_run<decltype(N)::value>(p, x, y, len); });
}

bool backward_entry(const EraGroupParams& p, const float* x, const float* g, float* gx, int64_t len,
                    double* acc_lin, double* acc_fr) {
  return with_fractions(p.n, [&](auto N) { backward_run<decltype(N)::value>(p, x, g, gx, len, acc_lin, acc_fr); });
}

bool forward_block_entry(const EraChannelParams& p, const float* x, float* y, int64_t rows, int64_t C) {
  return with_fractions(p.n, [&](auto N) { forward_block<decltype(N)::value>(p, x, y, rows, C); });
}

bool backward_block_entry(const EraChannelParams& p, const float* x, const float* g, float* gx, int64_t rows,
                          int64_t C, double* acc) {
  return with_fractions(p.n, [&](auto N) { backward_block<decltype(N)::value>(p, x, g, gx, rows, C, acc); });
}

}  // namespace era_vec

const EraVecKernelTable& era_table() {
  static const EraVecKernelTable t{era_vec::forward_entry, era_vec::backward_entry, era_vec::forward_block_entry,
                                   era_vec::backward_block_entry};
  return t;
}

}  // namespace CPU_CAPABILITY
}  // namespace cpu
}  // namespace torch_rational
