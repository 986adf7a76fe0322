// Schemas of the ERA ops and their dispatcher-calling C++ entry points. The torch_rational
// namespace itself is defined by rational.cpp (TORCH_LIBRARY); this file adds to it.
#include "ops/era.h"

#include <torch/library.h>

#include "ops/registration.h"

namespace torch_rational {

at::Tensor era(const at::Tensor& x, const at::Tensor& linear, const at::Tensor& fractions, double eps,
               int64_t channel_dim) {
  static const auto op = typed_op<decltype(era)>("era");
  return op.call(x, linear, fractions, eps, channel_dim);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> era_backward(const at::Tensor& grad_output, const at::Tensor& x,
                                                            const at::Tensor& linear, const at::Tensor& fractions,
                                                            double eps, int64_t channel_dim,
                                                            std::array<bool, 3> output_mask) {
  static const auto op = typed_op<decltype(era_backward)>("era_backward");
  return op.call(grad_output, x, linear, fractions, eps, channel_dim, output_mask);
}

TORCH_LIBRARY_FRAGMENT(torch_rational, m) {
  m.def("era(Tensor x, Tensor linear, Tensor fractions, float eps=1e-06, int channel_dim=1) -> Tensor");
  m.def(
      "era_backward(Tensor grad_output, Tensor x, Tensor linear, Tensor fractions, float eps, int channel_dim, "
      "bool[3] output_mask) -> (Tensor, Tensor, Tensor)");
}

}  // namespace torch_rational
