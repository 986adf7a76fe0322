// Activation factory (every name, unknown name, groups, init shapes of the learnable baselines
// against formulas written here) and model forward shapes.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>

#include "activations.h"
#include "models.h"

using namespace rational_train;

TEST(ActivationFactory, EveryNameBuildsAndRunsOnConvAndLinearShapes) {
  ActivationOptions o;
  for (const auto& name : activation_names()) {
    for (int64_t groups : {int64_t(1), int64_t(-1)}) {
      o.groups = groups;
      auto a = make_activation(name, o, 6);
      auto x4 = torch::randn({2, 6, 4, 4});
      auto x2 = torch::randn({3, 6});
      auto y4 = a(x4), y2 = a(x2);
      EXPECT_EQ(y4.sizes(), x4.sizes()) << name;
      EXPECT_EQ(y2.sizes(), x2.sizes()) << name;
      EXPECT_TRUE(torch::isfinite(y4).all().item<bool>()) << name;
      auto c = a->curve(torch::linspace(-4, 4, 201, torch::kFloat64));
      EXPECT_EQ(c.numel(), 201) << name;
    }
  }
}

TEST(ActivationFactory, UnknownNameListsKnownNames) {
  try {
    make_activation("softsign_x", ActivationOptions{}, 4);
    FAIL() << "no exception";
  } catch (const std::invalid_argument& e) {
    std::string msg = e.what();
    EXPECT_NE(msg.find("softsign_x"), std::string::npos);
    for (const char* n : {"relu", "pau", "rpau", "hp2", "srelu", "maxout"}) EXPECT_NE(msg.find(n), std::string::npos) << n;
  }
}

TEST(ActivationFactory, GroupsPerChannelAndBadGroups) {
  ActivationOptions o;
  o.groups = -1;
  auto a = make_activation("pau", o, 6);
  auto params = a->named_parameters();
  EXPECT_EQ(params["fn.numerator"].sizes().vec(), (std::vector<int64_t>{6, 6}));
  EXPECT_EQ(params["fn.denominator"].sizes().vec(), (std::vector<int64_t>{6, 4}));
  o.groups = 3;
  EXPECT_EQ(make_activation("apl", o, 6)->named_parameters()["fn.a"].sizes().vec(), (std::vector<int64_t>{3, 2}));
  o.groups = 4;
  try {
    make_activation("pau", o, 6);
    FAIL() << "no exception";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("--act-groups"), std::string::npos) << e.what();
  }
  o.groups = 1;
  o.num_degree = 3;
  o.den_degree = 2;
  auto r = make_activation("pau", o, 6);
  EXPECT_EQ(r->named_parameters()["fn.numerator"].numel(), 4);
}

TEST(ActivationFactory, LearnableBaselinesStartAsDocumented) {
  auto x = torch::linspace(-3, 3, 61, torch::kFloat64);
  std::vector<double> xs(x.data_ptr<double>(), x.data_ptr<double>() + x.numel());
  auto check = [&](const std::string& name, auto reference) {
    auto y = make_activation(name, ActivationOptions{}, 5)->curve(x);
    for (size_t i = 0; i < xs.size(); ++i) EXPECT_NEAR(y[int64_t(i)].item<double>(), reference(xs[i]), 1e-6) << name << " x=" << xs[i];
  };
  auto relu = [](double v) { return v > 0 ? v : 0.0; };
  check("maxout", relu);
  check("mixture", relu);
  check("apl", relu);
  check("srelu", [](double v) { return v > 0 ? v : 0.01 * v; });
  check("prelu", [](double v) { return v > 0 ? v : 0.25 * v; });
  check("leaky_relu", [](double v) { return v > 0 ? v : 0.01 * v; });
  check("swish", [](double v) { return v / (1 + std::exp(-v)); });
  // PAU starts as its leaky_relu fit (max error of the shipped (5,4) table fit is small).
  auto pau = make_activation("pau", ActivationOptions{}, 5)->curve(x);
  for (size_t i = 0; i < xs.size(); ++i) EXPECT_NEAR(pau[int64_t(i)].item<double>(), xs[i] > 0 ? xs[i] : 0.01 * xs[i], 0.05);
}

TEST(ActivationFactory, LearnableFlagAndGradients) {
  ActivationOptions o;
  o.realign_steps = 1;  // PWLU: statistics collection (init function, no graph) for 1 call only
  for (const auto& name : activation_names()) {
    auto a = make_activation(name, o, 4);
    a(torch::randn({8, 4}));  // PWLU's collection call
    bool expect = !(name == "relu" || name == "relu6" || name == "leaky_relu" || name == "rrelu" || name == "elu" ||
                    name == "celu" || name == "swish" || name == "silu" || name == "gelu");
    EXPECT_EQ(a->learnable(), expect) << name;
    if (!expect) continue;
    auto y = a(torch::randn({8, 4}) * 2);
    ASSERT_TRUE(y.requires_grad()) << name << ": output has no autograd graph";
    y.sum().backward();  // d/d(params) of the sum: nonzero for every family at its init
    double g = 0;
    for (auto& p : a->parameters()) g += p.grad().defined() ? p.grad().abs().sum().item<double>() : 0.0;
    EXPECT_GT(g, 0.0) << name << ": no gradient reaches the activation parameters";
  }
}

namespace {
ActivationFactory factory(const std::string& name) {
  return [name](int64_t c) { return make_activation(name, ActivationOptions{}, c); };
}
}  // namespace

TEST(Models, ForwardShapesAndSlots) {
  struct Case {
    std::string model;
    int64_t in_channels;
    size_t slots;
  };
  for (auto& c : {Case{"lenet", 1, 4}, Case{"vgg8", 1, 5}, Case{"vgg8", 3, 5}, Case{"mobilenetv2", 3, 36},
                  Case{"mobilenetv2", 1, 36}}) {
    for (const char* act : {"relu", "pau", "srelu"}) {
      if (c.model == "mobilenetv2" && std::string(act) == "srelu") continue;  // keep the test short
      ModelOptions o;
      o.in_channels = c.in_channels;
      auto m = make_model(c.model, o, factory(act));
      auto y = m->forward(torch::randn({2, c.in_channels, 32, 32}));
      EXPECT_EQ(y.sizes().vec(), (std::vector<int64_t>{2, 10})) << c.model << " " << act;
      auto slots = m->activation_slots();
      EXPECT_EQ(slots.size(), c.slots) << c.model;
      // Every slot its own instance.
      for (size_t i = 1; i < slots.size(); ++i) EXPECT_NE(slots[i].second.ptr().get(), slots[0].second.ptr().get());
    }
  }
}

TEST(Models, VggBatchNormOptionAndUnknownModel) {
  ModelOptions o;
  o.batch_norm = true;
  auto m = make_model("vgg8", o, factory("relu"));
  int bn = 0;
  for (auto& mod : m->modules(false))
    if (std::dynamic_pointer_cast<torch::nn::BatchNorm2dImpl>(mod)) ++bn;
  EXPECT_EQ(bn, 8);
  try {
    make_model("resnet", ModelOptions{}, factory("relu"));
    FAIL() << "no exception";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("mobilenetv2"), std::string::npos);
  }
}
