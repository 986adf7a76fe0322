// CUDA glue of the PWLU ops: argument checks, device guard, layout, launch on the current stream.
// The kernels are in kernels/pwlu.cuh (no ATen there).
//
// Layout as on CPU: any non-overlapping dense tensor is processed in memory order without a copy
// (memory = [outer][groups][span], span = stride(channel_dim) * channels_per_group); other
// tensors are made contiguous first. Runs whose length is not a multiple of the 16-byte vector,
// or a pointer that is not 16-byte aligned, use the scalar loop (correct, without 16-byte accesses).
//
// The bounds are checked (finite, L < R) on the host: that copies them from the device, i.e.
// synchronises with the current stream once per call. It is the price of a clear error instead of
// a silent division by zero; the module's bounds are tiny, so the copy itself is negligible.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <torch/library.h>

#include <algorithm>
#include <initializer_list>

#include "ops/pwlu_utils.h"
#include "ops/cuda/elementwise_glue.h"
#include "ops/cuda/launch_utils.h"
#include "ops/registration.h"
#include "pwlu.cuh"

namespace torch_rational::cuda {
namespace {

namespace kc = kernels::cuda;

// Checks the bounds (finite, L < R) as the kernels use them: also after rounding to the math type
// (float for half/bf16/float x), since distinct float64 bounds can round to the same float.
void check_bounds_in_math_type(const at::Tensor& bounds, int64_t groups, at::ScalarType x_dtype) {
  const at::Tensor bounds64 = checked_pwlu_bounds(bounds, groups);
  if (x_dtype == at::kDouble) return;
  const double* b = bounds64.const_data_ptr<double>();
  for (int64_t g = 0; g < groups; ++g)
    TORCH_CHECK_VALUE(static_cast<float>(b[2 * g]) < static_cast<float>(b[2 * g + 1]), "torch_rational.pwlu: bounds[",
                      g, "] = (", b[2 * g], ", ", b[2 * g + 1],
                      ") are equal after rounding to float32, the math type of this x");
}

// The parameters as the kernels read them: contiguous, in the math dtype. Held by the caller
// until the launch is queued.
struct MathParams {
  at::Tensor heights, bounds, slopes;
  MathParams(const at::Tensor& h, const at::Tensor& b, const at::Tensor& s, at::ScalarType acc_dtype)
      : heights(h.detach().to(acc_dtype).contiguous()),
        bounds(b.detach().to(acc_dtype).contiguous()),
        slopes(s.detach().to(acc_dtype).contiguous()) {}
};

template <typename T>
void fill_pwlu_params(kc::PwluCudaParams<T>& p, const Launch& l, const PwluConfig& cfg, const MathParams& params,
                      int device, bool backward, std::initializer_list<const void*> ptrs) {
  using acc_t = typename kc::OpMath<T>::type;
  fill_layout(p, l);
  p.heights = params.heights.const_data_ptr<acc_t>();
  p.bounds = params.bounds.const_data_ptr<acc_t>();
  p.slopes = params.slopes.const_data_ptr<acc_t>();
  p.n = cfg.n;
  kc::plan_pwlu_launch(p, backward, all_aligned(ptrs), multiprocessor_count(device));
}

at::Tensor pwlu_forward_cuda(const at::Tensor& x, const at::Tensor& heights, const at::Tensor& bounds,
                             const at::Tensor& slopes, int64_t channel_dim) {
  const PwluConfig cfg = check_pwlu_args(x, heights, bounds, slopes, channel_dim);
  TORCH_CHECK_VALUE(x.is_cuda(), "torch_rational.pwlu: x must be a CUDA tensor for the CUDA kernel, got ",
                    x.device());
  const c10::cuda::CUDAGuard guard(x.device());
  check_bounds_in_math_type(bounds, cfg.groups, x.scalar_type());
  const Launch l = make_launch(x, cfg);
  at::Tensor y = at::empty_like(l.xin);
  if (l.xin.numel() == 0) return y;
  const auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, l.xin.scalar_type(), "pwlu_forward_cuda", [&] {
    using T = typename CudaType<scalar_t>::type;
    const MathParams params(heights, bounds, slopes, math_dtype(x));
    kc::PwluCudaParams<T> p;
    p.x = reinterpret_cast<const T*>(l.xin.const_data_ptr<scalar_t>());
    p.out = reinterpret_cast<T*>(y.mutable_data_ptr<scalar_t>());
    fill_pwlu_params<T>(p, l, cfg, params, x.get_device(), /*backward=*/false, {p.x, p.out});
    kc::launch_pwlu_forward<T>(p, stream);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return y;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> pwlu_backward_cuda(
    const at::Tensor& grad_output, const at::Tensor& x, const at::Tensor& heights, const at::Tensor& bounds,
    const at::Tensor& slopes, int64_t channel_dim, std::array<bool, 4> output_mask) {
  // Every argument against x first (a CUDA grad_output with a CPU x lands here too: the error
  // names grad_output), then x itself.
  const PwluConfig cfg = check_pwlu_backward_args(grad_output, x, heights, bounds, slopes, channel_dim);
  TORCH_CHECK_VALUE(x.is_cuda(), "torch_rational.pwlu_backward: x must be a CUDA tensor for the CUDA kernel, got ",
                    x.device());
  const c10::cuda::CUDAGuard guard(x.device());
  check_bounds_in_math_type(bounds, cfg.groups, x.scalar_type());
  const Launch l = make_launch(x, cfg);
  const at::Tensor gin = grad_output_like(grad_output, l.xin);
  const int64_t slots = kernels::pwlu_grad_slots(cfg.n);
  const BackwardOutputs out(l, x, output_mask[0], output_mask[1] || output_mask[2] || output_mask[3], slots);
  at::Tensor grad_heights = at::empty({0}, heights.options());
  at::Tensor grad_bounds = at::empty({0}, bounds.options());
  at::Tensor grad_slopes = at::empty({0}, slopes.options());
  if (out.launch_needed(l)) {
    const auto stream = c10::cuda::getCurrentCUDAStream();
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, l.xin.scalar_type(), "pwlu_backward_cuda", [&] {
      using T = typename CudaType<scalar_t>::type;
      using acc_t = typename kc::OpMath<T>::type;
      const MathParams params(heights, bounds, slopes, math_dtype(x));
      kc::PwluCudaParams<T> p;
      p.x = reinterpret_cast<const T*>(l.xin.const_data_ptr<scalar_t>());
      p.grad_y = reinterpret_cast<const T*>(gin.const_data_ptr<scalar_t>());
      p.out = out.grad_x_out<T, scalar_t>();
      fill_pwlu_params<T>(p, l, cfg, params, x.get_device(), /*backward=*/true, {p.x, p.grad_y, p.out});
      launch_backward_with_finish<acc_t>(p, out.param_table, slots, stream, &kc::launch_pwlu_backward<T>,
                                         &kc::launch_pwlu_finish<T>);
    });
  }
  cut_param_grads(out.param_table, {{output_mask[1], heights, grad_heights},
                                   {output_mask[2], bounds, grad_bounds},
                                   {output_mask[3], slopes, grad_slopes}});
  return {out.grad_x, grad_heights, grad_bounds, grad_slopes};
}

}  // namespace

TORCH_LIBRARY_IMPL(torch_rational, CUDA, m) {
  impl_op_and_backward(m, "pwlu", &pwlu_forward_cuda, &pwlu_backward_cuda);
}

}  // namespace torch_rational::cuda

// Explicit instantiations of the launchers for the element types dispatched above.
namespace torch_rational::kernels::cuda {
TR_INSTANTIATE_LAUNCHERS(pwlu, PwluCudaParams)
}  // namespace torch_rational::kernels::cuda
