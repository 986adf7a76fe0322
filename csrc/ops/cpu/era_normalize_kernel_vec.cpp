// The fused CPU kernels of era_normalize (csrc/ops/era_normalize.cpp) over the middle of x's
// memory order: x is (O, R, I) contiguous, normalised over R per (o, i). Plain loops across the I
// columns, which the compiler vectorises; compiled once per CPU capability like the other
// *_kernel_vec.cpp files, because they are compute-bound (float64 sums) at the baseline's 2 lanes.
#include "ops/cpu/era_normalize_kernel_vec.h"

#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

namespace torch_rational {
namespace cpu {
namespace CPU_CAPABILITY {
namespace {

// Columns of one task: a slice of R rows x this many columns stays in the L2 cache across the
// kernels' two passes (statistics, then the write), so x and the gradient are read from memory
// once. Whole rows where they fit (read in memory order; measured faster than 256 columns on
// NCHW's 1024-column rows, whose 4 KiB stride defeats the prefetcher).
inline int64_t columns_per_task(int64_t reduced, int64_t inner, size_t element_size) {
  constexpr int64_t kSliceBytes = 256 * 1024;
  constexpr int64_t kVectorColumns = 16;  // one AVX-512 register of float
  constexpr int64_t kMaxColumns = 1024;
  const int64_t fit = kSliceBytes / static_cast<int64_t>(element_size) / std::max<int64_t>(reduced, 1);
  const int64_t columns = std::clamp(fit / kVectorColumns * kVectorColumns, kVectorColumns, kMaxColumns);
  return std::min(columns, inner);
}

// Calls body(offset of the slice's first element in x, offset of its first column in the (O, I)
// statistics, number of columns) for every (outer, column block) task, in parallel. Each column is
// reduced by one task in a fixed order, so the results do not depend on the thread count.
template <typename Body>
void for_each_slice(int64_t outer, int64_t reduced, int64_t inner, size_t element_size, const Body& body) {
  const int64_t columns = columns_per_task(reduced, inner, element_size);
  const int64_t blocks = (inner + columns - 1) / columns;
  at::parallel_for(0, outer * blocks, 1, [&](int64_t begin, int64_t end) {
    for (int64_t task = begin; task < end; ++task) {
      const int64_t o = task / blocks, first = (task % blocks) * columns;
      body(o * reduced * inner + first, o * inner + first, std::min(columns, inner - first));
    }
  });
}

// sum_a[i] += u, sum_b[i] += v over rows [row_begin, R) of n columns, (u, v) = terms(r * I + i, i);
// each column's terms added in a fixed order (four rows at a time, then one), so the sums do not
// depend on the thread count. Four rows per update of the float64 sums: the sums of 1024 columns
// (16 KiB) do not stay in the L1 cache while the rows stream through, and their traffic to the L2
// cache, not the arithmetic, set the time.
template <typename Terms>
void column_sums(int64_t row_begin, int64_t R, int64_t I, int64_t n, const Terms& terms, double* __restrict__ sum_a,
                 double* __restrict__ sum_b) {
  int64_t r = row_begin;
  for (; r + 4 <= R; r += 4)
    for (int64_t i = 0; i < n; ++i) {
      const auto [u0, v0] = terms(r * I + i, i);
      const auto [u1, v1] = terms((r + 1) * I + i, i);
      const auto [u2, v2] = terms((r + 2) * I + i, i);
      const auto [u3, v3] = terms((r + 3) * I + i, i);
      sum_a[i] += (u0 + u1) + (u2 + u3);
      sum_b[i] += (v0 + v1) + (v2 + v3);
    }
  for (; r < R; ++r)
    for (int64_t i = 0; i < n; ++i) {
      const auto [u, v] = terms(r * I + i, i);
      sum_a[i] += u;
      sum_b[i] += v;
    }
}

// y = (x - mean) * rstd per column of each (R, I) slice; mean and rstd (O, I) float64. One pass of
// float64 sums of d and d^2, d = x - (the column's first x): shifted by a value of the column, so
// E[d^2] - E[d]^2 does not cancel the way the raw moments would. The write in the op math type.
template <typename scalar_t>
void middle_forward_kernel(const at::Tensor& x, at::Tensor& y, at::Tensor& mean, at::Tensor& rstd) {
  using opmath_t = at::opmath_type<scalar_t>;
  const int64_t R = x.size(1), I = x.size(2);
  const scalar_t* x_base = x.const_data_ptr<scalar_t>();
  scalar_t* y_base = y.mutable_data_ptr<scalar_t>();
  double* mean_base = mean.mutable_data_ptr<double>();
  double* rstd_base = rstd.mutable_data_ptr<double>();
  for_each_slice(x.size(0), R, I, sizeof(scalar_t), [&](int64_t offset, int64_t stat, int64_t n) {
    const scalar_t* __restrict__ xs = x_base + offset;
    scalar_t* __restrict__ ys = y_base + offset;
    double* __restrict__ m = mean_base + stat;  // the shift, then the mean
    double* __restrict__ s = rstd_base + stat;  // sum d^2, then rstd
    std::vector<double> sum_d(n, 0.0);
    double* __restrict__ s1 = sum_d.data();
    for (int64_t i = 0; i < n; ++i) {
      m[i] = static_cast<double>(xs[i]);
      s[i] = 0.0;
    }
    column_sums(1, R, I, n, [&](int64_t k, int64_t i) {
      const double d = static_cast<double>(xs[k]) - m[i];
      return std::pair<double, double>(d, d * d);
    }, s1, s);
    std::vector<opmath_t> m_op(n), s_op(n);
    opmath_t* __restrict__ mo = m_op.data();
    opmath_t* __restrict__ so = s_op.data();
    for (int64_t i = 0; i < n; ++i) {
      const double mean_d = s1[i] / static_cast<double>(R);
      const double var = std::max(s[i] / static_cast<double>(R) - mean_d * mean_d, 0.0);
      m[i] += mean_d;
      s[i] = 1.0 / std::sqrt(var + kEraNormEps);
      mo[i] = static_cast<opmath_t>(m[i]);
      so[i] = static_cast<opmath_t>(s[i]);
    }
    for (int64_t r = 0; r < R; ++r)
      for (int64_t i = 0; i < n; ++i)
        ys[r * I + i] = static_cast<scalar_t>((static_cast<opmath_t>(xs[r * I + i]) - mo[i]) * so[i]);
  });
}

// grad_x = rstd * (g - mean_R(g) - xhat * mean_R(g * xhat)), xhat = (x - mean) * rstd: the
// derivative of the normalisation (no affine), with the column sums in float64.
template <typename scalar_t>
void middle_backward_kernel(const at::Tensor& g, const at::Tensor& x, const at::Tensor& mean, const at::Tensor& rstd,
                            at::Tensor& grad_x) {
  using opmath_t = at::opmath_type<scalar_t>;
  const int64_t R = x.size(1), I = x.size(2);
  const scalar_t* g_base = g.const_data_ptr<scalar_t>();
  const scalar_t* x_base = x.const_data_ptr<scalar_t>();
  scalar_t* gx_base = grad_x.mutable_data_ptr<scalar_t>();
  const double* mean_base = mean.const_data_ptr<double>();
  const double* rstd_base = rstd.const_data_ptr<double>();
  for_each_slice(x.size(0), R, I, sizeof(scalar_t), [&](int64_t offset, int64_t stat, int64_t n) {
    const scalar_t* __restrict__ gs = g_base + offset;
    const scalar_t* __restrict__ xs = x_base + offset;
    scalar_t* __restrict__ gxs = gx_base + offset;
    const double* __restrict__ m = mean_base + stat;
    const double* __restrict__ s = rstd_base + stat;
    std::vector<double> sums(2 * n, 0.0);
    double* __restrict__ sum_g = sums.data();
    double* __restrict__ sum_gx = sums.data() + n;  // sum g (x - mean)
    column_sums(0, R, I, n, [&](int64_t k, int64_t i) {
      const double gv = static_cast<double>(gs[k]);
      return std::pair<double, double>(gv, gv * (static_cast<double>(xs[k]) - m[i]));
    }, sum_g, sum_gx);
    // grad_x = s g - s mean(g) - (x - mean) s^3 mean(g (x - mean)), as a g + b + c x per column.
    std::vector<opmath_t> coef(3 * n);
    opmath_t* __restrict__ a = coef.data();
    opmath_t* __restrict__ b = coef.data() + n;
    opmath_t* __restrict__ c = coef.data() + 2 * n;
    for (int64_t i = 0; i < n; ++i) {
      const double mg = sum_g[i] / static_cast<double>(R);
      const double cx = -sum_gx[i] / static_cast<double>(R) * s[i] * s[i] * s[i];
      a[i] = static_cast<opmath_t>(s[i]);
      b[i] = static_cast<opmath_t>(-s[i] * mg - cx * m[i]);
      c[i] = static_cast<opmath_t>(cx);
    }
    for (int64_t r = 0; r < R; ++r)
      for (int64_t i = 0; i < n; ++i)
        gxs[r * I + i] = static_cast<scalar_t>(a[i] * static_cast<opmath_t>(gs[r * I + i]) + b[i] +
                                               c[i] * static_cast<opmath_t>(xs[r * I + i]));
  });
}

void middle_forward(const at::Tensor& x, at::Tensor& y, at::Tensor& mean, at::Tensor& rstd) {
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "era_normalize",
                                  [&] { middle_forward_kernel<scalar_t>(x, y, mean, rstd); });
}

void middle_backward(const at::Tensor& g, const at::Tensor& x, const at::Tensor& mean, const at::Tensor& rstd,
                     at::Tensor& grad_x) {
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "era_normalize_backward",
                                  [&] { middle_backward_kernel<scalar_t>(g, x, mean, rstd, grad_x); });
}

}  // namespace

const EraNormalizeKernels& era_normalize_table() {
  static const EraNormalizeKernels t{middle_forward, middle_backward};
  return t;
}

}  // namespace CPU_CAPABILITY
}  // namespace cpu
}  // namespace torch_rational
