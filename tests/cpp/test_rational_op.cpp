// The C++ op (through the dispatcher, autograd included) against a float64 reference built from
// ATen ops and differentiated by ATen's autograd.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <string>
#include <tuple>

#include "ops/rational.h"
#include "references.h"

namespace {

using tr_test::float64_leaf;
using tr_test::rational_reference;

using Param = std::tuple<torch::Dtype, std::pair<int, int>, std::string, std::string>;

class RationalOpTest : public ::testing::TestWithParam<Param> {};

TEST_P(RationalOpTest, ForwardAndBackwardMatchReference) {
  const auto [dtype, degrees, version, basis] = GetParam();
  const auto [m, n] = degrees;
  const int nb = version == "C" ? n + 1 : n;
  torch::manual_seed(1234);
  auto opts = torch::TensorOptions().dtype(torch::kDouble);
  // Modest inputs and denominators so version N has no poles near the data.
  auto x64 = torch::randn({4, 6, 5, 7}, opts) * (basis == "power" ? 1.5 : 0.8);
  auto a64 = torch::randn({3, m + 1}, opts) * 0.5;
  auto b64 = torch::randn({3, nb}, opts) * (version == "N" ? 0.05 : 0.5);
  if (version == "C") b64.select(1, 0).fill_(1.0);

  auto x = x64.to(dtype).requires_grad_(true);
  auto a = a64.to(torch::kFloat).requires_grad_(true);
  auto b = b64.to(torch::kFloat).requires_grad_(true);
  if (dtype == torch::kDouble) {
    a = a64.clone().requires_grad_(true);
    b = b64.clone().requires_grad_(true);
  }
  auto y = torch_rational::rational(x, a, b, version, basis, /*channel_dim=*/1);
  ASSERT_EQ(y.scalar_type(), dtype);
  ASSERT_EQ(y.sizes(), x.sizes());

  // Reference per group: channel c uses group c / 2 (6 channels, 3 groups).
  auto xr = float64_leaf(x);
  auto ar = float64_leaf(a);
  auto br = float64_leaf(b);
  std::vector<torch::Tensor> parts;
  for (int c = 0; c < 6; ++c)
    parts.push_back(rational_reference(xr.select(1, c), ar[c / 2], br[c / 2], version, basis).unsqueeze(1));
  auto yr = torch::cat(parts, 1);

  const double tol = dtype == torch::kDouble ? 1e-10 : (dtype == torch::kFloat ? 2e-4 : 3e-2);
  const double scale = 1.0 + yr.abs().max().item<double>();
  EXPECT_LE((y.to(torch::kDouble) - yr).abs().max().item<double>(), tol * scale);

  // Upstream gradient rounded to x's dtype, so both sides see the same numbers.
  auto g = torch::randn_like(yr).to(dtype).to(torch::kDouble);
  y.backward(g.to(dtype));
  yr.backward(g);
  auto rel = [](const torch::Tensor& got, const torch::Tensor& want) {
    return (got.to(torch::kDouble) - want).abs().max().item<double>() / (1.0 + want.abs().max().item<double>());
  };
  const double gtol = dtype == torch::kDouble ? 1e-9 : (dtype == torch::kFloat ? 1e-3 : 6e-2);
  EXPECT_LE(rel(x.grad(), xr.grad()), gtol);
  EXPECT_LE(rel(a.grad(), ar.grad()), gtol);
  EXPECT_LE(rel(b.grad(), br.grad()), gtol);
}

std::string ParamName(const ::testing::TestParamInfo<Param>& info) {
  const auto& [dtype, degrees, version, basis] = info.param;
  std::string d = dtype == torch::kDouble ? "Float64" : dtype == torch::kFloat ? "Float32" : "BFloat16";
  std::string b;
  bool up = true;
  for (char ch : basis) {
    if (ch == '_') { up = true; continue; }
    b += up ? static_cast<char>(std::toupper(ch)) : ch;
    up = false;
  }
  return d + "Deg" + std::to_string(degrees.first) + std::to_string(degrees.second) + "Version" + version + b;
}

INSTANTIATE_TEST_SUITE_P(
    PowerAllDegrees, RationalOpTest,
    ::testing::Combine(::testing::Values(torch::kFloat, torch::kDouble, torch::kBFloat16),
                       ::testing::Values(std::make_pair(5, 4), std::make_pair(3, 2), std::make_pair(4, 4),
                                         std::make_pair(7, 6), std::make_pair(2, 3)),
                       ::testing::Values("A", "B", "C", "N"), ::testing::Values("power")),
    ParamName);

INSTANTIATE_TEST_SUITE_P(
    OrthogonalBases, RationalOpTest,
    ::testing::Combine(::testing::Values(torch::kFloat, torch::kDouble),
                       ::testing::Values(std::make_pair(5, 4), std::make_pair(3, 5)),
                       ::testing::Values("A", "B", "C", "N"),
                       ::testing::Values("chebyshev_t", "chebyshev_u", "hermite", "hermite_e", "laguerre",
                                         "legendre")),
    ParamName);

TEST(RationalOp, NoGradientWhenNotRequired) {
  auto x = torch::randn({100});
  auto a = torch::randn({6}, torch::requires_grad());
  auto b = torch::randn({4});
  auto y = torch_rational::rational(x, a, b);
  y.sum().backward();
  EXPECT_TRUE(a.grad().defined());
  EXPECT_FALSE(b.grad().defined());
  EXPECT_EQ(a.grad().sizes(), a.sizes());
}

TEST(RationalOp, BadArgumentsThrowNamingTheArgument) {
  auto x = torch::randn({2, 4, 3});
  auto a = torch::randn({6});
  auto b = torch::randn({4});
  auto msg = [](auto fn) {
    try {
      fn();
    } catch (const c10::Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_NE(msg([&] { torch_rational::rational(x, a, b, "Z"); }).find("version"), std::string::npos);
  EXPECT_NE(msg([&] { torch_rational::rational(x, a, b, "A", "fourier"); }).find("basis"), std::string::npos);
  EXPECT_NE(msg([&] { torch_rational::rational(x.to(torch::kInt), a, b); }).find("x has dtype Int"), std::string::npos);
  EXPECT_NE(msg([&] { torch_rational::rational(x, a.reshape({1, 1, 6}), b); }).find("numerator"), std::string::npos);
  EXPECT_NE(msg([&] { torch_rational::rational(x, a.repeat({3, 1}), b.repeat({3, 1})); }).find("num_groups"),
            std::string::npos);
  EXPECT_NE(msg([&] { torch_rational::rational(x, a, b, "A", "power", 1, 0.1); }).find("noise_seed"),
            std::string::npos);
  EXPECT_NE(msg([&] { torch_rational::rational(x, a, b, "A", "power", 1, -1.0); }).find("noise"), std::string::npos);
}

TEST(RationalOp, NoiseIsReproducibleFromTheSeed) {
  auto x = torch::randn({1000});
  auto a = torch::randn({6});
  auto b = torch::randn({4});
  torch::manual_seed(7);
  auto y1 = torch_rational::rational(x, a, b, "A", "power", 1, 0.1, torch_rational::rational_noise_seed());
  torch::manual_seed(7);
  auto y2 = torch_rational::rational(x, a, b, "A", "power", 1, 0.1, torch_rational::rational_noise_seed());
  auto y0 = torch_rational::rational(x, a, b);
  EXPECT_TRUE(torch::equal(y1, y2));
  EXPECT_FALSE(torch::equal(y1, y0));
  EXPECT_LE((y1 - y0).abs().max().item<double>(), 1.0 + y0.abs().max().item<double>());
}

// A C++ caller differentiates the gradient again (create_graph): y = x / (1 + |b| |x|) has
// y' = (1 + b|x|)^-2, y'' = -2 b sign(x) (1 + b|x|)^-3 and d y' / db = -2 |x| (1 + b|x|)^-3 (b > 0).
TEST(RationalOp, SecondDerivativesFromCpp) {
  auto opts = torch::TensorOptions().dtype(torch::kDouble);
  auto x = torch::tensor({-2.5, -0.3, 0.7, 1.9}, opts).requires_grad_(true);
  auto a = torch::tensor({0.0, 1.0}, opts);
  auto b = torch::tensor({0.8}, opts).requires_grad_(true);
  auto y = torch_rational::rational(x, a, b, "A", "power");
  auto gx = torch::autograd::grad({y.sum()}, {x}, {}, /*retain_graph=*/true, /*create_graph=*/true)[0];
  auto second = torch::autograd::grad({gx.sum()}, {x, b});
  auto xd = x.detach();
  auto q = 1.0 + 0.8 * xd.abs();
  EXPECT_TRUE(torch::allclose(gx.detach(), q.pow(-2), 1e-13, 0.0));
  EXPECT_TRUE(torch::allclose(second[0], -2.0 * 0.8 * xd.sign() * q.pow(-3), 1e-13, 0.0));
  EXPECT_NEAR(second[1].item<double>(), (-2.0 * xd.abs() * q.pow(-3)).sum().item<double>(), 1e-13);
}

}  // namespace
