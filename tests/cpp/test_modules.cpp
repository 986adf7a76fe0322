// C++ modules, init tables and the fitter against independent references (ATen's own activations).
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <sstream>

#include "ops/era_normalize.h"
#include "torch_rational.h"

namespace {

using torch_rational::nn::RationalOptions;

TEST(Modules, PAUStartsAsLeakyReLU) {
  torch_rational::nn::PAU act;
  auto x = torch::linspace(-3, 3, 2001);
  auto err = (act(x) - torch::leaky_relu(x, 0.01)).abs().max().item<double>();
  EXPECT_LE(err, 0.035);
  EXPECT_EQ(act->numerator.sizes(), (std::vector<int64_t>{1, 6}));
  EXPECT_EQ(act->denominator.sizes(), (std::vector<int64_t>{1, 4}));
}

TEST(Modules, GroupsAndBackward) {
  torch_rational::nn::Rational act(RationalOptions(3, 2).num_groups(4).init("tanh").version("B"));
  auto x = torch::randn({2, 8, 5, 5}, torch::requires_grad());
  auto y = act(x);
  y.square().sum().backward();
  EXPECT_EQ(act->numerator.grad().sizes(), (std::vector<int64_t>{4, 4}));
  EXPECT_EQ(act->denominator.grad().sizes(), (std::vector<int64_t>{4, 2}));
  EXPECT_LE((y - torch::tanh(x)).abs().max().item<double>(), 0.05);
}

TEST(Modules, RPAUNoiseOnlyInTraining) {
  torch_rational::nn::RPAU act;
  auto x = torch::randn({512});
  act->eval();
  auto y_eval = act(x);
  torch_rational::nn::PAU plain;
  EXPECT_TRUE(torch::allclose(y_eval, plain(x)));
  act->train();
  EXPECT_FALSE(torch::equal(act(x), y_eval));
}

TEST(Modules, HermiteUnitsAndPrettyPrint) {
  torch_rational::nn::HP1 hp1;
  torch_rational::nn::HP2 hp2(RationalOptions().init("gelu"));
  auto x = torch::linspace(-3, 3, 601);
  EXPECT_LE((hp2(x) - torch::gelu(x)).abs().max().item<double>(), 0.01);
  // |H_k| has kinks at the roots of H_k, so version A over hermite fits a kink less tightly.
  EXPECT_LE((hp1(x) - torch::leaky_relu(x, 0.01)).abs().max().item<double>(), 0.1);
  std::ostringstream ss;
  ss << *hp1;
  EXPECT_NE(ss.str().find("basis=hermite"), std::string::npos);
  EXPECT_NE(ss.str().find("degrees=(5, 4)"), std::string::npos);
}

TEST(Modules, CloneAndSerialize) {
  torch_rational::nn::PAU act(RationalOptions().init("swish").num_groups(3));
  auto copy = std::dynamic_pointer_cast<torch_rational::nn::PAUImpl>(act->clone());
  ASSERT_TRUE(copy);
  EXPECT_TRUE(torch::equal(copy->numerator, act->numerator));
  std::stringstream buf;
  torch::save(act, buf);
  torch_rational::nn::PAU loaded(RationalOptions().init("relu").num_groups(3));
  torch::load(loaded, buf);
  EXPECT_TRUE(torch::equal(loaded->numerator, act->numerator));
  EXPECT_TRUE(torch::equal(loaded->denominator, act->denominator));
}

TEST(Modules, BadOptionsThrow) {
  EXPECT_THROW(torch_rational::nn::PAU(RationalOptions(5, 0)), c10::Error);
  EXPECT_THROW(torch_rational::nn::PAU(RationalOptions().init("no_such_function")), c10::Error);
  EXPECT_THROW(torch_rational::nn::PAU(RationalOptions().num_groups(0)), c10::Error);
}

// Float64 safe rational from the formula P(x) / (1 + sum_k |b_k| |x|^k), one row of coefficients.
torch::Tensor SafeRationalReference(const torch::Tensor& x, const torch::Tensor& a, const torch::Tensor& b) {
  auto xd = x.to(torch::kDouble);
  auto p = torch::zeros_like(xd), q = torch::ones_like(xd);
  for (int64_t j = 0; j < a.numel(); ++j) p = p + a[j].item<double>() * xd.pow(j);
  for (int64_t k = 1; k <= b.numel(); ++k) q = q + std::abs(b[k - 1].item<double>()) * xd.abs().pow(k);
  return p / q;
}

TEST(Modules, RPAUWithExplicitOptionsKeepsNoise) {
  torch_rational::nn::RPAU act(RationalOptions(5, 4));
  EXPECT_EQ(act->options.noise().value_or(0.0), 0.1);
  auto x = torch::randn({512});
  act->train();
  auto noisy = act(x);
  act->eval();
  EXPECT_FALSE(torch::equal(noisy, act(x)));
  EXPECT_EQ(torch_rational::nn::PAU()->options.noise().value_or(0.0), 0.0);
}

TEST(Modules, TrainableFlags) {
  EXPECT_FALSE(torch_rational::nn::PAU(RationalOptions().trainable(false))->numerator.requires_grad());
  EXPECT_FALSE(torch_rational::nn::PAU(RationalOptions().trainable(false))->denominator.requires_grad());
  torch_rational::nn::PAU num_only(RationalOptions().train_denominator(false));
  EXPECT_TRUE(num_only->numerator.requires_grad());
  EXPECT_FALSE(num_only->denominator.requires_grad());
  torch_rational::nn::PAU den_only(RationalOptions().train_numerator(false));
  EXPECT_FALSE(den_only->numerator.requires_grad());
  EXPECT_TRUE(den_only->denominator.requires_grad());
}

TEST(Modules, InitFunctionFitsOnRangeAndResets) {
  auto target = [](const torch::Tensor& x) { return torch::where(x > 0, x, 0.5 * x); };
  torch_rational::nn::PAU act(RationalOptions().init_function(target).fit_range(std::make_pair(-2.0, 2.0)));
  auto x = torch::linspace(-2, 2, 401, torch::kDouble);
  auto ref = SafeRationalReference(x, act->numerator[0].detach(), act->denominator[0].detach());
  EXPECT_LE((ref - target(x)).abs().max().item<double>(), 0.05);
  auto start = act->numerator.detach().clone();
  {
    torch::NoGradGuard no_grad;
    act->numerator.add_(1.0);
  }
  act->reset_parameters();
  EXPECT_TRUE(torch::equal(act->numerator, start));
  EXPECT_THROW(torch_rational::nn::PAU(RationalOptions().fit_range(std::make_pair(1.0, -1.0))), c10::Error);
}

TEST(Modules, HardswishInitFollowsHardswishPastThree) {
  torch_rational::nn::PAU act(RationalOptions().init("hardswish"));
  auto x = torch::tensor({-5.0, -4.0, 4.0, 5.0}, torch::kDouble);
  auto ref = SafeRationalReference(x, act->numerator[0].detach(), act->denominator[0].detach());
  EXPECT_LE((ref - torch::hardswish(x)).abs().max().item<double>(), 0.1);
}

TEST(Modules, SharedNumeratorMatchesKatFormula) {
  const int64_t G = 4;
  torch_rational::nn::Rational act(
      RationalOptions(5, 4).init("gelu").num_groups(G).channel_dim(-1).shared_numerator(true));
  act->to(torch::kDouble);
  EXPECT_EQ(act->numerator.sizes(), (std::vector<int64_t>{6}));
  {
    torch::NoGradGuard no_grad;
    act->denominator.add_(0.05 * torch::randn({G, 4}, torch::kDouble));
  }
  auto x = torch::randn({2, 3, 8}, torch::kDouble);
  auto y = act(x);
  auto xg = x.reshape({2, 3, G, 2});
  for (int64_t g = 0; g < G; ++g) {
    auto ref = SafeRationalReference(xg.select(2, g), act->numerator.detach(), act->denominator[g].detach());
    EXPECT_TRUE(torch::allclose(y.reshape({2, 3, G, 2}).select(2, g), ref, 1e-12, 1e-12)) << "group " << g;
  }
  y.sum().backward();
  EXPECT_EQ(act->numerator.grad().sizes(), (std::vector<int64_t>{6}));
}

// The normalisation the ERA modules composed before, in float64: biased variance over `dims`.
torch::Tensor NormalizeReference(const torch::Tensor& x, std::vector<int64_t> dims) {
  auto xd = x.to(torch::kDouble);
  auto mean = xd.mean(dims, /*keepdim=*/true);
  auto var = (xd - mean).square().mean(dims, /*keepdim=*/true);
  return (xd - mean) / torch::sqrt(var + 1e-5);
}

TEST(Modules, EraNormalizeMatchesFormula) {
  auto x = torch::randn({2, 4, 5, 6}, torch::kDouble) * 3 + 2;
  EXPECT_TRUE(torch::allclose(torch_rational::era_normalize(x, "instance", 1), NormalizeReference(x, {2, 3}),
                              1e-12, 1e-12));
  EXPECT_TRUE(torch::allclose(torch_rational::era_normalize(x, "layer", 1), NormalizeReference(x, {1}), 1e-12,
                              1e-12));
  auto tokens = torch::randn({3, 7, 8}, torch::kDouble);
  EXPECT_TRUE(torch::allclose(torch_rational::era_normalize(tokens, "layer", -1), NormalizeReference(tokens, {2}),
                              1e-12, 1e-12));
  // The module normalises, then applies ERA.
  torch_rational::nn::ERA era(torch_rational::nn::ERAOptions(1).normalize("layer").channel_dim(-1));
  era->to(torch::kDouble);
  auto plain = torch_rational::era(NormalizeReference(tokens, {2}), era->linear, era->fractions, 1e-6, -1);
  EXPECT_TRUE(torch::allclose(era(tokens), plain, 1e-10, 1e-10));
  EXPECT_THROW(torch_rational::era_normalize(torch::randn({2, 4}), "instance", 1), c10::Error);
  EXPECT_FALSE(torch_rational::nn::ERA(torch_rational::nn::ERAOptions(1).trainable(false))->fractions.requires_grad());
  EXPECT_TRUE(torch_rational::nn::ERA()->fractions.requires_grad());
  EXPECT_THROW(torch_rational::era_normalize(torch::randn({2, 4, 3}), "layer", 5), c10::Error);
}

TEST(Fit, MeetsQualityBarForTanh) {
  auto r = torch_rational::fit_named("tanh", 5, 4, "A", "power");
  auto x = torch::linspace(-3, 3, 3001, torch::kDouble);
  auto y = torch_rational::rational(x, r.numerator, r.denominator);
  EXPECT_LE((y - torch::tanh(x)).abs().max().item<double>(), 1e-3);
}

}  // namespace
