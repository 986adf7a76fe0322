// CPU kernels of the rational ops: layout handling, dtype dispatch, threading and the fixed-order
// reduction of the coefficient gradients. The vectorised bodies are in rational_kernel_vec.cpp.
//
// GroupLayout: any non-overlapping dense tensor (contiguous, channels_last, permuted) is processed in
// memory order without a copy; the channel of memory offset o is (o / stride(channel_dim)) % C.
// Anything else (slices, expanded tensors) is made contiguous first.
//
// Threads: the elements are cut into T equal tasks (T = number of threads, fewer for small
// tensors). Each task accumulates its coefficient gradients into its own float64 partials, and
// the partials are summed in task order: bitwise reproducible for a fixed thread count.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/Version.h>
#include <ATen/cpu/vec/functional.h>
#include <ATen/cpu/vec/vec.h>
#include <torch/library.h>

#include <cfloat>
#include <cstdlib>
#include <string>
#include <vector>

#include "ops/cpu/group_layout.h"
#include "ops/cpu/rational_kernel_vec.h"
#include "ops/cpu/vec_dispatch.h"
#include "ops/grad_finish.h"
#include "ops/rational_utils.h"
#include "ops/registration.h"

namespace torch_rational::cpu {

const VecKernelTable& vec_kernels() {
  static const VecKernelTable& chosen = TR_PICK_VEC_TABLE(table);
  return chosen;
}

namespace {

using kernels::Basis;
using kernels::Version;

// Coefficients of all groups in float and double, per-group views, and (channel walk) per channel.
struct Coefs {
  std::vector<float> a32, b32;
  std::vector<double> a64, b64;
  int na, nb;
  ChannelParams per_channel;  // channel walk only: [a_0..a_m, b...] of every channel
  Coefs(const at::Tensor& num, const at::Tensor& den, const GroupLayout& l) {
    const int64_t groups = l.groups;
    auto n64 = num.detach().to(at::kDouble).contiguous();
    auto d64 = den.detach().to(at::kDouble).contiguous();
    na = static_cast<int>(num.size(-1));
    nb = static_cast<int>(den.size(-1));
    a64.assign(n64.data_ptr<double>(), n64.data_ptr<double>() + groups * na);
    b64.assign(d64.data_ptr<double>(), d64.data_ptr<double>() + groups * nb);
    a32.assign(a64.begin(), a64.end());
    b32.assign(b64.begin(), b64.end());
    if (l.channel_walk) {
      std::vector<float> both(groups * (na + nb));
      for (int64_t g = 0; g < groups; ++g) {
        std::copy(a32.begin() + g * na, a32.begin() + (g + 1) * na, both.begin() + g * (na + nb));
        std::copy(b32.begin() + g * nb, b32.begin() + (g + 1) * nb, both.begin() + g * (na + nb) + na);
      }
      per_channel = ChannelParams(l, both.data(), na + nb);
    }
  }
  GroupCoefs group(int64_t g) const {
    return GroupCoefs{a32.data() + g * na, b32.data() + g * nb, a64.data() + g * na, b64.data() + g * nb};
  }
  ChannelCoefs channels(const GroupLayout& l) const {
    return ChannelCoefs{per_channel.soa.data(), per_channel.ld, l.per_group, a64.data(), b64.data()};
  }
};

RunConfig run_config(const RationalConfig& cfg) {
  RunConfig rc{cfg.m, cfg.nb, cfg.version, cfg.basis};
  rc.vec_threshold = kernels::overflow_threshold<double>(max_degree(rc), FLT_MAX);
  rc.scaled_threshold = kernels::overflow_threshold<double>(max_degree(rc), DBL_MAX);
  return rc;
}

// Input as the kernels read it: the noise is keyed by the row-major element index, so noise needs
// the contiguous layout; anything not dense (slices, expanded tensors) is made contiguous.
at::Tensor kernel_input(const at::Tensor& x, double noise) {
  return (noise > 0.0 || !x.is_non_overlapping_and_dense()) ? x.contiguous() : x;
}

// ---------------------------------------------------------------------------------------------
// Forward

// One group-constant run in the math type T (float: vector body, else the scalar float64 element).
template <typename T>
void forward_run(const RunConfig& rc, const GroupCoefs& c, const T* x, T* y, int64_t n) {
  if constexpr (std::is_same_v<T, float>) {
    if (vec_kernels().forward(rc, c, x, y, n)) return;
  }
  for (int64_t i = 0; i < n; ++i) y[i] = static_cast<T>(scalar_forward_element(rc, c.a64, c.b64, x[i], rc.scaled_threshold));
}

// Channel walk block: the vector body, or (degrees without one) the scalar element per channel.
void forward_block(const RunConfig& rc, const Coefs& coefs, const GroupLayout& l, const float* x, float* y,
                   int64_t rows, int64_t C) {
  if (vec_kernels().forward_block(rc, coefs.channels(l), x, y, rows, C)) return;
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t ch = 0; ch < C; ++ch) {
      const GroupCoefs c = coefs.group(ch / l.per_group);
      y[r * C + ch] = static_cast<float>(scalar_forward_element(rc, c.a64, c.b64, x[r * C + ch], rc.scaled_threshold));
    }
}

// RPAU: every coefficient of every element gets its own multiplier (1 + u); scalar float64 path.
// offset: memory (= row-major, the input being contiguous) index of x[0].
template <typename T>
void forward_run_noise(const RunConfig& rc, const GroupCoefs& c, const T* x, T* y, int64_t offset, int64_t n,
                       double noise, uint64_t seed) {
  const double big = rc.scaled_threshold;
  const int K = rc.m + 1 + rc.nb;
  double mult[2 * kernels::kMaxDegree + 2], a[kernels::kMaxDegree + 1], b[kernels::kMaxDegree + 1];
  for (int64_t i = 0; i < n; ++i) {
    kernels::noise_multipliers<double>(seed, static_cast<uint64_t>(offset + i), K, noise, mult);
    for (int j = 0; j <= rc.m; ++j) a[j] = c.a64[j] * mult[j];
    for (int k = 0; k < rc.nb; ++k) b[k] = c.b64[k] * mult[rc.m + 1 + k];
    y[i] = static_cast<T>(scalar_forward_element(rc, a, b, static_cast<double>(x[i]), big));
  }
}

at::Tensor rational_forward_cpu(const at::Tensor& x, const at::Tensor& numerator, const at::Tensor& denominator,
                                c10::string_view version, c10::string_view basis, int64_t channel_dim, double noise,
                                const std::optional<at::Tensor>& noise_seed) {
  const RationalConfig cfg =
      check_rational_args(x, numerator, denominator, version, basis, channel_dim, noise, noise_seed);
  const at::Tensor xin = kernel_input(x, noise);
  at::Tensor y = at::empty_like(xin);
  if (xin.numel() == 0) return y;
  const GroupLayout layout = make_layout(xin, cfg, /*allow_channel_walk=*/noise <= 0.0);
  const Coefs coefs(numerator, denominator, layout);
  const RunConfig rc = run_config(cfg);
  const uint64_t seed = read_noise_seed(noise, noise_seed);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, xin.scalar_type(), "rational_forward_cpu", [&] {
    grouped_forward(
        layout, xin.const_data_ptr<scalar_t>(), y.mutable_data_ptr<scalar_t>(),
        [&](int64_t g, int64_t offset, const auto* xs, auto* ys, int64_t n) {
          if (noise > 0.0)
            forward_run_noise(rc, coefs.group(g), xs, ys, offset, n, noise, seed);
          else
            forward_run(rc, coefs.group(g), xs, ys, n);
        },
        [&](const float* xs, float* ys, int64_t rows, int64_t C) { forward_block(rc, coefs, layout, xs, ys, rows, C); });
  });
  return y;
}

// ---------------------------------------------------------------------------------------------
// Backward

template <typename T>
void backward_run(const RunConfig& rc, const GroupCoefs& c, const T* x, const T* g, T* gx, int64_t n,
                  double* acc_a, double* acc_b) {
  if constexpr (std::is_same_v<T, float>) {
    if (vec_kernels().backward(rc, c, x, g, gx, n, acc_a, acc_b)) return;
  }
  double gx64;
  for (int64_t i = 0; i < n; ++i) {
    scalar_backward_element(rc, c.a64, c.b64, x[i], g[i], rc.scaled_threshold, acc_a, acc_b, &gx64);
    if (gx) gx[i] = static_cast<T>(gx64);
  }
}

// acc: [C][na + nb] per-channel partials, or null.
void backward_block(const RunConfig& rc, const Coefs& coefs, const GroupLayout& l, const float* x, const float* g,
                    float* gx, int64_t rows, int64_t C, double* acc) {
  if (vec_kernels().backward_block(rc, coefs.channels(l), x, g, gx, rows, C, acc)) return;
  const int K = coefs.na + coefs.nb;
  double gx64;
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t ch = 0; ch < C; ++ch) {
      const GroupCoefs c = coefs.group(ch / l.per_group);
      const int64_t i = r * C + ch;
      double* acc_a = acc ? acc + ch * K : nullptr;
      scalar_backward_element(rc, c.a64, c.b64, x[i], g[i], rc.scaled_threshold, acc_a, acc ? acc_a + coefs.na : nullptr,
                              &gx64);
      if (gx) gx[i] = static_cast<float>(gx64);
    }
}

template <typename T>
void backward_run_noise(const RunConfig& rc, const GroupCoefs& c, const T* x, const T* g, T* gx, int64_t offset,
                        int64_t n, double* acc_a, double* acc_b, double noise, uint64_t seed) {
  const double big = rc.scaled_threshold;
  const int K = rc.m + 1 + rc.nb;
  double mult[2 * kernels::kMaxDegree + 2], a[kernels::kMaxDegree + 1], b[kernels::kMaxDegree + 1];
  double la[kernels::kMaxDegree + 1], lb[kernels::kMaxDegree + 1];
  for (int64_t i = 0; i < n; ++i) {
    kernels::noise_multipliers<double>(seed, static_cast<uint64_t>(offset + i), K, noise, mult);
    for (int j = 0; j <= rc.m; ++j) a[j] = c.a64[j] * mult[j];
    for (int k = 0; k < rc.nb; ++k) b[k] = c.b64[k] * mult[rc.m + 1 + k];
    std::fill(la, la + rc.m + 1, 0.0);
    std::fill(lb, lb + rc.nb, 0.0);
    double gx64;
    scalar_backward_element(rc, a, b, static_cast<double>(x[i]), static_cast<double>(g[i]), big,
                            acc_a ? la : nullptr, acc_a ? lb : nullptr, &gx64);
    if (gx) gx[i] = static_cast<T>(gx64);
    if (acc_a) {
      // d/da_j of a_j (1 + u_j) is (1 + u_j).
      for (int j = 0; j <= rc.m; ++j) acc_a[j] += la[j] * mult[j];
      for (int k = 0; k < rc.nb; ++k) acc_b[k] += lb[k] * mult[rc.m + 1 + k];
    }
  }
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> rational_backward_cpu(
    const at::Tensor& grad_output, const at::Tensor& x, const at::Tensor& numerator, const at::Tensor& denominator,
    c10::string_view version, c10::string_view basis, int64_t channel_dim, double noise,
    const std::optional<at::Tensor>& noise_seed, std::array<bool, 3> output_mask) {
  const RationalConfig cfg = check_rational_backward_args(grad_output, x, numerator, denominator, version, basis,
                                                         channel_dim, noise, noise_seed);
  const at::Tensor xin = kernel_input(x, noise);
  const at::Tensor gin = grad_output_like(grad_output, xin);
  const bool want_x = output_mask[0], want_coefs = output_mask[1] || output_mask[2];
  at::Tensor grad_x = want_x ? at::empty_like(xin) : at::empty({0}, x.options());
  at::Tensor grad_num = at::empty({0}, numerator.options());
  at::Tensor grad_den = at::empty({0}, denominator.options());
  if (!want_x && !want_coefs) return {grad_x, grad_num, grad_den};
  const GroupLayout layout = make_layout(xin, cfg, /*allow_channel_walk=*/noise <= 0.0);
  const int na = cfg.m + 1, nb = cfg.nb;
  const Coefs coefs(numerator, denominator, layout);
  const RunConfig rc = run_config(cfg);
  const uint64_t seed = read_noise_seed(noise, noise_seed);
  std::vector<double> sums;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, xin.scalar_type(), "rational_backward_cpu", [&] {
    sums = grouped_backward(
        layout, xin.const_data_ptr<scalar_t>(), gin.const_data_ptr<scalar_t>(),
        want_x ? grad_x.mutable_data_ptr<scalar_t>() : nullptr, na + nb, want_coefs, 0,
        [&](int64_t g, int64_t offset, const auto* xs, const auto* gs, auto* gxs, int64_t n, double* acc, double*) {
          double* acc_b = acc ? acc + na : nullptr;
          if (noise > 0.0)
            backward_run_noise(rc, coefs.group(g), xs, gs, gxs, offset, n, acc, acc_b, noise, seed);
          else
            backward_run(rc, coefs.group(g), xs, gs, gxs, n, acc, acc_b);
        },
        [&](const float* xs, const float* gs, float* gxs, int64_t rows, int64_t C, double* acc, double*) {
          backward_block(rc, coefs, layout, xs, gs, gxs, rows, C, acc);
        });
  });
  const at::Tensor table = want_coefs ? group_grad_table(sums, cfg.groups, na + nb) : at::Tensor();
  cut_param_grads(table, {{output_mask[1], numerator, grad_num}, {output_mask[2], denominator, grad_den}});
  return {grad_x, grad_num, grad_den};
}

}  // namespace

TORCH_LIBRARY_IMPL(torch_rational, CPU, m) {
  impl_op_and_backward(m, "rational", &rational_forward_cpu, &rational_backward_cpu);
}

}  // namespace torch_rational::cpu
