// CUDA kernels of the rational op (forward and fused backward). No ATen: the glue in
// csrc/ops/cuda/rational_kernel.cu validates, picks the layout and fills RationalCudaParams.
//
// Layout. Any dense tensor whose group is constant on runs of `span` consecutive memory elements,
// the runs cycling through the groups: memory = [outer][groups][span] (for NCHW with per-channel
// groups: outer = N, span = H*W; for G = 1: outer = 1, span = numel). Block (bx, g) of the
// (blocks_per_group, groups) grid only ever touches group g, so its coefficients live in
// registers and its coefficient-gradient partial belongs to one group.
//
// Vectorisation. Each run is split into span / VEC vectors of 16 bytes (4 floats, 8 halves, 2
// doubles) plus a scalar tail of span % VEC elements per run. When a run start is not 16-byte
// aligned (span % VEC != 0 with more than one run, or a misaligned pointer) the glue sets
// vectorised = false and everything goes through the scalar loop. Per-channel groups with the
// channel innermost (span == 1: channels_last, [batch, features]) take the rows kernels instead
// (coalesced rows, see below); plan_rational_launch picks the path and the launch shape.
//
// Degrees. (m, n) in {(5,4), (4,4), (3,2), (7,6)} are template parameters (coefficients and
// gradient accumulators in registers, loops fully unrolled; Horner for the power basis in the
// forward); RPAU noise at these degrees takes the RPAU kernels (the same, with per-element
// multiplied coefficients); any other degree takes the generic path (runtime degree, shared
// memory coefficients, kernels/rational_math.h rational_element per element).
//
// Backward reduction (deterministic, no atomics): per-thread register accumulators -> warp
// shuffle -> one partial per block in partials[g][blockIdx.x][K] -> a second kernel sums the
// blocks of each (g, coefficient) in increasing order. The result depends only on the launch
// shape, which depends only on the tensor shape and the device: bitwise identical run to run.
#pragma once

#include <cuda_runtime.h>

#include <cfloat>
#include <cstdint>

#include "cuda_utils.cuh"
#include "rational_math.h"

namespace torch_rational {
namespace kernels {
namespace cuda {

constexpr int kRationalThreads = 256;
constexpr int kRationalWarps = kRationalThreads / kWarpSize;
constexpr int kMaxCoefs = 2 * kMaxDegree + 2;  // numerator + denominator (version C) coefficients

// The launch fields (x, grad_y, out, layout, plan incl. rows, partials [groups][blocks][m + 1 + nb],
// param_grad [groups][m + 1 + nb]) are the skeleton's (ElementwiseParams, cuda_utils.cuh).
template <typename T>
struct RationalCudaParams : ElementwiseParams<T> {
  using acc_t = typename OpMath<T>::type;
  const acc_t* a = nullptr;  // [groups][m + 1]
  const acc_t* b = nullptr;  // [groups][nb], dense (index i is power i + first_den_power)
  int m = 0;
  int nb = 0;
  Version version = Version::A;
  Basis basis = Basis::Power;
  acc_t threshold = acc_t(INFINITY);  // power basis: |x| above this takes rational_element_large
  acc_t noise = acc_t(0);             // > 0: RPAU (generic path, contiguous layout)
  uint64_t seed = 0;
};

// ------------------------------------------------------------------------------------------------
// Element evaluation, fixed degrees (host and device, so tests/cuda/rational_host_test.cu can
// check them against rational_element on a machine without a GPU). Denominator coefficients are held by power: bp[k] for
// k = 0..N, with bp[k] = 0 for powers the version does not have (b_0 for A, B, N). A zero
// coefficient adds nothing to Q, dQ or y, so one loop serves all four versions.

template <int M, int N, bool kPower, typename Acc>
TR_HOST_DEVICE void basis_fixed(Acc x, Basis basis, Acc (&f)[(M > N ? M : N) + 1],
                                            Acc (&df)[(M > N ? M : N) + 1]) {
  constexpr int D = M > N ? M : N;
  f[0] = Acc(1);
  df[0] = Acc(0);
  if (kPower) {
#pragma unroll
    for (int k = 0; k < D; ++k) {
      f[k + 1] = f[k] * x;
      df[k + 1] = df[k] * x + f[k];
    }
  } else {
    Acc fprev = Acc(0), dprev = Acc(0);
#pragma unroll
    for (int k = 0; k < D; ++k) {
      Acc al, be, ga;
      basis_recurrence<Acc>(basis, k, al, be, ga);
      const Acc lin = al * x + be;
      f[k + 1] = lin * f[k] - ga * fprev;
      df[k + 1] = al * f[k] + lin * df[k] - ga * dprev;
      fprev = f[k];
      dprev = df[k];
    }
  }
}

// y only (forward). Horner for the power basis: no basis arrays at all.
template <int M, int N, bool kPower, typename Acc>
TR_HOST_DEVICE Acc forward_fixed(Acc x, const Acc (&a)[M + 1], const Acc (&bp)[N + 1], Version v,
                                             Basis basis) {
  Acc P, Q;
  if (kPower) {
    P = a[M];
#pragma unroll
    for (int j = M - 1; j >= 0; --j) P = P * x + a[j];
    if (v == Version::A) {
      const Acc ax = fabs(x);
      Acc s = fabs(bp[N]);
#pragma unroll
      for (int k = N - 1; k >= 1; --k) s = s * ax + fabs(bp[k]);
      Q = Acc(1) + s * ax;
    } else {
      Acc S = bp[N];
#pragma unroll
      for (int k = N - 1; k >= 0; --k) S = S * x + bp[k];  // bp[0] = 0 unless version C
      Q = v == Version::N ? Acc(1) + S : den_constant<Acc>(v) + fabs(S);
    }
  } else {
    constexpr int D = M > N ? M : N;
    Acc f[D + 1], df[D + 1];
    basis_fixed<M, N, kPower, Acc>(x, basis, f, df);
    P = Acc(0);
#pragma unroll
    for (int j = 0; j <= M; ++j) P += a[j] * f[j];
    if (v == Version::A) {
      Q = Acc(1);
#pragma unroll
      for (int k = 0; k <= N; ++k) Q += fabs(bp[k]) * fabs(f[k]);
    } else {
      Acc S = Acc(0);
#pragma unroll
      for (int k = 0; k <= N; ++k) S += bp[k] * f[k];
      Q = v == Version::N ? Acc(1) + S : den_constant<Acc>(v) + fabs(S);
    }
  }
  return P / Q;
}

// dy/dx * g, and (when acc is non-null in spirit: kCoefs) g * dy/dcoef added to acc:
// acc[0..M] numerator, acc[M+1+k] denominator power k.
template <int M, int N, bool kPower, typename Acc>
TR_HOST_DEVICE Acc backward_fixed(Acc x, Acc g, const Acc (&a)[M + 1], const Acc (&bp)[N + 1],
                                              Version v, Basis basis, bool coefs, Acc (&acc)[M + N + 2]) {
  constexpr int D = M > N ? M : N;
  Acc f[D + 1], df[D + 1];
  basis_fixed<M, N, kPower, Acc>(x, basis, f, df);
  Acc P = Acc(0), dP = Acc(0);
#pragma unroll
  for (int j = 0; j <= M; ++j) {
    P += a[j] * f[j];
    dP += a[j] * df[j];
  }
  Acc Q, dQ, sgnS = Acc(0);
  if (v == Version::A) {
    Q = Acc(1);
    dQ = Acc(0);
#pragma unroll
    for (int k = 0; k <= N; ++k) {
      const Acc ab = fabs(bp[k]);
      Q += ab * fabs(f[k]);
      dQ += ab * sign_of(f[k]) * df[k];
    }
  } else {
    Acc S = Acc(0), dS = Acc(0);
#pragma unroll
    for (int k = 0; k <= N; ++k) {
      S += bp[k] * f[k];
      dS += bp[k] * df[k];
    }
    if (v == Version::N) {
      Q = Acc(1) + S;
      dQ = dS;
    } else {
      sgnS = sign_of(S);
      Q = den_constant<Acc>(v) + fabs(S);
      dQ = sgnS * dS;
    }
  }
  const Acc rQ = Acc(1) / Q;
  const Acc y = P * rQ;
  if (coefs) {
    const Acc gq = g * rQ;
#pragma unroll
    for (int j = 0; j <= M; ++j) acc[j] += gq * f[j];
    const Acc gyq = -gq * y;
#pragma unroll
    for (int k = 0; k <= N; ++k) {
      const Acc dQdb =
          v == Version::A ? sign_of(bp[k]) * fabs(f[k]) : (v == Version::N ? f[k] : sgnS * f[k]);
      acc[M + 1 + k] += gyq * dQdb;
    }
  }
  return g * (dP - y * dQ) * rQ;
}

// The rare large-|x| path of the power basis (|x| above the element math type's overflow
// threshold), as the CPU kernels do it: evaluated in double, with the scaled (1/x) form only
// where even double would overflow. A float scaled form is not enough: its |1/x|^D factors
// underflow for very large |x| (|x| = 1e30 at degree (5,4)), which silently loses the
// denominator's share of dy/dx (found by tests/cuda_emu). Out of line on purpose: its
// kMaxDegree-sized arrays would otherwise live in the stack frame of the hot loops.
// kGrads: whether da / db are wanted. Two instantiations, because an out-of-line function's
// registers count towards every kernel that calls it: the forward kernels call the one without the
// coefficient-gradient code (and its share of the x = +-inf limits), and keep their budget.
template <typename Acc, bool kGrads>
__device__ __noinline__ ElementOut<Acc> rational_element_large_impl(Acc x, const Acc* a, int m, const Acc* b, int nb,
                                                                    Version v, Acc* da, Acc* db) {
  double a64[kMaxDegree + 1], b64[kMaxDegree + 1], da64[kMaxDegree + 1], db64[kMaxDegree + 1];
  for (int j = 0; j <= m; ++j) a64[j] = static_cast<double>(a[j]);
  for (int i = 0; i < nb; ++i) b64[i] = static_cast<double>(b[i]);
  const int n_top = nb - 1 + first_den_power(v);
  const double x64 = static_cast<double>(x);
  const bool scaled = fabs(x64) > overflow_threshold<double>(m > n_top ? m : n_top, DBL_MAX);
  const ElementOut<double> r = rational_element<double>(x64, a64, m, b64, nb, v, Basis::Power, scaled,
                                                        kGrads ? da64 : nullptr, kGrads ? db64 : nullptr);
  if (kGrads) {
    for (int j = 0; j <= m; ++j) da[j] = static_cast<Acc>(da64[j]);
    for (int i = 0; i < nb; ++i) db[i] = static_cast<Acc>(db64[i]);
  }
  ElementOut<Acc> out;
  out.y = static_cast<Acc>(r.y);
  out.dydx = static_cast<Acc>(r.dydx);
  return out;
}

template <typename Acc>
__device__ __forceinline__ ElementOut<Acc> rational_element_large(Acc x, const Acc* a, int m, const Acc* b, int nb,
                                                                  Version v, Acc* da, Acc* db) {
  if (da != nullptr) return rational_element_large_impl<Acc, true>(x, a, m, b, nb, v, da, db);
  return rational_element_large_impl<Acc, false>(x, a, m, b, nb, v, nullptr, nullptr);
}

// ------------------------------------------------------------------------------------------------
// The large-|x| path of the fixed-degree, RPAU and rows kernels: a second pass, out of the hot loop.
//
// Why. The call to rational_element_large used to sit inside the hot element loops. Under the call
// ABI everything live across it (the group's coefficients, the other lanes of the vector, the
// gradient accumulators) had to sit in callee-saved registers or be spilled: ptxas (nvcc 13.0,
// sm_90) settled on 48-80 registers and spilled up to 60 bytes in 30 kernels, in their hot loops.
// Neither one copy of the function per kernel nor inlining it removed the spills. Now:
//   - Pass 1 (the hot loop) makes no call. An element with |x| > p.threshold only sets the
//     thread's flag. The flag is a byte in shared memory (large_s), not a register: a predicated
//     store on the rare path, nothing held across the loop (a register flag cost the (7,6) float64
//     backward 40 registers more). The forward writes a don't-care value there, which pass 2
//     overwrites. The backward evaluates that element as x = 0, g = 0: an exact zero for every
//     accumulator, and finite (no NaN from 0 * inf). The backward then writes the block partials
//     of its groups as before.
//   - Pass 2 runs after pass 1 of all the block's groups, so that nothing of pass 1 is live across
//     its calls. It runs only when this thread saw a large element or, in a backward with
//     coefficient gradients, when any thread of the block did (block_any), so that the barriers
//     of its block reduction stay uniform. It walks the same elements again (scalar loads, one
//     call site) and evaluates the large ones with rational_large_element. It writes their output:
//     the same thread wrote that element in pass 1, so there is no race. The backward accumulates
//     their coefficient gradients in acc2 (local memory: stack frame, not spills, touched only on
//     this path), sums acc2 over the block in the same fixed order as pass 1, and the thread that
//     wrote each partial adds that sum to it. Every partial is a fixed-order sum: bitwise
//     reproducible.
//   - The kernels are declared with TR_BLOCK_SIZE, not a bare __launch_bounds__(256) (see
//     cuda_utils.cuh): with it, ptxas still spilled in the rare path (and around its call).
// Result (scripts/check_registers.py): no spills in any fixed-degree, rows or RPAU kernel.

// One large-|x| element of pass 2. a: the M + 1 numerator coefficients, b: the nb dense
// denominator coefficients of its group (global memory, as the glue passes them). noise > 0
// (RPAU): times the element's noise multipliers, drawn from (seed, index) as pass 1 draws them.
// grad false (forward): returns y. grad true: returns g * dy/dx and, when acc is not null, adds
// g * dy/dcoef to acc by power as backward_fixed does (numerator j at acc[j], denominator power k
// at acc[M + 1 + k]); under noise times the coefficient's multiplier (d/da of a (1 + u) is 1 + u).
template <int M, int N, typename Acc>
__device__ __forceinline__ Acc rational_large_element(Acc x, Acc g, const Acc* a, const Acc* b, int nb, Version v,
                                                   Acc noise, uint64_t seed, uint64_t index, bool grad, Acc* acc) {
  constexpr int KF = M + N + 2;
  const int k0 = first_den_power(v);
  const bool noisy = noise > Acc(0);
  Acc mult[KF], an[M + 1], bn[N + 1], da[M + 1], db[N + 1];
  if (noisy) {
    noise_multipliers<Acc>(seed, index, KF, noise, mult);
  } else {
    for (int k = 0; k < KF; ++k) mult[k] = Acc(1);
  }
  for (int j = 0; j <= M; ++j) an[j] = a[j] * mult[j];
  for (int i = 0; i < nb; ++i) bn[i] = b[i] * mult[M + 1 + i];
  const bool coefs = grad && acc != nullptr;
  const ElementOut<Acc> r =
      rational_element_large<Acc>(x, an, M, bn, nb, v, coefs ? da : nullptr, coefs ? db : nullptr);
  if (!grad) return r.y;
  if (coefs) {
    if (noisy) {
      for (int j = 0; j <= M; ++j) acc[j] += (g * da[j]) * mult[j];
      for (int i = 0; i < nb; ++i) acc[M + 1 + k0 + i] += (g * db[i]) * mult[M + 1 + i];
    } else {
      for (int j = 0; j <= M; ++j) acc[j] += g * da[j];
      for (int i = 0; i < nb; ++i) acc[M + 1 + k0 + i] += g * db[i];
    }
  }
  return g * r.dydx;
}

// ------------------------------------------------------------------------------------------------
// Pass 2 of the grouped kernels: large(x, i) for every element i of group g that this thread
// owns (the elements of pass 1) with |x| > p.threshold; scalar loads, no unrolling (rare path).
template <int VEC, typename T, typename Large>
__device__ __forceinline__ void for_large_group_elements(const RationalCudaParams<T>& p, int64_t g, Large&& large) {
  auto one = [&](int64_t i) {
    const typename OpMath<T>::type x = to_opmath(p.x[i]);
    if (fabs(x) > p.threshold) large(x, i);
  };
  for_group_elements<VEC>(
      p, g,
      [&](int64_t iv) {
#pragma unroll 1
        for (int l = 0; l < VEC; ++l) one(iv * VEC + l);
      },
      one);
}

// ------------------------------------------------------------------------------------------------
// Fixed-degree kernels.

template <int M, int N, typename T>
__device__ __forceinline__ void load_group_coefs(const RationalCudaParams<T>& p, int64_t g,
                                                 typename OpMath<T>::type (&a)[M + 1],
                                                 typename OpMath<T>::type (&bp)[N + 1]) {
  using acc_t = typename OpMath<T>::type;
  const int k0 = first_den_power(p.version);
#pragma unroll
  for (int j = 0; j <= M; ++j) a[j] = p.a[g * (M + 1) + j];
#pragma unroll
  for (int k = 0; k <= N; ++k) bp[k] = k >= k0 ? p.b[g * p.nb + (k - k0)] : acc_t(0);
}

// Block sum of the per-power accumulators acc[0 .. M+N+1] of the fixed-degree backward kernels,
// written as this block's partial of group g: accumulator t -> coefficient column (numerator
// j = t; denominator power k -> M + 1 + k - first_den_power). Every thread of the block must call
// it (block_reduce_sum_many has barriers); smem holds kRationalWarps * (M + N + 2) values.
// add: adds the block sums to the partial instead (pass 2; the same thread wrote it).
template <int M, int N, typename T>
__device__ __forceinline__ void write_fixed_partials(const RationalCudaParams<T>& p, int64_t g,
                                                     typename OpMath<T>::type (&acc)[M + N + 2],
                                                     typename OpMath<T>::type* smem, bool add = false) {
  using acc_t = typename OpMath<T>::type;
  constexpr int KF = M + N + 2;
  const int k0 = first_den_power(p.version);
  const int K = M + 1 + p.nb;
  const acc_t total = block_reduce_sum_many<KF>(acc, smem);
  const int t = threadIdx.x;
  if (t < KF) {
    const int col = t <= M ? t : (t - (M + 1) >= k0 ? M + 1 + (t - (M + 1) - k0) : -1);
    if (col >= 0) {
      acc_t& partial = block_partial(p, g, K)[col];
      partial = add ? partial + total : total;
    }
  }
}

// Pass 2 of the grouped forward kernels (fixed and RPAU), after pass 1 of all the block's groups,
// by a thread that saw a large element: its large elements' y.
template <int M, int N, typename T>
__device__ __forceinline__ void forward_large_pass(const RationalCudaParams<T>& p, typename OpMath<T>::type noise) {
  using acc_t = typename OpMath<T>::type;
  for (int64_t g = blockIdx.y; g < p.groups; g += gridDim.y) {
    const acc_t* ga = p.a + g * (M + 1);
    const acc_t* gb = p.b + g * p.nb;
    for_large_group_elements<VecSize<T>::value>(p, g, [&](acc_t x, int64_t i) {
      p.out[i] = from_opmath<T>(rational_large_element<M, N, acc_t>(
          x, acc_t(0), ga, gb, p.nb, p.version, noise, p.seed, static_cast<uint64_t>(i), /*grad=*/false, nullptr));
    });
  }
}

// Pass 2 of the grouped backward kernels, after pass 1 of all the block's groups (whose partials
// are written): the large elements' grad_x, and their coefficient gradients summed over the block
// and added to the partial of each group. large: this thread saw a large element. With
// coefficient gradients every thread of the block calls it (barriers), when any thread saw one.
template <int M, int N, typename T>
__device__ __forceinline__ void backward_large_pass(const RationalCudaParams<T>& p, typename OpMath<T>::type noise,
                                                 bool large, typename OpMath<T>::type* smem) {
  using acc_t = typename OpMath<T>::type;
  constexpr int KF = M + N + 2;
  const bool coefs = p.partials != nullptr;
  for (int64_t g = blockIdx.y; g < p.groups; g += gridDim.y) {
    acc_t acc2[KF];  // local memory: rational_large_element adds to it through a pointer
#pragma unroll
    for (int k = 0; k < KF; ++k) acc2[k] = acc_t(0);
    if (large) {
      const acc_t* ga = p.a + g * (M + 1);
      const acc_t* gb = p.b + g * p.nb;
      for_large_group_elements<VecSize<T>::value>(p, g, [&](acc_t x, int64_t i) {
        const acc_t gx = rational_large_element<M, N, acc_t>(x, to_opmath(p.grad_y[i]), ga, gb, p.nb,
                                                                      p.version, noise, p.seed,
                                                                      static_cast<uint64_t>(i), /*grad=*/true,
                                                                      coefs ? acc2 : nullptr);
        if (p.out != nullptr) p.out[i] = from_opmath<T>(gx);
      });
    }
    if (coefs) write_fixed_partials<M, N>(p, g, acc2, smem, /*add=*/true);
  }
}

template <int M, int N, bool kPower, typename T>
__global__ void TR_BLOCK_SIZE(kRationalThreads)
    rational_forward_fixed_kernel(const RationalCudaParams<T> p) {
  using acc_t = typename OpMath<T>::type;
  __shared__ bool large_s[kRationalThreads];  // pass 1's per-thread flag (see rational_large_element)
  volatile bool& large = large_s[threadIdx.x];
  if (kPower) large = false;
  for (int64_t g = blockIdx.y; g < p.groups; g += gridDim.y) {
    acc_t a[M + 1], bp[N + 1];
    load_group_coefs<M, N, T>(p, g, a, bp);
    auto element = [&](acc_t x, int64_t) -> acc_t {
      if (kPower && fabs(x) > p.threshold) large = true;  // rare: x^(D+2) would overflow acc_t
      return forward_fixed<M, N, kPower, acc_t>(x, a, bp, p.version, p.basis);
    };
    map_group_forward(p, g, element);
  }
  if (kPower && large) forward_large_pass<M, N>(p, acc_t(0));
}

template <int M, int N, bool kPower, typename T>
__global__ void TR_BLOCK_SIZE(kRationalThreads)
    rational_backward_fixed_kernel(const RationalCudaParams<T> p) {
  using acc_t = typename OpMath<T>::type;
  constexpr int KF = M + N + 2;  // accumulators by power (denominator power 0 included)
  __shared__ acc_t smem[kRationalWarps * KF];
  __shared__ int flags[kRationalWarps];
  const bool coefs = p.partials != nullptr;
  __shared__ bool large_s[kRationalThreads];  // pass 1's per-thread flag (see rational_large_element)
  volatile bool& large = large_s[threadIdx.x];
  if (kPower) large = false;
  for (int64_t g = blockIdx.y; g < p.groups; g += gridDim.y) {
    acc_t a[M + 1], bp[N + 1];
    load_group_coefs<M, N, T>(p, g, a, bp);
    acc_t acc[KF];
#pragma unroll
    for (int k = 0; k < KF; ++k) acc[k] = acc_t(0);
    auto element = [&](acc_t x, acc_t gy, int64_t) -> acc_t {
      if (kPower && fabs(x) > p.threshold) {  // rare: x^(D+2) would overflow acc_t
        large = true;
        x = acc_t(0);  // adds exactly nothing; grad_x is written again by pass 2
        gy = acc_t(0);
      }
      return backward_fixed<M, N, kPower, acc_t>(x, gy, a, bp, p.version, p.basis, coefs, acc);
    };
    map_group_backward(p, g, p.out != nullptr, element);
    if (coefs) write_fixed_partials<M, N>(p, g, acc, smem);  // uniform over the grid
  }
  // coefs is uniform over the grid, so every thread reaches block_any and pass 2's reductions.
  const bool any_large = kPower && large;  // large_s is left unset without kPower
  if (kPower && (coefs ? block_any(any_large, flags) : any_large))
    backward_large_pass<M, N>(p, acc_t(0), any_large, smem);
}

// ------------------------------------------------------------------------------------------------
// RPAU kernels for the fixed degrees (power basis): the fixed-degree evaluation with every
// element's coefficients multiplied by its own noise, (1 + u), u ~ U[-noise, noise) drawn by
// Philox from (seed, row-major index) exactly as the CPU kernels and the generic kernel draw them
// (noise_multipliers; the glue makes x contiguous, so the memory offset is the row-major index).
// Everything stays in registers, unlike the generic kernel's local-memory arrays.

// mult[0 .. M+N+1]: multipliers by coefficient column (numerator j, then dense denominator i),
// as noise_multipliers lays them out; an / bn: the element's coefficients, bn by power.
template <int M, int N, typename Acc>
__device__ __forceinline__ void noisy_coefs(uint64_t seed, uint64_t index,
                                            Acc noise, int k0, const Acc (&a)[M + 1], const Acc (&bp)[N + 1],
                                            Acc (&mult)[M + N + 2], Acc (&an)[M + 1], Acc (&bn)[N + 1]) {
  noise_multipliers<Acc>(seed, index, M + N + 2, noise, mult);
#pragma unroll
  for (int j = 0; j <= M; ++j) an[j] = a[j] * mult[j];
#pragma unroll
  for (int k = 0; k <= N; ++k) bn[k] = k >= k0 ? bp[k] * mult[M + 1 + k - k0] : Acc(0);
}

template <int M, int N, typename T>
__global__ void TR_BLOCK_SIZE(kRationalThreads) rational_forward_rpau_kernel(const RationalCudaParams<T> p) {
  using acc_t = typename OpMath<T>::type;
  const int k0 = first_den_power(p.version);
  __shared__ bool large_s[kRationalThreads];  // pass 1's per-thread flag (see rational_large_element)
  volatile bool& large = large_s[threadIdx.x];
  large = false;
  for (int64_t g = blockIdx.y; g < p.groups; g += gridDim.y) {
    acc_t a[M + 1], bp[N + 1];
    load_group_coefs<M, N, T>(p, g, a, bp);
    auto element = [&](acc_t x, int64_t index) -> acc_t {
      acc_t mult[M + N + 2], an[M + 1], bn[N + 1];
      noisy_coefs<M, N, acc_t>(p.seed, static_cast<uint64_t>(index), p.noise, k0, a, bp, mult, an, bn);
      if (fabs(x) > p.threshold) large = true;  // rare: x^(D+2) would overflow acc_t
      return forward_fixed<M, N, true, acc_t>(x, an, bn, p.version, Basis::Power);
    };
    map_group_forward(p, g, element);
  }
  if (large) forward_large_pass<M, N>(p, p.noise);
}

template <int M, int N, typename T>
__global__ void TR_BLOCK_SIZE(kRationalThreads) rational_backward_rpau_kernel(const RationalCudaParams<T> p) {
  using acc_t = typename OpMath<T>::type;
  constexpr int KF = M + N + 2;
  __shared__ acc_t smem[kRationalWarps * KF];
  __shared__ int flags[kRationalWarps];
  const bool coefs = p.partials != nullptr;
  const int k0 = first_den_power(p.version);
  __shared__ bool large_s[kRationalThreads];  // pass 1's per-thread flag (see rational_large_element)
  volatile bool& large = large_s[threadIdx.x];
  large = false;
  for (int64_t g = blockIdx.y; g < p.groups; g += gridDim.y) {
    acc_t a[M + 1], bp[N + 1];
    load_group_coefs<M, N, T>(p, g, a, bp);
    acc_t acc[KF];
#pragma unroll
    for (int k = 0; k < KF; ++k) acc[k] = acc_t(0);
    auto element = [&](acc_t x, acc_t gy, int64_t index) -> acc_t {
      if (fabs(x) > p.threshold) {  // rare: x^(D+2) would overflow acc_t
        large = true;
        x = acc_t(0);  // adds exactly nothing; grad_x is written again by pass 2
        gy = acc_t(0);
      }
      acc_t mult[KF], an[M + 1], bn[N + 1];
      noisy_coefs<M, N, acc_t>(p.seed, static_cast<uint64_t>(index), p.noise, k0, a, bp, mult, an, bn);
      // d/da_j of a_j (1 + u_j) is (1 + u_j): the element's gradients are scaled by its multipliers.
      acc_t local[KF];
#pragma unroll
      for (int k = 0; k < KF; ++k) local[k] = acc_t(0);
      const acc_t gx = backward_fixed<M, N, true, acc_t>(x, gy, an, bn, p.version, Basis::Power, coefs, local);
      if (coefs) {
#pragma unroll
        for (int j = 0; j <= M; ++j) acc[j] += local[j] * mult[j];
#pragma unroll
        for (int k = 0; k <= N; ++k)
          if (k >= k0) acc[M + 1 + k] += local[M + 1 + k] * mult[M + 1 + k - k0];
      }
      return gx;
    };
    map_group_backward(p, g, p.out != nullptr, element);
    if (coefs) write_fixed_partials<M, N>(p, g, acc, smem);  // uniform over the grid
  }
  // coefs is uniform over the grid, so every thread reaches block_any and pass 2's reductions.
  const bool any_large = large;
  if (coefs ? block_any(any_large, flags) : any_large) backward_large_pass<M, N>(p, p.noise, any_large, smem);
}

// ------------------------------------------------------------------------------------------------
// Rows kernels: per-channel groups with the channel innermost (span == 1: channels_last NCHW, or
// [batch, features] after a Linear), in the rows layout of cuda_utils.cuh (plan_rows_launch,
// for_each_row, rows_column_sums): each thread owns RowLanes<T, kBackward> adjacent columns, their
// coefficients and accumulators in registers. Only the fixed degrees without noise take this path.
// Backward columns: with the forward's 4 float columns ptxas (nvcc 13.0, sm_90) gave the backward
// 139-169 registers at (5,4) and up to 255 at (7,6), one 256-thread block per SM, and capping that
// at 128 spilled up to 424 bytes at (7,6). With half the columns every fixed degree, basis and
// dtype fits kRowsBackwardMinBlocks blocks per SM without spills (scripts/check_registers.py), and
// a warp still reads 256 contiguous bytes of a row (128 for half and bfloat16).

// Resident blocks per SM the rows backward is compiled for (__launch_bounds__: at most
// 65536 / (2 * 256) = 128 registers per thread).
constexpr int kRowsBackwardMinBlocks = 2;

// The rows kernels' pass 2 (see rational_large_element): this thread's large elements, walking
// its rows and columns again.
template <int M, int N, typename T>
__device__ __forceinline__ void rows_forward_large_pass(const RationalCudaParams<T>& p) {
  using acc_t = typename OpMath<T>::type;
  constexpr int L = RowLanes<T, false>::value;
  const int64_t g0 = rows_first_column(L);
  for_each_row(p.outer, [&](int64_t r) {
#pragma unroll 1
    for (int l = 0; l < L; ++l) {
      const int64_t i = r * p.groups + g0 + l;
      const acc_t x = to_opmath(p.x[i]);
      if (fabs(x) > p.threshold)
        p.out[i] = from_opmath<T>(rational_large_element<M, N, acc_t>(x, acc_t(0), p.a + (g0 + l) * (M + 1),
                                                                      p.b + (g0 + l) * p.nb, p.nb, p.version,
                                                                      acc_t(0), 0, 0, /*grad=*/false, nullptr));
    }
  });
}

template <int M, int N, bool kPower, typename T>
__global__ void TR_BLOCK_SIZE(kRowsThreads)
    rational_forward_rows_kernel(const RationalCudaParams<T> p) {
  using acc_t = typename OpMath<T>::type;
  constexpr int L = RowLanes<T, false>::value;
  __shared__ bool large_s[kRowsThreads];  // pass 1's per-thread flag (see rational_large_element)
  const int64_t g0 = rows_first_column(L);
  if (g0 >= p.groups) return;  // no barrier in this kernel
  volatile bool& large = large_s[threadIdx.y * kRowsThreadsX + threadIdx.x];
  if (kPower) large = false;
  acc_t a[L][M + 1], bp[L][N + 1];
#pragma unroll
  for (int l = 0; l < L; ++l) load_group_coefs<M, N, T>(p, g0 + l, a[l], bp[l]);
  map_rows_forward<L>(p, g0, [&](int l, acc_t x) {
    if (kPower && fabs(x) > p.threshold) large = true;  // rare: x^(D+2) would overflow acc_t
    return forward_fixed<M, N, kPower, acc_t>(x, a[l], bp[l], p.version, p.basis);
  });
  if (kPower && large) rows_forward_large_pass<M, N>(p);
}

// Column sums of the rows backward (rows_column_sums, cuda_utils.cuh): accumulator t of the
// block's 8 row-threads of a column, written (add: added) as the partial of group g0 + l and row
// block blockIdx.x. Every thread of the block calls it (barriers); active: this thread's columns
// exist.
template <int M, int N, typename T>
__device__ __forceinline__ void rows_write_partials(
    const RationalCudaParams<T>& p, const typename OpMath<T>::type (&v)[RowLanes<T, true>::value][M + N + 2],
    RowsRed<typename OpMath<T>::type, RowLanes<T, true>::value>* red, bool active, bool add) {
  using acc_t = typename OpMath<T>::type;
  constexpr int L = RowLanes<T, true>::value;
  constexpr int KF = M + N + 2;
  const int k0 = first_den_power(p.version);
  const int K = M + 1 + p.nb;
  const int64_t g0 = rows_first_column(L);
  // Unrolled: v[l][t] with a run-time t would put the accumulators in local memory in pass 1.
#pragma unroll
  for (int t = 0; t < KF; ++t) {
    acc_t column[L];
#pragma unroll
    for (int l = 0; l < L; ++l) column[l] = v[l][t];
    // Accumulator t -> coefficient column (as in rational_backward_fixed_kernel).
    const int col = t <= M ? t : (t - (M + 1) >= k0 ? M + 1 + (t - (M + 1) - k0) : -1);
    rows_column_sums<L>(column, red, active && col >= 0, [&](int l, acc_t sum) {
      acc_t& partial = block_partial(p, g0 + l, K)[col];
      partial = add ? partial + sum : sum;
    });
  }
}

// The rows backward's pass 2 (see rational_large_element and backward_large_pass): with
// coefficient gradients every thread of the block calls it (barriers), when any thread saw a
// large element; large: this thread did (only active threads can).
template <int M, int N, typename T>
__device__ __forceinline__ void rows_backward_large_pass(const RationalCudaParams<T>& p, bool large,
                                                         RowsRed<typename OpMath<T>::type, RowLanes<T, true>::value>* red) {
  using acc_t = typename OpMath<T>::type;
  constexpr int L = RowLanes<T, true>::value;
  constexpr int KF = M + N + 2;
  const bool coefs = p.partials != nullptr;
  const int64_t g0 = rows_first_column(L);
  acc_t acc2[L][KF];
#pragma unroll
  for (int l = 0; l < L; ++l)
#pragma unroll
    for (int k = 0; k < KF; ++k) acc2[l][k] = acc_t(0);
  if (large) {
    for_each_row(p.outer, [&](int64_t r) {
#pragma unroll 1
      for (int l = 0; l < L; ++l) {
        const int64_t i = r * p.groups + g0 + l;
        const acc_t x = to_opmath(p.x[i]);
        if (fabs(x) > p.threshold) {
          const acc_t gx = rational_large_element<M, N, acc_t>(
              x, to_opmath(p.grad_y[i]), p.a + (g0 + l) * (M + 1), p.b + (g0 + l) * p.nb, p.nb, p.version, acc_t(0),
              0, 0, /*grad=*/true, coefs ? acc2[l] : nullptr);
          if (p.out != nullptr) p.out[i] = from_opmath<T>(gx);
        }
      }
    });
  }
  if (coefs) rows_write_partials<M, N, T>(p, acc2, red, g0 < p.groups, /*add=*/true);
}

template <int M, int N, bool kPower, typename T>
__global__ void __launch_bounds__(kRowsThreads, kRowsBackwardMinBlocks)
    rational_backward_rows_kernel(const RationalCudaParams<T> p) {
  using acc_t = typename OpMath<T>::type;
  constexpr int L = RowLanes<T, true>::value;
  constexpr int KF = M + N + 2;  // accumulators by power, as in rational_backward_fixed_kernel
  __shared__ acc_t red[kRowsThreadsY][kRowsThreadsX * L];
  __shared__ int flags[kRowsThreadsY];  // block_any: one per warp
  __shared__ bool large_s[kRowsThreads];  // pass 1's per-thread flag (see rational_large_element)
  volatile bool& large = large_s[threadIdx.y * kRowsThreadsX + threadIdx.x];
  if (kPower) large = false;
  const bool coefs = p.partials != nullptr;
  const int64_t g0 = rows_first_column(L);
  const bool active = g0 < p.groups;  // inactive threads still take part in the barriers below
  acc_t acc[L][KF];
#pragma unroll
  for (int l = 0; l < L; ++l)
#pragma unroll
    for (int k = 0; k < KF; ++k) acc[l][k] = acc_t(0);
  if (active) {
    acc_t a[L][M + 1], bp[L][N + 1];
#pragma unroll
    for (int l = 0; l < L; ++l) load_group_coefs<M, N, T>(p, g0 + l, a[l], bp[l]);
    map_rows_backward<L>(p, g0, p.out != nullptr, [&](int l, acc_t x, acc_t gy) {
      if (kPower && fabs(x) > p.threshold) {  // rare: x^(D+2) would overflow acc_t
        large = true;
        x = acc_t(0);  // adds exactly nothing; grad_x is written again by pass 2
        gy = acc_t(0);
      }
      return backward_fixed<M, N, kPower, acc_t>(x, gy, a[l], bp[l], p.version, p.basis, coefs, acc[l]);
    });
  }
  // coefs is uniform over the grid: every thread (active or not) reaches the barriers.
  if (coefs) rows_write_partials<M, N, T>(p, acc, red, active, /*add=*/false);
  const bool any_large = kPower && large;  // large_s is left unset without kPower
  if (kPower && (coefs ? block_any(any_large, flags) : any_large))
    rows_backward_large_pass<M, N>(p, any_large, red);
}

// ------------------------------------------------------------------------------------------------
// Generic kernels: any degree <= kMaxDegree, any basis, RPAU noise. Coefficients of the group in
// shared memory; per-element arrays in local memory (this path trades speed for generality).

template <typename T>
__global__ void __launch_bounds__(kRationalThreads) rational_forward_generic_kernel(const RationalCudaParams<T> p) {
  using acc_t = typename OpMath<T>::type;
  __shared__ acc_t sa[kMaxDegree + 1], sb[kMaxDegree + 1];
  const int na = p.m + 1, K = na + p.nb;
  for (int64_t g = blockIdx.y; g < p.groups; g += gridDim.y) {
    __syncthreads();  // previous group's readers are done
    for (int j = threadIdx.x; j < na; j += blockDim.x) sa[j] = p.a[g * na + j];
    for (int k = threadIdx.x; k < p.nb; k += blockDim.x) sb[k] = p.b[g * p.nb + k];
    __syncthreads();
    // Rare |x| above the overflow threshold of acc_t: the double path of rational_element_large.
    auto eval = [&](acc_t x, const acc_t* a, const acc_t* b) -> acc_t {
      if (p.basis == Basis::Power && fabs(x) > p.threshold)
        return rational_element_large<acc_t>(x, a, p.m, b, p.nb, p.version, nullptr, nullptr).y;
      return rational_element<acc_t>(x, a, p.m, b, p.nb, p.version, p.basis, false, nullptr, nullptr).y;
    };
    auto element = [&](acc_t x, int64_t index) -> acc_t {
      if (p.noise > acc_t(0)) {
        acc_t mult[kMaxCoefs], a[kMaxDegree + 1], b[kMaxDegree + 1];
        noise_multipliers<acc_t>(p.seed, static_cast<uint64_t>(index), K, p.noise, mult);
        for (int j = 0; j < na; ++j) a[j] = sa[j] * mult[j];
        for (int k = 0; k < p.nb; ++k) b[k] = sb[k] * mult[na + k];
        return eval(x, a, b);
      }
      return eval(x, sa, sb);
    };
    map_group_forward(p, g, element);
  }
}

template <typename T>
__global__ void __launch_bounds__(kRationalThreads)
    rational_backward_generic_kernel(const RationalCudaParams<T> p) {
  using acc_t = typename OpMath<T>::type;
  __shared__ acc_t sa[kMaxDegree + 1], sb[kMaxDegree + 1];
  __shared__ acc_t smem[kRationalWarps * kMaxCoefs];
  const bool coefs = p.partials != nullptr;
  const int na = p.m + 1, K = na + p.nb;
  for (int64_t g = blockIdx.y; g < p.groups; g += gridDim.y) {
    __syncthreads();
    for (int j = threadIdx.x; j < na; j += blockDim.x) sa[j] = p.a[g * na + j];
    for (int k = threadIdx.x; k < p.nb; k += blockDim.x) sb[k] = p.b[g * p.nb + k];
    __syncthreads();
    acc_t acc[kMaxCoefs];
    for (int k = 0; k < K; ++k) acc[k] = acc_t(0);
    // Rare |x| above the overflow threshold of acc_t: the double path of rational_element_large.
    auto eval = [&](acc_t x, const acc_t* a, const acc_t* b, acc_t* da, acc_t* db) -> ElementOut<acc_t> {
      if (p.basis == Basis::Power && fabs(x) > p.threshold)
        return rational_element_large<acc_t>(x, a, p.m, b, p.nb, p.version, da, db);
      return rational_element<acc_t>(x, a, p.m, b, p.nb, p.version, p.basis, false, da, db);
    };
    auto element = [&](acc_t x, acc_t gy, int64_t index) -> acc_t {
      acc_t da[kMaxDegree + 1], db[kMaxDegree + 1];
      ElementOut<acc_t> r;
      if (p.noise > acc_t(0)) {
        acc_t mult[kMaxCoefs], a[kMaxDegree + 1], b[kMaxDegree + 1];
        noise_multipliers<acc_t>(p.seed, static_cast<uint64_t>(index), K, p.noise, mult);
        for (int j = 0; j < na; ++j) a[j] = sa[j] * mult[j];
        for (int k = 0; k < p.nb; ++k) b[k] = sb[k] * mult[na + k];
        r = eval(x, a, b, da, db);
        // d/da_j of a_j (1 + u_j) is (1 + u_j).
        if (coefs) {
          for (int j = 0; j < na; ++j) acc[j] += gy * da[j] * mult[j];
          for (int k = 0; k < p.nb; ++k) acc[na + k] += gy * db[k] * mult[na + k];
        }
      } else {
        r = eval(x, sa, sb, coefs ? da : nullptr, coefs ? db : nullptr);
        if (coefs) {
          for (int j = 0; j < na; ++j) acc[j] += gy * da[j];
          for (int k = 0; k < p.nb; ++k) acc[na + k] += gy * db[k];
        }
      }
      return gy * r.dydx;
    };
    map_group_backward(p, g, p.out != nullptr, element);
    if (coefs) {
      const acc_t total = block_reduce_sum_runtime<acc_t>(acc, K, smem);
      if (static_cast<int>(threadIdx.x) < K) block_partial(p, g, K)[threadIdx.x] = total;
    }
  }
}

// ------------------------------------------------------------------------------------------------
// Host-side launch: picks the specialisation. Returns false when no kernel exists (never, today:
// the generic path takes everything) so the glue can report it.

// Degree pairs (m, n) with a specialised kernel; n is the highest denominator power.
#define TR_RATIONAL_FIXED_DEGREES(X) X(5, 4) X(4, 4) X(3, 2) X(7, 6)

inline int rational_top_den_power(int nb, Version v) { return nb - 1 + (v == Version::C ? 0 : 1); }

inline bool rational_fixed_degree(int m, int n) {
#define TR_CASE(M_, N_) \
  if (m == M_ && n == N_) return true;
  TR_RATIONAL_FIXED_DEGREES(TR_CASE)
#undef TR_CASE
  return false;
}

// Launch shape for p (outer, groups, span, degrees, noise and the x / grad_y / out pointers set):
// fills p.vectorised, p.rows, p.blocks_per_group and p.grid_groups. p.grad_y set means the
// backward's plan (the rows backward has fewer columns per thread: RowLanes). Host only; the glue
// and the emulator tests both call it. multiprocessors: the device's SM count.
template <typename T>
void plan_rational_launch(RationalCudaParams<T>& p, int multiprocessors) {
  const bool backward = p.grad_y != nullptr;
  const bool aligned = (p.x == nullptr || is_aligned(p.x, kVecBytes)) &&
                       (p.grad_y == nullptr || is_aligned(p.grad_y, kVecBytes)) &&
                       (p.out == nullptr || is_aligned(p.out, kVecBytes));
  // The rows kernels exist for the fixed degrees without noise.
  const bool rows_kernels = p.noise == 0 && rational_fixed_degree(p.m, rational_top_den_power(p.nb, p.version));
  plan_elementwise_launch(p, backward, aligned, rows_kernels, kRationalThreads, multiprocessors);
}

template <typename T>
using RationalKernel = void (*)(const RationalCudaParams<T>);

// The kernel for degree (M, N) and p's path, forward or fused backward: the RPAU kernels with
// noise (power basis), the rows kernels when planned, else the grouped fixed-degree kernels;
// nullptr when only the generic kernel applies (noise with another basis).
template <int M, int N, typename T>
RationalKernel<T> rational_fixed_kernel(const RationalCudaParams<T>& p, bool backward) {
  const bool power = p.basis == Basis::Power;
  if (p.noise != 0) {
    if (!power) return nullptr;
    return backward ? &rational_backward_rpau_kernel<M, N, T> : &rational_forward_rpau_kernel<M, N, T>;
  }
  if (p.rows) {
    if (power)
      return backward ? &rational_backward_rows_kernel<M, N, true, T> : &rational_forward_rows_kernel<M, N, true, T>;
    return backward ? &rational_backward_rows_kernel<M, N, false, T> : &rational_forward_rows_kernel<M, N, false, T>;
  }
  if (power)
    return backward ? &rational_backward_fixed_kernel<M, N, true, T> : &rational_forward_fixed_kernel<M, N, true, T>;
  return backward ? &rational_backward_fixed_kernel<M, N, false, T> : &rational_forward_fixed_kernel<M, N, false, T>;
}

// Launches the forward or the fused backward kernel that p's degrees and path call for.
template <typename T>
void launch_rational(const RationalCudaParams<T>& p, bool backward, cudaStream_t stream) {
  const int n = rational_top_den_power(p.nb, p.version);
  RationalKernel<T> kernel = nullptr;
#define TR_CASE(M_, N_) \
  if (p.m == M_ && n == N_) kernel = rational_fixed_kernel<M_, N_, T>(p, backward);
  TR_RATIONAL_FIXED_DEGREES(TR_CASE)
#undef TR_CASE
  if (kernel == nullptr) kernel = backward ? &rational_backward_generic_kernel<T> : &rational_forward_generic_kernel<T>;
  // plan_rational_launch sets p.rows only for fixed degrees without noise: kernel is a rows kernel.
  const dim3 block = p.rows ? dim3(kRowsThreadsX, kRowsThreadsY) : dim3(kRationalThreads);
  const dim3 grid(static_cast<unsigned>(p.blocks_per_group), static_cast<unsigned>(p.grid_groups));
  launch_kernel(kernel, grid, block, 0, stream, p);
}

template <typename T>
void launch_rational_forward(const RationalCudaParams<T>& p, cudaStream_t stream) {
  launch_rational(p, /*backward=*/false, stream);
}

// Launches the fused backward; when p.partials is set, the caller launches the finish
// (launch_rational_finish) after checking this launch.
template <typename T>
void launch_rational_backward(const RationalCudaParams<T>& p, cudaStream_t stream) {
  launch_rational(p, /*backward=*/true, stream);
}

template <typename T>
void launch_rational_finish(const RationalCudaParams<T>& p, cudaStream_t stream) {
  launch_finish_partials(p.partials, p.groups, p.blocks_per_group, p.m + 1 + p.nb, p.param_grad, stream);
}

}  // namespace cuda
}  // namespace kernels
}  // namespace torch_rational
