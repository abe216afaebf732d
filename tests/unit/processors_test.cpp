// The processors (processors/processors): each on crafted requests, compared with the same
// edit made on protobuf objects; requests no rule matches come out byte-identical.

#include <catch2/catch.hpp>

#include <google/protobuf/util/message_differencer.h>

#include <map>
#include <set>
#include <string>

#include "otlp/wire.hpp"
#include "processors/processors.hpp"
#include "unit/otlp_builders.hpp"

namespace {

using namespace spanrelay::processors;
using spanrelay::get;
using spanrelay::testing::ExportTraceServiceRequest;
namespace v1 = opentelemetry::proto::trace::v1;
namespace common = opentelemetry::proto::common::v1;

common::KeyValue* add_string(google::protobuf::RepeatedPtrField<common::KeyValue>* attrs,
                             const std::string& key, const std::string& value) {
  auto* kv = attrs->Add();
  kv->set_key(key);
  kv->mutable_value()->set_string_value(value);
  return kv;
}

std::string id(char fill, std::size_t n, char last) { return std::string(n - 1, fill) + last; }

// A FastAPI-like request: a health-check SERVER span with a child, a GET /orders span with a DB
// child carrying SQL, and a second trace.
ExportTraceServiceRequest app_request() {
  ExportTraceServiceRequest r;
  auto* rs = r.add_resource_spans();
  add_string(rs->mutable_resource()->mutable_attributes(), "service.name", "orders-api");
  auto* spans = rs->add_scope_spans()->mutable_spans();
  auto span = [&](char trace, char sid, char parent, const std::string& name, v1::Span::SpanKind kind) {
    auto* s = spans->Add();
    s->set_trace_id(id('\x0a', 16, trace));
    s->set_span_id(id('\x0b', 8, sid));
    if (parent != 0) {
      s->set_parent_span_id(id('\x0b', 8, parent));
    }
    s->set_name(name);
    s->set_kind(kind);
    return s;
  };
  auto* health = span('1', '1', 0, "GET /healthz", v1::Span::SPAN_KIND_SERVER);
  add_string(health->mutable_attributes(), "url.path", "/healthz");
  auto* code = health->add_attributes();
  code->set_key("http.response.status_code");
  code->mutable_value()->set_int_value(200);
  span('1', '2', '1', "health check db ping", v1::Span::SPAN_KIND_INTERNAL);
  span('1', '3', '2', "grandchild", v1::Span::SPAN_KIND_INTERNAL);
  auto* orders = span('2', '1', 0, "GET /orders", v1::Span::SPAN_KIND_SERVER);
  add_string(orders->mutable_attributes(), "url.path", "/orders");
  add_string(orders->mutable_attributes(), "http.request.header.cookie", "session=abc");
  auto* db = span('2', '2', '1', "SELECT orders", v1::Span::SPAN_KIND_CLIENT);
  add_string(db->mutable_attributes(), "db.statement",
             "SELECT * FROM orders WHERE email = 'bob@example.com' AND id IN (1, 2, 3)");
  auto* ev = db->add_events();
  ev->set_name("exception");
  add_string(ev->mutable_attributes(), "db.statement", "UPDATE t SET a = 5");
  // Same span id as the health check, another trace: not its child.
  span('3', '2', '1', "other trace", v1::Span::SPAN_KIND_INTERNAL);
  return r;
}

std::string run(const ProcessorChain& chain, const std::string& bytes, std::uint32_t* spans = nullptr) {
  std::string out = bytes;
  const std::uint32_t left = chain.run(out, spanrelay::otlp::count_spans(bytes));
  if (spans != nullptr) {
    *spans = left;
  }
  REQUIRE(spanrelay::otlp::scan_request(out).ok);
  return out;
}

void require_equal(const ExportTraceServiceRequest& expected, const std::string& bytes) {
  ExportTraceServiceRequest actual;
  REQUIRE(actual.ParseFromString(bytes));
  std::string diff;
  google::protobuf::util::MessageDifferencer d;
  d.ReportDifferencesToString(&diff);
  const bool same = d.Compare(expected, actual);
  INFO(diff);
  CHECK(same);
}

ProcessorOptions attributes(std::vector<AttributeAction> actions) {
  ProcessorOptions o;
  o.type = ProcessorOptions::Type::kAttributes;
  o.name = "attributes";
  o.attributes.actions = std::move(actions);
  return o;
}

v1::Span* span_named(ExportTraceServiceRequest& r, const std::string& name) {
  for (auto& rs : *r.mutable_resource_spans()) {
    for (auto& ss : *rs.mutable_scope_spans()) {
      for (auto& s : *ss.mutable_spans()) {
        if (s.name() == name) {
          return &s;
        }
      }
    }
  }
  FAIL("no span " << name);
  return nullptr;
}

std::set<std::string> names(const std::string& bytes) {
  ExportTraceServiceRequest r;
  REQUIRE(r.ParseFromString(bytes));
  std::set<std::string> out;
  for (const auto& rs : r.resource_spans()) {
    for (const auto& ss : rs.scope_spans()) {
      for (const auto& s : ss.spans()) {
        out.insert(s.name());
      }
    }
  }
  return out;
}

}  // namespace

TEST_CASE("attributes: upsert, insert, update, delete and rename on resources, spans, events") {
  using K = AttributeAction::Kind;
  const ProcessorChain chain({attributes({
      {Scope::kResource, "deployment.environment.name", K::kUpsert, std::string("prod")},
      {Scope::kResource, "service.name", K::kInsert, std::string("ignored: present")},
      {Scope::kResource, "service.namespace", K::kUpdate, std::string("ignored: absent")},
      {Scope::kSpan, "http.request.header.cookie", K::kDelete},
      {Scope::kSpan, "url.path", K::kRename, {}, "url.route"},
      {Scope::kSpan, "url.route", K::kUpsert, std::string("/x")},  // sees the rename
      {Scope::kEvent, "db.statement", K::kRename, {}, "db.query.text"},
      {Scope::kSpan, "retries", K::kInsert, std::int64_t{3}},
      {Scope::kSpan, "sampled", K::kInsert, true},
      {Scope::kSpan, "ratio", K::kInsert, 0.25},
  })});
  ExportTraceServiceRequest expected = app_request();
  const std::string out = run(chain, expected.SerializeAsString());

  auto* resource = expected.mutable_resource_spans(0)->mutable_resource();
  add_string(resource->mutable_attributes(), "deployment.environment.name", "prod");
  for (auto& s : *expected.mutable_resource_spans(0)->mutable_scope_spans(0)->mutable_spans()) {
    auto* attrs = s.mutable_attributes();
    bool had_path = false;
    for (int i = 0; i < attrs->size();) {
      if (attrs->Get(i).key() == "http.request.header.cookie") {
        attrs->DeleteSubrange(i, 1);
        continue;
      }
      if (attrs->Get(i).key() == "url.path") {
        had_path = true;
        attrs->Mutable(i)->set_key("url.route");
        attrs->Mutable(i)->mutable_value()->set_string_value("/x");
      }
      ++i;
    }
    for (auto& e : *s.mutable_events()) {
      for (auto& a : *e.mutable_attributes()) {
        if (a.key() == "db.statement") {
          a.set_key("db.query.text");
        }
      }
    }
    if (!had_path) {  // upsert: appended where there was none to rename
      add_string(attrs, "url.route", "/x");
    }
    auto* retries = attrs->Add();
    retries->set_key("retries");
    retries->mutable_value()->set_int_value(3);
    auto* sampled = attrs->Add();
    sampled->set_key("sampled");
    sampled->mutable_value()->set_bool_value(true);
    auto* ratio = attrs->Add();
    ratio->set_key("ratio");
    ratio->mutable_value()->set_double_value(0.25);
  }
  require_equal(expected, out);
}

TEST_CASE("redact: SQL literals, hash, truncate, and deletion by pattern") {
  ProcessorOptions o;
  o.type = ProcessorOptions::Type::kRedact;
  o.name = "redact";
  SECTION("sql_literals in spans and events; cookies and authorization too by default") {
    ExportTraceServiceRequest expected = app_request();
    const std::string out = run(ProcessorChain({o}), expected.SerializeAsString());
    auto* db = span_named(expected, "SELECT orders");
    db->mutable_attributes(0)->mutable_value()->set_string_value(
        "SELECT * FROM orders WHERE email = ? AND id IN (?)");
    db->mutable_events(0)->mutable_attributes(0)->mutable_value()->set_string_value(
        "UPDATE t SET a = ?");
    // The cookie is in the default key list: its SQL-literal form is the same text (no
    // literal), so it is unchanged in this mode.
    require_equal(expected, out);
  }
  SECTION("hash") {
    o.redact.mode = RedactOptions::Mode::kHash;
    o.redact.keys = {"http.request.header.cookie"};
    const std::string out = run(ProcessorChain({o}), app_request().SerializeAsString());
    ExportTraceServiceRequest actual;
    REQUIRE(actual.ParseFromString(out));
    const std::string hashed = span_named(actual, "GET /orders")->attributes(1).value().string_value();
    CHECK(hashed == "a47daa9671e781e941fe41c1fd65a2115d045c0f02f061b11e8511a512278a79");  // sha256sum of "session=abc"
    // Other attributes are left alone.
    CHECK(span_named(actual, "GET /orders")->attributes(0).value().string_value() == "/orders");
    // Deterministic: the same value hashes the same way in another request.
    CHECK(run(ProcessorChain({o}), app_request().SerializeAsString()) == out);
  }
  SECTION("truncate at a UTF-8 boundary") {
    o.redact.mode = RedactOptions::Mode::kTruncate;
    o.redact.max_bytes = 5;
    o.redact.keys = {"url.path"};
    ExportTraceServiceRequest r = app_request();
    span_named(r, "GET /orders")->mutable_attributes(0)->mutable_value()->set_string_value("/caf\xc3\xa9s");
    const std::string out = run(ProcessorChain({o}), r.SerializeAsString());
    ExportTraceServiceRequest actual;
    REQUIRE(actual.ParseFromString(out));
    CHECK(span_named(actual, "GET /orders")->attributes(0).value().string_value() == "/caf");
    CHECK(span_named(actual, "GET /healthz")->attributes(0).value().string_value() == "/heal");
  }
  SECTION("delete attributes whose key or string value matches a pattern") {
    o.redact.keys = {};
    o.redact.delete_keys_matching = {"(?i)cookie"};
    o.redact.delete_values_matching = {"[a-z]+@example\\.com"};
    ExportTraceServiceRequest expected = app_request();
    const std::string out = run(ProcessorChain({o}), expected.SerializeAsString());
    span_named(expected, "GET /orders")->mutable_attributes()->DeleteSubrange(1, 1);
    span_named(expected, "SELECT orders")->mutable_attributes()->DeleteSubrange(0, 1);
    require_equal(expected, out);
  }
  SECTION("an invalid pattern is a configuration error") {
    o.redact.delete_keys_matching = {"(unclosed"};
    CHECK_THROWS_WITH(ProcessorChain({o}), Catch::Contains("delete_keys_matching") &&
                                               Catch::Contains("(unclosed"));
  }
}

TEST_CASE("filter: a matching span and its descendants in the request are dropped, by reason") {
  ProcessorOptions o;
  o.type = ProcessorOptions::Type::kFilter;
  o.name = "filter";
  SpanRule probes;
  probes.name = "health_checks";
  probes.kinds = {v1::Span::SPAN_KIND_SERVER};
  probes.attributes = {{"url.path", {"/healthz", "/readyz", "/metrics"}}};
  o.filter.drop_spans = {probes};
  const ProcessorChain chain({o});
  std::uint32_t left = 0;
  const std::string out = run(chain, app_request().SerializeAsString(), &left);
  CHECK(names(out) == std::set<std::string>{"GET /orders", "SELECT orders", "other trace"});
  CHECK(left == 3);
  std::map<std::string, std::uint64_t> counts;
  chain.processors()[0]->drops().for_each(
      [&](const std::string& reason, std::uint64_t n) { counts[reason] = n; });
  CHECK(counts["health_checks"] == 1);
  CHECK(counts["parent_dropped"] == 2);

  SECTION("conditions combine: kind, status, names, int values, resource") {
    SpanRule rule;
    rule.attributes = {{"http.response.status_code", {"200"}}};
    rule.resource = {{"service.name", {"orders-api"}}};
    rule.span_names = {"GET /healthz", "GET /orders"};
    o.filter.drop_spans = {rule};
    CHECK(names(run(ProcessorChain({o}), app_request().SerializeAsString())) ==
          std::set<std::string>{"GET /orders", "SELECT orders", "other trace"});
    rule.resource = {{"service.name", {"another"}}};
    o.filter.drop_spans = {rule};
    const std::string bytes = app_request().SerializeAsString();
    CHECK(run(ProcessorChain({o}), bytes) == bytes);  // nothing matched: byte-identical
  }
}

TEST_CASE("probabilistic_sampler keeps or drops whole traces and records th") {
  ProcessorOptions o;
  o.type = ProcessorOptions::Type::kSampler;
  o.name = "probabilistic_sampler";
  o.sampler.percentage = 20;
  const ProcessorChain chain({o});
  std::mt19937_64 rng(7);
  std::size_t kept_traces = 0;
  constexpr std::size_t traces = 4000;
  for (std::size_t t = 0; t < traces; ++t) {
    ExportTraceServiceRequest r;
    auto* spans = r.add_resource_spans()->add_scope_spans()->mutable_spans();
    const std::string trace = spanrelay::testing::random_bytes(rng, 16);
    for (int i = 0; i < 3; ++i) {
      auto* s = spans->Add();
      s->set_trace_id(trace);
      s->set_span_id(spanrelay::testing::random_bytes(rng, 8));
      s->set_name("s" + std::to_string(i));
    }
    std::uint32_t left = 99;
    const std::string out = run(chain, r.SerializeAsString(), &left);
    REQUIRE((left == 0 || left == 3));  // the whole trace, or nothing
    if (left == 3) {
      ++kept_traces;
      ExportTraceServiceRequest kept;
      REQUIRE(kept.ParseFromString(out));
      CHECK(kept.resource_spans(0).scope_spans(0).spans(0).trace_state() == "ot=th:cccd");
    }
  }
  // 20 % of 4000 = 800, sigma = sqrt(4000 * 0.2 * 0.8) ~ 25: within 5 sigma.
  CHECK(kept_traces > 800 - 125);
  CHECK(kept_traces < 800 + 125);
}

TEST_CASE("a chain whose rules match nothing leaves requests byte-identical") {
  ProcessorOptions redact;
  redact.type = ProcessorOptions::Type::kRedact;
  redact.name = "redact";
  ProcessorOptions filter;
  filter.type = ProcessorOptions::Type::kFilter;
  filter.name = "filter";
  SpanRule never;
  never.span_names = {"no such span"};
  filter.filter.drop_spans = {never};
  ProcessorOptions attrs = attributes(
      {{Scope::kSpan, "absent.key", AttributeAction::Kind::kDelete},
       {Scope::kSpan, "absent.key", AttributeAction::Kind::kUpdate, std::string("x")}});
  const ProcessorChain chain({attrs, redact, filter});
  for (std::uint64_t seed = 1; seed <= 30; ++seed) {
    const std::string bytes =
        spanrelay::testing::make_request(static_cast<int>(1 + seed % 3), 2,
                                         static_cast<int>(1 + seed % 9), seed)
            .SerializeAsString();
    CHECK(run(chain, bytes) == bytes);
  }
  CHECK(ProcessorChain().empty());
}
