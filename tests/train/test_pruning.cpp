// The pruning experiment (--prune-rounds / --prune-fraction): the mask of one round against a
// brute-force reference, and a short run whose pruned filters are recomputed independently from an
// unpruned run of the same seed, stay zero through retraining, land in pruning.csv and summary.json,
// and whose --resume refuses another --prune-fraction and continues a round exactly.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <numeric>
#include <sstream>

#include "checkpoint.h"
#include "models.h"
#include "pruning.h"
#include "settings.h"
#include "trainer.h"
#include "train_test_utils.h"

namespace fs = std::filesystem;
using namespace rational_train_test;
using namespace rational_train;
using nlohmann::json;

namespace {

// Brute force: every alive filter's norm as a plain sum, the k smallest by repeated minimum search.
std::vector<double> reference_mask(const torch::Tensor& w, std::vector<double> mask, double fraction) {
  auto flat = w.to(torch::kFloat64).reshape({w.size(0), -1});
  std::vector<double> norms;
  for (int64_t i = 0; i < w.size(0); ++i) {
    double n = 0;
    for (int64_t j = 0; j < flat.size(1); ++j) n += std::abs(flat[i][j].item<double>());
    norms.push_back(n);
  }
  int64_t alive = 0;
  for (double m : mask) alive += m != 0;
  int64_t k = std::min<int64_t>(int64_t(std::floor(fraction * double(alive) + 0.5)), std::max<int64_t>(alive - 1, 0));
  for (int64_t t = 0; t < k; ++t) {
    int64_t best = -1;
    for (int64_t i = 0; i < int64_t(mask.size()); ++i)
      if (mask[i] != 0 && (best < 0 || norms[i] < norms[best])) best = i;
    mask[best] = 0;
  }
  return mask;
}

std::vector<double> as_vector(const torch::Tensor& t) {
  auto c = t.to(torch::kFloat64).contiguous();
  return std::vector<double>(c.data_ptr<double>(), c.data_ptr<double>() + c.numel());
}

// The model of a run directory's checkpoint.
std::shared_ptr<Net> load_model(const fs::path& dir, const TrainConfig& c) {
  ModelOptions mopt;
  mopt.in_channels = 1;
  auto model = make_model(c.model, mopt, [&](int64_t ch) { return make_activation(c.activation, c.act, ch); });
  std::string payload = read_checkpoint((dir / "checkpoint.pt").string());
  torch::serialize::InputArchive ar, model_ar;
  ar.load_from(payload.data(), payload.size());
  ar.read("model", model_ar);
  model->load(model_ar);
  return model;
}

// Indices of the all-zero filters of every conv, by module path.
std::map<std::string, std::vector<int64_t>> zero_filters(Net& model) {
  std::map<std::string, std::vector<int64_t>> out;
  for (auto& m : model.named_modules("", false))
    if (auto* conv = m.value()->as<torch::nn::Conv2d>()) {
      auto w = conv->weight.detach().reshape({conv->weight.size(0), -1});
      auto& v = out[m.key()];
      for (int64_t i = 0; i < w.size(0); ++i)
        if (w[i].abs().sum().item<double>() == 0) v.push_back(i);
    }
  return out;
}

}  // namespace

TEST(Pruning, MaskMatchesBruteForce) {
  torch::manual_seed(7);
  for (double fraction : {0.1, 0.2, 0.5, 0.9}) {
    auto w = torch::randn({37, 5, 3, 3});
    w[4].zero_();  // ties at 0: the lower index first
    w[9].zero_();
    auto mask = torch::ones({37});
    std::vector<double> ref(37, 1.0);
    for (int round = 0; round < 4; ++round) {
      mask = prune_filters(w, mask, fraction);
      ref = reference_mask(w, ref, fraction);
      ASSERT_EQ(as_vector(mask), ref) << "fraction " << fraction << " round " << round;
      w = torch::randn({37, 5, 3, 3});  // retrained weights: other norms
    }
  }
  // Never the last filter; a single filter stays.
  auto one = prune_filters(torch::randn({1, 2, 3, 3}), torch::ones({1}), 0.9);
  EXPECT_EQ(one.item<double>(), 1.0);
}

TEST(Pruning, SettingsAreCheckedAndNamed) {
  auto& f = *setting_by_flag("--prune-fraction");
  EXPECT_DOUBLE_EQ(parse_flag_value(f, "0.25").get<double>(), 0.25);
  for (auto text : {"0", "1", "-0.1", "1.5", "nan", "x"}) {
    try {
      parse_flag_value(f, text);
      ADD_FAILURE() << text << " accepted";
    } catch (const std::invalid_argument& e) {
      EXPECT_NE(std::string(e.what()).find("--prune-fraction"), std::string::npos) << e.what();
    }
  }
  auto& r = *setting_by_flag("--prune-rounds");
  EXPECT_EQ(parse_flag_value(r, "3").get<int64_t>(), 3);
  for (auto text : {"-1", "1.5", "1001"}) EXPECT_THROW(parse_flag_value(r, text), std::invalid_argument) << text;
  TrainConfig c;
  EXPECT_THROW(from_json(json{{"prune_fraction", 1.0}}, c), std::invalid_argument);
}

// Round 0 trains the dense LeNet (1 epoch); round 1 prunes half of each conv's filters, rewinds, retrains.
TEST(Pruning, OneRoundPrunesTheLowestFiltersAndKeepsThemZero) {
  auto dense = temp_dir("dense"), pruned = temp_dir("pruned");
  std::ostringstream log;
  auto cd = synthetic_config(dense, 256, 64, 1, 0);
  run_training(cd, log);  // = round 0 of the pruned run (same seed, epoch 1, threads)

  auto cp = synthetic_config(pruned, 256, 64, 1, 0);
  cp.prune_rounds = 1;
  cp.prune_fraction = 0.5;
  json s = run_training(cp, log);
  EXPECT_EQ(s["epochs"], 2);

  // Which filters: recomputed from the dense run's weights (brute force), per conv.
  auto dense_model = load_model(dense, cd);
  auto pruned_model = load_model(pruned, cp);
  auto zeros = zero_filters(*pruned_model);
  ASSERT_EQ(zeros.size(), 3u);  // c1, c3, c5
  for (auto& m : dense_model->named_modules("", false))
    if (auto* conv = m.value()->as<torch::nn::Conv2d>()) {
      const int64_t out = conv->weight.size(0);
      auto ref = reference_mask(conv->weight.detach(), std::vector<double>(size_t(out), 1.0), 0.5);
      std::vector<int64_t> expected;
      for (int64_t i = 0; i < out; ++i)
        if (ref[i] == 0) expected.push_back(i);
      EXPECT_EQ(int64_t(expected.size()), std::llround(0.5 * double(out))) << m.key();
      // Zero after a whole epoch of retraining: exactly the expected filters, and their biases.
      EXPECT_EQ(zeros[m.key()], expected) << m.key();
      auto* pconv = pruned_model->named_modules("", false)[m.key()]->as<torch::nn::Conv2d>();
      for (auto i : expected) EXPECT_EQ(pconv->bias[i].item<double>(), 0.0) << m.key() << " bias " << i;
    }

  // pruning.csv: a row per round; the fraction is of all conv filters (3 + 8 + 60 of 6 + 16 + 120).
  auto csv = read(pruned / "pruning.csv");
  std::istringstream in(csv);
  std::string header, row0, row1, extra;
  std::getline(in, header);
  std::getline(in, row0);
  std::getline(in, row1);
  EXPECT_EQ(header, kPruningHeader);
  EXPECT_EQ(row0.substr(0, 4), "0,0,") << csv;
  EXPECT_EQ(row1.substr(0, 2), "1,") << csv;
  EXPECT_FALSE(std::getline(in, extra)) << csv;
  ASSERT_EQ(s["pruning"].size(), 2u);
  EXPECT_EQ(s["pruning"][1]["alive_filters"], 71);
  EXPECT_EQ(s["pruning"][1]["total_filters"], 142);
  EXPECT_DOUBLE_EQ(s["pruning"][1]["pruned_fraction"].get<double>(), 0.5);
  // Round 0 of the pruned run is the dense run.
  EXPECT_EQ(s["pruning"][0]["test_accuracy"], json::parse(read(dense / "summary.json"))["test_accuracy"]);

  // --resume keeps the pruning settings: another fraction (or epochs per round) is refused, naming it.
  auto other = cp;
  other.resume = true;
  other.prune_fraction = 0.25;
  other.epochs = 2;
  try {
    run_training(other, log);
    ADD_FAILURE() << "resume with another --prune-fraction accepted";
  } catch (const std::runtime_error& e) {
    std::string msg = e.what();
    EXPECT_NE(msg.find("--prune-fraction: checkpoint 0.5, now 0.25"), std::string::npos) << msg;
    EXPECT_NE(msg.find("--epochs: checkpoint 1, now 2"), std::string::npos) << msg;
  }
  fs::remove_all(dense);
  fs::remove_all(pruned);
}

// Stopped after round 1's pruning (epoch 2 of 3) and resumed: the masks come from the checkpoint
// and the run ends exactly as an uninterrupted one.
TEST(Pruning, ResumeContinuesTheRoundExactly) {
  auto a = temp_dir("straight"), b = temp_dir("resumed");
  std::ostringstream log;
  auto ca = synthetic_config(a, 256, 64, 1, 0);
  ca.prune_rounds = 2;
  ca.prune_fraction = 0.3;
  auto cb = ca;  // the same run into b
  cb.output = b.string();
  json sa = run_training(ca, log);

  // A run that stops after its first round: write its checkpoint by running the first round only,
  // i.e. with the fault hook failing the checkpoint of epoch 2 (round 1's end).
  setenv("RATIONAL_TRAIN_FAIL_WRITE", "checkpoint.pt:2", 1);
  reset_write_faults();
  EXPECT_THROW(run_training(cb, log), std::runtime_error);
  unsetenv("RATIONAL_TRAIN_FAIL_WRITE");
  reset_write_faults();
  cb.resume = true;
  json sb = run_training(cb, log);
  EXPECT_EQ(sa["pruning"].size(), 3u);
  EXPECT_EQ(sa["pruning"], sb["pruning"]);
  EXPECT_EQ(sa["activation_parameters"], sb["activation_parameters"]);
  EXPECT_EQ(read(a / "pruning.csv"), read(b / "pruning.csv"));
  fs::remove_all(a);
  fs::remove_all(b);
}

// VGG-8 and MobileNetV2 (the paper's two models): every Conv2d gets a mask (depthwise and shortcut
// convs included) and the BatchNorm after it is masked with it.
TEST(Pruning, EveryConvOfVgg8AndMobileNetV2AndItsBatchNorm) {
  for (std::string name : {"vgg8", "mobilenetv2"}) {
    torch::manual_seed(1);
    ModelOptions mopt;
    mopt.in_channels = 3;
    auto model = make_model(name, mopt, [](int64_t ch) { return make_activation("relu", ActivationOptions{}, ch); });
    FilterPruner pruner(*model);
    int64_t convs = 0, filters = 0, expected_alive = 0;
    for (auto& m : model->named_modules("", false))
      if (auto* conv = m.value()->as<torch::nn::Conv2d>()) {
        ++convs;
        filters += conv->weight.size(0);
        expected_alive += conv->weight.size(0) - std::llround(0.5 * double(conv->weight.size(0)));
      }
    EXPECT_EQ(int64_t(pruner.names().size()), convs) << name;
    EXPECT_EQ(pruner.total_filters(), filters) << name;
    if (name == "vgg8") EXPECT_EQ(filters, 64 + 128 + 2 * 256 + 4 * 512);
    pruner.prune(0.5);
    pruner.apply();
    EXPECT_EQ(pruner.alive_filters(), expected_alive) << name;
    // Each BatchNorm2d follows a conv of as many filters: its zero gammas are that conv's zero filters.
    auto modules = model->named_modules("", false);
    int64_t bns = 0;
    for (size_t i = 1; i < modules.size(); ++i)
      if (auto* bn = modules[i].value()->as<torch::nn::BatchNorm2d>()) {
        auto* conv = modules[i - 1].value()->as<torch::nn::Conv2d>();
        ASSERT_TRUE(conv) << name << " " << modules[i].key();
        auto zero_filter = conv->weight.detach().reshape({conv->weight.size(0), -1}).abs().sum(1).eq(0);
        EXPECT_TRUE(torch::equal(bn->weight.detach().eq(0), zero_filter)) << modules[i].key();
        EXPECT_TRUE(torch::equal(bn->bias.detach().eq(0) | zero_filter.logical_not(), torch::ones_like(zero_filter)))
            << modules[i].key();
        ++bns;
      }
    EXPECT_EQ(bns, convs) << name;  // VGG-8 with BatchNorm, MobileNetV2: a BatchNorm after every conv
  }
}
