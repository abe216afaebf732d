#include "otlp/json.hpp"

#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <iterator>
#include <limits>
#include <random>
#include <string>

#include <boost/json.hpp>
#include <google/protobuf/util/field_comparator.h>
#include <google/protobuf/util/message_differencer.h>

#include "opentelemetry/proto/collector/trace/v1/trace_service.pb.h"
#include "otlp/wire.hpp"

namespace {

using opentelemetry::proto::collector::trace::v1::ExportTraceServiceRequest;
using spanrelay::otlp::json_to_protobuf;
using spanrelay::otlp::protobuf_to_json;
namespace common = opentelemetry::proto::common::v1;
namespace trace = opentelemetry::proto::trace::v1;

constexpr const char* trace_hex = "5b8efff798038103d269b633813fc60c";
constexpr const char* span_hex = "eee19b7ec3c1b174";

std::string bytes_of(const std::string& hex) {
  std::string out;
  for (std::size_t i = 0; i < hex.size(); i += 2) {
    out += static_cast<char>(std::stoi(hex.substr(i, 2), nullptr, 16));
  }
  return out;
}

ExportTraceServiceRequest parse_ok(const std::string& json) {
  std::string out;
  std::string error;
  INFO(json.substr(0, 300));
  const bool ok = json_to_protobuf(json, out, error);
  INFO(error);
  REQUIRE(ok);
  ExportTraceServiceRequest request;
  REQUIRE(request.ParseFromString(out));
  return request;
}

// The error for JSON that must be rejected; `out` must be left as it was.
std::string parse_error(const std::string& json) {
  std::string out = "prefix";
  std::string error;
  INFO(json.substr(0, 300));
  REQUIRE_FALSE(json_to_protobuf(json, out, error));
  CHECK(out == "prefix");
  CHECK_FALSE(error.empty());
  return error;
}

std::string with_span(const std::string& span) {
  return R"({"resourceSpans":[{"scopeSpans":[{"spans":[)" + span + "]}]}]}";
}

std::string span_with(const std::string& members) {
  return with_span(std::string(R"({"traceId":")") + trace_hex + R"(","spanId":")" + span_hex +
                   "\"" + members + "}");
}

std::string with_attribute_value(const std::string& any_value) {
  return span_with(R"(,"attributes":[{"key":"k","value":)" + any_value + "}]");
}

const trace::Span& only_span(const ExportTraceServiceRequest& r) {
  REQUIRE(r.resource_spans_size() == 1);
  REQUIRE(r.resource_spans(0).scope_spans_size() == 1);
  REQUIRE(r.resource_spans(0).scope_spans(0).spans_size() == 1);
  return r.resource_spans(0).scope_spans(0).spans(0);
}

const common::AnyValue& only_attribute_value(const ExportTraceServiceRequest& r) {
  const auto& span = only_span(r);
  REQUIRE(span.attributes_size() == 1);
  return span.attributes(0).value();
}

bool equal(const ExportTraceServiceRequest& a, const ExportTraceServiceRequest& b,
           std::string& differences) {
  google::protobuf::util::DefaultFieldComparator comparator;
  comparator.set_treat_nan_as_equal(true);
  google::protobuf::util::MessageDifferencer differencer;
  differencer.set_field_comparator(&comparator);
  differencer.ReportDifferencesToString(&differences);
  return differencer.Compare(a, b);
}

const std::string full_request = R"({"resourceSpans":[{
  "resource":{"attributes":[{"key":"service.name","value":{"stringValue":"checkout"}}],
    "droppedAttributesCount":1,
    "entityRefs":[{"schemaUrl":"https://e","type":"service","idKeys":["service.name"],
                   "descriptionKeys":["a","b"]}]},
  "schemaUrl":"https://resource",
  "scopeSpans":[{
    "scope":{"name":"lib","version":"1.2","attributes":[{"key":"s","value":{"boolValue":true}}],
             "droppedAttributesCount":2},
    "schemaUrl":"https://scope",
    "spans":[{
      "traceId":"5B8EFFF798038103D269B633813FC60C",
      "spanId":"eee19b7ec3c1b174",
      "parentSpanId":"EEE19b7ec3c1b173",
      "traceState":"k=v",
      "flags":257,
      "name":"GET /cart",
      "kind":2,
      "startTimeUnixNano":"1544712660000000000",
      "endTimeUnixNano":1544712661000000000,
      "attributes":[
        {"key":"str","value":{"stringValue":"a\"b\\c\u00e9\n"}},
        {"key":"bool","value":{"boolValue":false}},
        {"key":"int_str","value":{"intValue":"-9223372036854775808"}},
        {"key":"int_num","value":{"intValue":42}},
        {"key":"double","value":{"doubleValue":-97570.19231092371}},
        {"key":"nan","value":{"doubleValue":"NaN"}},
        {"key":"inf","value":{"doubleValue":"Infinity"}},
        {"key":"ninf","value":{"doubleValue":"-Infinity"}},
        {"key":"dstr","value":{"doubleValue":"1.5e3"}},
        {"key":"array","value":{"arrayValue":{"values":[{"intValue":"1"},
          {"arrayValue":{"values":[{"stringValue":"x"}]}}]}}},
        {"key":"kvlist","value":{"kvlistValue":{"values":[{"key":"inner","value":
          {"kvlistValue":{"values":[{"key":"deep","value":{"boolValue":true}}]}}}]}}},
        {"key":"bytes","value":{"bytesValue":"AAEC/w=="}},
        {"key":"bytes_url","value":{"bytesValue":"AAEC_w"}},
        {"key":"empty","value":{}},
        {"key":"novalue"}
      ],
      "droppedAttributesCount":3,
      "events":[{"timeUnixNano":"1544712660500000000","name":"ev",
                 "attributes":[{"key":"e","value":{"intValue":"7"}}],"droppedAttributesCount":4}],
      "droppedEventsCount":5,
      "links":[{"traceId":"0102030405060708090a0b0c0d0e0f10","spanId":"0000000000000001",
                "traceState":"l=1","attributes":[{"key":"l","value":{"stringValue":"v"}}],
                "droppedAttributesCount":6,"flags":"1"}],
      "droppedLinksCount":"7",
      "status":{"message":"boom","code":"STATUS_CODE_ERROR"}
    }]
  }]
}]})";

}  // namespace

TEST_CASE("a request using every field converts to protobuf") {
  const auto r = parse_ok(full_request);
  REQUIRE(r.resource_spans_size() == 1);
  const auto& rs = r.resource_spans(0);
  CHECK(rs.schema_url() == "https://resource");
  REQUIRE(rs.resource().attributes_size() == 1);
  CHECK(rs.resource().attributes(0).key() == "service.name");
  CHECK(rs.resource().attributes(0).value().string_value() == "checkout");
  CHECK(rs.resource().dropped_attributes_count() == 1);
  REQUIRE(rs.resource().entity_refs_size() == 1);
  const auto& entity = rs.resource().entity_refs(0);
  CHECK(entity.schema_url() == "https://e");
  CHECK(entity.type() == "service");
  REQUIRE(entity.id_keys_size() == 1);
  CHECK(entity.id_keys(0) == "service.name");
  REQUIRE(entity.description_keys_size() == 2);
  CHECK(entity.description_keys(1) == "b");

  REQUIRE(rs.scope_spans_size() == 1);
  const auto& ss = rs.scope_spans(0);
  CHECK(ss.schema_url() == "https://scope");
  CHECK(ss.scope().name() == "lib");
  CHECK(ss.scope().version() == "1.2");
  REQUIRE(ss.scope().attributes_size() == 1);
  CHECK(ss.scope().attributes(0).value().bool_value());
  CHECK(ss.scope().dropped_attributes_count() == 2);

  const auto& span = only_span(r);
  CHECK(span.trace_id() == bytes_of(trace_hex));
  CHECK(span.span_id() == bytes_of(span_hex));
  CHECK(span.parent_span_id() == bytes_of("eee19b7ec3c1b173"));
  CHECK(span.trace_state() == "k=v");
  CHECK(span.flags() == 257);
  CHECK(span.name() == "GET /cart");
  CHECK(span.kind() == trace::Span::SPAN_KIND_SERVER);
  CHECK(span.start_time_unix_nano() == 1544712660000000000u);
  CHECK(span.end_time_unix_nano() == 1544712661000000000u);
  CHECK(span.dropped_attributes_count() == 3);

  REQUIRE(span.attributes_size() == 15);
  const auto value = [&](int i) -> const common::AnyValue& { return span.attributes(i).value(); };
  CHECK(value(0).string_value() == "a\"b\\c\xc3\xa9\n");
  CHECK(value(1).value_case() == common::AnyValue::kBoolValue);
  CHECK_FALSE(value(1).bool_value());
  CHECK(value(2).int_value() == std::numeric_limits<std::int64_t>::min());
  CHECK(value(3).int_value() == 42);
  CHECK(value(4).double_value() == -97570.19231092371);  // exact, not one ulp off
  CHECK(std::isnan(value(5).double_value()));
  CHECK(value(6).double_value() == std::numeric_limits<double>::infinity());
  CHECK(value(7).double_value() == -std::numeric_limits<double>::infinity());
  CHECK(value(8).double_value() == 1500.0);
  const auto& array = value(9).array_value();
  REQUIRE(array.values_size() == 2);
  CHECK(array.values(0).int_value() == 1);
  REQUIRE(array.values(1).array_value().values_size() == 1);
  CHECK(array.values(1).array_value().values(0).string_value() == "x");
  const auto& kvlist = value(10).kvlist_value();
  REQUIRE(kvlist.values_size() == 1);
  CHECK(kvlist.values(0).key() == "inner");
  REQUIRE(kvlist.values(0).value().kvlist_value().values_size() == 1);
  CHECK(kvlist.values(0).value().kvlist_value().values(0).key() == "deep");
  CHECK(kvlist.values(0).value().kvlist_value().values(0).value().bool_value());
  CHECK(value(11).bytes_value() == std::string("\x00\x01\x02\xff", 4));
  CHECK(value(12).bytes_value() == std::string("\x00\x01\x02\xff", 4));
  CHECK(span.attributes(13).has_value());
  CHECK(value(13).value_case() == common::AnyValue::VALUE_NOT_SET);
  CHECK_FALSE(span.attributes(14).has_value());

  REQUIRE(span.events_size() == 1);
  CHECK(span.events(0).time_unix_nano() == 1544712660500000000u);
  CHECK(span.events(0).name() == "ev");
  REQUIRE(span.events(0).attributes_size() == 1);
  CHECK(span.events(0).attributes(0).value().int_value() == 7);
  CHECK(span.events(0).dropped_attributes_count() == 4);
  CHECK(span.dropped_events_count() == 5);

  REQUIRE(span.links_size() == 1);
  const auto& link = span.links(0);
  CHECK(link.trace_id() == bytes_of("0102030405060708090a0b0c0d0e0f10"));
  CHECK(link.span_id() == bytes_of("0000000000000001"));
  CHECK(link.trace_state() == "l=1");
  REQUIRE(link.attributes_size() == 1);
  CHECK(link.attributes(0).value().string_value() == "v");
  CHECK(link.dropped_attributes_count() == 6);
  CHECK(link.flags() == 1);
  CHECK(span.dropped_links_count() == 7);

  CHECK(span.status().message() == "boom");
  CHECK(span.status().code() == trace::Status::STATUS_CODE_ERROR);
}

TEST_CASE("output is appended to what the buffer already holds") {
  std::string out = "prefix";
  std::string error;
  REQUIRE(json_to_protobuf(span_with(""), out, error));
  ExportTraceServiceRequest r;
  REQUIRE(out.rfind("prefix", 0) == 0);
  REQUIRE(r.ParseFromString(out.substr(6)));
  CHECK(only_span(r).span_id() == bytes_of(span_hex));
}

TEST_CASE("snake_case keys give the same message as lowerCamelCase keys") {
  const std::string camel = R"({"resourceSpans":[{"schemaUrl":"u","resource":{
    "droppedAttributesCount":1,"entityRefs":[{"schemaUrl":"e","idKeys":["a"],
    "descriptionKeys":["b"]}]},"scopeSpans":[{"schemaUrl":"s","scope":{"droppedAttributesCount":2},
    "spans":[{"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174",
    "parentSpanId":"eee19b7ec3c1b173","traceState":"t","startTimeUnixNano":"1",
    "endTimeUnixNano":"2","droppedAttributesCount":3,"droppedEventsCount":4,"droppedLinksCount":5,
    "attributes":[{"key":"a","value":{"stringValue":"s"}},{"key":"b","value":{"boolValue":true}},
      {"key":"c","value":{"intValue":"3"}},{"key":"d","value":{"doubleValue":1.5}},
      {"key":"e","value":{"bytesValue":"AA=="}},{"key":"f","value":{"arrayValue":{"values":[]}}},
      {"key":"g","value":{"kvlistValue":{"values":[]}}}],
    "events":[{"timeUnixNano":"9","droppedAttributesCount":6}],
    "links":[{"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174",
      "traceState":"x","droppedAttributesCount":7}]}]}]}]})";
  const std::string snake = R"({"resource_spans":[{"schema_url":"u","resource":{
    "dropped_attributes_count":1,"entity_refs":[{"schema_url":"e","id_keys":["a"],
    "description_keys":["b"]}]},"scope_spans":[{"schema_url":"s",
    "scope":{"dropped_attributes_count":2},
    "spans":[{"trace_id":"5b8efff798038103d269b633813fc60c","span_id":"eee19b7ec3c1b174",
    "parent_span_id":"eee19b7ec3c1b173","trace_state":"t","start_time_unix_nano":"1",
    "end_time_unix_nano":"2","dropped_attributes_count":3,"dropped_events_count":4,
    "dropped_links_count":5,
    "attributes":[{"key":"a","value":{"string_value":"s"}},{"key":"b","value":{"bool_value":true}},
      {"key":"c","value":{"int_value":"3"}},{"key":"d","value":{"double_value":1.5}},
      {"key":"e","value":{"bytes_value":"AA=="}},{"key":"f","value":{"array_value":{"values":[]}}},
      {"key":"g","value":{"kvlist_value":{"values":[]}}}],
    "events":[{"time_unix_nano":"9","dropped_attributes_count":6}],
    "links":[{"trace_id":"5b8efff798038103d269b633813fc60c","span_id":"eee19b7ec3c1b174",
      "trace_state":"x","dropped_attributes_count":7}]}]}]}]})";
  const auto a = parse_ok(camel);
  const auto b = parse_ok(snake);
  CHECK(a.SerializeAsString() == b.SerializeAsString());
  CHECK(only_span(b).end_time_unix_nano() == 2);
  CHECK(only_span(b).links(0).dropped_attributes_count() == 7);
  CHECK(only_span(b).attributes(6).value().has_kvlist_value());
  CHECK(b.resource_spans(0).resource().entity_refs(0).description_keys(0) == "b");
}

TEST_CASE("hex ids are case-insensitive") {
  const auto lower = parse_ok(with_span(R"({"traceId":"abcdef0123456789abcdef0123456789",
    "spanId":"abcdef0123456789","parentSpanId":"0123456789abcdef"})"));
  const auto upper = parse_ok(with_span(R"({"traceId":"ABCDEF0123456789ABCDEF0123456789",
    "spanId":"ABCDEF0123456789","parentSpanId":"0123456789ABCDEF"})"));
  CHECK(only_span(lower).trace_id() == bytes_of("abcdef0123456789abcdef0123456789"));
  CHECK(only_span(lower).SerializeAsString() == only_span(upper).SerializeAsString());
}

TEST_CASE("an empty or all-zero parentSpanId means a root span") {
  CHECK(only_span(parse_ok(span_with(R"(,"parentSpanId":"")"))).parent_span_id().empty());
  CHECK(only_span(parse_ok(span_with(R"(,"parentSpanId":"0000000000000000")")))
            .parent_span_id()
            .empty());
}

TEST_CASE("unknown keys are ignored at every level") {
  const auto r = parse_ok(R"({"extra":1,"resourceSpans":[{"x":{"y":[1,2]},"resource":{"u":null,
    "attributes":[{"key":"a","z":true,"value":{"stringValue":"v","w":"?"}}]},
    "scopeSpans":[{"q":"r","scope":{"name":"n","zz":[]},"spans":[{"foo":{"bar":1},
    "traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174","TraceId":"zz",
    "trace_Id":"zz","events":[{"e":1,"name":"ev"}],"links":[{"traceId":
    "5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174","l":2}],
    "status":{"s":1,"code":1}}]}]}]})");
  const auto& rs = r.resource_spans(0);
  CHECK(rs.resource().attributes(0).value().string_value() == "v");
  CHECK(rs.scope_spans(0).scope().name() == "n");
  const auto& span = only_span(r);
  CHECK(span.trace_id() == bytes_of(trace_hex));
  CHECK(span.events(0).name() == "ev");
  CHECK(span.links_size() == 1);
  CHECK(span.status().code() == trace::Status::STATUS_CODE_OK);
}

TEST_CASE("null means unset") {
  const auto r = parse_ok(R"({"resourceSpans":[{"resource":null,"schemaUrl":null,
    "scopeSpans":[{"scope":null,"spans":[{"traceId":"5b8efff798038103d269b633813fc60c",
    "spanId":"eee19b7ec3c1b174","parentSpanId":null,"name":null,"kind":null,"status":null,
    "attributes":null,"events":null,"startTimeUnixNano":null,"flags":null}]}]}]})");
  CHECK_FALSE(r.resource_spans(0).has_resource());
  CHECK_FALSE(r.resource_spans(0).scope_spans(0).has_scope());
  const auto& span = only_span(r);
  CHECK_FALSE(span.has_status());
  CHECK(span.name().empty());
  CHECK(span.attributes_size() == 0);
  CHECK(only_attribute_value(parse_ok(with_attribute_value(R"({"stringValue":null})")))
            .value_case() == common::AnyValue::VALUE_NOT_SET);
  CHECK(parse_ok(R"({"resourceSpans":null})").resource_spans_size() == 0);
}

TEST_CASE("null inside an array is rejected") {
  CHECK(parse_error(with_span("null")) == "resourceSpans[0].scopeSpans[0].spans[0]: null in array");
  CHECK(parse_error(span_with(R"(,"attributes":[{"key":"a"},null])")) ==
        "resourceSpans[0].scopeSpans[0].spans[0].attributes[1]: null in array");
  CHECK(parse_error(with_attribute_value(R"({"arrayValue":{"values":[null]}})"))
            .find("null in array") != std::string::npos);
}

TEST_CASE("enums are integers or value names, unknown integers are kept") {
  CHECK(only_span(parse_ok(span_with(R"(,"kind":3)"))).kind() == trace::Span::SPAN_KIND_CLIENT);
  CHECK(only_span(parse_ok(span_with(R"(,"kind":"SPAN_KIND_CONSUMER")"))).kind() ==
        trace::Span::SPAN_KIND_CONSUMER);
  CHECK(only_span(parse_ok(span_with(R"(,"kind":"4")"))).kind() == trace::Span::SPAN_KIND_PRODUCER);
  CHECK(static_cast<int>(only_span(parse_ok(span_with(R"(,"kind":42)"))).kind()) == 42);
  CHECK(only_span(parse_ok(span_with(R"(,"status":{"code":"STATUS_CODE_OK"})"))).status().code() ==
        trace::Status::STATUS_CODE_OK);
  CHECK(only_span(parse_ok(span_with(R"(,"status":{"code":2})"))).status().code() ==
        trace::Status::STATUS_CODE_ERROR);
  CHECK(parse_error(span_with(R"(,"kind":"SPAN_KIND_BOGUS")")) ==
        "resourceSpans[0].scopeSpans[0].spans[0].kind: must be an integer or a name like "
        "SPAN_KIND_INTERNAL");
  CHECK(parse_error(span_with(R"(,"kind":1.5)")).find(".kind: ") != std::string::npos);
  CHECK(parse_error(span_with(R"(,"kind":true)")).find(".kind: ") != std::string::npos);
}

TEST_CASE("64-bit and 32-bit integers accept numbers and decimal strings") {
  const auto span = only_span(parse_ok(span_with(
      R"(,"startTimeUnixNano":"18446744073709551615","endTimeUnixNano":1e18,"flags":"4294967295",
      "droppedLinksCount":2.0)")));
  CHECK(span.start_time_unix_nano() == std::numeric_limits<std::uint64_t>::max());
  CHECK(span.end_time_unix_nano() == 1000000000000000000u);
  CHECK(span.flags() == 4294967295u);
  CHECK(span.dropped_links_count() == 2);
  CHECK(only_attribute_value(parse_ok(with_attribute_value(R"({"intValue":-5})"))).int_value() ==
        -5);
  CHECK(
      only_attribute_value(parse_ok(with_attribute_value(R"({"intValue":"9223372036854775807"})")))
          .int_value() == std::numeric_limits<std::int64_t>::max());
}

TEST_CASE("bad integers are rejected") {
  const std::string prefix = "resourceSpans[0].scopeSpans[0].spans[0].";
  CHECK(parse_error(span_with(R"(,"startTimeUnixNano":"18446744073709551616")")) ==
        prefix + "startTimeUnixNano: out of range");
  CHECK(parse_error(span_with(R"(,"startTimeUnixNano":18446744073709551616)")) ==
        prefix + "startTimeUnixNano: out of range");
  CHECK(parse_error(span_with(R"(,"startTimeUnixNano":-1)")) ==
        prefix + "startTimeUnixNano: out of range");
  CHECK(parse_error(span_with(R"(,"startTimeUnixNano":"-1")")) ==
        prefix + "startTimeUnixNano: must be an integer");
  CHECK(parse_error(span_with(R"(,"endTimeUnixNano":1.5)")) ==
        prefix + "endTimeUnixNano: must be an integer");
  CHECK(parse_error(span_with(R"(,"endTimeUnixNano":"12abc")")) ==
        prefix + "endTimeUnixNano: must be an integer");
  CHECK(parse_error(span_with(R"(,"endTimeUnixNano":"")")) ==
        prefix + "endTimeUnixNano: must be an integer");
  CHECK(parse_error(span_with(R"(,"endTimeUnixNano":" 1")")) ==
        prefix + "endTimeUnixNano: must be an integer");
  CHECK(parse_error(span_with(R"(,"flags":4294967296)")) == prefix + "flags: out of range");
  CHECK(parse_error(span_with(R"(,"droppedEventsCount":true)")) ==
        prefix + "droppedEventsCount: must be an integer (number or decimal string)");
  CHECK(parse_error(with_attribute_value(R"({"intValue":"9223372036854775808"})")) ==
        prefix + "attributes[0].value.intValue: out of range");
  CHECK(parse_error(with_attribute_value(R"({"intValue":9223372036854775808})")) ==
        prefix + "attributes[0].value.intValue: out of range");
  CHECK(parse_error(with_attribute_value(R"({"intValue":0.5})")) ==
        prefix + "attributes[0].value.intValue: must be an integer");
}

TEST_CASE("bad ids are rejected with the path and the reason") {
  const std::string prefix = "resourceSpans[0].scopeSpans[0].spans[0].";
  const std::string span = R"(,"spanId":"eee19b7ec3c1b174"})";
  const auto trace_id_error = [&](const std::string& id) {
    return parse_error(with_span(R"({"traceId":")" + id + "\"" + span));
  };
  CHECK(trace_id_error("5b8efff798038103d269b633813fc60g") ==
        prefix + "traceId: not a hex digit at offset 31");
  CHECK(trace_id_error("5b8efff798038103d269b633813fc60") ==
        prefix + "traceId: must be 32 hex digits, got 31");
  CHECK(trace_id_error(std::string(30, 'a')) == prefix + "traceId: must be 32 hex digits, got 30");
  CHECK(trace_id_error(std::string(34, 'a')) == prefix + "traceId: must be 32 hex digits, got 34");
  CHECK(trace_id_error(std::string(32, '0')) == prefix + "traceId: must not be all zeros");
  CHECK(trace_id_error("") == prefix + "traceId: must be 32 hex digits, got 0");
  CHECK(trace_id_error("5b8efff798038103d269b633813fc6\xc3\xa9") ==
        prefix + "traceId: not a hex digit at offset 30");

  const auto span_id_error = [&](const std::string& members) {
    return parse_error(
        with_span(std::string(R"({"traceId":")") + trace_hex + "\"" + members + "}"));
  };
  CHECK(span_id_error(R"(,"spanId":"")") == prefix + "spanId: must be 16 hex digits, got 0");
  CHECK(span_id_error(R"(,"spanId":"0000000000000000")") ==
        prefix + "spanId: must not be all zeros");
  CHECK(span_id_error(R"(,"spanId":"x000000000000001")") ==
        prefix + "spanId: not a hex digit at offset 0");
  CHECK(span_id_error(R"(,"spanId":12)") == prefix + "spanId: must be a hex string");
  CHECK(span_id_error(R"(,"spanId":"eee19b7ec3c1b174","parentSpanId":"eee19b7ec3c1b1")") ==
        prefix + "parentSpanId: must be 16 hex digits, got 14");
  CHECK(span_id_error(R"(,"spanId":"eee19b7ec3c1b174","parentSpanId":"eee19b7ec3c1b17400")") ==
        prefix + "parentSpanId: must be 16 hex digits, got 18");
  CHECK(span_id_error(R"(,"spanId":"eee19b7ec3c1b174","links":[{"traceId":")" +
                      std::string(trace_hex) + R"(","spanId":"0000000000000000"}])") ==
        prefix + "links[0].spanId: must not be all zeros");
  CHECK(span_id_error(R"(,"spanId":"eee19b7ec3c1b174","links":[{"traceId":"abc",)"
                      R"("spanId":"eee19b7ec3c1b174"}])") ==
        prefix + "links[0].traceId: must be 32 hex digits, got 3");

  // The path names every index on the way.
  const std::string deep = std::string(R"({"resourceSpans":[{"scopeSpans":[{},{"spans":[)") +
                           R"({},{},{},{"traceId":"5b8efff798038103d269b633813fc6"}]}]}]})";
  CHECK(parse_error(deep).find("resourceSpans[0].scopeSpans[1].spans[3].traceId: must be 32 hex "
                               "digits, got 30") == 0);
}

TEST_CASE("wrong JSON types are rejected with the path") {
  const std::string prefix = "resourceSpans[0].scopeSpans[0].spans[0].";
  CHECK(parse_error("[]") == "request body: must be an object");
  CHECK(parse_error(R"({"resourceSpans":{}})") == "resourceSpans: must be an array");
  CHECK(parse_error(R"({"resourceSpans":["x"]})") == "resourceSpans[0]: must be an object");
  CHECK(parse_error(R"({"resource_spans":[{"resource":"r"}]})") ==
        "resource_spans[0].resource: must be an object");
  CHECK(parse_error(span_with(R"(,"name":5)")) == prefix + "name: must be a string");
  CHECK(parse_error(span_with(R"(,"status":[])")) == prefix + "status: must be an object");
  CHECK(parse_error(span_with(R"(,"events":[{"name":{}}])")) ==
        prefix + "events[0].name: must be a string");
  CHECK(parse_error(span_with(R"(,"attributes":[{"key":1}])")) ==
        prefix + "attributes[0].key: must be a string");
  CHECK(parse_error(with_attribute_value(R"("plain")")) ==
        prefix + "attributes[0].value: must be an object");
  CHECK(parse_error(with_attribute_value(R"({"boolValue":"true"})")) ==
        prefix + "attributes[0].value.boolValue: must be true or false");
  CHECK(parse_error(with_attribute_value(R"({"doubleValue":"1.5x"})")) ==
        prefix + "attributes[0].value.doubleValue: must be a number");
  CHECK(parse_error(with_attribute_value(R"({"doubleValue":true})")) ==
        prefix + "attributes[0].value.doubleValue: must be a number");
  CHECK(parse_error(with_attribute_value(R"({"arrayValue":[]})")) ==
        prefix + "attributes[0].value.arrayValue: must be an object");
  CHECK(
      parse_error(with_attribute_value(R"({"kvlistValue":{"values":[{"key":"a","value":1}]}})")) ==
      prefix + "attributes[0].value.kvlistValue.values[0].value: must be an object");
  CHECK(parse_error(R"({"resourceSpans":[{"resource":{"entityRefs":[{"idKeys":[1]}]}}]})") ==
        "resourceSpans[0].resource.entityRefs[0].idKeys[0]: must be a string");
}

TEST_CASE("bytesValue is base64, standard or URL-safe, padded or not") {
  const auto bytes = [](const std::string& b64) {
    return only_attribute_value(parse_ok(with_attribute_value(R"({"bytesValue":")" + b64 + "\"}")))
        .bytes_value();
  };
  CHECK(bytes("") == "");
  CHECK(bytes("Zg==") == "f");
  CHECK(bytes("Zg") == "f");
  CHECK(bytes("Zm8=") == "fo");
  CHECK(bytes("Zm8") == "fo");
  CHECK(bytes("Zm9v") == "foo");
  CHECK(bytes("+/+/") == bytes("-_-_"));
  CHECK(bytes("+/+/") == "\xfb\xff\xbf");

  const std::string prefix = "resourceSpans[0].scopeSpans[0].spans[0].attributes[0].value.";
  const auto error = [](const std::string& b64) {
    return parse_error(with_attribute_value(R"({"bytesValue":")" + b64 + "\"}"));
  };
  CHECK(error("Zm9v!") == prefix + "bytesValue: invalid base64 length");
  CHECK(error("Zm9vZ") == prefix + "bytesValue: invalid base64 length");
  CHECK(error("Zg=") == prefix + "bytesValue: invalid base64 length");
  CHECK(error("Z===") == prefix + "bytesValue: invalid base64 character at offset 1");
  CHECK(error("Zm9v!A==") == prefix + "bytesValue: invalid base64 character at offset 4");
  CHECK(error("Zm=v") == prefix + "bytesValue: invalid base64 character at offset 2");
  CHECK(parse_error(with_attribute_value(R"({"bytesValue":5})")) ==
        prefix + "bytesValue: must be a base64 string");
}

TEST_CASE("invalid JSON is rejected") {
  CHECK(parse_error("").find("invalid JSON at offset 0") == 0);
  CHECK(parse_error("{").find("invalid JSON") == 0);
  CHECK(parse_error(full_request.substr(0, full_request.size() / 2)).find("invalid JSON") == 0);
  CHECK(parse_error(R"({"resourceSpans":[],})").find("invalid JSON") == 0);
  CHECK(parse_error(R"({"resourceSpans":[]} {})").find("invalid JSON at offset 21") == 0);
  CHECK(parse_error(R"({"resourceSpans":[]} // comment)").find("invalid JSON") == 0);
  CHECK(parse_error("{'a':1}").find("invalid JSON") == 0);
  CHECK(parse_error(span_with(",\"name\":\"a\xff\"")).find("invalid JSON") == 0);
  CHECK(parse_error(span_with(",\"name\":\"\xc3\"")).find("invalid JSON") == 0);
  CHECK(parse_error(span_with(",\"n\xff\":1")).find("invalid JSON") == 0);
}

TEST_CASE("nesting deeper than max_json_depth fails fast") {
  constexpr int levels = 100000;
  std::string arrays = R"({"resourceSpans":)";
  arrays.append(levels, '[');
  arrays.append(levels, ']');
  arrays += '}';
  CHECK(parse_error(arrays).find("invalid JSON at offset ") == 0);

  std::string kvlist = R"({"resourceSpans":[{"resource":{"attributes":[)";
  for (int i = 0; i < levels; ++i) {
    kvlist += R"({"key":"k","value":{"kvlistValue":{"values":[)";
  }
  for (int i = 0; i < levels; ++i) {
    kvlist += "]}}}";
  }
  kvlist += "]}}]}";
  const auto error = parse_error(kvlist);
  CHECK(error.find("invalid JSON at offset ") == 0);
  // The parser stops where the limit is crossed, without reading the rest.
  CHECK(std::stoul(error.substr(23)) < 2000);

  // At the limit: a document max_json_depth deep is accepted, one level more is not (arrays
  // in an unknown key's value, which nest JSON without nesting messages).
  const auto unknown_arrays = [](int n) {
    return R"({"resourceSpans":[],"x":)" + std::string(n, '[') + std::string(n, ']') + "}";
  };
  parse_ok(unknown_arrays(spanrelay::otlp::max_json_depth - 1));
  CHECK(parse_error(unknown_arrays(spanrelay::otlp::max_json_depth)).find("invalid JSON") == 0);
}

// Found by fuzzing (tests/fuzz): JSON of 128 levels could spell messages nested 94 deep, which
// the wire scanner then refused (max_message_depth 90), and protobuf_to_json wrote up to 138
// levels for what the scanner accepts, which json_to_protobuf refused back.
TEST_CASE("JSON and the wire scanner agree on message nesting, both ways") {
  // A span attribute (an AnyValue at message depth 5) nested through n arrayValues: each adds
  // an ArrayValue and an AnyValue.
  const auto nested = [](int n, const std::string& innermost) {
    std::string s = R"({"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":")" +
                    std::string(trace_hex) + R"(","spanId":")" + span_hex +
                    R"(","attributes":[{"key":"k","value":)";
    for (int i = 0; i < n; ++i) {
      s += R"({"arrayValue":{"values":[)";
    }
    s += innermost;
    for (int i = 0; i < n; ++i) {
      s += "]}}";
    }
    return s + "}]}]}]}]}";
  };
  static_assert(spanrelay::otlp::max_message_depth == 5 + 2 * 42 + 1);
  // An empty ArrayValue at depth 90 is accepted, and passes the scanner; an AnyValue at 91 is
  // refused, saying why.
  const std::string at_limit = nested(42, R"({"arrayValue":{}})");
  std::string out, error;
  REQUIRE(json_to_protobuf(at_limit, out, error));
  CHECK(spanrelay::otlp::scan_request(out).ok);
  CHECK(parse_error(nested(42, R"({"arrayValue":{"values":[{}]}})"))
            .find("message nesting deeper than 90") != std::string::npos);
  // Through kvlistValue: 4 JSON levels per 3 messages. 30 of them (an AnyValue at message
  // depth 94, JSON depth 127) used to be accepted.
  std::string kvlist = R"({"resourceSpans":[{"resource":{"attributes":[)";
  for (int i = 0; i < 30; ++i) {
    kvlist += R"({"key":"k","value":{"kvlistValue":{"values":[)";
  }
  for (int i = 0; i < 30; ++i) {
    kvlist += "]}}}";
  }
  kvlist += "]}}]}";
  CHECK(parse_error(kvlist).find("message nesting deeper than 90") != std::string::npos);

  // The other way: the deepest request the scanner accepts converts to JSON that converts back.
  std::string json;
  REQUIRE(protobuf_to_json(out, json, error));
  std::string back;
  REQUIRE(json_to_protobuf(json, back, error));
  CHECK(back == out);
}

TEST_CASE("protobuf_to_json writes lowercase hex, string 64-bit ints, no defaults") {
  ExportTraceServiceRequest r;
  auto* span = r.add_resource_spans()->add_scope_spans()->add_spans();
  span->set_trace_id(bytes_of("5B8EFFF798038103D269B633813FC60C"));
  span->set_span_id(bytes_of(span_hex));
  span->set_start_time_unix_nano(1544712660000000000u);
  auto* kv = span->add_attributes();
  kv->set_key("n");
  kv->mutable_value()->set_int_value(-42);
  span->set_kind(trace::Span::SPAN_KIND_SERVER);

  std::string out = "prefix";
  std::string error;
  REQUIRE(protobuf_to_json(r.SerializeAsString(), out, error));
  CHECK(out ==
        "prefix"
        R"({"resourceSpans":[{"scopeSpans":[{"spans":[)"
        R"({"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174","kind":2,)"
        R"("startTimeUnixNano":"1544712660000000000",)"
        R"("attributes":[{"key":"n","value":{"intValue":"-42"}}]}]}]}]})");

  out.clear();
  REQUIRE(protobuf_to_json("", out, error));
  CHECK(out == "{}");
}

TEST_CASE("protobuf_to_json escapes strings and writes special doubles and bytes") {
  ExportTraceServiceRequest r;
  auto* span = r.add_resource_spans()->add_scope_spans()->add_spans();
  span->set_name(std::string("q\"b\\n\n\t\x01\x7f\xc3\xa9", 11));
  const auto add = [&]() { return span->add_attributes()->mutable_value(); };
  add()->set_double_value(std::numeric_limits<double>::quiet_NaN());
  add()->set_double_value(-std::numeric_limits<double>::infinity());
  add()->set_double_value(0.1);
  add()->set_bytes_value(std::string("\x00\xfb\xff", 3));
  add()->set_bytes_value("fo");
  add()->set_string_value("");
  add()->set_bool_value(false);
  add()->set_int_value(0);

  std::string out;
  std::string error;
  REQUIRE(protobuf_to_json(r.SerializeAsString(), out, error));
  CHECK(out.find(R"("name":"q\"b\\n\n\t\u0001)"
                 "\x7f\xc3\xa9\"") != std::string::npos);
  CHECK(out.find(R"({"value":{"doubleValue":"NaN"}},{"value":{"doubleValue":"-Infinity"}},)"
                 R"({"value":{"doubleValue":0.1}},{"value":{"bytesValue":"APv/"}},)"
                 R"({"value":{"bytesValue":"Zm8="}},{"value":{"stringValue":""}},)"
                 R"({"value":{"boolValue":false}},{"value":{"intValue":"0"}}])") !=
        std::string::npos);
  boost::json::error_code ec;
  const auto parsed = boost::json::parse(out, ec);
  CHECK_FALSE(ec);
  CHECK(parsed.at("resourceSpans").at(0).at("scopeSpans").at(0).at("spans").at(0).at("name") ==
        "q\"b\\n\n\t\x01\x7f\xc3\xa9");
}

TEST_CASE("protobuf_to_json rejects bytes that are not a request") {
  std::string out = "prefix";
  std::string error;
  CHECK_FALSE(protobuf_to_json(std::string("\xff\xff\xff\xff\xff", 5), out, error));
  CHECK(out == "prefix");
  CHECK(error == "invalid protobuf ExportTraceServiceRequest");

  ExportTraceServiceRequest r;
  r.add_resource_spans()->set_schema_url("a long enough schema url");
  const auto bytes = r.SerializeAsString();
  error.clear();
  CHECK_FALSE(protobuf_to_json(bytes.substr(0, bytes.size() - 3), out, error));
  CHECK(out == "prefix");
  CHECK_FALSE(error.empty());
}

TEST_CASE("protobuf_to_json never writes invalid UTF-8") {
  // protobuf rejects proto3 strings that are not UTF-8 while parsing (it logs a line, too).
  ExportTraceServiceRequest r;
  r.add_resource_spans()->set_schema_url("bad \xff");
  std::string out;
  std::string error;
  CHECK_FALSE(protobuf_to_json(r.SerializeAsString(), out, error));
  CHECK(out.empty());
}

namespace {

// Builds a varied request: every field, every AnyValue type, awkward strings and numbers.
class request_generator {
 public:
  explicit request_generator(std::uint32_t seed) : rng_(seed) {}

  ExportTraceServiceRequest request() {
    ExportTraceServiceRequest r;
    for (int i = below(3); i >= 0; --i) {
      auto* rs = r.add_resource_spans();
      if (coin()) {
        auto* res = rs->mutable_resource();
        attributes(*res);
        for (int e = below(2); e > 0; --e) {
          auto* ref = res->add_entity_refs();
          ref->set_schema_url(text());
          ref->set_type(text());
          ref->add_id_keys(text());
          ref->add_description_keys(text());
        }
      }
      rs->set_schema_url(text());
      for (int s = below(3); s > 0; --s) {
        scope_spans(*rs->add_scope_spans());
      }
    }
    return r;
  }

 private:
  std::mt19937 rng_;

  int below(int n) { return static_cast<int>(rng_() % static_cast<unsigned>(n)); }
  bool coin() { return rng_() % 2 == 0; }
  std::uint64_t u64() { return static_cast<std::uint64_t>(rng_()) << 32 | rng_(); }
  std::uint32_t small() { return coin() ? 0 : static_cast<std::uint32_t>(rng_()); }

  std::string text() {
    static const char* const pieces[] = {
        "a",  "Z",    " ", "\"",       "\\",           "\n",
        "\t", "\x01", "/", "\xc3\xa9", "\xe2\x82\xac", "\xf0\x9f\x98\x80",
        "0"};
    std::string s;
    for (int i = below(6); i > 0; --i) {
      s += pieces[below(static_cast<int>(std::size(pieces)))];
    }
    return s;
  }

  std::string id(std::size_t size) {
    std::string s;
    for (std::size_t i = 0; i < size; ++i) {
      s += static_cast<char>(rng_());
    }
    s[0] = static_cast<char>(s[0] | 1);  // never all zero
    return s;
  }

  std::string raw_bytes() {
    std::string s;
    for (int i = below(8); i > 0; --i) {
      s += static_cast<char>(rng_());
    }
    return s;
  }

  double number() {
    switch (below(7)) {
      case 0:
        return std::numeric_limits<double>::quiet_NaN();
      case 6:
        return -0.0;
      case 1:
        return coin() ? std::numeric_limits<double>::infinity()
                      : -std::numeric_limits<double>::infinity();
      case 2:
        return static_cast<double>(static_cast<std::int64_t>(u64()));
      default: {
        double d = 0;
        do {
          const std::uint64_t bits = u64();
          std::memcpy(&d, &bits, sizeof d);
        } while (!std::isfinite(d));
        return d;
      }
    }
  }

  void any_value(common::AnyValue& v, int depth) {
    switch (below(depth > 2 ? 5 : 8)) {
      case 0:
        v.set_string_value(text());
        break;
      case 1:
        v.set_bool_value(coin());
        break;
      case 2: {
        static const std::int64_t edges[] = {0, -1, std::numeric_limits<std::int64_t>::min(),
                                             std::numeric_limits<std::int64_t>::max()};
        v.set_int_value(coin() ? edges[below(4)] : static_cast<std::int64_t>(u64()));
        break;
      }
      case 3:
        v.set_double_value(number());
        break;
      case 4:
        v.set_bytes_value(raw_bytes());
        break;
      case 5: {
        auto* array = v.mutable_array_value();
        for (int i = below(3); i > 0; --i) {
          any_value(*array->add_values(), depth + 1);
        }
        break;
      }
      case 6: {
        auto* list = v.mutable_kvlist_value();
        for (int i = below(3); i > 0; --i) {
          key_value(*list->add_values(), depth + 1);
        }
        break;
      }
      default:
        break;  // empty AnyValue
    }
  }

  void key_value(common::KeyValue& kv, int depth) {
    kv.set_key(text());
    if (below(8) != 0) {
      any_value(*kv.mutable_value(), depth);
    }
  }

  template <class M>
  void attributes(M& m) {
    for (int i = below(4); i > 0; --i) {
      key_value(*m.add_attributes(), 0);
    }
    m.set_dropped_attributes_count(small());
  }

  void scope_spans(trace::ScopeSpans& ss) {
    if (coin()) {
      auto* scope = ss.mutable_scope();
      scope->set_name(text());
      scope->set_version(text());
      attributes(*scope);
    }
    ss.set_schema_url(text());
    for (int i = below(4); i > 0; --i) {
      span(*ss.add_spans());
    }
  }

  void span(trace::Span& s) {
    s.set_trace_id(id(16));
    s.set_span_id(id(8));
    s.set_trace_state(text());
    if (coin()) {
      s.set_parent_span_id(id(8));
    }
    s.set_flags(small());
    s.set_name(text());
    s.set_kind(static_cast<trace::Span::SpanKind>(below(7)));  // 6 is an unknown value
    s.set_start_time_unix_nano(u64());
    s.set_end_time_unix_nano(coin() ? 0 : u64());
    attributes(s);
    for (int i = below(3); i > 0; --i) {
      auto* e = s.add_events();
      e->set_time_unix_nano(u64());
      e->set_name(text());
      attributes(*e);
    }
    s.set_dropped_events_count(small());
    for (int i = below(3); i > 0; --i) {
      auto* l = s.add_links();
      l->set_trace_id(id(16));
      l->set_span_id(id(8));
      l->set_trace_state(text());
      l->set_flags(small());
      attributes(*l);
    }
    s.set_dropped_links_count(small());
    if (coin()) {
      s.mutable_status()->set_message(text());
      s.mutable_status()->set_code(static_cast<trace::Status::StatusCode>(below(4)));
    }
  }
};

}  // namespace

TEST_CASE("protobuf -> JSON -> protobuf round-trips generated requests") {
  for (std::uint32_t seed = 1; seed <= 300; ++seed) {
    INFO("seed " << seed);
    const auto original = request_generator(seed).request();
    std::string json;
    std::string error;
    REQUIRE(protobuf_to_json(original.SerializeAsString(), json, error));
    INFO(json);
    CHECK(json.find('\n') == std::string::npos);
    boost::json::error_code ec;
    boost::json::parse(json, ec);
    REQUIRE_FALSE(ec);

    std::string bytes;
    REQUIRE(json_to_protobuf(json, bytes, error));
    ExportTraceServiceRequest back;
    REQUIRE(back.ParseFromString(bytes));
    std::string differences;
    CHECK(equal(original, back, differences));
    INFO(differences);
    CHECK(differences.empty());
    // Bit-exact too (e.g. -0.0), which the differencer does not check.
    CHECK(back.SerializeAsString() == original.SerializeAsString());
    // Written directly as wire bytes: the same fields, every length a minimal varint.
    CHECK(bytes.size() == original.ByteSizeLong());
  }
}

TEST_CASE("nested message lengths of every varint size are written minimal and exact") {
  // Lengths of 0, 1, 2, 3 and 4 varint bytes, below and above each message's first guess.
  for (const std::size_t padding : {std::size_t{0}, std::size_t{100}, std::size_t{300},
                                    std::size_t{20000}, std::size_t{3u << 20}}) {
    INFO("padding " << padding);
    ExportTraceServiceRequest original;
    original.add_resource_spans();  // empty: 0-byte length
    auto* rs = original.add_resource_spans();
    rs->mutable_resource();  // present but empty
    auto* span = rs->add_scope_spans()->add_spans();
    span->set_trace_id(bytes_of(trace_hex));
    span->set_span_id(bytes_of(span_hex));
    auto* attribute = span->add_attributes();
    attribute->set_key("padding");
    attribute->mutable_value()->set_string_value(std::string(padding, 'x'));
    span->add_events()->mutable_attributes()->Add()->mutable_value()->mutable_kvlist_value();
    std::string json;
    std::string error;
    REQUIRE(protobuf_to_json(original.SerializeAsString(), json, error));
    std::string bytes = "prefix";  // appended after what the buffer holds
    REQUIRE(json_to_protobuf(json, bytes, error));
    REQUIRE(bytes.starts_with("prefix"));
    bytes.erase(0, 6);
    CHECK(bytes.size() == original.ByteSizeLong());
    ExportTraceServiceRequest back;
    REQUIRE(back.ParseFromString(bytes));
    CHECK(back.SerializeAsString() == original.SerializeAsString());
  }
}

TEST_CASE("a semantic error is reported only when the document is valid JSON") {
  // The tree is no longer built first: the first semantic error is kept, the rest still
  // checked as JSON, and a syntax error anywhere wins.
  CHECK(parse_error(R"({"resourceSpans":{},"x":[})").find("invalid JSON") == 0);
  CHECK(parse_error(R"({"resourceSpans":{},"x":[]})") == "resourceSpans: must be an array");
  // Only the first semantic error is reported.
  CHECK(parse_error(R"({"resourceSpans":[{"schemaUrl":1,"resource":2}]})") ==
        "resourceSpans[0].schemaUrl: must be a string");
  // Values of unknown keys are skipped whole, however deep, and do not disturb the paths.
  CHECK(parse_error(R"({"u":[{"a":[[{}]]},{}],"resourceSpans":[{"z":{"y":[1,{"x":[]}]},)"
                    R"("scopeSpans":[{"spans":[{"traceId":"ab"}]}]}]})") ==
        "resourceSpans[0].scopeSpans[0].spans[0].traceId: must be 32 hex digits, got 2");
}

TEST_CASE("JSON -> protobuf -> JSON keeps the full request") {
  const auto first = parse_ok(full_request);
  std::string json;
  std::string error;
  REQUIRE(protobuf_to_json(first.SerializeAsString(), json, error));
  CHECK(json.find(R"("traceId":"5b8efff798038103d269b633813fc60c")") != std::string::npos);
  CHECK(json.find(R"("endTimeUnixNano":"1544712661000000000")") != std::string::npos);
  CHECK(json.find(R"("doubleValue":-97570.19231092371)") != std::string::npos);
  const auto second = parse_ok(json);
  std::string differences;
  CHECK(equal(first, second, differences));
  INFO(differences);
}
