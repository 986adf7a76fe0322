// Shared math of the rational activation family, used by the CPU kernels (csrc/ops/cpu) and the
// CUDA kernels (kernels/*.cuh). Deliberately free of ATen: plain scalars, plain pointers, so that
// nvcc can compile it on a machine whose torch has no CUDA.
//
// Notation (see docs/DESIGN.md):
//   P(x) = sum_{j=0..m} a_j f_j(x)
//   A: Q = 1 + sum_{k=1..n} |b_k||f_k|     B: Q = 1 + |sum_{k=1..n} b_k f_k|
//   C: Q = 0.1 + |sum_{k=0..n} b_k f_k|    N: Q = 1 + sum_{k=1..n} b_k f_k
// Denominator coefficients are stored densely: index i holds b_{i + first_den_power(version)}.
#pragma once

#include <cmath>
#include <cstdint>

#include "host_device.h"

namespace torch_rational {
namespace kernels {

// Degrees above this are rejected by the argument checks; it bounds the on-stack arrays below.
constexpr int kMaxDegree = 32;

enum class Version : int { A = 0, B = 1, C = 2, N = 3 };

enum class Basis : int {
  Power = 0,
  ChebyshevT = 1,
  ChebyshevU = 2,
  Hermite = 3,
  HermiteE = 4,
  Laguerre = 5,
  Legendre = 6,
};

// Index of the first denominator power: C has a b_0 term, the others start at b_1.
TR_HOST_DEVICE int first_den_power(Version v) { return v == Version::C ? 0 : 1; }

// Constant term of Q (scaled by `one` in the large-|x| evaluation).
template <typename T>
TR_HOST_DEVICE T den_constant(Version v) {
  return v == Version::C ? T(0.1) : T(1);
}

// Three-term recurrence f_{k+1} = (alpha_k x + beta_k) f_k - gamma_k f_{k-1}, f_0 = 1, f_{-1} = 0.
template <typename T>
TR_HOST_DEVICE void basis_recurrence(Basis basis, int k, T& alpha, T& beta, T& gamma) {
  const T kk = T(k);
  alpha = T(1);
  beta = T(0);
  gamma = T(0);
  switch (basis) {
    case Basis::Power: break;  // the defaults above
    case Basis::ChebyshevT: alpha = k == 0 ? T(1) : T(2); beta = T(0); gamma = T(1); break;
    case Basis::ChebyshevU: alpha = T(2); beta = T(0); gamma = T(1); break;
    case Basis::Hermite: alpha = T(2); beta = T(0); gamma = T(2) * kk; break;
    case Basis::HermiteE: alpha = T(1); beta = T(0); gamma = kk; break;
    case Basis::Laguerre:
      alpha = T(-1) / (kk + T(1));
      beta = (T(2) * kk + T(1)) / (kk + T(1));
      gamma = kk / (kk + T(1));
      break;
    case Basis::Legendre:
      alpha = (T(2) * kk + T(1)) / (kk + T(1));
      beta = T(0);
      gamma = kk / (kk + T(1));
      break;
  }
}

template <typename T>
TR_HOST_DEVICE T sign_of(T v) {
  // sign(0) = 0, as torch.sign / the gradient of abs in torch.
  return v > T(0) ? T(1) : (v < T(0) ? T(-1) : T(0));
}

// Basis values f_0..f_D and derivatives df_0..df_D at x. `one` is the value that multiplies the
// constant term of Q: 1 normally, |1/x|^D in the scaled large-|x| evaluation of the power basis.
template <typename T>
struct BasisValues {
  T f[kMaxDegree + 1];
  T df[kMaxDegree + 1];
  T one;
};

template <typename T>
TR_HOST_DEVICE void eval_basis(Basis basis, T x, int D, bool scaled, BasisValues<T>& bv, int Ds = -1) {
  if (scaled) {
    // Power basis only, |x| > 1: t_j = sign(x)^j |z|^(Ds-j) with z = 1/x; everything (P, Q and
    // their derivatives) is the true value times |z|^Ds, which cancels in y = P/Q. Ds (default D)
    // is the highest power with a nonzero coefficient (see rational_element): scaling by a power
    // whose terms are all zero would underflow the leading terms that are there. Powers above Ds
    // (zero coefficients; only their coefficient gradients use them) are sign(x)^j |x|^(j-Ds).
    if (Ds < 0) Ds = D;
    const T ax = x < T(0) ? -x : x;
    const T az = T(1) / ax;
    const T s = x < T(0) ? T(-1) : T(1);
    // f_Ds = s^Ds, then one power of |z| (and of s) per step down, one power of |x| per step up:
    // no table of powers, which would cost registers in every kernel that inlines this.
    T top = T(1);
    for (int j = 0; j < Ds; ++j) top *= s;
    bv.f[Ds] = top;
    for (int j = Ds - 1; j >= 0; --j) bv.f[j] = bv.f[j + 1] * (az * s);
    for (int j = Ds + 1; j <= D; ++j) bv.f[j] = bv.f[j - 1] * (ax * s);
    bv.df[0] = T(0);
    for (int j = 1; j <= D; ++j) bv.df[j] = T(j) * bv.f[j - 1];
    bv.one = bv.f[0] < T(0) ? -bv.f[0] : bv.f[0];  // |z|^Ds
    return;
  }
  bv.one = T(1);
  bv.f[0] = T(1);
  bv.df[0] = T(0);
  T fprev = T(0), dprev = T(0);
  for (int k = 0; k < D; ++k) {
    T al, be, ga;
    basis_recurrence<T>(basis, k, al, be, ga);
    const T lin = al * x + be;
    const T fn = lin * bv.f[k] - ga * fprev;
    const T dn = al * bv.f[k] + lin * bv.df[k] - ga * dprev;
    fprev = bv.f[k];
    dprev = bv.df[k];
    bv.f[k + 1] = fn;
    bv.df[k + 1] = dn;
  }
}

// Above this |x| the power basis is evaluated in the scaled form (x^(D+2) could overflow T).
template <typename T>
TR_HOST_DEVICE T overflow_threshold(int D, T max_value) {
  return pow(max_value, T(1) / T(D + 2));
}

// Per-element result of the generic (runtime degree) evaluation.
template <typename T>
struct ElementOut {
  T y;
  T dydx;
};

// Limit of c |x|^e as |x| -> inf: c * inf (e > 0), c (e == 0), a zero with the sign of c
// (e < 0); 0 when c is 0 (the function is identically 0).
template <typename T>
TR_HOST_DEVICE T limit_term(T c, int e) {
  if (c == T(0) || e < 0) return c * T(0);
  return e == 0 ? c : c * T(INFINITY);
}

// x = +-inf, power basis: the limits as x -> +-inf of y, dy/dx, dy/da_j and dy/db_i (da/db
// as in rational_element). With s = sign(x), p the highest power with a_p != 0 and q that of Q:
// on the half-line Q = L |x|^q + lower powers with L = |b_q| (A, B, C), b_q s^q (N), or, when
// no b_k (k >= 1) is nonzero, the constant (1; C: 0.1 + |b_0|). Then
//   y      ~ (a_p s^p / L) |x|^(p-q)
//   dy/dx  ~ (a_p s^p / L) (p-q) s |x|^(p-q-1)      (0 when p == q: the leading terms cancel)
//   dy/da_j = x^j / Q ~ (s^j / L) |x|^(j-q)
//   dy/db_k = -(P / Q^2) dQ/db_k ~ -(a_p s^p / L^2) c_k |x|^(p-2q+k),
//             c_k = sign(b_k) (A), sign(S) s^k (B, C; sign(S) = sign(b_q s^q)), s^k (N)
// each taken to its limit by limit_term. P == 0 (all a_j zero): y and every derivative but
// dy/da are 0.
template <typename T>
TR_HOST_DEVICE ElementOut<T> rational_element_at_inf(T x, const T* a, int m, const T* b, int nb, Version v,
                                                     T* da, T* db) {
  // Signs as integers and one division: this runs inside rational_element_large, whose registers
  // count towards every CUDA kernel that calls it (scripts/check_registers.py).
  const bool neg = x < T(0);
  auto s_pow = [neg](int j) { return neg && (j & 1) ? -1 : 1; };  // sign(x)^j
  const int k0 = first_den_power(v);
  int p = m;
  while (p >= 0 && a[p] == T(0)) --p;
  int i_q = nb - 1;
  while (i_q >= 0 && b[i_q] == T(0)) --i_q;
  const int q = i_q < 0 ? 0 : i_q + k0;
  int sgn_s = 0;  // sign of S's leading term b_q s^q (B, C)
  T L = den_constant<T>(v);
  if (i_q >= 0) {
    const T bq = b[i_q];
    sgn_s = (bq < T(0) ? -1 : 1) * s_pow(q);
    const T abq = bq < T(0) ? -bq : bq;
    if (q == 0) L += abq;  // C with only b_0: Q = 0.1 + |b_0|
    else L = v == Version::N ? bq * T(s_pow(q)) : abq;
  }
  const T inv_l = T(1) / L;
  // c_y = a_p s^p / L: the coefficient of |x|^(p-q) in y.
  const T cy = p < 0 ? T(0) : a[p] * T(s_pow(p)) * inv_l;
  ElementOut<T> out;
  out.y = p < 0 ? T(0) : limit_term(cy, p - q);
  out.dydx = p < 0 ? T(0) : limit_term(cy * T((p - q) * (neg ? -1 : 1)), p - q - 1);
  if (da != nullptr) {
    for (int j = 0; j <= m; ++j) da[j] = limit_term(T(s_pow(j)) * inv_l, j - q);
    const T cb = -cy * inv_l;
    for (int i = 0; i < nb; ++i) {
      const int k = i + k0;
      const int ck = v == Version::A ? (b[i] > T(0) ? 1 : (b[i] < T(0) ? -1 : 0))
                                     : (v == Version::N ? s_pow(k) : sgn_s * s_pow(k));
      db[i] = p < 0 ? T(0) : limit_term(cb * T(ck), p - 2 * q + k);
    }
  }
  return out;
}

// y, dy/dx (and optionally dy/da_j, dy/db_i) of one element from its basis values. The sums of
// P and Q use the terms up to mt / nbt (coefficients above are zero: the scaled form skips them, as
// 0 * inf would be NaN); the coefficient gradients use all of them.
template <typename T>
TR_HOST_DEVICE ElementOut<T> rational_from_basis(const BasisValues<T>& bv, const T* a, int m, int mt, const T* b,
                                                 int nb, int nbt, Version v, T* da, T* db) {
  const int k0 = first_den_power(v);
  T P = T(0), dP = T(0);
  for (int j = 0; j <= mt; ++j) {
    P += a[j] * bv.f[j];
    dP += a[j] * bv.df[j];
  }
  T Q, dQ;
  T sgnS = T(0);
  if (v == Version::A) {
    Q = bv.one;
    dQ = T(0);
    for (int i = 0; i < nbt; ++i) {
      const int k = i + k0;
      const T ab = b[i] < T(0) ? -b[i] : b[i];
      const T fk = bv.f[k];
      Q += ab * (fk < T(0) ? -fk : fk);
      dQ += ab * sign_of(fk) * bv.df[k];
    }
  } else {
    T S = T(0), dS = T(0);
    for (int i = 0; i < nbt; ++i) {
      const int k = i + k0;
      S += b[i] * bv.f[k];
      dS += b[i] * bv.df[k];
    }
    if (v == Version::N) {
      Q = bv.one + S;
      dQ = dS;
    } else {
      sgnS = sign_of(S);
      Q = den_constant<T>(v) * bv.one + (S < T(0) ? -S : S);
      dQ = sgnS * dS;
    }
  }
  const T rQ = T(1) / Q;
  const T y = P * rQ;
  ElementOut<T> out;
  out.y = y;
  out.dydx = (dP - y * dQ) * rQ;
  if (da != nullptr) {
    for (int j = 0; j <= m; ++j) da[j] = bv.f[j] * rQ;
    const T yrQ = y * rQ;
    for (int i = 0; i < nb; ++i) {
      const int k = i + k0;
      const T fk = bv.f[k];
      T dQdb;
      if (v == Version::A) {
        dQdb = sign_of(b[i]) * (fk < T(0) ? -fk : fk);
      } else if (v == Version::N) {
        dQdb = fk;
      } else {
        dQdb = sgnS * fk;
      }
      // Beyond nbt (powers above Ds, scaled form only) fk may be inf with a zero factor: the true
      // derivative is 0.
      db[i] = (i >= nbt && (dQdb != dQdb || yrQ == T(0))) ? T(0) : -yrQ * dQdb;
    }
  }
  return out;
}

// The scaled form (power basis, |x| above the overflow threshold), by the highest power with a
// nonzero coefficient, Ds; x = +-inf: the limits of rational_element_at_inf. A function of its
// own so that the plain evaluation (scaled = false, a constant in the kernels that call it) carries
// none of its registers; on the GPU only the out-of-line rational_element_large reaches it.
template <typename T>
TR_HOST_DEVICE ElementOut<T> rational_element_scaled(T x, const T* a, int m, const T* b, int nb,
                                                     Version v, T* da, T* db) {
  if (x == x && x - x != x - x) return rational_element_at_inf<T>(x, a, m, b, nb, v, da, db);  // +-inf
  const int k0 = first_den_power(v);
  const int n_top = nb - 1 + k0;
  const int D = m > n_top ? m : n_top;
  int p = 0, q = 0;
  for (int j = m; j > 0; --j) {
    if (a[j] != T(0)) {
      p = j;
      break;
    }
  }
  for (int i = nb - 1; i >= 0; --i) {
    if (b[i] != T(0)) {
      q = i + k0;
      break;
    }
  }
  const int Ds = p > q ? p : q;
  BasisValues<T> bv;
  eval_basis<T>(Basis::Power, x, D, true, bv, Ds);
  const int mt = m < Ds ? m : Ds;
  const int nbt = Ds - k0 + 1 < nb ? Ds - k0 + 1 : nb;
  return rational_from_basis<T>(bv, a, m, mt, b, nb, nbt, v, da, db);
}

// Forward value (and optionally all derivatives) of one element, runtime degrees.
// a: m+1 numerator coefs; b: nb denominator coefs (dense, see first_den_power).
// If da/db are non-null they receive dy/da_j and dy/db_i (not multiplied by the upstream grad).
// scaled (power basis, |x| above the overflow threshold): rational_element_scaled.
template <typename T>
TR_HOST_DEVICE ElementOut<T> rational_element(
    T x, const T* a, int m, const T* b, int nb, Version v, Basis basis, bool scaled, T* da, T* db) {
  if (scaled) return rational_element_scaled<T>(x, a, m, b, nb, v, da, db);
  const int n_top = nb - 1 + first_den_power(v);
  BasisValues<T> bv;
  eval_basis<T>(basis, x, m > n_top ? m : n_top, false, bv);
  return rational_from_basis<T>(bv, a, m, m, b, nb, nb, v, da, db);
}

// ---------------------------------------------------------------------------------------------
// Philox4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3"), counter based so
// the backward pass regenerates the forward's draws and CPU and CUDA draw the same numbers.
struct Philox4 {
  uint32_t v[4];
};

TR_HOST_DEVICE uint32_t mulhilo32(uint32_t a, uint32_t b, uint32_t* hi) {
  const uint64_t p = static_cast<uint64_t>(a) * static_cast<uint64_t>(b);
  *hi = static_cast<uint32_t>(p >> 32);
  return static_cast<uint32_t>(p);
}

TR_HOST_DEVICE Philox4 philox4x32_10(uint32_t c0, uint32_t c1, uint32_t c2, uint32_t c3, uint32_t k0,
                                     uint32_t k1) {
  for (int r = 0; r < 10; ++r) {
    uint32_t hi0, hi1;
    const uint32_t lo0 = mulhilo32(0xD2511F53u, c0, &hi0);
    const uint32_t lo1 = mulhilo32(0xCD9E8D57u, c2, &hi1);
    const uint32_t n0 = hi1 ^ c1 ^ k0;
    const uint32_t n2 = hi0 ^ c3 ^ k1;
    c0 = n0;
    c1 = lo1;
    c2 = n2;
    c3 = lo0;
    k0 += 0x9E3779B9u;
    k1 += 0xBB67AE85u;
  }
  Philox4 out;
  out.v[0] = c0;
  out.v[1] = c1;
  out.v[2] = c2;
  out.v[3] = c3;
  return out;
}

// Multipliers (1 + u_c), u_c ~ U[-noise, noise), for the `count` coefficients of element `index`.
template <typename T>
TR_HOST_DEVICE void noise_multipliers(uint64_t seed, uint64_t index, int count, T noise, T* out) {
  const uint32_t k0 = static_cast<uint32_t>(seed);
  const uint32_t k1 = static_cast<uint32_t>(seed >> 32);
  const uint32_t i0 = static_cast<uint32_t>(index);
  const uint32_t i1 = static_cast<uint32_t>(index >> 32);
  for (int base = 0; base < count; base += 4) {
    const Philox4 r = philox4x32_10(i0, i1, static_cast<uint32_t>(base / 4), 0u, k0, k1);
    for (int l = 0; l < 4 && base + l < count; ++l) {
      const T u01 = T(r.v[l] >> 8) * T(1.0 / 16777216.0);
      out[base + l] = T(1) + noise * (T(2) * u01 - T(1));
    }
  }
}

}  // namespace kernels
}  // namespace torch_rational
