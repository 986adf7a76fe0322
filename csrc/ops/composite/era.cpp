// The ERA op as a differentiable composite of ATen ops (see composite.h), and its registration at
// FuncTorchBatched: under torch.vmap the op runs as the composite, whose ATen ops torch batches.
#include <torch/library.h>

#include "ops/composite/composite.h"
#include "ops/era_utils.h"

namespace torch_rational {

at::Tensor era_composite(const at::Tensor& x, const at::Tensor& linear, const at::Tensor& fractions, double eps,
                         int64_t channel_dim) {
  const EraConfig cfg = check_era_args(x, linear, fractions, eps, channel_dim);
  const at::ScalarType math = composite::math_dtype(x);
  const at::Tensor xm = x.to(math);
  const at::Tensor lin = linear.to(math).reshape({cfg.groups, 2});
  const at::Tensor fr = fractions.to(math).reshape({cfg.groups, cfg.n, 4});
  auto per_channel = [&](const at::Tensor& per_group) {
    return composite::per_channel(per_group, x, cfg.groups, cfg.channel_dim);
  };
  // The kernels' evaluation order and limits (kernels/era_math.h): c (x / D) + d / D with
  // D = (x - e)^2 + (f^2 + eps); where D overflows to inf (|x| -> inf) the fraction is its limit 0,
  // and a x is b's alone when a == 0 and x is infinite. Each masked branch is evaluated at a finite
  // stand-in (x = e, x = 0), so no inf * 0 reaches autograd's products and the masks pass exact
  // zeros.
  const at::Tensor a = per_channel(lin.select(1, 0)), b = per_channel(lin.select(1, 1));
  const at::Tensor line_x = at::where(at::logical_and(a == 0, xm.isinf()), at::zeros_like(xm), xm);
  at::Tensor y = a * line_x + b;
  for (int i = 0; i < cfg.n; ++i) {
    const at::Tensor row = fr.select(1, i);
    const at::Tensor c = per_channel(row.select(1, 0)), d = per_channel(row.select(1, 1));
    const at::Tensor e = per_channel(row.select(1, 2)), f = per_channel(row.select(1, 3));
    const at::Tensor vanish = ((xm - e).square() + (f * f + eps)).detach().isinf();
    const at::Tensor xf = at::where(vanish, e, xm);
    const at::Tensor inv = ((xf - e).square() + (f * f + eps)).reciprocal();
    y = y + at::where(vanish, at::zeros_like(xm), c * (xf * inv) + d * inv);
  }
  return y.to(x.scalar_type());
}

TORCH_LIBRARY_IMPL(torch_rational, FuncTorchBatched, m) {
  m.impl("era", &era_composite);
}

}  // namespace torch_rational
