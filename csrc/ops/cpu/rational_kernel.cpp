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
#include "ops/rational_utils.h"

namespace torch_rational {
namespace cpu {

const VecKernelTable& vec_kernels() {
#if defined(__x86_64__) || defined(_M_X64)
  static const VecKernelTable& chosen =
      pick_vec_table(&DEFAULT::table, &AVX2::table, &AVX512::table);
#else
  static const VecKernelTable& chosen = DEFAULT::table();
#endif
  return chosen;
}

namespace {

using kernels::Basis;
using kernels::Version;

// Coefficients of all groups in float and double, and per-group views.
struct Coefs {
  std::vector<float> a32, b32;
  std::vector<double> a64, b64;
  int na, nb;
  Coefs(const at::Tensor& num, const at::Tensor& den, int64_t groups) {
    auto n64 = num.detach().to(at::kDouble).contiguous();
    auto d64 = den.detach().to(at::kDouble).contiguous();
    na = static_cast<int>(num.size(-1));
    nb = static_cast<int>(den.size(-1));
    a64.assign(n64.data_ptr<double>(), n64.data_ptr<double>() + groups * na);
    b64.assign(d64.data_ptr<double>(), d64.data_ptr<double>() + groups * nb);
    a32.assign(a64.begin(), a64.end());
    b32.assign(b64.begin(), b64.end());
  }
  GroupCoefs group(int64_t g) const {
    return GroupCoefs{a32.data() + g * na, b32.data() + g * nb, a64.data() + g * na, b64.data() + g * nb};
  }
};

RunConfig run_config(const RationalConfig& cfg) {
  RunConfig rc{cfg.m, cfg.nb, cfg.version, cfg.basis};
  rc.vec_threshold = kernels::overflow_threshold<double>(max_degree(rc), FLT_MAX);
  rc.scaled_threshold = kernels::overflow_threshold<double>(max_degree(rc), DBL_MAX);
  return rc;
}

// ---------------------------------------------------------------------------------------------
// Forward

template <typename scalar_t>
void forward_run(const RunConfig& rc, const GroupCoefs& c, const scalar_t* x, scalar_t* y, int64_t n) {
  const double big = rc.scaled_threshold;
  if constexpr (std::is_same_v<scalar_t, double>) {
    for (int64_t i = 0; i < n; ++i) y[i] = scalar_forward_element(rc, c.a64, c.b64, x[i], big);
  } else if constexpr (std::is_same_v<scalar_t, float>) {
    if (!vec_kernels().forward(rc, c, x, y, n)) {
      for (int64_t i = 0; i < n; ++i) y[i] = static_cast<float>(scalar_forward_element(rc, c.a64, c.b64, x[i], big));
    }
  } else {
    float xb[kTile], yb[kTile];
    for (int64_t t = 0; t < n; t += kTile) {
      const int64_t len = std::min(kTile, n - t);
      at::vec::convert(x + t, xb, len);
      if (!vec_kernels().forward(rc, c, xb, yb, len)) {
        for (int64_t i = 0; i < len; ++i) yb[i] = static_cast<float>(scalar_forward_element(rc, c.a64, c.b64, xb[i], big));
      }
      at::vec::convert(yb, y + t, len);
    }
  }
}

// RPAU: every coefficient of every element gets its own multiplier (1 + u); scalar float64 path.
template <typename scalar_t>
void forward_run_noise(const RunConfig& rc, const GroupCoefs& c, const scalar_t* x, scalar_t* y, int64_t begin,
                       int64_t end, double noise, uint64_t seed) {
  const double big = rc.scaled_threshold;
  const int K = rc.m + 1 + rc.nb;
  double mult[2 * kernels::kMaxDegree + 2], a[kernels::kMaxDegree + 1], b[kernels::kMaxDegree + 1];
  for (int64_t i = begin; i < end; ++i) {
    kernels::noise_multipliers<double>(seed, static_cast<uint64_t>(i), K, noise, mult);
    for (int j = 0; j <= rc.m; ++j) a[j] = c.a64[j] * mult[j];
    for (int k = 0; k < rc.nb; ++k) b[k] = c.b64[k] * mult[rc.m + 1 + k];
    y[i] = static_cast<scalar_t>(scalar_forward_element(rc, a, b, static_cast<double>(x[i]), big));
  }
}

at::Tensor rational_forward_cpu(const at::Tensor& x, const at::Tensor& numerator, const at::Tensor& denominator,
                                c10::string_view version, c10::string_view basis, int64_t channel_dim, double noise,
                                const std::optional<at::Tensor>& noise_seed) {
  const RationalConfig cfg =
      check_rational_args(x, numerator, denominator, version, basis, channel_dim, noise, noise_seed);
  // The noise is keyed by the row-major element index, so noise needs the contiguous layout.
  const at::Tensor xin = (noise > 0.0 || !x.is_non_overlapping_and_dense()) ? x.contiguous() : x;
  at::Tensor y = at::empty_like(xin);
  if (xin.numel() == 0) return y;
  const GroupLayout layout = make_layout(xin, cfg);
  const Coefs coefs(numerator, denominator, cfg.groups);
  const RunConfig rc = run_config(cfg);
  const uint64_t seed = read_noise_seed(noise, noise_seed);
  const int64_t tasks = num_tasks(layout.numel);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, xin.scalar_type(), "rational_forward_cpu", [&] {
    const scalar_t* xp = xin.const_data_ptr<scalar_t>();
    scalar_t* yp = y.mutable_data_ptr<scalar_t>();
    at::parallel_for(0, tasks, 1, [&](int64_t t0, int64_t t1) {
      for (int64_t t = t0; t < t1; ++t) {
        const int64_t begin = layout.numel * t / tasks, end = layout.numel * (t + 1) / tasks;
        for_each_run(layout, begin, end, [&](int64_t g, int64_t b, int64_t e) {
          if (noise > 0.0) {
            forward_run_noise<scalar_t>(rc, coefs.group(g), xp, yp, b, e, noise, seed);
          } else {
            forward_run<scalar_t>(rc, coefs.group(g), xp + b, yp + b, e - b);
          }
        });
      }
    });
  });
  return y;
}

// ---------------------------------------------------------------------------------------------
// Backward

template <typename scalar_t>
void backward_run(const RunConfig& rc, const GroupCoefs& c, const scalar_t* x, const scalar_t* g, scalar_t* gx,
                  int64_t n, double* acc_a, double* acc_b) {
  const double big = rc.scaled_threshold;
  double gx64;
  auto scalar = [&](double xv, double gv) {
    scalar_backward_element(rc, c.a64, c.b64, xv, gv, big, acc_a, acc_b, &gx64);
    return gx64;
  };
  if constexpr (std::is_same_v<scalar_t, double>) {
    for (int64_t i = 0; i < n; ++i) {
      const double v = scalar(x[i], g[i]);
      if (gx) gx[i] = v;
    }
  } else if constexpr (std::is_same_v<scalar_t, float>) {
    if (!vec_kernels().backward(rc, c, x, g, gx, n, acc_a, acc_b)) {
      for (int64_t i = 0; i < n; ++i) {
        const double v = scalar(x[i], g[i]);
        if (gx) gx[i] = static_cast<float>(v);
      }
    }
  } else {
    float xb[kTile], gb[kTile], gxb[kTile];
    for (int64_t t = 0; t < n; t += kTile) {
      const int64_t len = std::min(kTile, n - t);
      at::vec::convert(x + t, xb, len);
      at::vec::convert(g + t, gb, len);
      if (!vec_kernels().backward(rc, c, xb, gb, gx ? gxb : nullptr, len, acc_a, acc_b)) {
        for (int64_t i = 0; i < len; ++i) gxb[i] = static_cast<float>(scalar(xb[i], gb[i]));
      }
      if (gx) at::vec::convert(gxb, gx + t, len);
    }
  }
}

template <typename scalar_t>
void backward_run_noise(const RunConfig& rc, const GroupCoefs& c, const scalar_t* x, const scalar_t* g,
                        scalar_t* gx, int64_t begin, int64_t end, double* acc_a, double* acc_b, double noise,
                        uint64_t seed) {
  const double big = rc.scaled_threshold;
  const int K = rc.m + 1 + rc.nb;
  double mult[2 * kernels::kMaxDegree + 2], a[kernels::kMaxDegree + 1], b[kernels::kMaxDegree + 1];
  double la[kernels::kMaxDegree + 1], lb[kernels::kMaxDegree + 1];
  for (int64_t i = begin; i < end; ++i) {
    kernels::noise_multipliers<double>(seed, static_cast<uint64_t>(i), K, noise, mult);
    for (int j = 0; j <= rc.m; ++j) a[j] = c.a64[j] * mult[j];
    for (int k = 0; k < rc.nb; ++k) b[k] = c.b64[k] * mult[rc.m + 1 + k];
    std::fill(la, la + rc.m + 1, 0.0);
    std::fill(lb, lb + rc.nb, 0.0);
    double gx64;
    scalar_backward_element(rc, a, b, static_cast<double>(x[i]), static_cast<double>(g[i]), big,
                            acc_a ? la : nullptr, acc_a ? lb : nullptr, &gx64);
    if (gx) gx[i] = static_cast<scalar_t>(gx64);
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
  const RationalConfig cfg = check_rational_args(x, numerator, denominator, version, basis, channel_dim, noise,
                                                 noise_seed, "rational_backward");
  check_rational_grad_output(grad_output, x);
  const at::Tensor xin = (noise > 0.0 || !x.is_non_overlapping_and_dense()) ? x.contiguous() : x;
  at::Tensor gin = grad_output;
  if (gin.strides() != xin.strides()) {  // e.g. an expanded ones_like from .sum().backward()
    gin = at::empty_like(xin);
    gin.copy_(grad_output);
  }
  const bool want_x = output_mask[0], want_coefs = output_mask[1] || output_mask[2];
  at::Tensor grad_x = want_x ? at::empty_like(xin) : at::empty({0}, x.options());
  at::Tensor grad_num = at::empty({0}, numerator.options());
  at::Tensor grad_den = at::empty({0}, denominator.options());
  const GroupLayout layout = make_layout(xin, cfg);
  const int na = cfg.m + 1, nb = cfg.nb;
  const int64_t per_task = cfg.groups * (na + nb);
  const int64_t tasks = xin.numel() == 0 ? 1 : num_tasks(layout.numel);
  std::vector<double> partials(want_coefs ? tasks * per_task : 0, 0.0);
  if (xin.numel() > 0 && (want_x || want_coefs)) {
    const Coefs coefs(numerator, denominator, cfg.groups);
    const RunConfig rc = run_config(cfg);
    const uint64_t seed = read_noise_seed(noise, noise_seed);
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, xin.scalar_type(), "rational_backward_cpu", [&] {
      const scalar_t* xp = xin.const_data_ptr<scalar_t>();
      const scalar_t* gp = gin.const_data_ptr<scalar_t>();
      scalar_t* gxp = want_x ? grad_x.mutable_data_ptr<scalar_t>() : nullptr;
      at::parallel_for(0, tasks, 1, [&](int64_t t0, int64_t t1) {
        for (int64_t t = t0; t < t1; ++t) {
          const int64_t begin = layout.numel * t / tasks, end = layout.numel * (t + 1) / tasks;
          double* part = want_coefs ? partials.data() + t * per_task : nullptr;
          for_each_run(layout, begin, end, [&](int64_t g, int64_t b, int64_t e) {
            double* acc_a = part ? part + g * (na + nb) : nullptr;
            double* acc_b = part ? acc_a + na : nullptr;
            if (noise > 0.0) {
              backward_run_noise<scalar_t>(rc, coefs.group(g), xp, gp, gxp, b, e, acc_a, acc_b, noise, seed);
            } else {
              backward_run<scalar_t>(rc, coefs.group(g), xp + b, gp + b, gxp ? gxp + b : nullptr, e - b, acc_a,
                                     acc_b);
            }
          });
        }
      });
    });
  }
  if (want_coefs) {
    // Fixed-order finish: task 0, 1, ... for every coefficient.
    at::Tensor total = at::zeros({cfg.groups, na + nb}, at::TensorOptions().dtype(at::kDouble));
    double* tp = total.data_ptr<double>();
    for (int64_t t = 0; t < tasks && xin.numel() > 0; ++t)
      for (int64_t i = 0; i < per_task; ++i) tp[i] += partials[t * per_task + i];
    if (output_mask[1])
      grad_num = total.narrow(1, 0, na).reshape(numerator.sizes()).to(numerator.scalar_type()).contiguous();
    if (output_mask[2])
      grad_den = total.narrow(1, na, nb).reshape(denominator.sizes()).to(denominator.scalar_type()).contiguous();
  }
  return {grad_x, grad_num, grad_den};
}

}  // namespace

TORCH_LIBRARY_IMPL(torch_rational, CPU, m) {
  m.impl("rational", &rational_forward_cpu);
  m.impl("rational_backward", &rational_backward_cpu);
}

}  // namespace cpu
}  // namespace torch_rational
