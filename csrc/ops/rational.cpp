// Schemas of the torch_rational ops and the dispatcher-calling C++ entry points.
#include "ops/rational.h"

#include <torch/library.h>

#include "ops/registration.h"

namespace torch_rational {

at::Tensor rational(const at::Tensor& x, const at::Tensor& numerator, const at::Tensor& denominator,
                    c10::string_view version, c10::string_view basis, int64_t channel_dim, double noise,
                    const std::optional<at::Tensor>& noise_seed) {
  static const auto op = typed_op<decltype(rational)>("rational");
  return op.call(x, numerator, denominator, version, basis, channel_dim, noise, noise_seed);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> rational_backward(
    const at::Tensor& grad_output, const at::Tensor& x, const at::Tensor& numerator,
    const at::Tensor& denominator, c10::string_view version, c10::string_view basis, int64_t channel_dim,
    double noise, const std::optional<at::Tensor>& noise_seed, std::array<bool, 3> output_mask) {
  static const auto op = typed_op<decltype(rational_backward)>("rational_backward");
  return op.call(grad_output, x, numerator, denominator, version, basis, channel_dim, noise, noise_seed,
                 output_mask);
}

at::Tensor rational_noise_seed() {
  return at::randint(0, int64_t(1) << 62, {1}, at::TensorOptions().dtype(at::kLong));
}

TORCH_LIBRARY(torch_rational, m) {
  m.def(
      "rational(Tensor x, Tensor numerator, Tensor denominator, str version=\"A\", "
      "str basis=\"power\", int channel_dim=1, float noise=0.0, Tensor? noise_seed=None) -> Tensor");
  m.def(
      "rational_backward(Tensor grad_output, Tensor x, Tensor numerator, Tensor denominator, "
      "str version, str basis, int channel_dim, float noise, Tensor? noise_seed, bool[3] output_mask) "
      "-> (Tensor, Tensor, Tensor)");
}

}  // namespace torch_rational
