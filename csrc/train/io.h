// File output of rational_train with every error checked: POSIX writes into PATH.tmp, fsync,
// rename over PATH, fsync of the directory. A failure (disk full, permission lost, I/O error)
// throws std::runtime_error naming the file and the reason, removes PATH.tmp and leaves PATH as
// it was, so the previous checkpoint / summary survives.
#pragma once

#include <functional>
#include <string>

namespace rational_train {

// Writes `content` to path + ".tmp", fsyncs it, calls `verify(tmp_path)` when given (it throws
// to reject what was written), renames the temp file over `path` and fsyncs the directory.
void write_file_atomic(const std::string& path, const std::string& content,
                       const std::function<void(const std::string& tmp_path)>& verify = {});

// The whole file; throws naming the path when it cannot be opened or read.
std::string read_file_bytes(const std::string& path);

// Test hook: the environment variable RATIONAL_TRAIN_FAIL_WRITE=NAME:N[:ERRNO] makes the N-th
// write_file_atomic of a file named NAME (e.g. checkpoint.pt) in this process fail as the OS
// would: ENOSPC (default) after half of the bytes reached the temp file (a full disk), EACCES at
// open (permission lost), EIO at fsync. Counters restart with reset_write_faults().
void reset_write_faults();

}  // namespace rational_train
