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

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

class RationalFunction : public torch::autograd::Function<RationalFunction> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& numerator,
                            const at::Tensor& denominator, c10::string_view version, c10::string_view basis,
                            int64_t channel_dim, double noise, const std::optional<at::Tensor>& noise_seed) {
    at::AutoDispatchBelowADInplaceOrView guard;
    at::Tensor y = rational(x, numerator, denominator, version, basis, channel_dim, noise, noise_seed);
    ctx->save_for_backward({x, numerator, denominator, noise_seed.has_value() ? *noise_seed : at::Tensor()});
    ctx->saved_data["version"] = std::string(version.data(), version.size());
    ctx->saved_data["basis"] = std::string(basis.data(), basis.size());
    ctx->saved_data["channel_dim"] = channel_dim;
    ctx->saved_data["noise"] = noise;
    return y;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    const auto saved = ctx->get_saved_variables();
    const std::string version = ctx->saved_data["version"].toStringRef();
    const std::string basis = ctx->saved_data["basis"].toStringRef();
    const int64_t channel_dim = ctx->saved_data["channel_dim"].toInt();
    const double noise = ctx->saved_data["noise"].toDouble();
    std::optional<at::Tensor> seed;
    if (saved[3].defined()) seed = saved[3];
    const std::array<bool, 3> mask = {ctx->needs_input_grad(0), ctx->needs_input_grad(1),
                                      ctx->needs_input_grad(2)};
    at::Tensor grad = grad_outputs[0];
    if (!grad.defined()) grad = at::zeros_like(saved[0]);
    auto [gx, gnum, gden] =
        rational_backward(grad, saved[0], saved[1], saved[2], version, basis, channel_dim, noise, seed, mask);
    return {mask[0] ? gx : at::Tensor(), mask[1] ? gnum : at::Tensor(), mask[2] ? gden : at::Tensor(),
            at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

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
