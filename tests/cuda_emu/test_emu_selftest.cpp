// The emulator itself (cuda_emu.h): the CUDA semantics the kernel tests rely on, each checked
// against what CUDA specifies, plus the shared device helpers of kernels/cuda_utils.cuh (block
// reductions, the fixed-order finish) against plain sums.
#include <gtest/gtest.h>

#include <cmath>
#include <numeric>
#include <vector>

#include "cuda_emu.h"
#include "cuda_utils.cuh"

namespace {

namespace kc = torch_rational::kernels::cuda;

__global__ void write_ids(int* out) {
  const int64_t flat_block = int64_t(blockIdx.y) * gridDim.x + blockIdx.x;
  const int64_t i = flat_block * blockDim.x * blockDim.y + threadIdx.y * blockDim.x + threadIdx.x;
  out[i] = static_cast<int>(i);
}

TEST(CudaEmu, EveryThreadOfEveryBlockRunsOnceWithItsIndices) {
  const dim3 grid(3, 2), block(32, 4);
  std::vector<int> out(3 * 2 * 32 * 4, -1);
  kc::launch_kernel(&write_ids, grid, block, 0, nullptr, out.data());
  for (size_t i = 0; i < out.size(); ++i) ASSERT_EQ(out[i], static_cast<int>(i));
}

// Thread t writes s[t], waits, reads its neighbour's value: needs the barrier.
__global__ void rotate(const float* in, float* out) {
  __shared__ float s[256];
  const int t = threadIdx.x;
  s[t] = in[blockIdx.x * blockDim.x + t];
  __syncthreads();
  out[blockIdx.x * blockDim.x + t] = s[(t + 1) % blockDim.x];
}

// The same without the barrier: a race.
__global__ void rotate_racy(const float* in, float* out) {
  __shared__ float s[256];
  const int t = threadIdx.x;
  s[t] = in[blockIdx.x * blockDim.x + t];
  out[blockIdx.x * blockDim.x + t] = s[(t + 1) % blockDim.x];
}

std::vector<float> run_rotate(void (*k)(const float*, float*), cuda_emu::Schedule sched) {
  std::vector<float> in(2 * 256), out(in.size(), -1.f);
  std::iota(in.begin(), in.end(), 0.f);
  cuda_emu::set_schedule(sched);
  kc::launch_kernel(k, dim3(2), dim3(256), 0, nullptr, in.data(), out.data());
  cuda_emu::set_schedule(cuda_emu::Schedule::Forward);
  return out;
}

TEST(CudaEmu, SyncthreadsIsABarrierInBothSchedules) {
  for (auto sched : {cuda_emu::Schedule::Forward, cuda_emu::Schedule::Reverse}) {
    const auto out = run_rotate(&rotate, sched);
    for (int b = 0; b < 2; ++b)
      for (int t = 0; t < 256; ++t) ASSERT_EQ(out[b * 256 + t], float(b * 256 + (t + 1) % 256));
  }
}

TEST(CudaEmu, AMissingBarrierShowsUpAsScheduleDependence) {
  // What the kernel tests rely on: a race gives different results in the two schedules.
  EXPECT_NE(run_rotate(&rotate_racy, cuda_emu::Schedule::Forward), run_rotate(&rotate_racy, cuda_emu::Schedule::Reverse));
}

__global__ void shuffles(const double* in, double* xor_out, double* down_out) {
  const int t = threadIdx.x;
  xor_out[t] = __shfl_xor_sync(0xffffffffu, in[t], 5);
  down_out[t] = __shfl_down_sync(0xffffffffu, in[t], 3);
}

TEST(CudaEmu, WarpShufflesFollowCudaSemantics) {
  std::vector<double> in(64), x(64), d(64);
  for (int i = 0; i < 64; ++i) in[i] = 1.5 * i;
  kc::launch_kernel(&shuffles, dim3(1), dim3(64), 0, nullptr, in.data(), x.data(), d.data());
  for (int t = 0; t < 64; ++t) {
    const int warp = t / 32, lane = t % 32;
    EXPECT_EQ(x[t], in[warp * 32 + (lane ^ 5)]);
    // Lanes whose source is past the end of the warp keep their own value.
    EXPECT_EQ(d[t], in[lane + 3 < 32 ? t + 3 : t]);
  }
}

__global__ void read_dynamic_shared(float* out) {
  TR_DYNAMIC_SHARED(float, buf);
  if (threadIdx.x == 0) out[blockIdx.x] = buf[3];
  __syncthreads();
  buf[3] = 1.0f;  // written by this block: the next block must not see it
}

TEST(CudaEmu, DynamicSharedMemoryStartsAsNaNInEveryBlock) {
  std::vector<float> out(3, 0.f);
  kc::launch_kernel(&read_dynamic_shared, dim3(3), dim3(32), 64, nullptr, out.data());
  for (float v : out) EXPECT_TRUE(std::isnan(v));
}

__global__ void divergent_barrier(int* out) {
  if (threadIdx.x != 0) __syncthreads();
  out[threadIdx.x] = 1;
}

__global__ void early_return_before_shuffle(float* out) {
  if (threadIdx.x == 7) return;
  out[threadIdx.x] = kc::warp_reduce_sum(1.0f);
}

TEST(CudaEmuDeathTest, ReportsDeadlocksAndBadLaunches) {
  std::vector<int> iout(64);
  std::vector<float> fout(64);
  // A thread that exits counts as arrived at __syncthreads (as on sm_70+), so the divergent
  // barrier completes; a lane missing from a full-mask shuffle is a deadlock.
  kc::launch_kernel(&divergent_barrier, dim3(1), dim3(64), 0, nullptr, iout.data());
  EXPECT_DEATH(kc::launch_kernel(&early_return_before_shuffle, dim3(1), dim3(32), 0, nullptr, fout.data()),
               "deadlock");
  EXPECT_DEATH(kc::launch_kernel(&write_ids, dim3(1), dim3(2048), 0, nullptr, iout.data()), "1024 threads");
  EXPECT_DEATH(kc::launch_kernel(&write_ids, dim3(1, 70000), dim3(32), 0, nullptr, iout.data()), "65535");
  EXPECT_DEATH(kc::launch_kernel(&read_dynamic_shared, dim3(1), dim3(32), 64 * 1024, nullptr, fout.data()), "48 KiB");
}

#ifdef CUDA_EMU_ASAN
// The guards of the sanitized build (cuda_emu.h): one element before or after a global buffer,
// the dynamic shared memory or a static __shared__ array is an ASan report. The store goes
// through a pointer, as in the kernels' reductions (UBSan's bounds check sees only array syntax).
__device__ __noinline__ void store_one(float* p, int i) { p[i] = 1.0f; }
__global__ void store_global(float* p, int i) { store_one(p, i); }
__global__ void store_dynamic_shared(int i) {
  TR_DYNAMIC_SHARED(float, s);
  store_one(s, i);
}
__global__ void store_static_shared(int i) {
  __shared__ float s[40];
  store_one(s, i);
}
__global__ void load_vector_of(const float* p, float* out) { out[threadIdx.x] = kc::load_vector<4>(p, 0).val[0]; }

void launch_one_warp(void (*k)(int), size_t smem, int i) { kc::launch_kernel(k, dim3(1), dim3(32), smem, nullptr, i); }

TEST(CudaEmuAsanDeathTest, OneElementOutOfBoundsIsReported) {
  for (size_t misalign : {0, 8}) {
    cuda_emu::DeviceBuffer buf(10 * sizeof(float), misalign);
    float* p = static_cast<float*>(buf.data());
    kc::launch_kernel(&store_global, dim3(1), dim3(32), 0, nullptr, p, 0);
    kc::launch_kernel(&store_global, dim3(1), dim3(32), 0, nullptr, p, 9);
    EXPECT_DEATH(kc::launch_kernel(&store_global, dim3(1), dim3(32), 0, nullptr, p, 10), "heap-buffer-overflow");
    // Before the start: the allocator's redzone, or the poisoned lead of a misaligned buffer.
    EXPECT_DEATH(kc::launch_kernel(&store_global, dim3(1), dim3(32), 0, nullptr, p, -1),
                 misalign == 0 ? "heap-buffer-overflow" : "use-after-poison");
  }
  launch_one_warp(&store_dynamic_shared, 64, 15);
  EXPECT_DEATH(launch_one_warp(&store_dynamic_shared, 64, 16), "heap-buffer-overflow");
  EXPECT_DEATH(launch_one_warp(&store_dynamic_shared, 64, -1), "heap-buffer-overflow");
  launch_one_warp(&store_static_shared, 0, 0);
  launch_one_warp(&store_static_shared, 0, 39);
  EXPECT_DEATH(launch_one_warp(&store_static_shared, 0, 40), "global-buffer-overflow");
  EXPECT_DEATH(launch_one_warp(&store_static_shared, 0, -1), "global-buffer-overflow");
}

// UBSan checks the alignment of the 16-byte vector accesses (which the launch plans allow only on
// aligned pointers).
TEST(CudaEmuAsanDeathTest, MisalignedVectorAccessIsReported) {
  cuda_emu::DeviceBuffer buf(8 * sizeof(float), 0);
  std::vector<float> out(32);
  const float* p = static_cast<const float*>(buf.data());
  kc::launch_kernel(&load_vector_of, dim3(1), dim3(32), 0, nullptr, p, out.data());
  EXPECT_DEATH(kc::launch_kernel(&load_vector_of, dim3(1), dim3(32), 0, nullptr, p + 1, out.data()),
               "misaligned address");
}
#endif

template <int K>
__global__ void block_sums(const double* in, int per_thread, double* out) {
  __shared__ double smem[32 * K];
  double v[K];
  for (int k = 0; k < K; ++k) {
    v[k] = 0;
    for (int j = 0; j < per_thread; ++j) v[k] += in[(k * blockDim.x + threadIdx.x) * per_thread + j];
  }
  const double total = kc::block_reduce_sum_many<K>(v, smem);
  if (threadIdx.x < K) out[threadIdx.x] = total;
}

TEST(CudaEmu, BlockReduceSumsEveryValueOfEveryThread) {
  constexpr int K = 5;
  for (int threads : {32, 128, 256, 1024}) {
    std::vector<double> in(K * threads * 3), out(K, -1);
    for (size_t i = 0; i < in.size(); ++i) in[i] = std::sin(0.37 * i);
    kc::launch_kernel(&block_sums<K>, dim3(1), dim3(threads), 0, nullptr, in.data(), 3, out.data());
    for (int k = 0; k < K; ++k) {
      double want = 0;
      for (int i = 0; i < threads * 3; ++i) want += in[k * threads * 3 + i];
      EXPECT_NEAR(out[k], want, 1e-12 * threads) << "threads=" << threads << " k=" << k;
    }
  }
}

TEST(CudaEmu, FinishPartialsSumsBlocksInOrder) {
  const int64_t groups = 300, blocks = 7;
  const int K = 3;
  std::vector<float> partials(groups * blocks * K), out(groups * K, -1.f);
  for (size_t i = 0; i < partials.size(); ++i) partials[i] = float(std::cos(0.11 * i));
  kc::launch_finish_partials(partials.data(), groups, blocks, K, out.data(), nullptr);
  for (int64_t g = 0; g < groups; ++g)
    for (int k = 0; k < K; ++k) {
      double want = 0.0;  // the same order, in double as finish_partials sums: bitwise equal
      for (int64_t b = 0; b < blocks; ++b) want += partials[(g * blocks + b) * K + k];
      ASSERT_EQ(out[g * K + k], static_cast<float>(want));
    }
}

}  // namespace
