// The processors through the real binary: configured with the keys of the config contract,
// they redact, filter, enrich and sample what reaches the upstream, over protobuf and JSON,
// and count what they drop in /metrics. Nothing redacted is ever written to the spool.

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "integration/checks.hpp"
#include "integration/fake_upstream.hpp"
#include "integration/harness.hpp"

namespace it {
namespace {

const char* kProcessors = R"(
processors:
  - type: attributes
    actions:
      - {scope: resource, key: deployment.environment.name, action: upsert, value: "${SPANRELAY_IT_ENV:-prod}"}
      - {scope: span, key: http.request.header.cookie, action: delete}
  - type: redact
    keys: [db.statement, db.query.text]
    mode: sql_literals
  - type: filter
    drop_spans:
      - {kind: server, attributes: {url.path: [/healthz, /readyz, /metrics]}, reason: probes}
)";

void add_string(google::protobuf::RepeatedPtrField<otlp_common::KeyValue>* attrs,
                const std::string& key, const std::string& value) {
  auto* kv = attrs->Add();
  kv->set_key(key);
  kv->mutable_value()->set_string_value(value);
}

// A probe span with a child, and an API span with a DB child carrying SQL with customer data.
ExportRequest app_request() {
  ExportRequest r;
  auto* rs = r.add_resource_spans();
  add_string(rs->mutable_resource()->mutable_attributes(), "service.name", "orders-api");
  auto* spans = rs->add_scope_spans()->mutable_spans();
  const std::string probe_trace = random_trace_id(), api_trace = random_trace_id();
  auto span = [&](const std::string& trace, const std::string& parent, const std::string& name,
                  Span::SpanKind kind) {
    Span* s = spans->Add();
    s->set_trace_id(trace);
    s->set_span_id(random_span_id());
    s->set_parent_span_id(parent);
    s->set_name(name);
    s->set_kind(kind);
    s->set_start_time_unix_nano(1'700'000'000'000'000'000ULL);
    s->set_end_time_unix_nano(1'700'000'000'100'000'000ULL);
    return s;
  };
  Span* probe = span(probe_trace, "", "GET /healthz", Span::SPAN_KIND_SERVER);
  add_string(probe->mutable_attributes(), "url.path", "/healthz");
  span(probe_trace, probe->span_id(), "db ping", Span::SPAN_KIND_CLIENT);
  Span* api = span(api_trace, "", "GET /orders", Span::SPAN_KIND_SERVER);
  add_string(api->mutable_attributes(), "url.path", "/orders");
  add_string(api->mutable_attributes(), "http.request.header.cookie", "session=s3cr3t");
  Span* db = span(api_trace, api->span_id(), "SELECT shop.orders", Span::SPAN_KIND_CLIENT);
  add_string(db->mutable_attributes(), "db.statement",
             "SELECT * FROM orders WHERE email = 'bob@example.com' AND total > 100");
  return r;
}

const otlp_common::KeyValue* find(const google::protobuf::RepeatedPtrField<otlp_common::KeyValue>& attrs,
                                  const std::string& key) {
  const auto it = std::find_if(attrs.begin(), attrs.end(),
                               [&](const otlp_common::KeyValue& kv) { return kv.key() == key; });
  return it == attrs.end() ? nullptr : &*it;
}

}  // namespace

TEST_CASE("processors redact SQL, drop probes with their children, tag the environment",
          "[integration][processors]") {
  const Format format = GENERATE(Format::protobuf, Format::json);
  FakeUpstream upstream(0);
  AgentConfig config;
  config.exporters["up"].endpoint = upstream.base_url();
  config.extra_yaml = kProcessors;
  Env env = default_env();
  env.emplace_back("SPANRELAY_IT_ENV", "staging");
  Agent agent(config, env);

  require_accepted(post_spans(agent.port(), app_request(), {.format = format}), format);
  REQUIRE(upstream.wait_for_spans(2, 10s));
  CHECK(stays_false([&] { return upstream.delivered_span_count() > 2; }, 300ms));
  const std::vector<FlatSpan> delivered = upstream.delivered_spans();
  std::map<std::string, const FlatSpan*> by_name;
  for (const FlatSpan& s : delivered) {
    by_name[s.span.name()] = &s;
  }
  REQUIRE(by_name.size() == 2);
  REQUIRE(by_name.contains("GET /orders"));
  REQUIRE(by_name.contains("SELECT shop.orders"));
  const FlatSpan& db = *by_name["SELECT shop.orders"];
  const auto* statement = find(db.span.attributes(), "db.statement");
  REQUIRE(statement != nullptr);
  CHECK(statement->value().string_value() == "SELECT * FROM orders WHERE email = ? AND total > ?");
  CHECK(find(by_name["GET /orders"]->span.attributes(), "http.request.header.cookie") == nullptr);
  for (const FlatSpan& s : delivered) {
    const auto* env_attr = find(s.resource.attributes(), "deployment.environment.name");
    REQUIRE(env_attr != nullptr);
    CHECK(env_attr->value().string_value() == "staging");
  }
  CHECK(agent.wait_metric_at_least(
      R"(spanrelay_processor_dropped_spans_total{processor="filter",reason="probes"})", 1));
  CHECK(agent.metric(
            R"(spanrelay_processor_dropped_spans_total{processor="filter",reason="parent_dropped"})") ==
        1);
  CHECK(agent.metric(R"(spanrelay_processor_edited_attributes_total{processor="redact"})") == 1);
  CHECK(agent.metric(R"(spanrelay_receiver_accepted_spans_total)") == 2);
}

TEST_CASE("with a spool, only the processed request is written to disk",
          "[integration][processors]") {
  FakeUpstream upstream(0);
  upstream.hold();  // nothing leaves: the records stay on disk to be read
  TempDir spool;
  AgentConfig config;
  config.exporters["up"].endpoint = upstream.base_url();
  config.extra_yaml = kProcessors;
  config.spool = {{"path", spool.path()}, {"fsync", "always"}};
  Agent agent(config);
  require_accepted(post_spans(agent.port(), app_request()));
  std::string on_disk;
  for (const auto& entry : std::filesystem::recursive_directory_iterator(spool.path())) {
    if (entry.is_regular_file()) {
      std::ifstream in(entry.path(), std::ios::binary);
      on_disk.append(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
    }
  }
  CHECK(on_disk.find("SELECT * FROM orders WHERE email = ?") != std::string::npos);
  CHECK(on_disk.find("bob@example.com") == std::string::npos);
  CHECK(on_disk.find("session=s3cr3t") == std::string::npos);
  CHECK(on_disk.find("GET /healthz") == std::string::npos);
  upstream.release();
  REQUIRE(upstream.wait_for_spans(2, 10s));
}

TEST_CASE("a reload that changes the processors applies to the next request",
          "[integration][processors]") {
  FakeUpstream upstream(0);
  AgentConfig config;
  config.exporters["up"].endpoint = upstream.base_url();
  Agent agent(config);
  require_accepted(post_spans(agent.port(), app_request()));
  REQUIRE(upstream.wait_for_spans(4, 10s));

  config.extra_yaml = kProcessors;
  agent.write_config(config);
  REQUIRE(agent.reload());
  require_accepted(post_spans(agent.port(), app_request()));
  REQUIRE(upstream.wait_for_spans(6, 10s));
  CHECK(stays_false([&] { return upstream.delivered_span_count() > 6; }, 300ms));
  CHECK(agent.metric(
            R"(spanrelay_processor_dropped_spans_total{processor="filter",reason="probes"})") == 1);
}

}  // namespace it
