// Interface of the vectorised PWLU CPU bodies. pwlu_kernel_vec.cpp is compiled once per CPU
// capability (DEFAULT, AVX2, AVX512) into its own namespace; pwlu_kernel.cpp picks one at run time.
#pragma once

#include <cstdint>

#include "ops/cpu/vec_tables.h"

#include "pwlu_math.h"

namespace torch_rational {
namespace cpu {

// Parameter-gradient bins of one group, in the form the backward accumulates them (the caller turns
// them into the [dY_0 .. dY_N | dL dR | dK_L dK_R] slots once, after the fixed-order reduction):
// N + 2 bins of two float64 values (sum g, sum g * v), interleaved:
//   bin j < N  (L <= x < R, or NaN x, in piece j): v = t = u - j
//   bin N      (x < L):                             v = x - L
//   bin N + 1  (x >= R):                            v = x - R
inline int64_t pwlu_bin_doubles(int n) { return 2 * (static_cast<int64_t>(n) + 2); }

// The channel walk's parameters (group_layout.h's ChannelParams by vector): K =
// pwlu_channel_rows(n) rows per channel, Y_0..Y_N, then L, R, K_L, K_R, d, inv_d (in float, as
// kernels::make_pwlu_group<float> computes them, so the breakpoints are the bits of the run walk's),
// then the piece slopes S_0..S_{N-1}, S_k = (Y_{k+1} - Y_k) * inv_d in float (the backward's dy/dx),
// each ld = 16 (the widest build's lanes) channels with their K rows as one contiguous K x ld block:
// row k of channel c at channel(c)[k * ld]. A vector's lanes then find their own channel's heights
// within that block (K * 64 bytes) instead of in K rows C * 4 bytes apart.
// groups / per_group: every group's parameters and C / G. When a vector of channels lies in one
// group (per_group a multiple of the lanes, e.g. G = 8 of C = 768), its lanes take that group's
// parameters as the run walk does: heights in registers (N < lanes) instead of fetched per lane.
struct PwluChannelParams {
  const float* soa;
  int64_t ld;
  int n;
  const kernels::PwluGroup<float>* groups;
  int64_t per_group;
  inline const float* channel(int64_t c) const;
};
inline int pwlu_channel_slope_row(int n) { return n + 7; }  // S_0
inline int pwlu_channel_rows(int n) { return pwlu_channel_slope_row(n) + n; }
inline const float* PwluChannelParams::channel(int64_t c) const {
  return soa + c / ld * (pwlu_channel_rows(n) * ld) + c % ld;
}

struct PwluVecKernelTable {
  // y[0..len) = PWLU of x[0..len) for one group, float32 math (same formula as
  // pwlu_forward_element).
  void (*forward)(const kernels::PwluGroup<float>& p, const float* x, float* y, int64_t len);
  // Fused backward of one group, float32 math: grad_x[i] = g[i] dy/dx (skipped when grad_x is
  // null), and, when bins is not null, each element adds (g, g v) in float64 to its bin (see
  // pwlu_bin_doubles). Lane l of the vector (element i with i % lanes == l, i counted from the start
  // of this call) uses the bins at bins + l * lane_stride: lane_stride = 0 shares one set of bins,
  // lane_stride = pwlu_bin_doubles(n) gives each lane its own (no store-to-load dependency between
  // neighbouring elements of the same piece). Accumulates (+=); the order is fixed by the data.
  void (*backward)(const kernels::PwluGroup<float>& p, const float* x, const float* g, float* grad_x, int64_t len,
                   double* bins, int64_t lane_stride);
  // Channel walk: `rows` whole rows of C channels (x[r * C + c]); bins (may be null) holds per
  // channel pwlu_bin_doubles(n) float64 bins ([C][2 (n + 2)]), added to (+=).
  void (*forward_block)(const PwluChannelParams& p, const float* x, float* y, int64_t rows, int64_t C);
  void (*backward_block)(const PwluChannelParams& p, const float* x, const float* g, float* grad_x, int64_t rows,
                         int64_t C, double* bins);
  int lanes;  // float32 lanes of a vector
};

TR_DECLARE_VEC_TABLES(PwluVecKernelTable, pwlu_table)

// The table for the best capability this CPU (and ATEN_CPU_CAPABILITY, if set) allows.
const PwluVecKernelTable& pwlu_vec_kernels();

}  // namespace cpu
}  // namespace torch_rational
