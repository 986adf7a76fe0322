// Shared device helpers of the CUDA kernels (rational, ERA, PWLU, ...): element type traits,
// 16-byte vector loads/stores, warp and block reductions and the deterministic partial-sum finish.
// No ATen: the glue files (csrc/ops/cuda/*.cu) map at::Half / at::BFloat16 to __half /
// __nv_bfloat16 (same bit layout) before launching, so nvcc can compile this on a machine whose
// torch has no CUDA.
//
// API (kept stable; other ops' kernels include this):
//   OpMath<T>::type                  float for __half/__nv_bfloat16/float, double for double
//   to_opmath(T) / from_opmath<T>(v) conversions (round-to-nearest-even on the way back)
//   kVecBytes, VecSize<T>::value     16 bytes per vector access, in elements of T
//   AlignedVector<T, N>              the register image of one vector access
//   is_aligned(p, bytes)             pointer alignment test (host and device)
//   load_vector<N>(p, i) / store_vector<N>(p, i, v)   vector i (elements i*N .. i*N+N-1)
//   warp_reduce_sum(v)               sum over the 32 lanes; every lane gets the (same) total
//   block_reduce_sum_many<K>(v, smem) K sums over the block in a fixed order
//   block_any(pred, flags)           whether pred holds in any thread of the block (every thread)
//   finish_partials(...)             fixed-order sum of per-block partials (second kernel body)
//   finish_partials_kernel<Acc>      the same as a __global__ kernel
//   grid_stride_begin()/grid_stride_step()   64-bit grid-stride loop bounds
//   plan_grouped_launch(...)         launch shape of the grouped element-wise kernels (host)
//   for_each_grouped_element<VEC>(...)  one group's elements in that layout: 16-byte vectors, then tails
//   ElementwiseParams<T>             the fields every family's params struct shares (derives from)
//   block_partial(p, g, K)           this block's parameter-gradient partial of group g
//   for_group_elements / map_group_forward / map_group_backward   the grouped element loops
//   RowLanes, plan_rows_launch, rows_first_column, for_each_row, map_rows_forward / _backward,
//   rows_column_sums                 the rows layout (channel innermost) of every family's rows kernels
//   launch_kernel(kernel, grid, block, smem, stream, args...)   kernel<<<grid, block, smem, stream>>>(args...)
//   launch_finish_partials<Acc>(...) the finish kernel with its launch shape
//   TR_DYNAMIC_SHARED(type, name)    `type* name` pointing at the dynamic shared memory
//   TR_BLOCK_SIZE(threads)           the block size a kernel is launched with, without __launch_bounds__
//
// Every launch goes through launch_kernel and every dynamic shared buffer through
// TR_DYNAMIC_SHARED, so that the same kernels and launch code also run under the host emulator of
// tests/cuda_emu (which defines TR_CUDA_EMULATOR; the host compiler cannot parse <<< >>>).
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <utility>

#ifdef TR_CUDA_EMULATOR
#define TR_DYNAMIC_SHARED(type, name) type* name = reinterpret_cast<type*>(::cuda_emu::dynamic_shared())
#else
#define TR_DYNAMIC_SHARED(type, name)                            \
  extern __shared__ __align__(16) unsigned char name##_raw_[]; \
  type* name = reinterpret_cast<type*>(name##_raw_)
#endif

// TR_BLOCK_SIZE(threads), in place of __launch_bounds__(threads) in a kernel's declaration: says
// (to readers and to scripts/check_registers.py) which block size the launcher uses, and expands to
// nothing. For kernels with a rare out-of-line path, a bare __launch_bounds__(threads) made ptxas
// (nvcc 13.0, sm_90) aim at a register count of its own (48-80) and spill to local memory, in the
// rare path and in the hot loops; without it the same kernels compile without spills, at register
// counts that scripts/check_registers.py caps. A kernel that needs a hard cap (a minimum of
// resident blocks) keeps __launch_bounds__.
#define TR_BLOCK_SIZE(threads)

namespace torch_rational {
namespace kernels {
namespace cuda {

constexpr int kWarpSize = 32;
constexpr int kVecBytes = 16;

// ------------------------------------------------------------------------------------------------
// Element types. torch's CUDA flags define __CUDA_NO_HALF_CONVERSIONS__ (and the bfloat16
// equivalent), so conversions go through the explicit intrinsics, never implicit operators.
template <typename T>
struct OpMath {
  using type = T;
};
template <>
struct OpMath<__half> {
  using type = float;
};
template <>
struct OpMath<__nv_bfloat16> {
  using type = float;
};

__device__ __forceinline__ float to_opmath(float v) { return v; }
__device__ __forceinline__ double to_opmath(double v) { return v; }
__device__ __forceinline__ float to_opmath(__half v) { return __half2float(v); }
__device__ __forceinline__ float to_opmath(__nv_bfloat16 v) { return __bfloat162float(v); }

template <typename T>
__device__ __forceinline__ T from_opmath(typename OpMath<T>::type v) {
  return static_cast<T>(v);
}
template <>
__device__ __forceinline__ __half from_opmath<__half>(float v) {
  return __float2half_rn(v);
}
template <>
__device__ __forceinline__ __nv_bfloat16 from_opmath<__nv_bfloat16>(float v) {
  return __float2bfloat16_rn(v);
}

// ------------------------------------------------------------------------------------------------
// 16-byte vector accesses: one LDG.128/STG.128 per thread per step is what it takes to reach
// DRAM bandwidth on an element-wise kernel (4 floats, 8 halves, 2 doubles).
template <typename T>
struct VecSize {
  static constexpr int value = kVecBytes / static_cast<int>(sizeof(T));
};

template <typename T, int N>
struct alignas(sizeof(T) * N) AlignedVector {
  T val[N];
};

__host__ __device__ __forceinline__ bool is_aligned(const void* p, int bytes) {
  return (reinterpret_cast<uintptr_t>(p) % static_cast<uintptr_t>(bytes)) == 0;
}

// Vector number `i` of p, i.e. elements [i*N, i*N + N). p must be aligned to sizeof(T) * N.
template <int N, typename T>
__device__ __forceinline__ AlignedVector<T, N> load_vector(const T* p, int64_t i) {
  return reinterpret_cast<const AlignedVector<T, N>*>(p)[i];
}

template <int N, typename T>
__device__ __forceinline__ void store_vector(T* p, int64_t i, const AlignedVector<T, N>& v) {
  reinterpret_cast<AlignedVector<T, N>*>(p)[i] = v;
}

// ------------------------------------------------------------------------------------------------
// 64-bit grid-stride loops: a tensor may have more than 2^31 elements.
__device__ __forceinline__ int64_t grid_stride_begin() {
  return static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
}
__device__ __forceinline__ int64_t grid_stride_step() {
  return static_cast<int64_t>(gridDim.x) * blockDim.x;
}

// ------------------------------------------------------------------------------------------------
// Reductions. All of them combine values in an order fixed by the launch shape alone, so a
// result is bitwise identical from run to run (no atomics anywhere).

template <typename T>
__device__ __forceinline__ T warp_reduce_sum(T v) {
#pragma unroll
  for (int offset = kWarpSize / 2; offset > 0; offset /= 2) v += __shfl_xor_sync(0xffffffffu, v, offset);
  return v;
}

// Reduces K values per thread over the whole block. smem must hold (blockDim.x / 32) * K values
// of T. Every thread of the block must call it (it contains __syncthreads()). On return, thread
// k < K holds the block total of value k in its return value; other threads get T(0).
// Warp totals are added in warp order, so the result depends only on blockDim.
template <int K, typename T>
__device__ __forceinline__ T block_reduce_sum_many(T (&v)[K], T* smem) {
  const int lane = threadIdx.x % kWarpSize;
  const int warp = threadIdx.x / kWarpSize;
  const int num_warps = blockDim.x / kWarpSize;
#pragma unroll
  for (int k = 0; k < K; ++k) {
    const T w = warp_reduce_sum(v[k]);
    if (lane == 0) smem[warp * K + k] = w;
  }
  __syncthreads();
  T total = T(0);
  if (threadIdx.x < K) {
    for (int w = 0; w < num_warps; ++w) total += smem[w * K + threadIdx.x];
  }
  __syncthreads();  // smem may be reused by the caller right after
  return total;
}

// Whether pred holds in any thread of the block, returned to every thread: what __syncthreads_or
// does, in warp shuffles and barriers that the emulator of tests/cuda_emu runs too. Every thread
// of the block must call it (barriers); 1-, 2- or 3-D blocks whose size is a multiple of 32.
// flags: a __shared__ array of (threads / 32) ints, free for the call's duration.
__device__ __forceinline__ bool block_any(bool pred, int* flags) {
  const int t = static_cast<int>(threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z));
  const int num_warps = static_cast<int>(blockDim.x * blockDim.y * blockDim.z) / kWarpSize;
  const int w = warp_reduce_sum(pred ? 1 : 0);
  if (t % kWarpSize == 0) flags[t / kWarpSize] = w;
  __syncthreads();
  int any = 0;
  for (int i = 0; i < num_warps; ++i) any |= flags[i];
  __syncthreads();  // flags may be reused by the caller right after
  return any != 0;
}

// Runtime-count variant for the generic-degree path: count <= max_count values per thread in
// v[0..count). smem holds (blockDim.x / 32) * count values. Same contract as above.
template <typename T>
__device__ __forceinline__ T block_reduce_sum_runtime(const T* v, int count, T* smem) {
  const int lane = threadIdx.x % kWarpSize;
  const int warp = threadIdx.x / kWarpSize;
  const int num_warps = blockDim.x / kWarpSize;
  for (int k = 0; k < count; ++k) {
    const T w = warp_reduce_sum(v[k]);
    if (lane == 0) smem[warp * count + k] = w;
  }
  __syncthreads();
  T total = T(0);
  if (static_cast<int>(threadIdx.x) < count) {
    for (int w = 0; w < num_warps; ++w) total += smem[w * count + threadIdx.x];
  }
  __syncthreads();
  return total;
}

// Fixed-order finish of per-block partials laid out as partials[(g * num_blocks + blk) * K + k]
// for g < G, blk < num_blocks, k < K: out[g * K + k] = sum over blk in increasing order.
// One thread per (g, k); call from a kernel launched with any 1-D grid (grid-stride over G * K).
// The sum is sequential on purpose: a fixed sequential order is what makes the result bitwise
// reproducible. It is accumulated in double whatever Acc is: num_blocks reaches 8 per SM (1056 on
// an H100 for one group), and a float sum of that many partials lost up to ~1e-6 relative, several
// times the error of the per-element terms (tests/cuda_emu: CoefficientGradientsOfManyBlocks).
template <typename Acc>
__device__ __forceinline__ void finish_partials(const Acc* __restrict__ partials, int64_t groups,
                                                int64_t num_blocks, int K, Acc* __restrict__ out) {
  const int64_t total = groups * K;
  for (int64_t t = grid_stride_begin(); t < total; t += grid_stride_step()) {
    const int64_t g = t / K;
    const int64_t k = t % K;
    const Acc* p = partials + g * num_blocks * K + k;
    double s = 0.0;
    for (int64_t blk = 0; blk < num_blocks; ++blk) s += static_cast<double>(p[blk * K]);
    out[t] = static_cast<Acc>(s);
  }
}

// The finish as a ready kernel, launched with kFinishThreads per block (launch_finish_partials).
constexpr int kFinishThreads = 128;
template <typename Acc>
__global__ void __launch_bounds__(kFinishThreads)
    finish_partials_kernel(const Acc* __restrict__ partials, int64_t groups, int64_t num_blocks, int K,
                           Acc* __restrict__ out) {
  finish_partials<Acc>(partials, groups, num_blocks, K, out);
}

// ------------------------------------------------------------------------------------------------
// Launch shape of the grouped element-wise kernels (rational, ERA, PWLU). The tensor is seen as
// [outer][groups][span] in memory (the group is constant on runs of span elements); block (bx, g)
// of the (blocks_per_group, grid_groups) grid works on group g, then g + grid_groups, ... Host
// only, and shared by the ATen glue and the emulator tests (tests/cuda_emu), so that both launch
// exactly the same shapes.
struct GroupedLaunch {
  bool vectorised = false;  // 16-byte accesses on the runs (plus a scalar tail per run)
  int64_t blocks_per_group = 1;
  int grid_groups = 1;  // gridDim.y
};

// vec: elements per 16-byte vector (1: the kernel has no vector path); aligned: every pointer
// the kernel reads or writes with vectors is 16-byte aligned; threads: the block size;
// multiprocessors: the device's SM count.
inline GroupedLaunch plan_grouped_launch(int64_t outer, int64_t groups, int64_t span, int vec, bool aligned,
                                         int threads, int multiprocessors) {
  GroupedLaunch l;
  // Run starts are 16-byte aligned when span is a multiple of the vector (or there is one run).
  l.vectorised = vec > 1 && aligned && (span % vec == 0 || outer * groups == 1);
  const int64_t spanv = l.vectorised ? span / vec : 0;
  const int64_t items = outer * (spanv + (span - spanv * vec));  // vectors + tail elements per group
  // About 8 blocks per SM in all, spread over the groups; never more blocks than a group has
  // work items.
  const int64_t target = int64_t(multiprocessors > 1 ? multiprocessors : 1) * 8;
  const int64_t by_work = (items + threads - 1) / threads;
  const int64_t by_target = (target + groups - 1) / groups;
  const int64_t blocks = by_work < by_target ? by_work : by_target;
  l.blocks_per_group = blocks > 1 ? blocks : 1;
  l.grid_groups = static_cast<int>(groups < 65535 ? groups : 65535);
  return l;
}

// The elements of group g in the [outer][groups][span] layout that belong to one thread of a
// grouped kernel (start = blockIdx.x * blockDim.x + threadIdx.x, step = blocks_per_group *
// blockDim.x): when vectorised (GroupedLaunch::vectorised, with vec = VEC), vec_body(i) for every
// 16-byte vector i (elements i*VEC .. i*VEC+VEC-1 in memory) of the group's runs, then
// scalar_body(i) for every element i (memory offset) of the runs' tails; when not vectorised,
// scalar_body for every element of the group. 64-bit indices; 32-bit divisions where the counts
// allow (several times cheaper).
// Host and device (the host test tests/cuda/rational_host_test.cu checks the coverage with host
// lambdas; hence no execution-space check).
#pragma nv_exec_check_disable
template <int VEC, typename VecBody, typename ScalarBody>
__host__ __device__ __forceinline__ void for_each_grouped_element(int64_t outer, int64_t groups, int64_t span,
                                                                  bool vectorised, int64_t g, int64_t start,
                                                                  int64_t step, VecBody&& vec_body,
                                                                  ScalarBody&& scalar_body) {
  const int64_t spanv = vectorised ? span / VEC : 0;
  if (spanv > 0) {
    const int64_t nvec = outer * spanv;
    const int64_t run_stride_v = groups * spanv;  // vectors between runs of the same group
    const bool small = nvec <= int64_t(UINT32_MAX);
    for (int64_t vv = start; vv < nvec; vv += step) {
      // One run per group when outer == 1 (G = 1, or channels outermost): no division.
      const int64_t o = outer == 1 ? 0 : small ? int64_t(uint32_t(vv) / uint32_t(spanv)) : vv / spanv;
      vec_body(o * run_stride_v + g * spanv + (vv - o * spanv));
    }
  }
  const int64_t tail = span - spanv * VEC;
  if (tail > 0) {
    const int64_t n = outer * tail;
    const bool small = n <= int64_t(UINT32_MAX);
    for (int64_t e = start; e < n; e += step) {
      const int64_t o = outer == 1 ? 0 : small ? int64_t(uint32_t(e) / uint32_t(tail)) : e / tail;
      scalar_body((o * groups + g) * span + spanv * VEC + (e - o * tail));
    }
  }
}

// ------------------------------------------------------------------------------------------------
// The element-wise skeleton of every family (rational, ERA, PWLU). ElementwiseParams holds what the
// element loops and the partials read; each family's params struct derives from it and adds its
// parameters. The family's element math plugs into the loops as a lambda on op-math values:
//   map_group_forward / map_group_backward   the grouped layout: 16-byte vectors, then tails
//   map_rows_forward / map_rows_backward     the rows layout (below)
// and its parameter-gradient accumulators reduce through block_reduce_sum_many (grouped) or
// rows_column_sums (rows) into block_partial(p, g, K), summed by the fixed-order finish.
template <typename T>
struct ElementwiseParams {
  using acc_t = typename OpMath<T>::type;
  const T* x = nullptr;
  const T* grad_y = nullptr;  // backward only
  T* out = nullptr;           // forward: y; backward: grad_x (may be null: not requested)
  int64_t outer = 1;          // memory = [outer][groups][span]
  int64_t groups = 1;
  int64_t span = 0;
  bool vectorised = false;       // 16-byte accesses on the runs (plan_grouped_launch), scalar tails
  bool rows = false;             // span == 1 through the rows kernels (plan_rows_launch)
  int64_t blocks_per_group = 1;  // gridDim.x; rows: the row blocks
  int grid_groups = 1;           // gridDim.y (<= 65535), blocks loop over g += gridDim.y; rows: the column tiles
  acc_t* partials = nullptr;     // backward: [groups][blocks_per_group][K]; null: no parameter gradients
  acc_t* param_grad = nullptr;   // backward: [groups][K] (the finish's output)
};

// This block's partial of group g: K slots at partials[(g * blocks_per_group + blockIdx.x) * K].
template <typename T>
__device__ __forceinline__ typename OpMath<T>::type* block_partial(const ElementwiseParams<T>& p, int64_t g, int K) {
  return p.partials + (g * p.blocks_per_group + blockIdx.x) * K;
}

// for_each_grouped_element over this thread's elements of group g (start blockIdx.x * blockDim.x +
// threadIdx.x, step blocks_per_group * blockDim.x).
template <int VEC, typename T, typename VecBody, typename ScalarBody>
__device__ __forceinline__ void for_group_elements(const ElementwiseParams<T>& p, int64_t g, VecBody&& vec_body,
                                                   ScalarBody&& scalar_body) {
  const int64_t start = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t step = static_cast<int64_t>(p.blocks_per_group) * blockDim.x;
  for_each_grouped_element<VEC>(p.outer, p.groups, p.span, p.vectorised, g, start, step, vec_body, scalar_body);
}

// out[i] = f(x[i], i) for this thread's elements i (memory offsets) of group g, f on op-math values.
template <typename T, typename F>
__device__ __forceinline__ void map_group_forward(const ElementwiseParams<T>& p, int64_t g, F&& f) {
  constexpr int VEC = VecSize<T>::value;
  for_group_elements<VEC>(
      p, g,
      [&](int64_t iv) {
        AlignedVector<T, VEC> xv = load_vector<VEC>(p.x, iv);
#pragma unroll
        for (int l = 0; l < VEC; ++l) xv.val[l] = from_opmath<T>(f(to_opmath(xv.val[l]), iv * VEC + l));
        store_vector<VEC>(p.out, iv, xv);
      },
      [&](int64_t i) { p.out[i] = from_opmath<T>(f(to_opmath(p.x[i]), i)); });
}

// gx = f(x[i], grad_y[i], i) for this thread's elements i of group g, written to out[i] when write
// (f accumulates the parameter gradients itself).
template <typename T, typename F>
__device__ __forceinline__ void map_group_backward(const ElementwiseParams<T>& p, int64_t g, bool write, F&& f) {
  constexpr int VEC = VecSize<T>::value;
  for_group_elements<VEC>(
      p, g,
      [&](int64_t iv) {
        const AlignedVector<T, VEC> xv = load_vector<VEC>(p.x, iv);
        const AlignedVector<T, VEC> gv = load_vector<VEC>(p.grad_y, iv);
        AlignedVector<T, VEC> ov;
#pragma unroll
        for (int l = 0; l < VEC; ++l)
          ov.val[l] = from_opmath<T>(f(to_opmath(xv.val[l]), to_opmath(gv.val[l]), iv * VEC + l));
        if (write) store_vector<VEC>(p.out, iv, ov);
      },
      [&](int64_t i) {
        const T o = from_opmath<T>(f(to_opmath(p.x[i]), to_opmath(p.grad_y[i]), i));
        if (write) p.out[i] = o;
      });
}

// ------------------------------------------------------------------------------------------------
// The rows layout: per-channel groups with the channel innermost (span == 1: channels_last 2-D /
// 3-D, (..., C) with channel_dim = -1). The grouped loop above would give each block one group and
// make a warp read 32 elements C apart (one 32-byte sector per 4-byte element). The rows kernels
// of every family (rational, ERA, PWLU) see memory as [outer rows][groups columns] instead: thread
// (tx, ty) of block (bx, by) owns the L adjacent columns from rows_first_column(L) = (by * 32 +
// tx) * L for its whole life, so its per-column parameters and gradient accumulators stay in
// registers, and walks the rows bx * 8 + ty, + gridDim.x * 8, ... (for_each_row); a warp reads
// 32 * L consecutive elements of one row. Parameter gradients: the 8 row-threads of a column are
// summed in shared memory in threadIdx.y order (rows_column_sums), one partial per (group, row
// block), so the partials [group][blockIdx.x][K] and their finish are those of the grouped kernels
// with blocks_per_group = gridDim.x.

constexpr int kRowsThreadsX = kWarpSize;
constexpr int kRowsThreadsY = 8;
constexpr int kRowsThreads = kRowsThreadsX * kRowsThreadsY;

// Columns per thread. Forward: the 16-byte vector, at most 4 (8 per-lane parameter sets of halves
// would not fit in registers); a warp reads 32 * 4 * sizeof(T) contiguous bytes. Backward: half of
// that (2 for float, half and bfloat16, 1 for double): a backward column keeps its parameters and
// as many gradient accumulators in registers (docs/cuda.md, "The rows backward").
template <typename T, bool kBackward>
struct RowLanes {
  static constexpr int forward = VecSize<T>::value < 4 ? VecSize<T>::value : 4;
  static constexpr int value = kBackward ? forward / 2 : forward;
};

struct RowsLaunch {
  bool rows = false;          // the rows kernels apply
  int64_t row_blocks = 1;     // gridDim.x (the partials' blocks_per_group)
  int col_tiles = 1;          // gridDim.y
};

// Whether a launch takes the rows kernels, and their grid. span == 1 with more than one row;
// groups a multiple of the forward's lanes, whatever the direction (the two passes of an op take
// the same path); every vector-accessed pointer 16-byte aligned; fewer than 65536 column tiles
// (4 million groups). lanes: this direction's columns per thread (RowLanes); multiprocessors: the
// device's SM count. Host only: the glue and the emulator tests call it through the families'
// plan functions, so both launch the same shapes.
template <typename T>
inline RowsLaunch plan_rows_launch(int64_t outer, int64_t groups, int64_t span, bool backward, bool aligned,
                                   int multiprocessors) {
  RowsLaunch l;
  const int lanes = backward ? RowLanes<T, true>::value : RowLanes<T, false>::value;
  const int64_t col_tiles = (groups + kRowsThreadsX * lanes - 1) / (kRowsThreadsX * lanes);
  l.rows = span == 1 && outer > 1 && groups % RowLanes<T, false>::value == 0 && aligned && col_tiles <= 65535;
  if (!l.rows) return l;
  // About 8 blocks per SM in all; never more row blocks than rows / 8.
  const int64_t target = int64_t(multiprocessors > 1 ? multiprocessors : 1) * 8;
  const int64_t by_work = (outer + kRowsThreadsY - 1) / kRowsThreadsY;
  const int64_t by_target = (target + col_tiles - 1) / col_tiles;
  const int64_t blocks = by_work < by_target ? by_work : by_target;
  l.row_blocks = blocks > 1 ? blocks : 1;
  l.col_tiles = static_cast<int>(col_tiles);
  return l;
}

// p's launch plan (rows, vectorised, blocks_per_group, grid_groups; outer, groups and span set):
// the rows kernels when plan_rows_launch takes them and the family has rows kernels for p
// (rows_kernels), else the grouped kernels of `threads` per block. Host only.
template <typename T>
void plan_elementwise_launch(ElementwiseParams<T>& p, bool backward, bool aligned, bool rows_kernels, int threads,
                             int multiprocessors) {
  const RowsLaunch rows = plan_rows_launch<T>(p.outer, p.groups, p.span, backward, aligned, multiprocessors);
  p.rows = rows.rows && rows_kernels;
  if (p.rows) {
    p.vectorised = true;
    p.blocks_per_group = rows.row_blocks;
    p.grid_groups = rows.col_tiles;
    return;
  }
  const GroupedLaunch plan =
      plan_grouped_launch(p.outer, p.groups, p.span, VecSize<T>::value, aligned, threads, multiprocessors);
  p.vectorised = plan.vectorised;
  p.blocks_per_group = plan.blocks_per_group;
  p.grid_groups = plan.grid_groups;
}

// The first of this thread's L columns in a rows kernel.
__device__ __forceinline__ int64_t rows_first_column(int lanes) {
  return (static_cast<int64_t>(blockIdx.y) * blockDim.x + threadIdx.x) * lanes;
}

// body(r) for every row r < outer of this thread (64-bit).
template <typename Body>
__device__ __forceinline__ void for_each_row(int64_t outer, Body&& body) {
  const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.y;
  for (int64_t r = static_cast<int64_t>(blockIdx.x) * blockDim.y + threadIdx.y; r < outer; r += step) body(r);
}

// out = f(l, x) on this thread's L columns from c0 of every row of its rows (f on op-math values).
template <int L, typename T, typename F>
__device__ __forceinline__ void map_rows_forward(const ElementwiseParams<T>& p, int64_t c0, F&& f) {
  for_each_row(p.outer, [&](int64_t r) {
    const int64_t iv = (r * p.groups + c0) / L;
    AlignedVector<T, L> xv = load_vector<L>(p.x, iv);
#pragma unroll
    for (int l = 0; l < L; ++l) xv.val[l] = from_opmath<T>(f(l, to_opmath(xv.val[l])));
    store_vector<L>(p.out, iv, xv);
  });
}

// gx = f(l, x, grad_y) on this thread's L columns from c0 of every row of its rows, written to out
// when write (f accumulates the parameter gradients itself).
template <int L, typename T, typename F>
__device__ __forceinline__ void map_rows_backward(const ElementwiseParams<T>& p, int64_t c0, bool write, F&& f) {
  for_each_row(p.outer, [&](int64_t r) {
    const int64_t iv = (r * p.groups + c0) / L;
    const AlignedVector<T, L> xv = load_vector<L>(p.x, iv);
    const AlignedVector<T, L> gv = load_vector<L>(p.grad_y, iv);
    AlignedVector<T, L> ov;
#pragma unroll
    for (int l = 0; l < L; ++l) ov.val[l] = from_opmath<T>(f(l, to_opmath(xv.val[l]), to_opmath(gv.val[l])));
    if (write) store_vector<L>(p.out, iv, ov);
  });
}

// The rows kernels' shared rows of column values (kRowsThreadsY of them, one per row-thread).
template <typename Acc, int L>
using RowsRed = Acc[kRowsThreadsX * L];

// Column sums of one value per column over the block's 8 row-threads: v[l] of every thread is
// summed in shared memory (red, kRowsThreadsY rows) in threadIdx.y order, and the thread with
// threadIdx.y == 0 calls write(l, sum) for its columns when active (its columns exist). Every
// thread of the block must call it (barriers).
template <int L, typename Acc, typename Write>
__device__ __forceinline__ void rows_column_sums(const Acc (&v)[L], RowsRed<Acc, L>* red, bool active,
                                                 Write&& write) {
#pragma unroll
  for (int l = 0; l < L; ++l) red[threadIdx.y][threadIdx.x * L + l] = v[l];
  __syncthreads();
  if (threadIdx.y == 0 && active) {
#pragma unroll
    for (int l = 0; l < L; ++l) {
      Acc sum = Acc(0);
      for (int y = 0; y < kRowsThreadsY; ++y) sum += red[y][threadIdx.x * L + l];
      write(l, sum);
    }
  }
  __syncthreads();  // red is reused by the next call
}

// ------------------------------------------------------------------------------------------------
// Launches.

template <typename... KArgs, typename... Args>
inline void launch_kernel(void (*kernel)(KArgs...), dim3 grid, dim3 block, size_t smem, cudaStream_t stream,
                          Args&&... args) {
#ifdef TR_CUDA_EMULATOR
  (void)stream;
  ::cuda_emu::launch(kernel, grid, block, smem, std::forward<Args>(args)...);
#else
  kernel<<<grid, block, smem, stream>>>(std::forward<Args>(args)...);
#endif
}

// out[g][k] = sum over blocks of partials[g][blk][k] (see finish_partials), one thread per (g, k).
template <typename Acc>
inline void launch_finish_partials(const Acc* partials, int64_t groups, int64_t num_blocks, int K, Acc* out,
                                   cudaStream_t stream) {
  const int64_t total = groups * K;
  const int64_t blocks = (total + kFinishThreads - 1) / kFinishThreads;
  launch_kernel(&finish_partials_kernel<Acc>, dim3(static_cast<unsigned>(blocks < 65535 ? blocks : 65535)),
                dim3(kFinishThreads), 0, stream, partials, groups, num_blocks, K, out);
}

}  // namespace cuda
}  // namespace kernels
}  // namespace torch_rational

// Explicit instantiations of a family's three launchers (launch_<family>_forward, _backward and
// _finish, taking a const Params<T>&) for the four element types the glue dispatches; inside
// namespace torch_rational::kernels::cuda. Used by the glue (csrc/ops/cuda/*_kernel.cu) and by the
// nvcc compile checks without ATen (tests/cuda/*_kernels_check.cu).
#define TR_INSTANTIATE_LAUNCHERS_FOR(family, Params, T)                                 \
  template void launch_##family##_forward<T>(const Params<T>&, cudaStream_t);  \
  template void launch_##family##_backward<T>(const Params<T>&, cudaStream_t); \
  template void launch_##family##_finish<T>(const Params<T>&, cudaStream_t);
#define TR_INSTANTIATE_LAUNCHERS(family, Params)               \
  TR_INSTANTIATE_LAUNCHERS_FOR(family, Params, float)          \
  TR_INSTANTIATE_LAUNCHERS_FOR(family, Params, double)         \
  TR_INSTANTIATE_LAUNCHERS_FOR(family, Params, __half)         \
  TR_INSTANTIATE_LAUNCHERS_FOR(family, Params, __nv_bfloat16)
