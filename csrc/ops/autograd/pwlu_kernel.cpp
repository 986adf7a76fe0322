// Autograd of the PWLU op, in C++ at the Autograd key, so C++ callers (training binaries,
// torch::nn modules) get backward from the same dispatcher call as Python. Backward is its own
// op (pwlu_backward), visible to torch.compile and dispatchable to CUDA. Higher derivatives and
// torch.func: see elementwise_autograd.h.
#include <torch/autograd.h>
#include <torch/library.h>

#include "ops/autograd/elementwise_autograd.h"
#include "ops/composite/composite.h"
#include "ops/pwlu.h"
#include "ops/registration.h"

namespace torch_rational {
namespace {

using PwluFunction = FusedFunction<&pwlu, &pwlu_backward, /*tensor_inputs=*/4>;

at::Tensor pwlu_autograd(const at::Tensor& x, const at::Tensor& heights, const at::Tensor& bounds,
                         const at::Tensor& slopes, int64_t channel_dim) {
  if (needs_composite(x, heights, bounds, slopes)) return pwlu_composite(x, heights, bounds, slopes, channel_dim);
  return PwluFunction::apply(x, heights, bounds, slopes, channel_dim);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> pwlu_backward_autograd(
    const at::Tensor& grad_output, const at::Tensor& x, const at::Tensor& heights, const at::Tensor& bounds,
    const at::Tensor& slopes, int64_t channel_dim, std::array<bool, 4> output_mask) {
  return backward_op_autograd<4>(
      [&] { return pwlu_backward(grad_output, x, heights, bounds, slopes, channel_dim, output_mask); },
      grad_output, {x, heights, bounds, slopes}, output_mask,
      [&](const std::array<at::Tensor, 4>& in) { return pwlu_composite(in[0], in[1], in[2], in[3], channel_dim); });
}

}  // namespace

TORCH_LIBRARY_IMPL(torch_rational, Autograd, m) {
  impl_op_and_backward(m, "pwlu", &pwlu_autograd, &pwlu_backward_autograd);
}

}  // namespace torch_rational
