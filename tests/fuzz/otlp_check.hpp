#pragma once
// What the OTLP harnesses compare: a request flattened to its spans, each with the resource
// and scope it belongs to (serialized, without their children), as libprotobuf parses it.

#include <google/protobuf/util/field_comparator.h>
#include <google/protobuf/util/message_differencer.h>

#include <cstdio>
#include <string>
#include <string_view>
#include <tuple>
#include <vector>

#include "fuzz_common.hpp"
#include "opentelemetry/proto/collector/trace/v1/trace_service.pb.h"
#include "otlp/json.hpp"

namespace spanrelay::fuzz {

using opentelemetry::proto::collector::trace::v1::ExportTraceServiceRequest;
namespace trace = opentelemetry::proto::trace::v1;

// (ResourceSpans without scope_spans, ScopeSpans without spans, Span), all serialized.
using SpanInContext = std::tuple<std::string, std::string, std::string>;

inline std::vector<SpanInContext> flatten(const ExportTraceServiceRequest& request) {
  std::vector<SpanInContext> out;
  for (const auto& rs : request.resource_spans()) {
    trace::ResourceSpans rs_head = rs;
    rs_head.clear_scope_spans();
    const std::string rs_bytes = rs_head.SerializeAsString();
    for (const auto& ss : rs.scope_spans()) {
      trace::ScopeSpans ss_head = ss;
      ss_head.clear_spans();
      const std::string ss_bytes = ss_head.SerializeAsString();
      for (const auto& span : ss.spans()) {
        out.emplace_back(rs_bytes, ss_bytes, span.SerializeAsString());
      }
    }
  }
  return out;
}

inline bool all_zero(const std::string& s) {
  return s.find_first_not_of('\0') == std::string::npos;
}

// The receivers' rule for a span's ids (wire.hpp): trace id 16 bytes, span id 8, neither zero.
inline bool ids_valid(const trace::Span& span) {
  return span.trace_id().size() == 16 && span.span_id().size() == 8 &&
         !all_zero(span.trace_id()) && !all_zero(span.span_id());
}

inline bool parse(std::string_view bytes, ExportTraceServiceRequest& out) {
  return out.ParseFromArray(bytes.data(), static_cast<int>(bytes.size()));
}

// Field by field; a NaN double equals a NaN (whatever its payload bits).
inline bool same(const google::protobuf::Message& a, const google::protobuf::Message& b) {
  google::protobuf::util::DefaultFieldComparator comparator;
  comparator.set_treat_nan_as_equal(true);
  google::protobuf::util::MessageDifferencer differencer;
  differencer.set_field_comparator(&comparator);
  return differencer.Compare(a, b);
}

// protobuf_to_json's output must convert back: returns the protobuf json_to_protobuf makes of
// `json`, parsed into `back_parsed`.
inline std::string json_back(const std::string& json, ExportTraceServiceRequest& back_parsed) {
  std::string back, error;
  if (!otlp::json_to_protobuf(json, back, error)) {
    std::fprintf(stderr, "json_to_protobuf refused protobuf_to_json's output: %s\n%s\n",
                 error.c_str(), json.c_str());
    FUZZ_CHECK(!"protobuf_to_json output is accepted by json_to_protobuf");
  }
  FUZZ_CHECK(parse(back, back_parsed));
  return back;
}

}  // namespace spanrelay::fuzz
