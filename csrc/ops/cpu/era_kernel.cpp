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
#include "ops/grad_finish.h"
#include "ops/registration.h"

namespace torch_rational::cpu {

const EraVecKernelTable& era_vec_kernels() {
  static const EraVecKernelTable& chosen = TR_PICK_VEC_TABLE(era_table);
  return chosen;
}

namespace {

// Parameters of all groups in float32 (vector and float scalar paths) and float64 (float64 x):
// per group 2 + 4n values, (a, b) then the fraction rows; per channel for the channel walk.
struct EraParams {
  std::vector<float> p32;
  std::vector<double> p64;
  int n;
  int K;
  float eps32;
  ChannelParams per_channel;
  EraParams(const at::Tensor& linear, const at::Tensor& fractions, const GroupLayout& l, int n_, double eps)
      : n(n_), eps32(static_cast<float>(eps)) {
    const int64_t groups = l.groups;
    K = kernels::era_params_per_group(n);
    auto all = at::cat({linear.detach().reshape({groups, 2}).to(at::kCPU, at::kDouble),
                        fractions.detach().reshape({groups, 4 * n}).to(at::kCPU, at::kDouble)},
                       1)
                   .contiguous();
    p64.assign(all.data_ptr<double>(), all.data_ptr<double>() + groups * K);
    p32.assign(p64.begin(), p64.end());
    if (l.channel_walk) per_channel = ChannelParams(l, p32.data(), K);
  }
  const float* g32(int64_t g) const { return p32.data() + g * K; }
  const double* g64(int64_t g) const { return p64.data() + g * K; }
  // Group g's parameters in the math type T.
  template <typename T>
  const T* group(int64_t g) const {
    if constexpr (std::is_same_v<T, double>) return g64(g);
    else return g32(g);
  }
  EraChannelParams channels() const { return EraChannelParams{per_channel.soa.data(), per_channel.ld, n, eps32}; }
};

// ---------------------------------------------------------------------------------------------
// Forward

// One group-constant run in the math type T (float: the vector body for n <= 4).
template <typename T>
void forward_run(const EraParams& P, int64_t g, double eps, const T* x, T* y, int64_t len) {
  const T* p = P.group<T>(g);
  const T e = static_cast<T>(eps);
  if constexpr (std::is_same_v<T, float>) {
    if (era_vec_kernels().forward(EraGroupParams{p, p + 2, P.n, e}, x, y, len)) return;
  }
  for (int64_t i = 0; i < len; ++i) y[i] = kernels::era_forward_element<T>(x[i], p[0], p[1], p + 2, P.n, e);
}

void forward_block(const EraParams& P, const GroupLayout& l, const float* x, float* y, int64_t rows, int64_t C) {
  if (era_vec_kernels().forward_block(P.channels(), x, y, rows, C)) return;
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t ch = 0; ch < C; ++ch) {
      const float* p = P.g32(ch / l.per_group);
      y[r * C + ch] = kernels::era_forward_element<float>(x[r * C + ch], p[0], p[1], p + 2, P.n, P.eps32);
    }
}

at::Tensor era_forward_cpu(const at::Tensor& x, const at::Tensor& linear, const at::Tensor& fractions, double eps,
                           int64_t channel_dim) {
  const EraConfig cfg = check_era_args(x, linear, fractions, eps, channel_dim);
  const at::Tensor xin = x.is_non_overlapping_and_dense() ? x : x.contiguous();
  at::Tensor y = at::empty_like(xin);
  if (xin.numel() == 0) return y;
  const GroupLayout layout = make_layout(xin, cfg);
  const EraParams params(linear, fractions, layout, cfg.n, eps);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, xin.scalar_type(), "era_forward_cpu", [&] {
    grouped_forward(
        layout, xin.const_data_ptr<scalar_t>(), y.mutable_data_ptr<scalar_t>(),
        [&](int64_t g, int64_t, const auto* xs, auto* ys, int64_t n) { forward_run(params, g, eps, xs, ys, n); },
        [&](const float* xs, float* ys, int64_t rows, int64_t C) { forward_block(params, layout, xs, ys, rows, C); });
  });
  return y;
}

// ---------------------------------------------------------------------------------------------
// Backward

// acc: this group's 2 + 4n float64 accumulators of this task, or null.
template <typename T>
void backward_run(const EraParams& P, int64_t g, double eps, const T* x, const T* gy, T* gx, int64_t len,
                  double* acc) {
  double* acc_lin = acc;
  double* acc_fr = acc ? acc + 2 : nullptr;
  const T* p = P.group<T>(g);
  const T e = static_cast<T>(eps);
  if constexpr (std::is_same_v<T, float>) {
    if (era_vec_kernels().backward(EraGroupParams{p, p + 2, P.n, e}, x, gy, gx, len, acc_lin, acc_fr)) return;
  }
  for (int64_t i = 0; i < len; ++i) {
    const T v = kernels::era_backward_element<T, double>(x[i], gy[i], p[0], p + 2, P.n, e, acc_lin, acc_fr);
    if (gx) gx[i] = v;
  }
}

// acc: [C][2 + 4n] per-channel partials, or null.
void backward_block(const EraParams& P, const GroupLayout& l, const float* x, const float* gy, float* gx,
                    int64_t rows, int64_t C, double* acc) {
  if (era_vec_kernels().backward_block(P.channels(), x, gy, gx, rows, C, acc)) return;
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t ch = 0; ch < C; ++ch) {
      const float* p = P.g32(ch / l.per_group);
      const int64_t i = r * C + ch;
      double* a = acc ? acc + ch * P.K : nullptr;
      const float v =
          kernels::era_backward_element<float, double>(x[i], gy[i], p[0], p + 2, P.n, P.eps32, a, a ? a + 2 : nullptr);
      if (gx) gx[i] = v;
    }
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> era_backward_cpu(const at::Tensor& grad_output, const at::Tensor& x,
                                                                const at::Tensor& linear,
                                                                const at::Tensor& fractions, double eps,
                                                                int64_t channel_dim, std::array<bool, 3> output_mask) {
  const EraConfig cfg = check_era_backward_args(grad_output, x, linear, fractions, eps, channel_dim);
  const at::Tensor xin = x.is_non_overlapping_and_dense() ? x : x.contiguous();
  const at::Tensor gin = grad_output_like(grad_output, xin);
  const bool want_x = output_mask[0], want_params = output_mask[1] || output_mask[2];
  at::Tensor grad_x = want_x ? at::empty_like(xin) : at::empty({0}, x.options());
  at::Tensor grad_linear = at::empty({0}, linear.options());
  at::Tensor grad_fractions = at::empty({0}, fractions.options());
  if (!want_x && !want_params) return {grad_x, grad_linear, grad_fractions};
  const GroupLayout layout = make_layout(xin, cfg);
  const EraParams params(linear, fractions, layout, cfg.n, eps);
  const int K = params.K;
  std::vector<double> sums;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, xin.scalar_type(), "era_backward_cpu", [&] {
    sums = grouped_backward(
        layout, xin.const_data_ptr<scalar_t>(), gin.const_data_ptr<scalar_t>(),
        want_x ? grad_x.mutable_data_ptr<scalar_t>() : nullptr, K, want_params, 0,
        [&](int64_t g, int64_t, const auto* xs, const auto* gs, auto* gxs, int64_t n, double* acc, double*) {
          backward_run(params, g, eps, xs, gs, gxs, n, acc);
        },
        [&](const float* xs, const float* gs, float* gxs, int64_t rows, int64_t C, double* acc, double*) {
          backward_block(params, layout, xs, gs, gxs, rows, C, acc);
        });
  });
  const at::Tensor table = want_params ? group_grad_table(sums, cfg.groups, K) : at::Tensor();
  cut_param_grads(table, {{output_mask[1], linear, grad_linear}, {output_mask[2], fractions, grad_fractions}});
  return {grad_x, grad_linear, grad_fractions};
}

}  // namespace

TORCH_LIBRARY_IMPL(torch_rational, CPU, m) {
  impl_op_and_backward(m, "era", &era_forward_cpu, &era_backward_cpu);
}

}  // namespace torch_rational::cpu
