#include "otlp/compression.hpp"

#include <libdeflate.h>
#include <zlib.h>

#include <algorithm>
#include <new>
#include <stdexcept>

namespace spanrelay::otlp {

InflateStatus inflate_limited(std::string_view in, bool zlib_format, std::size_t max_output,
                              std::string& out) noexcept {
  out.clear();
  z_stream zs{};
  const int window = zlib_format ? MAX_WBITS : 16 + MAX_WBITS;
  if (inflateInit2(&zs, window) != Z_OK) {
    return InflateStatus::kCorrupt;
  }
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
  zs.avail_in = static_cast<uInt>(in.size());
  InflateStatus status = InflateStatus::kOk;
  try {
    // Grow geometrically from a guess; never past max_output + 1 (one byte over = too large).
    std::size_t cap = std::min<std::size_t>(max_output + 1, std::max<std::size_t>(in.size() * 4, 4096));
    out.resize(cap);
    std::size_t produced = 0;
    for (;;) {
      if (produced == out.size()) {
        if (out.size() > max_output) {
          status = InflateStatus::kTooLarge;
          break;
        }
        out.resize(std::min<std::size_t>(max_output + 1, out.size() * 2));
      }
      zs.next_out = reinterpret_cast<Bytef*>(out.data() + produced);
      zs.avail_out = static_cast<uInt>(std::min<std::size_t>(out.size() - produced, 1u << 30));
      const uInt before = zs.avail_out;
      const int rc = inflate(&zs, Z_NO_FLUSH);
      produced += before - zs.avail_out;
      if (produced > max_output) {
        status = InflateStatus::kTooLarge;
        break;
      }
      if (rc == Z_STREAM_END) {
        if (zs.avail_in == 0 || zlib_format) {
          status = zs.avail_in == 0 ? InflateStatus::kOk : InflateStatus::kCorrupt;
          break;
        }
        inflateReset(&zs);  // another gzip member follows
        continue;
      }
      if (rc == Z_BUF_ERROR && zs.avail_in == 0) {
        status = InflateStatus::kCorrupt;  // truncated stream
        break;
      }
      if (rc != Z_OK && rc != Z_BUF_ERROR) {
        status = InflateStatus::kCorrupt;
        break;
      }
    }
    out.resize(std::min(produced, out.size()));
  } catch (const std::bad_alloc&) {
    status = InflateStatus::kTooLarge;
  }
  inflateEnd(&zs);
  if (status != InflateStatus::kOk) {
    out.clear();
  }
  return status;
}

GzipCompressor::GzipCompressor(int level) : compressor_(libdeflate_alloc_compressor(level)) {
  if (compressor_ == nullptr) {
    throw std::bad_alloc();
  }
}

GzipCompressor::~GzipCompressor() { libdeflate_free_compressor(compressor_); }

void GzipCompressor::compress(std::string_view in, std::string& out) {
  const std::size_t bound = libdeflate_gzip_compress_bound(compressor_, in.size());
  if (scratch_size_ < bound) {
    scratch_.reset(new char[bound]);  // uninitialised on purpose
    scratch_size_ = bound;
  }
  // n == 0 cannot happen with a buffer of the bound's size.
  const std::size_t n =
      libdeflate_gzip_compress(compressor_, in.data(), in.size(), scratch_.get(), bound);
  out.assign(scratch_.get(), n);
}

}  // namespace spanrelay::otlp
