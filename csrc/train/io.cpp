#include "io.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <map>
#include <mutex>
#include <stdexcept>

namespace fs = std::filesystem;

namespace rational_train {

namespace {

std::runtime_error io_error(const std::string& what, const std::string& path, int err) {
  return std::runtime_error(path + ": " + what + " failed: " + std::strerror(err));
}

// ---- RATIONAL_TRAIN_FAIL_WRITE ----------------------------------------------------------------
enum class FaultStage { None, Open, Write, Sync };

std::mutex fault_mutex;
std::map<std::string, int> fault_counts;

// The stage at which this write of `name` is to fail (and the errno to fail with).
FaultStage planned_fault(const std::string& name, int& err) {
  const char* spec = std::getenv("RATIONAL_TRAIN_FAIL_WRITE");
  if (!spec || !*spec) return FaultStage::None;
  std::string s(spec);
  auto c1 = s.find(':');
  if (c1 == std::string::npos) return FaultStage::None;
  auto c2 = s.find(':', c1 + 1);
  const std::string file = s.substr(0, c1);
  const std::string nth = s.substr(c1 + 1, c2 == std::string::npos ? std::string::npos : c2 - c1 - 1);
  const std::string kind = c2 == std::string::npos ? "ENOSPC" : s.substr(c2 + 1);
  if (file != name) return FaultStage::None;
  std::lock_guard<std::mutex> lock(fault_mutex);
  if (++fault_counts[name] != std::atoi(nth.c_str())) return FaultStage::None;
  if (kind == "EACCES") {
    err = EACCES;
    return FaultStage::Open;
  }
  if (kind == "EIO") {
    err = EIO;
    return FaultStage::Sync;
  }
  err = ENOSPC;
  return FaultStage::Write;
}

// write(2) until all of [data, data + n) is written; false with errno set on failure.
bool write_all(int fd, const char* data, size_t n) {
  while (n > 0) {
    ssize_t w = ::write(fd, data, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    data += w;
    n -= size_t(w);
  }
  return true;
}

// Makes the rename durable. Some file systems cannot fsync a directory (EINVAL): nothing to do there.
void sync_directory(const std::string& path) {
  auto dir = fs::path(path).parent_path();
  if (dir.empty()) dir = ".";
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return;
  if (::fsync(fd) != 0 && errno != EINVAL && errno != EROFS) {
    int err = errno;
    ::close(fd);
    throw io_error("fsync of the directory", dir.string(), err);
  }
  ::close(fd);
}

}  // namespace

void reset_write_faults() {
  std::lock_guard<std::mutex> lock(fault_mutex);
  fault_counts.clear();
}

void write_file_atomic(const std::string& path, const std::string& content,
                       const std::function<void(const std::string&)>& verify) {
  const std::string tmp = path + ".tmp";
  int fault_err = 0;
  const FaultStage fault = planned_fault(fs::path(path).filename().string(), fault_err);

  int fd = fault == FaultStage::Open ? (errno = fault_err, -1)
                                     : ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) throw io_error("cannot create the file: open", tmp, errno);
  auto discard = [&](const std::string& what, int err) {
    if (fd >= 0) ::close(fd);
    ::unlink(tmp.c_str());
    return io_error(what, tmp, err);
  };
  if (fault == FaultStage::Write) {
    // Half of the bytes arrive, then the disk is full.
    write_all(fd, content.data(), content.size() / 2);
    throw discard("write (" + std::to_string(content.size()) + " bytes)", fault_err);
  }
  if (!write_all(fd, content.data(), content.size()))
    throw discard("write (" + std::to_string(content.size()) + " bytes)", errno);
  if (fault == FaultStage::Sync) throw discard("fsync", fault_err);
  if (::fsync(fd) != 0) throw discard("fsync", errno);
  int rc = ::close(fd);
  fd = -1;
  if (rc != 0) throw discard("close", errno);
  if (verify) {
    try {
      verify(tmp);
    } catch (...) {
      ::unlink(tmp.c_str());
      throw;
    }
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    int err = errno;
    ::unlink(tmp.c_str());
    throw std::runtime_error(path + ": rename from " + tmp + " failed: " + std::strerror(err));
  }
  sync_directory(path);
}

std::string read_file_bytes(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw io_error("open", path, errno);
  std::string out;
  char buf[1 << 16];
  for (;;) {
    ssize_t r = ::read(fd, buf, sizeof buf);
    if (r < 0) {
      if (errno == EINTR) continue;
      int err = errno;
      ::close(fd);
      throw io_error("read", path, err);
    }
    if (r == 0) break;
    out.append(buf, size_t(r));
  }
  ::close(fd);
  return out;
}

}  // namespace rational_train
