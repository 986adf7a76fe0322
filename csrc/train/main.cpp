// rational_train: trains LeNet / VGG-8 / MobileNetV2 with any activation of the factory on MNIST,
// Fashion-MNIST or CIFAR-10 (or a generated set) and writes a run directory (see docs).
#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <torch/torch.h>

#include <cerrno>
#include <csignal>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <streambuf>

#include "activations.h"
#include "distributed.h"
#include "models.h"
#include "setting_flags.h"
#include "settings.h"
#include "trainer.h"

using nlohmann::json;
using namespace rational_train;

namespace {

// Writes to two stream buffers (stdout and DIR/log.txt). A failing log file (disk full) does not
// silence stdout: the tee stops writing to the file, remembers the errno, and main reports it.
class TeeBuf : public std::streambuf {
 public:
  TeeBuf(std::streambuf* a, std::streambuf* b) : a_(a), b_(b) {}
  bool file_failed() const { return file_failed_; }
  int file_errno() const { return file_errno_; }
  // Flushes the file; false (and file_failed()) when that fails.
  bool flush_file() {
    if (b_ && !file_failed_ && b_->pubsync() != 0) fail_file();
    return !file_failed_;
  }

 protected:
  int overflow(int ch) override {
    if (ch == EOF) return !EOF;
    if (a_->sputc(char(ch)) == EOF) return EOF;
    if (b_ && !file_failed_ && b_->sputc(char(ch)) == EOF) fail_file();
    return ch;
  }
  int sync() override {
    int r = a_->pubsync();
    flush_file();
    return r;
  }

 private:
  void fail_file() {
    file_failed_ = true;
    file_errno_ = errno;
  }
  std::streambuf *a_, *b_;
  bool file_failed_ = false;
  int file_errno_ = 0;
};

std::string join(const std::vector<std::string>& v) {
  std::string s;
  for (auto& x : v) s += (s.empty() ? "" : ", ") + x;
  return s;
}

json read_json_file(const std::string& path) {
  std::ifstream f(path);
  if (!f) throw std::runtime_error(path + ": cannot open the config file: " + std::strerror(errno));
  try {
    return json::parse(f);
  } catch (const json::exception& e) {
    throw std::runtime_error(path + ": invalid JSON (" + e.what() + ")");
  }
}

}  // namespace

int main(int argc, char** argv) {
  // Past a file-size limit (ulimit -f) write() then fails with EFBIG, reported like a full disk,
  // instead of SIGXFSZ killing the process mid-write.
  std::signal(SIGXFSZ, SIG_IGN);
  // Sub-commands (e.g. a later `rational_train prune ...`) can register the same settings table on
  // their own CLI::App; the default command trains.
  CLI::App app{
      "rational_train: train LeNet / VGG-8 / MobileNetV2 with a chosen activation (rational or baseline) on "
      "MNIST, Fashion-MNIST or CIFAR-10 and write DIR/{summary.json,metrics.csv,checkpoint.pt,log.txt}.\n"
      "Settings: defaults < --config FILE.json < command-line flags. Config keys: see docs/training.md.\n"
      "Activations: " + join(activation_names()) + "\nModels: " + join(model_names())};
  app.set_version_flag("--version", "rational_train 0.1.0");
  std::string config_path;
  // A missing config file is a bad value (exit 1, read_json_file names it), not a parse error.
  app.add_option("--config", config_path,
                 "JSON config file (e.g. configs/lenet_fashion_mnist.json); flags override it")
      ->default_str("''");

  // Every setting of the table: values are taken as text and converted strictly after parsing
  // (so '-1' for a count or 'nan' for a rate is an error naming the flag, not a wrapped value).
  SettingFlags flags(app, TrainConfig{});

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int rc = app.exit(e);
    return rc == 0 ? 0 : 2;
  }

  std::string rank_prefix;  // "rank R: " before errors on several processes
  try {
    TrainConfig c;
    if (!config_path.empty()) {
      try {
        from_json(read_json_file(config_path), c);
      } catch (const std::invalid_argument& e) {
        throw std::invalid_argument(config_path + ": " + e.what());
      }
    }
    json merged = flags.apply(c);
    c = TrainConfig{};
    from_json(merged, c);
    c = resolve(c);  // every check before the run directory is touched

    // Under torchrun: this process's place in the run (one process otherwise).
    const LaunchEnvironment env = launch_environment();
    rank_prefix = env.world_size > 1 ? fmt::format("rank {}: ", env.rank) : "";
    Distributed dist(env, torch::Device(c.device == "cuda" ? torch::kCUDA : torch::kCPU),
                     std::chrono::milliseconds(int64_t(c.dist_timeout * 1000)));
    if (!dist.is_main()) {
      // Only rank 0 writes the run directory and the log; the others train silently.
      std::ostream quiet(nullptr);
      run_training(c, quiet, dist);
      return 0;
    }

    std::filesystem::create_directories(c.output);
    const std::string log_path = (std::filesystem::path(c.output) / "log.txt").string();
    std::ofstream logfile(log_path, std::ios::app);
    if (!logfile) throw std::runtime_error(log_path + ": cannot open for appending: " + std::strerror(errno));
    TeeBuf tee(std::cout.rdbuf(), logfile.rdbuf());
    std::ostream log(&tee);
    // Whatever run_training throws, the log file's own failure is reported too.
    auto check_log = [&]() {
      if (!tee.flush_file())
        throw std::runtime_error(log_path + ": write failed: " + std::strerror(tee.file_errno()) +
                                 " (the console output above is complete)");
    };
    json summary;
    try {
      summary = run_training(c, log, dist);
    } catch (const std::exception& e) {
      // The run's error goes to log.txt as well (main prints it on stderr); then the log's own failure.
      const auto* torch_error = dynamic_cast<const c10::Error*>(&e);
      if (!tee.file_failed())
        logfile << "error: " << (torch_error ? torch_error->what_without_backtrace() : e.what()) << "\n";
      if (!tee.flush_file())
        std::cerr << "error: " << log_path << ": write failed: " << std::strerror(tee.file_errno()) << std::endl;
      throw;
    }
    log << fmt::format("test accuracy {:.4f} (best {:.4f} at epoch {}), {} epochs in {:.1f} s\n",
                       summary["test_accuracy"].get<double>(), summary["best_test_accuracy"].get<double>(),
                       summary["best_epoch"].get<int64_t>(), summary["epochs"].get<int64_t>(),
                       summary["seconds"].get<double>());
    log << "summary: " << (std::filesystem::path(c.output) / "summary.json").string() << "\n" << std::flush;
    check_log();
    return 0;
  } catch (const c10::Error& e) {
    std::cerr << rank_prefix << "error: " << e.what_without_backtrace() << std::endl;
    return 1;
  } catch (const std::exception& e) {
    std::cerr << rank_prefix << "error: " << e.what() << std::endl;
    return 1;
  }
}
