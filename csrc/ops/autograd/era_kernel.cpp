// Autograd of the ERA op in C++ at the Autograd key, so C++ callers (training binaries,
// torch::nn modules) get backward from the same dispatcher call as Python. Backward is its own op
// (era_backward): visible to torch.compile and dispatchable to CUDA. Higher derivatives and
// torch.func: see elementwise_autograd.h.
#include <torch/autograd.h>
#include <torch/library.h>

#include "ops/autograd/elementwise_autograd.h"
#include "ops/composite/composite.h"
#include "ops/era.h"
#include "ops/registration.h"

namespace torch_rational {
namespace {

using EraFunction = FusedFunction<&era, &era_backward, /*tensor_inputs=*/3>;

at::Tensor era_autograd(const at::Tensor& x, const at::Tensor& linear, const at::Tensor& fractions, double eps,
                        int64_t channel_dim) {
  if (needs_composite(x, linear, fractions)) return era_composite(x, linear, fractions, eps, channel_dim);
  return EraFunction::apply(x, linear, fractions, eps, channel_dim);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> era_backward_autograd(
    const at::Tensor& grad_output, const at::Tensor& x, const at::Tensor& linear, const at::Tensor& fractions,
    double eps, int64_t channel_dim, std::array<bool, 3> output_mask) {
  return backward_op_autograd<3>(
      [&] { return era_backward(grad_output, x, linear, fractions, eps, channel_dim, output_mask); }, grad_output,
      {x, linear, fractions}, output_mask,
      [&](const std::array<at::Tensor, 3>& in) { return era_composite(in[0], in[1], in[2], eps, channel_dim); });
}

}  // namespace

TORCH_LIBRARY_IMPL(torch_rational, Autograd, m) {
  impl_op_and_backward(m, "era", &era_autograd, &era_backward_autograd);
}

}  // namespace torch_rational
