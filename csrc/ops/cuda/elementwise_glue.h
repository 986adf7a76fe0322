// The ATen glue the three element-wise CUDA families (rational, ERA, PWLU) share: the layout and
// alignment part of the params fill, grad_output in x's strides, the fused backward with its
// fixed-order finish, and the per-parameter slices of the finished gradients. (The CPU glue has
// its own finish helper; the two are meant to become one.)
#pragma once

#include <ATen/ATen.h>
#include <c10/cuda/CUDAException.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <initializer_list>

#include "cuda_utils.cuh"
#include "ops/cuda/launch_utils.h"
#include "ops/grad_finish.h"

namespace torch_rational {
namespace cuda {

// p's layout fields (kernels::cuda::ElementwiseParams) from l.
template <typename P>
void fill_layout(P& p, const Launch& l) {
  p.outer = l.outer;
  p.groups = l.groups;
  p.span = l.span;
}

// Whether every pointer the kernels access with 16-byte vectors (null ones skipped) is 16-byte
// aligned, which the families' launch plans take.
inline bool all_aligned(std::initializer_list<const void*> vector_ptrs) {
  for (const void* q : vector_ptrs)
    if (q != nullptr && !kernels::cuda::is_aligned(q, kernels::cuda::kVecBytes)) return false;
  return true;
}

// grad_output in the strides of xin (the kernels walk both in one memory order): itself when they
// match, else a copy (e.g. the expanded ones_like of .sum().backward()).
inline at::Tensor grad_output_like(const at::Tensor& grad_output, const at::Tensor& xin) {
  if (grad_output.strides() == xin.strides()) return grad_output;
  at::Tensor g = at::empty_like(xin);
  g.copy_(grad_output);
  return g;
}

// The fused backward of p (x, grad_y, out and the launch plan set) and, when total is defined
// (parameter gradients wanted: [groups][K] in the math dtype), the per-block partials
// [groups][blocks_per_group][K] (each written by its block: no zero fill) and their fixed-order
// finish into total. backward / finish: the family's launchers (launch_X_backward / _finish).
template <typename Acc, typename P, typename Backward, typename Finish>
void launch_backward_with_finish(P& p, const at::Tensor& total, int64_t K, cudaStream_t stream, Backward&& backward,
                                 Finish&& finish) {
  at::Tensor partials;
  if (total.defined()) {
    partials = at::empty({p.groups * p.blocks_per_group * K}, total.options());
    p.partials = partials.mutable_data_ptr<Acc>();
    p.param_grad = total.mutable_data_ptr<Acc>();
  }
  backward(p, stream);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  if (total.defined()) {
    finish(p, stream);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
}

}  // namespace cuda
}  // namespace torch_rational
