// The checkpoint file of rational_train: a two-line text header, then the payload (the bytes of a
// torch::serialize::OutputArchive, serialised in memory):
//
//   RATIONAL_TRAIN_CHECKPOINT
//   {"format_version":1,"payload":"torch::serialize::OutputArchive","payload_bytes":N,"payload_crc32":C}
//   <N payload bytes>
//
// The CRC-32 (zlib) covers every payload byte, so a flipped byte, a cut file or a foreign file
// is an error before torch parses anything (torch's zip reader does not check its members' CRCs).
#pragma once

#include <string>

namespace rational_train {

constexpr int kCheckpointFormatVersion = 1;

// Header + payload, ready to be written.
std::string encode_checkpoint(const std::string& payload);
// The payload of a checkpoint file's bytes, after checking magic, format version, size and
// CRC-32. Throws std::runtime_error "PATH: ..." saying what is wrong.
std::string decode_checkpoint(const std::string& path, const std::string& bytes);

// Writes the checkpoint atomically (io.h write_file_atomic): PATH.tmp, fsync, read back and
// verified against `payload`, renamed over PATH. On any failure PATH is untouched.
void write_checkpoint(const std::string& path, const std::string& payload);
// Reads and verifies PATH; returns the payload.
std::string read_checkpoint(const std::string& path);

}  // namespace rational_train
