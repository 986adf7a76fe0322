// CUDA glue of the ERA op: argument checks, device guard, layout, launch on the current stream.
// The kernels are in kernels/era.cuh (no ATen there).
//
// Layout as on CPU: a non-overlapping dense tensor is processed in memory order without a copy,
// memory = [outer][groups][span], span = stride(channel_dim) * channels_per_group (span == 1,
// per-channel groups with the channel innermost: the rows kernels); other tensors are made
// contiguous first. Runs whose length is not a multiple of the 16-byte vector use the
// scalar loop (correct, without 16-byte accesses).
//
// Only c10/cuda headers (not ATen/cuda/CUDAContext.h), so this file also compiles against a
// CPU-only torch's headers (scripts/check_kernels.sh).
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <torch/library.h>

#include <algorithm>

#include "era.cuh"
#include "ops/era_utils.h"
#include "ops/cuda/elementwise_glue.h"
#include "ops/cuda/launch_utils.h"
#include "ops/registration.h"

namespace torch_rational::cuda {
namespace {

namespace kc = kernels::cuda;

// (a, b, c_1, d_1, e_1, f_1, ...) per group in the math dtype, on x's device.
at::Tensor packed_params(const at::Tensor& linear, const at::Tensor& fractions, const EraConfig& cfg,
                         at::ScalarType acc_dtype) {
  return at::cat({linear.detach().reshape({cfg.groups, 2}).to(acc_dtype),
                  fractions.detach().reshape({cfg.groups, 4 * cfg.n}).to(acc_dtype)},
                 1)
      .contiguous();
}

template <typename T>
void fill_common(kc::EraCudaParams<T>& p, const Launch& l, const EraConfig& cfg, const at::Tensor& params,
                 double eps, int device, std::initializer_list<const void*> ptrs) {
  using acc_t = typename kc::OpMath<T>::type;
  fill_layout(p, l);
  p.params = params.const_data_ptr<acc_t>();
  p.n = cfg.n;
  p.eps = static_cast<acc_t>(eps);
  // p.grad_y is set in the backward only (the rows backward has fewer columns per thread).
  kc::plan_era_launch(p, /*backward=*/p.grad_y != nullptr, all_aligned(ptrs), multiprocessor_count(device));
}

at::Tensor era_forward_cuda(const at::Tensor& x, const at::Tensor& linear, const at::Tensor& fractions, double eps,
                            int64_t channel_dim) {
  const EraConfig cfg = check_era_args(x, linear, fractions, eps, channel_dim);
  TORCH_CHECK_VALUE(x.is_cuda(), "torch_rational.era: x must be a CUDA tensor for the CUDA kernel, got ", x.device());
  const c10::cuda::CUDAGuard guard(x.device());
  const Launch l = make_launch(x, cfg);
  at::Tensor y = at::empty_like(l.xin);
  if (l.xin.numel() == 0) return y;
  const auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, l.xin.scalar_type(), "era_forward_cuda", [&] {
    using T = typename CudaType<scalar_t>::type;
    const at::Tensor params = packed_params(linear, fractions, cfg, math_dtype(x));
    kc::EraCudaParams<T> p;
    p.x = reinterpret_cast<const T*>(l.xin.const_data_ptr<scalar_t>());
    p.out = reinterpret_cast<T*>(y.mutable_data_ptr<scalar_t>());
    fill_common<T>(p, l, cfg, params, eps, x.get_device(), {p.x, p.out});
    kc::launch_era_forward<T>(p, stream);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return y;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> era_backward_cuda(const at::Tensor& grad_output, const at::Tensor& x,
                                                                 const at::Tensor& linear,
                                                                 const at::Tensor& fractions, double eps,
                                                                 int64_t channel_dim,
                                                                 std::array<bool, 3> output_mask) {
  // Every argument against x first (a CUDA grad_output with a CPU x lands here too: the error
  // names grad_output), then x itself.
  const EraConfig cfg = check_era_backward_args(grad_output, x, linear, fractions, eps, channel_dim);
  TORCH_CHECK_VALUE(x.is_cuda(), "torch_rational.era_backward: x must be a CUDA tensor for the CUDA kernel, got ", x.device());
  const c10::cuda::CUDAGuard guard(x.device());
  const Launch l = make_launch(x, cfg);
  const at::Tensor gin = grad_output_like(grad_output, l.xin);
  const int K = kernels::era_params_per_group(cfg.n);
  const BackwardOutputs out(l, x, output_mask[0], output_mask[1] || output_mask[2], K);
  at::Tensor grad_linear = at::empty({0}, linear.options());
  at::Tensor grad_fractions = at::empty({0}, fractions.options());
  if (out.launch_needed(l)) {
    const auto stream = c10::cuda::getCurrentCUDAStream();
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, l.xin.scalar_type(), "era_backward_cuda", [&] {
      using T = typename CudaType<scalar_t>::type;
      using acc_t = typename kc::OpMath<T>::type;
      const at::Tensor params = packed_params(linear, fractions, cfg, math_dtype(x));
      kc::EraCudaParams<T> p;
      p.x = reinterpret_cast<const T*>(l.xin.const_data_ptr<scalar_t>());
      p.grad_y = reinterpret_cast<const T*>(gin.const_data_ptr<scalar_t>());
      p.out = out.grad_x_out<T, scalar_t>();
      fill_common<T>(p, l, cfg, params, eps, x.get_device(), {p.x, p.grad_y, p.out});
      launch_backward_with_finish<acc_t>(p, out.param_table, K, stream, &kc::launch_era_backward<T>, &kc::launch_era_finish<T>);
    });
  }
  cut_param_grads(out.param_table,
                  {{output_mask[1], linear, grad_linear}, {output_mask[2], fractions, grad_fractions}});
  return {out.grad_x, grad_linear, grad_fractions};
}

}  // namespace

TORCH_LIBRARY_IMPL(torch_rational, CUDA, m) {
  impl_op_and_backward(m, "era", &era_forward_cuda, &era_backward_cuda);
}

}  // namespace torch_rational::cuda

// Explicit instantiations of the launchers for the element types dispatched above.
namespace torch_rational::kernels::cuda {
TR_INSTANTIATE_LAUNCHERS(era, EraCudaParams)
}  // namespace torch_rational::kernels::cuda
