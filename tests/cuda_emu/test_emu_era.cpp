// The CUDA kernels of the ERA op (kernels/era.cuh: the fixed n = 1..4 specialisations, the generic
// path, the fused backward and its fixed-order finish), run on the host by the emulator of
// cuda_emu.h with the launch shapes the glue computes (plan_grouped_launch), against
//   - the float64 reference of tests/common/references.h (formula + ATen autograd),
//   - the CPU op torch_rational::era / era_backward,
// and for bitwise equality between two fiber schedules (a missing __syncthreads shows up there)
// and between the full backward and the partial ones (grad_x only, parameter grads only).
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cfloat>
#include <string>
#include <tuple>

#include "ops/era.h"
#include "references.h"
// The emulator after torch's headers: it defines threadIdx, __shared__, ... as macros.
#include "cuda_emu.h"
#include "emu_common.h"
#include "era.cuh"

namespace {

using namespace emu_test;
namespace kr = torch_rational::kernels;

// linear (G, 2) and fractions (G, n, 4) packed per group as csrc/ops/cuda/era_kernel.cu does.
torch::Tensor packed(const torch::Tensor& lin, const torch::Tensor& fr) {
  const int64_t G = lin.size(0);
  return torch::cat({lin.reshape({G, 2}), fr.reshape({G, -1})}, 1).contiguous();
}

// The ERA side of run_kernels: the parameters filled as csrc/ops/cuda/era_kernel.cu (fill_common)
// does, from the packed (G, 2 + 4n) parameters.
struct EraKernels {
  torch::Tensor packed_params;  // packed(lin, fr)
  int n;
  double eps;

  template <typename P> static void forward(const P& p) { kc::launch_era_forward(p, nullptr); }
  template <typename P> static void backward(const P& p) { kc::launch_era_backward(p, nullptr); }
  template <typename P> static void finish(const P& p) { kc::launch_era_finish(p, nullptr); }

  // param_grad: [groups][2 + 4n], laid out as packed_params
  int64_t grad_slots() const { return kr::era_params_per_group(n); }
  template <typename T>
  kc::EraCudaParams<T> params(const Case& s, DeviceTensors& dev, const T* x, const T* grad_y, T* out) const {
    using acc_t = typename kc::OpMath<T>::type;
    auto p = elementwise_params<kc::EraCudaParams<T>>(s, x, grad_y, out);
    p.params = dev.in<acc_t>(packed_params);
    p.n = n;
    p.eps = static_cast<acc_t>(eps);
    kc::plan_era_launch(p, /*backward=*/grad_y != nullptr, aligned16({x, grad_y, out}), s.multiprocessors);
    return p;
  }
};

KernelRun run(const Case& s, const torch::Tensor& lin, const torch::Tensor& fr, double eps, const torch::Tensor& gy,
              bool want_x = true, bool want_params = true) {
  return run_kernels(EraKernels{packed(lin, fr), static_cast<int>(fr.size(1)), eps}, s, gy, want_x, want_params);
}

// Random parameters as tests/cpp/test_era.cpp: poles e in [-2, 2], |f| in [0.3, 1.5].
std::pair<torch::Tensor, torch::Tensor> random_params(int64_t G, int64_t n) {
  auto opts = torch::TensorOptions().dtype(torch::kDouble);
  auto lin = torch::randn({G, 2}, opts) * 0.5;
  auto fr = torch::randn({G, n, 4}, opts) * 0.5;
  fr.select(2, 2).copy_(torch::rand({G, n}, opts) * 4 - 2);
  fr.select(2, 3).copy_(torch::rand({G, n}, opts) * 1.2 + 0.3);
  return {lin, fr};
}

// Float64 reference on x (any layout), groups along dim 1 (1-D x: one group).
torch::Tensor reference(const torch::Tensor& x, const torch::Tensor& lin, const torch::Tensor& fr, double eps) {
  if (x.dim() == 1) return tr_test::era_reference(x, lin[0], fr[0], eps);
  const int64_t G = lin.size(0), cpg = x.size(1) / G;
  std::vector<torch::Tensor> parts;
  for (int64_t c = 0; c < x.size(1); ++c)
    parts.push_back(tr_test::era_reference(x.select(1, c), lin[c / cpg], fr[c / cpg], eps).unsqueeze(1));
  return torch::cat(parts, 1);
}

class EmuEraTest : public ::testing::TestWithParam<DtypeSizeLayout> {};

TEST_P(EmuEraTest, MatchesReferenceAndCpuAndIsScheduleIndependent) {
  const auto [dtype, n, layout] = GetParam();
  torch::manual_seed(31 + n);
  auto opts = torch::TensorOptions().dtype(torch::kDouble);
  const auto x_flat = torch::randn({5003}, opts) * 2;
  const auto x_4d = torch::randn({2, 6, 4, 4}, opts) * 2;
  const Case s = make_case(layout, dtype, x_flat, x_4d);
  const int64_t G = s.groups;
  const double eps = 1e-3;  // large enough to matter in every dtype's comparison
  const auto [lin64, fr64] = random_params(G, n);
  const auto lin = lin64.to(acc_dtype(dtype)), fr = fr64.to(acc_dtype(dtype));
  const auto gy = torch::randn(s.x.sizes(), opts).to(dtype);

  const KernelRun r = run(s, lin, fr, eps, gy);
  // The rows kernels take the fixed n only.
  const bool want_rows = n <= 4 && suits_rows_kernels(s, layout);
  if (layout == Layout::RowsNhwc || layout == Layout::RowsLinear) EXPECT_EQ(want_rows, n <= 4);
  expect_intended_path(r, layout, want_rows);

  // Float64 reference on exactly the rounded inputs the kernels saw.
  auto xr = s.x.to(torch::kDouble).requires_grad_(true);
  auto lr = lin.to(torch::kDouble).requires_grad_(true);
  auto fr_r = fr.to(torch::kDouble).requires_grad_(true);
  const auto yr = reference(xr, lr, fr_r, eps);
  const double tol = dtype == torch::kDouble ? 1e-12 : dtype == torch::kFloat ? 1e-5 : dtype == torch::kHalf ? 2e-3 : 1.6e-2;
  EXPECT_LE(rel_err(r.y, yr), tol) << "forward";
  yr.backward(gy.to(torch::kDouble));
  const double gtol = dtype == torch::kDouble ? 1e-11 : dtype == torch::kFloat ? 2e-5 : dtype == torch::kHalf ? 4e-3 : 3e-2;
  // Parameter grads are float sums over up to ~5000 elements in half/bf16/float.
  const double ptol = dtype == torch::kDouble ? 1e-11 : 2e-5;
  EXPECT_LE(rel_err(r.grad_x, xr.grad()), gtol) << "grad_x";
  EXPECT_LE(rel_err(r.param_grad.narrow(1, 0, 2), lr.grad()), ptol) << "grad linear";
  EXPECT_LE(rel_err(r.param_grad.narrow(1, 2, 4 * n), fr_r.grad().reshape({G, 4 * n})), ptol) << "grad fractions";

  // The CPU op: the same math, so agreement to a few roundings of the element type.
  const auto y_cpu = torch_rational::era(s.x, lin, fr, eps, 1);
  const auto [gx_cpu, gl_cpu, gf_cpu] = torch_rational::era_backward(gy, s.x, lin, fr, eps, 1, {true, true, true});
  const double ctol = dtype == torch::kDouble ? 1e-13 : dtype == torch::kFloat ? 2e-6 : dtype == torch::kHalf ? 1e-3 : 8e-3;
  EXPECT_LE(rel_err(r.y, y_cpu), ctol) << "forward vs CPU";
  EXPECT_LE(rel_err(r.grad_x, gx_cpu), ctol) << "grad_x vs CPU";
  EXPECT_LE(rel_err(r.param_grad.narrow(1, 0, 2), gl_cpu), ptol) << "grad linear vs CPU";
  EXPECT_LE(rel_err(r.param_grad.narrow(1, 2, 4 * n), gf_cpu.reshape({G, 4 * n})), ptol) << "grad fractions vs CPU";

  // Reverse fiber schedule and partial backward requests: the same bits.
  expect_reproducible_bits(
      [&](bool want_x, bool want_params) { return run(s, lin, fr, eps, gy, want_x, want_params); }, r);
}

// Every fixed specialisation (n = 1..4) and the generic path (n = 5), all dtypes.
INSTANTIATE_TEST_SUITE_P(Fractions, EmuEraTest,
                         ::testing::Combine(kAllDtypes, ::testing::Values(1, 2, 3, 4, 5),
                                            ::testing::Values(Layout::Grouped, Layout::ChannelsLast,
                                                              Layout::RowsNhwc, Layout::RowsLinear)),
                         dtype_size_layout_name);

// Every layout on a fixed kernel and on the generic one.
INSTANTIATE_TEST_SUITE_P(Layouts, EmuEraTest,
                         ::testing::Combine(kLayoutSweepDtypes, ::testing::Values(3, 6), kLaunchShapeLayouts),
                         dtype_size_layout_name);

// The largest n the op accepts (kMaxEraFractions): the generic kernels' shared and local arrays.
INSTANTIATE_TEST_SUITE_P(MaxFractions, EmuEraTest,
                         ::testing::Combine(::testing::Values(torch::kFloat, torch::kDouble),
                                            ::testing::Values(kr::kMaxEraFractions),
                                            ::testing::Values(Layout::Grouped, Layout::Flat)),
                         dtype_size_layout_name);

// |x| near the float maximum: the overflow-safe form gives y = a x + b and dy/dx = a (the
// fractions vanish), not inf / inf = NaN; in the fixed kernel (n = 2) and the generic one (n = 6).
TEST(EmuEra, LargeInputsMatchTheReference) {
  for (int n : {2, 6}) {
    auto opts = torch::TensorOptions().dtype(torch::kDouble);
    torch::manual_seed(17);
    auto x64 = torch::randn({1, 1, 300}, opts) * 2;
    x64.select(2, 0).fill_(3e38);
    x64.select(2, 1).fill_(-3e38);
    x64.select(2, 2).fill_(1e30);
    x64.select(2, 7).fill_(-2e19);
    x64.select(2, 8).fill_(1e-40);  // float subnormal
    const Case s{x64.to(torch::kFloat), 1, 0, 1};
    auto [lin64, fr64] = random_params(1, n);
    lin64.select(1, 0).fill_(0.75);  // a x stays finite in float
    const auto lin = lin64.to(torch::kFloat), fr = fr64.to(torch::kFloat);
    const auto gy = torch::ones_like(s.x);
    const KernelRun r = run(s, lin, fr, 1e-6, gy, true, false);
    auto xr = s.x.to(torch::kDouble).requires_grad_(true);
    const auto yr = reference(xr, lin.to(torch::kDouble), fr.to(torch::kDouble), 1e-6);
    ASSERT_TRUE(torch::isfinite(yr).all().item<bool>());
    EXPECT_TRUE(torch::isfinite(r.y).all().item<bool>()) << "n=" << n;
    EXPECT_TRUE(torch::isfinite(r.grad_x).all().item<bool>()) << "n=" << n;
    EXPECT_LE(((r.y.to(torch::kDouble) - yr).abs() / (1 + yr.abs())).max().item<double>(), 1e-5) << "n=" << n;
    yr.sum().backward();
    EXPECT_LE(((r.grad_x.to(torch::kDouble) - xr.grad()).abs() / (1 + xr.grad().abs())).max().item<double>(), 1e-5)
        << "n=" << n;
    const auto y_cpu = torch_rational::era(s.x, lin, fr, 1e-6, 1).to(torch::kDouble);
    EXPECT_LE(((r.y.to(torch::kDouble) - y_cpu).abs() / (1 + y_cpu.abs())).max().item<double>(), 1e-6)
        << "n=" << n << " kernel " << r.y.narrow(2, 0, 10) << " CPU " << y_cpu.narrow(2, 0, 10);
  }
}

// x = +-inf (docs/era.md): y = a x + b (b when a == 0), dy/dx = a, dy/da = x, dy/db = 1, every
// fraction gradient 0. Group 0 sees only +inf, group 1 only -inf; n = 1, 2 (register kernels) and
// 5 (generic kernels); values from that definition, not from the CPU op.
TEST(EmuEra, InfiniteInputsTakeTheLimitOfTheLine) {
  for (auto dtype : {torch::kFloat, torch::kDouble, torch::kBFloat16}) {
    for (int n : {1, 2, 5}) {
      for (double a : {1.5, 0.0}) {
        auto opts = torch::TensorOptions().dtype(torch::kDouble);
        torch::manual_seed(11 + n);
        const auto x64 = torch::cat({torch::full({2, 1, 37}, INFINITY, opts), torch::full({2, 1, 37}, -INFINITY, opts)}, 1);
        const auto x = x64.to(dtype);
        auto [lin64, fr64] = random_params(2, n);
        lin64.select(1, 0).fill_(a);
        const auto acc = acc_dtype(dtype);
        const auto lin = lin64.to(acc), fr = fr64.to(acc);
        const auto gy = (torch::rand(x.sizes(), opts) + 0.5).to(dtype);
        const KernelRun r = run(Case{x, 2, 0, 1}, lin, fr, 1e-6, gy);
        const std::string what = dtype_name(dtype) + " n=" + std::to_string(n) + " a=" + std::to_string(a);
        const auto lin_d = lin.to(torch::kDouble), g64 = gy.to(torch::kDouble);
        for (int grp = 0; grp < 2; ++grp) {
          const double sign = grp == 0 ? 1.0 : -1.0, b = lin_d[grp][1].item<double>();
          const double want_y = a == 0.0 ? b : sign * a * INFINITY;
          const auto yg = r.y.select(1, grp).to(torch::kDouble);
          EXPECT_TRUE(torch::equal(yg, torch::full_like(yg, want_y).to(dtype).to(torch::kDouble))) << what;
          const auto gxg = r.grad_x.select(1, grp).to(torch::kDouble);
          const auto want_gx = (g64.select(1, grp) * a).to(dtype).to(torch::kDouble);
          EXPECT_TRUE(torch::allclose(gxg, want_gx, 1e-6, 0)) << what;
          const auto pg = r.param_grad[grp].to(torch::kDouble);
          EXPECT_EQ(pg[0].item<double>(), sign * INFINITY) << what;  // sum g x, g > 0
          EXPECT_NEAR(pg[1].item<double>(), g64.select(1, grp).sum().item<double>(), 1e-3) << what;
          EXPECT_TRUE(torch::equal(pg.narrow(0, 2, 4 * n), torch::zeros({4 * n}, pg.options()))) << what << pg;
        }
      }
    }
  }
}

// A NaN in one element stays in that element (forward and grad_x); every parameter grad but
// dy/db = 1 becomes NaN (the sums include it), as on CPU.
TEST(EmuEra, NanStaysInItsElement) {
  for (int n : {2, 5}) {
    auto opts = torch::TensorOptions().dtype(torch::kFloat);
    torch::manual_seed(3);
    auto x = torch::randn({3000}, opts);
    x[1234] = std::nan("");
    const Case s{x, 1, 0, 2};
    auto [lin64, fr64] = random_params(1, n);
    const auto lin = lin64.to(torch::kFloat), fr = fr64.to(torch::kFloat);
    const auto gy = torch::ones_like(x);
    const KernelRun r = run(s, lin, fr, 1e-6, gy);
    const auto nan_y = torch::isnan(r.y), nan_g = torch::isnan(r.grad_x);
    EXPECT_EQ(nan_y.sum().item<int64_t>(), 1);
    EXPECT_TRUE(nan_y[1234].item<bool>());
    EXPECT_EQ(nan_g.sum().item<int64_t>(), 1);
    EXPECT_TRUE(nan_g[1234].item<bool>());
    const auto nan_p = torch::isnan(r.param_grad[0]);
    EXPECT_FALSE(nan_p[1].item<bool>());
    EXPECT_EQ(nan_p.sum().item<int64_t>(), 1 + 4 * n);
    const auto [gx_cpu, gl_cpu, gf_cpu] = torch_rational::era_backward(gy, x, lin, fr, 1e-6, 1, {true, true, true});
    EXPECT_NEAR(r.param_grad[0][1].item<double>(), gl_cpu[0][1].item<double>(), 1e-3);
  }
}

}  // namespace
