// The rational op as a differentiable composite of ATen ops (see composite.h), and its registration
// at FuncTorchBatched: under torch.vmap the op runs as the composite, whose ATen ops torch batches.
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <vector>

#include "ops/composite/composite.h"
#include "ops/rational_utils.h"

namespace torch_rational {
namespace {

using composite::math_dtype;
using composite::per_channel;

// Multipliers (1 + u) of every element and coefficient, shape (x.shape..., count), drawn by the
// fused kernels' own kernels::noise_multipliers (row-major element index, float64), on the CPU and
// then moved to x's device.
at::Tensor noise_multipliers_like(const at::Tensor& x, int count, double noise, uint64_t seed) {
  const int64_t n = x.numel();
  at::Tensor out = at::empty({n, count}, at::TensorOptions().dtype(at::kDouble));
  double* p = out.data_ptr<double>();
  at::parallel_for(0, n, 2048, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i)
      kernels::noise_multipliers<double>(seed, static_cast<uint64_t>(i), count, noise, p + i * count);
  });
  std::vector<int64_t> shape(x.sizes().begin(), x.sizes().end());
  shape.push_back(count);
  return out.view(shape).to(x.device(), math_dtype(x));
}

// f_0..f_D at x by the basis recurrence of kernels::basis_recurrence. Terms whose factor is exactly
// 0 or 1 are left out, as their value would be unchanged, except that 0 * inf would be NaN.
std::vector<at::Tensor> basis_values(const at::Tensor& x, int degree, kernels::Basis basis) {
  std::vector<at::Tensor> f;
  f.reserve(static_cast<size_t>(degree) + 1);
  f.push_back(at::ones_like(x));
  for (int k = 0; k < degree; ++k) {
    double alpha, beta, gamma;
    kernels::basis_recurrence<double>(basis, k, alpha, beta, gamma);
    at::Tensor lin = alpha == 1.0 ? x : x * alpha;
    if (beta != 0.0) lin = lin + beta;
    at::Tensor next = k == 0 ? lin : lin * f[static_cast<size_t>(k)];
    if (gamma != 0.0 && k > 0) next = next - f[static_cast<size_t>(k) - 1] * gamma;
    f.push_back(next);
  }
  return f;
}

}  // namespace

at::Tensor rational_composite(const at::Tensor& x, const at::Tensor& numerator, const at::Tensor& denominator,
                              c10::string_view version, c10::string_view basis, int64_t channel_dim, double noise,
                              const std::optional<at::Tensor>& noise_seed) {
  const RationalConfig cfg =
      check_rational_args(x, numerator, denominator, version, basis, channel_dim, noise, noise_seed);
  const at::ScalarType math = math_dtype(x);
  const at::Tensor xm = x.to(math);
  const at::Tensor a = numerator.to(math).reshape({cfg.groups, cfg.m + 1});
  const at::Tensor b = denominator.to(math).reshape({cfg.groups, cfg.nb});
  const int k0 = kernels::first_den_power(cfg.version);
  const int degree = std::max(cfg.m, cfg.nb - 1 + k0);
  const at::Tensor mult =
      noise > 0.0 ? noise_multipliers_like(x, cfg.m + 1 + cfg.nb, noise, read_noise_seed(noise, noise_seed))
                  : at::Tensor();
  // Coefficient c of the element's group, times the element's multiplier under noise (numerator
  // coefficients first, then the denominator's, as noise_multipliers lays them out).
  auto coefficient = [&](const at::Tensor& coefs, int64_t column, int64_t noise_slot) {
    at::Tensor c = per_channel(coefs.select(1, column), x, cfg.groups, cfg.channel_dim);
    return mult.defined() ? c * mult.select(-1, noise_slot) : c;
  };
  const std::vector<at::Tensor> f = basis_values(xm, degree, cfg.basis);
  at::Tensor p = coefficient(a, 0, 0) * f[0];
  for (int j = 1; j <= cfg.m; ++j) p = p + coefficient(a, j, j) * f[static_cast<size_t>(j)];
  at::Tensor q;
  if (cfg.version == kernels::Version::A) {
    q = at::ones_like(xm);
    for (int i = 0; i < cfg.nb; ++i)
      q = q + coefficient(b, i, cfg.m + 1 + i).abs() * f[static_cast<size_t>(i + k0)].abs();
  } else {
    at::Tensor s = coefficient(b, 0, cfg.m + 1) * f[static_cast<size_t>(k0)];
    for (int i = 1; i < cfg.nb; ++i) s = s + coefficient(b, i, cfg.m + 1 + i) * f[static_cast<size_t>(i + k0)];
    q = cfg.version == kernels::Version::N ? s + 1.0 : s.abs() + kernels::den_constant<double>(cfg.version);
  }
  return (p / q).to(x.scalar_type());
}

TORCH_LIBRARY_IMPL(torch_rational, FuncTorchBatched, m) {
  m.impl("rational", &rational_composite);
}

}  // namespace torch_rational
