// Autograd of the rational ops, in C++ at the Autograd key, so C++ callers (the training
// binaries, torch::nn modules) get backward from the same dispatcher call as Python.
// Backward is its own op (rational_backward), visible to torch.compile and dispatchable to CUDA;
// higher derivatives and torch.func: see elementwise_autograd.h.
#include <torch/autograd.h>
#include <torch/library.h>

#include "ops/autograd/elementwise_autograd.h"
#include "ops/composite/composite.h"
#include "ops/rational.h"
#include "ops/registration.h"

namespace torch_rational {
namespace {

using RationalFunction = FusedFunction<&rational, &rational_backward, /*tensor_inputs=*/3>;

at::Tensor rational_autograd(const at::Tensor& x, const at::Tensor& numerator, const at::Tensor& denominator,
                             c10::string_view version, c10::string_view basis, int64_t channel_dim, double noise,
                             const std::optional<at::Tensor>& noise_seed) {
  if (needs_composite(x, numerator, denominator))
    return rational_composite(x, numerator, denominator, version, basis, channel_dim, noise, noise_seed);
  return RationalFunction::apply(x, numerator, denominator, version, basis, channel_dim, noise, noise_seed);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> rational_backward_autograd(
    const at::Tensor& grad_output, const at::Tensor& x, const at::Tensor& numerator,
    const at::Tensor& denominator, c10::string_view version, c10::string_view basis, int64_t channel_dim,
    double noise, const std::optional<at::Tensor>& noise_seed, std::array<bool, 3> output_mask) {
  return backward_op_autograd<3>(
      [&] {
        return rational_backward(grad_output, x, numerator, denominator, version, basis, channel_dim, noise,
                                 noise_seed, output_mask);
      },
      grad_output, {x, numerator, denominator}, output_mask, [&](const std::array<at::Tensor, 3>& in) {
        return rational_composite(in[0], in[1], in[2], version, basis, channel_dim, noise, noise_seed);
      });
}

}  // namespace

TORCH_LIBRARY_IMPL(torch_rational, Autograd, m) {
  impl_op_and_backward(m, "rational", &rational_autograd, &rational_backward_autograd);
}

}  // namespace torch_rational
