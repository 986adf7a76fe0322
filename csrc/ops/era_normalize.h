// Parameter-free normalisation of ERA's pre-activations (the ERA authors' recommendation), shared by
// the Python and C++ ERA modules: one op, torch's native normalisation kernels.
#pragma once

#include <ATen/ATen.h>

#include <string>

#include "torch_rational_export.h"

namespace torch_rational {

// kind "" returns x; "layer" normalises over channel_dim per position (LayerNorm of an MLP's
// hidden layer, at::layer_norm); "instance" over the spatial dims per sample and channel
// (InstanceNorm of a CNN, x of shape (N, C, *spatial) with C at channel_dim, at::layer_norm over
// the spatial dims). Biased variance, eps 1e-5, no affine: as torch.nn.LayerNorm /
// InstanceNorm without parameters. Goes through the dispatcher (torch_rational::era_normalize).
TORCH_RATIONAL_API at::Tensor era_normalize(const at::Tensor& x, const std::string& kind, int64_t channel_dim);

// era(era_normalize(x, normalize, channel_dim), linear, fractions, eps, channel_dim) (ops/era.h),
// the ERA modules' forward: on CPU float32 with one group and up to 4 fractions one fused kernel
// per pass (the normalised x is never stored), elsewhere the two ops. normalize "" is era alone.
// Goes through the dispatcher (torch_rational::normalized_era).
TORCH_RATIONAL_API at::Tensor normalized_era(const at::Tensor& x, const at::Tensor& linear, const at::Tensor& fractions,
                                             double eps, int64_t channel_dim, const std::string& normalize);

}  // namespace torch_rational
