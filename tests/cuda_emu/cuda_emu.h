// A small CUDA execution emulator for running the real kernels of kernels/*.cuh on a machine
// without a GPU (CI here has nvcc but no device). It is for correctness only, never for speed.
//
// How: the kernel headers are compiled by the host compiler (g++) with CUDA's own headers for
// the types (__half, __nv_bfloat16, dim3, cudaStream_t). Every thread of a block is a fiber
// (a stack of its own; switched by a few instructions on x86-64, by ucontext elsewhere) of one
// OS thread; the fibers of a block run cooperatively until they reach a
// synchronisation point:
//   __syncthreads()         a barrier over the block (threads that have returned count as arrived)
//   __shfl_xor_sync(...)     a warp exchange: every lane publishes its value, waits for all 32
//                           lanes of its warp, reads its partner's, waits again
// Blocks of a grid run one after another, so a `__shared__` variable can simply be a function
// `static` (one copy, used by one block at a time). Dynamic shared memory is one buffer per launch,
// refilled with 0xFF bytes (NaN for float/double) before every block, so a kernel that reads
// bins it never wrote produces NaN instead of passing by luck.
//
// Race exposure: Schedule::Reverse runs the fibers of each block in reverse thread order between
// synchronisation points. A kernel that reads shared memory written by another thread without a
// barrier in between gives different results in the two orders; the tests run both.
//
// Deadlock (a barrier or shuffle some threads of the block never reach: divergent
// __syncthreads, early return before a reduction) is detected and reported with the block index.
//
// Not emulated: warp-synchronous code without *_sync intrinsics, partial-warp shuffle masks,
// atomics, cooperative groups, streams (launches run at once, in order). The kernels here use
// none of these; the shim fails loudly (a message and abort) if a mask other than all lanes or a
// block size that is not a multiple of 32 reaches a shuffle.
//
// Out-of-bounds accesses: the *_asan test binaries (CMakeLists.txt here) compile the kernels and
// this emulator with AddressSanitizer + UBSan. For that, every memory a kernel touches is a guarded
// object of exactly its size: global buffers are DeviceBuffers (below), dynamic shared memory is
// a heap block per launch, a static `__shared__` array is a global with ASan redzones, and the
// fiber switches are announced to ASan (switch_context).
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <ucontext.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <new>
#include <stdexcept>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#if defined(__SANITIZE_ADDRESS__)
#define CUDA_EMU_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define CUDA_EMU_ASAN 1
#endif
#endif
#ifdef CUDA_EMU_ASAN
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
// A static __shared__ array (a .bss global) has an ASan redzone after it, and before it the
// redzone of the global before, unless it is the first of this file's .bss: then it follows the
// previous object file's unguarded bytes (crtbegin.o's). Hence 32 poisoned bytes first in .bss
// (GCC emits top-level asm before any variable).
__asm__(".bss\n.p2align 5\ncuda_emu_bss_guard:\n.zero 32\n.previous");
extern "C" char cuda_emu_bss_guard[];
__attribute__((constructor)) static void cuda_emu_poison_bss_guard() {
  ASAN_POISON_MEMORY_REGION(cuda_emu_bss_guard, 32);
}
#endif

// Float overloads of the math functions the kernels call unqualified (fabs(float) must stay
// float, as on the device).
using std::fabs;
using std::sqrt;
using std::exp;
using std::log;

// The CUDA keywords, for the host compiler. __shared__ becomes a function static (see above).
// Kernels are `static`: a function static of a template with external linkage is a COMDAT global,
// which GCC's ASan leaves without redzones; with internal linkage the __shared__ arrays get them.
#undef __global__
#undef __device__
#undef __host__
#undef __shared__
#undef __constant__
#undef __launch_bounds__
#define __global__ static
#define __device__
#define __host__
#define __shared__ static
#define __constant__ static
#define __launch_bounds__(...)
#ifndef __noinline__
#define __noinline__ __attribute__((noinline))
#endif
#ifndef __forceinline__
#define __forceinline__ inline __attribute__((always_inline))
#endif

#define TR_CUDA_EMULATOR 1

// ------------------------------------------------------------------------------------------------
// Fiber switch. On x86-64 a minimal switch of the callee-saved registers (no system call: glibc's
// swapcontext saves the signal mask with one, which made half of the emulator's run time);
// elsewhere ucontext.
#if defined(__x86_64__) && !defined(CUDA_EMU_USE_UCONTEXT)
#define CUDA_EMU_ASM_SWITCH 1
// cuda_emu_switch(&save_sp, new_sp): pushes rbp, rbx, r12-r15 and the SSE/x87 control words on
// the current stack, stores rsp in *save_sp, loads new_sp and pops the same from there. Weak, so
// every translation unit that includes this header may define it.
__asm__(R"(
  .text
  .weak cuda_emu_switch
  .type cuda_emu_switch, @function
cuda_emu_switch:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  subq $8, %rsp
  stmxcsr (%rsp)
  fnstcw 4(%rsp)
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  ldmxcsr (%rsp)
  fldcw 4(%rsp)
  addq $8, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
  .size cuda_emu_switch, .-cuda_emu_switch
)");
extern "C" void cuda_emu_switch(void** save_sp, void* new_sp);
#endif

namespace cuda_emu {

enum class Schedule { Forward, Reverse };

// ASan's view of memory: poisoned bytes are reported when accessed. Without ASan there is no
// shadow memory to mark, so both do nothing.
#ifdef CUDA_EMU_ASAN
inline void poison(const void* p, size_t bytes) { ASAN_POISON_MEMORY_REGION(p, bytes); }
inline void unpoison(const void* p, size_t bytes) { ASAN_UNPOISON_MEMORY_REGION(p, bytes); }
#else
inline void poison(const void*, size_t) {}
inline void unpoison(const void*, size_t) {}
#endif

// A context's stack and, under ASan, its saved fake stack: what ASan must be told about the
// stack a switch goes to (switch_context). The scheduler's own (OS thread) stack is learnt when
// the first fiber starts (fiber_started).
struct StackInfo {
  const void* bottom = nullptr;
  size_t size = 0;
  void* fake_stack = nullptr;
};

#ifdef CUDA_EMU_ASM_SWITCH
struct Context : StackInfo {
  void* sp = nullptr;
};
inline void raw_switch(Context& from, Context& to) { cuda_emu_switch(&from.sp, to.sp); }
// A fresh fiber whose first switch-in "returns" into entry (which must never return).
inline void make_context(Context& c, std::vector<char>& stack, void (*entry)(), Context* /*link*/) {
  c.bottom = stack.data();
  c.size = stack.size();
  constexpr int kWords = 9;  // return slot, entry, 6 registers, control words: popped by the switch
  uintptr_t top = reinterpret_cast<uintptr_t>(stack.data() + stack.size()) & ~uintptr_t(15);
  auto* sp = reinterpret_cast<uint64_t*>(top);
  // A reused stack may still carry the poisoned redzones of its last fiber's outermost frame
  // (fiber_entry never returns); this initial frame is written over them.
  unpoison(sp - kWords, kWords * sizeof(uint64_t));
  *--sp = 0;                                     // as if entry had been called: rsp % 16 == 8
  *--sp = reinterpret_cast<uint64_t>(entry);     // the `ret` of cuda_emu_switch lands here
  for (int r = 0; r < 6; ++r) *--sp = 0;         // rbp, rbx, r12-r15
  --sp;
  uint32_t mxcsr;
  uint16_t fpucw;
  __asm__ volatile("stmxcsr %0" : "=m"(mxcsr));
  __asm__ volatile("fnstcw %0" : "=m"(fpucw));
  std::memcpy(sp, &mxcsr, 4);
  std::memcpy(reinterpret_cast<char*>(sp) + 4, &fpucw, 2);
  c.sp = sp;
}
#else
struct Context : StackInfo {
  ucontext_t uc;
};
inline void raw_switch(Context& from, Context& to) { swapcontext(&from.uc, &to.uc); }
inline void make_context(Context& c, std::vector<char>& stack, void (*entry)(), Context* link) {
  c.bottom = stack.data();
  c.size = stack.size();
  getcontext(&c.uc);
  c.uc.uc_stack.ss_sp = stack.data();
  c.uc.uc_stack.ss_size = stack.size();
  c.uc.uc_link = &link->uc;
  makecontext(&c.uc, entry, 0);
}
#endif

// Switches from the running context to `to`; returns when something switches back. Under ASan
// the switch is announced before (the stack that runs next, so that ASan attributes frames to
// the right stack and its no-return handling, before an abort or a throw, unpoisons that stack)
// and completed after; `from_exits`: `from` never runs again, its fake stack is released.
inline void switch_context(Context& from, Context& to, bool from_exits = false) {
#ifdef CUDA_EMU_ASAN
  __sanitizer_start_switch_fiber(from_exits ? nullptr : &from.fake_stack, to.bottom, to.size);
#else
  (void)from_exits;
#endif
  raw_switch(from, to);
#ifdef CUDA_EMU_ASAN
  __sanitizer_finish_switch_fiber(from.fake_stack, nullptr, nullptr);
#endif
}

// The first thing a new fiber runs: completes the switch that started it (it did not return
// through switch_context) and records the stack it came from, the scheduler's.
inline void fiber_started(Context& scheduler) {
#ifdef CUDA_EMU_ASAN
  __sanitizer_finish_switch_fiber(nullptr, &scheduler.bottom, &scheduler.size);
#else
  (void)scheduler;
#endif
}

struct State {
  dim3 grid{1, 1, 1}, block{1, 1, 1};
  uint3 block_idx{0, 0, 0};
  std::vector<uint3> thread_idx;  // per fiber
  int current = 0;                // running fiber (linear thread index)
  int num_threads = 0;
  Context main_ctx{};
  std::vector<Context> ctx;
  std::vector<std::vector<char>> stacks;
  std::vector<char> done;
  int done_count = 0;
  // Block barrier.
  int block_arrived = 0;
  uint64_t block_generation = 0;
  // Warp exchange barriers (one per warp) and the value slots (16 bytes per thread).
  std::vector<int> warp_arrived;
  std::vector<uint64_t> warp_generation;
  std::vector<unsigned char> slots;
  uint64_t progress = 0;  // arrivals + completions: a round without any is a deadlock
  std::function<void()> body;
  std::vector<unsigned char> dynamic_shared;
  Schedule schedule = Schedule::Forward;
  int64_t launches = 0;
  size_t stack_bytes = 256 * 1024;
};

inline State& state() {
  static State s;
  return s;
}

inline void set_schedule(Schedule s) { state().schedule = s; }
inline int64_t launches() { return state().launches; }

[[noreturn]] inline void fail(const char* what) {
  const State& s = state();
  std::fprintf(stderr, "cuda_emu: %s (block %u,%u,%u thread %d of %d)\n", what, s.block_idx.x, s.block_idx.y,
               s.block_idx.z, s.current, s.num_threads);
  std::abort();
}

inline const uint3& thread_idx() { return state().thread_idx[state().current]; }
inline const uint3& block_idx() { return state().block_idx; }
inline const dim3& block_dim() { return state().block; }
inline const dim3& grid_dim() { return state().grid; }
inline unsigned char* dynamic_shared() { return state().dynamic_shared.data(); }

inline void yield() {
  State& s = state();
  switch_context(s.ctx[s.current], s.main_ctx);
}

inline void syncthreads() {
  State& s = state();
  const uint64_t gen = s.block_generation;
  ++s.progress;
  if (++s.block_arrived == s.num_threads - s.done_count) {
    s.block_arrived = 0;
    ++s.block_generation;
    return;
  }
  while (s.block_generation == gen) yield();
}

inline void warp_barrier(int warp) {
  State& s = state();
  const uint64_t gen = s.warp_generation[warp];
  ++s.progress;
  if (++s.warp_arrived[warp] == 32) {
    s.warp_arrived[warp] = 0;
    ++s.warp_generation[warp];
    return;
  }
  while (s.warp_generation[warp] == gen) yield();
}

template <typename T>
T shfl(unsigned mask, T v, int src_of_lane_xor, bool is_xor) {
  static_assert(sizeof(T) <= 16, "cuda_emu: shuffle of a type larger than 16 bytes");
  State& s = state();
  if (mask != 0xffffffffu) fail("shuffle with a partial lane mask is not emulated");
  if (s.num_threads % 32 != 0) fail("shuffle in a block whose size is not a multiple of 32");
  const int t = s.current, lane = t % 32, warp = t / 32;
  std::memcpy(&s.slots[16 * t], &v, sizeof(T));
  warp_barrier(warp);
  int src = is_xor ? (lane ^ src_of_lane_xor) : lane + src_of_lane_xor;
  if (src < 0 || src > 31) src = lane;  // __shfl_down_sync out of range keeps the own value
  T r;
  std::memcpy(&r, &s.slots[16 * (warp * 32 + src)], sizeof(T));
  warp_barrier(warp);
  return r;
}

inline void fiber_entry() {
  State& s = state();
  fiber_started(s.main_ctx);
  s.body();
  s.done[s.current] = 1;
  ++s.done_count;
  ++s.progress;
  // A barrier waiting for the threads still running may now be complete (exited threads count
  // as arrived).
  if (s.block_arrived > 0 && s.block_arrived == s.num_threads - s.done_count) {
    s.block_arrived = 0;
    ++s.block_generation;
  }
  // Back to the scheduler for good (a finished fiber is never resumed).
  switch_context(s.ctx[s.current], s.main_ctx, /*from_exits=*/true);
  fail("a finished fiber was resumed");
}

// Runs one block: every fiber until it returns.
inline void run_block() {
  State& s = state();
  const int n = s.num_threads;
  s.done.assign(n, 0);
  s.done_count = 0;
  s.block_arrived = 0;
  s.warp_arrived.assign((n + 31) / 32, 0);
  s.warp_generation.assign((n + 31) / 32, 0);
  for (int t = 0; t < n; ++t) make_context(s.ctx[t], s.stacks[t], fiber_entry, &s.main_ctx);
  while (s.done_count < n) {
    const uint64_t before = s.progress;
    for (int i = 0; i < n; ++i) {
      const int t = s.schedule == Schedule::Forward ? i : n - 1 - i;
      if (s.done[t]) continue;
      s.current = t;
      switch_context(s.main_ctx, s.ctx[t]);
    }
    if (s.progress == before) fail("deadlock: threads wait at a barrier or shuffle that others never reach");
  }
}

// kernel<<<grid, block, dynamic_smem>>>(args...), run to completion.
template <typename... KArgs, typename... Args>
void launch(void (*kernel)(KArgs...), dim3 grid, dim3 block, size_t dynamic_smem, Args&&... args) {
  State& s = state();
  if (grid.x == 0 || grid.y == 0 || grid.z == 0 || block.x == 0 || block.y == 0 || block.z == 0)
    fail("invalid launch configuration (a zero dimension)");
  if (grid.y > 65535 || grid.z > 65535) fail("invalid launch configuration (gridDim.y or .z > 65535)");
  const int64_t threads = int64_t(block.x) * block.y * block.z;
  if (threads > 1024) fail("invalid launch configuration (more than 1024 threads per block)");
  if (dynamic_smem > 48 * 1024) fail("dynamic shared memory above the 48 KiB default limit");
  ++s.launches;
  // Arguments are copied once, as a CUDA launch copies them to the parameter space.
  std::tuple<std::decay_t<KArgs>...> params(std::forward<Args>(args)...);
  s.grid = grid;
  s.block = block;
  s.num_threads = static_cast<int>(threads);
  s.thread_idx.resize(threads);
  for (int64_t t = 0; t < threads; ++t)
    s.thread_idx[t] = uint3{unsigned(t % block.x), unsigned(t / block.x % block.y), unsigned(t / (block.x * block.y))};
  s.ctx.resize(threads);
  if (s.stacks.size() < size_t(threads)) s.stacks.resize(threads);
  for (auto& st : s.stacks)
    if (st.size() != s.stack_bytes) st.assign(s.stack_bytes, 0);
  s.slots.assign(16 * threads, 0);
  s.body = [&] { std::apply(kernel, params); };
  // A heap block of exactly the launch's size (not a buffer kept across launches): an access
  // past its end is an ASan report, not a read of the previous launch's bytes.
  s.dynamic_shared = std::vector<unsigned char>(dynamic_smem);
  for (unsigned z = 0; z < grid.z; ++z)
    for (unsigned y = 0; y < grid.y; ++y)
      for (unsigned x = 0; x < grid.x; ++x) {
        s.block_idx = uint3{x, y, z};
        std::fill(s.dynamic_shared.begin(), s.dynamic_shared.end(), 0xFF);
        run_block();
      }
  s.body = nullptr;
}

// Global (device) memory for a kernel's buffers: an allocation of exactly `bytes` per buffer, so
// that under ASan an access one element past its end hits the allocator's redzone. The data
// start `misalign` bytes into the allocation (0, or 8: a pointer 8- but not 16-byte aligned, which
// the launch plans must send to their scalar paths); those bytes are poisoned, so an access one
// element before the start is reported as well. (ASan tracks whole 8-byte granules from an
// allocation's start: a start 2 or 4 bytes past a 16-byte boundary could not be guarded.)
class DeviceBuffer {
 public:
  DeviceBuffer(size_t bytes, size_t misalign) : misalign_(misalign), bytes_(bytes) {
    if (misalign != 0 && misalign != 8)
      throw std::invalid_argument("cuda_emu::DeviceBuffer: misalign must be 0 or 8 bytes (an ASan granule)");
    base_ = static_cast<char*>(::operator new(misalign + bytes, std::align_val_t(16)));
    poison(base_, misalign);
  }
  DeviceBuffer(DeviceBuffer&& o) noexcept : base_(o.base_), misalign_(o.misalign_), bytes_(o.bytes_) { o.base_ = nullptr; }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(DeviceBuffer&&) = delete;
  ~DeviceBuffer() {
    if (base_ == nullptr) return;
    unpoison(base_, misalign_);
    ::operator delete(base_, std::align_val_t(16));
  }
  void* data() const { return base_ + misalign_; }
  size_t bytes() const { return bytes_; }

 private:
  char* base_;
  size_t misalign_, bytes_;
};

}  // namespace cuda_emu

// The built-in variables and intrinsics the kernels use.
#define threadIdx (::cuda_emu::thread_idx())
#define blockIdx (::cuda_emu::block_idx())
#define blockDim (::cuda_emu::block_dim())
#define gridDim (::cuda_emu::grid_dim())
#define __syncthreads() ::cuda_emu::syncthreads()

template <typename T>
inline T __shfl_xor_sync(unsigned mask, T v, int lane_mask, int width = 32) {
  if (width != 32) ::cuda_emu::fail("__shfl_xor_sync with width != 32 is not emulated");
  return ::cuda_emu::shfl(mask, v, lane_mask, true);
}
template <typename T>
inline T __shfl_down_sync(unsigned mask, T v, unsigned delta, int width = 32) {
  if (width != 32) ::cuda_emu::fail("__shfl_down_sync with width != 32 is not emulated");
  return ::cuda_emu::shfl(mask, v, static_cast<int>(delta), false);
}
