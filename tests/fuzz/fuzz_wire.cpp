// libFuzzer harness: the OTLP protobuf wire scanner, count_spans, drop_invalid_spans and
// split_request (agent/otlp/wire.hpp), checked against libprotobuf.
//
// Input: 2 bytes choose split_request's max_bytes (1..4096), 1 byte its max_spans (1..32);
// the rest is the request. Properties, for every request scan_request accepts:
// - libprotobuf parses it, and the scanner's span and invalid-span counts are libprotobuf's;
//   count_spans agrees;
// - drop_invalid_spans keeps exactly the spans with valid ids, in order, with their resource
//   and scope, and its output scans with no invalid span;
// - every piece split_request emits scans, holds the span count it claims, at most max_spans
//   spans and max_bytes bytes (a single span may go over), and the pieces concatenate to the
//   input's spans, each with its resource and scope, in order;
// - protobuf_to_json converts it, and when OTLP/JSON can express every id in it (each trace id,
//   span id and parent span id empty or of its size and not all zero: JSON has no spelling for
//   others), json_to_protobuf turns that JSON back into the same request (unknown fields aside).
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>

#include "otlp/json.hpp"
#include "otlp/wire.hpp"
#include "otlp_check.hpp"

using namespace spanrelay;
using namespace spanrelay::fuzz;

namespace {

bool id_expressible(const std::string& id, std::size_t size) {
  return id.empty() || (id.size() == size && !all_zero(id));
}

bool ids_expressible_in_json(const ExportTraceServiceRequest& request) {
  for (const auto& rs : request.resource_spans()) {
    for (const auto& ss : rs.scope_spans()) {
      for (const auto& span : ss.spans()) {
        if (!id_expressible(span.trace_id(), 16) || !id_expressible(span.span_id(), 8) ||
            !id_expressible(span.parent_span_id(), 8)) {
          return false;
        }
        for (const auto& link : span.links()) {
          if (!id_expressible(link.trace_id(), 16) || !id_expressible(link.span_id(), 8)) {
            return false;
          }
        }
      }
    }
  }
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  Input in{data, size};
  const std::size_t max_bytes = 1 + in.u16() % 4096;
  const std::size_t max_spans = 1 + in.byte() % 32;
  const std::string_view request = in.rest();

  const otlp::ScanResult scan = otlp::scan_request(request);
  if (!scan.ok) {
    FUZZ_CHECK(!scan.error.empty());
    return 0;
  }
  ExportTraceServiceRequest parsed;
  FUZZ_CHECK(parse(request, parsed));  // scanner accepts => libprotobuf parses
  const std::vector<SpanInContext> spans = flatten(parsed);
  FUZZ_CHECK(scan.spans == spans.size());
  FUZZ_CHECK(otlp::count_spans(request) == scan.spans);
  std::vector<SpanInContext> valid_spans;  // in input order
  std::size_t index = 0;
  for (const auto& rs : parsed.resource_spans()) {
    for (const auto& ss : rs.scope_spans()) {
      for (const auto& span : ss.spans()) {
        if (ids_valid(span)) {
          valid_spans.push_back(spans[index]);
        }
        ++index;
      }
    }
  }
  FUZZ_CHECK(scan.invalid_spans == spans.size() - valid_spans.size());

  // drop_invalid_spans
  const std::string filtered = otlp::drop_invalid_spans(request);
  const otlp::ScanResult filtered_scan = otlp::scan_request(filtered);
  FUZZ_CHECK(filtered_scan.ok);
  FUZZ_CHECK(filtered_scan.invalid_spans == 0);
  FUZZ_CHECK(filtered_scan.spans == valid_spans.size());
  ExportTraceServiceRequest filtered_parsed;
  FUZZ_CHECK(parse(filtered, filtered_parsed));
  FUZZ_CHECK(flatten(filtered_parsed) == valid_spans);

  // split_request
  std::vector<SpanInContext> joined;
  otlp::split_request(request, max_bytes, max_spans,
                      [&](std::string&& piece, std::uint32_t piece_spans) {
                        FUZZ_CHECK(piece_spans <= max_spans);
                        FUZZ_CHECK(piece.size() <= max_bytes || piece_spans <= 1);
                        const otlp::ScanResult piece_scan = otlp::scan_request(piece);
                        FUZZ_CHECK(piece_scan.ok);
                        FUZZ_CHECK(piece_scan.spans == piece_spans);
                        FUZZ_CHECK(otlp::count_spans(piece) == piece_spans);
                        ExportTraceServiceRequest piece_parsed;
                        FUZZ_CHECK(parse(piece, piece_parsed));
                        for (auto& s : flatten(piece_parsed)) {
                          joined.push_back(std::move(s));
                        }
                      });
  FUZZ_CHECK(joined == spans);

  // protobuf -> OTLP/JSON -> protobuf
  std::string json, error;
  FUZZ_CHECK(otlp::protobuf_to_json(request, json, error));
  if (ids_expressible_in_json(parsed)) {
    ExportTraceServiceRequest back_parsed;
    json_back(json, back_parsed);
    parsed.DiscardUnknownFields();
    FUZZ_CHECK(same(parsed, back_parsed));
  }
  return 0;
}
