// Vectorised CPU bodies of the rational ops. This file is compiled once per CPU capability, with
// CPU_CAPABILITY set to DEFAULT, AVX2 or AVX512 (and the matching -m flags), exactly like ATen's
// own kernels, so at::vec::Vectorized<float> is 8 or 16 lanes wide and the library still runs on
// a CPU without AVX2.
//
// Degrees are template parameters for the common pairs (5,4), (4,4), (3,2), (7,6): the basis
// values, the coefficient broadcasts and the per-coefficient gradient accumulators then live in
// registers. Other degrees return false and take the generic scalar path of the caller.
#include <ATen/cpu/vec/functional.h>
#include <ATen/cpu/vec/vec.h>

#include <algorithm>
#include <cfloat>
#include <cmath>

#include "ops/cpu/rational_kernel_vec.h"
#include "ops/cpu/vec_lanes.h"

namespace torch_rational {
namespace cpu {
namespace CPU_CAPABILITY {

using kernels::Basis;
using kernels::Version;
using fVec = at::vec::Vectorized<float>;

template <int M, int N, Version V, bool POWER>
struct VecRational {
  static constexpr int K0 = V == Version::C ? 0 : 1;
  static constexpr int NB = V == Version::C ? N + 1 : N;
  static constexpr int D = M > N ? M : N;

  fVec a[M + 1];
  fVec b[NB];
  fVec absb[NB];
  fVec sgnb[NB];
  // Recurrence coefficients of the orthogonal bases (unused by the power basis: one slot, so a
  // channel walk's per-vector states stay small).
  static constexpr int DB = POWER || D == 0 ? 1 : D;
  fVec al[DB], be[DB], ga[DB];


  // One group's coefficients in every lane (run walk).
  explicit VecRational(const RunConfig& cfg, const GroupCoefs& c) {
    for (int j = 0; j <= M; ++j) a[j] = fVec(c.a[j]);
    for (int i = 0; i < NB; ++i) {
      b[i] = fVec(c.b[i]);
      absb[i] = fVec(std::fabs(c.b[i]));
      sgnb[i] = fVec(kernels::sign_of(c.b[i]));
    }
    init_basis(cfg);
  }

  // Lane l with the coefficients of channel l of a ChannelCoefs soa (already offset to the first
  // channel of the vector): coefficient k at soa[k * ld + l] (channel walk).
  VecRational(const RunConfig& cfg, const float* soa, int64_t ld) {
    for (int j = 0; j <= M; ++j) a[j] = fVec::loadu(soa + j * ld);
    for (int i = 0; i < NB; ++i) {
      b[i] = fVec::loadu(soa + (M + 1 + i) * ld);
      absb[i] = b[i].abs();
      sgnb[i] = sign(b[i]);
    }
    init_basis(cfg);
  }

  void init_basis(const RunConfig& cfg) {
    if constexpr (!POWER) {
      for (int k = 0; k < D; ++k) {
        float x, y, z;
        kernels::basis_recurrence<float>(cfg.basis, k, x, y, z);
        al[k] = fVec(x);
        be[k] = fVec(y);
        ga[k] = fVec(z);
      }
    }
  }

  static inline fVec sign(fVec v) {
    const fVec zero(0.f), one(1.f);
    return ((v > zero) & one) - ((v < zero) & one);
  }

  // The per-vector bodies below are forced inline: in this file's many specialisations GCC
  // otherwise calls backward_power out of line, its accumulators and coefficients in memory.

  // f_0..f_D and (if DERIV) their derivatives.
  template <bool DERIV>
  C10_ALWAYS_INLINE void basis(fVec x, fVec* f, fVec* df) const {
    f[0] = fVec(1.f);
    if (DERIV) df[0] = fVec(0.f);
    if (POWER) {
      for (int k = 1; k <= D; ++k) {
        f[k] = f[k - 1] * x;
        if (DERIV) df[k] = fVec(float(k)) * f[k - 1];
      }
    } else if constexpr (!POWER) {
      fVec fprev(0.f), dprev(0.f);
      for (int k = 0; k < D; ++k) {
        const fVec lin = at::vec::fmadd(al[k], x, be[k]);
        const fVec fn = lin * f[k] - ga[k] * fprev;
        if (DERIV) {
          const fVec dn = at::vec::fmadd(al[k], f[k], lin * df[k]) - ga[k] * dprev;
          dprev = df[k];
          df[k + 1] = dn;
        }
        fprev = f[k];
        f[k + 1] = fn;
      }
    }
  }

  // Sum_i c[i] t^i by Horner (c has L entries).
  template <int L>
  static inline fVec horner(const fVec* c, fVec t) {
    fVec h = c[L - 1];
    for (int i = L - 2; i >= 0; --i) h = at::vec::fmadd(h, t, c[i]);
    return h;
  }

  // Horner with the derivative: h = sum_i c[i] t^i, dh = dh/dt.
  template <int L>
  static inline void horner_d(const fVec* c, fVec t, fVec& h, fVec& dh) {
    h = c[L - 1];
    dh = fVec(0.f);
    for (int i = L - 2; i >= 0; --i) {
      dh = at::vec::fmadd(dh, t, h);
      h = at::vec::fmadd(h, t, c[i]);
    }
  }

  C10_ALWAYS_INLINE fVec forward(fVec x) const {
    if (POWER) {
      const fVec P = horner<M + 1>(a, x);
      fVec Q;
      if (V == Version::A) {
        // Q = 1 + |x| * sum_i |b_{i+1}| |x|^i
        const fVec ax = x.abs();
        Q = at::vec::fmadd(horner<NB>(absb, ax), ax, fVec(1.f));
      } else {
        const fVec H = horner<NB>(b, x);
        const fVec S = K0 == 1 ? H * x : H;
        Q = V == Version::N ? fVec(1.f) + S : fVec(V == Version::C ? 0.1f : 1.f) + S.abs();
      }
      return P / Q;
    }
    fVec f[D + 1];
    basis<false>(x, f, nullptr);
    fVec P = a[0] * f[0];
    for (int j = 1; j <= M; ++j) P = at::vec::fmadd(a[j], f[j], P);
    fVec Q;
    if (V == Version::A) {
      Q = fVec(1.f);
      for (int i = 0; i < NB; ++i) Q = at::vec::fmadd(absb[i], f[i + K0].abs(), Q);
    } else {
      fVec S(0.f);
      for (int i = 0; i < NB; ++i) S = at::vec::fmadd(b[i], f[i + K0], S);
      if (V == Version::N) {
        Q = fVec(1.f) + S;
      } else {
        Q = fVec(V == Version::C ? 0.1f : 1.f) + S.abs();
      }
    }
    return P / Q;
  }

  // Factor applied to acc_b when it is flushed: the power path accumulates g*y/Q * |f_k| (A) or
  // g*y/Q * sign(S) f_k (B, C) or g*y/Q * f_k (N) and leaves the constant sign for the end.
  float den_flush_factor(int i, const GroupCoefs& c) const {
    if (!POWER) return 1.f;
    return V == Version::A ? -kernels::sign_of(c.b[i]) : -1.f;
  }
  // The same per lane (channel walk).
  fVec den_flush_factor(int i) const {
    if (!POWER) return fVec(1.f);
    return V == Version::A ? fVec(0.f) - sgnb[i] : fVec(-1.f);
  }

  // Power basis: P, P', Q, Q' by Horner (about 45 vector ops per 8/16 elements for (5,4)).
  template <bool COEFS>
  C10_ALWAYS_INLINE fVec backward_power(fVec x, fVec g, fVec* acc_a, fVec* acc_b) const {
    fVec P, dP;
    horner_d<M + 1>(a, x, P, dP);
    fVec Q, dQ, sS;
    if (V == Version::A) {
      const fVec ax = x.abs();
      fVec H, dH;
      horner_d<NB>(absb, ax, H, dH);
      Q = at::vec::fmadd(H, ax, fVec(1.f));
      dQ = at::vec::fmadd(dH, ax, H) * sign(x);  // d|x|/dx = sign(x), 0 at 0 as in torch
    } else {
      fVec H, dH;
      horner_d<NB>(b, x, H, dH);
      fVec S, dS;
      if (K0 == 1) {
        S = H * x;
        dS = at::vec::fmadd(dH, x, H);
      } else {
        S = H;
        dS = dH;
      }
      if (V == Version::N) {
        Q = fVec(1.f) + S;
        dQ = dS;
      } else {
        sS = sign(S);
        Q = fVec(V == Version::C ? 0.1f : 1.f) + S.abs();
        dQ = sS * dS;
      }
    }
    const fVec rQ = fVec(1.f) / Q;
    const fVec y = P * rQ;
    const fVec gq = g * rQ;
    if (COEFS) {
      fVec gy = gq * y;
      if (V == Version::B || V == Version::C) gy = gy * sS;
      acc_a[0] = acc_a[0] + gq;
      fVec xp = x;  // x^k
      for (int k = 1; k <= D; ++k) {
        if (k <= M) acc_a[k] = at::vec::fmadd(gq, xp, acc_a[k]);
        const int i = k - K0;
        if (i >= 0 && i < NB) acc_b[i] = at::vec::fmadd(gy, V == Version::A ? xp.abs() : xp, acc_b[i]);
        if (k < D) xp = xp * x;
      }
      if (K0 == 0) acc_b[0] = acc_b[0] + gy;  // version C: f_0 = 1
    }
    return gq * (dP - y * dQ);
  }

  // grad_x = g dy/dx; acc_a[j] += g dy/da_j; acc_b[i] += g dy/db_i. The power basis has its own
  // body (backward_power); below, the recurrence bases.
  template <bool COEFS>
  C10_ALWAYS_INLINE fVec backward(fVec x, fVec g, fVec* acc_a, fVec* acc_b) const {
    if (POWER) return backward_power<COEFS>(x, g, acc_a, acc_b);
    fVec f[D + 1], df[D + 1];
    basis<true>(x, f, df);
    fVec P = a[0] * f[0], dP(0.f);
    for (int j = 1; j <= M; ++j) {
      P = at::vec::fmadd(a[j], f[j], P);
      dP = at::vec::fmadd(a[j], df[j], dP);
    }
    fVec Q, dQ;
    fVec dQdb[NB];
    if (V == Version::A) {
      Q = fVec(1.f);
      dQ = fVec(0.f);
      for (int i = 0; i < NB; ++i) {
        const int k = i + K0;
        const fVec afk = f[k].abs();
        Q = at::vec::fmadd(absb[i], afk, Q);
        dQ = at::vec::fmadd(absb[i] * sign(f[k]), df[k], dQ);
        if (COEFS) dQdb[i] = sgnb[i] * afk;
      }
    } else {
      fVec S(0.f), dS(0.f);
      for (int i = 0; i < NB; ++i) {
        S = at::vec::fmadd(b[i], f[i + K0], S);
        dS = at::vec::fmadd(b[i], df[i + K0], dS);
      }
      if (V == Version::N) {
        Q = fVec(1.f) + S;
        dQ = dS;
        if (COEFS)
          for (int i = 0; i < NB; ++i) dQdb[i] = f[i + K0];
      } else {
        const fVec sS = sign(S);
        Q = fVec(V == Version::C ? 0.1f : 1.f) + S.abs();
        dQ = sS * dS;
        if (COEFS)
          for (int i = 0; i < NB; ++i) dQdb[i] = sS * f[i + K0];
      }
    }
    const fVec rQ = fVec(1.f) / Q;
    const fVec y = P * rQ;
    const fVec gq = g * rQ;
    if (COEFS) {
      const fVec gy = gq * y;
      for (int j = 0; j <= M; ++j) acc_a[j] = at::vec::fmadd(gq, f[j], acc_a[j]);
      for (int i = 0; i < NB; ++i) acc_b[i] = acc_b[i] - gy * dQdb[i];
    }
    return gq * (dP - y * dQ);
  }
};

constexpr int kLanes = fVec::size();

// True if any lane of |x| exceeds the threshold: those vectors go to the scalar float64 path.
inline bool any_above(fVec x, fVec threshold) {
  const fVec mask = x.abs() > threshold;
  return mask.zero_mask() != (1 << kLanes) - 1;
}

template <int M, int N, Version V, bool POWER>
void forward_run(const RunConfig& cfg, const GroupCoefs& c, const float* x, float* y, int64_t n) {
  const VecRational<M, N, V, POWER> R(cfg, c);
  const double thr64 = POWER ? cfg.vec_threshold : INFINITY;
  const fVec thr(static_cast<float>(thr64));
  const double big64 = cfg.scaled_threshold;
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    const fVec xv = fVec::loadu(x + i);
    if (POWER && any_above(xv, thr)) {
      for (int l = 0; l < kLanes; ++l)
        y[i + l] = static_cast<float>(scalar_forward_element(cfg, c.a64, c.b64, x[i + l], big64));
      continue;
    }
    R.forward(xv).store(y + i);
  }
  for (; i < n; ++i) y[i] = static_cast<float>(scalar_forward_element(cfg, c.a64, c.b64, x[i], big64));
}

template <int M, int N, Version V, bool POWER>
void backward_run(const RunConfig& cfg, const GroupCoefs& c, const float* x, const float* g, float* gx,
                  int64_t n, double* acc_a, double* acc_b) {
  using R_t = VecRational<M, N, V, POWER>;
  constexpr int NB = R_t::NB;
  const R_t R(cfg, c);
  const double thr64 = POWER ? cfg.vec_threshold : INFINITY;
  const fVec thr(static_cast<float>(thr64));
  const double big64 = cfg.scaled_threshold;
  const bool coefs = acc_a != nullptr;
  fVec va[M + 1], vb[NB];
  double fin_b[NB];
  for (int i = 0; i < NB; ++i) fin_b[i] = R.den_flush_factor(i, c);
  auto zero_acc = [&] {
    for (int j = 0; j <= M; ++j) va[j] = fVec(0.f);
    for (int i = 0; i < NB; ++i) vb[i] = fVec(0.f);
  };
  // Lanes are summed in a fixed order into the float64 accumulators every kFlushVectors vectors.
  auto flush = [&] {
    float buf[kLanes];
    for (int j = 0; j <= M; ++j) {
      va[j].store(buf);
      double s = 0;
      for (int l = 0; l < kLanes; ++l) s += buf[l];
      acc_a[j] += s;
    }
    for (int i = 0; i < NB; ++i) {
      vb[i].store(buf);
      double s = 0;
      for (int l = 0; l < kLanes; ++l) s += buf[l];
      acc_b[i] += fin_b[i] * s;
    }
    zero_acc();
  };
  zero_acc();
  int pending = 0;
  double gx64;
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    const fVec xv = fVec::loadu(x + i);
    if (POWER && any_above(xv, thr)) {
      for (int l = 0; l < kLanes; ++l) {
        scalar_backward_element(cfg, c.a64, c.b64, x[i + l], g[i + l], big64, coefs ? acc_a : nullptr,
                                coefs ? acc_b : nullptr, &gx64);
        if (gx) gx[i + l] = static_cast<float>(gx64);
      }
      continue;
    }
    const fVec gv = fVec::loadu(g + i);
    const fVec gxv = backward_step(coefs, pending, [&](auto with) { return R.template backward<decltype(with)::value>(xv, gv, va, vb); },
                                   flush);
    if (gx) gxv.store(gx + i);
  }
  if (coefs) flush();
  for (; i < n; ++i) {
    scalar_backward_element(cfg, c.a64, c.b64, x[i], g[i], big64, coefs ? acc_a : nullptr,
                            coefs ? acc_b : nullptr, &gx64);
    if (gx) gx[i] = static_cast<float>(gx64);
  }
}

// ---------------------------------------------------------------------------------------------
// Channel walk (walk_channel_block, walk_channel_block_backward): a vector holds kLanes consecutive
// channels of one row (fewer in the last vector of a row: padded lanes read x = 0 and zero
// coefficients, and are neither stored nor accumulated); each vector of channels has its own
// coefficients and, in the backward, its own accumulators, flushed per lane, i.e. per channel,
// into float64.

template <int M, int N, Version V, bool POWER>
void forward_block(const RunConfig& cfg, const ChannelCoefs& cc, const float* x, float* y, int64_t rows,
                   int64_t C) {
  using R_t = VecRational<M, N, V, POWER>;
  constexpr int NA = M + 1, NB = R_t::NB;
  const fVec thr(static_cast<float>(POWER ? cfg.vec_threshold : INFINITY));
  const double big64 = cfg.scaled_threshold;
  walk_channel_block<R_t>(
      rows, C, {x, y}, [&](int64_t c, int) { return R_t(cfg, cc.soa + c, cc.ld); },
      [&](const R_t& R, int64_t c, int64_t o, int count) {
        const fVec xv = load_lanes(x + o, count);
        if (POWER && any_above(xv, thr)) {
          for (int l = 0; l < count; ++l) {
            const int64_t g = (c + l) / cc.per_group;
            y[o + l] = static_cast<float>(scalar_forward_element(cfg, cc.a64 + g * NA, cc.b64 + g * NB, x[o + l], big64));
          }
          return;
        }
        store_lanes(R.forward(xv), y + o, count);
      });
}

template <int M, int N, Version V, bool POWER>
void backward_block(const RunConfig& cfg, const ChannelCoefs& cc, const float* x, const float* g, float* gx,
                    int64_t rows, int64_t C, double* acc) {
  using R_t = VecRational<M, N, V, POWER>;
  constexpr int NA = M + 1, NB = R_t::NB, K = NA + NB;
  const fVec thr(static_cast<float>(POWER ? cfg.vec_threshold : INFINITY));
  const double big64 = cfg.scaled_threshold;
  const bool coefs = acc != nullptr;
  // sums: the numerator's NA vectors, then the denominator's NB.
  walk_channel_block_backward<K>(
      rows, C, x, g, gx, acc, [&](int64_t c, int) C10_ALWAYS_INLINE_ATTRIBUTE { return R_t(cfg, cc.soa + c, cc.ld); },
      [](const R_t& R, auto with, fVec* sums, fVec xv, fVec gv) C10_ALWAYS_INLINE_ATTRIBUTE {
        return R.template backward<decltype(with)::value>(xv, gv, sums, sums + NA);
      },
      [](const R_t& R, int k) C10_ALWAYS_INLINE_ATTRIBUTE { return k < NA ? fVec(1.f) : R.den_flush_factor(k - NA); },
      // |x| beyond the float32 threshold: the vector's elements on the scalar float64 path.
      [&](const R_t&, fVec xv) C10_ALWAYS_INLINE_ATTRIBUTE { return !(POWER && any_above(xv, thr)); },
      [&](int64_t c, int64_t o, int count) {
        double gx64;
        for (int l = 0; l < count; ++l) {
          const int64_t grp = (c + l) / cc.per_group;
          double* acc_l = coefs ? acc + (c + l) * K : nullptr;
          scalar_backward_element(cfg, cc.a64 + grp * NA, cc.b64 + grp * NB, x[o + l], g[o + l], big64, acc_l,
                                  coefs ? acc_l + NA : nullptr, &gx64);
          if (gx) gx[o + l] = static_cast<float>(gx64);
        }
      });
}

using ForwardFn = void (*)(const RunConfig&, const GroupCoefs&, const float*, float*, int64_t);
using BackwardFn = void (*)(const RunConfig&, const GroupCoefs&, const float*, const float*, float*, int64_t,
                            double*, double*);

using ForwardBlockFn = void (*)(const RunConfig&, const ChannelCoefs&, const float*, float*, int64_t, int64_t);
using BackwardBlockFn = void (*)(const RunConfig&, const ChannelCoefs&, const float*, const float*, float*, int64_t,
                                 int64_t, double*);

// The four bodies of one specialisation.
struct Bodies {
  ForwardFn forward;
  BackwardFn backward;
  ForwardBlockFn forward_block;
  BackwardBlockFn backward_block;
};

template <int M, int N, Version V, bool POWER>
Bodies bodies() {
  return Bodies{forward_run<M, N, V, POWER>, backward_run<M, N, V, POWER>, forward_block<M, N, V, POWER>,
                backward_block<M, N, V, POWER>};
}

template <int M, int N, Version V>
Bodies pick_basis(const RunConfig& cfg) {
  return cfg.basis == Basis::Power ? bodies<M, N, V, true>() : bodies<M, N, V, false>();
}

template <int M, int N>
Bodies pick_version(const RunConfig& cfg) {
  switch (cfg.version) {
    case Version::A: return pick_basis<M, N, Version::A>(cfg);
    case Version::B: return pick_basis<M, N, Version::B>(cfg);
    case Version::C: return pick_basis<M, N, Version::C>(cfg);
    case Version::N: break;
  }
  return pick_basis<M, N, Version::N>(cfg);
}

// The specialised degree pairs (m, n).
bool pick(const RunConfig& cfg, Bodies* out) {
  const int n = cfg.version == Version::C ? cfg.nb - 1 : cfg.nb;
#define TR_CASE(MM, NN)                \
  if (cfg.m == MM && n == NN) {        \
    *out = pick_version<MM, NN>(cfg);  \
    return true;                       \
  }
  TR_CASE(5, 4)
  TR_CASE(4, 4)
  TR_CASE(3, 2)
  TR_CASE(7, 6)
#undef TR_CASE
  return false;
}

// The table's entries: the body of cfg's specialisation, or false when (m, n) has none.
bool forward_entry(const RunConfig& cfg, const GroupCoefs& c, const float* x, float* y, int64_t n) {
  Bodies b;
  return pick(cfg, &b) && (b.forward(cfg, c, x, y, n), true);
}

bool backward_entry(const RunConfig& cfg, const GroupCoefs& c, const float* x, const float* g, float* gx,
                    int64_t n, double* acc_a, double* acc_b) {
  Bodies b;
  return pick(cfg, &b) && (b.backward(cfg, c, x, g, gx, n, acc_a, acc_b), true);
}

bool forward_block_entry(const RunConfig& cfg, const ChannelCoefs& cc, const float* x, float* y, int64_t rows,
                         int64_t C) {
  Bodies b;
  return pick(cfg, &b) && (b.forward_block(cfg, cc, x, y, rows, C), true);
}

bool backward_block_entry(const RunConfig& cfg, const ChannelCoefs& cc, const float* x, const float* g, float* gx,
                          int64_t rows, int64_t C, double* acc) {
  Bodies b;
  return pick(cfg, &b) && (b.backward_block(cfg, cc, x, g, gx, rows, C, acc), true);
}

const VecKernelTable& table() {
  static const VecKernelTable t{forward_entry, backward_entry, forward_block_entry, backward_block_entry};
  return t;
}

}  // namespace CPU_CAPABILITY
}  // namespace cpu
}  // namespace torch_rational
