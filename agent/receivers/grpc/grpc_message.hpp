#pragma once
// Reading one received gRPC request message into a contiguous string, with our own bounded
// decompression (gRPC's is turned off: see the receiver). Its own file so that it can be
// fuzzed without a server (tests/fuzz/fuzz_grpc_message.cpp).

#include <grpc/byte_buffer.h>
#include <grpcpp/support/byte_buffer.h>

#include <cstddef>
#include <string>

// gRPC 1.51 inflates a compressed message completely and only then compares it with the
// receive limit: a 4 MiB gzip bomb would cost ~4 GiB before being refused. So its
// decompression is turned off (GRPC_ARG_ENABLE_PER_MESSAGE_DECOMPRESSION = 0) and done here,
// with an output cap. Which algorithm compressed a message is only recorded on the core
// grpc_byte_buffer (public C API), which grpc::ByteBuffer shows only to its declared friends;
// this is one of them. If a gRPC upgrade drops the friend, this stops compiling (it cannot
// silently go wrong).
namespace grpc::internal {
class GrpcByteBufferPeer {
 public:
  explicit GrpcByteBufferPeer(ByteBuffer* buffer) : buffer_(buffer) {}
  grpc_byte_buffer* c_buffer() { return buffer_->c_buffer(); }

 private:
  ByteBuffer* buffer_;
};
}  // namespace grpc::internal

namespace spanrelay {

enum class ReadStatus { kOk, kTooLarge, kCorrupt, kUnsupported };

// The request message as one contiguous string (what the Intake takes): its slices copied,
// or inflated with an output cap of max_bytes when the client compressed it (gzip, or
// deflate as a zlib stream). kUnsupported: another algorithm. An empty message is kOk.
ReadStatus read_message(grpc::ByteBuffer& message, std::size_t max_bytes, std::string& out);

}  // namespace spanrelay
