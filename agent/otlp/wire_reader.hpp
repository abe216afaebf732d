#pragma once
// Reading protobuf wire bytes field by field, without a schema: the scanner, the splitter
// and the processors walk OTLP messages with it.

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace spanrelay::otlp::wire {

enum WireType : std::uint8_t { kVarint = 0, kFixed64 = 1, kLen = 2, kFixed32 = 5 };

// libprotobuf (3.21) reads a tag or a length in at most 5 bytes and refuses a longer encoding,
// even of a small value (the protobuf encoding allows 10); the scanner must refuse what it
// refuses, since whatever the scanner accepts must parse there.
inline constexpr int kMaxTagBytes = 5;

// A cursor over one message's bytes.
struct Reader {
  const std::uint8_t* p;
  const std::uint8_t* end;

  explicit Reader(std::string_view s) noexcept
      : p(reinterpret_cast<const std::uint8_t*>(s.data())), end(p + s.size()) {}
  bool done() const noexcept { return p >= end; }

  // A varint of at most max_bytes bytes: 10 for a value; kMaxTagBytes for a tag or a length.
  bool varint(std::uint64_t& v, int max_bytes = 10) noexcept {
    v = 0;
    for (int shift = 0; shift < 7 * max_bytes; shift += 7) {
      if (p >= end) {
        return false;
      }
      const std::uint8_t b = *p++;
      if (shift == 63 && b > 1) {
        return false;  // more than 64 bits
      }
      v |= static_cast<std::uint64_t>(b & 0x7f) << shift;
      if ((b & 0x80) == 0) {
        return true;
      }
    }
    return false;
  }
  bool skip(std::size_t n) noexcept {
    if (static_cast<std::size_t>(end - p) < n) {
      return false;
    }
    p += n;
    return true;
  }
  bool fixed(std::size_t n, std::uint64_t& v) noexcept {
    if (static_cast<std::size_t>(end - p) < n) {
      return false;
    }
    v = 0;
    for (std::size_t i = 0; i < n; ++i) {
      v |= static_cast<std::uint64_t>(p[i]) << (8 * i);
    }
    p += n;
    return true;
  }
  bool bytes(std::string_view& out) noexcept {
    std::uint64_t len = 0;
    if (!varint(len, kMaxTagBytes) || len > static_cast<std::uint64_t>(end - p)) {
      return false;
    }
    out = std::string_view(reinterpret_cast<const char*>(p), static_cast<std::size_t>(len));
    p += len;
    return true;
  }
};

// One field as read from the wire.
struct Field {
  std::uint32_t number = 0;
  WireType type = kVarint;
  std::string_view payload;  // LEN fields only
  std::uint64_t value = 0;   // varint and fixed fields: the value (fixed: little-endian)
  const std::uint8_t* begin = nullptr;  // the whole field, tag included
  const std::uint8_t* end = nullptr;
};

enum class ReadStatus { kOk, kEnd, kMalformed };

inline ReadStatus next_field(Reader& r, Field& f) noexcept {
  if (r.done()) {
    return ReadStatus::kEnd;
  }
  f.begin = r.p;
  std::uint64_t tag = 0;
  if (!r.varint(tag, kMaxTagBytes) || tag > 0xffffffffu) {
    return ReadStatus::kMalformed;
  }
  f.number = static_cast<std::uint32_t>(tag >> 3);
  if (f.number == 0) {
    return ReadStatus::kMalformed;
  }
  bool ok = false;
  switch (tag & 7) {
    case kVarint: f.type = kVarint; ok = r.varint(f.value); break;
    case kFixed64: f.type = kFixed64; ok = r.fixed(8, f.value); break;
    case kLen: f.type = kLen; ok = r.bytes(f.payload); break;
    case kFixed32: f.type = kFixed32; ok = r.fixed(4, f.value); break;
    default: ok = false;  // groups (3, 4) and reserved types are not accepted
  }
  f.end = r.p;
  return ok ? ReadStatus::kOk : ReadStatus::kMalformed;
}


}  // namespace spanrelay::otlp::wire
