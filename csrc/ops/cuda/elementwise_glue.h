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

// The dtype the kernels compute in for x: float64 for float64 x, float32 for half, bfloat16 and
// float32 x. The parameters are read, and their gradients reduced, in it.
inline at::ScalarType math_dtype(const at::Tensor& x) {
  return x.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
}

// What a family's CUDA backward fills: grad_x in the kernel layout of x ((0,) when not wanted) and,
// when a parameter gradient is wanted, the [groups][K] table the kernels reduce into (math dtype;
// launch_backward_with_finish fills it, cut_param_grads cuts it into the parameters' gradients).
struct BackwardOutputs {
  bool want_x;
  at::Tensor grad_x;
  at::Tensor param_table;  // undefined when no parameter gradient is wanted

  BackwardOutputs(const Launch& l, const at::Tensor& x, bool want_x_, bool want_params, int64_t K)
      : want_x(want_x_), grad_x(want_x_ ? at::empty_like(l.xin) : at::empty({0}, x.options())) {
    if (want_params) param_table = at::zeros({l.groups, K}, x.options().dtype(math_dtype(x)));
  }

  // Whether the kernels have anything to do: x is not empty and some gradient is wanted.
  bool launch_needed(const Launch& l) const {
    return l.xin.numel() > 0 && (want_x || param_table.defined());
  }

  // Where the kernels write grad_x: nullptr when it is not wanted.
  template <typename T, typename scalar_t>
  T* grad_x_out() const {
    return want_x ? reinterpret_cast<T*>(grad_x.mutable_data_ptr<scalar_t>()) : nullptr;
  }
};

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
