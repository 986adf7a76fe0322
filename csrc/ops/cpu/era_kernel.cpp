// CPU kernels of the ERA op: layout handling, dtype dispatch, threading and the fixed-order
// reduction of the parameter gradients. The vectorised float32 bodies are in era_kernel_vec.cpp;
// the per-element math (shared with CUDA) in kernels/era_math.h.
//
// Layout (as for the rational op): a non-overlapping dense tensor is processed in memory order
// without a copy; the channel of memory offset o is (o / stride(channel_dim)) % C. Anything else
// is made contiguous first.
//
// Threads: the elements are cut into T equal tasks; each task accumulates its parameter gradients
// into its own float64 partials, summed in task order: bitwise reproducible for a fixed thread
// count.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/cpu/vec/functional.h>
#include <ATen/cpu/vec/vec.h>
#include <torch/library.h>

#include <string>
#include <vector>

#include "era_math.h"
#include "ops/cpu/era_kernel_vec.h"
#include "ops/cpu/vec_dispatch.h"
#include "ops/cpu/group_layout.h"
#include "ops/era_utils.h"

namespace torch_rational {
namespace cpu {

const EraVecKernelTable& era_vec_kernels() {
#if defined(__x86_64__) || defined(_M_X64)
  static const EraVecKernelTable& chosen =
      pick_vec_table(&DEFAULT::era_table, &AVX2::era_table, &AVX512::era_table);
#else
  static const EraVecKernelTable& chosen = DEFAULT::era_table();
#endif
  return chosen;
}

namespace {

// Parameters of all groups in float32 (vector and float scalar paths) and float64 (float64 x):
// per group 2 + 4n values, (a, b) then the fraction rows.
struct EraParams {
  std::vector<float> p32;
  std::vector<double> p64;
  int n;
  int K;
  EraParams(const at::Tensor& linear, const at::Tensor& fractions, int64_t groups, int n_) : n(n_) {
    K = kernels::era_params_per_group(n);
    auto all = at::cat({linear.detach().reshape({groups, 2}).to(at::kCPU, at::kDouble),
                        fractions.detach().reshape({groups, 4 * n}).to(at::kCPU, at::kDouble)},
                       1)
                   .contiguous();
    p64.assign(all.data_ptr<double>(), all.data_ptr<double>() + groups * K);
    p32.assign(p64.begin(), p64.end());
  }
  const float* g32(int64_t g) const { return p32.data() + g * K; }
  const double* g64(int64_t g) const { return p64.data() + g * K; }
};

// ---------------------------------------------------------------------------------------------
// Forward

template <typename scalar_t>
void forward_run(const EraParams& P, int64_t g, double eps, const scalar_t* x, scalar_t* y, int64_t len) {
  if constexpr (std::is_same_v<scalar_t, double>) {
    const double* p = P.g64(g);
    for (int64_t i = 0; i < len; ++i) y[i] = kernels::era_forward_element<double>(x[i], p[0], p[1], p + 2, P.n, eps);
  } else {
    const float* p = P.g32(g);
    const float epsf = static_cast<float>(eps);
    const EraGroupParams gp{p, p + 2, P.n, epsf};
    auto scalar = [&](const float* xs, float* ys, int64_t m) {
      for (int64_t i = 0; i < m; ++i) ys[i] = kernels::era_forward_element<float>(xs[i], p[0], p[1], p + 2, P.n, epsf);
    };
    if constexpr (std::is_same_v<scalar_t, float>) {
      if (!era_vec_kernels().forward(gp, x, y, len)) scalar(x, y, len);
    } else {
      float xb[kTile], yb[kTile];
      for (int64_t t = 0; t < len; t += kTile) {
        const int64_t m = std::min(kTile, len - t);
        at::vec::convert(x + t, xb, m);
        if (!era_vec_kernels().forward(gp, xb, yb, m)) scalar(xb, yb, m);
        at::vec::convert(yb, y + t, m);
      }
    }
  }
}

at::Tensor era_forward_cpu(const at::Tensor& x, const at::Tensor& linear, const at::Tensor& fractions, double eps,
                           int64_t channel_dim) {
  const EraConfig cfg = check_era_args(x, linear, fractions, eps, channel_dim);
  const at::Tensor xin = x.is_non_overlapping_and_dense() ? x : x.contiguous();
  at::Tensor y = at::empty_like(xin);
  if (xin.numel() == 0) return y;
  const GroupLayout layout = make_layout(xin, cfg);
  const EraParams params(linear, fractions, cfg.groups, cfg.n);
  const int64_t tasks = num_tasks(layout.numel);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, xin.scalar_type(), "era_forward_cpu", [&] {
    const scalar_t* xp = xin.const_data_ptr<scalar_t>();
    scalar_t* yp = y.mutable_data_ptr<scalar_t>();
    at::parallel_for(0, tasks, 1, [&](int64_t t0, int64_t t1) {
      for (int64_t t = t0; t < t1; ++t) {
        const int64_t begin = layout.numel * t / tasks, end = layout.numel * (t + 1) / tasks;
        for_each_run(layout, begin, end, [&](int64_t g, int64_t b, int64_t e) {
          forward_run<scalar_t>(params, g, eps, xp + b, yp + b, e - b);
        });
      }
    });
  });
  return y;
}

// ---------------------------------------------------------------------------------------------
// Backward

// acc: this group's 2 + 4n float64 accumulators of this task, or null.
template <typename scalar_t>
void backward_run(const EraParams& P, int64_t g, double eps, const scalar_t* x, const scalar_t* gy, scalar_t* gx,
                  int64_t len, double* acc) {
  double* acc_lin = acc;
  double* acc_fr = acc ? acc + 2 : nullptr;
  if constexpr (std::is_same_v<scalar_t, double>) {
    const double* p = P.g64(g);
    for (int64_t i = 0; i < len; ++i) {
      const double v = kernels::era_backward_element<double, double>(x[i], gy[i], p[0], p + 2, P.n, eps, acc_lin,
                                                                     acc_fr);
      if (gx) gx[i] = v;
    }
  } else {
    const float* p = P.g32(g);
    const float epsf = static_cast<float>(eps);
    const EraGroupParams gp{p, p + 2, P.n, epsf};
    auto scalar = [&](const float* xs, const float* gs, float* gxs, int64_t m) {
      for (int64_t i = 0; i < m; ++i) {
        const float v =
            kernels::era_backward_element<float, double>(xs[i], gs[i], p[0], p + 2, P.n, epsf, acc_lin, acc_fr);
        if (gxs) gxs[i] = v;
      }
    };
    if constexpr (std::is_same_v<scalar_t, float>) {
      if (!era_vec_kernels().backward(gp, x, gy, gx, len, acc_lin, acc_fr)) scalar(x, gy, gx, len);
    } else {
      float xb[kTile], gb[kTile], gxb[kTile];
      for (int64_t t = 0; t < len; t += kTile) {
        const int64_t m = std::min(kTile, len - t);
        at::vec::convert(x + t, xb, m);
        at::vec::convert(gy + t, gb, m);
        float* gxo = gx ? gxb : nullptr;
        if (!era_vec_kernels().backward(gp, xb, gb, gxo, m, acc_lin, acc_fr)) scalar(xb, gb, gxo, m);
        if (gx) at::vec::convert(gxb, gx + t, m);
      }
    }
  }
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> era_backward_cpu(const at::Tensor& grad_output, const at::Tensor& x,
                                                                const at::Tensor& linear,
                                                                const at::Tensor& fractions, double eps,
                                                                int64_t channel_dim, std::array<bool, 3> output_mask) {
  const EraConfig cfg = check_era_args(x, linear, fractions, eps, channel_dim, "era_backward");
  check_era_grad_output(grad_output, x);
  const at::Tensor xin = x.is_non_overlapping_and_dense() ? x : x.contiguous();
  at::Tensor gin = grad_output;
  if (gin.strides() != xin.strides()) {  // e.g. an expanded ones_like from .sum().backward()
    gin = at::empty_like(xin);
    gin.copy_(grad_output);
  }
  const bool want_x = output_mask[0], want_params = output_mask[1] || output_mask[2];
  at::Tensor grad_x = want_x ? at::empty_like(xin) : at::empty({0}, x.options());
  at::Tensor grad_linear = at::empty({0}, linear.options());
  at::Tensor grad_fractions = at::empty({0}, fractions.options());
  const GroupLayout layout = make_layout(xin, cfg);
  const int K = kernels::era_params_per_group(cfg.n);
  const int64_t per_task = cfg.groups * K;
  const int64_t tasks = xin.numel() == 0 ? 1 : num_tasks(layout.numel);
  std::vector<double> partials(want_params ? tasks * per_task : 0, 0.0);
  if (xin.numel() > 0 && (want_x || want_params)) {
    const EraParams params(linear, fractions, cfg.groups, cfg.n);
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, xin.scalar_type(), "era_backward_cpu", [&] {
      const scalar_t* xp = xin.const_data_ptr<scalar_t>();
      const scalar_t* gp = gin.const_data_ptr<scalar_t>();
      scalar_t* gxp = want_x ? grad_x.mutable_data_ptr<scalar_t>() : nullptr;
      at::parallel_for(0, tasks, 1, [&](int64_t t0, int64_t t1) {
        for (int64_t t = t0; t < t1; ++t) {
          const int64_t begin = layout.numel * t / tasks, end = layout.numel * (t + 1) / tasks;
          double* part = want_params ? partials.data() + t * per_task : nullptr;
          for_each_run(layout, begin, end, [&](int64_t g, int64_t b, int64_t e) {
            backward_run<scalar_t>(params, g, eps, xp + b, gp + b, gxp ? gxp + b : nullptr, e - b,
                                   part ? part + g * K : nullptr);
          });
        }
      });
    });
  }
  if (want_params) {
    // Fixed-order finish: task 0, 1, ... for every parameter.
    at::Tensor total = at::zeros({cfg.groups, K}, at::TensorOptions().dtype(at::kDouble));
    double* tp = total.data_ptr<double>();
    for (int64_t t = 0; t < tasks && xin.numel() > 0; ++t)
      for (int64_t i = 0; i < per_task; ++i) tp[i] += partials[t * per_task + i];
    if (output_mask[1])
      grad_linear = total.narrow(1, 0, 2).reshape(linear.sizes()).to(linear.scalar_type()).contiguous();
    if (output_mask[2])
      grad_fractions =
          total.narrow(1, 2, 4 * cfg.n).reshape(fractions.sizes()).to(fractions.scalar_type()).contiguous();
  }
  return {grad_x, grad_linear, grad_fractions};
}

}  // namespace

TORCH_LIBRARY_IMPL(torch_rational, CPU, m) {
  m.impl("era", &era_forward_cpu);
  m.impl("era_backward", &era_backward_cpu);
}

}  // namespace cpu
}  // namespace torch_rational
