// Trust in a run of rational_train: the checkpoint format detects every flipped byte and every
// cut, failed writes keep the previous file, a resume lists each changed setting, a non-finite
// parameter stops the run, and the settings table, the config reader and docs/training.md agree.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <cstdlib>
#include <limits>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <regex>
#include <set>
#include <sstream>

#include "checkpoint.h"
#include "io.h"
#include "settings.h"
#include "trainer.h"
#include "train_test_utils.h"

namespace fs = std::filesystem;
using namespace rational_train_test;
using namespace rational_train;
using nlohmann::json;

namespace {

std::string random_bytes(size_t n, unsigned seed) {
  std::mt19937 gen(seed);
  std::string s(n, '\0');
  for (auto& c : s) c = char(gen() & 0xFF);
  return s;
}

// Sets RATIONAL_TRAIN_FAIL_WRITE for one scope, with fresh counters.
struct FailWrite {
  explicit FailWrite(const std::string& spec) {
    ::setenv("RATIONAL_TRAIN_FAIL_WRITE", spec.c_str(), 1);
    reset_write_faults();
  }
  ~FailWrite() {
    ::unsetenv("RATIONAL_TRAIN_FAIL_WRITE");
    reset_write_faults();
  }
};

}  // namespace

TEST(CheckpointFormat, RoundTripAndHeader) {
  auto payload = random_bytes(5000, 1);
  auto file = encode_checkpoint(payload);
  EXPECT_EQ(file.rfind("RATIONAL_TRAIN_CHECKPOINT\n", 0), 0u);
  EXPECT_NE(file.find("\"format_version\":1"), std::string::npos);
  EXPECT_EQ(decode_checkpoint("x", file), payload);
}

TEST(CheckpointFormat, EveryFlippedByteIsDetected) {
  auto payload = random_bytes(3000, 2);
  const auto file = encode_checkpoint(payload);
  for (size_t i = 0; i < file.size(); ++i) {
    for (int mask : {0x01, 0x80}) {
      auto bad = file;
      bad[i] = char(bad[i] ^ mask);
      auto msg = error_of([&] { decode_checkpoint("ckpt", bad); });
      ASSERT_FALSE(msg.empty()) << "byte " << i << " ^ " << mask << " was not detected";
      ASSERT_EQ(msg.rfind("ckpt: ", 0), 0u) << msg;
    }
  }
  // The issue's damage: 64 consecutive bytes inside the payload.
  auto bad = file;
  for (size_t i = file.size() / 2; i < file.size() / 2 + 64; ++i) bad[i] = char(~bad[i]);
  EXPECT_NE(error_of([&] { decode_checkpoint("ckpt", bad); }).find("CRC-32"), std::string::npos);
}

TEST(CheckpointFormat, EveryTruncationIsDetected) {
  const auto file = encode_checkpoint(random_bytes(2000, 3));
  for (size_t n = 0; n < file.size(); ++n)
    ASSERT_FALSE(error_of([&] { decode_checkpoint("ckpt", file.substr(0, n)); }).empty()) << "cut at " << n;
  EXPECT_NE(error_of([&] { decode_checkpoint("ckpt", file.substr(0, file.size() - 10)); }).find("truncated"),
            std::string::npos);
  EXPECT_NE(error_of([&] { decode_checkpoint("ckpt", file + "x"); }).find("damaged"), std::string::npos);
}

TEST(CheckpointFormat, ForeignAndNewerFilesAreRefused) {
  // A bare torch archive (what rational_train wrote before format 1).
  torch::serialize::OutputArchive ar;
  ar.write("x", torch::ones({3}));
  std::string zip;
  ar.save_to([&](const void* d, size_t n) {
    zip.append(static_cast<const char*>(d), n);
    return n;
  });
  EXPECT_NE(error_of([&] { decode_checkpoint("ckpt", zip); }).find("not a rational_train checkpoint"),
            std::string::npos);
  EXPECT_NE(error_of([&] { decode_checkpoint("ckpt", "hello\n"); }).find("not a rational_train checkpoint"),
            std::string::npos);
  auto newer = encode_checkpoint("abc");
  newer.replace(newer.find("\"format_version\":1"), 18, "\"format_version\":2");
  EXPECT_NE(error_of([&] { decode_checkpoint("ckpt", newer); }).find("newer"), std::string::npos);
}

TEST(CheckpointWrite, FailedWritesKeepThePreviousCheckpoint) {
  auto d = temp_dir("ckptwrite");
  const auto path = (d / "checkpoint.pt").string();
  const auto first = random_bytes(100000, 4), second = random_bytes(100000, 5);
  write_checkpoint(path, first);
  for (auto [spec, reason] : {std::pair{"checkpoint.pt:1", "No space left"},
                              std::pair{"checkpoint.pt:1:EACCES", "Permission denied"},
                              std::pair{"checkpoint.pt:1:EIO", "Input/output error"}}) {
    FailWrite fault(spec);
    auto msg = error_of([&] { write_checkpoint(path, second); });
    EXPECT_NE(msg.find(reason), std::string::npos) << spec << ": " << msg;
    EXPECT_NE(msg.find("checkpoint.pt.tmp"), std::string::npos) << msg;
    EXPECT_FALSE(fs::exists(path + ".tmp")) << spec;
    EXPECT_EQ(read_checkpoint(path), first) << spec;
  }
  {
    FailWrite fault("checkpoint.pt:2");  // the second write fails, the first goes through
    write_checkpoint(path, second);
    EXPECT_FALSE(error_of([&] { write_checkpoint(path, first); }).empty());
    EXPECT_EQ(read_checkpoint(path), second);
  }
  fs::remove_all(d);
}

TEST(Divergence, NonFiniteParameterOrBufferIsFound) {
  torch::nn::Sequential net(torch::nn::Linear(3, 4), torch::nn::BatchNorm1d(4));
  EXPECT_EQ(first_non_finite(*net), "");
  {
    torch::NoGradGuard no_grad;
    net->named_buffers()["1.running_var"][2] = std::numeric_limits<float>::infinity();
  }
  EXPECT_EQ(first_non_finite(*net), "1.running_var (inf)");
  {
    torch::NoGradGuard no_grad;
    net->named_parameters()["0.weight"][1][1] = std::nanf("");
  }
  EXPECT_EQ(first_non_finite(*net), "0.weight (nan)");
}

TEST(Divergence, DivergedRunStopsWithoutWritingItsEpoch) {
  auto d = temp_dir("diverge");
  auto c = synthetic_config(d, 64, 32, 1, 0);
  c.optimizer = "sgd";
  c.momentum = 0;
  c.lr = 1e3;  // PAU of the huge activations that follow overflows to NaN within the first epoch
  c.clip_grad_norm = 0;
  c.epochs = 3;
  std::ostringstream log;
  auto msg = error_of([&] { run_training(c, log); });
  EXPECT_NE(msg.find("training diverged"), std::string::npos) << msg;
  EXPECT_NE(msg.find("epoch 1"), std::string::npos) << msg;
  EXPECT_NE(msg.find("no checkpoint written"), std::string::npos) << msg;
  EXPECT_FALSE(fs::exists(d / "checkpoint.pt"));
  EXPECT_FALSE(fs::exists(d / "summary.json"));
  fs::remove_all(d);
}

TEST(Resume, ConflictsNameEachSettingWithBothValues) {
  TrainConfig a;
  a.synthetic = true;
  const json saved = resolve(a);
  EXPECT_TRUE(resume_conflicts(saved, saved).empty());

  TrainConfig b = a;
  b.act.num_degree = 3;
  b.act.den_degree = 2;
  b.act.groups = -1;
  b.optimizer = "sgd";
  b.seed = 3;
  b.rotation = 10;
  auto lines = resume_conflicts(saved, json(resolve(b)));
  std::string all;
  for (auto& l : lines) all += l + "\n";
  EXPECT_EQ(lines.size(), 5u) << all;
  EXPECT_NE(all.find("--act-degrees: checkpoint 5,4, now 3,2"), std::string::npos) << all;
  EXPECT_NE(all.find("--act-groups: checkpoint 1, now -1"), std::string::npos) << all;
  EXPECT_NE(all.find("--optimizer: checkpoint adam, now sgd"), std::string::npos) << all;
  EXPECT_NE(all.find("--seed: checkpoint 0, now 3"), std::string::npos) << all;
  EXPECT_NE(all.find("--rotation"), std::string::npos) << all;

  // Harmless: more epochs, threads, workers, progress, device, test batch size, output.
  TrainConfig h = a;
  h.epochs = 7;
  h.threads = 1;
  h.workers = 0;
  h.progress = false;
  h.device = "cpu";
  h.test_batch_size = 10;
  h.output = "elsewhere";
  EXPECT_TRUE(resume_conflicts(saved, json(resolve(h))).empty());
  // A setting the checkpoint does not record (added later) counts as its default.
  json older = saved;
  older["activation_options"].erase("pieces");
  EXPECT_TRUE(resume_conflicts(older, saved).empty());
  TrainConfig p = a;
  p.act.pieces = 8;
  lines = resume_conflicts(older, json(resolve(p)));
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_NE(lines[0].find("--act-pieces: not recorded in the checkpoint (so the default 16), now 8"), std::string::npos)
      << lines[0];
  // Except the epochs under the cosine schedule, which depends on them.
  a.lr_schedule = h.lr_schedule = "cosine";
  lines = resume_conflicts(json(resolve(a)), json(resolve(h)));
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_NE(lines[0].find("--epochs: checkpoint 1, now 7"), std::string::npos) << lines[0];
}

TEST(Settings, FlagValuesAreParsedStrictly) {
  auto& seed = *setting_by_flag("--seed");
  EXPECT_EQ(parse_flag_value(seed, "18446744073709551615").get<uint64_t>(), 18446744073709551615ull);
  for (auto text : {"-1", "18446744073709551616", "1.5", "", "1e3", " 1", "0x10"})
    EXPECT_THROW(parse_flag_value(seed, text), std::invalid_argument) << text;
  auto& lr = *setting_by_flag("--lr");
  EXPECT_DOUBLE_EQ(parse_flag_value(lr, "2e-3").get<double>(), 2e-3);
  for (auto text : {"nan", "inf", "-inf", "1e999", "0", "-1", "1,2", "abc"})
    EXPECT_THROW(parse_flag_value(lr, text), std::invalid_argument) << text;
  auto& degrees = *setting_by_flag("--act-degrees");
  EXPECT_EQ(parse_flag_value(degrees, "3,2"), json::array({3, 2}));
  for (auto text : {"5", "5,4,3", "5;4", "33,4", "5,", "a,b"})
    EXPECT_THROW(parse_flag_value(degrees, text), std::invalid_argument) << text;
  auto msg = error_of([&] { parse_flag_value(*setting_by_flag("--train-subset"), "-5"); });
  EXPECT_NE(msg.find("--train-subset"), std::string::npos) << msg;
}

TEST(Settings, ConfigValuesAreCheckedAndNamed) {
  auto msg_of = [](const json& j) {
    TrainConfig c;
    return error_of([&] { from_json(j, c); });
  };
  EXPECT_NE(msg_of({{"epochs", 1.5}}).find("epochs (--epochs)"), std::string::npos);
  EXPECT_NE(msg_of({{"epochs", 1e30}}).find("--epochs"), std::string::npos);
  EXPECT_NE(msg_of({{"seed", -1}}).find("--seed"), std::string::npos);
  EXPECT_NE(msg_of({{"act_degrees", {3, 2}}}).find("unknown key 'act_degrees'"), std::string::npos);
  EXPECT_NE(msg_of({{"activation_options", {{"degree", {3, 2}}}}}).find("activation_options.degree"),
            std::string::npos);
  EXPECT_NE(msg_of({{"hflip", 1}}).find("--hflip"), std::string::npos);
  EXPECT_NE(msg_of({{"std", {0.0}}}).find("--std"), std::string::npos);
  EXPECT_TRUE(msg_of({{"epochs", 2.0}, {"act_lr", nullptr}, {"source", "x"}, {"_note", 1}}).empty());
  // A resolved config is a valid config: the summary's "config" can be fed back.
  TrainConfig c;
  c.synthetic = true;
  const json resolved = resolve(c);
  TrainConfig back;
  from_json(resolved, back);
  EXPECT_EQ(json(resolve(back)), resolved);
}

// docs/training.md's settings table lists exactly the table's flags, each with its config key.
TEST(Settings, DocsTableMatchesTheSettingsTable) {
  std::ifstream f(fs::path(RATIONAL_TRAIN_SOURCE_DIR) / "docs" / "training.md");
  ASSERT_TRUE(f);
  std::string line;
  std::map<std::string, std::string> documented;  // flag -> key
  const std::regex row(R"(^\| `(--[a-z0-9-]+)` \| `([a-z0-9_.]+)` \|)");
  while (std::getline(f, line)) {
    std::smatch m;
    if (std::regex_search(line, m, row)) {
      EXPECT_FALSE(documented.count(m[1])) << "documented twice: " << m[1];
      documented[m[1]] = m[2];
    }
  }
  std::set<std::string> flags;
  for (auto& s : settings()) {
    flags.insert(s.flag);
    auto it = documented.find(s.flag);
    if (it == documented.end()) {
      ADD_FAILURE() << s.flag << " is not in the docs table";
      continue;
    }
    EXPECT_EQ(it->second, s.key) << s.flag;
  }
  for (auto& [flag, key] : documented) EXPECT_TRUE(flags.count(flag)) << "documented but not a setting: " << flag;
}
