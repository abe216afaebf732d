#pragma once
// Bodies of OTLP responses in the request's encoding (protobuf or OTLP/JSON).

#include <cstdint>
#include <string>
#include <string_view>

namespace spanrelay::otlp {

enum class Encoding { kProtobuf, kJson };

// gRPC status codes used in google.rpc.Status bodies.
enum class Code : std::int32_t {
  kOk = 0, kCancelled = 1, kUnknown = 2, kInvalidArgument = 3, kDeadlineExceeded = 4,
  kNotFound = 5, kResourceExhausted = 8, kFailedPrecondition = 9, kAborted = 10,
  kOutOfRange = 11, kUnimplemented = 12, kInternal = 13, kUnavailable = 14, kDataLoss = 15,
  kUnauthenticated = 16,
};

// ExportTraceServiceResponse; partial_success is set only when rejected_spans > 0.
std::string export_response(Encoding enc, std::int64_t rejected_spans, std::string_view message);

// google.rpc.Status {code, message}.
std::string status_body(Encoding enc, Code code, std::string_view message);

// Reads partial_success.rejected_spans (and its message) from a serialized
// ExportTraceServiceResponse; returns false if the bytes are not one.
bool parse_export_response(std::string_view body, std::int64_t& rejected, std::string& message);

}  // namespace spanrelay::otlp
