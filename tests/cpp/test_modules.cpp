// C++ modules, init tables and the fitter against independent references (ATen's own activations).
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <sstream>

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

TEST(Fit, MeetsQualityBarForTanh) {
  auto r = torch_rational::fit_named("tanh", 5, 4, "A", "power");
  auto x = torch::linspace(-3, 3, 3001, torch::kDouble);
  auto y = torch_rational::rational(x, r.numerator, r.denominator);
  EXPECT_LE((y - torch::tanh(x)).abs().max().item<double>(), 1e-3);
}

}  // namespace
