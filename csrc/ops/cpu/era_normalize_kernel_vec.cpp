// The fused CPU kernels of era_normalize and normalized_era (csrc/ops/era_normalize.cpp): x is
// (O, R, I) contiguous, normalised over R per (o, i). The normalisation alone (middle_*, I > 1) is
// plain loops across the I columns, which the compiler vectorises; the ERA of the normalised x
// (era_*, any I) normalises each vector of x in registers on its way into ERA's vector math
// (era_vec_math.h): each slice of x is read twice, the second time from the L2 cache (the
// statistics' read of the next slice is requested during this one's ERA pass), and the normalised
// x is never stored. Compiled once per CPU capability like the other
// *_kernel_vec.cpp files: the float64 sums are compute-bound at the baseline's 2 lanes.
#include "ops/cpu/era_normalize_kernel_vec.h"

#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <tuple>
#include <vector>

#include "era_math.h"
#include "ops/cpu/era_vec_math.h"
#include "ops/cpu/vec_lanes.h"

namespace torch_rational {
namespace cpu {
namespace CPU_CAPABILITY {
namespace {

// Columns of one task: a slice of R rows x this many columns stays in the L2 cache across the
// kernels' two passes (statistics, then the write), so x and the gradient are read from memory
// once. Whole rows where they fit (read in memory order; measured faster than 256 columns on
// NCHW's 1024-column rows, whose 4 KiB stride defeats the prefetcher).
// At most kMaxColumns, so a slice's per-column statistics and coefficients are arrays on the stack
// (a heap allocation per task cost more than the work of a 64-element row).
constexpr int64_t kMaxColumns = 1024;

inline int64_t columns_per_task(int64_t reduced, int64_t inner, size_t element_size) {
  constexpr int64_t kSliceBytes = 256 * 1024;
  constexpr int64_t kVectorColumns = 16;  // one AVX-512 register of float
  const int64_t fit = kSliceBytes / static_cast<int64_t>(element_size) / std::max<int64_t>(reduced, 1);
  const int64_t columns = std::clamp(fit / kVectorColumns * kVectorColumns, kVectorColumns, kMaxColumns);
  return std::min(columns, inner);
}

// The tasks of a kernel: one per (outer, block of columns), a slice of R rows x up to `columns`
// columns (one column when I == 1: a task is then one normalised row of R elements).
struct Slices {
  int64_t R, I, columns, blocks, tasks;
  Slices(int64_t outer, int64_t reduced, int64_t inner, size_t element_size)
      : R(reduced), I(inner), columns(columns_per_task(reduced, inner, element_size)),
        blocks((inner + columns - 1) / columns), tasks(outer * blocks) {}
  int64_t offset(int64_t t) const { return t / blocks * R * I + t % blocks * columns; }
  // body(offset of the slice's first element in x, offset of its first column in the (O, I)
  // statistics, number of columns, offset of the next slice the thread takes or -1) for task t.
  template <typename Body>
  void run(int64_t t, int64_t end, const Body& body) const {
    const int64_t o = t / blocks, first = (t % blocks) * columns;
    body(offset(t), o * I + first, std::min(columns, I - first), t + 1 < end ? offset(t + 1) : int64_t{-1});
  }
};

// Calls slices.run(task, body) for every task, in parallel. Each column is reduced by one task in
// a fixed order, so the results do not depend on the thread count.
template <typename Body>
void for_each_slice(const Slices& slices, const Body& body) {
  at::parallel_for(0, slices.tasks, 1, [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t) slices.run(t, end, body);
  });
}

// A slice's statistics pass reads x from memory without the arithmetic to hide the wait: the pass
// before it (over the previous slice, from the L2 cache) requests it, one line per vector, at the
// same place in the slice (next: x at the next slice's first element, or null).
inline void prefetch_next_slice(const float* next, int64_t k) {
  if (next != nullptr) __builtin_prefetch(next + k);
}

// Calls body(chunk, first task, end task) for each of `chunks` consecutive runs of tasks, in
// parallel: the runs depend on the shape alone, so per-chunk partial sums added in chunk order do
// not depend on the thread count.
template <typename Body>
void for_each_chunk(int64_t tasks, int64_t chunks, const Body& body) {
  at::parallel_for(0, chunks, 1, [&](int64_t begin, int64_t end) {
    for (int64_t c = begin; c < end; ++c) body(c, tasks * c / chunks, tasks * (c + 1) / chunks);
  });
}

// Rows of R elements (I == 1) per unit of at::parallel_for's split: enough work to pay for a task.
inline int64_t rows_per_grain(int64_t R) { return std::max<int64_t>(1, 16384 / std::max<int64_t>(R, 1)); }

// sum_a[i] += u, sum_b[i] += v over the R rows of n columns, (u, v) = terms(r * I + i, i);
// each column's terms added in a fixed order (eight rows at a time in the terms' type, then into
// float64; then the last rows one by one), so the sums do not depend on the thread count. Eight
// rows per update of the float64 sums: the sums of 1024 columns (16 KiB) do not stay in the L1
// cache while the rows stream through, and their traffic and conversions, not the terms, set
// the time.
template <typename Terms>
void column_sums(int64_t R, int64_t I, int64_t n, const Terms& terms, double* __restrict__ sum_a,
                 double* __restrict__ sum_b) {
  constexpr int kRows = 8;
  int64_t r = 0;
  for (; r + kRows <= R; r += kRows)
    for (int64_t i = 0; i < n; ++i) {
      decltype(terms(0, 0).first) u[kRows], v[kRows];
      for (int j = 0; j < kRows; ++j) std::tie(u[j], v[j]) = terms((r + j) * I + i, i);
      sum_a[i] += static_cast<double>(((u[0] + u[1]) + (u[2] + u[3])) + ((u[4] + u[5]) + (u[6] + u[7])));
      sum_b[i] += static_cast<double>(((v[0] + v[1]) + (v[2] + v[3])) + ((v[4] + v[5]) + (v[6] + v[7])));
    }
  for (; r < R; ++r)
    for (int64_t i = 0; i < n; ++i) {
      const auto [u, v] = terms(r * I + i, i);
      sum_a[i] += static_cast<double>(u);
      sum_b[i] += static_cast<double>(v);
    }
}

// The float64 mean and rstd of n statistics of R elements each from the sums of d = x - shift and
// d^2: mean holds the shifts on entry. In float64 vectors: a scalar divide and square root per
// column cost as much as the column's sums (std::sqrt does not vectorise: errno).
inline void finish_statistics(const double* sum_d, const double* sum_d2, int64_t n, int64_t R, double* mean,
                              double* rstd) {
  using dVec = at::vec::Vectorized<double>;
  constexpr int64_t kD = dVec::size();
  const double count = static_cast<double>(R);
  int64_t i = 0;
  for (; i + kD <= n; i += kD) {
    const dVec mean_d = dVec::loadu(sum_d + i) / dVec(count);
    const dVec var = at::vec::maximum(dVec::loadu(sum_d2 + i) / dVec(count) - mean_d * mean_d, dVec(0.0));
    (dVec::loadu(mean + i) + mean_d).store(mean + i);
    (var + dVec(kEraNormEps)).rsqrt().store(rstd + i);
  }
  // The rest one by one (a masked load of values stored just before stalls: one row's statistic).
  for (; i < n; ++i) {
    const double mean_d = sum_d[i] / count;
    const double var = std::max(sum_d2[i] / count - mean_d * mean_d, 0.0);
    mean[i] += mean_d;
    rstd[i] = 1.0 / std::sqrt(var + kEraNormEps);
  }
}

// mean and rstd of each column of a slice, I > 1 (xs: its first element). Sums of d and d^2, d = x -
// (the column's first x): shifted by a value of the statistic, so E[d^2] - E[d]^2 does not
// cancel the way the raw moments would. The terms in the op math type, four rows of them added
// before each float64 add (float32 terms: the statistics cost as much as the ERA itself with a
// conversion to float64 per element).
template <typename scalar_t>
void slice_statistics(const scalar_t* __restrict__ xs, int64_t R, int64_t I, int64_t n, double* __restrict__ mean,
                      double* __restrict__ rstd) {
  using opmath_t = at::opmath_type<scalar_t>;
  double sum_d[kMaxColumns] = {}, sum_d2[kMaxColumns] = {};
  opmath_t shift[kMaxColumns];
  for (int64_t i = 0; i < n; ++i) {
    shift[i] = static_cast<opmath_t>(xs[i]);
    mean[i] = static_cast<double>(shift[i]);
  }
  column_sums(R, I, n, [&](int64_t k, int64_t i) {
    const opmath_t d = static_cast<opmath_t>(xs[k]) - shift[i];
    return std::pair<opmath_t, opmath_t>(d, d * d);
  }, sum_d, sum_d2);
  finish_statistics(sum_d, sum_d2, n, R, mean, rstd);
}

// grad_x of the normalisation of a slice (I > 1) for grad_output g: grad_x = rstd * (g - mean_R(g) -
// xhat * mean_R(g * xhat)), xhat = (x - mean) * rstd, with float64 terms and sums (any dtype).
template <typename scalar_t>
void normalize_backward_slice(const scalar_t* __restrict__ g, const scalar_t* __restrict__ xs,
                              scalar_t* __restrict__ gx, int64_t R, int64_t I, int64_t n,
                              const double* __restrict__ mean, const double* __restrict__ rstd) {
  using opmath_t = at::opmath_type<scalar_t>;
  double sum_g[kMaxColumns] = {}, sum_gx[kMaxColumns] = {};  // sum g, sum g (x - mean)
  column_sums(R, I, n, [&](int64_t k, int64_t i) {
    const double gv = static_cast<double>(g[k]);
    return std::pair<double, double>(gv, gv * (static_cast<double>(xs[k]) - mean[i]));
  }, sum_g, sum_gx);
  // grad_x = s g - s mean(g) - (x - mean) s^3 mean(g (x - mean)), as a g + b + c x per statistic.
  opmath_t a[kMaxColumns], b[kMaxColumns], c[kMaxColumns];
  for (int64_t i = 0; i < n; ++i) {
    const double s = rstd[i];
    const double mg = sum_g[i] / static_cast<double>(R);
    const double cx = -sum_gx[i] / static_cast<double>(R) * s * s * s;
    a[i] = static_cast<opmath_t>(s);
    b[i] = static_cast<opmath_t>(-s * mg - cx * mean[i]);
    c[i] = static_cast<opmath_t>(cx);
  }
  for (int64_t r = 0; r < R; ++r)
    for (int64_t i = 0; i < n; ++i)
      gx[r * I + i] = static_cast<scalar_t>(a[i] * static_cast<opmath_t>(g[r * I + i]) + b[i] +
                                            c[i] * static_cast<opmath_t>(xs[r * I + i]));
}

// y = (x - mean) * rstd per column of each (R, I) slice, I > 1; mean and rstd (O, I) float64.
// The write in the op math type.
template <typename scalar_t>
void middle_forward_kernel(const at::Tensor& x, at::Tensor& y, at::Tensor& mean, at::Tensor& rstd) {
  using opmath_t = at::opmath_type<scalar_t>;
  const int64_t R = x.size(1), I = x.size(2);
  const scalar_t* x_base = x.const_data_ptr<scalar_t>();
  scalar_t* y_base = y.mutable_data_ptr<scalar_t>();
  double* mean_base = mean.mutable_data_ptr<double>();
  double* rstd_base = rstd.mutable_data_ptr<double>();
  for_each_slice(Slices(x.size(0), R, I, sizeof(scalar_t)), [&](int64_t offset, int64_t stat, int64_t n, int64_t) {
    const scalar_t* __restrict__ xs = x_base + offset;
    scalar_t* __restrict__ ys = y_base + offset;
    double* m = mean_base + stat;
    double* s = rstd_base + stat;
    slice_statistics(xs, R, I, n, m, s);
    opmath_t mo[kMaxColumns], so[kMaxColumns];
    std::copy(m, m + n, mo);
    std::copy(s, s + n, so);
    for (int64_t r = 0; r < R; ++r)
      for (int64_t i = 0; i < n; ++i)
        ys[r * I + i] = static_cast<scalar_t>((static_cast<opmath_t>(xs[r * I + i]) - mo[i]) * so[i]);
  });
}

template <typename scalar_t>
void middle_backward_kernel(const at::Tensor& g, const at::Tensor& x, const at::Tensor& mean, const at::Tensor& rstd,
                            at::Tensor& grad_x) {
  const int64_t R = x.size(1), I = x.size(2);
  const scalar_t* g_base = g.const_data_ptr<scalar_t>();
  const scalar_t* x_base = x.const_data_ptr<scalar_t>();
  scalar_t* gx_base = grad_x.mutable_data_ptr<scalar_t>();
  const double* mean_base = mean.const_data_ptr<double>();
  const double* rstd_base = rstd.const_data_ptr<double>();
  for_each_slice(Slices(x.size(0), R, I, sizeof(scalar_t)), [&](int64_t offset, int64_t stat, int64_t n, int64_t) {
    normalize_backward_slice(g_base + offset, x_base + offset, gx_base + offset, R, I, n, mean_base + stat,
                             rstd_base + stat);
  });
}

// ---------------------------------------------------------------------------------------------
// normalized_era: ERA of one group (VecEra<N>) on z = (x - mean) * rstd, float32.

using era_vec::fVec;
using era_vec::kLanes;
using era_vec::VecEra;

// The float32 mean and rstd of a slice's statistics, and each vector's: the columns' own (I > 1)
// or the row's in every lane (I == 1).
struct SliceScale {
  float mean[kMaxColumns], rstd[kMaxColumns];
  bool per_column;
  SliceScale(const double* m, const double* s, int64_t I, int64_t n) : per_column(I > 1) {
    std::copy(m, m + (per_column ? n : 1), mean);
    std::copy(s, s + (per_column ? n : 1), rstd);
  }
  // z of the vector of `count` elements of x at column i.
  C10_ALWAYS_INLINE fVec normalise(const fVec& x, int64_t i, int count) const {
    if (!per_column) return (x - fVec(mean[0])) * fVec(rstd[0]);
    return (x - load_lanes(mean + i, count)) * load_lanes(rstd + i, count);
  }
  C10_ALWAYS_INLINE float normalise(float x, int64_t i) const {
    const int64_t j = per_column ? i : 0;
    return (x - mean[j]) * rstd[j];
  }
};

// Calls body(offset, column, count) for the elements of a slice in vectors of up to kLanes: along
// each row's n columns (I > 1), or along the row of R elements (I == 1, column 0).
template <typename Body>
C10_ALWAYS_INLINE void for_each_vector(int64_t R, int64_t I, int64_t n, const Body& body) {
  if (I == 1) {
    for (int64_t k = 0; k < R; k += kLanes) body(k, int64_t{0}, static_cast<int>(std::min<int64_t>(kLanes, R - k)));
    return;
  }
  for (int64_t r = 0; r < R; ++r)
    for (int64_t i = 0; i < n; i += kLanes)
      body(r * I + i, i, static_cast<int>(std::min<int64_t>(kLanes, n - i)));
}

// Two sums along a row in float32 vectors, added into float64 every kFlushVectors vectors (each
// vector's lanes summed in a fixed order), then the row's last elements one by one: a row's statistics
// (I == 1) without a column array.
struct RowSums {
  fVec u = fVec(0.f), v = fVec(0.f);
  double sum_u = 0.0, sum_v = 0.0;
  int pending = 0;
  C10_ALWAYS_INLINE void add(const fVec& du, const fVec& dv) {
    u = u + du;
    v = v + dv;
    if (++pending == kFlushVectors) flush();
  }
  void add(float du, float dv) {  // after flush(): the elements of the row's partial vector
    sum_u += du;
    sum_v += dv;
  }
  void flush() {
    alignas(64) float bu[kLanes], bv[kLanes];
    u.store(bu);
    v.store(bv);
    for (int l = 0; l < kLanes; ++l) {
      sum_u += bu[l];
      sum_v += bv[l];
    }
    u = v = fVec(0.f);
    pending = 0;
  }
};

// The sums of d and d^2 over a row of R contiguous elements (I == 1), d = x - x[0] as in
// slice_statistics.
inline RowSums row_sums(const float* xs, int64_t R) {
  const float shift = xs[0];
  RowSums sums;
  int64_t k = 0;
  for (; k + kLanes <= R; k += kLanes) {
    const fVec d = fVec::loadu(xs + k) - fVec(shift);
    sums.add(d, d * d);
  }
  sums.flush();
  for (; k < R; ++k) {
    const float d = xs[k] - shift;
    sums.add(d, d * d);
  }
  return sums;
}

// Rows (I == 1) are taken kRowBatch at a time, one pass over the batch after the other: a row's
// float64 statistics are a chain of dependent operations as long as its ERA, and the rows of a
// batch are independent, so their chains overlap.
constexpr int64_t kRowBatch = 16;

// The gradient of a slice's columns (I > 1) through their normalisation, in place: gz = g dy/dz in
// gx on entry, grad_x = rstd (gz - mean(gz) - z mean(gz z)) on return (each element read before it
// is written: no dependence between elements, ivdep). As normalize_backward_slice, from float32
// terms (gz, gz z), z recomputed from x: eight rows of them summed before each float64 add (float64
// terms cost as much as the ERA's gradient).
inline void columns_normalize_pass(float* gx, const float* __restrict__ xs, int64_t R, int64_t I, int64_t n,
                                   const SliceScale& scale) {
  double sum_g[kMaxColumns] = {}, sum_gz[kMaxColumns] = {};
  const float* __restrict__ m = scale.mean;
  const float* __restrict__ s = scale.rstd;
  column_sums(R, I, n, [&](int64_t k, int64_t i) {
    const float gz = gx[k];
    return std::pair<float, float>(gz, gz * ((xs[k] - m[i]) * s[i]));
  }, sum_g, sum_gz);
  float b[kMaxColumns], c[kMaxColumns];
  for (int64_t i = 0; i < n; ++i) {
    b[i] = static_cast<float>(-s[i] * sum_g[i] / static_cast<double>(R));
    c[i] = static_cast<float>(-s[i] * sum_gz[i] / static_cast<double>(R));
  }
  for (int64_t r = 0; r < R; ++r)
#pragma GCC ivdep
    for (int64_t i = 0; i < n; ++i) {
      const int64_t k = r * I + i;
      gx[k] = s[i] * gx[k] + b[i] + c[i] * ((xs[k] - m[i]) * s[i]);
    }
}

template <int N>
void era_forward_kernel(const at::Tensor& x, const EraGroupParams& p, at::Tensor& y, at::Tensor& mean,
                        at::Tensor& rstd) {
  const VecEra<N> era(p);
  const int64_t R = x.size(1), I = x.size(2);
  const float* x_base = x.const_data_ptr<float>();
  float* y_base = y.mutable_data_ptr<float>();
  double* mean_base = mean.mutable_data_ptr<double>();
  double* rstd_base = rstd.mutable_data_ptr<double>();
  // One slice: R rows of n columns (I > 1), or one row of R elements (I == 1, n = 1).
  auto slice = [&](int64_t offset, int64_t stat, int64_t n, int64_t next) {
    const VecEra<N> E = era;  // a local: its vectors stay in registers through the loop
    const float* __restrict__ xs = x_base + offset;
    float* __restrict__ ys = y_base + offset;
    const float* x_next = next < 0 ? nullptr : x_base + next;
    if (I > 1) slice_statistics(xs, R, I, n, mean_base + stat, rstd_base + stat);  // rows: by the batch
    const SliceScale scale(mean_base + stat, rstd_base + stat, I, n);
    for_each_vector(R, I, n, [&](int64_t k, int64_t i, int count) C10_ALWAYS_INLINE_ATTRIBUTE {
      prefetch_next_slice(x_next, k);
      store_lanes(E.forward(scale.normalise(load_lanes(xs + k, count), i, count)), ys + k, count);
    });
  };
  if (I > 1) return for_each_slice(Slices(x.size(0), R, I, sizeof(float)), slice);
  // Rows: in order within a thread (the hardware prefetchers follow), a batch's statistics, then its ERA.
  at::parallel_for(0, x.size(0), rows_per_grain(R), [&](int64_t begin, int64_t end) {
    for (int64_t o = begin; o < end; o += kRowBatch) {
      const int64_t rows = std::min(kRowBatch, end - o);
      double sum_d[kRowBatch], sum_d2[kRowBatch];
      for (int64_t r = 0; r < rows; ++r) {
        const RowSums sums = row_sums(x_base + (o + r) * R, R);
        mean_base[o + r] = x_base[(o + r) * R];  // the shift
        sum_d[r] = sums.sum_u;
        sum_d2[r] = sums.sum_v;
      }
      finish_statistics(sum_d, sum_d2, rows, R, mean_base + o, rstd_base + o);
      for (int64_t r = 0; r < rows; ++r) slice((o + r) * R, o + r, 1, -1);
    }
  });
}

template <int N>
void era_backward_kernel(const at::Tensor& g, const at::Tensor& x, const at::Tensor& mean, const at::Tensor& rstd,
                         const EraGroupParams& p, at::Tensor& grad_x, double* grad_params) {
  constexpr int K = VecEra<N>::kAccumulators;
  const VecEra<N> era(p);
  const int64_t R = x.size(1), I = x.size(2);
  const float* g_base = g.const_data_ptr<float>();
  const float* x_base = x.const_data_ptr<float>();
  float* gx_base = grad_x.mutable_data_ptr<float>();
  const double* mean_base = mean.const_data_ptr<double>();
  const double* rstd_base = rstd.const_data_ptr<double>();
  const bool coefs = grad_params != nullptr;
  const Slices slices(x.size(0), R, I, sizeof(float));
  const int64_t tasks = I > 1 ? slices.tasks : x.size(0);  // slices, or rows (I == 1)
  constexpr int64_t kMaxChunks = 256;
  const int64_t chunks = std::min(tasks, kMaxChunks);
  std::vector<double> partials(coefs ? chunks * K : 0, 0.0);  // (a, b, c, d, e, f...) per chunk
  for_each_chunk(tasks, chunks, [&](int64_t chunk, int64_t first, int64_t end) {
    double* acc_lin = coefs ? partials.data() + chunk * K : nullptr;
    double* acc_fr = coefs ? acc_lin + 2 : nullptr;
    fVec acc[K];
    for (auto& v : acc) v = fVec(0.f);
    int pending = 0;
    auto flush = [&] { era_vec::flush_group_accumulators<N>(acc, p.fr, acc_lin, acc_fr); };
    // ERA's gradient at z (gz = g dy/dz) into grad_x, and the parameter gradients; for a row
    // (I == 1) also the sums of gz and gz z the normalisation's gradient needs.
    auto era_pass = [&](int64_t offset, const SliceScale& scale, int64_t n) {
      const VecEra<N> E = era;  // a local: its vectors stay in registers through the loop
      const float* __restrict__ gs = g_base + offset;
      const float* __restrict__ xs = x_base + offset;
      float* gxs = gx_base + offset;
      RowSums row;
      for_each_vector(R, I, n, [&](int64_t k, int64_t i, int count) C10_ALWAYS_INLINE_ATTRIBUTE {
        if (count == kLanes) {
          const fVec z = scale.normalise(fVec::loadu(xs + k), i, kLanes), gv = fVec::loadu(gs + k);
          const fVec gz = backward_step(coefs, pending, [&](auto with) {
            return E.template backward<decltype(with)::value>(z, gv, acc);
          }, flush);
          gz.store(gxs + k);
          if (I == 1) row.add(gz, gz * z);
          return;
        }
        // A partial vector through the scalar path, as ERA's run walk: zero-padded lanes could
        // turn into 0 * inf = NaN in the accumulators.
        if (I == 1) row.flush();
        for (int j = 0; j < count; ++j) {
          const float z = scale.normalise(xs[k + j], i + j);
          const float gz = kernels::era_backward_element<float, double>(z, gs[k + j], p.lin[0], p.fr, N, p.eps,
                                                                        acc_lin, acc_fr);
          gxs[k + j] = gz;
          if (I == 1) row.add(gz, gz * z);
        }
      });
      if (I == 1) row.flush();  // the row's sums; a slice of columns (I > 1) has none
      return row;
    };
    // A row's gradient through the normalisation, in place: grad_x = rstd (gz - mean(gz) - z mean(gz z)).
    auto row_normalize_pass = [&](int64_t o, const RowSums& sums) {
      const float* __restrict__ xs = x_base + o * R;
      float* __restrict__ gxs = gx_base + o * R;
      const SliceScale scale(mean_base + o, rstd_base + o, 1, 1);
      const float s = scale.rstd[0];
      const fVec a(s), b(static_cast<float>(-s * sums.sum_u / static_cast<double>(R))),
          c(static_cast<float>(-s * sums.sum_v / static_cast<double>(R)));
      for_each_vector(R, 1, 1, [&](int64_t k, int64_t i, int count) C10_ALWAYS_INLINE_ATTRIBUTE {
        const fVec z = scale.normalise(load_lanes(xs + k, count), i, count);
        store_lanes(at::vec::fmadd(a, load_lanes(gxs + k, count), at::vec::fmadd(c, z, b)), gxs + k, count);
      });
    };
    if (I > 1) {
      for (int64_t t = first; t < end; ++t)
        slices.run(t, end, [&](int64_t offset, int64_t stat, int64_t n, int64_t) {
          const SliceScale scale(mean_base + stat, rstd_base + stat, I, n);
          era_pass(offset, scale, n);
          columns_normalize_pass(gx_base + offset, x_base + offset, R, I, n, scale);
        });
    } else {
      for (int64_t o = first; o < end; o += kRowBatch) {  // a batch's ERA pass, then its normalisation
        const int64_t rows = std::min(kRowBatch, end - o);
        RowSums sums[kRowBatch];
        for (int64_t r = 0; r < rows; ++r)
          sums[r] = era_pass((o + r) * R, SliceScale(mean_base + o + r, rstd_base + o + r, 1, 1), 1);
        for (int64_t r = 0; r < rows; ++r) row_normalize_pass(o + r, sums[r]);
      }
    }
    if (coefs) flush();
  });
  if (!coefs) return;
  std::fill(grad_params, grad_params + K, 0.0);
  for (int64_t c = 0; c < chunks; ++c)
    for (int k = 0; k < K; ++k) grad_params[k] += partials[c * K + k];
}

void era_forward(const at::Tensor& x, const EraGroupParams& p, at::Tensor& y, at::Tensor& mean, at::Tensor& rstd) {
  const bool served =
      era_vec::with_fractions(p.n, [&](auto N) { era_forward_kernel<decltype(N)::value>(x, p, y, mean, rstd); });
  TORCH_INTERNAL_ASSERT(served, "normalized_era's fused kernel has no build for n = ", p.n);
}

void era_backward(const at::Tensor& g, const at::Tensor& x, const at::Tensor& mean, const at::Tensor& rstd,
                  const EraGroupParams& p, at::Tensor& grad_x, double* grad_params) {
  const bool served = era_vec::with_fractions(
      p.n, [&](auto N) { era_backward_kernel<decltype(N)::value>(g, x, mean, rstd, p, grad_x, grad_params); });
  TORCH_INTERNAL_ASSERT(served, "normalized_era's fused kernel has no build for n = ", p.n);
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
  static const EraNormalizeKernels t{middle_forward, middle_backward, era_forward, era_backward};
  return t;
}

}  // namespace CPU_CAPABILITY
}  // namespace cpu
}  // namespace torch_rational
