#pragma once
// Test data for the integration suite: realistic OTLP trace requests, an independent OTLP/JSON
// rendering of them, and the byte codecs the wire needs (gzip, base64, hex).

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "opentelemetry/proto/collector/trace/v1/trace_service.pb.h"
#include "opentelemetry/proto/trace/v1/trace.pb.h"

namespace it {

namespace otlp_collector = opentelemetry::proto::collector::trace::v1;
namespace otlp_trace = opentelemetry::proto::trace::v1;
namespace otlp_common = opentelemetry::proto::common::v1;
namespace otlp_resource = opentelemetry::proto::resource::v1;

using ExportRequest = otlp_collector::ExportTraceServiceRequest;
using ExportResponse = otlp_collector::ExportTraceServiceResponse;
using Span = otlp_trace::Span;

// The OTLP/gRPC trace export method.
inline constexpr std::string_view otlp_export_method =
    "/opentelemetry.proto.collector.trace.v1.TraceService/Export";

// ---- codecs ----
std::string gzip(std::string_view data);
// nullopt on corrupt input or when the output would exceed max_bytes.
std::optional<std::string> gunzip(std::string_view data, std::size_t max_bytes = 256u << 20);
std::string base64(std::string_view data);
std::string hex(std::string_view bytes);

// ---- builders ----
struct RequestShape {
  std::size_t resources = 1;           // ResourceSpans entries; spans are spread across them
  std::size_t scopes_per_resource = 2;  // ScopeSpans per resource
  std::string name_prefix = "span";    // span names are "<prefix>-<index>"
  std::size_t attribute_padding = 0;   // extra bytes of string attribute per span (to grow size)
  bool random_padding = false;          // padding of random hex digits (compresses ~2:1), not 'p's
};

// n_spans spans with random non-zero ids, parents, every SpanKind, times, attributes of every
// AnyValue type, events, links and a status. Span names are unique within the request.
ExportRequest make_request(std::size_t n_spans, const RequestShape& shape = {});

// 16 / 8 random bytes, never all zero.
std::string random_trace_id();
std::string random_span_id();

// OTLP/JSON of the request, written here independently of the agent: lowerCamelCase keys, hex
// ids, integer enums, 64-bit integers as strings, bytes as base64.
std::string to_otlp_json(const ExportRequest& request);

// A span together with the resource and scope it was sent under.
struct FlatSpan {
  otlp_resource::Resource resource;
  std::string resource_schema_url;
  otlp_common::InstrumentationScope scope;
  std::string scope_schema_url;
  Span span;
};

std::vector<FlatSpan> flatten(const ExportRequest& request);
std::size_t span_count(const ExportRequest& request);
// trace id + span id: identifies a span across requests.
std::string span_key(const Span& span);

// Empty when every span of `sent` arrived exactly once in `received`, with identical span,
// resource and scope; otherwise a description of the differences for the failure message.
std::string compare_delivery(const std::vector<FlatSpan>& sent,
                             const std::vector<FlatSpan>& received);

}  // namespace it
