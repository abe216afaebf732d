#include "receivers/grpc/grpc_message.hpp"

#include <grpc/slice.h>

#include <vector>

#include "otlp/compression.hpp"

namespace spanrelay {

ReadStatus read_message(grpc::ByteBuffer& message, std::size_t max_bytes, std::string& out) {
  const grpc_byte_buffer* raw = grpc::internal::GrpcByteBufferPeer(&message).c_buffer();
  if (raw == nullptr) {
    return ReadStatus::kOk;  // an empty message
  }
  const grpc_compression_algorithm algorithm = raw->data.raw.compression;
  if (algorithm == GRPC_COMPRESS_NONE) {
    if (message.Length() > max_bytes) {
      return ReadStatus::kTooLarge;  // gRPC checks this too (SetMaxReceiveMessageSize)
    }
    std::vector<grpc::Slice> slices;
    if (!message.Dump(&slices).ok()) {
      return ReadStatus::kCorrupt;
    }
    out.reserve(message.Length());
    for (const grpc::Slice& slice : slices) {
      out.append(reinterpret_cast<const char*>(slice.begin()), slice.size());
    }
    return ReadStatus::kOk;
  }
  if (algorithm != GRPC_COMPRESS_GZIP && algorithm != GRPC_COMPRESS_DEFLATE) {
    return ReadStatus::kUnsupported;
  }
  // Reading the slices directly: ByteBuffer::Dump would inflate without a limit.
  const grpc_slice_buffer& slices = raw->data.raw.slice_buffer;
  std::string compressed;
  compressed.reserve(slices.length);
  for (std::size_t i = 0; i < slices.count; ++i) {
    compressed.append(reinterpret_cast<const char*>(GRPC_SLICE_START_PTR(slices.slices[i])),
                      GRPC_SLICE_LENGTH(slices.slices[i]));
  }
  if (compressed.empty()) {
    return ReadStatus::kOk;
  }
  // gRPC's "deflate" is a zlib stream (RFC 1950), like HTTP's.
  switch (otlp::inflate_limited(compressed, algorithm == GRPC_COMPRESS_DEFLATE, max_bytes, out)) {
    case otlp::InflateStatus::kOk:
      return ReadStatus::kOk;
    case otlp::InflateStatus::kTooLarge:
      return ReadStatus::kTooLarge;
    case otlp::InflateStatus::kCorrupt:
      break;
  }
  return ReadStatus::kCorrupt;
}

}  // namespace spanrelay
