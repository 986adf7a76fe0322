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

#if defined(__CUDACC__) || defined(__HIPCC__)
#define TR_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define TR_HOST_DEVICE inline
#endif

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
TR_HOST_DEVICE void eval_basis(Basis basis, T x, int D, bool scaled, BasisValues<T>& bv) {
  if (scaled) {
    // Power basis only, |x| > 1: t_j = sign(x)^j |z|^(D-j) with z = 1/x; everything (P, Q and
    // their derivatives) is the true value times |z|^D, which cancels in y = P/Q.
    const T az = T(1) / (x < T(0) ? -x : x);
    const T s = x < T(0) ? T(-1) : T(1);
    T pw[kMaxDegree + 1];
    pw[0] = T(1);
    for (int i = 1; i <= D; ++i) pw[i] = pw[i - 1] * az;
    T sj = T(1);
    for (int j = 0; j <= D; ++j) {
      bv.f[j] = sj * pw[D - j];
      sj *= s;
    }
    bv.df[0] = T(0);
    for (int j = 1; j <= D; ++j) bv.df[j] = T(j) * bv.f[j - 1];
    bv.one = pw[D];
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

// Forward value (and optionally all derivatives) of one element, runtime degrees.
// a: m+1 numerator coefs; b: nb denominator coefs (dense, see first_den_power).
// If da/db are non-null they receive dy/da_j and dy/db_i (not multiplied by the upstream grad).
template <typename T>
TR_HOST_DEVICE ElementOut<T> rational_element(
    T x, const T* a, int m, const T* b, int nb, Version v, Basis basis, bool scaled, T* da, T* db) {
  const int k0 = first_den_power(v);
  const int n_top = nb - 1 + k0;  // highest denominator power
  const int D = m > n_top ? m : n_top;
  BasisValues<T> bv;
  eval_basis<T>(basis, x, D, scaled, bv);
  T P = T(0), dP = T(0);
  for (int j = 0; j <= m; ++j) {
    P += a[j] * bv.f[j];
    dP += a[j] * bv.df[j];
  }
  T Q, dQ;
  T sgnS = T(0);
  if (v == Version::A) {
    Q = bv.one;
    dQ = T(0);
    for (int i = 0; i < nb; ++i) {
      const int k = i + k0;
      const T ab = b[i] < T(0) ? -b[i] : b[i];
      const T fk = bv.f[k];
      Q += ab * (fk < T(0) ? -fk : fk);
      dQ += ab * sign_of(fk) * bv.df[k];
    }
  } else {
    T S = T(0), dS = T(0);
    for (int i = 0; i < nb; ++i) {
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
      db[i] = -yrQ * dQdb;
    }
  }
  return out;
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
