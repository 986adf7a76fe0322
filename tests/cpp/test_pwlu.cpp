// The PWLU op (through the dispatcher, autograd included) against a float64 reference written from
// the formula with ATen ops and differentiated by ATen's autograd; the PWLU module's realignment.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <sstream>
#include <tuple>

#include "modules/pwlu.h"
#include "ops/pwlu.h"
#include "references.h"

namespace {

using tr_test::group_of;

struct Case {
  torch::Tensor x, h, b, s;
};

Case make_case(int64_t groups, int64_t n, uint64_t seed) {
  torch::manual_seed(seed);
  Case c;
  auto left = torch::rand({groups}, torch::kDouble) * 2 - 3;
  auto right = left + 1 + 4 * torch::rand({groups}, torch::kDouble);
  c.b = torch::stack({left, right}, 1);
  c.h = torch::randn({groups, n + 1}, torch::kDouble);
  c.s = torch::randn({groups, 2}, torch::kDouble);
  c.x = torch::randn({4, 2 * groups, 9}, torch::kDouble) * 3;
  // Away from breakpoints, where the derivatives jump.
  const auto gi = group_of(c.x, groups);
  auto u = (c.x - left.index({gi})) / ((right - left).index({gi}) / static_cast<double>(n));
  auto near = (u - u.round()).abs() < 1e-3;
  c.x = torch::where(near, c.x + 0.0123, c.x);
  return c;
}

class PwluOpTest : public ::testing::TestWithParam<std::tuple<torch::ScalarType, int64_t, int64_t>> {};

TEST_P(PwluOpTest, MatchesDoubleReference) {
  const auto [dtype, groups, n] = GetParam();
  Case c = make_case(groups, n, 1000 + groups * 37 + n);
  const auto x = c.x.to(dtype).requires_grad_();
  const auto h = c.h.to(torch::kFloat).requires_grad_();
  const auto b = c.b.to(torch::kFloat).requires_grad_();
  const auto s = c.s.to(torch::kFloat).requires_grad_();
  const auto y = torch_rational::pwlu(x, h, b, s, 1);
  ASSERT_EQ(y.scalar_type(), dtype);
  const auto g = torch::randn(x.sizes(), torch::kDouble);
  y.backward(g.to(dtype));

  // The reference sees exactly the rounded inputs the op saw.
  auto xr = x.detach().to(torch::kDouble).requires_grad_();
  auto hr = h.detach().to(torch::kDouble).requires_grad_();
  auto br = b.detach().to(torch::kDouble).requires_grad_();
  auto sr = s.detach().to(torch::kDouble).requires_grad_();
  const auto yr = tr_test::pwlu_reference(xr, hr, br, sr);
  yr.backward(g.to(dtype).to(torch::kDouble));
  const double out_tol = dtype == torch::kBFloat16 ? 1e-2 : (dtype == torch::kHalf ? 2e-3 : 1e-5);
  // Errors scale with the magnitudes involved: |y| ~ 10, parameter gradients sum ~100 elements.
  EXPECT_TRUE(torch::allclose(y.detach().to(torch::kDouble), yr.detach(), out_tol, 1e-4));
  EXPECT_TRUE(torch::allclose(x.grad().to(torch::kDouble), xr.grad(), out_tol, 1e-3));
  EXPECT_TRUE(torch::allclose(h.grad().to(torch::kDouble), hr.grad(), 1e-4, 1e-3));
  EXPECT_TRUE(torch::allclose(b.grad().to(torch::kDouble), br.grad(), 1e-4, 1e-3));
  EXPECT_TRUE(torch::allclose(s.grad().to(torch::kDouble), sr.grad(), 1e-4, 1e-3));
}

INSTANTIATE_TEST_SUITE_P(DtypesGroupsPieces, PwluOpTest,
                         ::testing::Combine(::testing::Values(torch::kFloat, torch::kDouble, torch::kBFloat16,
                                                              torch::kHalf),
                                            ::testing::Values(1, 3), ::testing::Values(1, 4, 16)));

// A long flat run: the CPU backward's per-lane bins (taken for runs of a few thousand elements
// and more) and the multi-task sum, against the float64 reference.
TEST(PwluOp, LongRunMatchesDoubleReference) {
  for (int64_t n : {4, 16, 40}) {
    torch::manual_seed(77 + n);
    const auto x = (torch::randn({60001}, torch::kDouble) * 3).to(torch::kFloat).requires_grad_();
    const auto h = torch::randn({n + 1}, torch::kFloat).requires_grad_();
    const auto b = torch::tensor({-2.5f, 1.75f}).requires_grad_();
    const auto s = torch::tensor({0.3f, -0.7f}).requires_grad_();
    const auto g = torch::randn({60001}, torch::kFloat);
    torch_rational::pwlu(x, h, b, s, 0).backward(g);
    auto xr = x.detach().to(torch::kDouble).requires_grad_();
    auto hr = h.detach().to(torch::kDouble).unsqueeze(0).requires_grad_();
    auto br = b.detach().to(torch::kDouble).unsqueeze(0).requires_grad_();
    auto sr = s.detach().to(torch::kDouble).unsqueeze(0).requires_grad_();
    // The reference takes groups along dim 1: one group, one channel.
    const auto yr = tr_test::pwlu_reference(xr.view({1, 1, -1}), hr, br, sr);
    yr.backward(g.to(torch::kDouble).view({1, 1, -1}));
    EXPECT_TRUE(torch::allclose(x.grad().to(torch::kDouble), xr.grad(), 1e-5, 1e-4)) << "n=" << n;
    EXPECT_TRUE(torch::allclose(h.grad().to(torch::kDouble), hr.grad().squeeze(0), 1e-4, 1e-2)) << "n=" << n;
    EXPECT_TRUE(torch::allclose(b.grad().to(torch::kDouble), br.grad().squeeze(0), 1e-4, 1e-2)) << "n=" << n;
    EXPECT_TRUE(torch::allclose(s.grad().to(torch::kDouble), sr.grad().squeeze(0), 1e-4, 1e-2)) << "n=" << n;
  }
}

TEST(PwluOp, BadBoundsRaiseNamingTheArgument) {
  auto x = torch::randn({5});
  auto h = torch::zeros({5});
  auto s = torch::ones({2});
  try {
    torch_rational::pwlu(x, h, torch::tensor({1.0f, 1.0f}), s);
    FAIL() << "expected an error";
  } catch (const c10::ValueError& e) {
    EXPECT_NE(std::string(e.what()).find("bounds"), std::string::npos);
  }
  EXPECT_THROW(torch_rational::pwlu(x, torch::zeros({1}), torch::tensor({-1.0f, 1.0f}), s), c10::ValueError);
}

TEST(PwluOp, CudaMatchesCpu) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "needs CUDA";
  Case c = make_case(3, 16, 7);
  const auto y = torch_rational::pwlu(c.x, c.h, c.b, c.s, 1);
  const auto yc = torch_rational::pwlu(c.x.cuda(), c.h.cuda(), c.b.cuda(), c.s.cuda(), 1).cpu();
  EXPECT_TRUE(torch::allclose(y, yc, 1e-12, 1e-12));
  const auto g = torch::randn_like(c.x);
  const auto cpu = torch_rational::pwlu_backward(g, c.x, c.h, c.b, c.s, 1, {true, true, true, true});
  const auto gpu = torch_rational::pwlu_backward(g.cuda(), c.x.cuda(), c.h.cuda(), c.b.cuda(), c.s.cuda(), 1,
                                                 {true, true, true, true});
  EXPECT_TRUE(torch::allclose(std::get<0>(cpu), std::get<0>(gpu).cpu(), 1e-10, 1e-10));
  EXPECT_TRUE(torch::allclose(std::get<1>(cpu), std::get<1>(gpu).cpu(), 1e-10, 1e-10));
  EXPECT_TRUE(torch::allclose(std::get<2>(cpu), std::get<2>(gpu).cpu(), 1e-10, 1e-10));
  EXPECT_TRUE(torch::allclose(std::get<3>(cpu), std::get<3>(gpu).cpu(), 1e-10, 1e-10));
}

TEST(PwluModule, StartsAsInitAndRealignsFromStatistics) {
  namespace trn = torch_rational::nn;
  trn::PWLU act(trn::PWLUOptions(16).init("tanh").num_groups(2).realign_steps(3));
  ASSERT_EQ(act->heights.sizes(), torch::IntArrayRef({2, 17}));
  std::ostringstream os;
  act->pretty_print(os);
  EXPECT_NE(os.str().find("num_pieces=16"), std::string::npos);
  // Before alignment in eval mode: tanh sampled on [-3, 3].
  act->eval();
  auto grid = torch::linspace(-3, 3, 17).reshape({17, 1, 1}).expand({17, 2, 1}).contiguous();
  EXPECT_TRUE(torch::allclose(act(grid), torch::tanh(grid), 1e-5, 1e-5));

  act->train();
  torch::manual_seed(3);
  std::vector<torch::Tensor> batches;
  for (int k = 0; k < 3; ++k) batches.push_back(torch::randn({64, 2, 8}) * 2 + 1);
  double mean = 0, stdv = 0;
  for (int k = 0; k < 3; ++k) {
    auto y = act(batches[k]);
    EXPECT_TRUE(torch::allclose(y, torch::tanh(batches[k])));  // collecting: the init function
    auto f = batches[k].to(torch::kDouble).narrow(1, 0, 1);    // group 0 = channel 0
    const double m = f.mean().item<double>();
    const double s = (f - m).square().mean().sqrt().item<double>();
    mean = k == 0 ? m : 0.9 * mean + 0.1 * m;
    stdv = k == 0 ? s : 0.9 * stdv + 0.1 * s;
  }
  ASSERT_TRUE(act->aligned.item<bool>());
  EXPECT_NEAR(act->bounds[0][0].item<double>(), mean - 3 * stdv, 1e-4);
  EXPECT_NEAR(act->bounds[0][1].item<double>(), mean + 3 * stdv, 1e-4);
  // Now the PWLU: tanh at the breakpoints, trainable.
  const double left = mean - 3 * stdv, right = mean + 3 * stdv;
  auto pts = torch::linspace(left, right, 17).reshape({17, 1, 1}).expand({17, 2, 1}).contiguous();
  auto y = act(pts);
  EXPECT_TRUE(torch::allclose(y.narrow(1, 0, 1), torch::tanh(pts.narrow(1, 0, 1)), 1e-4, 1e-4));
  y.sum().backward();
  EXPECT_TRUE(act->heights.grad().defined());
  EXPECT_GT(act->heights.grad().abs().sum().item<double>(), 0.0);
}

TEST(PwluModule, CloneKeepsStateAndLoadResumesRealignment) {
  namespace trn = torch_rational::nn;
  trn::PWLU a(trn::PWLUOptions(8).init("relu").realign_steps(2));
  a(torch::randn({16, 3}));
  auto b = std::dynamic_pointer_cast<trn::PWLUImpl>(a->clone());
  EXPECT_EQ(b->num_realign_calls.item<int64_t>(), 1);
  auto x = torch::randn({16, 3});
  a(x);
  b->forward(x);
  EXPECT_TRUE(a->aligned.item<bool>());
  EXPECT_TRUE(b->aligned.item<bool>());
  EXPECT_TRUE(torch::equal(a->bounds, b->bounds));
  // Resetting brings back the statistics phase.
  b->reset_parameters();
  EXPECT_FALSE(b->aligned.item<bool>());
  auto y = b->forward(x);
  EXPECT_TRUE(torch::equal(y, torch::relu(x)));
}

TEST(PwluModule, SaveLoadMidRealignment) {
  namespace trn = torch_rational::nn;
  trn::PWLU a(trn::PWLUOptions(8).init("gelu").realign_steps(3));
  torch::manual_seed(5);
  const auto x0 = torch::randn({32, 4}), x1 = torch::randn({32, 4}) + 1, x2 = torch::randn({32, 4}) * 2;
  a(x0);
  std::stringstream buf;
  torch::save(a, buf);
  trn::PWLU b(trn::PWLUOptions(8).init("gelu").realign_steps(3));
  b(x2);
  b(x2);  // two steps of a different history, cached state included, overwritten by the load
  torch::load(b, buf);
  EXPECT_EQ(b->num_realign_calls.item<int64_t>(), 1);
  for (const auto& x : {x1, x2}) {
    a(x);
    b(x);
  }
  EXPECT_TRUE(b->aligned.item<bool>());
  EXPECT_TRUE(torch::equal(a->bounds, b->bounds));
  EXPECT_TRUE(torch::equal(a->heights, b->heights));
}

// hardswish and its derivative off the kinks at -3 and 3, and sin(x) + x/2 (no name), written out.
torch::Tensor hardswish_formula(const torch::Tensor& x) { return x * torch::clamp(x + 3.0, 0.0, 6.0) / 6.0; }
torch::Tensor hardswish_derivative(const torch::Tensor& x) {
  return torch::where(x < -3, torch::zeros_like(x), torch::where(x > 3, torch::ones_like(x), (2.0 * x + 3.0) / 6.0));
}
torch::Tensor sin_formula(const torch::Tensor& x) { return torch::sin(x) + 0.5 * x; }

TEST(PwluModule, InitFunctionSetsParametersAndIsKept) {
  namespace trn = torch_rational::nn;
  auto hardswish = [](const torch::Tensor& x) { return torch::hardswish(x); };
  // bound 2.5: the bounds off hardswish's kinks, where the derivative is one-sided.
  trn::PWLU act(trn::PWLUOptions(8).init_function(hardswish).bound(2.5).realign_steps(2));
  auto points = torch::linspace(-2.5, 2.5, 9, torch::kDouble);
  auto ends = torch::tensor({-2.5, 2.5}, torch::kDouble);
  EXPECT_LE((act->heights[0].to(torch::kDouble) - hardswish_formula(points)).abs().max().item<double>(), 1e-6);
  EXPECT_LE((act->slopes[0].to(torch::kDouble) - hardswish_derivative(ends)).abs().max().item<double>(), 1e-6);
  std::ostringstream os;
  act->pretty_print(os);
  EXPECT_NE(os.str().find("init=<function>"), std::string::npos);

  // The statistics phase: the function is the forward; then the realignment evaluates it.
  torch::manual_seed(7);
  const auto x0 = torch::randn({32, 3}) * 0.5, x1 = torch::randn({32, 3}) * 0.5 + 0.2;
  auto copy = std::dynamic_pointer_cast<trn::PWLUImpl>(act->clone());
  for (const auto& m : {act.ptr(), copy}) {
    for (const auto& x : {x0, x1}) EXPECT_TRUE(torch::allclose(m->forward(x), hardswish_formula(x)));
    ASSERT_TRUE(m->aligned.item<bool>());
    const double left = m->bounds[0][0].item<double>(), right = m->bounds[0][1].item<double>();
    auto pts = torch::linspace(left, right, 9, torch::kDouble);
    EXPECT_LE((m->heights[0].to(torch::kDouble) - hardswish_formula(pts)).abs().max().item<double>(), 1e-6);
  }

  // A function with no name, with groups, in double.
  trn::PWLU other(trn::PWLUOptions(16).init_function(sin_formula).num_groups(2));
  auto grid = torch::linspace(-3, 3, 17, torch::kDouble);
  EXPECT_LE((other->heights.to(torch::kDouble) - sin_formula(grid)).abs().max().item<double>(), 1e-6);
  auto cos_ends = torch::cos(torch::tensor({-3.0, 3.0}, torch::kDouble)) + 0.5;
  EXPECT_LE((other->slopes.to(torch::kDouble) - cos_ends).abs().max().item<double>(), 1e-6);

  // A bad function: an error naming init.
  auto wrong_shape = [](const torch::Tensor& x) { return x.flatten().narrow(0, 0, 3); };
  try {
    trn::PWLU bad(trn::PWLUOptions(4).init_function(wrong_shape));
    ADD_FAILURE() << "no error for a function of the wrong shape";
  } catch (const c10::Error& e) {
    EXPECT_NE(std::string(e.what()).find("init must return a tensor of its input's shape"), std::string::npos);
  }
}

TEST(PwluModule, BadOptionsRaise) {
  namespace trn = torch_rational::nn;
  EXPECT_THROW(trn::PWLU(trn::PWLUOptions(0)), c10::ValueError);
  EXPECT_THROW(trn::PWLU(trn::PWLUOptions(4).init("nope")), c10::ValueError);
  EXPECT_THROW(trn::PWLU(trn::PWLUOptions(4).bound(-1)), c10::ValueError);
}

}  // namespace
