// The PWLU op as a differentiable composite of ATen ops (see composite.h), and its registration at
// FuncTorchBatched: under torch.vmap the op runs as the composite, whose ATen ops torch batches.
#include <ATen/functorch/DynamicLayer.h>
#include <torch/library.h>

#include "ops/composite/composite.h"
#include "ops/pwlu_utils.h"

namespace torch_rational {

at::Tensor pwlu_composite(const at::Tensor& x, const at::Tensor& heights, const at::Tensor& bounds,
                          const at::Tensor& slopes, int64_t channel_dim) {
  const PwluConfig cfg = check_pwlu_args(x, heights, bounds, slopes, channel_dim);
  // L < R is checked on the values; under a torch.func transform they may be batched or wrapped
  // tensors whose values cannot be read here, and the check is left to the caller.
  if (!at::functorch::maybeCurrentDynamicLayer().has_value()) checked_pwlu_bounds(bounds, cfg.groups);
  const at::ScalarType math = composite::math_dtype(x);
  const int64_t n = cfg.n;
  const at::Tensor xm = x.to(math);
  const at::Tensor h = heights.to(math).reshape({cfg.groups, n + 1});
  const at::Tensor lr = bounds.to(math).reshape({cfg.groups, 2});
  const at::Tensor k = slopes.to(math).reshape({cfg.groups, 2});
  auto per_channel = [&](const at::Tensor& per_group) {
    return composite::per_channel(per_group, x, cfg.groups, cfg.channel_dim);
  };
  const at::Tensor left = per_channel(lr.select(1, 0)), right = per_channel(lr.select(1, 1));
  const at::Tensor below = xm < left, above = xm >= right;
  const at::Tensor inside = at::logical_not(at::logical_or(below, above));  // NaN x: inside, as the kernels
  // Each branch sees x only where it is taken (L elsewhere, R for the right one), so the branches
  // not taken stay finite and pass exact zero gradients through at::where.
  const at::Tensor x_below = at::where(below, xm, left), x_above = at::where(above, xm, right);
  const at::Tensor x_inside = at::where(inside, xm, left);
  // kernels/pwlu_math.h: inv_width = 1 / (R - L), u = (x - L) * (N inv_width), the piece
  // i = clamp(floor(u), 0, N - 1) (0 for NaN), t = u - i.
  const at::Tensor inv_width = (right - left).reciprocal();
  const at::Tensor u = (x_inside - left) * (inv_width * static_cast<double>(n));
  const at::Tensor fl = u.detach().floor();
  const at::Tensor piece = at::where(fl >= 0, fl, at::zeros_like(fl)).clamp_max(static_cast<double>(n - 1));
  const at::Tensor t = u - piece;
  // Heights of the element's group at the piece's ends: h[group, i] and h[group, i + 1] (advanced
  // indexing, which torch.vmap batches).
  const at::Tensor group = per_channel(at::arange(cfg.groups, x.options().dtype(at::kLong)));
  const at::Tensor index = piece.to(at::kLong);
  const at::Tensor y_lo = h.index({group, index}), y_hi = h.index({group, index + 1});
  const at::Tensor y_inside = y_lo + t * (y_hi - y_lo);
  const at::Tensor y_below = per_channel(h.select(1, 0)) + (x_below - left) * per_channel(k.select(1, 0));
  const at::Tensor y_above = per_channel(h.select(1, n)) + (x_above - right) * per_channel(k.select(1, 1));
  return at::where(below, y_below, at::where(above, y_above, y_inside)).to(x.scalar_type());
}

TORCH_LIBRARY_IMPL(torch_rational, FuncTorchBatched, m) {
  m.impl("pwlu", &pwlu_composite);
}

}  // namespace torch_rational
