// CUDA glue of the rational ops: argument checks, device guard, layout, launch on the current
// stream. The kernels are in kernels/rational.cuh (no ATen there).
//
// Layout: any non-overlapping dense tensor (contiguous, channels_last, permuted) is processed in
// memory order without a copy, as on CPU: memory = [outer][groups][span] with
// span = stride(channel_dim) * channels_per_group. Other tensors (slices, expanded) and RPAU
// (noise keyed by the row-major index) are made contiguous first. Per-channel groups with the
// channel innermost (span = 1: channels_last, [batch, features]) take the coalesced rows kernels
// for the fixed degrees; other layouts with a run length not a multiple of the 16-byte vector use
// the scalar loop: correct, but without 16-byte accesses.
//
// Only c10/cuda headers are included (not ATen/cuda/CUDAContext.h, which pulls cuBLAS headers),
// so this file also compiles against a CPU-only torch's headers in CI (scripts/check_kernels.sh).
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <torch/library.h>

#include <algorithm>
#include <cfloat>

#include "ops/rational_utils.h"
#include "ops/cuda/elementwise_glue.h"
#include "ops/cuda/launch_utils.h"
#include "ops/registration.h"
#include "rational.cuh"

namespace torch_rational::cuda {
namespace {

namespace kc = kernels::cuda;

template <typename T>
void fill_common(kc::RationalCudaParams<T>& p, const Launch& l, const RationalConfig& cfg, const at::Tensor& a,
                 const at::Tensor& b, double noise, uint64_t seed, int device) {
  using acc_t = typename kc::OpMath<T>::type;
  fill_layout(p, l);
  p.a = a.const_data_ptr<acc_t>();
  p.b = b.const_data_ptr<acc_t>();
  p.m = cfg.m;
  p.nb = cfg.nb;
  p.version = cfg.version;
  p.basis = cfg.basis;
  const int n_top = cfg.nb - 1 + kernels::first_den_power(cfg.version);
  const int D = std::max(cfg.m, n_top);
  p.threshold = static_cast<acc_t>(
      kernels::overflow_threshold<double>(D, std::is_same_v<acc_t, double> ? DBL_MAX : double(FLT_MAX)));
  p.noise = static_cast<acc_t>(noise);
  p.seed = seed;
  // Path (grouped or rows), vectors and grid: from the x / grad_y / out pointers set by the caller.
  kc::plan_rational_launch<T>(p, multiprocessor_count(device));
}

at::Tensor rational_forward_cuda(const at::Tensor& x, const at::Tensor& numerator, const at::Tensor& denominator,
                                 c10::string_view version, c10::string_view basis, int64_t channel_dim, double noise,
                                 const std::optional<at::Tensor>& noise_seed) {
  const RationalConfig cfg =
      check_rational_args(x, numerator, denominator, version, basis, channel_dim, noise, noise_seed);
  TORCH_CHECK_VALUE(x.is_cuda(), "torch_rational: x must be a CUDA tensor for the CUDA kernel, got ", x.device());
  const c10::cuda::CUDAGuard guard(x.device());
  const Launch l = make_launch(x, cfg, /*force_contiguous=*/noise > 0.0);
  at::Tensor y = at::empty_like(l.xin);
  if (l.xin.numel() == 0) return y;
  const uint64_t seed = read_noise_seed(noise, noise_seed);
  const auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, l.xin.scalar_type(), "rational_forward_cuda", [&] {
    using T = typename CudaType<scalar_t>::type;
    const at::Tensor a = numerator.detach().to(math_dtype(x)).contiguous();
    const at::Tensor b = denominator.detach().to(math_dtype(x)).contiguous();
    kc::RationalCudaParams<T> p;
    p.x = reinterpret_cast<const T*>(l.xin.const_data_ptr<scalar_t>());
    p.out = reinterpret_cast<T*>(y.mutable_data_ptr<scalar_t>());
    fill_common<T>(p, l, cfg, a, b, noise, seed, x.get_device());
    kc::launch_rational_forward<T>(p, stream);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return y;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> rational_backward_cuda(
    const at::Tensor& grad_output, const at::Tensor& x, const at::Tensor& numerator, const at::Tensor& denominator,
    c10::string_view version, c10::string_view basis, int64_t channel_dim, double noise,
    const std::optional<at::Tensor>& noise_seed, std::array<bool, 3> output_mask) {
  const RationalConfig cfg = check_rational_backward_args(grad_output, x, numerator, denominator, version, basis,
                                                         channel_dim, noise, noise_seed);
  TORCH_CHECK_VALUE(x.is_cuda(), "torch_rational: x must be a CUDA tensor for the CUDA kernel, got ", x.device());
  const c10::cuda::CUDAGuard guard(x.device());
  const Launch l = make_launch(x, cfg, /*force_contiguous=*/noise > 0.0);
  const at::Tensor gin = grad_output_like(grad_output, l.xin);
  const int na = cfg.m + 1, nb = cfg.nb;
  const BackwardOutputs out(l, x, output_mask[0], output_mask[1] || output_mask[2], na + nb);
  at::Tensor grad_num = at::empty({0}, numerator.options());
  at::Tensor grad_den = at::empty({0}, denominator.options());
  if (out.launch_needed(l)) {
    const uint64_t seed = read_noise_seed(noise, noise_seed);
    const auto stream = c10::cuda::getCurrentCUDAStream();
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, l.xin.scalar_type(), "rational_backward_cuda", [&] {
      using T = typename CudaType<scalar_t>::type;
      using acc_t = typename kc::OpMath<T>::type;
      const at::Tensor a = numerator.detach().to(math_dtype(x)).contiguous();
      const at::Tensor b = denominator.detach().to(math_dtype(x)).contiguous();
      kc::RationalCudaParams<T> p;
      p.x = reinterpret_cast<const T*>(l.xin.const_data_ptr<scalar_t>());
      p.grad_y = reinterpret_cast<const T*>(gin.const_data_ptr<scalar_t>());
      p.out = out.grad_x_out<T, scalar_t>();
      fill_common<T>(p, l, cfg, a, b, noise, seed, x.get_device());
      launch_backward_with_finish<acc_t>(p, out.param_table, na + nb, stream, &kc::launch_rational_backward<T>,
                                         &kc::launch_rational_finish<T>);
    });
  }
  cut_param_grads(out.param_table,
                  {{output_mask[1], numerator, grad_num}, {output_mask[2], denominator, grad_den}});
  return {out.grad_x, grad_num, grad_den};
}

}  // namespace

TORCH_LIBRARY_IMPL(torch_rational, CUDA, m) {
  impl_op_and_backward(m, "rational", &rational_forward_cuda, &rational_backward_cuda);
}

}  // namespace torch_rational::cuda

// Explicit instantiations of the launchers for the element types dispatched above.
namespace torch_rational::kernels::cuda {
TR_INSTANTIATE_LAUNCHERS(rational, RationalCudaParams)
}  // namespace torch_rational::kernels::cuda
