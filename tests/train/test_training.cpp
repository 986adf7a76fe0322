// Short training runs on the generated data: the loss goes down, --resume reproduces an
// uninterrupted run exactly, outputs are written atomically, and every shipped config parses.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "activations.h"
#include "trainer.h"
#include "train_test_utils.h"

namespace fs = std::filesystem;
using namespace rational_train_test;
using namespace rational_train;
using nlohmann::json;

namespace {

// metrics.csv without the timing columns (seconds, images_per_second).
std::vector<std::string> metrics_without_timing(const fs::path& p) {
  std::vector<std::string> out;
  std::istringstream in(read(p));
  std::string line;
  while (std::getline(in, line)) {
    std::vector<std::string> cols;
    std::stringstream ls(line);
    std::string col;
    while (std::getline(ls, col, ',')) cols.push_back(col);
    cols.resize(6);
    std::string joined;
    for (auto& c : cols) joined += c + ",";
    out.push_back(joined);
  }
  return out;
}

}  // namespace

TEST(Training, LossGoesDownOnSyntheticData) {
  auto d = temp_dir("loss");
  auto c = synthetic_config(d, 384, 128, 2, 2);
  c.epochs = 3;
  std::ostringstream log;
  json s = run_training(c, log);
  auto m = read(d / "metrics.csv");
  EXPECT_EQ(m.substr(0, m.find('\n')), kMetricsHeader);
  EXPECT_EQ(s["epochs"], 3);
  // Ten classes: chance is 0.1, the untrained loss about log(10) = 2.30.
  EXPECT_GT(s["test_accuracy"].get<double>(), 0.5) << log.str();
  EXPECT_LT(s["final_train_loss"].get<double>(), 1.5) << log.str();
  EXPECT_EQ(s["activation_curves"].size(), 4u);
  EXPECT_EQ(s["activation_parameters"]["act1"]["numerator"].size(), 6u);
  // Every curve carries what its activation saw in the last evaluation: 80 bins on the curve's range.
  for (const auto& curve : s["activation_curves"]) {
    const auto& h = curve["input_histogram"];
    ASSERT_TRUE(h.is_object()) << curve["slot"];
    ASSERT_EQ(h["edges"].size(), 81u);
    ASSERT_EQ(h["counts"].size(), 80u);
    EXPECT_DOUBLE_EQ(h["edges"].front().get<double>(), curve["x"].front().get<double>());
    EXPECT_DOUBLE_EQ(h["edges"].back().get<double>(), curve["x"].back().get<double>());
    double total = 0;
    for (double v : h["counts"]) total += v;
    EXPECT_GT(total, 0.0) << curve["slot"];
  }
  for (auto p : {"summary.json.tmp", "metrics.csv.tmp", "checkpoint.pt.tmp"}) EXPECT_FALSE(fs::exists(d / p)) << p;
  fs::remove_all(d);
}

TEST(Training, ResumeEqualsUninterruptedRun) {
  auto a = temp_dir("straight"), b = temp_dir("resumed");
  std::ostringstream log;
  auto ca = synthetic_config(a, 384, 128, 2, 2);
  ca.epochs = 2;
  ca.activation = "rpau";  // random noise in training: the resumed run must draw the same
  ca.rotation = 30;
  ca.crop_padding = 2;
  ca.hflip = true;
  auto cb = ca;  // the same run into b, stopped after epoch 1 and resumed
  cb.output = b.string();
  json sa = run_training(ca, log);

  cb.epochs = 1;
  cb.workers = 0;  // different thread layout of the loader: same data
  run_training(cb, log);
  cb.epochs = 2;
  cb.resume = true;
  json sb = run_training(cb, log);

  EXPECT_EQ(metrics_without_timing(a / "metrics.csv"), metrics_without_timing(b / "metrics.csv"));
  EXPECT_EQ(sa["activation_parameters"], sb["activation_parameters"]);
  EXPECT_EQ(sa["test_accuracy"], sb["test_accuracy"]);
  EXPECT_EQ(sa["final_train_loss"], sb["final_train_loss"]);
  EXPECT_EQ(sa["activation_curves"], sb["activation_curves"]);
  EXPECT_EQ(sb["epochs"], 2);
  fs::remove_all(a);
  fs::remove_all(b);
}

TEST(Activation, InputHistogramCountsWhatItSaw) {
  Activation act = make_activation("pau", {}, 3);
  act->start_recording(-2.0, 2.0, 4);  // bins [-2,-1) [-1,0) [0,1) [1,2)
  const std::vector<double> values = {-3.0, -2.0, -1.5, -1.0, -0.25, 0.0, 0.5, 0.99, 1.0, 1.999, 2.0, 7.0,
                                      std::nan(""), -0.5, 0.25};
  auto x = torch::tensor(values, torch::kFloat32).reshape({5, 3});
  act->forward(x);
  act->forward(x.narrow(0, 0, 2));  // counts add up over calls
  act->stop_recording();
  act->forward(x);  // not recorded
  // Expected counts written from the bin definition, element by element.
  std::vector<double> expected(4, 0.0);
  auto count = [&](size_t n) {
    for (size_t i = 0; i < n; ++i) {
      const float v = float(values[i]);
      if (v >= -2.0f && v < 2.0f) expected[size_t(std::floor(v + 2.0f))] += 1;
    }
  };
  count(values.size());
  count(6);
  json h = act->input_histogram();
  EXPECT_EQ(h["edges"], json({-2.0, -1.0, 0.0, 1.0, 2.0}));
  EXPECT_EQ(h["counts"], json(expected));
  EXPECT_THROW(act->start_recording(1.0, 1.0, 4), std::invalid_argument);
}

TEST(AtomicWrite, ReplacesWholeFileAndLeavesNoTemp) {
  auto d = temp_dir("atomic");
  auto p = (d / "summary.json").string();
  write_file_atomic(p, "first");
  write_file_atomic(p, "second, longer");
  EXPECT_EQ(read(p), "second, longer");
  EXPECT_FALSE(fs::exists(p + ".tmp"));
  // Unwritable destination: an error naming the path, and no partial file.
  auto bad = (d / "no_such_dir" / "x.json").string();
  try {
    write_file_atomic(bad, "data");
    FAIL() << "no exception";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("no_such_dir"), std::string::npos);
  }
  EXPECT_FALSE(fs::exists(bad));
  fs::remove_all(d);
}

TEST(Config, UnknownKeysAndBadValuesAreNamed) {
  TrainConfig c;
  try {
    from_json(json{{"lr", 0.1}, {"learning_rate", 0.1}}, c);
    FAIL() << "no exception";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("learning_rate"), std::string::npos);
  }
  c = TrainConfig{};
  from_json(json{{"activation_options", {{"degrees", {3, 2}}}}, {"source", "doc"}}, c);
  EXPECT_EQ(c.act.num_degree, 3);
  c.batch_size = 0;
  try {
    resolve(c);
    FAIL() << "no exception";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("--batch-size"), std::string::npos);
  }
}

TEST(Config, ShippedConfigsParseAndResolve) {
  int n = 0;
  for (auto& entry : fs::directory_iterator(fs::path(RATIONAL_TRAIN_SOURCE_DIR) / "configs")) {
    auto name = entry.path().filename().string();
    if (entry.path().extension() != ".json" || name == "rational_init.json" || name == "era_init.json") continue;
    std::ifstream f(entry.path());
    TrainConfig c;
    ASSERT_NO_THROW(from_json(json::parse(f), c)) << name;
    c.synthetic = true;
    ASSERT_NO_THROW(resolve(c)) << name;
    ++n;
  }
  EXPECT_GE(n, 6);
}
