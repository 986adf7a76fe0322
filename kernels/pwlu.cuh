// CUDA kernels of the PWLU op (forward and fused backward). No ATen: the glue in
// csrc/ops/cuda/pwlu_kernel.cu validates, picks the layout and fills PwluCudaParams.
//
// Layout, as for the rational kernels: memory = [outer][groups][span] (group constant on runs of
// `span` consecutive elements). Block (bx, g) of the (blocks_per_group, groups) grid only touches
// group g, so its parameters are fixed per block and its gradient partial belongs to one group.
// Elements are read and written with 16-byte vector accesses when every run start is aligned
// (PwluCudaParams::vectorised, from plan_grouped_launch with VecSize<T>), with a scalar loop for
// the tail of every run (for_each_grouped_element, cuda_utils.cuh), as in the rational and ERA
// kernels; the heights are still gathered one element at a time (they are few, and cached).
//
// Per-channel groups with the channel innermost (span == 1) take the rows kernels (below, and
// cuda_utils.cuh "The rows layout"; plan_pwlu_launch picks the path).
//
// Backward reduction (deterministic, no atomics). The heights gradient is a histogram over the
// N + 1 heights (element i touches Y_i and Y_{i+1}, i data dependent), so:
//   - every thread owns a column of shared-memory bins, bins[slot * blockDim + tid]: a thread only
//     ever adds to its own column, in its own element order, so there are no races and no
//     atomics (float shared atomics would make the sum order, hence the bits, vary run to run);
//   - after the element loop each slot is summed over the columns by one warp in a fixed order
//     (lane-strided sequential sums, then the fixed xor-butterfly of warp_reduce_sum), one
//     partial per (group, block, slot) to global memory;
//   - the four bound/slope sums are registers reduced with block_reduce_sum_many;
//   - finish_partials_kernel sums the blocks of every (group, slot) in increasing block order.
// Shared memory is bounded (kPwluBinBytes): with more heights than fit, the element loop runs
// again for each further window of `window` heights slots (grad_x and the bound/slope sums are
// computed in the first pass only). The result depends only on the launch shape, which depends
// only on the tensor shape and the device: bitwise identical run to run.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "cuda_utils.cuh"
#include "pwlu_math.h"

namespace torch_rational {
namespace kernels {
namespace cuda {

constexpr int kPwluForwardThreads = 256;
constexpr int kPwluBackwardThreads = 128;
constexpr int kPwluBackwardWarps = kPwluBackwardThreads / kWarpSize;
constexpr int kPwluBinBytes = 32 * 1024;  // dynamic shared memory for the bins (< the 48 KiB default)

// The launch fields (x, grad_y, out, layout, plan, partials [groups][blocks][n + 5], param_grad
// [groups][n + 5]) are the skeleton's (ElementwiseParams, cuda_utils.cuh).
template <typename T>
struct PwluCudaParams : ElementwiseParams<T> {
  using acc_t = typename OpMath<T>::type;
  const acc_t* heights = nullptr;  // [groups][n + 1]
  const acc_t* bounds = nullptr;   // [groups][2] = (L, R)
  const acc_t* slopes = nullptr;   // [groups][2] = (K_L, K_R)
  int n = 1;                       // pieces
};

template <typename T>
__device__ __forceinline__ PwluGroup<typename OpMath<T>::type> load_pwlu_group(const PwluCudaParams<T>& p,
                                                                             int64_t g) {
  using acc_t = typename OpMath<T>::type;
  return make_pwlu_group<acc_t>(p.heights + g * (p.n + 1), p.bounds[2 * g], p.bounds[2 * g + 1], p.slopes[2 * g],
                                p.slopes[2 * g + 1], p.n);
}

template <typename T>
__global__ void __launch_bounds__(kPwluForwardThreads) pwlu_forward_kernel(const PwluCudaParams<T> p) {
  using acc_t = typename OpMath<T>::type;
  for (int64_t g = blockIdx.y; g < p.groups; g += gridDim.y) {
    const PwluGroup<acc_t> grp = load_pwlu_group(p, g);
    map_group_forward(p, g, [&](acc_t x, int64_t) { return pwlu_forward_element<acc_t>(grp, x); });
  }
}

// window: heights slots binned per pass (>= 1); dynamic shared memory window * blockDim acc_t.
template <typename T>
__global__ void __launch_bounds__(kPwluBackwardThreads) pwlu_backward_kernel(const PwluCudaParams<T> p, int window) {
  using acc_t = typename OpMath<T>::type;
  TR_DYNAMIC_SHARED(acc_t, bins);
  __shared__ acc_t red[kPwluBackwardWarps * 4];
  const bool params = p.partials != nullptr;  // uniform over the grid
  const int K = pwlu_grad_slots(p.n);
  const int tid = threadIdx.x;
  const int nt = blockDim.x;
  const int lane = tid % kWarpSize, warp = tid / kWarpSize, nw = nt / kWarpSize;
  const int num_heights = p.n + 1;
  for (int64_t g = blockIdx.y; g < p.groups; g += gridDim.y) {
    const PwluGroup<acc_t> grp = load_pwlu_group(p, g);
    acc_t* partial = params ? block_partial(p, g, K) : nullptr;
    acc_t acc4[4] = {acc_t(0), acc_t(0), acc_t(0), acc_t(0)};
    const int last = params ? num_heights : 1;
    for (int w0 = 0; w0 < last; w0 += window) {
      const bool first = w0 == 0;
      if (params)
        for (int k = 0; k < window; ++k) bins[k * nt + tid] = acc_t(0);  // own column: no sync needed
      // One element: accumulates into this thread's registers and bins column, returns grad_x.
      auto element = [&](acc_t xv, acc_t gy, int64_t) -> acc_t {
        const PwluElementGrad<acc_t> r = pwlu_backward_element<acc_t>(grp, xv);
        if (first) {
          acc4[0] += gy * r.d_left;
          acc4[1] += gy * r.d_right;
          acc4[2] += gy * r.d_slope_left;
          acc4[3] += gy * r.d_slope_right;
        }
        if (params) {
          const int lo = r.i - w0;
          if (lo >= 0 && lo < window) bins[lo * nt + tid] += gy * r.w_lo;
          if (lo + 1 >= 0 && lo + 1 < window) bins[(lo + 1) * nt + tid] += gy * r.w_hi;
        }
        return gy * r.dydx;
      };
      const bool write_x = first && p.out != nullptr;
      map_group_backward(p, g, write_x, element);
      if (params) {
        __syncthreads();  // all columns written
        const int wlen = window < num_heights - w0 ? window : num_heights - w0;
        for (int k = warp; k < wlen; k += nw) {
          acc_t v = acc_t(0);
          for (int j = lane; j < nt; j += kWarpSize) v += bins[k * nt + j];
          v = warp_reduce_sum(v);
          if (lane == 0) partial[w0 + k] = v;
        }
        __syncthreads();  // bins are zeroed again by the next pass / group
      }
    }
    if (params) {
      const acc_t total = block_reduce_sum_many<4>(acc4, red);
      if (tid < 4) partial[num_heights + tid] = total;
    }
  }
}

// ------------------------------------------------------------------------------------------------
// Rows kernels: per-channel groups with the channel innermost (span == 1), in the rows layout of
// cuda_utils.cuh. Each thread owns L = RowLanes<T, kBackward> adjacent channels and their groups.
// Backward: the heights bins are laid out bins[(slot * L + lane) * kRowsThreads + tid] (a thread
// only adds to its own bins, in its own element order); after each window's element loop, slot k
// of a column is summed over the column's 8 row-threads in threadIdx.y order by the row-thread
// k % 8, one partial per (group, row block, slot); the four bound/slope sums go through
// rows_column_sums. Deterministic, no atomics, as the grouped backward.

template <typename T, int L>
__device__ __forceinline__ void load_pwlu_columns(const PwluCudaParams<T>& p, int64_t c0,
                                                  PwluGroup<typename OpMath<T>::type> (&grp)[L]) {
#pragma unroll
  for (int l = 0; l < L; ++l) grp[l] = load_pwlu_group(p, c0 + l);
}

template <typename T>
__global__ void TR_BLOCK_SIZE(kRowsThreads) pwlu_forward_rows_kernel(const PwluCudaParams<T> p) {
  using acc_t = typename OpMath<T>::type;
  constexpr int L = RowLanes<T, false>::value;
  const int64_t c0 = rows_first_column(L);
  if (c0 >= p.groups) return;  // no barrier in this kernel
  PwluGroup<acc_t> grp[L];
  load_pwlu_columns<T, L>(p, c0, grp);
  map_rows_forward<L>(p, c0, [&](int l, acc_t x) { return pwlu_forward_element<acc_t>(grp[l], x); });
}

// window: heights slots binned per pass (>= 1); dynamic shared memory window * L * kRowsThreads acc_t.
template <typename T>
__global__ void TR_BLOCK_SIZE(kRowsThreads) pwlu_backward_rows_kernel(const PwluCudaParams<T> p, int window) {
  using acc_t = typename OpMath<T>::type;
  constexpr int L = RowLanes<T, true>::value;
  constexpr int nt = kRowsThreads;
  TR_DYNAMIC_SHARED(acc_t, bins);
  __shared__ acc_t red[kRowsThreadsY][kRowsThreadsX * L];
  const bool params = p.partials != nullptr;  // uniform over the grid
  const int K = pwlu_grad_slots(p.n);
  const int tid = threadIdx.y * kRowsThreadsX + threadIdx.x;
  const int num_heights = p.n + 1;
  const int64_t c0 = rows_first_column(L);
  const bool active = c0 < p.groups;  // inactive threads still take part in the barriers below
  PwluGroup<acc_t> grp[L];
  if (active) load_pwlu_columns<T, L>(p, c0, grp);
  acc_t acc4[4][L];
#pragma unroll
  for (int j = 0; j < 4; ++j)
#pragma unroll
    for (int l = 0; l < L; ++l) acc4[j][l] = acc_t(0);
  const int last = params ? num_heights : 1;
  for (int w0 = 0; w0 < last; w0 += window) {
    const bool first = w0 == 0;
    if (params)
      for (int k = 0; k < window * L; ++k) bins[k * nt + tid] = acc_t(0);  // own bins: no sync needed
    if (active) {
      const bool write_x = first && p.out != nullptr;
      map_rows_backward<L>(p, c0, write_x, [&](int l, acc_t x, acc_t gy) {
        const PwluElementGrad<acc_t> e = pwlu_backward_element<acc_t>(grp[l], x);
        if (first) {
          acc4[0][l] += gy * e.d_left;
          acc4[1][l] += gy * e.d_right;
          acc4[2][l] += gy * e.d_slope_left;
          acc4[3][l] += gy * e.d_slope_right;
        }
        if (params) {
          const int lo = e.i - w0;
          if (lo >= 0 && lo < window) bins[(lo * L + l) * nt + tid] += gy * e.w_lo;
          if (lo + 1 >= 0 && lo + 1 < window) bins[((lo + 1) * L + l) * nt + tid] += gy * e.w_hi;
        }
        return gy * e.dydx;
      });
    }
    if (params) {
      __syncthreads();  // all bins written
      const int wlen = window < num_heights - w0 ? window : num_heights - w0;
      if (active) {
        for (int k = threadIdx.y; k < wlen; k += kRowsThreadsY) {
#pragma unroll
          for (int l = 0; l < L; ++l) {
            acc_t v = acc_t(0);
            for (int y = 0; y < kRowsThreadsY; ++y) v += bins[(k * L + l) * nt + y * kRowsThreadsX + threadIdx.x];
            block_partial(p, c0 + l, K)[w0 + k] = v;
          }
        }
      }
      __syncthreads();  // bins are zeroed again by the next pass
    }
  }
  if (!params) return;  // uniform: no thread is left at the barriers
#pragma unroll
  for (int j = 0; j < 4; ++j)
    rows_column_sums<L>(acc4[j], red, active, [&](int l, acc_t sum) { block_partial(p, c0 + l, K)[num_heights + j] = sum; });
}

// Launch shape for p (outer, groups, span, n set): fills p.rows, p.vectorised,
// p.blocks_per_group and p.grid_groups. backward: the fused backward's plan (its block size, and
// fewer columns per thread on the rows path); aligned: every pointer the kernel accesses with
// vectors is 16-byte aligned. Host only; the glue and the emulator tests both call it.
template <typename T>
void plan_pwlu_launch(PwluCudaParams<T>& p, bool backward, bool aligned, int multiprocessors) {
  plan_elementwise_launch(p, backward, aligned, /*rows_kernels=*/true,
                          backward ? kPwluBackwardThreads : kPwluForwardThreads, multiprocessors);
}

// Heights slots per pass of the backward for n pieces; rows: the rows backward's (kRowsThreads
// threads with RowLanes<T, true> columns each, a bin per column and slot).
template <typename T>
inline int pwlu_backward_window(int n, bool rows = false) {
  using acc_t = typename OpMath<T>::type;
  const int bins_per_slot = rows ? kRowsThreads * RowLanes<T, true>::value : kPwluBackwardThreads;
  const int fit = kPwluBinBytes / (bins_per_slot * static_cast<int>(sizeof(acc_t)));
  return n + 1 < fit ? n + 1 : fit;
}

template <typename T>
void launch_pwlu_forward(const PwluCudaParams<T>& p, cudaStream_t stream) {
  const dim3 grid(static_cast<unsigned>(p.blocks_per_group), static_cast<unsigned>(p.grid_groups));
  if (p.rows)
    launch_kernel(&pwlu_forward_rows_kernel<T>, grid, dim3(kRowsThreadsX, kRowsThreadsY), 0, stream, p);
  else
    launch_kernel(&pwlu_forward_kernel<T>, grid, dim3(kPwluForwardThreads), 0, stream, p);
}

// Launches the fused backward; when p.partials is set, the caller launches the finish
// (launch_pwlu_finish) after checking this launch.
template <typename T>
void launch_pwlu_backward(const PwluCudaParams<T>& p, cudaStream_t stream) {
  using acc_t = typename OpMath<T>::type;
  const dim3 grid(static_cast<unsigned>(p.blocks_per_group), static_cast<unsigned>(p.grid_groups));
  const int window = pwlu_backward_window<T>(p.n, p.rows);
  const int bins_per_slot = p.rows ? kRowsThreads * RowLanes<T, true>::value : kPwluBackwardThreads;
  const size_t smem = p.partials ? static_cast<size_t>(window) * bins_per_slot * sizeof(acc_t) : 0;
  if (p.rows)
    launch_kernel(&pwlu_backward_rows_kernel<T>, grid, dim3(kRowsThreadsX, kRowsThreadsY), smem, stream, p, window);
  else
    launch_kernel(&pwlu_backward_kernel<T>, grid, dim3(kPwluBackwardThreads), smem, stream, p, window);
}

template <typename T>
void launch_pwlu_finish(const PwluCudaParams<T>& p, cudaStream_t stream) {
  launch_finish_partials(p.partials, p.groups, p.blocks_per_group, pwlu_grad_slots(p.n), p.param_grad, stream);
}

}  // namespace cuda
}  // namespace kernels
}  // namespace torch_rational
