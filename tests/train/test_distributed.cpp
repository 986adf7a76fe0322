// rational_train on 2 Gloo processes of this machine, launched by torchrun (as a user would): the
// ranks hold identical parameters, equal to one process trained with the combined batch; a killed
// rank makes the other exit non-zero within --dist-timeout; a 2-process run resumes (on 2 or 1
// processes); a global batch the processes do not divide is refused. Skipped without torchrun.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <torch/torch.h>
#include <unistd.h>

#include <filesystem>
#include <regex>
#include <string>

#include "checkpoint.h"
#include "models.h"
#include "train_test_utils.h"
#include "trainer.h"

namespace fs = std::filesystem;
using namespace rational_train_test;
using namespace rational_train;

namespace {

const std::string kBinary = RATIONAL_TRAIN_BINARY;

// A LeNet (no BatchNorm, so per-rank statistics play no part) with PAU on generated data: 256
// samples, global batch 32, one thread per process; every step's gradient needs the all-reduce.
std::string run_flags(const fs::path& out, int epochs) {
  return "--synthetic --synthetic-train-size 256 --synthetic-test-size 64 -m lenet -a pau -b 32 --seed 7 -e " +
         std::to_string(epochs) + " --threads 1 --workers 0 --no-progress --dist-timeout 20 -o " + out.string();
}

// Exit status of a shell command (stdout and stderr into `log`); -1 when it did not exit normally.
int sh(const std::string& cmd, const fs::path& log) {
  int status = std::system(("timeout 120 " + cmd + " >" + log.string() + " 2>&1").c_str());
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

bool have_torchrun() { return std::system("command -v torchrun >/dev/null 2>&1") == 0; }

std::string torchrun(int processes) {
  return "torchrun --standalone --no-python --nproc_per_node " + std::to_string(processes) + " " + kBinary + " ";
}

nlohmann::json json_of(const fs::path& p) { return nlohmann::json::parse(read(p)); }

std::shared_ptr<Net> lenet_pau() {
  return make_model("lenet", ModelOptions{}, [](int64_t ch) { return make_activation("pau", {}, ch); });
}

std::map<std::string, torch::Tensor> parameters_of(Net& model) {
  std::map<std::string, torch::Tensor> out;
  for (auto& p : model.named_parameters()) out[p.key()] = p.value().detach().clone();
  for (auto& b : model.named_buffers()) out[b.key()] = b.value().detach().clone();
  return out;
}

// The model a run of seed 7 starts from (run_training seeds, then builds the model).
std::map<std::string, torch::Tensor> initial_parameters() {
  torch::manual_seed(7);
  return parameters_of(*lenet_pau());
}

// The parameters (and buffers) of the model a run directory's checkpoint holds, by name.
std::map<std::string, torch::Tensor> checkpoint_parameters(const fs::path& dir) {
  auto model = lenet_pau();
  const std::string payload = read_checkpoint((dir / "checkpoint.pt").string());
  torch::serialize::InputArchive ar, model_ar;
  ar.load_from(payload.data(), payload.size());
  ar.read("model", model_ar);
  model->load(model_ar);
  return parameters_of(*model);
}

// Largest |a - b| over every parameter, relative to max(1, |b|).
double max_relative_difference(const std::map<std::string, torch::Tensor>& a,
                               const std::map<std::string, torch::Tensor>& b) {
  EXPECT_EQ(a.size(), b.size());
  double worst = 0;
  for (auto& [name, t] : b) {
    auto x = a.at(name).to(torch::kFloat64), y = t.to(torch::kFloat64);
    worst = std::max(worst, ((x - y).abs() / y.abs().clamp_min(1.0)).max().item<double>());
  }
  return worst;
}

bool bitwise_equal(const std::map<std::string, torch::Tensor>& a, const std::map<std::string, torch::Tensor>& b) {
  if (a.size() != b.size()) return false;
  for (auto& [name, t] : b)
    if (!a.count(name) || !torch::equal(a.at(name), t)) return false;
  return true;
}

int free_port() {
  int s = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(s, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  socklen_t len = sizeof(addr);
  ::getsockname(s, reinterpret_cast<sockaddr*>(&addr), &len);
  ::close(s);
  return ntohs(addr.sin_port);
}

}  // namespace

TEST(Distributed, TwoProcessesMatchOneProcessWithTheCombinedBatch) {
  if (!have_torchrun()) GTEST_SKIP() << "torchrun not on PATH";
  auto dir = temp_dir("dist_equal");
  ASSERT_EQ(sh(kBinary + " " + run_flags(dir / "one", 2), dir / "one.log"), 0) << read(dir / "one.log");
  ASSERT_EQ(sh(torchrun(2) + run_flags(dir / "two", 2), dir / "two.log"), 0) << read(dir / "two.log");
  // Every epoch the ranks compared the CRC-32 of all their parameters and buffers and found them equal.
  const std::string log = read(dir / "two" / "log.txt");
  EXPECT_NE(log.find("epoch 1: parameters identical on all 2 processes"), std::string::npos) << log;
  EXPECT_NE(log.find("epoch 2: parameters identical on all 2 processes"), std::string::npos) << log;
  EXPECT_EQ(json_of(dir / "two" / "summary.json")["world_size"], 2);
  EXPECT_EQ(json_of(dir / "one" / "summary.json")["world_size"], 1);
  // 16 Adam steps. The 2-process gradient is (g0 + g1) / 2 of two 16-sample means instead of one
  // 32-sample mean: the same sum in another order, so float32 rounding (~1e-7 relative) per step,
  // which Adam's g / sqrt(v) can carry into the weights at about its step size times that.
  const auto one = checkpoint_parameters(dir / "one"), two = checkpoint_parameters(dir / "two");
  const double diff = max_relative_difference(two, one);
  std::cout << "2 processes vs 1: max relative parameter difference " << diff << std::endl;
  EXPECT_LT(diff, 1e-5) << "2 processes x batch 16 vs 1 process x batch 32";
  // And the runs really trained: the parameters moved away from the initialisation by far more.
  EXPECT_GT(max_relative_difference(one, initial_parameters()), 1e-2);
}

TEST(Distributed, KilledRankMakesTheOtherExitWithAClearMessage) {
  // Two processes started by hand with torchrun's variables (torchrun itself would also stop the
  // survivor: here rank 0 must notice on its own). Rank 1 is killed once training is under way.
  auto dir = temp_dir("dist_kill");
  const std::string env = "WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT=" + std::to_string(free_port());
  const std::string flags = "--synthetic --synthetic-train-size 3000 --synthetic-test-size 64 -m lenet -a pau -b 32 "
                            "-e 50 --threads 1 --workers 0 --no-progress --dist-timeout 20 -o " + (dir / "run").string();
  const std::string script =
      "env " + env + " RANK=0 LOCAL_RANK=0 " + kBinary + " " + flags + " >" + (dir / "rank0.log").string() +
      " 2>&1 & r0=$!; env " + env + " RANK=1 LOCAL_RANK=1 " + kBinary + " " + flags + " >" +
      (dir / "rank1.log").string() + " 2>&1 & r1=$!; " +
      // Until rank 0 has trained an epoch (log.txt is flushed at each epoch's end), then a bit into the next.
      "for i in $(seq 600); do [ -s " + (dir / "run" / "log.txt").string() + " ] && break; sleep 0.1; done; sleep 0.5; " +
      "kill -9 $r1; start=$(date +%s); wait $r0; rc=$?; echo \"rank0_rc=$rc seconds=$(( $(date +%s) - start ))\"";
  ASSERT_EQ(sh("bash -c '" + std::regex_replace(script, std::regex("'"), "'\\''") + "'", dir / "script.log"), 0)
      << read(dir / "script.log");
  const std::string result = read(dir / "script.log"), rank0 = read(dir / "rank0.log");
  std::smatch m;
  ASSERT_TRUE(std::regex_search(result, m, std::regex("rank0_rc=(\\d+) seconds=(\\d+)"))) << result;
  EXPECT_NE(std::stoi(m[1]), 0) << rank0;
  EXPECT_LE(std::stoi(m[2]), 25) << "rank 0 must give up within --dist-timeout 20 s";
  EXPECT_NE(rank0.find("rank 0: error: rank 0 of 2:"), std::string::npos) << rank0;
  EXPECT_NE(rank0.find("another process of the run exited"), std::string::npos) << rank0;
}

TEST(Distributed, TwoProcessRunResumesOnTwoOrOneProcesses) {
  if (!have_torchrun()) GTEST_SKIP() << "torchrun not on PATH";
  auto dir = temp_dir("dist_resume");
  ASSERT_EQ(sh(torchrun(2) + run_flags(dir / "whole", 2), dir / "whole.log"), 0) << read(dir / "whole.log");
  ASSERT_EQ(sh(torchrun(2) + run_flags(dir / "cut", 1), dir / "cut1.log"), 0) << read(dir / "cut1.log");
  fs::copy(dir / "cut", dir / "cut_one");
  ASSERT_EQ(sh(torchrun(2) + run_flags(dir / "cut", 2) + " --resume", dir / "cut2.log"), 0) << read(dir / "cut2.log");
  ASSERT_EQ(sh(kBinary + " " + run_flags(dir / "cut_one", 2) + " --resume", dir / "cut_one.log"), 0)
      << read(dir / "cut_one.log");
  EXPECT_NE(read(dir / "cut" / "log.txt").find("resuming"), std::string::npos);
  // Same world size: the same operations in the same order, so the same bits.
  EXPECT_TRUE(bitwise_equal(checkpoint_parameters(dir / "cut"), checkpoint_parameters(dir / "whole")));
  // Resumed on one process: its second epoch is the one-process run's (see the first test for the tolerance).
  EXPECT_LT(max_relative_difference(checkpoint_parameters(dir / "cut_one"), checkpoint_parameters(dir / "whole")),
            1e-4);
  EXPECT_EQ(json_of(dir / "cut" / "summary.json")["epochs"], 2);
  EXPECT_EQ(json_of(dir / "cut_one" / "summary.json")["world_size"], 1);
}

TEST(Distributed, GlobalBatchNotDividedByTheProcessesIsRefused) {
  if (!have_torchrun()) GTEST_SKIP() << "torchrun not on PATH";
  auto dir = temp_dir("dist_divide");
  EXPECT_NE(sh(torchrun(2) + run_flags(dir / "run", 1) + " -b 31", dir / "run.log"), 0);
  const std::string log = read(dir / "run.log");
  EXPECT_NE(log.find("--batch-size (config key batch_size): 31 is the global batch, split over the 2 processes of "
                     "this run: it must be a multiple of 2"),
            std::string::npos)
      << log;
  EXPECT_FALSE(fs::exists(dir / "run" / "checkpoint.pt"));
}
