// Argument checking of the PWLU ops, shared by every backend. Each message names the offending
// argument, so a user sees which one to fix.
#pragma once

#include <ATen/ATen.h>

#include <cmath>

#include "ops/arg_checks.h"

namespace torch_rational {

struct PwluConfig : GroupSplit {
  int n = 1;  // number of pieces N
};

// Pieces above this are rejected: it keeps N + 5 gradient slots per group in 32-bit ints and the
// float32 piece index exact.
constexpr int64_t kPwluMaxPieces = 1 << 20;

inline PwluConfig check_pwlu_args(const at::Tensor& x, const at::Tensor& heights, const at::Tensor& bounds,
                                  const at::Tensor& slopes, int64_t channel_dim, const char* op = "pwlu") {
  check_supported_dtypes(op, {{"x", x}, {"heights", heights}, {"bounds", bounds}, {"slopes", slopes}});
  TORCH_CHECK_VALUE(heights.dim() == 1 || heights.dim() == 2,
                    "torch_rational.", op, ": heights must have shape (N+1,) or (groups, N+1), got ", heights.sizes());
  const int64_t groups = heights.dim() == 2 ? heights.size(0) : 1;
  TORCH_CHECK_VALUE(groups >= 1, "torch_rational.", op, ": heights must have at least one group, got ", heights.sizes());
  const int64_t n = heights.size(-1) - 1;
  TORCH_CHECK_VALUE(n >= 1 && n <= kPwluMaxPieces,
                    "torch_rational.", op, ": heights must have N+1 entries per group with 1 <= N <= ", kPwluMaxPieces,
                    " pieces, got shape ", heights.sizes());
  const bool one_d = heights.dim() == 1;
  TORCH_CHECK_VALUE(one_d ? (bounds.dim() == 1 && bounds.size(0) == 2)
                          : (bounds.dim() == 2 && bounds.size(0) == groups && bounds.size(1) == 2),
                    "torch_rational.", op, ": bounds must have shape ", one_d ? "(2,)" : "(groups, 2)",
                    " like heights ", heights.sizes(), ", got ", bounds.sizes());
  TORCH_CHECK_VALUE(one_d ? (slopes.dim() == 1 && slopes.size(0) == 2)
                          : (slopes.dim() == 2 && slopes.size(0) == groups && slopes.size(1) == 2),
                    "torch_rational.", op, ": slopes must have shape ", one_d ? "(2,)" : "(groups, 2)",
                    " like heights ", heights.sizes(), ", got ", slopes.sizes());
  check_on_device_of_x(op, x, {{"heights", heights}, {"bounds", bounds}, {"slopes", slopes}});
  return PwluConfig{check_group_split(op, x, groups, channel_dim), static_cast<int>(n)};
}

// The arguments of pwlu_backward: those of pwlu, then grad_output (dtype, device, shape, as x).
inline PwluConfig check_pwlu_backward_args(const at::Tensor& grad_output, const at::Tensor& x,
                                           const at::Tensor& heights, const at::Tensor& bounds,
                                           const at::Tensor& slopes, int64_t channel_dim) {
  const PwluConfig cfg = check_pwlu_args(x, heights, bounds, slopes, channel_dim, "pwlu_backward");
  check_grad_output("pwlu_backward", grad_output, x);
  return cfg;
}

// Checks L < R (both finite) for every group and returns the bounds as a contiguous float64 CPU
// tensor (G, 2). On CUDA this copies the bounds to the host, i.e. synchronises with the stream:
// the price of a clear error instead of silently wrong output for a bad bound.
inline at::Tensor checked_pwlu_bounds(const at::Tensor& bounds, int64_t groups) {
  at::Tensor b = bounds.detach().to(at::kCPU, at::kDouble).contiguous().reshape({groups, 2});
  const double* p = b.const_data_ptr<double>();
  for (int64_t g = 0; g < groups; ++g) {
    const double l = p[2 * g], r = p[2 * g + 1];
    TORCH_CHECK_VALUE(std::isfinite(l) && std::isfinite(r) && l < r,
                      "torch_rational.pwlu: bounds must be finite with left < right, got bounds[", g, "] = (", l,
                      ", ", r, ")");
  }
  return b;
}

}  // namespace torch_rational
