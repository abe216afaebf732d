// libFuzzer harness: bounded gzip / zlib inflation (otlp::inflate_limited, the HTTP receiver's
// Content-Encoding and the gRPC receiver's grpc-encoding), against a reference that decodes the
// whole stream at once, and libdeflate as a second decoder.
//
// Input: byte 0: bit 0 zlib format (else gzip), bit 1 "compress the rest first" (the harness
// compresses the rest with libdeflate at level byte0 >> 2 % 13, so that valid streams of any
// content are common), bit 7 "mutate after compressing" (flips one bit chosen by byte 2);
// byte 1: the output cap, max_output = byte1 * 97 (0 included). Properties:
// - kOk: the output is exactly what the reference decodes (every gzip member in turn), and at
//   most max_output bytes; libdeflate decodes whatever the reference does to the same bytes; kTooLarge: the reference output exceeds max_output; kCorrupt: the
//   reference refuses the stream too (or it is empty); the output is empty unless kOk;
// - a stream the harness compressed and did not mutate always decodes to the original (or is
//   kTooLarge exactly when the original is larger than max_output).
#include <libdeflate.h>
#include <zlib.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "fuzz_common.hpp"
#include "otlp/compression.hpp"

using namespace spanrelay;
using namespace spanrelay::fuzz;

namespace {

// Enough for anything a 4 KiB input can inflate to (deflate expands at most ~1032:1).
constexpr std::size_t kReferenceCap = 8u << 20;

// The reference: the whole stream decoded at once into a buffer no input can fill, with zlib
// (the decoder's decisions are zlib's; what is checked is the cap, the loop over output space
// and gzip members, truncation and trailing bytes). nullopt when the stream is invalid. gzip:
// one or more members back to back, nothing after the last; zlib: one stream, nothing after.
std::optional<std::string> reference_inflate(std::string_view in, bool zlib_format) {
  static std::string buffer(kReferenceCap, '\0');
  z_stream zs{};
  if (inflateInit2(&zs, zlib_format ? MAX_WBITS : 16 + MAX_WBITS) != Z_OK) {
    return std::nullopt;
  }
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
  zs.avail_in = static_cast<uInt>(in.size());
  zs.next_out = reinterpret_cast<Bytef*>(buffer.data());
  zs.avail_out = static_cast<uInt>(buffer.size());
  bool ok = false;
  for (;;) {
    const int rc = inflate(&zs, Z_FINISH);
    if (rc != Z_STREAM_END) {
      break;  // an error, or the input ended inside a stream (the buffer cannot fill)
    }
    if (zs.avail_in == 0) {
      ok = true;
      break;
    }
    if (zlib_format || inflateReset(&zs) != Z_OK) {
      break;
    }
  }
  const std::size_t produced = buffer.size() - zs.avail_out;
  inflateEnd(&zs);
  if (!ok) {
    return std::nullopt;
  }
  return buffer.substr(0, produced);
}

// A second decoder for what zlib accepts: libdeflate must decode it to the same bytes. (It is
// more lenient than zlib, e.g. with code-length repeats that run past the end of a dynamic
// Huffman header, so it cannot say what is invalid.)
struct Decompressor {
  libdeflate_decompressor* d = libdeflate_alloc_decompressor();
  ~Decompressor() { libdeflate_free_decompressor(d); }
};

std::optional<std::string> libdeflate_inflate(std::string_view in, bool zlib_format) {
  static Decompressor dec;
  static std::string buffer(kReferenceCap, '\0');
  std::string out;
  std::size_t pos = 0;
  do {
    std::size_t used = 0;
    std::size_t produced = 0;
    const libdeflate_result r =
        zlib_format
            ? libdeflate_zlib_decompress_ex(dec.d, in.data() + pos, in.size() - pos,
                                            buffer.data(), buffer.size(), &used, &produced)
            : libdeflate_gzip_decompress_ex(dec.d, in.data() + pos, in.size() - pos,
                                            buffer.data(), buffer.size(), &used, &produced);
    if (r != LIBDEFLATE_SUCCESS) {
      return std::nullopt;
    }
    out.append(buffer.data(), produced);
    pos += used;
  } while (!zlib_format && pos < in.size());
  if (pos != in.size()) {
    return std::nullopt;
  }
  return out;
}

std::string compress(std::string_view plain, bool zlib_format, int level) {
  static libdeflate_compressor* compressors[13] = {};  // by level, kept for the whole run
  libdeflate_compressor*& c = compressors[level];
  if (c == nullptr) {
    c = libdeflate_alloc_compressor(level);
    FUZZ_CHECK(c != nullptr);
  }
  const std::size_t bound = zlib_format ? libdeflate_zlib_compress_bound(c, plain.size())
                                        : libdeflate_gzip_compress_bound(c, plain.size());
  std::string out(bound, '\0');
  const std::size_t n =
      zlib_format ? libdeflate_zlib_compress(c, plain.data(), plain.size(), out.data(), bound)
                  : libdeflate_gzip_compress(c, plain.data(), plain.size(), out.data(), bound);
  FUZZ_CHECK(n > 0);
  out.resize(n);
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  Input in{data, size};
  const std::uint8_t mode = in.byte();
  const bool zlib_format = (mode & 1) != 0;
  const bool compress_first = (mode & 2) != 0;
  const bool mutate = (mode & 0x80) != 0;
  const std::size_t max_output = std::size_t{in.byte()} * 97;
  const std::uint8_t flip = in.byte();

  std::string stream(in.rest());
  const std::string plain = stream;
  if (compress_first) {
    stream = compress(plain, zlib_format, (mode >> 2) % 13);
    if (mutate && !stream.empty()) {
      const std::size_t bit = flip % (stream.size() * 8);
      stream[bit / 8] = static_cast<char>(stream[bit / 8] ^ (1 << (bit % 8)));
    }
  }

  std::string out = "not cleared";
  const otlp::InflateStatus status = otlp::inflate_limited(stream, zlib_format, max_output, out);
  const std::optional<std::string> expected = reference_inflate(stream, zlib_format);
  if (expected) {
    const std::optional<std::string> second = libdeflate_inflate(stream, zlib_format);
    FUZZ_CHECK(second && *second == *expected);
  }
  switch (status) {
    case otlp::InflateStatus::kOk:
      FUZZ_CHECK(expected.has_value());
      FUZZ_CHECK(out.size() <= max_output);
      FUZZ_CHECK(out == *expected);
      break;
    case otlp::InflateStatus::kTooLarge:
      FUZZ_CHECK(out.empty());
      // Inflation stops at the cap: the stream may be invalid past it.
      FUZZ_CHECK(!expected.has_value() || expected->size() > max_output);
      break;
    case otlp::InflateStatus::kCorrupt:
      FUZZ_CHECK(out.empty());
      FUZZ_CHECK(!expected.has_value());
      break;
  }
  if (expected && status != otlp::InflateStatus::kOk) {
    FUZZ_CHECK(expected->size() > max_output);  // a valid stream within the cap is never refused
  }
  if (compress_first && !mutate) {
    FUZZ_CHECK(expected && *expected == plain);
    FUZZ_CHECK(status == (plain.size() > max_output ? otlp::InflateStatus::kTooLarge
                                                    : otlp::InflateStatus::kOk));
  }
  return 0;
}
