// The ERA op and module through the C++ API (dispatcher, C++ autograd) against a float64
// reference composed from ATen ops straight from the formula and differentiated by ATen autograd.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <sstream>
#include <string>
#include <tuple>

#include "fit/era_fit.h"
#include "references.h"
#include "torch_rational.h"

namespace {

// Random parameters: |f| in [0.3, 1.5], centres in [-2, 2].
std::pair<torch::Tensor, torch::Tensor> random_params(int64_t G, int64_t n) {
  auto opts = torch::TensorOptions().dtype(torch::kDouble);
  auto lin = torch::randn({G, 2}, opts);
  auto fr = torch::randn({G, n, 4}, opts);
  fr.select(2, 2).copy_(torch::rand({G, n}, opts) * 4 - 2);
  fr.select(2, 3).copy_(torch::rand({G, n}, opts) * 1.2 + 0.3);
  return {lin, fr};
}

double rel_err(const torch::Tensor& got, const torch::Tensor& want) {
  return (got.to(torch::kDouble) - want).abs().max().item<double>() / (1.0 + want.abs().max().item<double>());
}

using Param = std::tuple<torch::Dtype, int64_t, int64_t>;  // dtype, n, groups

class EraOpTest : public ::testing::TestWithParam<Param> {};

TEST_P(EraOpTest, ForwardAndBackwardMatchReference) {
  const auto [dtype, n, G] = GetParam();
  torch::manual_seed(42 + n * 7 + G);
  auto x64 = torch::randn({3, 4, 5, 7}, torch::kDouble) * 2;
  auto [lin64, fr64] = random_params(G, n);
  const auto pdtype = dtype == torch::kDouble ? torch::kDouble : torch::kFloat;
  auto x = x64.to(dtype).requires_grad_(true);
  auto lin = lin64.to(pdtype).requires_grad_(true);
  auto fr = fr64.to(pdtype).requires_grad_(true);
  auto y = torch_rational::era(x, lin, fr, 1e-6, /*channel_dim=*/1);
  ASSERT_EQ(y.scalar_type(), dtype);
  ASSERT_EQ(y.sizes(), x.sizes());

  auto xr = tr_test::float64_leaf(x);
  auto lr = tr_test::float64_leaf(lin);
  auto frr = tr_test::float64_leaf(fr);
  std::vector<torch::Tensor> parts;
  const int64_t cpg = 4 / G;
  for (int64_t c = 0; c < 4; ++c)
    parts.push_back(tr_test::era_reference(xr.select(1, c), lr[c / cpg], frr[c / cpg], 1e-6).unsqueeze(1));
  auto yr = torch::cat(parts, 1);
  const double tol = dtype == torch::kDouble ? 1e-12 : (dtype == torch::kFloat ? 1e-5 : 2e-2);
  EXPECT_LE(rel_err(y, yr), tol);

  auto g = torch::randn_like(yr).to(dtype).to(torch::kDouble);
  y.backward(g.to(dtype));
  yr.backward(g);
  EXPECT_LE(rel_err(x.grad(), xr.grad()), tol * 4);
  EXPECT_LE(rel_err(lin.grad(), lr.grad()), tol * 4);
  EXPECT_LE(rel_err(fr.grad(), frr.grad()), tol * 4);
  EXPECT_EQ(lin.grad().scalar_type(), pdtype);
}

std::string ParamName(const ::testing::TestParamInfo<Param>& info) {
  const auto& [dtype, n, G] = info.param;
  std::string d = dtype == torch::kDouble ? "Float64" : dtype == torch::kFloat ? "Float32" : "BFloat16";
  return d + "Fractions" + std::to_string(n) + "Groups" + std::to_string(G);
}

INSTANTIATE_TEST_SUITE_P(AllPaths, EraOpTest,
                         ::testing::Combine(::testing::Values(torch::kFloat, torch::kDouble, torch::kBFloat16),
                                            ::testing::Values<int64_t>(1, 2, 3, 5), ::testing::Values<int64_t>(1, 2, 4)),
                         ParamName);

TEST(EraOp, BackwardOutputMaskAndErrors) {
  auto x = torch::randn({2, 4, 3}, torch::kDouble);
  auto [lin, fr] = random_params(2, 1);
  auto [gx, gl, gf] = torch_rational::era_backward(torch::ones_like(x), x, lin, fr, 1e-6, 1, {false, true, false});
  EXPECT_EQ(gx.numel(), 0);
  EXPECT_EQ(gl.sizes(), lin.sizes());
  EXPECT_EQ(gf.numel(), 0);
  try {
    torch_rational::era(x, lin, fr, -1.0, 1);
    FAIL() << "negative eps accepted";
  } catch (const c10::Error& e) {
    EXPECT_NE(std::string(e.what()).find("eps must be finite and >= 0"), std::string::npos);
  }
  EXPECT_THROW(torch_rational::era(torch::randn({2, 3, 3}), lin.to(torch::kFloat), fr.to(torch::kFloat), 1e-6, 1),
               c10::Error);
}

TEST(EraModule, ForwardBackwardAndOptions) {
  torch_rational::nn::ERA act(torch_rational::nn::ERAOptions(1).init("swish").num_groups(4));
  ASSERT_EQ(act->linear.sizes(), (std::vector<int64_t>{4, 2}));
  ASSERT_EQ(act->fractions.sizes(), (std::vector<int64_t>{4, 1, 4}));
  auto params = act->named_parameters();
  EXPECT_TRUE(params.contains("linear"));
  EXPECT_TRUE(params.contains("fractions"));
  // The init approximates swish on [-3, 3] (shipped max error 3.2e-3).
  auto x = torch::linspace(-3, 3, 600).reshape({1, 4, -1}).set_requires_grad(true);
  auto y = act(x);
  EXPECT_LE((y - torch::silu(x)).abs().max().item<double>(), 4e-3);
  y.sum().backward();
  EXPECT_TRUE(act->fractions.grad().defined());
  EXPECT_TRUE(torch::isfinite(x.grad()).all().item<bool>());
  std::ostringstream os;
  act->pretty_print(os);
  EXPECT_NE(os.str().find("num_fractions=1"), std::string::npos);

  // normalize="layer" over channel_dim = -1 equals the manual normalisation.
  torch_rational::nn::ERA ln(torch_rational::nn::ERAOptions(2).init("gelu").channel_dim(-1).normalize("layer"));
  auto t = torch::randn({3, 5, 8}) * 3 + 1;
  auto mean = t.mean({-1}, true);
  auto var = (t - mean).pow(2).mean({-1}, true);
  auto tn = (t - mean) / torch::sqrt(var + 1e-5);
  auto want = torch_rational::era(tn, ln->linear, ln->fractions, 1e-6, -1);
  EXPECT_LE((ln(t) - want).abs().max().item<double>(), 1e-5);

  EXPECT_THROW(torch_rational::nn::ERA(torch_rational::nn::ERAOptions(1).normalize("batch")), c10::Error);
  EXPECT_THROW(torch_rational::nn::ERA(torch_rational::nn::ERAOptions(0)), c10::Error);

  // reset_parameters restores the init.
  auto before = act->fractions.detach().clone();
  {
    torch::NoGradGuard no_grad;
    act->fractions.add_(1.0);
  }
  act->reset_parameters();
  EXPECT_TRUE(torch::equal(act->fractions, before));
}

// x sigmoid(x) and sin(x) + x/2 (a function with no name), written out in double.
torch::Tensor silu_formula(const torch::Tensor& x) { return x / (1.0 + torch::exp(-x)); }
torch::Tensor sin_formula(const torch::Tensor& x) { return torch::sin(x) + 0.5 * x; }

TEST(EraModule, InitFunctionIsFittedAndRestoredByReset) {
  namespace trn = torch_rational::nn;
  auto silu = [](const torch::Tensor& x) { return torch::silu(x); };
  trn::ERA act(trn::ERAOptions(1).init_function(silu));
  auto x = torch::linspace(-3, 3, 601, torch::kDouble);
  auto ref = tr_test::era_reference(x, act->linear[0].detach().to(torch::kDouble),
                                    act->fractions[0].detach().to(torch::kDouble), 1e-6);
  EXPECT_LE((ref - silu_formula(x)).abs().max().item<double>(), 4e-3);  // the n = 1 fit: 3.2e-3
  EXPECT_GT((ref - x).abs().max().item<double>(), 0.1);                  // not near the identity
  std::ostringstream os;
  act->pretty_print(os);
  EXPECT_NE(os.str().find("init=<function>"), std::string::npos);

  // A function with no name, two fractions, groups; reset and clone restore the fit.
  trn::ERA other(trn::ERAOptions(2).init_function(sin_formula).num_groups(3));
  for (int64_t g = 0; g < 3; ++g) {
    auto y = tr_test::era_reference(x, other->linear[g].detach().to(torch::kDouble),
                                    other->fractions[g].detach().to(torch::kDouble), 1e-6);
    EXPECT_LE((y - sin_formula(x)).abs().max().item<double>(), 2e-3);  // the n = 2 fit: 9.8e-4
  }
  const auto start = other->fractions.detach().clone();
  {
    torch::NoGradGuard no_grad;
    other->fractions.add_(1.0);
    other->linear.mul_(2.0);
  }
  auto copy = std::dynamic_pointer_cast<trn::ERAImpl>(other->clone());
  EXPECT_TRUE(torch::equal(copy->fractions, other->fractions));
  other->reset_parameters();
  EXPECT_TRUE(torch::equal(other->fractions, start));
  std::stringstream buf;
  torch::save(other, buf);
  trn::ERA loaded(trn::ERAOptions(2).init("relu").num_groups(3));
  torch::load(loaded, buf);
  EXPECT_TRUE(torch::equal(loaded->fractions, start));

  // A bad function: an error naming init.
  auto wrong_shape = [](const torch::Tensor& x) { return x.narrow(0, 0, 3); };
  try {
    trn::ERA bad(trn::ERAOptions(1).init_function(wrong_shape));
    ADD_FAILURE() << "no error for a function of the wrong shape";
  } catch (const c10::Error& e) {
    EXPECT_NE(std::string(e.what()).find("init must return a tensor of its input's shape"), std::string::npos);
  }
}

TEST(EraFit, NamedFitIsAccurateAndDeterministic) {
  auto r = torch_rational::fit_era_named("tanh", 1);
  EXPECT_LE(r.max_error, 2e-3);
  auto x = torch::linspace(-3, 3, 4001, torch::kDouble);
  EXPECT_NEAR((tr_test::era_reference(x, r.linear, r.fractions, 1e-6) - torch::tanh(x)).abs().max().item<double>(), r.max_error,
              1e-12);
  auto again = torch_rational::fit_era_named("tanh", 1);
  EXPECT_TRUE(torch::equal(r.fractions, again.fractions));
  EXPECT_TRUE(torch_rational::has_era_init_table_entry("relu", 2));
  auto [lin, fr] = torch_rational::era_init_parameters("relu", 2);
  EXPECT_EQ(fr.sizes(), (std::vector<int64_t>{2, 4}));
}

TEST(EraCuda, MatchesCpu) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  auto x = torch::randn({4, 8, 33, 17}).requires_grad_(true);
  auto [lin64, fr64] = random_params(8, 2);
  auto lin = lin64.to(torch::kFloat).requires_grad_(true);
  auto fr = fr64.to(torch::kFloat).requires_grad_(true);
  auto y = torch_rational::era(x, lin, fr, 1e-6, 1);
  y.sum().backward();
  auto xc = x.detach().cuda().requires_grad_(true);
  auto lc = lin.detach().cuda().requires_grad_(true);
  auto fc = fr.detach().cuda().requires_grad_(true);
  auto yc = torch_rational::era(xc, lc, fc, 1e-6, 1);
  yc.sum().backward();
  EXPECT_LE(rel_err(yc.cpu(), y.detach().to(torch::kDouble)), 1e-5);
  EXPECT_LE(rel_err(xc.grad().cpu(), x.grad().to(torch::kDouble)), 1e-5);
  EXPECT_LE(rel_err(lc.grad().cpu(), lin.grad().to(torch::kDouble)), 1e-4);
  EXPECT_LE(rel_err(fc.grad().cpu(), fr.grad().to(torch::kDouble)), 1e-4);
}

}  // namespace

namespace {

// era_normalize where the normalised dims sit in the middle of x's memory order (layer norm over
// the channels of NCHW, instance norm of channels_last: the fused CPU kernels), against the
// formula in float64: values, strides, and the input gradient against autograd through the formula.
torch::Tensor normalized_f64(const torch::Tensor& x, std::vector<int64_t> dims) {
  auto xd = x.to(torch::kDouble);
  auto mean = xd.mean(dims, true);
  return (xd - mean) / torch::sqrt((xd - mean).pow(2).mean(dims, true) + 1e-5);
}

TEST(EraNormalize, FusedLayoutsMatchFormula) {
  torch::manual_seed(23);
  struct Case {
    std::string kind;
    bool channels_last;
    std::vector<int64_t> dims;
  };
  for (const auto& c : {Case{"layer", false, {1}}, Case{"instance", true, {2, 3}}}) {
    for (auto dtype : {torch::kFloat64, torch::kFloat32}) {
      auto x = (torch::randn({3, 16, 5, 9}, torch::kDouble) * 2 + 1).to(dtype);
      if (c.channels_last) x = x.contiguous(torch::MemoryFormat::ChannelsLast);
      x.set_requires_grad(true);
      auto y = torch_rational::era_normalize(x, c.kind, 1);
      EXPECT_EQ(y.strides(), x.strides()) << c.kind;
      const double tol = dtype == torch::kFloat64 ? 1e-12 : 2e-5;
      auto want = normalized_f64(x.detach(), c.dims);
      EXPECT_LE((y.to(torch::kDouble) - want).abs().max().item<double>(), tol) << c.kind;
      auto w = torch::randn(x.sizes(), torch::kDouble);
      auto grad = torch::autograd::grad({y}, {x}, {w.to(dtype)})[0];
      auto xd = x.detach().to(torch::kDouble).set_requires_grad(true);
      auto want_grad = torch::autograd::grad({normalized_f64(xd, c.dims)}, {xd}, {w})[0];
      const double gtol = dtype == torch::kFloat64 ? 1e-10 : 1e-4;
      EXPECT_LE((grad.to(torch::kDouble) - want_grad).abs().max().item<double>(),
                gtol * want_grad.abs().max().item<double>())
          << c.kind;
    }
  }
}

}  // namespace

namespace {

// normalized_era, the ERA module's forward: on CPU float32 with one group the fused kernels (here
// on a middle block, I > 1, and on rows, I = 1), against ERA of the normalised x in float64: the
// values and the gradients of x and of the parameters.
TEST(EraNormalize, NormalizedEraMatchesFormula) {
  torch::manual_seed(29);
  struct Case {
    std::string kind;
    bool channels_last;
    std::vector<int64_t> dims;
    int64_t channel_dim;
  };
  for (const auto& c : {Case{"layer", false, {1}, 1}, Case{"instance", true, {2, 3}, 1},
                        Case{"instance", false, {2, 3}, 1}, Case{"layer", true, {1}, 1}}) {
    const auto params = random_params(1, 2);
    const auto lin64 = params.first[0].clone(), fr64 = params.second[0].clone();  // (2,), (n, 4): one group
    auto x = (torch::randn({3, 16, 5, 9}, torch::kDouble) * 2 + 1).to(torch::kFloat32);
    if (c.channels_last) x = x.contiguous(torch::MemoryFormat::ChannelsLast);
    auto lin = lin64.to(torch::kFloat32).set_requires_grad(true);
    auto fr = fr64.to(torch::kFloat32).set_requires_grad(true);
    x.set_requires_grad(true);
    auto y = torch_rational::normalized_era(x, lin, fr, 1e-6, c.channel_dim, c.kind);
    EXPECT_EQ(y.strides(), x.strides()) << c.kind;
    auto w = torch::randn(x.sizes(), torch::kDouble);
    auto got = torch::autograd::grad({y}, {x, lin, fr}, {w.to(torch::kFloat32)});
    auto xd = x.detach().to(torch::kDouble).set_requires_grad(true);
    auto ld = lin64.clone().set_requires_grad(true), fd = fr64.clone().set_requires_grad(true);
    auto want_y = tr_test::era_reference(normalized_f64(xd, c.dims), ld, fd, 1e-6);
    auto want = torch::autograd::grad({want_y}, {xd, ld, fd}, {w});
    EXPECT_LE(rel_err(y.detach(), want_y.detach()), 2e-5) << c.kind;
    for (size_t i = 0; i < 3; ++i) EXPECT_LE(rel_err(got[i], want[i]), 2e-4) << c.kind << " gradient " << i;
  }
}

}  // namespace
