// The CUDA kernels of the PWLU op (kernels/pwlu.cuh: the forward, the fused backward with its
// per-thread bins, windowed when the heights do not fit in shared memory, and the fixed-order
// finish), run on the host by the emulator of cuda_emu.h with the launch shapes the glue computes
// (plan_grouped_launch), against
//   - the float64 reference of tests/common/references.h (formula + ATen autograd), on inputs
//     away from the breakpoints (where the derivatives jump),
//   - the CPU op torch_rational::pwlu / pwlu_backward, also exactly on breakpoints and bounds,
// and for bitwise equality between two fiber schedules (a missing __syncthreads shows up there)
// and between the full backward and the partial ones (grad_x only, parameter grads only).
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <string>
#include <tuple>
#include <vector>

#include "ops/pwlu.h"
#include "references.h"
// The emulator after torch's headers: it defines threadIdx, __shared__, ... as macros.
#include "cuda_emu.h"
#include "emu_common.h"
#include "pwlu.cuh"

namespace {

using namespace emu_test;
namespace kr = torch_rational::kernels;

struct Params {
  torch::Tensor h, b, s;  // (G, N + 1), (G, 2), (G, 2) in the math dtype, contiguous
  int n() const { return static_cast<int>(h.size(1)) - 1; }
};

// The PWLU side of run_kernels: the parameters filled as csrc/ops/cuda/pwlu_kernel.cu
// (fill_pwlu_params) does.
struct PwluKernels {
  const Params& q;

  template <typename P> static void forward(const P& p) { kc::launch_pwlu_forward(p, nullptr); }
  template <typename P> static void backward(const P& p) { kc::launch_pwlu_backward(p, nullptr); }
  template <typename P> static void finish(const P& p) { kc::launch_pwlu_finish(p, nullptr); }

  // param_grad: [groups][N + 5] = [dY_0..dY_N | dL dR | dK_L dK_R]
  int64_t grad_slots() const { return kr::pwlu_grad_slots(q.n()); }
  template <typename T>
  kc::PwluCudaParams<T> params(const Case& s, DeviceTensors& dev, const T* x, const T* grad_y, T* out) const {
    using acc_t = typename kc::OpMath<T>::type;
    auto p = elementwise_params<kc::PwluCudaParams<T>>(s, x, grad_y, out);
    p.heights = dev.in<acc_t>(q.h);
    p.bounds = dev.in<acc_t>(q.b);
    p.slopes = dev.in<acc_t>(q.s);
    p.n = q.n();
    kc::plan_pwlu_launch(p, /*backward=*/grad_y != nullptr, aligned16({x, grad_y, out}), s.multiprocessors);
    return p;
  }
};

KernelRun run(const Case& s, const Params& q, const torch::Tensor& gy, bool want_x = true, bool want_params = true) {
  return run_kernels(PwluKernels{q}, s, gy, want_x, want_params);
}

// Random parameters as tests/cpp/test_pwlu.cpp: L in [-3, -1], R - L in [1, 5].
Params random_params(int64_t G, int n, torch::Dtype acc) {
  auto opts = torch::TensorOptions().dtype(torch::kDouble);
  auto left = torch::rand({G}, opts) * 2 - 3;
  auto right = left + 1 + 4 * torch::rand({G}, opts);
  return {torch::randn({G, n + 1}, opts).to(acc), torch::stack({left, right}, 1).to(acc),
          torch::randn({G, 2}, opts).to(acc)};
}

// x (float64, logical shape) redrawn where, once rounded to dtype, it lies within `margin` pieces
// of a breakpoint or a bound (the derivatives jump there; the reference and the kernel may pick
// different sides). Returns x rounded to dtype, as float64.
torch::Tensor away_from_breakpoints(torch::Tensor x, const Params& q, int64_t G, torch::Dtype dtype,
                                   double margin) {
  const bool flat = x.dim() == 1;
  if (flat) x = x.unsqueeze(0);
  const auto gi = tr_test::group_of(x, G);
  const auto b = q.b.to(torch::kDouble);
  const auto left = b.select(1, 0).index({gi}), right = b.select(1, 1).index({gi});
  for (int it = 0; it < 50; ++it) {
    x = x.to(dtype).to(torch::kDouble);
    const auto u = (x - left) / ((right - left) / static_cast<double>(q.n()));
    const auto near = (u - u.round()).abs() < margin;
    if (!near.any().item<bool>()) break;
    x = torch::where(near, torch::randn_like(x) * 3, x);
  }
  return flat ? x.squeeze(0) : x;
}

torch::Tensor reference(const torch::Tensor& x, const torch::Tensor& h, const torch::Tensor& b, const torch::Tensor& s) {
  if (x.dim() == 1) return tr_test::pwlu_reference(x.unsqueeze(0), h, b, s).squeeze(0);
  return tr_test::pwlu_reference(x, h, b, s);
}

class EmuPwluTest : public ::testing::TestWithParam<DtypeSizeLayout> {};

TEST_P(EmuPwluTest, MatchesReferenceAndCpuAndIsScheduleIndependent) {
  const auto [dtype, n, layout] = GetParam();
  torch::manual_seed(71 + n);
  auto opts = torch::TensorOptions().dtype(torch::kDouble);
  const bool rows_layout = layout == Layout::RowsNhwc || layout == Layout::RowsLinear;
  const int64_t G = layout == Layout::Flat || layout == Layout::Misaligned ? 1
                    : layout == Layout::ChannelsLast                     ? 6
                    : layout == Layout::RowsNhwc                         ? 64
                    : layout == Layout::RowsLinear                       ? 136
                                                                         : 3;
  const Params q = random_params(G, n, acc_dtype(dtype));
  const auto x_flat = away_from_breakpoints(torch::randn({5003}, opts) * 3, q, 1, dtype, 0.02);
  const auto x_4d = away_from_breakpoints(torch::randn({2, 6, 4, 4}, opts) * 3, q, rows_layout ? 1 : G, dtype, 0.02);
  Case s = make_case(layout, dtype, x_flat, x_4d);
  ASSERT_EQ(s.groups, G);
  if (rows_layout) {  // make_case draws these itself: move them off the breakpoints too, same layout
    const auto away = away_from_breakpoints(s.x.to(torch::kDouble), q, G, dtype, 0.02).to(dtype);
    s.x = layout == Layout::RowsNhwc ? away.contiguous(torch::MemoryFormat::ChannelsLast) : away.contiguous();
  }
  const auto gy = torch::randn(s.x.sizes(), opts).to(dtype);

  const KernelRun r = run(s, q, gy);
  const bool want_rows = suits_rows_kernels(s, layout);
  if (rows_layout) EXPECT_TRUE(want_rows);
  expect_intended_path(r, layout, want_rows);

  // Both sides of both bounds are there.
  const auto x64 = s.x.to(torch::kDouble);
  EXPECT_TRUE((x64 < q.b.select(1, 0).min().item<double>()).any().item<bool>());
  EXPECT_TRUE((x64 > q.b.select(1, 1).max().item<double>()).any().item<bool>());

  // Float64 reference on exactly the rounded inputs the kernels saw.
  auto xr = x64.clone().requires_grad_(true);
  auto hr = q.h.to(torch::kDouble).requires_grad_(true);
  auto br = q.b.to(torch::kDouble).requires_grad_(true);
  auto sr = q.s.to(torch::kDouble).requires_grad_(true);
  const auto yr = reference(xr, hr, br, sr);
  // u = (x - L) N / (R - L) in the math type carries ~N roundings of x's scale: float's error grows with N.
  const double tol = dtype == torch::kDouble ? 1e-13 : dtype == torch::kFloat ? 2e-7 * (n + 10) : dtype == torch::kHalf ? 1e-3 : 8e-3;
  EXPECT_LE(rel_err(r.y, yr), tol) << "forward";
  yr.backward(gy.to(torch::kDouble));
  // Parameter grads are float sums over up to ~5000 elements in half/bf16/float.
  const double ptol = dtype == torch::kDouble ? 1e-12 : 1e-5;
  EXPECT_LE(rel_err(r.grad_x, xr.grad()), tol) << "grad_x";
  EXPECT_LE(rel_err(r.param_grad.narrow(1, 0, n + 1), hr.grad()), ptol) << "grad heights";
  EXPECT_LE(rel_err(r.param_grad.narrow(1, n + 1, 2), br.grad()), ptol) << "grad bounds";
  EXPECT_LE(rel_err(r.param_grad.narrow(1, n + 3, 2), sr.grad()), ptol) << "grad slopes";

  // The CPU op: the same math.
  const auto y_cpu = torch_rational::pwlu(s.x, q.h, q.b, q.s, 1);
  const auto [gx_cpu, gh_cpu, gb_cpu, gs_cpu] =
      torch_rational::pwlu_backward(gy, s.x, q.h, q.b, q.s, 1, {true, true, true, true});
  EXPECT_LE(rel_err(r.y, y_cpu), tol) << "forward vs CPU";
  EXPECT_LE(rel_err(r.grad_x, gx_cpu), tol) << "grad_x vs CPU";
  EXPECT_LE(rel_err(r.param_grad.narrow(1, 0, n + 1), gh_cpu), ptol) << "grad heights vs CPU";
  EXPECT_LE(rel_err(r.param_grad.narrow(1, n + 1, 2), gb_cpu), ptol) << "grad bounds vs CPU";
  EXPECT_LE(rel_err(r.param_grad.narrow(1, n + 3, 2), gs_cpu), ptol) << "grad slopes vs CPU";

  // Reverse fiber schedule and partial backward requests: the same bits.
  expect_reproducible_bits([&](bool want_x, bool want_params) { return run(s, q, gy, want_x, want_params); }, r);
}

// N = 100: more heights than one window of bins holds for every dtype (see WindowsOfLargeN).
INSTANTIATE_TEST_SUITE_P(Pieces, EmuPwluTest,
                         ::testing::Combine(kAllDtypes, ::testing::Values(1, 4, 16, 100),
                                            ::testing::Values(Layout::Grouped, Layout::ChannelsLast, Layout::RowsNhwc,
                                                              Layout::RowsLinear)),
                         dtype_size_layout_name);

INSTANTIATE_TEST_SUITE_P(Layouts, EmuPwluTest,
                         ::testing::Combine(kLayoutSweepDtypes, ::testing::Values(4, 100), kLaunchShapeLayouts),
                         dtype_size_layout_name);

// The backward's bins window: N = 100 needs several passes (float: 64 heights per pass, double: 32).
TEST(EmuPwlu, WindowsOfLargeN) {
  EXPECT_EQ(kc::pwlu_backward_window<float>(100), kc::kPwluBinBytes / (kc::kPwluBackwardThreads * 4));
  EXPECT_LT(kc::pwlu_backward_window<float>(100), 101);
  EXPECT_LT(kc::pwlu_backward_window<double>(100), 101);
  EXPECT_LT(kc::pwlu_backward_window<__half>(100), 101);
  EXPECT_EQ(kc::pwlu_backward_window<float>(16), 17);
}

// x exactly on every breakpoint L + k d (k = 0..N, so both bounds too), just below/above them and
// outside: the kernels pick the same piece as the CPU op (shared pwlu_math.h), whose one-sided
// conventions are: x = L is inside (piece 0), x = R is outside (slope K_R), u = N rounds to piece
// N - 1. Exactly representable bounds and steps, so the breakpoints are exact in every dtype.
TEST(EmuPwlu, BreakpointsAndBoundsMatchTheCpuOp) {
  for (auto dtype : {torch::kFloat, torch::kDouble, torch::kHalf, torch::kBFloat16}) {
    for (int n : {1, 4, 16}) {
      auto opts = torch::TensorOptions().dtype(torch::kDouble);
      torch::manual_seed(5 + n);
      const double L = -2.0, R = 2.0, d = (R - L) / n;
      std::vector<double> xs;
      for (int k = 0; k <= n; ++k) {
        xs.push_back(L + k * d);
        xs.push_back(L + k * d - d / 4);
        xs.push_back(L + k * d + d / 4);
      }
      for (double v : {-10.0, -3.0, 3.0, 7.5, -0.0}) xs.push_back(v);
      const auto x1 = torch::tensor(xs, opts);
      const int64_t G = 2;
      // [2, 2, len]: both groups see every point.
      const auto x = x1.unsqueeze(0).unsqueeze(0).expand({2, G, x1.size(0)}).contiguous().to(dtype);
      Params q;
      const auto acc = acc_dtype(dtype);
      q.h = torch::randn({G, n + 1}, opts).to(acc);
      q.b = torch::tensor({L, R, L, R}, opts).reshape({G, 2}).to(acc);
      q.s = torch::randn({G, 2}, opts).to(acc);
      const Case s{x, G, 0, 1};
      const auto gy = torch::randn(x.sizes(), opts).to(dtype);
      const KernelRun r = run(s, q, gy);
      const auto y_cpu = torch_rational::pwlu(x, q.h, q.b, q.s, 1);
      const auto [gx_cpu, gh_cpu, gb_cpu, gs_cpu] =
          torch_rational::pwlu_backward(gy, x, q.h, q.b, q.s, 1, {true, true, true, true});
      const std::string what = dtype_name(dtype) + " n=" + std::to_string(n);
      // Same piece, same formula. y is continuous at the breakpoints, so it gets a rounding
      // tolerance (the CPU's vector path may contract to FMA); grad_x jumps there, and the same
      // piece gives the same bits.
      const double ytol = dtype == torch::kDouble ? 1e-15 : dtype == torch::kFloat ? 1e-6 : dtype == torch::kHalf ? 1e-3 : 8e-3;
      EXPECT_LE(rel_err(r.y, y_cpu), ytol) << what;
      EXPECT_TRUE(bitwise_equal(r.grad_x, gx_cpu)) << what << "\n" << r.grad_x[0][0] << gx_cpu[0][0];
      const double ptol = dtype == torch::kDouble ? 1e-13 : 1e-6;
      EXPECT_LE(rel_err(r.param_grad.narrow(1, 0, n + 1), gh_cpu), ptol) << what;
      EXPECT_LE(rel_err(r.param_grad.narrow(1, n + 1, 2), gb_cpu), ptol) << what;
      EXPECT_LE(rel_err(r.param_grad.narrow(1, n + 3, 2), gs_cpu), ptol) << what;
      // And the values there are the formula's: y(L + k d) = Y_k, y(R) = Y_N.
      const auto h64 = q.h.to(torch::kDouble);
      for (int k = 0; k <= n; ++k)
        EXPECT_NEAR(r.y[0][1][3 * k].item<double>(), h64[1][k].item<double>(),
                    dtype == torch::kBFloat16 ? 2e-2 : dtype == torch::kHalf ? 4e-3 : 1e-6)
            << what << " k=" << k;
    }
  }
}

// Breakpoints that are not exact in binary (docs/pwlu.md: d = (R - L) / N and x_k = fma(k, d, L)
// in the math type): x = x_k takes piece k, the right one, for every k = 1..N-1; x = L piece 0,
// x = R the right line. Expected values from the formula in float64 (y = Y_k, dy/dx = the slope
// of piece k, dY_k += g, dL += g s (k - N) / (R - L), dR -= g s k / (R - L)), not from the CPU op.
TEST(EmuPwlu, EveryBreakpointTakesTheRightPiece) {
  struct Bounds { double L, R; int n; };
  for (auto dtype : {torch::kFloat, torch::kDouble}) {
    for (const Bounds& c : {Bounds{-0.7, 3.1, 5}, Bounds{0.1, 0.7, 3}, Bounds{-2.3, 1.9, 16}, Bounds{-1e-3, 5.0, 13},
                            Bounds{-5.5, -1.25, 100}}) {
      const int n = c.n;
      auto opts = torch::TensorOptions().dtype(torch::kDouble);
      torch::manual_seed(21 + n);
      std::vector<double> pts;  // in the math type: x_0 = L, x_1 .. x_{N-1}, then R
      double L, R;
      if (dtype == torch::kFloat) {
        const float l = static_cast<float>(c.L), r = static_cast<float>(c.R), d = (r - l) / static_cast<float>(n);
        for (int k = 0; k < n; ++k) pts.push_back(std::fma(static_cast<float>(k), d, l));
        pts.push_back(r);
        L = l;
        R = r;
      } else {
        const double d = (c.R - c.L) / n;
        for (int k = 0; k < n; ++k) pts.push_back(std::fma(static_cast<double>(k), d, c.L));
        pts.push_back(c.R);
        L = c.L;
        R = c.R;
      }
      const int reps = 37;
      const int64_t len = static_cast<int64_t>(pts.size()) * reps;
      const auto x = torch::tensor(pts, opts).repeat({reps}).to(dtype);
      Params q;
      q.h = (torch::randn({1, n + 1}, opts) * 2).to(dtype);
      q.b = torch::tensor({L, R}, opts).reshape({1, 2}).to(dtype);
      q.s = torch::tensor({0.75, -1.5}, opts).reshape({1, 2}).to(dtype);
      const auto gy = (torch::rand({len}, opts) + 0.5).to(dtype);
      const KernelRun r = run(Case{x, 1, 0, 2}, q, gy);
      const auto h = q.h.to(torch::kDouble)[0];
      const double W = R - L, d = W / n, kr_ = q.s[0][1].item<double>();
      const double tol = dtype == torch::kDouble ? 1e-12 : 2e-6;
      std::vector<double> want_h(n + 1, 0.0);
      double want_l = 0, want_r = 0, abs_l = 0, abs_r = 0;
      const std::string what = dtype_name(dtype) + " L=" + std::to_string(c.L) + " n=" + std::to_string(n);
      int bad_y = 0, bad_gx = 0;
      for (int64_t i = 0; i < len; ++i) {
        const int k = static_cast<int>(i % (n + 1));
        const double g = gy[i].item<double>();
        double want_y, want_gx, dl, dr;
        if (k == n) {
          want_y = h[n].item<double>();
          want_gx = g * kr_;
          dl = 0;
          dr = -g * kr_;
        } else {
          const double sk = h[k + 1].item<double>() - h[k].item<double>();
          want_y = h[k].item<double>();
          want_gx = g * sk / d;
          dl = g * sk * (k - n) / W;
          dr = -g * sk * k / W;
        }
        want_h[k] += g;
        want_l += dl;
        want_r += dr;
        abs_l += std::abs(dl);
        abs_r += std::abs(dr);
        if (r.y[i].item<double>() != want_y) ++bad_y;
        if (std::abs(r.grad_x[i].item<double>() - want_gx) > tol * std::abs(want_gx) + tol) ++bad_gx;
      }
      EXPECT_EQ(bad_y, 0) << what << ": y != Y_k at a breakpoint";
      EXPECT_EQ(bad_gx, 0) << what << ": dy/dx is not the slope of the right piece";
      const auto pg = r.param_grad[0].to(torch::kDouble);
      for (int k = 0; k <= n; ++k) EXPECT_NEAR(pg[k].item<double>(), want_h[k], tol * len) << what << " dY_" << k;
      EXPECT_NEAR(pg[n + 1].item<double>(), want_l, tol * abs_l + 1e-12) << what << " dL";
      EXPECT_NEAR(pg[n + 2].item<double>(), want_r, tol * abs_r + 1e-12) << what << " dR";
      EXPECT_EQ(pg[n + 3].item<double>(), 0.0) << what;
      EXPECT_EQ(pg[n + 4].item<double>(), 0.0) << what;
    }
  }
}

// Infinite x: the outer pieces (y = Y_N + (x - R) K_R = +-inf), the same values and grads as the CPU op.
TEST(EmuPwlu, InfiniteInputsMatchTheCpuOp) {
  for (auto dtype : {torch::kFloat, torch::kDouble, torch::kHalf}) {
    auto opts = torch::TensorOptions().dtype(torch::kDouble);
    torch::manual_seed(9);
    auto x64 = torch::randn({1, 2, 37}, opts) * 3;
    x64[0][0][3] = INFINITY;
    x64[0][1][4] = -INFINITY;
    x64[0][1][20] = INFINITY;
    const auto x = x64.to(dtype);
    const Params q = random_params(2, 4, acc_dtype(dtype));
    const Case s{x, 2, 0, 1};
    const auto gy = torch::randn(x.sizes(), opts).to(dtype);
    const KernelRun r = run(s, q, gy);
    const auto y_cpu = torch_rational::pwlu(x, q.h, q.b, q.s, 1);
    const auto [gx_cpu, gh_cpu, gb_cpu, gs_cpu] =
        torch_rational::pwlu_backward(gy, x, q.h, q.b, q.s, 1, {true, true, true, true});
    const auto pg_cpu = torch::cat({gh_cpu, gb_cpu, gs_cpu}, 1).to(r.param_grad.scalar_type());
    const std::string what = dtype_name(dtype);
    EXPECT_TRUE(torch::isinf(r.y[0][0][3]).item<bool>()) << what;
    EXPECT_TRUE(torch::allclose(r.y.to(torch::kDouble), y_cpu.to(torch::kDouble), 1e-3, 1e-3, /*equal_nan=*/true)) << what;
    EXPECT_TRUE(torch::allclose(r.grad_x.to(torch::kDouble), gx_cpu.to(torch::kDouble), 1e-3, 1e-3, true)) << what;
    // The slopes' grads sum (x - R) g = +-inf (or NaN for +inf - inf): same class as on CPU.
    EXPECT_TRUE(torch::allclose(r.param_grad.to(torch::kDouble), pg_cpu.to(torch::kDouble), 1e-4, 1e-4, true))
        << what << r.param_grad << pg_cpu;
  }
}

// A NaN in one element stays in that element (forward and grad_x); the parameter grads it
// reaches are NaN in the same slots as on CPU.
TEST(EmuPwlu, NanStaysInItsElement) {
  for (int n : {4, 100}) {
    auto opts = torch::TensorOptions().dtype(torch::kFloat);
    torch::manual_seed(3);
    auto x = torch::randn({3000}, opts) * 3;
    x[1234] = std::nan("");
    const Case s{x, 1, 0, 2};
    const Params q = random_params(1, n, torch::kFloat);
    const auto gy = torch::ones_like(x);
    const KernelRun r = run(s, q, gy);
    const auto nan_y = torch::isnan(r.y), nan_g = torch::isnan(r.grad_x);
    EXPECT_EQ(nan_y.sum().item<int64_t>(), 1);
    EXPECT_TRUE(nan_y[1234].item<bool>());
    EXPECT_EQ(nan_g.sum().item<int64_t>(), 1);
    EXPECT_TRUE(nan_g[1234].item<bool>());
    const auto [gx_cpu, gh_cpu, gb_cpu, gs_cpu] =
        torch_rational::pwlu_backward(gy, x, q.h, q.b, q.s, 1, {true, true, true, true});
    const auto cpu = torch::cat({gh_cpu, gb_cpu, gs_cpu}, 1);
    EXPECT_TRUE(torch::equal(torch::isnan(r.param_grad), torch::isnan(cpu))) << r.param_grad << cpu;
    EXPECT_TRUE(torch::isnan(r.param_grad).any().item<bool>());
    EXPECT_FALSE(torch::isnan(r.param_grad).all().item<bool>());
  }
}

}  // namespace
