// Helpers of the emulated kernel tests: element types, the [outer][groups][span] view the CUDA
// glue computes (csrc/ops/cuda/launch_utils.h, make_launch), tolerances and comparisons, and
// run_kernels, the forward + backward + finish every family's test runs its kernels through.
// Include after <torch/torch.h> and cuda_emu.h.
#pragma once

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "cuda_emu.h"
#include "cuda_utils.cuh"

namespace emu_test {

namespace kc = torch_rational::kernels::cuda;

// The CUDA element type of a torch dtype (same bit layout; what the glue's CudaType maps to).
template <typename F>
void dispatch_dtype(torch::Dtype dtype, F&& f) {
  switch (dtype) {
    case torch::kFloat: f(float{}); break;
    case torch::kDouble: f(double{}); break;
    case torch::kHalf: f(__half{}); break;
    case torch::kBFloat16: f(__nv_bfloat16{}); break;
    default: FAIL() << "unsupported dtype " << dtype;
  }
}

template <typename T>
constexpr bool is_double() {
  return std::is_same_v<T, double>;
}

// The dtype of the coefficients the kernels read (OpMath of the element type).
inline torch::Dtype acc_dtype(torch::Dtype dtype) { return dtype == torch::kDouble ? torch::kDouble : torch::kFloat; }

inline std::string dtype_name(torch::Dtype d) {
  switch (d) {
    case torch::kFloat: return "Float32";
    case torch::kDouble: return "Float64";
    case torch::kHalf: return "Float16";
    case torch::kBFloat16: return "BFloat16";
    default: return "Other";
  }
}

// The buffers of one test's launches in emulated device memory (cuda_emu::DeviceBuffer): every
// tensor handed to a kernel is copied into an allocation of exactly its bytes, at its address
// modulo 16 (the launch plans look at the alignment), and copy_back() copies the outputs back.
// Not the tensor's own memory: a view (with_offset, a slice) lies inside a larger allocation,
// where an access past its end would go unnoticed under ASan. Undefined tensors give nullptr.
class DeviceTensors {
 public:
  template <typename T>
  const T* in(const torch::Tensor& t) {
    return static_cast<const T*>(copy(t));
  }
  // Copied in as well: partials and gradients start as NaN so that unwritten slots show.
  template <typename T>
  T* out(const torch::Tensor& t) {
    T* p = static_cast<T*>(copy(t));
    if (p != nullptr) outputs_.emplace_back(t, buffers_.size() - 1);
    return p;
  }
  void copy_back() const {
    for (const auto& [t, i] : outputs_) std::memcpy(t.mutable_data_ptr(), buffers_[i].data(), buffers_[i].bytes());
  }

 private:
  void* copy(const torch::Tensor& t) {
    if (!t.defined()) return nullptr;
    // Dense: the elements are the numel() * itemsize bytes from data_ptr(), whatever the strides.
    TORCH_CHECK(t.is_non_overlapping_and_dense(), "a kernel argument must be non-overlapping and dense");
    const size_t bytes = t.numel() * t.element_size();
    buffers_.emplace_back(bytes, reinterpret_cast<uintptr_t>(t.const_data_ptr()) % kc::kVecBytes);
    std::memcpy(buffers_.back().data(), t.const_data_ptr(), bytes);
    return buffers_.back().data();
  }
  std::vector<cuda_emu::DeviceBuffer> buffers_;
  std::vector<std::pair<torch::Tensor, size_t>> outputs_;  // tensor, index into buffers_
};

// x (non-overlapping and dense) seen as [outer][groups][span] in memory order, groups along
// channel_dim, as the CUDA glue does.
struct View {
  int64_t outer = 0, groups = 1, span = 0;
};

inline View make_view(const torch::Tensor& x, int64_t groups, int64_t channel_dim) {
  View v;
  v.groups = groups;
  const int64_t numel = x.numel();
  v.span = groups > 1 ? x.stride(channel_dim) * (x.size(channel_dim) / groups) : numel;
  v.outer = numel == 0 ? 0 : numel / (groups * v.span);
  return v;
}

inline bool aligned16(std::initializer_list<const void*> ptrs) {
  for (const void* p : ptrs)
    if (p != nullptr && !kc::is_aligned(p, kc::kVecBytes)) return false;
  return true;
}

// A tensor like x (same sizes and strides) whose data starts `offset` elements into a larger
// buffer: a misaligned but dense tensor.
inline torch::Tensor with_offset(const torch::Tensor& x, int64_t offset) {
  auto buf = torch::empty({x.numel() + offset}, x.options());
  auto t = buf.as_strided(x.sizes(), x.strides(), offset);
  t.copy_(x);
  return t;
}

// The misalignment of Layout::Misaligned: not a multiple of the 16-byte vector, but a whole ASan
// granule, so that the device copy's lead can be poisoned (cuda_emu::DeviceBuffer).
constexpr int64_t kMisalignBytes = 8;

// Largest |got - want| relative to 1 + max |want| (both as float64).
inline double rel_err(const torch::Tensor& got, const torch::Tensor& want) {
  const auto w = want.to(torch::kDouble);
  return (got.to(torch::kDouble) - w).abs().max().item<double>() / (1.0 + w.abs().max().item<double>());
}

// Bitwise equality of two tensors of the same dtype and shape (NaNs included).
inline bool bitwise_equal(const torch::Tensor& a, const torch::Tensor& b) {
  if (a.sizes() != b.sizes() || a.scalar_type() != b.scalar_type()) return false;
  const auto ac = a.contiguous(), bc = b.contiguous();
  return std::memcmp(ac.const_data_ptr(), bc.const_data_ptr(), ac.numel() * ac.element_size()) == 0;
}

// The layouts every kernel test runs (x of shape [N, C, H, W] with groups along dim 1, or flat).
enum class Layout {
  Flat,          // G = 1, numel not a multiple of the vector: one vectorised run + tail
  Grouped,       // NCHW, 2 channels per group, H*W = 16: vectorised runs
  GroupedOdd,    // NCHW, H*W = 9: scalar loop (double: vectorised pairs + tails)
  ChannelsLast,  // per-channel groups on channels_last: runs of one element
  Misaligned,    // G = 1, data kMisalignBytes past a 16-byte boundary: scalar loop
  FewGridRows,   // Grouped with gridDim.y = 2 < 3 groups: blocks loop over groups
  ManyBlocks,    // [4, 6, 32, 32], 3 groups, 4 SMs, gridDim.y = 2: several blocks per group, looping
  RowsNhwc,      // per-channel groups on channels_last, 64 channels (the rational rows kernels)
  RowsLinear,    // [batch, 136 features], per-feature groups (rational rows kernels, two column tiles)
};

inline const char* layout_name(Layout l) {
  switch (l) {
    case Layout::Flat: return "Flat";
    case Layout::Grouped: return "Grouped";
    case Layout::GroupedOdd: return "GroupedOdd";
    case Layout::ChannelsLast: return "ChannelsLast";
    case Layout::Misaligned: return "Misaligned";
    case Layout::FewGridRows: return "FewGridRows";
    case Layout::ManyBlocks: return "ManyBlocks";
    case Layout::RowsNhwc: return "RowsNhwc";
    case Layout::RowsLinear: return "RowsLinear";
  }
  return "?";
}

// Parameter values the families' kernel tests share (INSTANTIATE_TEST_SUITE_P).
inline const auto kAllDtypes = ::testing::Values(torch::kFloat, torch::kDouble, torch::kHalf, torch::kBFloat16);
// The dtypes of the layout sweeps: three element sizes, three vector widths.
inline const auto kLayoutSweepDtypes = ::testing::Values(torch::kFloat, torch::kHalf, torch::kDouble);
// The layouts that change only the launch shape: a tail, the scalar loop, a misaligned pointer,
// blocks looping over groups, several blocks per group.
inline const auto kLaunchShapeLayouts =
    ::testing::Values(Layout::Flat, Layout::GroupedOdd, Layout::Misaligned, Layout::FewGridRows, Layout::ManyBlocks);

struct Case {
  torch::Tensor x;      // in the layout under test, dtype under test
  int64_t groups;       // along dim 1
  int grid_rows;        // 0: as planned, else gridDim.y override
  int multiprocessors;  // the SM count the launch plan assumes
};

// x64_flat: a 1-D float64 sample (a few thousand elements); x64_4d: [2, 6, 4, 4] float64.
inline Case make_case(Layout layout, torch::Dtype dtype, const torch::Tensor& x64_flat, const torch::Tensor& x64_4d) {
  switch (layout) {
    case Layout::Flat: return {x64_flat.to(dtype), 1, 0, 2};
    case Layout::Grouped: return {x64_4d.to(dtype), 3, 0, 1};
    case Layout::GroupedOdd: return {x64_4d.narrow(3, 0, 3).narrow(2, 0, 3).contiguous().to(dtype), 3, 0, 1};
    case Layout::ChannelsLast:
      return {x64_4d.narrow(3, 0, 3).to(dtype).contiguous(torch::MemoryFormat::ChannelsLast), 6, 0, 1};
    case Layout::Misaligned:
      return {with_offset(x64_flat.to(dtype), kMisalignBytes / torch::elementSize(dtype)), 1, 0, 2};
    case Layout::FewGridRows: return {x64_4d.to(dtype), 3, 2, 1};
    case Layout::ManyBlocks: return {x64_4d.repeat({2, 1, 8, 8}).to(dtype), 3, 2, 4};
    case Layout::RowsNhwc:
      return {(torch::randn({3, 64, 5, 3}, torch::kDouble) * x64_4d.std().item<double>())
                  .to(dtype)
                  .contiguous(torch::MemoryFormat::ChannelsLast),
              64, 0, 1};
    case Layout::RowsLinear:
      return {(torch::randn({37, 136}, torch::kDouble) * x64_4d.std().item<double>()).to(dtype), 136, 0, 1};
  }
  return {};
}

// Runs f once with each fiber schedule and restores the default.
struct ScheduleGuard {
  explicit ScheduleGuard(cuda_emu::Schedule s) { cuda_emu::set_schedule(s); }
  ~ScheduleGuard() { cuda_emu::set_schedule(cuda_emu::Schedule::Forward); }
};

// What one emulated forward + backward + finish gives back (run_kernels).
struct KernelRun {
  torch::Tensor y, grad_x;      // grad_x undefined unless requested
  torch::Tensor param_grad;     // [groups][the family's gradient slots]; undefined unless requested
  bool vectorised = false;      // the forward's plan took the 16-byte runs
  bool forward_rows = false;    // the forward's plan took the rows kernels
  bool backward_rows = false;   // the backward's plan took the rows kernels
  int64_t backward_blocks = 0;  // the backward's blocks per group: more than one makes the finish sum partials
};

// A family's params P (an ElementwiseParams<T>) with the launch fields every family shares filled
// as the CUDA glue does (make_launch): the element pointers (grad_y null in the forward) and s.x
// seen as [outer][groups][span].
template <typename P, typename T>
P elementwise_params(const Case& s, const T* x, const T* grad_y, T* out) {
  const View v = make_view(s.x, s.groups, 1);
  P p;
  p.x = x;
  p.grad_y = grad_y;
  p.out = out;
  p.outer = v.outer;
  p.groups = v.groups;
  p.span = v.span;
  return p;
}

// The Case's gridDim.y override, applied after the plan (it leaves the plan's other choices alone).
template <typename T>
void override_grid_rows(kc::ElementwiseParams<T>& p, const Case& s) {
  if (s.grid_rows > 0) p.grid_groups = s.grid_rows;
}

// Forward, then the fused backward + finish, of one family's kernels on the emulator with the
// launch shapes the glue computes. want_x / want_params as the glue's output_mask; the partials
// and param_grad start as NaN, so a slot no block writes shows up in param_grad. Kernels is the
// family's side of the launch:
//   int64_t grad_slots() const                   parameter-gradient slots per group (K)
//   template <typename T> P params(const Case&, DeviceTensors&, const T* x, const T* grad_y, T* out) const
//                                                the filled and planned params (grad_y null: forward);
//                                                run_kernels then applies the Case's gridDim.y override
//   template <typename P> static void forward(const P&), backward(const P&), finish(const P&)
template <typename Kernels>
KernelRun run_kernels(const Kernels& kernels, const Case& s, const torch::Tensor& gy, bool want_x, bool want_params) {
  KernelRun r;
  dispatch_dtype(s.x.scalar_type(), [&](auto tag) {
    using T = decltype(tag);
    using acc_t = typename kc::OpMath<T>::type;
    DeviceTensors dev;
    const T* x = dev.in<T>(s.x);
    r.y = torch::empty_like(s.x);
    auto pf = kernels.template params<T>(s, dev, x, nullptr, dev.out<T>(r.y));
    override_grid_rows(pf, s);
    r.vectorised = pf.vectorised;
    r.forward_rows = pf.rows;
    Kernels::forward(pf);

    // grad_y in x's dtype and strides, as the glue's checks require.
    torch::Tensor gin = gy.to(s.x.scalar_type());
    if (gin.strides() != s.x.strides()) gin = torch::empty_like(s.x).copy_(gin);
    if (want_x) r.grad_x = torch::empty_like(s.x);
    auto pb = kernels.template params<T>(s, dev, x, dev.in<T>(gin), dev.out<T>(r.grad_x));
    override_grid_rows(pb, s);
    r.backward_rows = pb.rows;
    r.backward_blocks = pb.blocks_per_group;
    torch::Tensor partials;
    if (want_params) {
      const int64_t K = kernels.grad_slots();
      const auto math = torch::TensorOptions().dtype(acc_dtype(s.x.scalar_type()));  // acc_t's
      partials = torch::full({s.groups * pb.blocks_per_group * K}, std::nan(""), math);
      r.param_grad = torch::full({s.groups, K}, std::nan(""), math);
      pb.partials = dev.out<acc_t>(partials);
      pb.param_grad = dev.out<acc_t>(r.param_grad);
    }
    Kernels::backward(pb);
    if (want_params) Kernels::finish(pb);
    dev.copy_back();
  });
  return r;
}

// Whether s suits the rows kernels: span-1 layouts of several rows whose groups fill the forward's
// lanes (4 per thread, 2 for double), on aligned data.
inline bool suits_rows_kernels(const Case& s, Layout layout) {
  const View view = make_view(s.x, s.groups, 1);
  const int lanes = s.x.scalar_type() == torch::kDouble ? 2 : 4;
  return view.span == 1 && view.outer > 1 && s.groups % lanes == 0 && layout != Layout::Misaligned;
}

// The layout exercises the path it is meant for: the vectorised runs (the rows kernels are
// vectorised too) or the scalar loop; the rows kernels in both directions exactly when want_rows;
// on the layouts with the most elements per group (Flat, Misaligned, ManyBlocks), several
// backward blocks, so that the finish sums several partials.
inline void expect_intended_path(const KernelRun& r, Layout layout, bool want_rows) {
  const bool want_vec = layout == Layout::Flat || layout == Layout::Grouped || layout == Layout::FewGridRows ||
                        layout == Layout::ManyBlocks ||
                        (layout == Layout::GroupedOdd && r.y.scalar_type() == torch::kDouble) || want_rows;
  EXPECT_EQ(r.vectorised, want_vec) << "the layout does not exercise the intended path";
  EXPECT_EQ(r.forward_rows && r.backward_rows, want_rows) << "the layout does not exercise the intended path";
  if (layout == Layout::Flat || layout == Layout::Misaligned || layout == Layout::ManyBlocks)
    EXPECT_GT(r.backward_blocks, 1) << "the finish should sum several block partials";
}

// The checks every family's kernel test ends with. run(want_x, want_params): the test's forward +
// backward + finish with that output mask (run_kernels); full: run(true, true) under the default
// schedule.
//   - reverse fiber order gives bitwise the same outputs (no race on shared memory, fixed
//     reduction order);
//   - partial backward requests (grad_x only, parameter gradients only) give the same bits as the
//     full one.
template <typename Run>
void expect_reproducible_bits(Run&& run, const KernelRun& full) {
  {
    const ScheduleGuard guard(cuda_emu::Schedule::Reverse);
    const KernelRun rr = run(true, true);
    EXPECT_TRUE(bitwise_equal(full.y, rr.y));
    EXPECT_TRUE(bitwise_equal(full.grad_x, rr.grad_x));
    EXPECT_TRUE(bitwise_equal(full.param_grad, rr.param_grad));
  }
  const KernelRun only_x = run(true, false);
  const KernelRun only_p = run(false, true);
  EXPECT_TRUE(bitwise_equal(full.grad_x, only_x.grad_x));
  EXPECT_TRUE(bitwise_equal(full.param_grad, only_p.param_grad));
}

// The parameters of the families whose kernels take one integer size (ERA's n, PWLU's N), and
// their test names: <dtype>N<size><layout>.
using DtypeSizeLayout = std::tuple<torch::Dtype, int, Layout>;

inline std::string dtype_size_layout_name(const ::testing::TestParamInfo<DtypeSizeLayout>& info) {
  const auto& [dtype, n, layout] = info.param;
  return dtype_name(dtype) + "N" + std::to_string(n) + layout_name(layout);
}

}  // namespace emu_test
