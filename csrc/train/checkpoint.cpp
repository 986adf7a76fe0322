#include "checkpoint.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <zlib.h>

#include <stdexcept>

#include "io.h"

using nlohmann::json;

namespace rational_train {

namespace {

const std::string kMagic = "RATIONAL_TRAIN_CHECKPOINT\n";
const std::string kPayloadKind = "torch::serialize::OutputArchive";

uint32_t crc32_of(const std::string& bytes) {
  return uint32_t(crc32_z(crc32_z(0L, Z_NULL, 0), reinterpret_cast<const Bytef*>(bytes.data()), bytes.size()));
}

}  // namespace

std::string encode_checkpoint(const std::string& payload) {
  json header = {{"format_version", kCheckpointFormatVersion},
                 {"payload", kPayloadKind},
                 {"payload_bytes", payload.size()},
                 {"payload_crc32", crc32_of(payload)}};
  return kMagic + header.dump() + "\n" + payload;
}

std::string decode_checkpoint(const std::string& path, const std::string& bytes) {
  auto fail = [&](const std::string& why) { return std::runtime_error(path + ": " + why); };
  if (bytes.empty()) throw fail("empty file (0 bytes), not a rational_train checkpoint");
  if (bytes.compare(0, kMagic.size(), kMagic) != 0) {
    if (bytes.compare(0, 4, "PK\x03\x04") == 0)
      throw fail("not a rational_train checkpoint: a bare zip / torch archive without rational_train's header "
                 "(written by another program, or by rational_train before checkpoint format 1), so it cannot "
                 "be verified");
    if (kMagic.compare(0, bytes.size(), bytes) == 0) throw fail("truncated inside its header");
    throw fail("not a rational_train checkpoint (no RATIONAL_TRAIN_CHECKPOINT header)");
  }
  const size_t eol = bytes.find('\n', kMagic.size());
  if (eol == std::string::npos) throw fail("truncated inside its header");
  json header;
  try {
    header = json::parse(bytes.begin() + std::ptrdiff_t(kMagic.size()), bytes.begin() + std::ptrdiff_t(eol));
  } catch (const json::exception&) {
    throw fail("damaged header (not JSON)");
  }
  auto field = [&](const char* key) -> const json& {
    if (!header.is_object() || !header.contains(key)) throw fail(std::string("damaged header (no ") + key + ")");
    return header[key];
  };
  const json& version = field("format_version");
  if (!version.is_number_integer() || version.get<int64_t>() < 1) throw fail("damaged header (format_version)");
  if (version.get<int64_t>() > kCheckpointFormatVersion)
    throw fail(fmt::format("checkpoint format version {} is newer than this rational_train reads ({})",
                           version.get<int64_t>(), kCheckpointFormatVersion));
  if (field("payload") != kPayloadKind) throw fail("damaged header (payload kind)");
  const json& size = field("payload_bytes");
  const json& crc = field("payload_crc32");
  if (!size.is_number_unsigned() || !crc.is_number_unsigned()) throw fail("damaged header (size or CRC)");
  const size_t have = bytes.size() - eol - 1;
  const size_t want = size.get<uint64_t>();
  if (have < want)
    throw fail(fmt::format("truncated: the header announces {} payload bytes, the file holds {}", want, have));
  if (have > want)
    throw fail(fmt::format("damaged: {} payload bytes where the header announces {}", have, want));
  std::string payload = bytes.substr(eol + 1);
  const uint32_t actual = crc32_of(payload);
  if (actual != crc.get<uint64_t>())
    throw fail(fmt::format("damaged: the CRC-32 of its payload is {:08x}, the header records {:08x}", actual,
                           crc.get<uint64_t>()));
  return payload;
}

void write_checkpoint(const std::string& path, const std::string& payload) {
  write_file_atomic(path, encode_checkpoint(payload), [&](const std::string& tmp) {
    // Read back what reached the file: a short or altered write is caught before the rename.
    if (decode_checkpoint(tmp, read_file_bytes(tmp)) != payload)
      throw std::runtime_error(tmp + ": read back differs from what was written");
  });
}

std::string read_checkpoint(const std::string& path) { return decode_checkpoint(path, read_file_bytes(path)); }

}  // namespace rational_train
