// Helpers of the emulated kernel tests: element types, the [outer][groups][span] view the CUDA
// glue computes (csrc/ops/cuda/launch_utils.h, make_launch), tolerances and comparisons.
// Include after <torch/torch.h> and cuda_emu.h.
#pragma once

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cstdint>
#include <string>

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

template <typename T>
const T* cptr(const torch::Tensor& t) {
  return t.defined() ? reinterpret_cast<const T*>(t.const_data_ptr()) : nullptr;
}
template <typename T>
T* mptr(torch::Tensor& t) {
  return t.defined() ? reinterpret_cast<T*>(t.mutable_data_ptr()) : nullptr;
}

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
// buffer: offset 1 makes a misaligned but dense tensor.
inline torch::Tensor with_offset(const torch::Tensor& x, int64_t offset) {
  auto buf = torch::empty({x.numel() + offset + 8}, x.options());
  auto t = buf.as_strided(x.sizes(), x.strides(), offset);
  t.copy_(x);
  return t;
}

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

// Runs f once with each fiber schedule and restores the default.
struct ScheduleGuard {
  explicit ScheduleGuard(cuda_emu::Schedule s) { cuda_emu::set_schedule(s); }
  ~ScheduleGuard() { cuda_emu::set_schedule(cuda_emu::Schedule::Forward); }
};

}  // namespace emu_test
