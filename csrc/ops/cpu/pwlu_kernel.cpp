// CPU kernels of the PWLU ops: layout handling, dtype dispatch, threading and the fixed-order
// reduction of the parameter gradients. The per-element math is kernels/pwlu_math.h (shared with
// CUDA).
//
// Layout: as for the rational op, any non-overlapping dense tensor is processed in memory order
// without a copy; the channel of memory offset o is (o / stride(channel_dim)) % C. Anything else
// is made contiguous first.
//
// Threads: the elements are cut into T equal tasks. The parameter gradient is a histogram over
// pieces (each element touches Y_i, Y_{i+1} and the four bound/slope slots of its group), so each
// task owns float64 bins for every group, and the bins are summed in task order at the end:
// bitwise reproducible for a fixed thread count.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/cpu/vec/functional.h>
#include <ATen/cpu/vec/vec.h>
#include <torch/library.h>

#include <string>
#include <vector>

#include "ops/cpu/group_layout.h"
#include "ops/cpu/pwlu_kernel_vec.h"
#include "ops/pwlu_utils.h"
#include "pwlu_math.h"

namespace torch_rational {
namespace cpu {
namespace {

// The vectorised float32 forward for the best capability this CPU (and ATEN_CPU_CAPABILITY, if
// set) allows; same rule as the rational op's vec_kernels().
PwluForwardF32 pwlu_vec_forward() {
  static const PwluForwardF32 chosen = [] {
    const std::string cap = at::get_cpu_capability();
#if defined(__x86_64__) || defined(_M_X64)
    if (cap.find("AVX512") != std::string::npos && __builtin_cpu_supports("avx512f") &&
        __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
        __builtin_cpu_supports("avx512dq"))
      return &AVX512::pwlu_forward_f32;
    if ((cap.find("AVX2") != std::string::npos || cap.find("AVX512") != std::string::npos) &&
        __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
      return &AVX2::pwlu_forward_f32;
#endif
    return &DEFAULT::pwlu_forward_f32;
  }();
  return chosen;
}

using kernels::PwluGroup;

// All groups' parameters in float and double (the math type is float for half/bf16/float x and
// double for double x, whatever the parameters' own dtype).
struct PwluParams {
  int n;
  std::vector<double> h64, b64, s64;
  std::vector<float> h32, b32, s32;
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
  // Bounds distinct in float64 can round to the same float; the float math would divide by zero.
  void check_float_bounds(int64_t groups) const {
    for (int64_t g = 0; g < groups; ++g)
      TORCH_CHECK_VALUE(b32[2 * g] < b32[2 * g + 1], "torch_rational.pwlu: bounds[", g, "] = (", b64[2 * g], ", ",
                        b64[2 * g + 1], ") are equal after rounding to float32, the math type of this x");
  }
};

// ---------------------------------------------------------------------------------------------
// Forward

template <typename T>
inline void pwlu_forward_span(const PwluGroup<T>& p, const T* x, T* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = kernels::pwlu_forward_element<T>(p, x[i]);
}

template <typename scalar_t>
void pwlu_forward_run(const PwluParams& params, int64_t g, const scalar_t* x, scalar_t* y, int64_t n) {
  if constexpr (std::is_same_v<scalar_t, double>) {
    pwlu_forward_span<double>(params.group<double>(g), x, y, n);
  } else if constexpr (std::is_same_v<scalar_t, float>) {
    pwlu_vec_forward()(params.group<float>(g), x, y, n);
  } else {
    const PwluGroup<float> p = params.group<float>(g);
    float xb[kTile], yb[kTile];
    for (int64_t t = 0; t < n; t += kTile) {
      const int64_t len = std::min(kTile, n - t);
      at::vec::convert(x + t, xb, len);
      pwlu_vec_forward()(p, xb, yb, len);
      at::vec::convert(yb, y + t, len);
    }
  }
}

at::Tensor pwlu_forward_cpu(const at::Tensor& x, const at::Tensor& heights, const at::Tensor& bounds,
                            const at::Tensor& slopes, int64_t channel_dim) {
  const PwluConfig cfg = check_pwlu_args(x, heights, bounds, slopes, channel_dim);
  const at::Tensor bounds64 = checked_pwlu_bounds(bounds, cfg.groups);
  const at::Tensor xin = x.is_non_overlapping_and_dense() ? x : x.contiguous();
  at::Tensor y = at::empty_like(xin);
  if (xin.numel() == 0) return y;
  const GroupLayout layout = make_layout(xin, cfg);
  const PwluParams params(heights, bounds64, slopes, cfg.groups, cfg.n);
  if (xin.scalar_type() != at::kDouble) params.check_float_bounds(cfg.groups);
  const int64_t tasks = num_tasks(layout.numel);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, xin.scalar_type(), "pwlu_forward_cpu", [&] {
    const scalar_t* xp = xin.const_data_ptr<scalar_t>();
    scalar_t* yp = y.mutable_data_ptr<scalar_t>();
    at::parallel_for(0, tasks, 1, [&](int64_t t0, int64_t t1) {
      for (int64_t t = t0; t < t1; ++t) {
        const int64_t begin = layout.numel * t / tasks, end = layout.numel * (t + 1) / tasks;
        for_each_run(layout, begin, end, [&](int64_t g, int64_t b, int64_t e) {
          pwlu_forward_run<scalar_t>(params, g, xp + b, yp + b, e - b);
        });
      }
    });
  });
  return y;
}

// ---------------------------------------------------------------------------------------------
// Backward

// acc: this task's n + 5 float64 slots of the group, or null when no parameter gradient is wanted.
template <typename T>
inline void pwlu_backward_span(const PwluGroup<T>& p, const T* x, const T* g, T* gx, int64_t len, double* acc) {
  const int n = p.n;
  for (int64_t i = 0; i < len; ++i) {
    const auto r = kernels::pwlu_backward_element<T>(p, x[i]);
    if (gx) gx[i] = g[i] * r.dydx;
    if (acc) {
      const double gd = static_cast<double>(g[i]);
      acc[r.i] += gd * static_cast<double>(r.w_lo);
      acc[r.i + 1] += gd * static_cast<double>(r.w_hi);
      acc[n + 1] += gd * static_cast<double>(r.d_left);
      acc[n + 2] += gd * static_cast<double>(r.d_right);
      acc[n + 3] += gd * static_cast<double>(r.d_slope_left);
      acc[n + 4] += gd * static_cast<double>(r.d_slope_right);
    }
  }
}

template <typename scalar_t>
void pwlu_backward_run(const PwluParams& params, int64_t grp, const scalar_t* x, const scalar_t* g, scalar_t* gx,
                       int64_t n, double* acc) {
  if constexpr (std::is_same_v<scalar_t, double> || std::is_same_v<scalar_t, float>) {
    pwlu_backward_span<scalar_t>(params.group<scalar_t>(grp), x, g, gx, n, acc);
  } else {
    const PwluGroup<float> p = params.group<float>(grp);
    float xb[kTile], gb[kTile], gxb[kTile];
    for (int64_t t = 0; t < n; t += kTile) {
      const int64_t len = std::min(kTile, n - t);
      at::vec::convert(x + t, xb, len);
      at::vec::convert(g + t, gb, len);
      pwlu_backward_span<float>(p, xb, gb, gx ? gxb : nullptr, len, acc);
      if (gx) at::vec::convert(gxb, gx + t, len);
    }
  }
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> pwlu_backward_cpu(
    const at::Tensor& grad_output, const at::Tensor& x, const at::Tensor& heights, const at::Tensor& bounds,
    const at::Tensor& slopes, int64_t channel_dim, std::array<bool, 4> output_mask) {
  const PwluConfig cfg = check_pwlu_args(x, heights, bounds, slopes, channel_dim);
  TORCH_CHECK_VALUE(grad_output.sizes() == x.sizes(), "torch_rational.pwlu: grad_output has shape ",
                    grad_output.sizes(), " but x has shape ", x.sizes());
  TORCH_CHECK_TYPE(grad_output.scalar_type() == x.scalar_type(), "torch_rational.pwlu: grad_output has dtype ",
                   grad_output.scalar_type(), " but x has dtype ", x.scalar_type());
  TORCH_CHECK_VALUE(grad_output.device() == x.device(), "torch_rational.pwlu: grad_output is on ",
                    grad_output.device(), " but x is on ", x.device());
  const at::Tensor bounds64 = checked_pwlu_bounds(bounds, cfg.groups);
  const at::Tensor xin = x.is_non_overlapping_and_dense() ? x : x.contiguous();
  at::Tensor gin = grad_output;
  if (gin.strides() != xin.strides()) {  // e.g. an expanded ones_like from .sum().backward()
    gin = at::empty_like(xin);
    gin.copy_(grad_output);
  }
  const bool want_x = output_mask[0];
  const bool want_params = output_mask[1] || output_mask[2] || output_mask[3];
  at::Tensor grad_x = want_x ? at::empty_like(xin) : at::empty({0}, x.options());
  at::Tensor grad_heights = at::empty({0}, heights.options());
  at::Tensor grad_bounds = at::empty({0}, bounds.options());
  at::Tensor grad_slopes = at::empty({0}, slopes.options());
  const int n = cfg.n;
  const int64_t slots = kernels::pwlu_grad_slots(n);
  const int64_t per_task = cfg.groups * slots;
  const GroupLayout layout = make_layout(xin, cfg);
  const int64_t tasks = xin.numel() == 0 ? 1 : num_tasks(layout.numel);
  std::vector<double> partials(want_params ? tasks * per_task : 0, 0.0);
  if (xin.numel() > 0 && (want_x || want_params)) {
    const PwluParams params(heights, bounds64, slopes, cfg.groups, n);
    if (xin.scalar_type() != at::kDouble) params.check_float_bounds(cfg.groups);
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, xin.scalar_type(), "pwlu_backward_cpu", [&] {
      const scalar_t* xp = xin.const_data_ptr<scalar_t>();
      const scalar_t* gp = gin.const_data_ptr<scalar_t>();
      scalar_t* gxp = want_x ? grad_x.mutable_data_ptr<scalar_t>() : nullptr;
      at::parallel_for(0, tasks, 1, [&](int64_t t0, int64_t t1) {
        for (int64_t t = t0; t < t1; ++t) {
          const int64_t begin = layout.numel * t / tasks, end = layout.numel * (t + 1) / tasks;
          double* part = want_params ? partials.data() + t * per_task : nullptr;
          for_each_run(layout, begin, end, [&](int64_t g, int64_t b, int64_t e) {
            pwlu_backward_run<scalar_t>(params, g, xp + b, gp + b, gxp ? gxp + b : nullptr, e - b,
                                        part ? part + g * slots : nullptr);
          });
        }
      });
    });
  }
  if (want_params) {
    // Fixed-order finish: task 0, 1, ... for every slot.
    at::Tensor total = at::zeros({cfg.groups, slots}, at::TensorOptions().dtype(at::kDouble));
    double* tp = total.data_ptr<double>();
    for (int64_t t = 0; t < tasks && xin.numel() > 0; ++t)
      for (int64_t i = 0; i < per_task; ++i) tp[i] += partials[t * per_task + i];
    if (output_mask[1])
      grad_heights = total.narrow(1, 0, n + 1).reshape(heights.sizes()).to(heights.scalar_type()).contiguous();
    if (output_mask[2])
      grad_bounds = total.narrow(1, n + 1, 2).reshape(bounds.sizes()).to(bounds.scalar_type()).contiguous();
    if (output_mask[3])
      grad_slopes = total.narrow(1, n + 3, 2).reshape(slopes.sizes()).to(slopes.scalar_type()).contiguous();
  }
  return {grad_x, grad_heights, grad_bounds, grad_slopes};
}

}  // namespace

TORCH_LIBRARY_IMPL(torch_rational, CPU, m) {
  m.impl("pwlu", &pwlu_forward_cpu);
  m.impl("pwlu_backward", &pwlu_backward_cpu);
}

}  // namespace cpu
}  // namespace torch_rational
