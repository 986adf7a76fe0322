// The C++ op on CUDA (dispatcher + autograd) against the CPU op, and the CUDA backward's
// determinism. Skipped without a CUDA device. The CPU op is itself checked against a float64
// reference in test_rational_op.cpp; here it is the second implementation to agree with.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <string>
#include <tuple>

#include "ops/rational.h"

namespace {

struct CudaCase {
  std::string version;
  std::string basis;
  int m;
  int n;
  int64_t groups;
  torch::Dtype dtype;
};

std::string case_name(const testing::TestParamInfo<CudaCase>& info) {
  const auto& c = info.param;
  std::string dt = c.dtype == torch::kFloat ? "Float" : c.dtype == torch::kDouble ? "Double"
                   : c.dtype == torch::kHalf ? "Half" : "BFloat16";
  std::string basis;
  for (char ch : c.basis)
    if (ch != '_') basis += ch;
  return c.version + basis + "M" + std::to_string(c.m) + "N" + std::to_string(c.n) + "G" +
         std::to_string(c.groups) + dt;
}

class CudaOpTest : public testing::TestWithParam<CudaCase> {
 protected:
  void SetUp() override {
    if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  }
};

// Coefficients small enough that Q stays away from 0 for version N.
std::tuple<torch::Tensor, torch::Tensor> coefficients(const CudaCase& c) {
  const int nb = c.version == "C" ? c.n + 1 : c.n;
  torch::Tensor a = torch::randn({c.groups, c.m + 1}, torch::kDouble) * 0.5;
  torch::Tensor b = torch::randn({c.groups, nb}, torch::kDouble) * (c.version == "N" ? 0.05 : 0.5);
  if (c.version == "C") b.select(1, 0).add_(b.select(1, 0).sign() * 0.5);
  return {a, b};
}

TEST_P(CudaOpTest, ForwardBackwardMatchCpu) {
  const CudaCase c = GetParam();
  torch::manual_seed(1234);
  torch::Tensor x = torch::randn({4, 8, 33}, torch::kDouble).to(c.dtype);
  torch::Tensor g = torch::randn({4, 8, 33}, torch::kDouble).to(c.dtype);
  auto [a64, b64] = coefficients(c);
  // Half and bfloat16 activations with float32 coefficients (AMP); otherwise the same dtype.
  const auto coef_dtype = (c.dtype == torch::kHalf || c.dtype == torch::kBFloat16) ? torch::kFloat : c.dtype;
  torch::Tensor a = a64.to(coef_dtype), b = b64.to(coef_dtype);

  auto run = [&](const torch::Device& dev) {
    torch::Tensor xs = x.to(dev).requires_grad_(true);
    torch::Tensor as = a.to(dev).requires_grad_(true);
    torch::Tensor bs = b.to(dev).requires_grad_(true);
    torch::Tensor y = torch_rational::rational(xs, as, bs, c.version, c.basis, 1);
    y.backward(g.to(dev));
    return std::make_tuple(y.detach().cpu(), xs.grad().cpu(), as.grad().cpu(), bs.grad().cpu());
  };
  auto [y_cpu, gx_cpu, ga_cpu, gb_cpu] = run(torch::kCPU);
  auto [y_cuda, gx_cuda, ga_cuda, gb_cuda] = run(torch::kCUDA);
  ASSERT_EQ(y_cuda.scalar_type(), c.dtype);
  ASSERT_EQ(ga_cuda.scalar_type(), coef_dtype);
  const double rtol = c.dtype == torch::kDouble ? 1e-10 : c.dtype == torch::kFloat ? 1e-4 : 2e-2;
  // Low-precision outputs differ by at most a rounding step when CPU and CUDA round differently.
  EXPECT_TRUE(torch::allclose(y_cuda.to(torch::kDouble), y_cpu.to(torch::kDouble), rtol, rtol));
  EXPECT_TRUE(torch::allclose(gx_cuda.to(torch::kDouble), gx_cpu.to(torch::kDouble), rtol, rtol));
  // Coefficient gradients are sums over 1056 elements: compare relative to their magnitude.
  const double ga_scale = ga_cpu.abs().max().item<double>() + 1.0;
  const double gb_scale = gb_cpu.abs().max().item<double>() + 1.0;
  EXPECT_LE((ga_cuda.to(torch::kDouble) - ga_cpu.to(torch::kDouble)).abs().max().item<double>(), rtol * ga_scale);
  EXPECT_LE((gb_cuda.to(torch::kDouble) - gb_cpu.to(torch::kDouble)).abs().max().item<double>(), rtol * gb_scale);
}

std::vector<CudaCase> cases() {
  std::vector<CudaCase> out;
  for (const char* v : {"A", "B", "C", "N"})
    for (const char* basis : {"power", "chebyshev_t", "legendre"})
      for (auto mn : {std::make_pair(5, 4), std::make_pair(3, 2), std::make_pair(7, 6), std::make_pair(6, 3)})
        for (int64_t groups : {int64_t(1), int64_t(8)})
          out.push_back({v, basis, mn.first, mn.second, groups, torch::kFloat});
  for (auto dt : {torch::kDouble, torch::kHalf, torch::kBFloat16})
    for (const char* v : {"A", "C"}) out.push_back({v, "power", 5, 4, 4, dt});
  return out;
}

INSTANTIATE_TEST_SUITE_P(CudaMatrix, CudaOpTest, testing::ValuesIn(cases()), case_name);

TEST(CudaOp, BackwardIsBitwiseDeterministic) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  torch::manual_seed(7);
  const auto opts = torch::TensorOptions().dtype(torch::kFloat).device(torch::kCUDA);
  torch::Tensor x = torch::randn({32, 64, 28, 28}, opts);
  torch::Tensor g = torch::randn({32, 64, 28, 28}, opts);
  torch::Tensor a = torch::randn({64, 6}, opts) * 0.3;
  torch::Tensor b = torch::randn({64, 4}, opts) * 0.3;
  auto first = torch_rational::rational_backward(g, x, a, b, "A", "power", 1, 0.0, std::nullopt, {true, true, true});
  for (int i = 0; i < 3; ++i) {
    auto again = torch_rational::rational_backward(g, x, a, b, "A", "power", 1, 0.0, std::nullopt, {true, true, true});
    EXPECT_TRUE(torch::equal(std::get<0>(first), std::get<0>(again)));
    EXPECT_TRUE(torch::equal(std::get<1>(first), std::get<1>(again)));
    EXPECT_TRUE(torch::equal(std::get<2>(first), std::get<2>(again)));
  }
}

TEST(CudaOp, NoiseMatchesCpuForSameSeed) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  torch::manual_seed(11);
  torch::Tensor x = torch::randn({3, 4, 37});
  torch::Tensor a = torch::randn({2, 6}) * 0.5;
  torch::Tensor b = torch::randn({2, 4}) * 0.5;
  torch::Tensor seed = torch::tensor({int64_t(424242)}, torch::kLong);
  torch::Tensor y_cpu = torch_rational::rational(x, a, b, "A", "power", 1, 0.1, seed);
  torch::Tensor y_cuda =
      torch_rational::rational(x.cuda(), a.cuda(), b.cuda(), "A", "power", 1, 0.1, seed).cpu();
  EXPECT_TRUE(torch::allclose(y_cuda, y_cpu, 1e-5, 1e-6));
}

TEST(CudaOp, EmptyInput) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  const auto opts = torch::TensorOptions().dtype(torch::kFloat).device(torch::kCUDA);
  torch::Tensor x = torch::empty({0, 4, 3}, opts);
  torch::Tensor a = torch::randn({2, 6}, opts);
  torch::Tensor b = torch::randn({2, 4}, opts);
  EXPECT_EQ(torch_rational::rational(x, a, b).numel(), 0);
  auto grads = torch_rational::rational_backward(x, x, a, b, "A", "power", 1, 0.0, std::nullopt, {true, true, true});
  EXPECT_EQ(std::get<1>(grads).count_nonzero().item<int64_t>(), 0);
  EXPECT_EQ(std::get<2>(grads).sizes(), b.sizes());
}

TEST(CudaOp, MismatchedDeviceNamesTheArgument) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  torch::Tensor x = torch::randn({2, 4, 3}, torch::kCUDA);
  try {
    torch_rational::rational(x, torch::randn({6}, torch::kCUDA), torch::randn({4}), "A", "power", 1);
    FAIL() << "expected an error";
  } catch (const c10::Error& e) {
    EXPECT_NE(std::string(e.what()).find("denominator"), std::string::npos) << e.what();
  }
}

}  // namespace
