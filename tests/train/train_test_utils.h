// What the tests of csrc/train share: a fresh temporary directory, a file's text, the message of
// an exception, and a small run on synthetic data.
#pragma once

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "trainer.h"

namespace rational_train_test {

namespace fs = std::filesystem;

// An empty directory of its own per test process (pid: ctest runs each test in its own process).
inline fs::path temp_dir(const std::string& name) {
  auto d = fs::temp_directory_path() / ("rational_train_test_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

inline std::string read(const fs::path& p) {
  std::ifstream f(p);
  std::stringstream s;
  s << f.rdbuf();
  return s.str();
}

// The message of the std::exception f throws, "" when it throws none.
template <typename F>
std::string error_of(F f) {
  try {
    f();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

// A quiet run on synthetic data into `out`, batches of 32.
inline rational_train::TrainConfig synthetic_config(const fs::path& out, int64_t train_size, int64_t test_size,
                                                    int64_t threads, int64_t workers) {
  rational_train::TrainConfig c;
  c.synthetic = true;
  c.synthetic_train_size = train_size;
  c.synthetic_test_size = test_size;
  c.batch_size = 32;
  c.test_batch_size = test_size;
  c.threads = threads;
  c.workers = workers;
  c.output = out.string();
  c.progress = false;
  return c;
}

}  // namespace rational_train_test
