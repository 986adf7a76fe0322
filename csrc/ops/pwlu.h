// Public C++ entry points of the PWLU (piecewise linear unit) ops. They go through the PyTorch
// dispatcher, so a C++ caller gets the CPU or CUDA kernel and autograd from the same call as Python.
#pragma once

#include <ATen/ATen.h>

#include <array>
#include <tuple>

#include "torch_rational_export.h"

namespace torch_rational {

// N uniform pieces on [L, R] (see docs/pwlu.md). heights: (G, N+1) or (N+1,); bounds:
// (G, 2) or (2,) = (L, R) with L < R; slopes: (G, 2) or (2,) = (K_L, K_R). With G > 1, channel c
// of x along channel_dim uses group c / (C / G); with G = 1 channel_dim is ignored.
TORCH_RATIONAL_API at::Tensor pwlu(const at::Tensor& x, const at::Tensor& heights, const at::Tensor& bounds,
                                   const at::Tensor& slopes, int64_t channel_dim = 1);

// (grad_x, grad_heights, grad_bounds, grad_slopes) in one fused pass; an output whose output_mask
// entry is false is an empty tensor of shape (0,).
TORCH_RATIONAL_API std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> pwlu_backward(
    const at::Tensor& grad_output, const at::Tensor& x, const at::Tensor& heights, const at::Tensor& bounds,
    const at::Tensor& slopes, int64_t channel_dim, std::array<bool, 4> output_mask);

}  // namespace torch_rational
