// Argument checking of the ERA ops, shared by every backend. Each message names the offending
// argument, so a user sees which one to fix.
#pragma once

#include <ATen/ATen.h>

#include <cmath>

#include "era_math.h"

namespace torch_rational {

struct EraConfig {
  int64_t groups = 1;
  int n = 0;                 // fractions per group
  int64_t channel_dim = -1;  // normalised; -1 when groups == 1
  int64_t channels = 1;
  int64_t channels_per_group = 1;
};

inline EraConfig check_era_args(const at::Tensor& x, const at::Tensor& linear, const at::Tensor& fractions,
                                double eps, int64_t channel_dim) {
  EraConfig cfg;
  TORCH_CHECK_TYPE(at::isFloatingType(x.scalar_type()),
                   "torch_rational.era: x must be a floating point tensor (float16, bfloat16, float32, float64), "
                   "got ", x.scalar_type());
  TORCH_CHECK_TYPE(at::isFloatingType(linear.scalar_type()),
                   "torch_rational.era: linear must be a floating point tensor, got ", linear.scalar_type());
  TORCH_CHECK_TYPE(at::isFloatingType(fractions.scalar_type()),
                   "torch_rational.era: fractions must be a floating point tensor, got ", fractions.scalar_type());
  TORCH_CHECK_VALUE((linear.dim() == 1 || linear.dim() == 2) && linear.size(-1) == 2,
                    "torch_rational.era: linear must have shape (2,) or (groups, 2) holding (a, b), got ",
                    linear.sizes());
  TORCH_CHECK_VALUE((fractions.dim() == 2 || fractions.dim() == 3) && fractions.size(-1) == 4,
                    "torch_rational.era: fractions must have shape (n, 4) or (groups, n, 4) holding rows "
                    "(c, d, e, f), got ", fractions.sizes());
  TORCH_CHECK_VALUE(fractions.dim() == linear.dim() + 1,
                    "torch_rational.era: linear and fractions must both be ungrouped ((2,) and (n, 4)) or both "
                    "grouped ((G, 2) and (G, n, 4)), got ", linear.sizes(), " and ", fractions.sizes());
  const int64_t gl = linear.dim() == 2 ? linear.size(0) : 1;
  const int64_t gf = fractions.dim() == 3 ? fractions.size(0) : 1;
  TORCH_CHECK_VALUE(gl == gf, "torch_rational.era: linear has ", gl, " groups but fractions has ", gf);
  TORCH_CHECK_VALUE(gl >= 1, "torch_rational.era: linear and fractions must have at least one group "
                    "(num_groups >= 1)");
  const int64_t n = fractions.size(-2);
  TORCH_CHECK_VALUE(n >= 1 && n <= kernels::kMaxEraFractions,
                    "torch_rational.era: fractions must have between 1 and ", kernels::kMaxEraFractions,
                    " rows per group (num_fractions), got ", n);
  TORCH_CHECK_VALUE(eps >= 0.0 && std::isfinite(eps), "torch_rational.era: eps must be finite and >= 0, got ", eps);
  TORCH_CHECK_VALUE(linear.device() == x.device(), "torch_rational.era: linear is on ", linear.device(),
                    " but x is on ", x.device());
  TORCH_CHECK_VALUE(fractions.device() == x.device(), "torch_rational.era: fractions is on ", fractions.device(),
                    " but x is on ", x.device());
  cfg.groups = gl;
  cfg.n = static_cast<int>(n);
  if (gl > 1) {
    TORCH_CHECK_VALUE(x.dim() >= 1, "torch_rational.era: x must have a channel dimension when num_groups > 1");
    TORCH_CHECK_INDEX(channel_dim >= -x.dim() && channel_dim < x.dim(), "torch_rational.era: channel_dim ",
                      channel_dim, " is out of range for x with ", x.dim(), " dimensions");
    cfg.channel_dim = channel_dim < 0 ? channel_dim + x.dim() : channel_dim;
    cfg.channels = x.size(cfg.channel_dim);
    TORCH_CHECK_VALUE(cfg.channels % gl == 0, "torch_rational.era: x.size(channel_dim=", channel_dim, ") = ",
                      cfg.channels, " is not divisible by the number of groups (num_groups = ", gl, ")");
    cfg.channels_per_group = cfg.channels / gl;
  }
  return cfg;
}

inline void check_era_grad_output(const at::Tensor& grad_output, const at::Tensor& x) {
  TORCH_CHECK_VALUE(grad_output.sizes() == x.sizes(), "torch_rational.era: grad_output has shape ",
                    grad_output.sizes(), " but x has shape ", x.sizes());
  TORCH_CHECK_TYPE(grad_output.scalar_type() == x.scalar_type(), "torch_rational.era: grad_output has dtype ",
                   grad_output.scalar_type(), " but x has dtype ", x.scalar_type());
  TORCH_CHECK_VALUE(grad_output.device() == x.device(), "torch_rational.era: grad_output is on ",
                    grad_output.device(), " but x is on ", x.device());
}

}  // namespace torch_rational
