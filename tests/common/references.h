// Float64 references of the activation ops, written from the formulas with plain ATen ops (no
// code shared with the kernels) and differentiated by ATen's autograd. Used by the C++ op tests
// (tests/cpp) and the emulated CUDA kernel tests (tests/cuda_emu).
#pragma once

#include <torch/torch.h>

#include <algorithm>
#include <string>
#include <vector>

namespace tr_test {

// ---- Rational: y = P(x) / Q(x) for one group's coefficients a (m + 1) and b (dense, see the op).
// Basis f_0..f_D written out per family with ATen ops (not the kernels' shared recurrence table).
inline std::vector<torch::Tensor> reference_basis(const torch::Tensor& x, const std::string& basis, int D) {
  std::vector<torch::Tensor> f;
  f.push_back(torch::ones_like(x));
  for (int k = 1; k <= D; ++k) {
    const auto& f1 = f[k - 1];
    const torch::Tensor f2 = k >= 2 ? f[k - 2] : torch::zeros_like(x);
    const double km = k - 1;  // f_k from f_{k-1}, f_{k-2}
    torch::Tensor next;
    if (basis == "power") {
      next = x.pow(k);
    } else if (basis == "chebyshev_t") {
      next = k == 1 ? x.clone() : 2 * x * f1 - f2;
    } else if (basis == "chebyshev_u") {
      next = 2 * x * f1 - f2;
    } else if (basis == "hermite") {
      next = 2 * x * f1 - 2 * km * f2;
    } else if (basis == "hermite_e") {
      next = x * f1 - km * f2;
    } else if (basis == "laguerre") {
      next = ((2 * km + 1 - x) * f1 - km * f2) / (km + 1);
    } else {  // legendre
      next = ((2 * km + 1) * x * f1 - km * f2) / (km + 1);
    }
    f.push_back(next);
  }
  return f;
}

inline torch::Tensor rational_reference(const torch::Tensor& x, const torch::Tensor& a, const torch::Tensor& b,
                        const std::string& version, const std::string& basis) {
  const int m = a.size(-1) - 1;
  const int k0 = version == "C" ? 0 : 1;
  const int n_top = b.size(-1) - 1 + k0;
  auto f = reference_basis(x, basis, std::max(m, n_top));
  torch::Tensor P = torch::zeros_like(x);
  for (int j = 0; j <= m; ++j) P = P + a[j] * f[j];
  torch::Tensor S = torch::zeros_like(x);
  for (int i = 0; i < b.size(-1); ++i) {
    if (version == "A") S = S + b[i].abs() * f[i + k0].abs();
    else S = S + b[i] * f[i + k0];
  }
  torch::Tensor Q;
  if (version == "A" || version == "N") Q = 1 + S;
  else if (version == "B") Q = 1 + S.abs();
  else Q = 0.1 + S.abs();
  return P / Q;
}

// ---- ERA.
// y = a x + b + sum_i (c_i x + d_i) / ((x - e_i)^2 + f_i^2 + eps) for one group.
inline torch::Tensor era_reference(const torch::Tensor& x, const torch::Tensor& lin, const torch::Tensor& fr, double eps) {
  torch::Tensor y = lin[0] * x + lin[1];
  for (int64_t i = 0; i < fr.size(0); ++i) {
    auto row = fr[i];
    y = y + (row[0] * x + row[1]) / ((x - row[2]).pow(2) + row[3].pow(2) + eps);
  }
  return y;
}

// ---- PWLU.
// Group of each element along dim 1 of x (x has a channel dimension 1, contiguous channel blocks).
inline torch::Tensor group_of(const torch::Tensor& x, int64_t groups) {
  const int64_t c = x.size(1);
  auto g = torch::arange(c, torch::kLong).floor_divide(c / groups);
  std::vector<int64_t> shape(x.dim(), 1);
  shape[1] = c;
  return g.reshape(shape).expand(x.sizes());
}

// y = Y_0 + (x - L) K_L for x < L; Y_N + (x - R) K_R for x >= R; else Y_i + t (Y_{i+1} - Y_i).
inline torch::Tensor pwlu_reference(const torch::Tensor& x, const torch::Tensor& h, const torch::Tensor& b,
                        const torch::Tensor& s) {
  const int64_t groups = h.size(0), n = h.size(1) - 1;
  const auto gi = group_of(x, groups);
  const auto left = b.select(1, 0).index({gi}), right = b.select(1, 1).index({gi});
  const auto kl = s.select(1, 0).index({gi}), kr = s.select(1, 1).index({gi});
  const auto u = (x - left) / ((right - left) / static_cast<double>(n));
  const auto i = u.detach().floor().clamp(0, n - 1).to(torch::kLong);
  const auto t = u - i;
  const auto yi = h.index({gi, i}), yn = h.index({gi, i + 1});
  const auto inner = yi + t * (yn - yi);
  const auto lo = h.select(1, 0).index({gi}) + (x - left) * kl;
  const auto hi = h.select(1, n).index({gi}) + (x - right) * kr;
  return torch::where(x < left, lo, torch::where(x >= right, hi, inner));
}

// t as a float64 leaf that requires grad: the input of a reference whose gradients a test compares
// with the op's.
inline torch::Tensor float64_leaf(const torch::Tensor& t) {
  return t.detach().to(torch::kDouble).requires_grad_(true);
}

}  // namespace tr_test
