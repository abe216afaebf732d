#pragma once
// gzip for request bodies: bounded decompression (the limit applies to the output, so a gzip
// bomb costs at most `max_output` bytes of work) and fast compression for the exporters.

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>

struct libdeflate_compressor;

namespace spanrelay::otlp {

enum class InflateStatus { kOk, kTooLarge, kCorrupt };

// Decompresses gzip (or, with zlib_format, an RFC 1950 zlib stream as HTTP "deflate" means)
// into `out`, stopping as soon as the output would exceed max_output. Concatenated gzip
// members are decoded in turn. Never throws.
InflateStatus inflate_limited(std::string_view in, bool zlib_format, std::size_t max_output,
                              std::string& out) noexcept;

// Not thread-safe: one per exporter thread. Level 1 by default: on OTLP protobuf it is about
// twice as fast as level 6 for ~3% larger output (docs/performance.md).
class GzipCompressor {
 public:
  explicit GzipCompressor(int level = 1);
  ~GzipCompressor();
  GzipCompressor(const GzipCompressor&) = delete;
  GzipCompressor& operator=(const GzipCompressor&) = delete;

  // Replaces `out` with the gzip encoding of `in`.
  void compress(std::string_view in, std::string& out);

 private:
  libdeflate_compressor* compressor_;
  // Reused output space: sized to the worst case once, never zero-filled per call.
  std::unique_ptr<char[]> scratch_;
  std::size_t scratch_size_ = 0;
};

}  // namespace spanrelay::otlp
