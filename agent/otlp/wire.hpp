#pragma once
// Protobuf wire-format tools for ExportTraceServiceRequest, used on the hot path instead of a
// full decode. ExportTraceServiceRequest has one field (repeated ResourceSpans = 1), so
// serialized requests concatenate into one valid request.

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

namespace spanrelay::otlp {

// Deepest message nesting accepted (the request itself is depth 0). Below protobuf's own
// default recursion limit (100), so whatever passes the scanner also parses with libprotobuf.
inline constexpr int max_message_depth = 90;

struct ScanResult {
  bool ok = false;
  std::uint32_t spans = 0;          // all spans, valid or not
  std::uint32_t invalid_spans = 0;  // trace id not 16 non-zero bytes or span id not 8
  std::string error;                // for the client when !ok
};

// Validates a serialized ExportTraceServiceRequest: every tag, varint and length of every
// known message (unknown fields are skipped by wire type and kept), UTF-8 of string fields,
// nesting depth. Counts spans and spans with invalid ids. Never throws, never recurses past
// max_message_depth.
ScanResult scan_request(std::string_view request) noexcept;

// Copy of a scanned-valid request without the spans whose ids are invalid; ScopeSpans and
// ResourceSpans that become empty are kept (they are harmless and keep their metadata).
std::string drop_invalid_spans(std::string_view request);

// Splits a scanned-valid request into requests of at most max_bytes and max_spans each, at
// ResourceSpans, ScopeSpans and Span boundaries (a single span over max_bytes goes alone).
// Calls emit in order; every span of the input is in exactly one output.
using EmitFn = std::function<void(std::string&& request, std::uint32_t spans)>;
void split_request(std::string_view request, std::size_t max_bytes, std::size_t max_spans,
                   const EmitFn& emit);

// Counts spans without validating (input must have passed scan_request).
std::uint32_t count_spans(std::string_view request) noexcept;

// --- minimal wire writer, shared by the splitter and response encoders ---
std::size_t varint_size(std::uint64_t v) noexcept;
void put_varint(std::string& out, std::uint64_t v);
// Appends tag (field, wire type 2) + length + payload.
void put_len_field(std::string& out, std::uint32_t field, std::string_view payload);
void put_varint_field(std::string& out, std::uint32_t field, std::uint64_t v);

}  // namespace spanrelay::otlp
