// CUDA kernels of the ERA op (no ATen: the glue is csrc/ops/cuda/era_kernel.cu). The per-element
// math is kernels/era_math.h, shared with the CPU kernels.
//
// Layout (as for the rational kernels): memory = [outer][groups][span], span = stride(channel_dim)
// * channels_per_group; G = 1 is one run of numel elements. Grid: blockIdx.y walks the groups
// (g += gridDim.y beyond 65535), blockIdx.x splits a group's elements over blocks_per_group
// blocks; 16-byte vector accesses when every run start is aligned, a scalar loop for the tails.
//
// Parameter gradients, deterministic and without atomics: each thread accumulates in registers
// (float for half/bfloat16/float, double for double), a block reduces its threads by warp
// shuffles and then warps in warp order (cuda_utils.cuh), writes one partial per (group, block),
// and a second kernel sums the partials of every parameter in block order.
//
// n = 1..4 fractions are template parameters (parameters and accumulators in registers); other
// n use the generic kernels (parameters in shared memory, accumulators in local memory).
// Per-channel groups with the channel innermost (span == 1) take the rows kernels at n = 1..4
// (cuda_utils.cuh, "The rows layout"; plan_era_launch picks the path).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "cuda_utils.cuh"
#include "era_math.h"

namespace torch_rational {
namespace kernels {
namespace cuda {

constexpr int kEraThreads = 256;
constexpr int kEraWarps = kEraThreads / kWarpSize;

// The launch fields (x, grad_y, out, layout, plan, partials [groups][blocks][2 + 4n], param_grad
// [groups][2 + 4n]) are the skeleton's (ElementwiseParams, cuda_utils.cuh).
template <typename T>
struct EraCudaParams : ElementwiseParams<T> {
  using acc_t = typename OpMath<T>::type;
  const acc_t* params = nullptr;  // [groups][2 + 4n]: (a, b), then rows (c, d, e, f)
  int n = 1;
  acc_t eps = acc_t(0);
};

// ------------------------------------------------------------------------------------------------
// Fixed n: the group's parameters in registers.

template <int N, typename T>
__global__ void __launch_bounds__(kEraThreads) era_forward_fixed_kernel(const EraCudaParams<T> p) {
  using acc_t = typename OpMath<T>::type;
  constexpr int K = 2 + 4 * N;
  for (int64_t g = blockIdx.y; g < p.groups; g += gridDim.y) {
    acc_t q[K];
#pragma unroll
    for (int k = 0; k < K; ++k) q[k] = p.params[g * K + k];
    map_group_forward(p, g, [&](acc_t x, int64_t) { return era_forward_element<acc_t>(x, q[0], q[1], q + 2, N, p.eps); });
  }
}

template <int N, typename T>
__global__ void __launch_bounds__(kEraThreads) era_backward_fixed_kernel(const EraCudaParams<T> p) {
  using acc_t = typename OpMath<T>::type;
  constexpr int K = 2 + 4 * N;
  __shared__ acc_t smem[kEraWarps * K];
  const bool want_params = p.partials != nullptr;
  for (int64_t g = blockIdx.y; g < p.groups; g += gridDim.y) {
    acc_t q[K], acc[K];
#pragma unroll
    for (int k = 0; k < K; ++k) {
      q[k] = p.params[g * K + k];
      acc[k] = acc_t(0);
    }
    // Two separate calls rather than one with `want ? acc : nullptr`: a pointer chosen at run time
    // would make acc addressable and push it to local memory; with constant indices after
    // unrolling it stays in registers.
    auto element = [&](acc_t x, acc_t gy, int64_t) -> acc_t {
      if (want_params) return era_backward_element<acc_t, acc_t>(x, gy, q[0], q + 2, N, p.eps, acc, acc + 2);
      return era_backward_element<acc_t, acc_t>(x, gy, q[0], q + 2, N, p.eps, nullptr, nullptr);
    };
    map_group_backward(p, g, p.out != nullptr, element);
    if (want_params) {  // uniform over the grid: every thread reaches the __syncthreads() inside
      const acc_t total = block_reduce_sum_many<K>(acc, smem);
      if (threadIdx.x < K) block_partial(p, g, K)[threadIdx.x] = total;
    }
  }
}

// ------------------------------------------------------------------------------------------------
// Generic n <= kMaxEraFractions: the group's parameters in shared memory.

template <typename T>
__global__ void __launch_bounds__(kEraThreads) era_forward_generic_kernel(const EraCudaParams<T> p) {
  using acc_t = typename OpMath<T>::type;
  __shared__ acc_t sq[2 + 4 * kMaxEraFractions];
  const int K = era_params_per_group(p.n);
  for (int64_t g = blockIdx.y; g < p.groups; g += gridDim.y) {
    __syncthreads();  // the previous group's readers are done
    for (int k = threadIdx.x; k < K; k += blockDim.x) sq[k] = p.params[g * K + k];
    __syncthreads();
    map_group_forward(p, g, [&](acc_t x, int64_t) { return era_forward_element<acc_t>(x, sq[0], sq[1], sq + 2, p.n, p.eps); });
  }
}

template <typename T>
__global__ void __launch_bounds__(kEraThreads) era_backward_generic_kernel(const EraCudaParams<T> p) {
  using acc_t = typename OpMath<T>::type;
  constexpr int KMAX = 2 + 4 * kMaxEraFractions;
  __shared__ acc_t sq[KMAX];
  __shared__ acc_t smem[kEraWarps * KMAX];
  const int K = era_params_per_group(p.n);
  const bool want_params = p.partials != nullptr;
  for (int64_t g = blockIdx.y; g < p.groups; g += gridDim.y) {
    __syncthreads();
    for (int k = threadIdx.x; k < K; k += blockDim.x) sq[k] = p.params[g * K + k];
    __syncthreads();
    acc_t acc[KMAX];
    for (int k = 0; k < K; ++k) acc[k] = acc_t(0);
    auto element = [&](acc_t x, acc_t gy, int64_t) -> acc_t {
      return era_backward_element<acc_t, acc_t>(x, gy, sq[0], sq + 2, p.n, p.eps, want_params ? acc : nullptr,
                                                want_params ? acc + 2 : nullptr);
    };
    map_group_backward(p, g, p.out != nullptr, element);
    if (want_params) {
      const acc_t total = block_reduce_sum_runtime<acc_t>(acc, K, smem);
      if (static_cast<int>(threadIdx.x) < K) block_partial(p, g, K)[threadIdx.x] = total;
    }
  }
}

// ------------------------------------------------------------------------------------------------
// Rows kernels, fixed n: per-channel groups with the channel innermost (span == 1), in the rows
// layout of cuda_utils.cuh. Each thread owns L = RowLanes<T, kBackward> adjacent channels, their
// 2 + 4n parameters (and in the backward their accumulators) in registers.

template <int N, typename T, int L>
__device__ __forceinline__ void load_era_columns(const EraCudaParams<T>& p, int64_t c0,
                                                 typename OpMath<T>::type (&q)[L][2 + 4 * N]) {
#pragma unroll
  for (int l = 0; l < L; ++l)
#pragma unroll
    for (int k = 0; k < 2 + 4 * N; ++k) q[l][k] = p.params[(c0 + l) * (2 + 4 * N) + k];
}

template <int N, typename T>
__global__ void TR_BLOCK_SIZE(kRowsThreads) era_forward_rows_kernel(const EraCudaParams<T> p) {
  using acc_t = typename OpMath<T>::type;
  constexpr int L = RowLanes<T, false>::value;
  const int64_t c0 = rows_first_column(L);
  if (c0 >= p.groups) return;  // no barrier in this kernel
  acc_t q[L][2 + 4 * N];
  load_era_columns<N>(p, c0, q);
  map_rows_forward<L>(p, c0, [&](int l, acc_t x) {
    return era_forward_element<acc_t>(x, q[l][0], q[l][1], q[l] + 2, N, p.eps);
  });
}

template <int N, typename T>
__global__ void TR_BLOCK_SIZE(kRowsThreads) era_backward_rows_kernel(const EraCudaParams<T> p) {
  using acc_t = typename OpMath<T>::type;
  constexpr int L = RowLanes<T, true>::value;
  constexpr int K = 2 + 4 * N;
  __shared__ acc_t red[kRowsThreadsY][kRowsThreadsX * L];
  const bool want_params = p.partials != nullptr;  // uniform over the grid
  const int64_t c0 = rows_first_column(L);
  const bool active = c0 < p.groups;  // inactive threads still take part in the barriers below
  acc_t acc[L][K];
#pragma unroll
  for (int l = 0; l < L; ++l)
#pragma unroll
    for (int k = 0; k < K; ++k) acc[l][k] = acc_t(0);
  if (active) {
    acc_t q[L][K];
    load_era_columns<N>(p, c0, q);
    // Two calls, not one with `want ? acc : nullptr` (see era_backward_fixed_kernel).
    map_rows_backward<L>(p, c0, p.out != nullptr, [&](int l, acc_t x, acc_t gy) {
      return want_params ? era_backward_element<acc_t, acc_t>(x, gy, q[l][0], q[l] + 2, N, p.eps, acc[l], acc[l] + 2)
                         : era_backward_element<acc_t, acc_t>(x, gy, q[l][0], q[l] + 2, N, p.eps, nullptr, nullptr);
    });
  }
  if (!want_params) return;  // uniform: no thread is left at the barriers
  // Unrolled: acc[l][k] with a run-time k would put the accumulators in local memory.
#pragma unroll
  for (int k = 0; k < K; ++k) {
    acc_t column[L];
#pragma unroll
    for (int l = 0; l < L; ++l) column[l] = acc[l][k];
    rows_column_sums<L>(column, red, active, [&](int l, acc_t sum) { block_partial(p, c0 + l, K)[k] = sum; });
  }
}

// ------------------------------------------------------------------------------------------------
// Launchers (host). The glue checks each launch with C10_CUDA_KERNEL_LAUNCH_CHECK.

#define TR_ERA_FIXED_FRACTIONS(X) X(1) X(2) X(3) X(4)

inline bool era_fixed_fractions(int n) { return n >= 1 && n <= 4; }

// Launch shape for p (outer, groups, span, n set): fills p.rows, p.vectorised,
// p.blocks_per_group and p.grid_groups. backward: the fused backward's plan (fewer columns per
// thread on the rows path); aligned: every pointer the kernel accesses with vectors is 16-byte
// aligned. Host only; the glue and the emulator tests both call it.
template <typename T>
void plan_era_launch(EraCudaParams<T>& p, bool backward, bool aligned, int multiprocessors) {
  plan_elementwise_launch(p, backward, aligned, /*rows_kernels=*/era_fixed_fractions(p.n), kEraThreads,
                          multiprocessors);
}

// The forward or the fused backward kernel: fixed n = 1..4 as template parameters, else generic.
template <typename T>
void launch_era(const EraCudaParams<T>& p, bool backward, cudaStream_t stream) {
  void (*kernel)(const EraCudaParams<T>) =
      backward ? &era_backward_generic_kernel<T> : &era_forward_generic_kernel<T>;
#define TR_CASE(N_)                                                                                             \
  if (p.n == N_)                                                                                                \
    kernel = p.rows ? (backward ? &era_backward_rows_kernel<N_, T> : &era_forward_rows_kernel<N_, T>)            \
                    : (backward ? &era_backward_fixed_kernel<N_, T> : &era_forward_fixed_kernel<N_, T>);
  TR_ERA_FIXED_FRACTIONS(TR_CASE)
#undef TR_CASE
  // plan_era_launch sets p.rows only for the fixed n: kernel is a rows kernel then.
  const dim3 block = p.rows ? dim3(kRowsThreadsX, kRowsThreadsY) : dim3(kEraThreads);
  const dim3 grid(static_cast<unsigned>(p.blocks_per_group), static_cast<unsigned>(p.grid_groups));
  launch_kernel(kernel, grid, block, 0, stream, p);
}

template <typename T>
void launch_era_forward(const EraCudaParams<T>& p, cudaStream_t stream) {
  launch_era(p, /*backward=*/false, stream);
}

template <typename T>
void launch_era_backward(const EraCudaParams<T>& p, cudaStream_t stream) {
  launch_era(p, /*backward=*/true, stream);
}

// Fixed-order sum of the per-block partials into param_grad (after launch_era_backward).
template <typename T>
void launch_era_finish(const EraCudaParams<T>& p, cudaStream_t stream) {
  launch_finish_partials(p.partials, p.groups, p.blocks_per_group, era_params_per_group(p.n), p.param_grad, stream);
}

}  // namespace cuda
}  // namespace kernels
}  // namespace torch_rational
