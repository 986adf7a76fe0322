// Public C++ entry points of the rational activation ops. They go through the PyTorch dispatcher,
// so a C++ caller gets the CPU or CUDA kernel and autograd from the same call as Python does.
#pragma once

#include <ATen/ATen.h>

#include <optional>
#include <tuple>

#include "torch_rational_export.h"

namespace torch_rational {

// The highest numerator / denominator degree the kernels take (kernels::kMaxDegree, checked equal
// in ops/rational_utils.h; kernels/ is not part of the installed API).
constexpr int kMaxDegree = 32;

// y = P(x) / Q(x), see docs/DESIGN.md. numerator: (G, m+1) or (m+1,); denominator: (G, n) or (n,)
// [(G, n+1) or (n+1,) for version "C"]. With noise > 0 (RPAU), noise_seed (int64, one element,
// CPU) keys the counter-based draws; use rational_noise_seed() to draw one from torch's generator.
TORCH_RATIONAL_API at::Tensor rational(const at::Tensor& x, const at::Tensor& numerator,
                                       const at::Tensor& denominator, c10::string_view version = "A",
                                       c10::string_view basis = "power", int64_t channel_dim = 1,
                                       double noise = 0.0,
                                       const std::optional<at::Tensor>& noise_seed = std::nullopt);

// (grad_x, grad_numerator, grad_denominator) in one fused pass; an output whose output_mask entry
// is false is an empty tensor of shape (0,).
TORCH_RATIONAL_API std::tuple<at::Tensor, at::Tensor, at::Tensor> rational_backward(
    const at::Tensor& grad_output, const at::Tensor& x, const at::Tensor& numerator,
    const at::Tensor& denominator, c10::string_view version, c10::string_view basis, int64_t channel_dim,
    double noise, const std::optional<at::Tensor>& noise_seed, std::array<bool, 3> output_mask);

// A fresh seed for rational(..., noise, seed) drawn from torch's default CPU generator, so
// torch::manual_seed makes RPAU reproducible.
TORCH_RATIONAL_API at::Tensor rational_noise_seed();

}  // namespace torch_rational
