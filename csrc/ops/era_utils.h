// Argument checking of the ERA ops, shared by every backend. Each message names the offending
// argument, so a user sees which one to fix.
#pragma once

#include <ATen/ATen.h>

#include <cmath>

#include "era_math.h"
#include "ops/arg_checks.h"
#include "ops/era.h"

static_assert(torch_rational::kMaxEraFractions == torch_rational::kernels::kMaxEraFractions);

namespace torch_rational {

struct EraConfig : GroupSplit {
  int n = 0;  // fractions per group
};

inline EraConfig check_era_args(const at::Tensor& x, const at::Tensor& linear, const at::Tensor& fractions,
                                double eps, int64_t channel_dim, const char* op = "era") {
  check_supported_dtypes(op, {{"x", x}, {"linear", linear}, {"fractions", fractions}});
  TORCH_CHECK_VALUE((linear.dim() == 1 || linear.dim() == 2) && linear.size(-1) == 2,
                    "torch_rational.", op, ": linear must have shape (2,) or (groups, 2) holding (a, b), got ",
                    linear.sizes());
  TORCH_CHECK_VALUE((fractions.dim() == 2 || fractions.dim() == 3) && fractions.size(-1) == 4,
                    "torch_rational.", op, ": fractions must have shape (n, 4) or (groups, n, 4) holding rows "
                    "(c, d, e, f), got ", fractions.sizes());
  TORCH_CHECK_VALUE(fractions.dim() == linear.dim() + 1,
                    "torch_rational.", op, ": linear and fractions must both be ungrouped ((2,) and (n, 4)) or both "
                    "grouped ((G, 2) and (G, n, 4)), got ", linear.sizes(), " and ", fractions.sizes());
  const int64_t gl = linear.dim() == 2 ? linear.size(0) : 1;
  const int64_t gf = fractions.dim() == 3 ? fractions.size(0) : 1;
  TORCH_CHECK_VALUE(gl == gf, "torch_rational.", op, ": linear has ", gl, " groups but fractions has ", gf);
  TORCH_CHECK_VALUE(gl >= 1, "torch_rational.", op, ": linear and fractions must have at least one group "
                    "(num_groups >= 1)");
  const int64_t n = fractions.size(-2);
  TORCH_CHECK_VALUE(n >= 1 && n <= kernels::kMaxEraFractions,
                    "torch_rational.", op, ": fractions must have between 1 and ", kernels::kMaxEraFractions,
                    " rows per group (num_fractions), got ", n);
  TORCH_CHECK_VALUE(eps >= 0.0 && std::isfinite(eps), "torch_rational.", op, ": eps must be finite and >= 0, got ", eps);
  check_on_device_of_x(op, x, {{"linear", linear}, {"fractions", fractions}});
  return EraConfig{check_group_split(op, x, gl, channel_dim), static_cast<int>(n)};
}

// The arguments of era_backward: those of era, then grad_output (dtype, device, shape, as x).
inline EraConfig check_era_backward_args(const at::Tensor& grad_output, const at::Tensor& x, const at::Tensor& linear,
                                         const at::Tensor& fractions, double eps, int64_t channel_dim) {
  const EraConfig cfg = check_era_args(x, linear, fractions, eps, channel_dim, "era_backward");
  check_grad_output("era_backward", grad_output, x);
  return cfg;
}

}  // namespace torch_rational
