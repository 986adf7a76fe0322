// CPU kernels of the PWLU ops: layout handling, dtype dispatch, threading and the fixed-order
// reduction of the parameter gradients. The vectorised float32 bodies (forward, fused backward) are
// in pwlu_kernel_vec.cpp; the per-element math (shared with CUDA) in kernels/pwlu_math.h.
//
// Layout: as for the rational op, any non-overlapping dense tensor is processed in memory order
// without a copy; the channel of memory offset o is (o / stride(channel_dim)) % C. Anything else
// is made contiguous first.
//
// Threads: the elements are cut into T equal tasks. The parameter gradient is a histogram over
// pieces: each element adds (g, g v) to one float64 bin of its group (its piece, or one of two
// outer bins; pwlu_kernel_vec.h), each task owns the bins of every group, and the bins are summed
// in task order at the end and only then turned into the heights / bounds / slopes gradients
// (finish_bins): bitwise reproducible for a fixed thread count.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/cpu/vec/functional.h>
#include <ATen/cpu/vec/vec.h>
#include <torch/library.h>

#include <algorithm>
#include <string>
#include <vector>

#include "ops/cpu/group_layout.h"
#include "ops/cpu/pwlu_kernel_vec.h"
#include "ops/cpu/vec_dispatch.h"
#include "ops/grad_finish.h"
#include "ops/pwlu_utils.h"
#include "ops/registration.h"
#include "pwlu_math.h"

namespace torch_rational::cpu {

const PwluVecKernelTable& pwlu_vec_kernels() {
  static const PwluVecKernelTable& chosen = TR_PICK_VEC_TABLE(pwlu_table);
  return chosen;
}

namespace {

using kernels::PwluGroup;

// All groups' parameters in float and double (the math type is float for half/bf16/float x and
// double for double x, whatever the parameters' own dtype).
struct PwluParams {
  int n;
  std::vector<double> h64, b64, s64;
  std::vector<float> h32, b32, s32;
  ChannelParams per_channel;  // channel walk: PwluChannelParams rows of every channel
  std::vector<PwluGroup<float>> groups32;  // channel walk: every group's float parameters
  int64_t per_group = 1;
  PwluParams(const at::Tensor& heights, const at::Tensor& bounds64, const at::Tensor& slopes, int64_t groups, int n_)
      : n(n_) {
    auto h = heights.detach().to(at::kCPU, at::kDouble).contiguous();
    auto s = slopes.detach().to(at::kCPU, at::kDouble).contiguous();
    h64.assign(h.const_data_ptr<double>(), h.const_data_ptr<double>() + groups * (n + 1));
    b64.assign(bounds64.const_data_ptr<double>(), bounds64.const_data_ptr<double>() + groups * 2);
    s64.assign(s.const_data_ptr<double>(), s.const_data_ptr<double>() + groups * 2);
    h32.assign(h64.begin(), h64.end());
    b32.assign(b64.begin(), b64.end());
    s32.assign(s64.begin(), s64.end());
  }
  template <typename T>
  PwluGroup<T> group(int64_t g) const {
    if constexpr (std::is_same_v<T, double>) {
      return kernels::make_pwlu_group<double>(h64.data() + g * (n + 1), b64[2 * g], b64[2 * g + 1], s64[2 * g],
                                              s64[2 * g + 1], n);
    } else {
      return kernels::make_pwlu_group<float>(h32.data() + g * (n + 1), b32[2 * g], b32[2 * g + 1], s32[2 * g],
                                             s32[2 * g + 1], n);
    }
  }
  // The channel walk's per-channel rows (PwluChannelParams), from make_pwlu_group<float>.
  void prepare_channels(const GroupLayout& l) {
    const int K = pwlu_channel_rows(n);
    std::vector<float> rows(l.groups * K);
    per_group = l.per_group;
    for (int64_t g = 0; g < l.groups; ++g) {
      const PwluGroup<float> p = group<float>(g);
      groups32.push_back(p);
      float* r = rows.data() + g * K;
      std::copy(p.heights, p.heights + n + 1, r);
      const float tail[6] = {p.left, p.right, p.slope_left, p.slope_right, p.d, p.inv_d};
      std::copy(tail, tail + 6, r + n + 1);
      // The backward's dy/dx on piece k, (Y_{k+1} - Y_k) * inv_d, the same float operations.
      for (int k = 0; k < n; ++k) r[pwlu_channel_slope_row(n) + k] = (p.heights[k + 1] - p.heights[k]) * p.inv_d;
    }
    per_channel = ChannelParams(l, rows.data(), K, /*by_vector=*/true);
  }
  PwluChannelParams channels() const {
    return PwluChannelParams{per_channel.soa.data(), per_channel.ld, n, groups32.data(), per_group};
  }
  // Bounds distinct in float64 can round to the same float; the float math would divide by zero.
  void check_float_bounds(int64_t groups) const {
    for (int64_t g = 0; g < groups; ++g)
      TORCH_CHECK_VALUE(b32[2 * g] < b32[2 * g + 1], "torch_rational.pwlu: bounds[", g, "] = (", b64[2 * g], ", ",
                        b64[2 * g + 1], ") are equal after rounding to float32, the math type of this x");
  }
};

// ---------------------------------------------------------------------------------------------
// Forward

// One group-constant run in the math type T (float: the vector body).
template <typename T>
void pwlu_forward_run(const PwluParams& params, int64_t g, const T* x, T* y, int64_t n) {
  const PwluGroup<T> p = params.group<T>(g);
  if constexpr (std::is_same_v<T, float>) {
    pwlu_vec_kernels().forward(p, x, y, n);
  } else {
    for (int64_t i = 0; i < n; ++i) y[i] = kernels::pwlu_forward_element<T>(p, x[i]);
  }
}

// Parameters prepared for the walk of `layout` (checked float bounds; per-channel rows).
void prepare(PwluParams& params, const GroupLayout& layout, at::ScalarType dtype) {
  if (dtype != at::kDouble) params.check_float_bounds(layout.groups);
  if (layout.channel_walk) params.prepare_channels(layout);
}

at::Tensor pwlu_forward_cpu(const at::Tensor& x, const at::Tensor& heights, const at::Tensor& bounds,
                            const at::Tensor& slopes, int64_t channel_dim) {
  const PwluConfig cfg = check_pwlu_args(x, heights, bounds, slopes, channel_dim);
  const at::Tensor bounds64 = checked_pwlu_bounds(bounds, cfg.groups);
  const at::Tensor xin = x.is_non_overlapping_and_dense() ? x : x.contiguous();
  at::Tensor y = at::empty_like(xin);
  if (xin.numel() == 0) return y;
  const GroupLayout layout = make_layout(xin, cfg);
  PwluParams params(heights, bounds64, slopes, cfg.groups, cfg.n);
  prepare(params, layout, xin.scalar_type());
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, xin.scalar_type(), "pwlu_forward_cpu", [&] {
    grouped_forward(
        layout, xin.const_data_ptr<scalar_t>(), y.mutable_data_ptr<scalar_t>(),
        [&](int64_t g, int64_t, const auto* xs, auto* ys, int64_t n) { pwlu_forward_run(params, g, xs, ys, n); },
        [&](const float* xs, float* ys, int64_t rows, int64_t C) {
          pwlu_vec_kernels().forward_block(params.channels(), xs, ys, rows, C);
        });
  });
  return y;
}

// ---------------------------------------------------------------------------------------------
// Backward

// Per-lane bins (see pwlu_kernel_vec.h) cost a zeroing and a fold of lanes * (2N + 4) doubles per
// run; below this many elements per lane bin a run adds into the task's bins directly.
constexpr int64_t kLaneBinsMinElementsPerBin = 8;

// float64 x: a scalar loop (float64 has no vector path), accumulating the same bins as the float
// kernels. bins: this task's bins of the group, or null.
inline void pwlu_backward_span_f64(const PwluGroup<double>& p, const double* x, const double* g, double* gx,
                                   int64_t len, double* bins) {
  for (int64_t i = 0; i < len; ++i) {
    const double xi = x[i];
    double dydx, v;
    int64_t bin;
    if (xi < p.left) {
      dydx = p.slope_left;
      bin = p.n;
      v = xi - p.left;
    } else if (xi >= p.right) {
      dydx = p.slope_right;
      bin = p.n + 1;
      v = xi - p.right;
    } else {  // NaN x too: piece 0, v = NaN
      const int j = kernels::pwlu_locate(p, xi, v);
      dydx = xi == xi ? (p.heights[j + 1] - p.heights[j]) * p.inv_d : xi;
      bin = j;
    }
    if (gx) gx[i] = g[i] * dydx;
    if (bins) {
      bins[2 * bin] += g[i];
      bins[2 * bin + 1] += g[i] * v;
    }
  }
}

// One group-constant run of a task in the math type T. bins: the task's bins of group grp
// (pwlu_bin_doubles(n) doubles), or null; lane_bins: the task's scratch of lanes *
// pwlu_bin_doubles(n) doubles.
template <typename T>
void pwlu_backward_run(const PwluParams& params, int64_t grp, const T* x, const T* g, T* gx, int64_t len,
                       double* bins, double* lane_bins) {
  if constexpr (std::is_same_v<T, double>) {
    pwlu_backward_span_f64(params.group<double>(grp), x, g, gx, len, bins);
  } else {
    const PwluVecKernelTable& vk = pwlu_vec_kernels();
    const PwluGroup<float> p = params.group<float>(grp);
    const int64_t nb = pwlu_bin_doubles(p.n);
    const bool per_lane = bins && len >= kLaneBinsMinElementsPerBin * vk.lanes * (p.n + 2);
    if (per_lane) std::fill(lane_bins, lane_bins + vk.lanes * nb, 0.0);
    vk.backward(p, x, g, gx, len, per_lane ? lane_bins : bins, per_lane ? nb : 0);
    if (per_lane) {  // fixed order: lane 0, 1, ...
      for (int l = 0; l < vk.lanes; ++l)
        for (int64_t k = 0; k < nb; ++k) bins[k] += lane_bins[l * nb + k];
    }
  }
}

// One group's bins (summed over the tasks) -> its n + 5 gradient slots [dY_0 .. dY_N | dL dR | dK_L
// dK_R], in float64 from the parameters of the math type. With A_j = sum g, B_j = sum g t over
// piece j (u = j + t there):
//   dY_j += A_j - B_j, dY_{j+1} += B_j; left of L: dY_0 += sum g, right of R: dY_N += sum g;
//   dL = sum_j s_j (B_j - (N - j) A_j) / (R - L) - K_L sum_{x<L} g   (dy/dL = s (u - N) / (R - L))
//   dR = -sum_j s_j (j A_j + B_j) / (R - L) - K_R sum_{x>=R} g        (dy/dR = -s u / (R - L))
//   dK_L = sum_{x<L} g (x - L), dK_R = sum_{x>=R} g (x - R).
// A NaN x lands in piece 0 with t = NaN: dY_0, dY_1, dL and dR become NaN, the slopes' stay finite.
template <typename T>
void finish_bins(const PwluGroup<T>& p, const double* bins, double* out) {
  const int n = p.n;
  const double* A_lo = bins + 2 * n;
  const double* A_hi = bins + 2 * (n + 1);
  const double left = p.left, right = p.right, inv_width = 1.0 / (right - left);
  double d_left = 0.0, d_right = 0.0;
  out[0] = A_lo[0];
  for (int j = 0; j < n; ++j) {
    const double a = bins[2 * j], b = bins[2 * j + 1];
    const double s = static_cast<double>(p.heights[j + 1]) - static_cast<double>(p.heights[j]);
    out[j] += a - b;
    out[j + 1] = b;
    if (a != 0.0 || b != 0.0) {  // an empty piece adds nothing, even with an infinite s
      d_left += s * (b - (n - j) * a);
      d_right += s * (j * a + b);
    }
  }
  out[n] += A_hi[0];
  out[n + 1] = d_left * inv_width;
  out[n + 2] = -d_right * inv_width;
  if (A_lo[0] != 0.0) out[n + 1] -= static_cast<double>(p.slope_left) * A_lo[0];
  if (A_hi[0] != 0.0) out[n + 2] -= static_cast<double>(p.slope_right) * A_hi[0];
  out[n + 3] = A_lo[1];
  out[n + 4] = A_hi[1];
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> pwlu_backward_cpu(
    const at::Tensor& grad_output, const at::Tensor& x, const at::Tensor& heights, const at::Tensor& bounds,
    const at::Tensor& slopes, int64_t channel_dim, std::array<bool, 4> output_mask) {
  const PwluConfig cfg = check_pwlu_backward_args(grad_output, x, heights, bounds, slopes, channel_dim);
  const at::Tensor bounds64 = checked_pwlu_bounds(bounds, cfg.groups);
  const at::Tensor xin = x.is_non_overlapping_and_dense() ? x : x.contiguous();
  const at::Tensor gin = grad_output_like(grad_output, xin);
  const bool want_x = output_mask[0];
  const bool want_params = output_mask[1] || output_mask[2] || output_mask[3];
  at::Tensor grad_x = want_x ? at::empty_like(xin) : at::empty({0}, x.options());
  at::Tensor grad_heights = at::empty({0}, heights.options());
  at::Tensor grad_bounds = at::empty({0}, bounds.options());
  at::Tensor grad_slopes = at::empty({0}, slopes.options());
  if (!want_x && !want_params) return {grad_x, grad_heights, grad_bounds, grad_slopes};
  const int n = cfg.n;
  const int64_t slots = kernels::pwlu_grad_slots(n);
  const int64_t nb = pwlu_bin_doubles(n);
  const GroupLayout layout = make_layout(xin, cfg);
  const bool math_double = xin.scalar_type() == at::kDouble;
  PwluParams params(heights, bounds64, slopes, cfg.groups, n);
  if (xin.numel() > 0) prepare(params, layout, xin.scalar_type());
  std::vector<double> sums;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, xin.scalar_type(), "pwlu_backward_cpu", [&] {
    sums = grouped_backward(
        layout, xin.const_data_ptr<scalar_t>(), gin.const_data_ptr<scalar_t>(),
        want_x ? grad_x.mutable_data_ptr<scalar_t>() : nullptr, nb, want_params,
        want_params && !math_double ? pwlu_vec_kernels().lanes * nb : 0,
        [&](int64_t g, int64_t, const auto* xs, const auto* gs, auto* gxs, int64_t len, double* bins,
            double* lane_bins) { pwlu_backward_run(params, g, xs, gs, gxs, len, bins, lane_bins); },
        [&](const float* xs, const float* gs, float* gxs, int64_t rows, int64_t C, double* bins, double*) {
          pwlu_vec_kernels().backward_block(params.channels(), xs, gs, gxs, rows, C, bins);
        });
  });
  if (want_params) {
    // The bins summed in a fixed order (grouped_backward), then turned into the gradient slots.
    std::vector<double> table_values(cfg.groups * slots, 0.0);
    for (int64_t g = 0; g < cfg.groups; ++g) {
      if (math_double)
        finish_bins(params.group<double>(g), sums.data() + g * nb, table_values.data() + g * slots);
      else
        finish_bins(params.group<float>(g), sums.data() + g * nb, table_values.data() + g * slots);
    }
    cut_param_grads(group_grad_table(table_values, cfg.groups, slots),
                    {{output_mask[1], heights, grad_heights}, {output_mask[2], bounds, grad_bounds},
                     {output_mask[3], slopes, grad_slopes}});
  }
  return {grad_x, grad_heights, grad_bounds, grad_slopes};
}

}  // namespace

TORCH_LIBRARY_IMPL(torch_rational, CPU, m) {
  impl_op_and_backward(m, "pwlu", &pwlu_forward_cpu, &pwlu_backward_cpu);
}

}  // namespace torch_rational::cpu
