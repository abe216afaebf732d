#pragma once
// OTLP/JSON <-> protobuf wire bytes for ExportTraceServiceRequest.
// OTLP/JSON differs from canonical protobuf JSON: trace/span ids are hex, enums are integers,
// keys lowerCamelCase (snake_case accepted too), 64-bit ints are strings or numbers,
// unknown fields are ignored, null means unset.

#include <string>
#include <string_view>

namespace spanrelay::otlp {

// Converts a JSON ExportTraceServiceRequest to serialized protobuf, appended to `out`.
// Returns false with a message for the client in `error` on: invalid JSON or UTF-8, nesting
// deeper than max_json_depth, protobuf messages nested deeper than the wire scanner's
// max_message_depth (so that what converts also passes the scanner), wrong value types, bad hex ids (wrong length, all zero, not hex),
// bad base64 in bytesValue. noexcept: no exception escapes.
bool json_to_protobuf(std::string_view json, std::string& out, std::string& error) noexcept;

// Converts a serialized ExportTraceServiceRequest to one line of OTLP/JSON (no newline).
// Returns false with a message in `error` if the bytes do not parse.
bool protobuf_to_json(std::string_view protobuf, std::string& out, std::string& error) noexcept;

// Deepest JSON nesting accepted (objects + arrays); deeper input is rejected, never recursed.
// protobuf_to_json writes anything the wire scanner accepts (messages nested max_message_depth
// = 90 deep) in at most 138 levels (an AnyValue chain through arrayValue, 3 JSON levels per 2
// messages), so its output always converts back.
inline constexpr int max_json_depth = 150;

}  // namespace spanrelay::otlp
