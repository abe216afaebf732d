#pragma once
// On-disk format of the spool (see spool.hpp for the directory layout and the guarantees).
// All integers are little-endian, whatever the host.
//
// Segment file <seq>.seg: records back to back, each one written by a single write():
//
//   offset size field
//   0      4    magic        "SRS1" (0x31535253)
//   4      4    length       payload bytes, at most kMaxPayload
//   8      4    spans        span count of the payload
//   12     4    flags        0 (reserved; anything else is invalid)
//   16     8    written_ms   write time, unix milliseconds (signed)
//   24     4    payload_crc  CRC-32C of the payload
//   28     4    header_crc   CRC-32C of bytes 0..27 (so it also covers payload_crc)
//   32     n    payload
//
// Ack file <seq>.ack (one per segment, absent until the first ack): 8-byte entries
//
//   0      4    offset       offset of the acknowledged record in <seq>.seg
//   4      4    check        CRC-32C of "SRA1" + seq (8 bytes LE) + offset (4 bytes LE)
//
// An entry that fails its check, is torn (fewer than 8 bytes) or names no record is ignored.

#include <array>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string_view>

#include "spool/crc32c.hpp"

namespace spanrelay::spool {

inline constexpr std::uint32_t kRecordMagic = 0x31535253u;  // "SRS1" read as LE
inline constexpr std::size_t kHeaderSize = 32;
inline constexpr std::uint32_t kMaxPayload = 1u << 30;  // 1 GiB
inline constexpr std::size_t kAckEntrySize = 8;

inline void put_u32(unsigned char* p, std::uint32_t v) noexcept {
  for (int i = 0; i < 4; ++i) {
    p[i] = static_cast<unsigned char>(v >> (8 * i));
  }
}
inline void put_u64(unsigned char* p, std::uint64_t v) noexcept {
  for (int i = 0; i < 8; ++i) {
    p[i] = static_cast<unsigned char>(v >> (8 * i));
  }
}
inline std::uint32_t get_u32(const unsigned char* p) noexcept {
  std::uint32_t v = 0;
  for (int i = 3; i >= 0; --i) {
    v = (v << 8) | p[i];
  }
  return v;
}
inline std::uint64_t get_u64(const unsigned char* p) noexcept {
  std::uint64_t v = 0;
  for (int i = 7; i >= 0; --i) {
    v = (v << 8) | p[i];
  }
  return v;
}

struct RecordHeader {
  std::uint32_t length = 0;
  std::uint32_t spans = 0;
  std::int64_t written_ms = 0;
  std::uint32_t payload_crc = 0;
};

inline std::array<unsigned char, kHeaderSize> encode_header(const RecordHeader& h) noexcept {
  std::array<unsigned char, kHeaderSize> b{};
  put_u32(&b[0], kRecordMagic);
  put_u32(&b[4], h.length);
  put_u32(&b[8], h.spans);
  put_u32(&b[12], 0);
  put_u64(&b[16], static_cast<std::uint64_t>(h.written_ms));
  put_u32(&b[24], h.payload_crc);
  put_u32(&b[28], crc32c(b.data(), 28));
  return b;
}

// Parses and checks a header (magic, flags, header CRC, length bound). `p` must point at
// kHeaderSize readable bytes. Does not look at the payload.
inline std::optional<RecordHeader> decode_header(const unsigned char* p) noexcept {
  if (get_u32(p) != kRecordMagic || get_u32(p + 12) != 0 || get_u32(p + 28) != crc32c(p, 28)) {
    return std::nullopt;
  }
  RecordHeader h;
  h.length = get_u32(p + 4);
  h.spans = get_u32(p + 8);
  h.written_ms = static_cast<std::int64_t>(get_u64(p + 16));
  h.payload_crc = get_u32(p + 24);
  if (h.length > kMaxPayload) {
    return std::nullopt;
  }
  return h;
}

inline std::array<unsigned char, kAckEntrySize> encode_ack(std::uint64_t seq,
                                                           std::uint32_t offset) noexcept {
  std::array<unsigned char, 16> check{'S', 'R', 'A', '1'};
  put_u64(&check[4], seq);
  put_u32(&check[12], offset);
  std::array<unsigned char, kAckEntrySize> e{};
  put_u32(&e[0], offset);
  put_u32(&e[4], crc32c(check.data(), check.size()));
  return e;
}

// The record offset an ack entry names, or nullopt when the entry fails its check.
inline std::optional<std::uint32_t> decode_ack(std::uint64_t seq, const unsigned char* p) noexcept {
  const std::uint32_t offset = get_u32(p);
  const auto expected = encode_ack(seq, offset);
  if (std::memcmp(expected.data(), p, kAckEntrySize) != 0) {
    return std::nullopt;
  }
  return offset;
}

}  // namespace spanrelay::spool
