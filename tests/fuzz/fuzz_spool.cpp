// libFuzzer harness: spool recovery from arbitrary segment and ack file bytes (Spool::open,
// then next()/ack() until empty; agent/spool/spool.hpp, format.hpp).
//
// Input: byte 0: options (bit 0 "repair record checksums", bit 1 "repair ack entries", bit 2
// replay newest first, bit 3 max_age 1 h; the clock is fixed at 2023-11-14T22:13:20Z); byte 1: the ack file's length (taken from the rest first); the rest is
// segment 1. Repairs make valid records and acks common: every "SRS1" in the segment gets
// correct CRCs, every ack entry names one of those positions with a correct check.
//
// The expected outcome comes from an independent model of the documented recovery rules
// (spool.hpp "Recovery", format.hpp) with its own bitwise CRC-32C. Properties:
// - spool recovery never returns a record whose checksum fails: every record handed out is at
//   a position the model finds a valid header at, with the payload and span count stored
//   there, and that payload's CRC-32C matches the header;
// - exactly the model's intact, unacknowledged, unexpired records are handed out, each once,
//   in replay order, with the write time of its header (within [epoch, now]); corrupt_records,
//   torn_tails and dropped_records (max_age) are the model's; a torn tail is truncated away;
// - records acked during the run are not handed out again after reopening.
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "common/log.hpp"
#include "fuzz_common.hpp"
#include "spool/spool.hpp"

using namespace spanrelay;
using namespace spanrelay::fuzz;
namespace fs = std::filesystem;

namespace {

// CRC-32C, bit by bit: the reference for the spool's table and SSE4.2 versions.
std::uint32_t crc32c_ref(const unsigned char* p, std::size_t n, std::uint32_t crc = 0) {
  crc = ~crc;
  for (std::size_t i = 0; i < n; ++i) {
    crc ^= p[i];
    for (int k = 0; k < 8; ++k) {
      crc = (crc >> 1) ^ (0x82F63B78u & (0u - (crc & 1u)));
    }
  }
  return ~crc;
}

std::uint32_t le32(const unsigned char* p) {
  return std::uint32_t(p[0]) | std::uint32_t(p[1]) << 8 | std::uint32_t(p[2]) << 16 |
         std::uint32_t(p[3]) << 24;
}
std::uint64_t le64(const unsigned char* p) {
  return std::uint64_t(le32(p)) | std::uint64_t(le32(p + 4)) << 32;
}
void put32(unsigned char* p, std::uint32_t v) {
  for (int i = 0; i < 4; ++i) {
    p[i] = static_cast<unsigned char>(v >> (8 * i));
  }
}

constexpr std::size_t kHeader = 32;
constexpr std::uint32_t kMagic = 0x31535253u;  // "SRS1"
constexpr std::uint32_t kMaxPayload = 1u << 30;
constexpr std::int64_t kNowMs = 1'700'000'000'000;
constexpr std::int64_t kMaxAgeMs = 3'600'000;

// format.hpp: magic, flags 0, header CRC over bytes 0..27, length within the bound.
bool header_valid(const std::string& seg, std::size_t off) {
  const auto* p = reinterpret_cast<const unsigned char*>(seg.data()) + off;
  return off + kHeader <= seg.size() && le32(p) == kMagic && le32(p + 12) == 0 &&
         le32(p + 28) == crc32c_ref(p, 28) && le32(p + 4) <= kMaxPayload;
}

struct Model {
  std::vector<std::size_t> records;  // offsets of intact records, in file order
  std::uint64_t corrupt = 0;
  std::optional<std::size_t> torn_at;
};

// spool.hpp "Recovery": a bad header is skipped by scanning forward for the next valid header
// (the bytes between count as one corrupt record); a record whose payload fails its CRC is one
// corrupt record; a header prefix or a valid header whose payload runs past the end is a torn
// tail.
Model recover_model(const std::string& seg) {
  Model m;
  std::size_t off = 0;
  while (off < seg.size()) {
    if (seg.size() - off < kHeader) {
      m.torn_at = off;
      break;
    }
    if (!header_valid(seg, off)) {
      std::size_t next = off + 1;
      while (next < seg.size() && !header_valid(seg, next)) {
        ++next;
      }
      ++m.corrupt;
      off = next;
      continue;
    }
    const auto* p = reinterpret_cast<const unsigned char*>(seg.data()) + off;
    const std::size_t end = off + kHeader + le32(p + 4);
    if (end > seg.size()) {
      m.torn_at = off;
      break;
    }
    if (crc32c_ref(p + kHeader, le32(p + 4)) == le32(p + 24)) {
      m.records.push_back(off);
    } else {
      ++m.corrupt;
    }
    off = end;
  }
  return m;
}

// An ack entry's check: CRC-32C of "SRA1" + seq (8 bytes LE) + offset (4 bytes LE).
std::uint32_t ack_check(std::uint64_t seq, std::uint32_t offset) {
  unsigned char b[16] = {'S', 'R', 'A', '1'};
  for (int i = 0; i < 8; ++i) {
    b[4 + i] = static_cast<unsigned char>(seq >> (8 * i));
  }
  put32(b + 12, offset);
  return crc32c_ref(b, sizeof b);
}

std::vector<std::size_t> magic_positions(const std::string& seg) {
  std::vector<std::size_t> out;
  for (std::size_t pos = seg.find("SRS1"); pos != std::string::npos;
       pos = seg.find("SRS1", pos + 1)) {
    out.push_back(pos);
  }
  return out;
}

// Gives every "SRS1" with room for a header correct CRCs (last first, so that a payload's CRC
// covers the headers repaired inside it).
void repair_records(std::string& seg) {
  auto* b = reinterpret_cast<unsigned char*>(seg.data());
  const std::vector<std::size_t> at = magic_positions(seg);
  for (auto it = at.rbegin(); it != at.rend(); ++it) {
    const std::size_t off = *it;
    if (off + kHeader > seg.size()) {
      continue;
    }
    const std::uint32_t length = le32(b + off + 4);
    if (off + kHeader + length <= seg.size()) {
      put32(b + off + 24, crc32c_ref(b + off + kHeader, length));
    }
    put32(b + off + 28, crc32c_ref(b + off, 28));
  }
}

// Every whole ack entry names the (entry[0] % n)-th "SRS1" and gets a correct check.
void repair_acks(std::string& ack, const std::string& seg) {
  const std::vector<std::size_t> at = magic_positions(seg);
  auto* b = reinterpret_cast<unsigned char*>(ack.data());
  for (std::size_t i = 0; i + 8 <= ack.size(); i += 8) {
    const std::uint32_t offset =
        at.empty() ? le32(b + i) : static_cast<std::uint32_t>(at[b[i] % at.size()]);
    put32(b + i, offset);
    put32(b + i + 4, ack_check(1, offset));
  }
}

std::string g_base;  // the spool path; the exporter directory is g_base/e

void write_file(const fs::path& path, const std::string& bytes) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  FUZZ_CHECK(f.good());
}

void remove_base() {
  std::error_code ec;
  fs::remove_all(g_base, ec);
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  init_logging("off", false);
  const char* tmp = std::getenv("TMPDIR");
  std::string dir = tmp != nullptr && *tmp != '\0' ? tmp
                    : ::access("/dev/shm", W_OK) == 0 ? "/dev/shm"
                                                       : "/tmp";
  std::string pattern = dir + "/spanrelay-fuzz-spool-XXXXXX";
  FUZZ_CHECK(::mkdtemp(pattern.data()) != nullptr);
  g_base = pattern;
  std::atexit(remove_base);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  Input in{data, size};
  const std::uint8_t mode = in.byte();
  const std::size_t ack_size = in.byte();
  std::string rest(in.rest());
  std::string ack = rest.substr(0, ack_size);
  std::string seg = rest.substr(ack.size());
  if ((mode & 1) != 0) {
    repair_records(seg);
  }
  if ((mode & 2) != 0) {
    repair_acks(ack, seg);
  }
  const bool newest_first = (mode & 4) != 0;

  const fs::path dir = fs::path(g_base) / "e";
  fs::create_directories(dir);
  const fs::path seg_path = dir / "00000000000000000001.seg";
  const fs::path ack_path = dir / "00000000000000000001.ack";
  write_file(seg_path, seg);
  if (!ack.empty()) {
    write_file(ack_path, ack);
  }

  // The model's expectations.
  const Model model = recover_model(seg);
  std::set<std::size_t> acked;
  for (std::size_t i = 0; i + 8 <= ack.size(); i += 8) {
    const auto* p = reinterpret_cast<const unsigned char*>(ack.data()) + i;
    if (le32(p + 4) == ack_check(1, le32(p))) {
      acked.insert(le32(p));
    }
  }
  const bool max_age = (mode & 8) != 0;
  std::vector<std::size_t> expected;
  std::uint64_t expired = 0;
  for (const std::size_t off : model.records) {
    if (acked.contains(off)) {
      continue;
    }
    const auto written = static_cast<std::int64_t>(
        le64(reinterpret_cast<const unsigned char*>(seg.data()) + off + 16));
    // Older than max_age, in exact arithmetic (no 64-bit overflow).
    if (max_age && static_cast<__int128>(kNowMs) - written > kMaxAgeMs) {
      ++expired;
      continue;
    }
    expected.push_back(off);
  }
  if (newest_first) {
    std::reverse(expected.begin(), expected.end());
  }

  SpoolOptions options;
  options.path = g_base;
  options.fsync = SpoolFsync::kNever;
  options.replay = newest_first ? SpoolReplay::kNewestFirst : SpoolReplay::kOldestFirst;
  options.clock = [] {
    return std::chrono::system_clock::time_point(std::chrono::milliseconds(kNowMs));
  };
  if (max_age) {
    options.max_age = std::chrono::milliseconds(kMaxAgeMs);
  }
  {
    auto spool = Spool::open(options, "e");
    FUZZ_CHECK(get(spool->stats().torn_tails) == (model.torn_at ? 1u : 0u));
    FUZZ_CHECK(get(spool->stats().corrupt_records) == model.corrupt);
    FUZZ_CHECK(spool->pending_records() == expected.size());
    FUZZ_CHECK(get(spool->stats().dropped_records) == expired);
    if (expected.empty()) {
      FUZZ_CHECK(!fs::exists(seg_path));  // nothing live: the segment is deleted
      FUZZ_CHECK(!fs::exists(ack_path));
    } else {
      FUZZ_CHECK(fs::file_size(seg_path) == model.torn_at.value_or(seg.size()));
    }
    std::vector<std::size_t> got;
    while (auto rec = spool->next()) {
      FUZZ_CHECK(rec->id >> 32 == 1);
      const std::size_t off = rec->id & 0xffffffffu;
      got.push_back(off);
      // The record handed out is an intact one of the file, byte for byte.
      FUZZ_CHECK(header_valid(seg, off));
      const auto* p = reinterpret_cast<const unsigned char*>(seg.data()) + off;
      FUZZ_CHECK(rec->payload.size() == le32(p + 4));
      FUZZ_CHECK(off + kHeader + rec->payload.size() <= seg.size());
      FUZZ_CHECK(rec->payload == seg.substr(off + kHeader, rec->payload.size()));
      FUZZ_CHECK(crc32c_ref(reinterpret_cast<const unsigned char*>(rec->payload.data()),
                            rec->payload.size()) == le32(p + 24));
      FUZZ_CHECK(rec->spans == le32(p + 8));
      FUZZ_CHECK(std::chrono::duration_cast<std::chrono::milliseconds>(
                     rec->written.time_since_epoch())
                     .count() ==
                 std::clamp<std::int64_t>(static_cast<std::int64_t>(le64(p + 16)), 0, kNowMs));
      FUZZ_CHECK(spool->ack(rec->id));
    }
    FUZZ_CHECK(got == expected);
    FUZZ_CHECK(get(spool->stats().corrupt_records) == model.corrupt);  // nothing more at read
  }
  {
    auto spool = Spool::open(options, "e");  // everything was acked
    FUZZ_CHECK(spool->pending_records() == 0);
    FUZZ_CHECK(!spool->next());
  }
  for (const auto& entry : fs::directory_iterator(dir)) {
    fs::remove(entry.path());
  }
  return 0;
}
