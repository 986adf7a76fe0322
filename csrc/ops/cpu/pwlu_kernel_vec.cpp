// Vectorised PWLU forward and fused backward for float32 math, compiled once per CPU capability
// (CPU_CAPABILITY is DEFAULT, AVX2 or AVX512, with the matching -m flags), like
// rational_kernel_vec.cpp.
//
// The piece index is computed lane-wise (a guess from u, corrected against the breakpoints as in
// kernels::pwlu_locate) and the heights fetched (HeightTable) with a lane permute (one group per
// vector, N <= lanes), a tree of blends over the rows of the vector's channels (channel walk, N <=
// 16) or a gather; the three regions (left line, pieces, right line) are computed for every lane
// and blended.
//
// Backward: grad_x is computed and stored as whole vectors. The parameter gradient is a histogram
// over pieces (the piece of an element is data dependent), which a vector scatter cannot add into
// when two lanes hit the same piece, so each lane's (bin, g, v) goes through a short scalar loop
// that adds g and g * v (both exact in float64: the product of two floats fits in a double) into
// float64 bins, one set per lane when the caller asks for it (see pwlu_kernel_vec.h). Only two
// values per element are scattered: the heights / bounds / slopes gradients all follow from the
// per-bin sums (pwlu_kernel.cpp, finish_bins), so no vector accumulators are needed at all.
#include <ATen/cpu/vec/functional.h>
#include <ATen/cpu/vec/vec.h>

#include <algorithm>
#include <cmath>
#include <type_traits>

#include "ops/cpu/pwlu_kernel_vec.h"
#include "ops/cpu/vec_lanes.h"

namespace torch_rational {
namespace cpu {
namespace CPU_CAPABILITY {
namespace {

using fVec = at::vec::Vectorized<float>;
using iVec = at::vec::Vectorized<int32_t>;
constexpr int kLanes = fVec::size();

#if defined(CPU_CAPABILITY_AVX512) || defined(CPU_CAPABILITY_AVX2)
// Per-lane rows without a gather (channel walk, N <= 16): lane l takes row idx_l of its own
// channel, rows[idx_l * ld + l], by a binary tree of blends on the bits of idx over the rows loaded
// as vectors (2^kLevels loads from the vector's K x 16 block, in L1, and 2^kLevels - 1 blends per
// table). With two gathers per vector the channel walk's forward took 2.6-2.9x the run walk's time,
// with the tree 1.8-1.9x (`scripts/benchmark_cpu.py --layouts --numel 1048576 --threads 1`, PWLU
// channels_last G=C=64, fwd x; 2-core AVX-512 machine, AMD EPYC, loaded). The rows' layout alone
// (by vector instead of by parameter) did not speed the gathers up: the instruction is the cost,
// not the lines it touches.
// pick_by_index reduces each of the kTables sets of 2^kLevels candidates to the one at idx.
template <int kLevels, int kTables>
C10_ALWAYS_INLINE void pick_by_index(fVec (&v)[kTables][1 << kLevels], const iVec& idx) {
  // Fully unrolled, so that the candidates stay in registers.
#pragma GCC unroll 4
  for (int level = 0; level < kLevels; ++level) {
#if defined(CPU_CAPABILITY_AVX512)
    const __mmask16 take_odd = _mm512_test_epi32_mask(idx, _mm512_set1_epi32(1 << level));
    auto pick = [&](const fVec& even, const fVec& odd) -> fVec { return _mm512_mask_blend_ps(take_odd, even, odd); };
#else
    // blendv reads the sign bit: bit `level` of idx shifted there.
    const __m256 take_odd = _mm256_castsi256_ps(_mm256_slli_epi32(idx, 31 - level));
    auto pick = [&](const fVec& even, const fVec& odd) -> fVec { return _mm256_blendv_ps(even, odd, take_odd); };
#endif
#pragma GCC unroll 16
    for (int k = 0; k < (1 << kLevels) >> (level + 1); ++k)
      for (int t = 0; t < kTables; ++t) v[t][k] = pick(v[t][2 * k], v[t][2 * k + 1]);
  }
}

// Y_idx and Y_{idx+1} (rows 0..N; the loads past N repeat row N, never picked): 2^kLevels + 1 loads.
template <int kLevels>
C10_ALWAYS_INLINE void select_heights(const float* rows, int64_t ld, int n, const iVec& idx, fVec& y_i, fVec& y_next) {
  fVec v[2][1 << kLevels];
  fVec row = fVec::loadu(rows);
  for (int k = 0; k < (1 << kLevels); ++k) {
    v[0][k] = row;
    row = fVec::loadu(rows + std::min(k + 1, n) * ld);
    v[1][k] = row;
  }
  pick_by_index<kLevels, 2>(v, idx);
  y_i = v[0][0];
  y_next = v[1][0];
}

// Row idx of the N rows at `rows` (the loads past N - 1 repeat row N - 1, never picked).
template <int kLevels>
C10_ALWAYS_INLINE fVec select_row(const float* rows, int64_t ld, int n, const iVec& idx) {
  fVec v[1][1 << kLevels];
  for (int k = 0; k < (1 << kLevels); ++k) v[0][k] = fVec::loadu(rows + std::min(k, n - 1) * ld);
  pick_by_index<kLevels, 1>(v, idx);
  return v[0][0];
}

// Calls fn(std::integral_constant<int, kLevels>) for the smallest tree that holds n rows, up to
// kMaxLevels; false (no call) for more rows, which take the gathers.
template <int kMaxLevels, typename Fn>
C10_ALWAYS_INLINE bool with_tree_levels(int n, Fn&& fn) {
  if (n <= 4) {
    fn(std::integral_constant<int, 2>{});
    return true;
  }
  if (n <= 8) {
    fn(std::integral_constant<int, 3>{});
    return true;
  }
  if constexpr (kMaxLevels >= 4) {
    if (n <= 16) {
      fn(std::integral_constant<int, 4>{});
      return true;
    }
  }
  return false;
}

// The largest tree for the heights' pair (select_heights). AVX2 has 16 vector registers: its pair
// tree for N = 16 spills and was slower than the gathers, for N <= 8 it was faster, and one tree
// (select_row, the backward's slopes) was faster for N = 16 too (the op on G = C, one thread,
// ATEN_CPU_CAPABILITY=avx2, AMD EPYC; the numbers are in the report of the change that made this).
#if defined(CPU_CAPABILITY_AVX512)
constexpr int kHeightTreeLevels = 4;
#else
constexpr int kHeightTreeLevels = 3;
#endif
#endif

// Y_idx and Y_{idx+1} for idx in [0, N - 1]. With N <= lanes (N = 16 and less on AVX512, 8 on AVX2)
// both tables fit in one register and a lane permute fetches them: the same values as a gather,
// much cheaper (N = 16, AVX512, 2^22 floats, one thread: forward 6.3 -> 1.7 ms; microcode that
// mitigates gather data sampling makes vgather slow). Otherwise a gather from memory.
// Channel walk (ld != 0): lane l's Y_k at heights[k * ld + l] and its piece slopes S_k = (Y_{k+1} -
// Y_k) * inv_d from row pwlu_channel_slope_row(N) on (PwluChannelParams), fetched by a select
// tree (N <= 16) or gathers.
struct HeightTable {
  const float* heights;
  bool in_register;
  fVec lo, hi;  // Y_0..Y_{N-1}, Y_1..Y_N (zero-padded) when in_register
  int64_t ld = 0;  // 0 in the run walk
  int n = 0;
  HeightTable(const float* soa, int64_t ld_, int n_) : heights(soa), in_register(false), ld(ld_), n(n_) {}
  HeightTable(const float* h, int n_) : heights(h), n(n_) {
#if defined(CPU_CAPABILITY_AVX512) || defined(CPU_CAPABILITY_AVX2)
    in_register = n <= kLanes;
#else
    in_register = false;
#endif
    if (in_register) {
      lo = fVec::loadu(h, n);
      hi = fVec::loadu(h + 1, n);
    }
  }
  C10_ALWAYS_INLINE void fetch(const iVec& idx, fVec& y_i, fVec& y_next) const {
#if defined(CPU_CAPABILITY_AVX512)
    if (in_register) {
      y_i = _mm512_permutexvar_ps(idx, lo);
      y_next = _mm512_permutexvar_ps(idx, hi);
      return;
    }
#elif defined(CPU_CAPABILITY_AVX2)
    if (in_register) {
      y_i = _mm256_permutevar8x32_ps(lo, idx);
      y_next = _mm256_permutevar8x32_ps(hi, idx);
      return;
    }
#endif
    if (ld != 0) {
#if defined(CPU_CAPABILITY_AVX512) || defined(CPU_CAPABILITY_AVX2)
      if (with_tree_levels<kHeightTreeLevels>(
              n, [&](auto levels) { select_heights<levels.value>(heights, ld, n, idx, y_i, y_next); }))
        return;
#endif
      alignas(64) int32_t lane[kLanes];
      for (int l = 0; l < kLanes; ++l) lane[l] = l;
      const iVec where = idx * iVec(static_cast<int32_t>(ld)) + iVec::loadu(lane);
      y_i = at::vec::gather<sizeof(float)>(heights, where);
      y_next = at::vec::gather<sizeof(float)>(heights + ld, where);
      return;
    }
    y_i = at::vec::gather<sizeof(float)>(heights, idx);
    y_next = at::vec::gather<sizeof(float)>(heights + 1, idx);
  }
  // (Y_{idx+1} - Y_idx) * inv_d, the slope of piece idx (the channel walk's table holds the same
  // float operations' results: one tree instead of two).
  C10_ALWAYS_INLINE fVec slope(const iVec& idx, const fVec& inv_d) const {
#if defined(CPU_CAPABILITY_AVX512) || defined(CPU_CAPABILITY_AVX2)
    fVec s;
    if (ld != 0 && with_tree_levels<4>(n, [&](auto levels) {
          s = select_row<levels.value>(heights + pwlu_channel_slope_row(n) * ld, ld, n, idx);
        }))
      return s;
#endif
    fVec y_i, y_next;
    fetch(idx, y_i, y_next);
    return (y_next - y_i) * inv_d;
  }
};

// clamp(floor(u), 0, N - 1) as a float, 0 for NaN u (NaN must not reach the integer conversion: an
// out-of-range index would make the gather read out of bounds).
inline fVec piece_of(const fVec& u, const fVec& zero, const fVec& top) {
  const fVec f = at::vec::minimum(at::vec::maximum(u.floor(), zero), top);
  return fVec::blendv(f, zero, f.isnan());
}

// a * b + c with one rounding in every lane, as pwlu_fma: the breakpoints x_k = fma(k, d, L) must be
// the bits of the scalar path's. AVX2 / AVX-512 have the instruction; the DEFAULT build's
// at::vec::fmadd is a * b + c with two roundings, so it goes lane by lane through std::fma.
inline fVec fma_exact(const fVec& a, const fVec& b, const fVec& c) {
#if defined(CPU_CAPABILITY_AVX512) || defined(CPU_CAPABILITY_AVX2)
  return at::vec::fmadd(a, b, c);
#else
  alignas(64) float av[kLanes], bv[kLanes], cv[kLanes];
  a.store(av);
  b.store(bv);
  c.store(cv);
  for (int l = 0; l < kLanes; ++l) av[l] = std::fma(av[l], bv[l], cv[l]);
  return fVec::loadu(av);
#endif
}

// The piece of kernels::pwlu_locate, lane-wise: the guess f = piece_of(u), then one step to the
// neighbour when x < x_f (f > 0) or x >= x_{f+1} (f < N - 1), with x_k = fma(k, d, L). Returns the
// piece as a float and sets t = (x - x_f) / d. Lanes outside [L, R) get some piece in [0, N - 1]
// (blended away by the callers); NaN lanes piece 0 and t = NaN.
inline fVec locate(const fVec& xv, const fVec& u, const fVec& left, const fVec& d, const fVec& inv_d,
                   const fVec& zero, const fVec& top, fVec& t) {
  const fVec one(1.0f);
  fVec f = piece_of(u, zero, top);
  const fVec x_f = fma_exact(f, d, left);
  const fVec x_next = fma_exact(f + one, d, left);
  const fVec down = (xv < x_f) & (f > zero);
  const fVec up = (xv >= x_next) & (f < top);
  f = fVec::blendv(f, f - one, down);
  f = fVec::blendv(f, f + one, up);
  fVec x_i = fVec::blendv(x_f, x_next, up);
  x_i = fVec::blendv(x_i, fma_exact(f, d, left), down);
  t = (xv - x_i) * inv_d;
  return f;
}

// The parameters of a vector's lanes: one group's in every lane (run walk), or lane l with channel
// l's (channel walk, PwluChannelParams).
struct PwluLanes {
  fVec left, right, d, inv_d, slope_left, slope_right, y_first, y_last;
  int n;
  HeightTable table;
  explicit PwluLanes(const kernels::PwluGroup<float>& p)
      : left(p.left), right(p.right), d(p.d), inv_d(p.inv_d), slope_left(p.slope_left), slope_right(p.slope_right),
        y_first(p.heights[0]), y_last(p.heights[p.n]), n(p.n), table(p.heights, p.n) {}
  // soa: PwluChannelParams::channel of the vector's first channel.
  PwluLanes(const float* soa, int64_t ld, int n_) : n(n_), table(soa, ld, n_) {
    auto row = [&](int k) { return fVec::loadu(soa + k * ld); };
    y_first = row(0);
    y_last = row(n);
    left = row(n + 1);
    right = row(n + 2);
    slope_left = row(n + 3);
    slope_right = row(n + 4);
    d = row(n + 5);
    inv_d = row(n + 6);
  }
};

inline fVec forward_vector(const PwluLanes& p, const fVec& xv) {
  const fVec zero(0.0f), top(static_cast<float>(p.n - 1));
  const fVec u = (xv - p.left) * p.inv_d;
  fVec t;
  const fVec f = locate(xv, u, p.left, p.d, p.inv_d, zero, top, t);
  const iVec idx = at::vec::convert_to_int_of_same_size(f);
  fVec y_i, y_next;
  p.table.fetch(idx, y_i, y_next);
  const fVec inner = y_i + t * (y_next - y_i);
  const fVec outer_left = p.y_first + (xv - p.left) * p.slope_left;
  const fVec outer_right = p.y_last + (xv - p.right) * p.slope_right;
  fVec out = fVec::blendv(inner, outer_left, xv < p.left);
  return fVec::blendv(out, outer_right, xv >= p.right);
}

void forward_f32(const kernels::PwluGroup<float>& p, const float* x, float* y, int64_t n) {
  const PwluLanes lanes(p);
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) forward_vector(lanes, fVec::loadu(x + i)).store(y + i);
  for (; i < n; ++i) y[i] = kernels::pwlu_forward_element<float>(p, x[i]);
}

// One vector of the backward. count < kLanes only for the tail (x and g zero-padded there; the
// padded lanes are neither stored nor scattered).
template <bool WANT_X, bool WANT_BINS>
inline void backward_vector(const PwluLanes& p, const float* x, const float* g, float* gx, int count, double* bins,
                            int64_t lane_stride) {
  const HeightTable& table = p.table;
  const fVec left = p.left, right = p.right, d = p.d, inv_d = p.inv_d;
  const fVec zero(0.0f), top(static_cast<float>(p.n - 1));
  const fVec xv = count == kLanes ? fVec::loadu(x) : fVec::loadu(x, count);
  const fVec gv = count == kLanes ? fVec::loadu(g) : fVec::loadu(g, count);
  const fVec xl = xv - left;
  const fVec u = xl * inv_d;
  fVec t;
  const fVec f = locate(xv, u, left, d, inv_d, zero, top, t);
  const fVec is_left = xv < left, is_right = xv >= right;  // both false for NaN x
  if constexpr (WANT_X) {
    const iVec idx = at::vec::convert_to_int_of_same_size(f);
    fVec d = table.slope(idx, inv_d);
    // A NaN x gets a NaN input gradient (x itself, as pwlu_backward_element), not piece 0's slope.
    d = fVec::blendv(d, xv, xv.isnan());
    d = fVec::blendv(d, p.slope_left, is_left);
    d = fVec::blendv(d, p.slope_right, is_right);
    const fVec out = gv * d;
    if (count == kLanes)
      out.store(gx);
    else
      out.store(gx, count);
  }
  if constexpr (WANT_BINS) {
    // bin: piece f inside (and for NaN x, whose t = NaN then poisons the sums of piece 0), N left
    // of L, N + 1 right of R; v: t inside, x - L / x - R outside.
    fVec bin = fVec::blendv(f, fVec(static_cast<float>(p.n)), is_left);
    bin = fVec::blendv(bin, fVec(static_cast<float>(p.n + 1)), is_right);
    fVec v = fVec::blendv(t, xl, is_left);
    v = fVec::blendv(v, xv - right, is_right);
    alignas(64) int32_t bi[kLanes];
    alignas(64) float gs[kLanes], vs[kLanes];
    alignas(64) double pr[2 * kLanes];  // (g, g v) pairs: one 16-byte add per element below
    at::vec::convert_to_int_of_same_size(bin).store(bi);
    gv.store(gs);
    v.store(vs);
    for (int l = 0; l < kLanes; ++l) {
      pr[2 * l] = static_cast<double>(gs[l]);
      pr[2 * l + 1] = static_cast<double>(gs[l]) * static_cast<double>(vs[l]);
    }
    for (int l = 0; l < count; ++l) {
      double* b = bins + l * lane_stride + 2 * static_cast<int64_t>(bi[l]);
      b[0] += pr[2 * l];
      b[1] += pr[2 * l + 1];
    }
  }
}

template <bool WANT_X, bool WANT_BINS>
void backward_loop(const kernels::PwluGroup<float>& p, const float* x, const float* g, float* gx, int64_t len,
                   double* bins, int64_t lane_stride) {
  const PwluLanes lanes(p);
  int64_t i = 0;
  for (; i + kLanes <= len; i += kLanes)
    backward_vector<WANT_X, WANT_BINS>(lanes, x + i, g + i, WANT_X ? gx + i : nullptr, kLanes, bins, lane_stride);
  if (i < len)
    backward_vector<WANT_X, WANT_BINS>(lanes, x + i, g + i, WANT_X ? gx + i : nullptr, static_cast<int>(len - i),
                                       bins, lane_stride);
}

// The parameters of the vector of channels at channel c: its group's (see PwluChannelParams), or
// each lane its own channel's.
inline PwluLanes channel_lanes(const PwluChannelParams& p, int64_t c) {
  if (p.per_group % kLanes == 0) return PwluLanes(p.groups[c / p.per_group]);
  return PwluLanes(p.channel(c), p.ld, p.n);
}

// Channel walk (walk_channel_block): lane l of the vector at channel c is channel c + l, with its
// own bins (lane_stride = the bins of one channel), so the per-lane bins of the run walk are
// simply the channels' bins.
template <bool WANT_X, bool WANT_BINS>
void backward_block_loop(const PwluChannelParams& p, const float* x, const float* g, float* gx, int64_t rows,
                         int64_t C, double* bins) {
  const int64_t nb = pwlu_bin_doubles(p.n);
  walk_channel_block<PwluLanes>(
      rows, C, {x, g, gx}, [&](int64_t c, int) { return channel_lanes(p, c); },
      [&](const PwluLanes& lanes, int64_t c, int64_t o, int count) {
        backward_vector<WANT_X, WANT_BINS>(lanes, x + o, g + o, WANT_X ? gx + o : nullptr, count,
                                           WANT_BINS ? bins + c * nb : nullptr, nb);
      });
}

// Calls fn(WANT_X, WANT_BINS) as std::bool_constant values for what is requested (nothing: no call).
template <typename Fn>
void with_wants(bool want_x, bool want_bins, Fn&& fn) {
  if (want_x && want_bins)
    fn(std::true_type{}, std::true_type{});
  else if (want_x)
    fn(std::true_type{}, std::false_type{});
  else if (want_bins)
    fn(std::false_type{}, std::true_type{});
}

void backward_f32(const kernels::PwluGroup<float>& p, const float* x, const float* g, float* gx, int64_t len,
                  double* bins, int64_t lane_stride) {
  with_wants(gx, bins, [&](auto wx, auto wb) { backward_loop<decltype(wx)::value, decltype(wb)::value>(p, x, g, gx, len, bins, lane_stride); });
}

void forward_block(const PwluChannelParams& p, const float* x, float* y, int64_t rows, int64_t C) {
  walk_channel_block<PwluLanes>(
      rows, C, {x, y}, [&](int64_t c, int) { return channel_lanes(p, c); },
      [&](const PwluLanes& lanes, int64_t, int64_t o, int count) {
        store_lanes(forward_vector(lanes, load_lanes(x + o, count)), y + o, count);
      });
}

void backward_block(const PwluChannelParams& p, const float* x, const float* g, float* gx, int64_t rows, int64_t C,
                    double* bins) {
  with_wants(gx, bins, [&](auto wx, auto wb) { backward_block_loop<decltype(wx)::value, decltype(wb)::value>(p, x, g, gx, rows, C, bins); });
}

}  // namespace

const PwluVecKernelTable& pwlu_table() {
  static const PwluVecKernelTable t{forward_f32, backward_f32, forward_block, backward_block, kLanes};
  return t;
}

}  // namespace CPU_CAPABILITY
}  // namespace cpu
}  // namespace torch_rational
