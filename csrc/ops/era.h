// Public C++ entry points of the ERA (Enhanced Rational Activation) ops. They go through the
// PyTorch dispatcher, so a C++ caller gets the CPU or CUDA kernel and autograd from one call.
//
//   y = a x + b + sum_{i=1..n} (c_i x + d_i) / ((x - e_i)^2 + f_i^2 + eps)
#pragma once

#include <ATen/ATen.h>

#include <array>
#include <tuple>

#include "torch_rational_export.h"

namespace torch_rational {

// The most partial fractions the kernels take (kernels::kMaxEraFractions, checked equal in
// ops/era_utils.h).
constexpr int kMaxEraFractions = 32;

// linear: (G, 2) rows (a, b), or (2,) for G = 1; fractions: (G, n, 4) rows (c, d, e, f), or (n, 4)
// for G = 1. With G > 1, x.size(channel_dim) must be divisible by G and channel c uses group
// c / (C / G); with G = 1 channel_dim is ignored and x may have any shape. eps >= 0.
TORCH_RATIONAL_API at::Tensor era(const at::Tensor& x, const at::Tensor& linear, const at::Tensor& fractions,
                                  double eps = 1e-6, int64_t channel_dim = 1);

// (grad_x, grad_linear, grad_fractions) in one fused pass; an output whose output_mask entry is
// false is an empty tensor of shape (0,).
TORCH_RATIONAL_API std::tuple<at::Tensor, at::Tensor, at::Tensor> era_backward(
    const at::Tensor& grad_output, const at::Tensor& x, const at::Tensor& linear, const at::Tensor& fractions,
    double eps, int64_t channel_dim, std::array<bool, 3> output_mask);

}  // namespace torch_rational
