// The CUDA kernels of the rational op (kernels/rational.cuh: the fixed-degree specialisations,
// the generic path, RPAU, the fused backward and its fixed-order finish), run on the host by the
// emulator of cuda_emu.h with the launch shapes the glue computes (plan_rational_launch), against
//   - the float64 reference of tests/common/references.h (formula + ATen autograd),
//   - the CPU op (same seed -> same RPAU noise),
// and for bitwise equality between two fiber schedules (a missing __syncthreads shows up there)
// and between the full backward and the partial ones (grad_x only, coefficient grads only).
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cfloat>
#include <string>
#include <tuple>

#include "ops/rational.h"
#include "ops/rational_utils.h"
#include "references.h"
// The emulator after torch's headers: it defines threadIdx, __shared__, ... as macros.
#include "cuda_emu.h"
#include "emu_common.h"
#include "rational.cuh"

namespace {

using namespace emu_test;
namespace kr = torch_rational::kernels;

using torch_rational::parse_basis;
using torch_rational::parse_version;

// The rational side of run_kernels: the parameters filled as csrc/ops/cuda/rational_kernel.cu
// does (pointers first: the plan looks at their alignment).
struct RationalKernels {
  torch::Tensor a, b;
  int m;
  std::string version, basis;
  double noise;
  uint64_t seed;

  template <typename P> static void forward(const P& p) { kc::launch_rational_forward(p, nullptr); }
  template <typename P> static void backward(const P& p) { kc::launch_rational_backward(p, nullptr); }
  template <typename P> static void finish(const P& p) { kc::launch_rational_finish(p, nullptr); }

  // param_grad: [groups][m + 1 + nb], numerator then denominator
  int64_t grad_slots() const { return m + 1 + b.size(-1); }
  template <typename T>
  kc::RationalCudaParams<T> params(const Case& s, DeviceTensors& dev, const T* x, const T* grad_y, T* out) const {
    using acc_t = typename kc::OpMath<T>::type;
    auto p = elementwise_params<kc::RationalCudaParams<T>>(s, x, grad_y, out);
    p.a = dev.in<acc_t>(a);
    p.b = dev.in<acc_t>(b);
    p.m = m;
    p.nb = static_cast<int>(b.size(-1));
    p.version = parse_version(version);
    p.basis = parse_basis(basis);
    const int n_top = p.nb - 1 + kr::first_den_power(p.version);
    p.threshold = static_cast<acc_t>(
        kr::overflow_threshold<double>(std::max(m, n_top), is_double<acc_t>() ? DBL_MAX : double(FLT_MAX)));
    p.noise = static_cast<acc_t>(noise);
    p.seed = seed;
    // RPAU: the glue makes x contiguous first; the tests only use contiguous x with noise.
    kc::plan_rational_launch<T>(p, s.multiprocessors);
    // run_kernels overrides gridDim.y next: the cases that do must not take the rows kernels.
    if (s.grid_rows > 0) EXPECT_FALSE(p.rows);
    return p;
  }
};

// r.forward_rows: the forward took the rows kernels.
KernelRun run(const Case& s, const torch::Tensor& a, const torch::Tensor& b, int m, const std::string& version,
              const std::string& basis, const torch::Tensor& gy, double noise = 0.0, uint64_t seed = 0,
              bool want_x = true, bool want_coefs = true) {
  return run_kernels(RationalKernels{a, b, m, version, basis, noise, seed}, s, gy, want_x, want_coefs);
}

using Param = std::tuple<torch::Dtype, std::pair<int, int>, std::string, std::string, Layout>;

class EmuRationalTest : public ::testing::TestWithParam<Param> {};

TEST_P(EmuRationalTest, MatchesReferenceAndCpuAndIsScheduleIndependent) {
  const auto [dtype, degrees, version, basis, layout] = GetParam();
  const int m = degrees.first, n = degrees.second;
  const int nb = version == "C" ? n + 1 : n;
  torch::manual_seed(97 + m * 7 + n);
  auto opts = torch::TensorOptions().dtype(torch::kDouble);
  // Half's range (65504) bounds |dy/dx| ~ m |a_m| |x|^(m-1): smaller inputs for it.
  const double xs = basis != "power" ? 0.8 : dtype == torch::kHalf ? 1.0 : 1.5;
  const auto x_flat = torch::randn({5003}, opts) * xs;
  const auto x_4d = torch::randn({2, 6, 4, 4}, opts) * xs;
  const Case s = make_case(layout, dtype, x_flat, x_4d);
  const int64_t G = s.groups;
  auto a64 = torch::randn({G, m + 1}, opts) * 0.5;
  auto b64 = torch::randn({G, nb}, opts) * (version == "N" ? 0.05 : 0.5);
  if (version == "C") b64.select(1, 0).fill_(1.0);
  if (version == "N") {
    // Q = 1 + S has poles; keep Q >= 0.5 on the data so the test checks the kernels, not the
    // conditioning of a near-pole (whose gradient can overflow half precision).
    const auto x_all = s.x.to(torch::kDouble);
    for (int it = 0; it < 60; ++it) {
      double q_min = 1e300;
      for (int64_t g = 0; g < G; ++g) {
        auto one = torch::zeros({m + 1}, opts);
        one[0] = 1.0;
        q_min = std::min(q_min, (1.0 / tr_test::rational_reference(x_all, one, b64[g], "N", basis)).min().item<double>());
      }
      if (q_min >= 0.5) break;
      b64 *= 0.7;
    }
  }
  const auto a = a64.to(acc_dtype(dtype)), b = b64.to(acc_dtype(dtype));
  const auto gy = torch::randn(s.x.sizes(), opts).to(dtype);

  const KernelRun r = run(s, a, b, m, version, basis, gy);
  // The rows kernels take span-1 layouts of the fixed degrees whose groups fill the lanes.
  const View view = make_view(s.x, G, 1);
  const int lanes = dtype == torch::kDouble ? 2 : 4;
  EXPECT_EQ(r.forward_rows, kc::rational_fixed_degree(m, n) && view.span == 1 && view.outer > 1 && G % lanes == 0 &&
                        layout != Layout::Misaligned);
  if (layout == Layout::RowsNhwc || layout == Layout::RowsLinear) EXPECT_EQ(r.forward_rows, kc::rational_fixed_degree(m, n));

  // Float64 reference on exactly the rounded inputs the kernels saw.
  auto xr = s.x.to(torch::kDouble).requires_grad_(true);
  auto ar = a.to(torch::kDouble).requires_grad_(true);
  auto br = b.to(torch::kDouble).requires_grad_(true);
  torch::Tensor yr;
  if (xr.dim() == 1) {
    yr = tr_test::rational_reference(xr, ar[0], br[0], version, basis);
  } else {
    const int64_t cpg = xr.size(1) / G;
    std::vector<torch::Tensor> parts;
    for (int64_t c = 0; c < xr.size(1); ++c)
      parts.push_back(tr_test::rational_reference(xr.select(1, c), ar[c / cpg], br[c / cpg], version, basis).unsqueeze(1));
    yr = torch::cat(parts, 1);
  }
  const double tol = dtype == torch::kDouble ? 1e-10 : dtype == torch::kFloat ? 2e-4 : dtype == torch::kHalf ? 4e-3 : 3e-2;
  EXPECT_LE(rel_err(r.y, yr), tol) << "forward";
  yr.backward(gy.to(torch::kDouble));
  const double gtol = dtype == torch::kDouble ? 1e-9 : dtype == torch::kFloat ? 1e-3 : dtype == torch::kHalf ? 1e-2 : 6e-2;
  EXPECT_LE(rel_err(r.grad_x, xr.grad()), gtol) << "grad_x";
  EXPECT_LE(rel_err(r.param_grad.narrow(1, 0, m + 1), ar.grad()), gtol) << "grad numerator";
  EXPECT_LE(rel_err(r.param_grad.narrow(1, m + 1, nb), br.grad()), gtol) << "grad denominator";

  // The CPU op: the same math, so agreement to a few roundings of the element type.
  const auto y_cpu = torch_rational::rational(s.x, a, b, version, basis, 1);
  const auto [gx_cpu, ga_cpu, gb_cpu] = torch_rational::rational_backward(
      gy, s.x, a, b, version, basis, 1, 0.0, std::nullopt, {true, true, true});
  const double ctol = dtype == torch::kDouble ? 1e-12 : dtype == torch::kFloat ? 2e-4 : dtype == torch::kHalf ? 2e-3 : 1.6e-2;
  EXPECT_LE(rel_err(r.y, y_cpu), ctol) << "forward vs CPU";
  EXPECT_LE(rel_err(r.grad_x, gx_cpu), ctol) << "grad_x vs CPU";
  EXPECT_LE(rel_err(r.param_grad.narrow(1, 0, m + 1), ga_cpu), 10 * ctol) << "grad numerator vs CPU";
  EXPECT_LE(rel_err(r.param_grad.narrow(1, m + 1, nb), gb_cpu), 10 * ctol) << "grad denominator vs CPU";

  // Reverse fiber schedule and partial backward requests: the same bits.
  expect_reproducible_bits(
      [&](bool want_x, bool want_coefs) {
        return run(s, a, b, m, version, basis, gy, 0.0, 0, want_x, want_coefs);
      },
      r);
}

std::string param_name(const ::testing::TestParamInfo<Param>& info) {
  const auto& [dtype, degrees, version, basis, layout] = info.param;
  std::string b;
  bool up = true;
  for (char ch : basis) {
    if (ch == '_') {
      up = true;
      continue;
    }
    b += up ? static_cast<char>(std::toupper(ch)) : ch;
    up = false;
  }
  return dtype_name(dtype) + "Deg" + std::to_string(degrees.first) + std::to_string(degrees.second) + version + b +
         layout_name(layout);
}

const auto kAllLayouts = ::testing::Values(Layout::Flat, Layout::Grouped, Layout::GroupedOdd, Layout::ChannelsLast,
                                           Layout::Misaligned, Layout::FewGridRows, Layout::ManyBlocks,
                                           Layout::RowsNhwc, Layout::RowsLinear);

// Every fixed-degree specialisation and the generic path (2,3), every version, all dtypes.
INSTANTIATE_TEST_SUITE_P(
    PowerBasis, EmuRationalTest,
    ::testing::Combine(kAllDtypes, ::testing::Values(std::make_pair(5, 4), std::make_pair(4, 4), std::make_pair(3, 2),
                                         std::make_pair(7, 6), std::make_pair(2, 3)),
                       ::testing::Values("A", "B", "C", "N"), ::testing::Values("power"),
                       ::testing::Values(Layout::Grouped, Layout::ChannelsLast, Layout::RowsNhwc)),
    param_name);

// Every layout on the most used kernel and on the generic one.
INSTANTIATE_TEST_SUITE_P(Layouts, EmuRationalTest,
                         ::testing::Combine(kLayoutSweepDtypes,
                                            ::testing::Values(std::make_pair(5, 4), std::make_pair(2, 3)),
                                            ::testing::Values("A"), ::testing::Values("power"), kAllLayouts),
                         param_name);

// The orthogonal bases (HP-1/HP-2) through the fixed (5,4) kernel and the generic one.
INSTANTIATE_TEST_SUITE_P(
    OrthogonalBases, EmuRationalTest,
    ::testing::Combine(::testing::Values(torch::kFloat, torch::kDouble), ::testing::Values(std::make_pair(5, 4), std::make_pair(3, 5)),
                       ::testing::Values("A", "B", "C", "N"),
                       ::testing::Values("chebyshev_t", "chebyshev_u", "hermite", "hermite_e", "laguerre", "legendre"),
                       ::testing::Values(Layout::Grouped)),
    param_name);

// ... and through the rows kernels.
INSTANTIATE_TEST_SUITE_P(
    OrthogonalBasesRows, EmuRationalTest,
    ::testing::Combine(::testing::Values(torch::kFloat, torch::kDouble), ::testing::Values(std::make_pair(5, 4)),
                       ::testing::Values("A", "B", "C", "N"),
                       ::testing::Values("chebyshev_t", "chebyshev_u", "hermite", "hermite_e", "laguerre", "legendre"),
                       ::testing::Values(Layout::RowsLinear)),
    param_name);

// RPAU: the CUDA kernels (the fixed-degree RPAU kernels and the generic one) draw the same
// counter-based noise as the CPU kernels.
class EmuRpauTest
    : public ::testing::TestWithParam<std::tuple<torch::Dtype, std::pair<int, int>, std::string, Layout>> {};

TEST_P(EmuRpauTest, SameNoiseAsCpu) {
  const auto [dtype, degrees, version, layout] = GetParam();
  const int m = degrees.first, n = degrees.second;
  const int nb = version == "C" ? n + 1 : n;
  torch::manual_seed(5);
  auto opts = torch::TensorOptions().dtype(torch::kDouble);
  // Half's range bounds |dy/dx|; version N: small denominators, far from its poles.
  const double xs = dtype == torch::kHalf ? 1.0 : 1.5;
  const Case s = make_case(layout, dtype, torch::randn({5003}, opts) * xs, torch::randn({2, 6, 4, 4}, opts) * xs);
  const int64_t G = s.groups;
  auto a64 = torch::randn({G, m + 1}, opts) * 0.5;
  auto b64 = torch::randn({G, nb}, opts) * (version == "N" ? 0.002 : 0.5);
  if (version == "C") b64.select(1, 0).fill_(1.0);
  const auto a = a64.to(acc_dtype(dtype)), b = b64.to(acc_dtype(dtype));
  const auto gy = torch::randn(s.x.sizes(), opts).to(dtype);
  const double noise = 0.2;
  const uint64_t seed = 123456789;
  const auto seed_t = torch::tensor({static_cast<int64_t>(seed)}, torch::kLong);
  const KernelRun r = run(s, a, b, m, version, "power", gy, noise, seed);
  const auto y_cpu = torch_rational::rational(s.x, a, b, version, "power", 1, noise, seed_t);
  const auto [gx_cpu, ga_cpu, gb_cpu] =
      torch_rational::rational_backward(gy, s.x, a, b, version, "power", 1, noise, seed_t, {true, true, true});
  const double ctol = dtype == torch::kDouble ? 1e-12 : dtype == torch::kFloat ? 5e-5 : 1.6e-2;
  EXPECT_LE(rel_err(r.y, y_cpu), ctol);
  EXPECT_LE(rel_err(r.grad_x, gx_cpu), ctol);
  EXPECT_LE(rel_err(r.param_grad, torch::cat(std::vector<torch::Tensor>{ga_cpu, gb_cpu}, 1)), 10 * ctol);
  // The noise is there: without it the output differs by far more than rounding.
  const KernelRun r0 = run(s, a, b, m, version, "power", gy);
  EXPECT_GT(rel_err(r.y, r0.y), 0.01);
  // Reverse schedule: the same bits.
  const ScheduleGuard guard(cuda_emu::Schedule::Reverse);
  const KernelRun rr = run(s, a, b, m, version, "power", gy, noise, seed);
  EXPECT_TRUE(bitwise_equal(r.grad_x, rr.grad_x));
  EXPECT_TRUE(bitwise_equal(r.param_grad, rr.param_grad));
}

INSTANTIATE_TEST_SUITE_P(
    FixedAndGeneric, EmuRpauTest,
    ::testing::Combine(::testing::Values(torch::kFloat, torch::kDouble, torch::kBFloat16, torch::kHalf),
                       ::testing::Values(std::make_pair(5, 4), std::make_pair(3, 2), std::make_pair(7, 6),
                                         std::make_pair(4, 4), std::make_pair(2, 3)),
                       ::testing::Values("A", "B", "C", "N"), ::testing::Values(Layout::Grouped)));

// Layouts: a tail, the scalar loop, several blocks.
INSTANTIATE_TEST_SUITE_P(Layouts, EmuRpauTest,
                         ::testing::Combine(::testing::Values(torch::kFloat),
                                            ::testing::Values(std::make_pair(5, 4), std::make_pair(2, 3)),
                                            ::testing::Values("A"),
                                            ::testing::Values(Layout::Flat, Layout::GroupedOdd, Layout::ManyBlocks)));

// float x of shape [2, 2, 40], one group, with 3e9, -7e12 and 1e30 in every row: above the
// float overflow threshold of the power basis (the double path), among ordinary values.
inline Case large_input_case(uint64_t seed) {
  torch::manual_seed(seed);
  auto x64 = torch::randn({2, 2, 40}, torch::TensorOptions().dtype(torch::kDouble)) * 2;
  x64.select(2, 0).fill_(3e9);
  x64.select(2, 1).fill_(-7e12);
  x64.select(2, 5).fill_(1e30);
  return Case{x64.to(torch::kFloat), 1, 0, 1};
}

// Float64 copies of the kernels' inputs, exactly as rounded, as autograd leaves of the reference.
struct ReferenceLeaves {
  torch::Tensor x, a, b;
  ReferenceLeaves(const torch::Tensor& x_in, const torch::Tensor& a_in, const torch::Tensor& b_in)
      : x(x_in.to(torch::kDouble).requires_grad_(true)),
        a(a_in.to(torch::kDouble).requires_grad_(true)),
        b(b_in.to(torch::kDouble).requires_grad_(true)) {}
};

// r (run with grad_y = 1) against the reference yr computed on ref: y and grad_x element by
// element, since with large inputs the outputs span many magnitudes; the coefficient gradients as
// a whole.
void expect_large_inputs_match(const KernelRun& r, const torch::Tensor& yr, const ReferenceLeaves& ref, int m) {
  const int nb = static_cast<int>(ref.b.size(1));
  EXPECT_LE(((r.y.to(torch::kDouble) - yr).abs() / (1 + yr.abs())).max().item<double>(), 1e-5) << "m=" << m;
  yr.sum().backward();
  EXPECT_LE(((r.grad_x.to(torch::kDouble) - ref.x.grad()).abs() / (1 + ref.x.grad().abs())).max().item<double>(), 1e-4)
      << "m=" << m;
  EXPECT_LE(rel_err(r.param_grad.narrow(1, 0, m + 1), ref.a.grad()), 1e-4) << "m=" << m;
  EXPECT_LE(rel_err(r.param_grad.narrow(1, m + 1, nb), ref.b.grad()), 1e-4) << "m=" << m;
}

// |x| above the overflow threshold of the math type takes the double path (scaled form only
// where double would overflow too), in the fixed-degree kernels and the generic one (2,3).
TEST(EmuRational, LargeInputsMatchTheReference) {
  for (const auto& [m, n] : {std::make_pair(5, 4), std::make_pair(7, 6), std::make_pair(3, 2), std::make_pair(2, 3)}) {
    auto opts = torch::TensorOptions().dtype(torch::kDouble);
    const Case s = large_input_case(11);
    const auto a = (torch::rand({1, m + 1}, opts) + 0.5).to(torch::kFloat);
    const auto b = (torch::rand({1, n}, opts) + 0.5).to(torch::kFloat);
    const auto gy = torch::ones_like(s.x);
    const KernelRun r = run(s, a, b, m, "A", "power", gy);
    const ReferenceLeaves ref(s.x, a, b);
    const auto yr = tr_test::rational_reference(ref.x, ref.a[0], ref.b[0], "A", "power");
    ASSERT_TRUE(torch::isfinite(yr).all().item<bool>());
    EXPECT_TRUE(torch::isfinite(r.y).all().item<bool>()) << "m=" << m;
    expect_large_inputs_match(r, yr, ref, m);
    // The CPU op takes the same double path.
    EXPECT_LE(rel_err(r.y, torch_rational::rational(s.x, a, b, "A", "power", 1)), 1e-6) << "m=" << m;
  }
}

// The same through the RPAU kernels (fixed degrees, and the generic one at (2,3)): the large-|x|
// elements take the second pass, which draws the same noise again; compared with the CPU op
// (same seed, same noise, the same double path), and bitwise under the reversed schedule.
TEST(EmuRational, LargeInputsInTheRpauKernelsMatchTheCpuOp) {
  for (const auto& [m, n] : {std::make_pair(5, 4), std::make_pair(3, 2), std::make_pair(2, 3)}) {
    auto opts = torch::TensorOptions().dtype(torch::kDouble);
    const Case s = large_input_case(13);
    const auto a = (torch::rand({1, m + 1}, opts) + 0.5).to(torch::kFloat);
    const auto b = (torch::rand({1, n}, opts) + 0.5).to(torch::kFloat);
    const auto gy = torch::randn(s.x.sizes(), opts).to(torch::kFloat);
    const double noise = 0.2;
    const uint64_t seed = 987654321;
    const auto seed_t = torch::tensor({static_cast<int64_t>(seed)}, torch::kLong);
    const KernelRun r = run(s, a, b, m, "A", "power", gy, noise, seed);
    const auto y_cpu = torch_rational::rational(s.x, a, b, "A", "power", 1, noise, seed_t);
    const auto [gx_cpu, ga_cpu, gb_cpu] =
        torch_rational::rational_backward(gy, s.x, a, b, "A", "power", 1, noise, seed_t, {true, true, true});
    ASSERT_TRUE(torch::isfinite(y_cpu).all().item<bool>());
    EXPECT_LE(((r.y - y_cpu).abs() / (1 + y_cpu.abs())).max().item<double>(), 1e-5) << "m=" << m;
    EXPECT_LE(((r.grad_x - gx_cpu).abs() / (1 + gx_cpu.abs())).max().item<double>(), 1e-4) << "m=" << m;
    EXPECT_LE(rel_err(r.param_grad, torch::cat(std::vector<torch::Tensor>{ga_cpu, gb_cpu}, 1)), 1e-4) << "m=" << m;
    const ScheduleGuard guard(cuda_emu::Schedule::Reverse);
    const KernelRun rr = run(s, a, b, m, "A", "power", gy, noise, seed);
    EXPECT_TRUE(bitwise_equal(r.y, rr.y)) << "m=" << m;
    EXPECT_TRUE(bitwise_equal(r.param_grad, rr.param_grad)) << "m=" << m;
  }
}

// The same through the rows kernels (per-feature groups on [batch, features]).
TEST(EmuRational, LargeInputsMatchTheReferenceInTheRowsKernels) {
  for (const auto& [m, n] : {std::make_pair(5, 4), std::make_pair(3, 2)}) {
    auto opts = torch::TensorOptions().dtype(torch::kDouble);
    torch::manual_seed(12);
    auto x64 = torch::randn({20, 8}, opts) * 2;
    x64.select(0, 0).fill_(3e9);
    x64.select(0, 1).fill_(-7e12);
    x64.select(0, 5).fill_(1e30);
    const Case s{x64.to(torch::kFloat), 8, 0, 1};
    const auto a = (torch::rand({8, m + 1}, opts) + 0.5).to(torch::kFloat);
    const auto b = (torch::rand({8, n}, opts) + 0.5).to(torch::kFloat);
    const KernelRun r = run(s, a, b, m, "A", "power", torch::ones_like(s.x));
    ASSERT_TRUE(r.forward_rows);
    const ReferenceLeaves ref(s.x, a, b);
    std::vector<torch::Tensor> cols;
    for (int64_t c = 0; c < 8; ++c)
      cols.push_back(tr_test::rational_reference(ref.x.select(1, c), ref.a[c], ref.b[c], "A", "power").unsqueeze(1));
    expect_large_inputs_match(r, torch::cat(cols, 1), ref, m);
  }
}

// A NaN in one element stays in that element (forward and grad_x); coefficient grads become NaN
// (the sum includes it), as on CPU.
TEST(EmuRational, NanStaysInItsElement) {
  auto opts = torch::TensorOptions().dtype(torch::kFloat);
  torch::manual_seed(3);
  auto x = torch::randn({3000}, opts);
  x[1234] = std::nan("");
  const Case s{x, 1, 0, 1};
  const auto a = torch::randn({1, 6}, opts) * 0.5, b = torch::randn({1, 4}, opts) * 0.5;
  const KernelRun r = run(s, a, b, 5, "A", "power", torch::ones_like(x));
  const auto nan_y = torch::isnan(r.y), nan_g = torch::isnan(r.grad_x);
  EXPECT_EQ(nan_y.sum().item<int64_t>(), 1);
  EXPECT_TRUE(nan_y[1234].item<bool>());
  EXPECT_EQ(nan_g.sum().item<int64_t>(), 1);
  EXPECT_TRUE(torch::isnan(r.param_grad).all().item<bool>());
}

// x = +-inf with the power basis: the limits as x -> +-inf (docs/DESIGN.md, Math; the Python
// tests check the CPU op against exact limits). y = x^2 / (1 - x), version N, written at (5,4)
// with zero leading coefficients (the fixed kernels) and at (2,1) (the generic kernel): -inf at
// +inf, +inf at -inf, slope -1 at both; in the grouped and the rows kernels, float and double.
TEST(EmuRational, InfinityGivesTheLimitVersionN) {
  for (const auto dtype : {torch::kFloat, torch::kDouble}) {
    for (const auto& [m, n] : {std::make_pair(5, 4), std::make_pair(2, 1)}) {
      for (const bool rows : {false, true}) {
        if (rows && m == 2) continue;  // the rows kernels take fixed degrees only
        auto opts = torch::TensorOptions().dtype(torch::kDouble);
        const int64_t G = rows ? 8 : 1;
        auto x64 = torch::rand({rows ? 20 : 3, rows ? 8 : 37}, opts) - 0.5;
        x64.select(0, 1).fill_(INFINITY);
        x64.select(0, 2).fill_(-INFINITY);
        const Case s{x64.to(dtype), G, 0, 1};
        auto a = torch::zeros({G, m + 1}, opts);
        a.select(1, 2).fill_(1.0);
        auto b = torch::zeros({G, n}, opts);
        b.select(1, 0).fill_(-1.0);
        const KernelRun r = run(s, a.to(dtype), b.to(dtype), m, "N", "power", torch::ones_like(s.x));
        EXPECT_EQ(r.forward_rows, rows);
        SCOPED_TRACE(std::string(dtype == torch::kFloat ? "float" : "double") + " m=" + std::to_string(m) + (rows ? " rows" : ""));
        const auto y = r.y.to(torch::kDouble), gx = r.grad_x.to(torch::kDouble);
        EXPECT_TRUE((y.select(0, 1) == -INFINITY).all().item<bool>()) << y.select(0, 1);
        EXPECT_TRUE((y.select(0, 2) == INFINITY).all().item<bool>()) << y.select(0, 2);
        EXPECT_TRUE((gx.select(0, 1) == -1).all().item<bool>()) << gx.select(0, 1);
        EXPECT_TRUE((gx.select(0, 2) == -1).all().item<bool>()) << gx.select(0, 2);
        // The finite rows are untouched by the infinite ones.
        auto keep = torch::cat({x64.narrow(0, 0, 1), x64.narrow(0, 3, x64.size(0) - 3)});
        auto yref = keep * keep / (1 - keep);
        auto ykeep = torch::cat({y.narrow(0, 0, 1), y.narrow(0, 3, y.size(0) - 3)});
        EXPECT_LE(((ykeep - yref).abs() / (1 + yref.abs())).max().item<double>(), 1e-5);
      }
    }
  }
}

// All versions, zero leading coefficients included, +-inf among finite values: the same values
// as the CPU op (checked against exact limits by tests/python/test_rational_edges.py), in the
// fixed-degree, generic and rows kernels; NaN only where the CPU op has NaN.
TEST(EmuRational, InfinityMatchesTheCpuOp) {
  for (const char* version : {"A", "B", "C", "N"}) {
    for (const auto& [m, n] : {std::make_pair(5, 4), std::make_pair(3, 2), std::make_pair(2, 3)}) {
      for (const int zero_top : {0, 1, 2}) {
        for (const bool rows : {false, true}) {
          auto opts = torch::TensorOptions().dtype(torch::kDouble);
          torch::manual_seed(100 + m + zero_top);
          const int64_t G = 8;
          // |x| < 1 and, for N, |S| < 0.8: no pole of 1 + S among the finite elements.
          auto x64 = (rows ? torch::rand({20, 8}, opts) : torch::rand({2, 8, 21}, opts)) * 2 - 1;
          x64.select(0, 1).select(0, 3).fill_(INFINITY);
          x64.select(0, 1).select(0, 6).fill_(-INFINITY);
          const Case s{x64.to(torch::kFloat), G, 0, 1};
          const int nb = std::string(version) == "C" ? n + 1 : n;
          auto a = torch::randn({G, m + 1}, opts).to(torch::kFloat);
          auto b = (torch::rand({G, nb}, opts) * 0.4 - 0.2).to(torch::kFloat);
          if (zero_top > 0) a.narrow(1, m + 1 - std::min(zero_top, m + 1), std::min(zero_top, m + 1)).zero_();
          if (zero_top > 1) b.narrow(1, nb - 1, 1).zero_();
          const auto gy = torch::ones_like(s.x);
          const KernelRun r = run(s, a, b, m, version, "power", gy);
          const auto y_cpu = torch_rational::rational(s.x, a, b, version, "power", 1);
          const auto [gx_cpu, ga_cpu, gb_cpu] = torch_rational::rational_backward(
              gy, s.x, a, b, version, "power", 1, 0.0, std::nullopt, {true, true, true});
          const auto same = [](const torch::Tensor& u, const torch::Tensor& v) {
            const auto uu = u.to(torch::kDouble), vv = v.to(torch::kDouble);
            // Finite elements away from the poles of N (there float rounding is amplified).
            const auto fin = torch::isfinite(vv) & (vv.abs() < 1e3);
            return torch::equal(torch::isnan(uu), torch::isnan(vv)) &&
                   torch::equal(uu.masked_select(torch::isinf(vv)), vv.masked_select(torch::isinf(vv))) &&
                   torch::equal(torch::isfinite(uu), torch::isfinite(vv)) &&
                   ((uu - vv).abs() / (1 + vv.abs())).masked_select(fin).max().item<double>() <= 1e-4;
          };
          const std::string what = std::string(version) + " m=" + std::to_string(m) + " zero_top=" +
                                   std::to_string(zero_top) + (rows ? " rows" : "");
          EXPECT_TRUE(same(r.y, y_cpu)) << what;
          EXPECT_TRUE(same(r.grad_x, gx_cpu)) << what;
          EXPECT_TRUE(same(r.param_grad, torch::cat(std::vector<torch::Tensor>{ga_cpu, gb_cpu}, 1))) << what;
        }
      }
    }
  }
}

// Coefficient gradients summed over many blocks (float, (5,4), one group, 2^18 elements, the
// launch of a 132-SM GPU: 256 block partials) are within 4 float ulps of the scale
// sum |g dy/dcoef| of the float64 reference. The finish used to sum the partials in float.
TEST(EmuRational, CoefficientGradientsOfManyBlocks) {
  auto opts = torch::TensorOptions().dtype(torch::kDouble);
  torch::manual_seed(21);
  const auto x64 = torch::randn({1, 1, 1 << 18}, opts) * 2;
  Case s{x64.to(torch::kFloat), 1, 0, 132};
  const auto a = torch::tensor({0.0299, 0.6169, 2.3770, 2.5767, 1.1998, 0.1528}, opts).reshape({1, 6}).to(torch::kFloat);
  const auto b = torch::tensor({1.2198, 4.4400, 0.3886, 0.6060}, opts).reshape({1, 4}).to(torch::kFloat);
  const auto gy = torch::ones_like(s.x);
  const KernelRun r = run(s, a, b, 5, "A", "power", gy);
  auto xr = s.x.to(torch::kDouble).flatten();
  auto ar = a.to(torch::kDouble)[0], br = b.to(torch::kDouble)[0];
  // The terms g dy/dcoef of the float64 formula, and their sums and absolute sums.
  torch::Tensor P = torch::zeros_like(xr), Q = torch::ones_like(xr);
  for (int j = 0; j <= 5; ++j) P = P + ar[j] * xr.pow(j);
  for (int k = 1; k <= 4; ++k) Q = Q + br[k - 1].abs() * xr.abs().pow(k);
  std::vector<torch::Tensor> terms;
  for (int j = 0; j <= 5; ++j) terms.push_back(xr.pow(j) / Q);
  for (int k = 1; k <= 4; ++k) terms.push_back(-P / (Q * Q) * br[k - 1].sign() * xr.abs().pow(k));
  const auto t = torch::stack(terms, 1);
  const auto ref = t.sum(0), scale = t.abs().sum(0);
  const auto err = ((r.param_grad[0].to(torch::kDouble) - ref).abs() / scale).max().item<double>();
  EXPECT_LE(err, 4 * 0x1p-24) << "max |error| / scale = " << err;
}

// The plan never launches a block without work and caps gridDim.y.
TEST(EmuRational, LaunchPlanShapes) {
  const auto p1 = kc::plan_grouped_launch(1, 1, 1003, 4, true, 256, 132);
  EXPECT_TRUE(p1.vectorised);
  EXPECT_EQ(p1.blocks_per_group, 1);  // 250 vectors + 3 tail elements: one block
  const auto p2 = kc::plan_grouped_launch(4, 70000, 1, 4, true, 256, 132);
  EXPECT_FALSE(p2.vectorised);  // runs of one element
  EXPECT_EQ(p2.grid_groups, 65535);
  EXPECT_EQ(p2.blocks_per_group, 1);
  const auto p3 = kc::plan_grouped_launch(1, 1, int64_t(1) << 31, 4, true, 256, 132);
  EXPECT_EQ(p3.blocks_per_group, 132 * 8);
  const auto p4 = kc::plan_grouped_launch(2, 3, 16, 4, false, 256, 1);
  EXPECT_FALSE(p4.vectorised);  // a misaligned pointer

  // The rows kernels: span 1, fixed degree, no noise, groups a multiple of the lanes.
  alignas(16) static float buf[8];
  kc::RationalCudaParams<float> p;
  p.x = buf;
  p.out = buf;
  p.outer = 1000;
  p.groups = 512;
  p.span = 1;
  p.m = 5;
  p.nb = 4;
  kc::plan_rational_launch(p, 132);
  EXPECT_TRUE(p.rows);
  EXPECT_EQ(p.grid_groups, 4);  // 512 columns / (32 threads * 4 lanes)
  EXPECT_EQ(p.blocks_per_group, 125);  // min(1000 rows / 8, 132 * 8 / 4 = 264)
  auto q = p;
  q.m = 2;
  q.nb = 3;  // generic degree
  kc::plan_rational_launch(q, 132);
  EXPECT_FALSE(q.rows);
  q = p;
  q.noise = 0.1f;
  kc::plan_rational_launch(q, 132);
  EXPECT_FALSE(q.rows);
  q = p;
  q.groups = 514;  // not a multiple of 4 lanes
  kc::plan_rational_launch(q, 132);
  EXPECT_FALSE(q.rows);
  q = p;
  q.x = buf + 1;  // misaligned
  kc::plan_rational_launch(q, 132);
  EXPECT_FALSE(q.rows);
}

}  // namespace
