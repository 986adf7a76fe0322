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
  // kernels/pwlu_math.h (pwlu_locate): a first guess i = clamp(floor(u), 0, N - 1) from
  // u = (x - L) * (N inv_width), corrected by one piece by comparing x with the breakpoints
  // x_k = L + k d, d = (R - L) / N; then t = (x - x_i) * (N inv_width). The kernels round x_k once
  // (an FMA), which ATen has no op for: in float32 it is computed in float64 and rounded once (the
  // same value), in float64 with two roundings, so an x exactly on a float64 breakpoint may take the
  // piece to its left here (docs/DESIGN.md). The piece is constant, so it carries no gradient.
  const at::Tensor inv_d = (right - left).reciprocal() * static_cast<double>(n);
  const at::Tensor d = (right - left) / static_cast<double>(n);
  at::Tensor piece;
  {
    at::NoGradGuard no_grad;
    const at::Tensor xs = x_inside.detach(), l = left.detach(), dd = d.detach();
    auto breakpoint = [&](const at::Tensor& k) {
      if (math == at::kDouble) return l + k * dd;
      return (l.to(at::kDouble) + k.to(at::kDouble) * dd.to(at::kDouble)).to(math);
    };
    const at::Tensor fl = ((xs - l) * inv_d.detach()).floor();
    piece = at::where(fl >= 0, fl, at::zeros_like(fl)).clamp_max(static_cast<double>(n - 1));
    piece = at::where(at::logical_and(xs < breakpoint(piece), piece > 0), piece - 1,
                      at::where(at::logical_and(xs >= breakpoint(piece + 1), piece + 1 < n), piece + 1, piece));
  }
  const at::Tensor t = (x_inside - (left + piece * d)) * inv_d;
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
