// Schemas of the PWLU ops (a fragment of the torch_rational library defined in rational.cpp) and
// the dispatcher-calling C++ entry points.
#include "ops/pwlu.h"

#include <torch/library.h>

#include "ops/registration.h"

namespace torch_rational {

at::Tensor pwlu(const at::Tensor& x, const at::Tensor& heights, const at::Tensor& bounds, const at::Tensor& slopes,
                int64_t channel_dim) {
  static const auto op = typed_op<decltype(pwlu)>("pwlu");
  return op.call(x, heights, bounds, slopes, channel_dim);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> pwlu_backward(
    const at::Tensor& grad_output, const at::Tensor& x, const at::Tensor& heights, const at::Tensor& bounds,
    const at::Tensor& slopes, int64_t channel_dim, std::array<bool, 4> output_mask) {
  static const auto op = typed_op<decltype(pwlu_backward)>("pwlu_backward");
  return op.call(grad_output, x, heights, bounds, slopes, channel_dim, output_mask);
}

TORCH_LIBRARY_FRAGMENT(torch_rational, m) {
  m.def("pwlu(Tensor x, Tensor heights, Tensor bounds, Tensor slopes, int channel_dim=1) -> Tensor");
  m.def(
      "pwlu_backward(Tensor grad_output, Tensor x, Tensor heights, Tensor bounds, Tensor slopes, "
      "int channel_dim, bool[4] output_mask) -> (Tensor, Tensor, Tensor, Tensor)");
}

}  // namespace torch_rational
