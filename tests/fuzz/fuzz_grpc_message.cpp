// libFuzzer harness: reading one gRPC request message (read_message, agent/receivers/grpc/
// grpc_message.hpp), fed grpc::ByteBuffers made the way gRPC core hands them over when its
// own decompression is off: the message's bytes in one or more slices, and the algorithm the
// request's grpc-encoding named recorded on the core buffer.
//
// Input: byte 0: algorithm (% 4: none, deflate, gzip, or an unknown value); byte 1: max_bytes
// = byte1 * 67; byte 2: where to cut the bytes into slices (each bit a cut point, spread over
// the message); the rest is the message. Properties:
// - none: kOk with exactly the bytes when they fit in max_bytes, kTooLarge otherwise;
// - gzip / deflate: what inflate_limited says of the concatenated slices, with the same
//   output (and an empty message is kOk and empty); deflate is a zlib stream;
// - any other algorithm: kUnsupported, nothing read;
// - no message at all (a null core buffer): kOk, empty.
#include <grpc/grpc.h>
#include <grpc/slice.h>
#include <grpcpp/support/byte_buffer.h>
#include <grpcpp/support/slice.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "fuzz_common.hpp"
#include "otlp/compression.hpp"
#include "receivers/grpc/grpc_message.hpp"

using namespace spanrelay;
using namespace spanrelay::fuzz;

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  grpc_init();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  Input in{data, size};
  const std::uint8_t which = in.byte() % 4;
  const std::size_t max_bytes = std::size_t{in.byte()} * 67;
  const std::uint8_t cuts = in.byte();
  const std::string body(in.rest());

  std::string out;
  if (which == 0 && cuts == 0xff && body.empty()) {
    grpc::ByteBuffer none;  // no message at all
    FUZZ_CHECK(read_message(none, max_bytes, out) == ReadStatus::kOk);
    FUZZ_CHECK(out.empty());
    return 0;
  }

  std::vector<grpc::Slice> slices;
  std::size_t from = 0;
  for (int bit = 0; bit < 8; ++bit) {
    if ((cuts >> bit & 1) == 0) {
      continue;
    }
    const std::size_t to = body.size() * static_cast<std::size_t>(bit + 1) / 9;
    if (to > from) {
      slices.emplace_back(body.data() + from, to - from);
      from = to;
    }
  }
  slices.emplace_back(body.data() + from, body.size() - from);
  grpc::ByteBuffer message(slices.data(), slices.size());
  const grpc_compression_algorithm algorithm =
      which == 0   ? GRPC_COMPRESS_NONE
      : which == 1 ? GRPC_COMPRESS_DEFLATE
      : which == 2 ? GRPC_COMPRESS_GZIP
                   : GRPC_COMPRESS_ALGORITHMS_COUNT;  // what no request can name here
  grpc::internal::GrpcByteBufferPeer(&message).c_buffer()->data.raw.compression = algorithm;

  const ReadStatus status = read_message(message, max_bytes, out);
  switch (which) {
    case 0:
      if (body.size() <= max_bytes) {
        FUZZ_CHECK(status == ReadStatus::kOk);
        FUZZ_CHECK(out == body);
      } else {
        FUZZ_CHECK(status == ReadStatus::kTooLarge);
      }
      break;
    case 1:
    case 2: {
      if (body.empty()) {
        FUZZ_CHECK(status == ReadStatus::kOk);
        FUZZ_CHECK(out.empty());
        break;
      }
      std::string expected;
      const otlp::InflateStatus inflated =
          otlp::inflate_limited(body, which == 1, max_bytes, expected);
      switch (inflated) {
        case otlp::InflateStatus::kOk:
          FUZZ_CHECK(status == ReadStatus::kOk);
          FUZZ_CHECK(out == expected);
          break;
        case otlp::InflateStatus::kTooLarge:
          FUZZ_CHECK(status == ReadStatus::kTooLarge);
          break;
        case otlp::InflateStatus::kCorrupt:
          FUZZ_CHECK(status == ReadStatus::kCorrupt);
          break;
      }
      break;
    }
    default:
      FUZZ_CHECK(status == ReadStatus::kUnsupported);
      FUZZ_CHECK(out.empty());
      break;
  }
  return 0;
}
