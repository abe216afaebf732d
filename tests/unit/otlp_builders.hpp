#pragma once
// Builders of realistic ExportTraceServiceRequests for unit tests.

#include <cstdint>
#include <random>
#include <set>
#include <string>

#include "opentelemetry/proto/collector/trace/v1/trace_service.pb.h"

namespace spanrelay::testing {

using opentelemetry::proto::collector::trace::v1::ExportTraceServiceRequest;
namespace v1 = opentelemetry::proto::trace::v1;

inline std::string random_bytes(std::mt19937_64& rng, std::size_t n) {
  std::string s(n, '\0');
  for (auto& c : s) {
    c = static_cast<char>(rng() & 0xff);
  }
  s[0] = 1;  // never all zero
  return s;
}

// `resources` ResourceSpans, each with `scopes` ScopeSpans of `spans` spans.
inline ExportTraceServiceRequest make_request(int resources, int scopes, int spans,
                                              std::uint64_t seed = 1,
                                              std::size_t attribute_bytes = 16) {
  std::mt19937_64 rng(seed);
  ExportTraceServiceRequest req;
  for (int r = 0; r < resources; ++r) {
    auto* rs = req.add_resource_spans();
    auto* attr = rs->mutable_resource()->add_attributes();
    attr->set_key("service.name");
    attr->mutable_value()->set_string_value("svc-" + std::to_string(r));
    rs->set_schema_url("https://opentelemetry.io/schemas/1.21.0");
    for (int s = 0; s < scopes; ++s) {
      auto* ss = rs->add_scope_spans();
      ss->mutable_scope()->set_name("scope-" + std::to_string(s));
      ss->mutable_scope()->set_version("1.0");
      for (int i = 0; i < spans; ++i) {
        auto* span = ss->add_spans();
        span->set_trace_id(random_bytes(rng, 16));
        span->set_span_id(random_bytes(rng, 8));
        span->set_parent_span_id(random_bytes(rng, 8));
        span->set_name("GET /items/{id} é");
        span->set_kind(v1::Span::SPAN_KIND_SERVER);
        span->set_start_time_unix_nano(1700000000000000000ull + i);
        span->set_end_time_unix_nano(1700000000000100000ull + i);
        auto* a = span->add_attributes();
        a->set_key("db.statement");
        a->mutable_value()->set_string_value(std::string(attribute_bytes, 'q'));
        auto* n = span->add_attributes();
        n->set_key("http.status_code");
        n->mutable_value()->set_int_value(200);
        span->mutable_status()->set_code(v1::Status::STATUS_CODE_OK);
      }
    }
  }
  return req;
}

// The span ids of a request, with repeats: equal sets mean nothing lost and nothing twice.
inline std::multiset<std::string> span_ids(const ExportTraceServiceRequest& req) {
  std::multiset<std::string> ids;
  for (const auto& rs : req.resource_spans()) {
    for (const auto& ss : rs.scope_spans()) {
      for (const auto& s : ss.spans()) {
        ids.insert(s.span_id());
      }
    }
  }
  return ids;
}

}  // namespace spanrelay::testing
