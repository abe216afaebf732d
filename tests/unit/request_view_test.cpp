// The processors' wire view and edit list (processors/request_view): indexing finds every
// element, edits produce exactly the request a protobuf-object edit would, and untouched
// parts are copied byte for byte.

#include <catch2/catch.hpp>

#include <google/protobuf/util/message_differencer.h>

#include <string>

#include "otlp/wire.hpp"
#include "processors/request_view.hpp"
#include "unit/otlp_builders.hpp"

namespace {

using namespace spanrelay::processors;
using spanrelay::testing::ExportTraceServiceRequest;
namespace v1 = opentelemetry::proto::trace::v1;
namespace common = opentelemetry::proto::common::v1;

void set_string(common::KeyValue* kv, const std::string& key, const std::string& value) {
  kv->set_key(key);
  kv->mutable_value()->set_string_value(value);
}

// Two resources; the second has two scopes; spans with attributes, events and a tracestate.
ExportTraceServiceRequest sample() {
  ExportTraceServiceRequest r;
  for (int ri = 0; ri < 2; ++ri) {
    auto* rs = r.add_resource_spans();
    set_string(rs->mutable_resource()->add_attributes(), "service.name", "api" + std::to_string(ri));
    rs->set_schema_url("https://opentelemetry.io/schemas/1.21.0");
    for (int si = 0; si <= ri; ++si) {
      auto* ss = rs->add_scope_spans();
      ss->mutable_scope()->set_name("scope" + std::to_string(si));
      for (int pi = 0; pi < 3; ++pi) {
        auto* span = ss->add_spans();
        span->set_trace_id(std::string(15, '\x11') + static_cast<char>(ri * 10 + si * 3 + pi + 1));
        span->set_span_id(std::string(7, '\x22') + static_cast<char>(ri * 10 + si * 3 + pi + 1));
        span->set_name("span" + std::to_string(pi));
        span->set_kind(v1::Span::SPAN_KIND_SERVER);
        span->set_trace_state(pi == 0 ? "ot=th:8" : "");
        set_string(span->add_attributes(), "db.statement", "SELECT 1");
        span->add_attributes()->set_key("http.status_code");
        span->mutable_attributes(1)->mutable_value()->set_int_value(200);
        auto* ev = span->add_events();
        ev->set_name("exception");
        set_string(ev->add_attributes(), "exception.message", "boom");
        set_string(span->add_attributes(), "after.event", "x");  // after the event on the wire
        span->mutable_status()->set_code(v1::Status::STATUS_CODE_ERROR);
      }
    }
  }
  return r;
}

ExportTraceServiceRequest parse(const std::string& bytes) {
  ExportTraceServiceRequest r;
  REQUIRE(r.ParseFromString(bytes));
  return r;
}

void require_equal(const ExportTraceServiceRequest& expected, const std::string& bytes) {
  const ExportTraceServiceRequest actual = parse(bytes);
  std::string diff;
  google::protobuf::util::MessageDifferencer d;
  d.ReportDifferencesToString(&diff);
  const bool same = d.Compare(expected, actual);
  INFO(diff);
  INFO("expected:\n" << expected.DebugString() << "\nactual:\n" << actual.DebugString());
  CHECK(same);
}

}  // namespace

TEST_CASE("the view indexes every resource, scope, span, event and attribute") {
  const std::string bytes = sample().SerializeAsString();
  RequestView view;
  REQUIRE(view.index(bytes));
  CHECK(view.resources.size() == 2);
  CHECK(view.scopes.size() == 3);
  CHECK(view.spans.size() == 9);
  CHECK(view.events.size() == 9);
  CHECK(view.attributes.size() == 2 + 9 * 3 + 9);
  const SpanRef& s = view.spans[4];
  CHECK(s.name == "span1");
  CHECK(s.kind == v1::Span::SPAN_KIND_SERVER);
  CHECK(s.status_code == v1::Status::STATUS_CODE_ERROR);
  CHECK(s.resource == 1);
  CHECK(s.scope == 1);
  REQUIRE(s.attributes.count == 3);  // contiguous although one follows the event on the wire
  CHECK(view.attributes[s.attributes.first].key == "db.statement");
  CHECK(view.attributes[s.attributes.first].string_value == "SELECT 1");
  CHECK(view.attributes[s.attributes.first + 1].type == ValueType::kInt);
  CHECK(view.attributes[s.attributes.first + 2].key == "after.event");
  REQUIRE(s.events.count == 1);
  const EventRef& e = view.events[s.events.first];
  CHECK(e.name == "exception");
  CHECK(view.attributes[e.attributes.first].string_value == "boom");
  CHECK(view.attributes[view.resources[1].attributes.first].string_value == "api1");
  CHECK(view.spans[3].trace_state == "ot=th:8");
  CHECK_FALSE(view.index(std::string("\x0a\xff", 2)));  // a length past the end
}

TEST_CASE("no edit, or edits only elsewhere, copy the bytes as they are") {
  const std::string bytes = sample().SerializeAsString();
  RequestView view;
  REQUIRE(view.index(bytes));
  Edits edits;
  edits.reset(view);
  CHECK(edits.empty());
  std::string out;
  edits.apply(out);
  CHECK(out == bytes);

  // One span of the second resource changes: the first resource is copied verbatim.
  edits.reset(view);
  edits.drop_span(7);
  edits.apply(out);
  CHECK(out.starts_with(std::string(view.text(view.resources[0].field))));
}

TEST_CASE("edits give the same request as editing protobuf objects") {
  ExportTraceServiceRequest expected = sample();
  const std::string bytes = expected.SerializeAsString();
  RequestView view;
  REQUIRE(view.index(bytes));
  Edits edits;
  edits.reset(view);

  // Resource 0: replace service.name, append deployment.environment.name.
  const std::uint32_t service = edits.find(Owner::kResource, 0, "service.name");
  REQUIRE(service == view.resources[0].attributes.first);
  edits.replace_attribute(service, "service.name", key_value_string("service.name", "renamed"));
  edits.append_attribute(Owner::kResource, 0, "deployment.environment.name",
                         key_value_string("deployment.environment.name", "prod"));
  expected.mutable_resource_spans(0)->mutable_resource()->mutable_attributes(0)
      ->mutable_value()->set_string_value("renamed");
  set_string(expected.mutable_resource_spans(0)->mutable_resource()->add_attributes(),
             "deployment.environment.name", "prod");

  // Span 4 (resource 1, its first scope, second span): delete db.statement, rename after.event,
  // redact the event attribute, set a tracestate.
  CHECK(edits.delete_key(Owner::kSpan, 4, "db.statement"));
  CHECK(edits.find(Owner::kSpan, 4, "db.statement") == Edits::kNone);
  const std::uint32_t after = edits.find(Owner::kSpan, 4, "after.event");
  REQUIRE(after != Edits::kNone);
  edits.replace_attribute(after, "renamed.key",
                          key_value_with("renamed.key", view.text(view.attributes[after].value_field)));
  CHECK(edits.find(Owner::kSpan, 4, "renamed.key") == after);  // the edit is visible
  const std::uint32_t event = view.spans[4].events.first;
  const std::uint32_t message = edits.find(Owner::kEvent, event, "exception.message");
  edits.replace_attribute(message, "exception.message",
                          key_value_string("exception.message", "<redacted>"));
  edits.set_trace_state(4, "ot=th:c");
  {
    v1::Span* span = expected.mutable_resource_spans(1)->mutable_scope_spans(0)->mutable_spans(1);
    span->mutable_attributes()->DeleteSubrange(0, 1);
    span->mutable_attributes(1)->set_key("renamed.key");
    span->mutable_events(0)->mutable_attributes(0)->mutable_value()->set_string_value("<redacted>");
    span->set_trace_state("ot=th:c");
  }

  // Span 0 had "ot=th:8": cleared. Span 1 had none: gains one.
  edits.set_trace_state(0, "");
  edits.set_trace_state(1, "ot=th:4");
  expected.mutable_resource_spans(0)->mutable_scope_spans(0)->mutable_spans(0)->clear_trace_state();
  expected.mutable_resource_spans(0)->mutable_scope_spans(0)->mutable_spans(1)->set_trace_state("ot=th:4");

  // Drop span 8 (the last of all) and span 5 (the last of resource 1's first scope).
  edits.drop_span(8);
  edits.drop_span(5);
  expected.mutable_resource_spans(1)->mutable_scope_spans(1)->mutable_spans()->DeleteSubrange(2, 1);
  expected.mutable_resource_spans(1)->mutable_scope_spans(0)->mutable_spans()->DeleteSubrange(2, 1);

  CHECK_FALSE(edits.empty());
  std::string out;
  edits.apply(out);
  require_equal(expected, out);
  // What comes out is a valid request for the agent's own scanner too.
  CHECK(spanrelay::otlp::scan_request(out).ok);
}

TEST_CASE("a resource without a Resource message gets one for an appended attribute") {
  ExportTraceServiceRequest r;
  r.add_resource_spans()->add_scope_spans()->add_spans()->set_name("x");
  const std::string bytes = r.SerializeAsString();
  RequestView view;
  REQUIRE(view.index(bytes));
  Edits edits;
  edits.reset(view);
  edits.append_attribute(Owner::kResource, 0, "k", key_value_string("k", "v"));
  edits.append_attribute(Owner::kResource, 0, "k", key_value_string("k", "w"));  // replaces
  std::string out;
  edits.apply(out);
  set_string(r.mutable_resource_spans(0)->mutable_resource()->add_attributes(), "k", "w");
  require_equal(r, out);
}

TEST_CASE("random requests: dropping every other span matches the object edit") {
  for (std::uint64_t seed = 1; seed <= 50; ++seed) {
    INFO("seed " << seed);
    ExportTraceServiceRequest expected =
        spanrelay::testing::make_request(static_cast<int>(1 + seed % 3), static_cast<int>(1 + seed % 2), static_cast<int>(1 + seed % 7), seed);
    const std::string bytes = expected.SerializeAsString();
    RequestView view;
    REQUIRE(view.index(bytes));
    Edits edits;
    edits.reset(view);
    for (std::uint32_t s = 0; s < view.spans.size(); s += 2) {
      edits.drop_span(s);
    }
    int n = 0;
    for (auto& rs : *expected.mutable_resource_spans()) {
      for (auto& ss : *rs.mutable_scope_spans()) {
        auto* spans = ss.mutable_spans();
        for (int i = 0; i < spans->size();) {
          if (n++ % 2 == 0) {
            spans->DeleteSubrange(i, 1);
          } else {
            ++i;
          }
        }
      }
    }
    std::string out;
    edits.apply(out);
    require_equal(expected, out);
  }
}
