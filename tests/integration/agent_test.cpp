// The real spanrelay binary against a real loopback upstream. Every wait has a deadline; the
// agent and the fake upstream are torn down by RAII whatever the outcome.

#include <algorithm>
#include <csignal>
#include <map>
#include <string>
#include <vector>

#include <boost/json.hpp>
#include <catch2/catch.hpp>

#include "google/rpc/status.pb.h"
#include "integration/checks.hpp"
#include "integration/fake_upstream.hpp"
#include "integration/harness.hpp"

namespace it {
namespace {

// ---- helpers shared by the tests ----

AgentConfig upstream_config(const FakeUpstream& upstream) {
  AgentConfig config;
  config.exporters["up"].endpoint = upstream.base_url();
  return config;
}

// The error body must be a google.rpc.Status in the request's encoding.
void check_status_body(const HttpResponse& response, Format format) {
  INFO("status " << response.result_int() << ", body: " << response.body());
  if (format == Format::json) {
    CHECK(content_type_of(response).starts_with("application/json"));
    boost::system::error_code ec;
    const auto body = boost::json::parse(response.body(), ec);
    CHECK(!ec);
    CHECK(body.is_object());
    if (ec || !body.is_object()) {
      return;  // CHECK, not REQUIRE: a table of cases goes on to report every failure
    }
    const auto* code = body.as_object().if_contains("code");
    const auto* message = body.as_object().if_contains("message");
    CHECK((code != nullptr && code->is_number()));
    CHECK((message != nullptr && message->is_string() && !message->as_string().empty()));
    return;
  }
  CHECK(content_type_of(response).starts_with("application/x-protobuf"));
  google::rpc::Status status;
  CHECK(status.ParseFromString(response.body()));
  CHECK(!status.message().empty());
}

// Every upstream request must carry the exporter's path, credentials, headers and encoding.
void check_upstream_requests(const FakeUpstream& upstream, bool gzip) {
  const auto requests = upstream.requests();
  REQUIRE(!requests.empty());
  for (const auto& request : requests) {
    INFO("upstream request " << request.method << " " << request.target);
    CHECK(request.method == "POST");
    CHECK(request.target == "/otlp/v1/traces");
    CHECK(request.header("content-type").starts_with("application/x-protobuf"));
    CHECK(request.header("authorization") == expected_authorization());
    CHECK(request.header("x-scope-orgid") == "tenant1");
    CHECK(request.header("content-encoding") == (gzip ? "gzip" : ""));
    CHECK(request.decoded);
  }
}

// A request on a new connection: its answer, or nullopt when the agent refused the
// connection or closed it without answering. Throws when no answer came in time.
std::optional<HttpResponse> post_or_closed(std::uint16_t port, const HttpRequest& request) {
  std::optional<HttpConnection> connection;
  try {
    connection.emplace(port, 5s);
  } catch (const std::runtime_error& e) {
    if (std::string_view(e.what()).find("timed out") != std::string_view::npos) {
      throw;
    }
    return std::nullopt;  // refused: no longer listening
  }
  if (!connection->write(render_request(request), 5s)) {
    return std::nullopt;
  }
  return connection->read_response(5s);
}

// Proof of life after an abuse: admin healthy and a fresh export goes all the way through.
void check_still_serving(Agent& agent, const FakeUpstream* upstream) {
  REQUIRE(agent.running());
  CHECK(agent.healthy());
  const auto before = upstream != nullptr ? upstream->delivered_span_count() : 0;
  const auto sent = post_and_expect_ok(agent.port(), 3);
  if (upstream != nullptr) {
    CHECK(upstream->wait_for_spans(before + sent.size(), 10s));
  }
}

}  // namespace

// ---- forwarding ----

TEST_CASE("protobuf spans arrive upstream unchanged with auth and headers over gzip",
          "[integration][forwarding]") {
  FakeUpstream upstream;
  AgentConfig config = upstream_config(upstream);
  config.log_level = "debug";  // the most talkative level must still not leak the token
  Agent agent(config);

  RequestShape shape;
  shape.resources = 2;
  const ExportRequest request = make_request(24, shape);
  require_accepted(post_spans(agent.port(), request));

  require_delivered_once(upstream, flatten(request));
  check_upstream_requests(upstream, true);

  CHECK(agent.wait_metric_at_least(exporter_series("spanrelay_exporter_sent_spans_total"), 24));
  CHECK(agent.metric(exporter_series("spanrelay_exporter_sent_spans_total")) == 24);
  CHECK(agent.metric(exporter_series("spanrelay_exporter_sent_requests_total")) >= 1);
  CHECK(agent.metric("spanrelay_receiver_requests_total") >= 1);
  CHECK(agent.metric("spanrelay_receiver_accepted_spans_total") == 24);
  CHECK(agent.metric("spanrelay_buffer_limit_bytes") == 64.0 * 1024 * 1024);
  CHECK(agent.metric(exporter_series("spanrelay_exporter_failed_spans_total")) == 0);

  check_no_secret(agent.log());
}

namespace {
struct EncodingVariant {
  std::string name;
  PostOptions options;
  std::string content_type;  // overrides the default header when set
};
}  // namespace

TEST_CASE("every request encoding is accepted and forwarded as protobuf",
          "[integration][forwarding]") {
  const auto variant = GENERATE(values<EncodingVariant>({
      {"protobuf gzip", {Format::protobuf, true, 0}, ""},
      {"json", {Format::json, false, 0}, ""},
      {"json gzip", {Format::json, true, 0}, ""},
      {"json with charset", {Format::json, false, 0}, "application/json; charset=utf-8"},
      {"protobuf chunked", {Format::protobuf, false, 1000}, ""},
      {"json chunked", {Format::json, false, 1000}, ""},
      {"json gzip chunked", {Format::json, true, 700}, ""},
  }));
  INFO("variant: " << variant.name);
  FakeUpstream upstream;
  Agent agent(upstream_config(upstream));

  const ExportRequest request = make_request(12);
  HttpRequest http_request = otlp_request(request, variant.options);
  if (!variant.content_type.empty()) {
    http_request.headers.front().second = variant.content_type;
  }
  require_accepted(send_request(agent.port(), http_request), variant.options.format);

  require_delivered_once(upstream, flatten(request));
  check_upstream_requests(upstream, true);
}

TEST_CASE("compression: none sends protobuf without Content-Encoding",
          "[integration][forwarding]") {
  FakeUpstream upstream;
  AgentConfig config = upstream_config(upstream);
  config.exporters["up"].compression = "none";
  Agent agent(config);

  const auto sent = post_and_expect_ok(agent.port(), 8);
  require_delivered_once(upstream, sent);
  check_upstream_requests(upstream, false);
  for (const auto& request : upstream.requests()) {
    CHECK(request.raw_body == request.body);
  }
}

TEST_CASE("config values substitute environment variables", "[integration][config]") {
  FakeUpstream upstream;
  AgentConfig config = upstream_config(upstream);
  config.exporters["up"].headers = {{"X-Scope-OrgID", "${TEST_TENANT}"}};
  Env env = default_env();
  env.emplace_back("TEST_TENANT", "tenant-from-env");
  Agent agent(config, env);

  require_delivered_once(upstream, post_and_expect_ok(agent.port(), 2));
  for (const auto& request : upstream.requests()) {
    CHECK(request.header("x-scope-orgid") == "tenant-from-env");
  }
}

TEST_CASE("batches merge several requests into one upstream request",
          "[integration][forwarding]") {
  FakeUpstream upstream;
  AgentConfig config = upstream_config(upstream);
  config.batch_timeout = "500ms";  // long enough for all posts to land in one batch
  Agent agent(config);

  std::vector<FlatSpan> sent;
  for (int i = 0; i < 4; ++i) {
    append(sent, post_and_expect_ok(agent.port(), 5));
  }
  require_delivered_once(upstream, sent);
  CHECK(upstream.request_count() < 4);
}

TEST_CASE("keep-alive: several requests on one connection", "[integration][receiver]") {
  FakeUpstream upstream;
  Agent agent(upstream_config(upstream));

  HttpConnection connection(agent.port());
  std::vector<FlatSpan> sent;
  for (int i = 0; i < 6; ++i) {
    const Format format = i % 2 == 0 ? Format::protobuf : Format::json;
    const ExportRequest request = make_request(3);
    require_accepted(connection.roundtrip(otlp_request(request, {format, i % 3 == 0, 0})),
                     format);
    append(sent, flatten(request));
  }
  require_delivered_once(upstream, sent);
}

// ---- upstream failures and retries ----

TEST_CASE("upstream 503 then 200: delivered exactly once after a retry", "[integration][retry]") {
  FakeUpstream upstream;
  upstream.script({UpstreamResponse::with_status(503), UpstreamResponse::with_status(503)});
  Agent agent(upstream_config(upstream));

  const auto sent = post_and_expect_ok(agent.port(), 10);
  require_delivered_once(upstream, sent);

  const auto requests = upstream.requests();
  REQUIRE(requests.size() >= 3);
  CHECK(requests[0].response_status == 503);
  CHECK(requests[1].response_status == 503);
  CHECK(agent.wait_metric_at_least(exporter_series("spanrelay_exporter_sent_spans_total"), 10));
  CHECK(agent.metric(exporter_series("spanrelay_exporter_retries_total")) >= 2);
  CHECK(agent.metric(exporter_series("spanrelay_exporter_failed_spans_total")) == 0);
}

TEST_CASE("upstream 429 with Retry-After delays the retry", "[integration][retry]") {
  FakeUpstream upstream;
  UpstreamResponse throttled = UpstreamResponse::with_status(429);
  throttled.headers = {{"Retry-After", "1"}};
  upstream.script({throttled});
  Agent agent(upstream_config(upstream));  // initial_interval is 100ms: only Retry-After waits 1s

  const auto sent = post_and_expect_ok(agent.port(), 5);
  require_delivered_once(upstream, sent);

  const auto requests = upstream.requests();
  REQUIRE(requests.size() >= 2);
  CHECK(requests[0].response_status == 429);
  const auto gap = requests[1].received_at - requests[0].received_at;
  CHECK(std::chrono::duration_cast<Millis>(gap) >= 900ms);
}

TEST_CASE("upstream 400 drops the batch at once and counts it", "[integration][retry]") {
  FakeUpstream upstream;
  upstream.script({UpstreamResponse::with_status(400)});
  Agent agent(upstream_config(upstream));

  post_and_expect_ok(agent.port(), 7);
  const auto failed = exporter_series("spanrelay_exporter_failed_spans_total");
  REQUIRE(agent.wait_metric_at_least(failed, 7));
  CHECK(agent.metric(failed) == 7);
  CHECK(agent.metric(exporter_series("spanrelay_exporter_retries_total")) == 0);
  // Absence of a retry cannot be awaited: watch for one over several retry intervals.
  CHECK(stays_false([&] { return upstream.request_count() > 1; }, 600ms));
  CHECK(upstream.request_count() == 1);

  check_still_serving(agent, &upstream);
  check_no_secret(agent.log());
}

// ---- an upstream as strict as the real ones: size limits, partial success, idle closes ----

TEST_CASE("a batch the upstream refuses as too large is split and each span delivered once",
          "[integration][retry][split]") {
  FakeUpstream upstream;
  AgentConfig config = upstream_config(upstream);
  ExporterConfig& up = config.exporters["up"];
  up.compression = "none";  // the limit applies to what is on the wire: keep it predictable
  // Only a split can deliver within the test: a retry waits out a backoff of minutes.
  up.retry_initial_interval = "10m";
  up.retry_max_interval = "10m";
  up.retry_max_elapsed = "1h";
  up.timeout = "20s";
  constexpr std::size_t limit = 200 * 1024;
  SECTION("413 after reading the body") { upstream.set_size_limit(limit, SizeRefusal::k413); }
  SECTION("Grafana Cloud's 429 \"larger than max\"") {
    upstream.set_size_limit(limit, SizeRefusal::kGrafana429);
  }
  SECTION("413 from the headers, then a close with the body unread") {
    upstream.set_size_limit(limit, SizeRefusal::kEarly413);
  }
  Agent agent(config);

  RequestShape big;
  big.attribute_padding = 4000;
  const ExportRequest request = make_request(256, big);  // ~1 MiB: five times the limit
  REQUIRE(request.ByteSizeLong() > 4 * limit);
  require_accepted(post_spans(agent.port(), request));
  require_delivered_once(upstream, flatten(request), 30s);  // by span id: each exactly once

  CHECK(upstream.refused_for_size() >= 1);
  CHECK(agent.wait_metric_at_least(exporter_series("spanrelay_exporter_split_batches_total"),
                                   1));
  CHECK(agent.metric(exporter_series("spanrelay_exporter_failed_spans_total")) == 0);
  CHECK(agent.metric(exporter_series("spanrelay_exporter_sent_spans_total")) == 256);
  for (const auto& r : upstream.requests()) {
    if (r.response_status == 200) {
      CHECK(r.raw_body.size() <= limit);
    } else {
      CHECK(r.refused_for_size);
    }
  }
}

TEST_CASE("an upstream partial_success is counted and logged and not retried",
          "[integration][retry]") {
  FakeUpstream upstream;
  upstream.script({UpstreamResponse::partial_success(3, "3 spans had no name")});
  Agent agent(upstream_config(upstream));

  const auto sent = post_and_expect_ok(agent.port(), 10);
  require_delivered_once(upstream, sent);
  const auto rejected = exporter_series("spanrelay_exporter_rejected_spans_total");
  REQUIRE(agent.wait_metric_at_least(rejected, 3));
  CHECK(agent.metric(rejected) == 3);
  CHECK(agent.metric(exporter_series("spanrelay_exporter_sent_spans_total")) == 10);
  CHECK(agent.metric(exporter_series("spanrelay_exporter_failed_spans_total")) == 0);
  CHECK(agent.metric(exporter_series("spanrelay_exporter_retries_total")) == 0);
  CHECK(wait_until([&] {
    return agent.log().find("upstream accepted the batch but rejected 3 span(s): 3 spans had "
                            "no name") != std::string::npos;
  }, 5s));
  CHECK(upstream.request_count() == 1);
}

TEST_CASE("an idle kept-alive connection closed by the upstream costs one immediate retry",
          "[integration][retry]") {
  FakeUpstream upstream;
  upstream.set_idle_close(200ms);
  AgentConfig config = upstream_config(upstream);
  // A retry after a backoff would come minutes later: only the immediate one can deliver.
  config.exporters["up"].retry_initial_interval = "10m";
  config.exporters["up"].retry_max_interval = "10m";
  config.exporters["up"].retry_max_elapsed = "1h";
  Agent agent(config);

  std::vector<FlatSpan> sent = post_and_expect_ok(agent.port(), 4);
  require_delivered_once(upstream, sent);
  // The worker that delivered goes back to the front of the idle list: the next batch takes
  // the same, kept-alive connection, which the upstream closes meanwhile.
  REQUIRE(upstream.wait_for_idle_closes(1, 10s));
  append(sent, post_and_expect_ok(agent.port(), 5));
  require_delivered_once(upstream, sent, 20s);
  CHECK(upstream.request_count() == 2);  // the write into the closed connection reached nobody
  CHECK(agent.metric(exporter_series("spanrelay_exporter_retries_total")) == 1);
  CHECK(agent.metric(exporter_series("spanrelay_exporter_failed_spans_total")) == 0);
}

TEST_CASE("a full buffer answers 429 with Retry-After and loses no accepted span",
          "[integration][backpressure]") {
  FakeUpstream upstream;
  upstream.hold();
  AgentConfig config = upstream_config(upstream);
  config.buffer_max_bytes = "64KiB";
  config.batch_max_bytes = "16KiB";
  config.exporters["up"].timeout = "20s";  // held requests must not time out and be retried
  Agent agent(config);

  std::vector<FlatSpan> accepted;
  std::optional<HttpResponse> refused;
  for (int i = 0; i < 300 && !refused; ++i) {
    const ExportRequest request = make_request(8);
    HttpResponse response = post_spans(agent.port(), request);
    if (response.result_int() == 200) {
      append(accepted, flatten(request));
    } else {
      refused = std::move(response);
    }
  }
  REQUIRE(refused.has_value());
  CHECK(refused->result_int() == 429);
  const std::string retry_after(refused->operator[]("Retry-After"));
  CHECK(!retry_after.empty());
  CHECK(retry_after.find_first_not_of("0123456789") == std::string::npos);
  check_status_body(*refused, Format::protobuf);
  CHECK(!accepted.empty());
  CHECK(agent.metric("spanrelay_receiver_refused_spans_total") > 0);
  CHECK(agent.metric("spanrelay_buffer_limit_bytes") == 64.0 * 1024);
  CHECK(agent.metric("spanrelay_buffer_used_bytes") > 0);

  upstream.release();
  require_delivered_once(upstream, accepted, 20s);
  CHECK(wait_until([&] { return agent.metric("spanrelay_buffer_used_bytes") == 0; }, 5s));
  check_still_serving(agent, &upstream);
}

// ---- shutdown ----

TEST_CASE("SIGTERM delivers the spans still in the batcher and exits 0",
          "[integration][shutdown]") {
  FakeUpstream upstream;
  AgentConfig config = upstream_config(upstream);
  config.batch_timeout = "60s";  // nothing leaves the batcher on its own during the test
  Agent agent(config);

  std::vector<FlatSpan> sent;
  for (int i = 0; i < 3; ++i) {
    append(sent, post_and_expect_ok(agent.port(), 5));
  }
  CHECK(upstream.request_count() == 0);

  agent.signal(SIGTERM);
  const auto exit_code = agent.wait_exit(15s);
  REQUIRE(exit_code.has_value());
  CHECK(*exit_code == 0);
  require_delivered_once(upstream, sent, 5s);
}

TEST_CASE("SIGTERM with the upstream down exits within shutdown_timeout",
          "[integration][shutdown]") {
  std::optional<FakeUpstream> stuck;
  AgentConfig config;
  config.shutdown_timeout = "2s";
  // Without shutdown_timeout the agent would wait for an hour: an answer, or a retry.
  config.exporters["up"].timeout = "1h";
  config.exporters["up"].retry_initial_interval = "1h";
  config.exporters["up"].retry_max_interval = "1h";
  config.exporters["up"].retry_max_elapsed = "10h";
  SECTION("connection refused") {
    config.exporters["up"].endpoint =
        "http://127.0.0.1:" + std::to_string(free_port()) + "/otlp";
  }
  SECTION("upstream never answers") {
    stuck.emplace();
    stuck->hold();
    config.exporters["up"].endpoint = stuck->base_url();
  }
  Agent agent(config);
  post_and_expect_ok(agent.port(), 5);
  if (stuck) {
    REQUIRE(stuck->wait_for_requests(1, 10s));
  } else {
    REQUIRE(wait_until([&] {
      return agent.log().find("export failed [connection]") != std::string::npos;
    }, 10s));
  }

  agent.signal(SIGTERM);
  // docs/operations.md: "delivers for up to shutdown_timeout, then exits 0"; what is undelivered
  // is counted, and the last line says accepted, delivered, dropped.
  const auto exit_code = agent.wait_exit(60s);  // an hour if shutdown_timeout were ignored
  REQUIRE(exit_code.has_value());
  CHECK(*exit_code == 0);
  const std::string log = agent.log();
  INFO(log);
  CHECK(log.find("shutdown_timeout reached before delivery") != std::string::npos);
  const auto last = log.find_last_not_of('\n');
  REQUIRE(last != std::string::npos);
  const std::string last_line = log.substr(log.rfind('\n', last) + 1, std::string::npos);
  CHECK_THAT(last_line, Catch::Contains("info [agent] stopped: 5 span(s) accepted, 0 delivered, "
                                        "5 dropped by exporters, 0 refused"));
}

TEST_CASE("while shutting down requests get 503 or no connection", "[integration][shutdown]") {
  FakeUpstream upstream;
  upstream.hold();  // an export in flight keeps the agent in its shutdown phase
  AgentConfig config = upstream_config(upstream);
  config.shutdown_timeout = "5s";
  config.exporters["up"].timeout = "30s";
  Agent agent(config);
  HttpConnection kept(agent.port());
  require_accepted(kept.roundtrip(otlp_request(make_request(2))));
  REQUIRE(upstream.wait_for_requests(1, 10s));

  agent.signal(SIGTERM);
  // Refused or closed counts as "no longer accepting"; a request left without any answer (a
  // timeout) does not: it throws out of the test.
  const bool new_requests_stopped = wait_until(
      [&] {
        const std::optional<HttpResponse> response =
            post_or_closed(agent.port(), otlp_request(make_request(1)));
        if (!response) {
          return true;
        }
        if (response->result_int() == 503) {
          check_status_body(*response, Format::protobuf);
          return true;
        }
        return false;
      },
      10s, 50ms);
  CHECK(new_requests_stopped);
  REQUIRE(agent.running());  // the held export keeps it alive: the checks above saw shutdown
  // The kept-alive connection: a 503, or closed; read_response() throws on a timeout.
  if (kept.write(render_request(otlp_request(make_request(1))), 5s)) {
    const std::optional<HttpResponse> response = kept.read_response(5s);
    if (response) {
      CHECK(response->result_int() == 503);
    }
  }

  upstream.release();
  const auto exit_code = agent.wait_exit(10s);
  REQUIRE(exit_code.has_value());
  CHECK(*exit_code == 0);
  CHECK(upstream.delivered_span_count() >= 2);
}

// ---- bad input ----

namespace {

struct BadInput {
  std::string name;
  HttpRequest request;
  unsigned status;
  Format error_format;
};

HttpRequest with_body(std::string content_type, std::string body, std::string encoding = "") {
  HttpRequest request;
  request.headers.emplace_back("Content-Type", std::move(content_type));
  if (!encoding.empty()) {
    request.headers.emplace_back("Content-Encoding", std::move(encoding));
  }
  request.body = std::move(body);
  return request;
}

// A JSON export whose first traceId is replaced by `id`.
std::string json_with_trace_id(const std::string& id) {
  const ExportRequest request = make_request(2);
  std::string json = to_otlp_json(request);
  const std::string good = hex(request.resource_spans(0).scope_spans(0).spans(0).trace_id());
  json.replace(json.find(good), good.size(), id);
  return json;
}

std::vector<BadInput> bad_inputs(std::size_t max_request_bytes) {
  const std::string protobuf = make_request(3).SerializeAsString();
  RequestShape big_shape;
  big_shape.attribute_padding = 4096;
  const std::string too_big = make_request(2 * max_request_bytes / 4096, big_shape)
                                  .SerializeAsString();
  const std::string gzipped = gzip(protobuf);

  std::vector<BadInput> cases;
  HttpRequest other_path = with_body("application/x-protobuf", protobuf);
  other_path.target = "/v1/metrics";
  cases.push_back({"unknown path", other_path, 404, Format::protobuf});
  HttpRequest get;
  get.method = "GET";
  cases.push_back({"GET", get, 405, Format::json});  // no protobuf Content-Type: readable JSON
  HttpRequest put = with_body("application/x-protobuf", protobuf);
  put.method = "PUT";
  cases.push_back({"PUT", put, 405, Format::protobuf});
  cases.push_back({"text/plain", with_body("text/plain", "hello"), 415, Format::json});
  cases.push_back({"unsupported Content-Encoding",
                   with_body("application/x-protobuf", protobuf, "br"), 415, Format::protobuf});
  cases.push_back({"bad protobuf", with_body("application/x-protobuf", "\x0a\xff\xff\xff\xff\x0f"),
                   400, Format::protobuf});
  cases.push_back({"bad JSON", with_body("application/json", R"({"resourceSpans": [{"reso)"),
                   400, Format::json});
  cases.push_back({"JSON id not hex", with_body("application/json", json_with_trace_id(
                                                                        std::string(32, 'z'))),
                   400, Format::json});
  cases.push_back({"JSON id of wrong length",
                   with_body("application/json", json_with_trace_id("0123456789abcdef")), 400,
                   Format::json});
  cases.push_back({"truncated gzip",
                   with_body("application/x-protobuf", gzipped.substr(0, gzipped.size() / 2),
                             "gzip"),
                   400, Format::protobuf});
  cases.push_back({"body over max_request_bytes", with_body("application/x-protobuf", too_big),
                   413, Format::protobuf});
  HttpRequest too_big_chunked = with_body("application/x-protobuf", too_big);
  too_big_chunked.chunk_size = 8192;
  cases.push_back({"chunked body over max_request_bytes", too_big_chunked, 413, Format::protobuf});
  cases.push_back({"gzip body over max_request_bytes once inflated",
                   with_body("application/x-protobuf", gzip(too_big), "gzip"), 413,
                   Format::protobuf});
  cases.push_back({"JSON body over max_request_bytes",
                   with_body("application/json", std::string(max_request_bytes + 10, ' ') + "{}"),
                   413, Format::json});
  return cases;
}

}  // namespace

TEST_CASE("bad input gets the right status and a google.rpc.Status body",
          "[integration][receiver]") {
  FakeUpstream upstream;
  AgentConfig config = upstream_config(upstream);
  config.max_request_bytes = "64KiB";
  Agent agent(config);

  std::size_t traces_handler_errors = 0;
  for (const BadInput& bad : bad_inputs(64 * 1024)) {
    INFO("case: " << bad.name);
    const HttpResponse response = send_request(agent.port(), bad.request);
    CHECK(response.result_int() == bad.status);
    check_status_body(response, bad.error_format);
    if (bad.status == 405) {
      CHECK(std::string(response[boost::beast::http::field::allow]).find("POST") !=
            std::string::npos);
    }
    if (bad.request.target == "/v1/traces" && bad.request.method == "POST") {
      ++traces_handler_errors;
    }
  }
  CHECK(agent.metric("spanrelay_receiver_bad_requests_total") >=
        static_cast<double>(traces_handler_errors));
  CHECK(agent.metric("spanrelay_receiver_accepted_spans_total") == 0);
  check_still_serving(agent, &upstream);
  CHECK(upstream.delivered_span_count() == 3);  // only the proof-of-life spans went out
}

TEST_CASE("a gzip bomb is refused with 413 and the agent keeps serving",
          "[integration][receiver]") {
  FakeUpstream upstream;
  Agent agent(upstream_config(upstream));  // max_request_bytes: 16MiB

  const std::string bomb = gzip(std::string(100u << 20, '\0'));
  REQUIRE(bomb.size() < (1u << 20));
  const HttpResponse response = send_request(
      agent.port(), with_body("application/x-protobuf", bomb, "gzip"), 30s);
  CHECK(response.result_int() == 413);
  check_status_body(response, Format::protobuf);
  check_still_serving(agent, &upstream);
}

TEST_CASE("spans with invalid ids are rejected in partial_success and the rest forwarded",
          "[integration][receiver]") {
  FakeUpstream upstream;
  Agent agent(upstream_config(upstream));

  ExportRequest request = make_request(5);
  auto* spans = request.mutable_resource_spans(0)->mutable_scope_spans(0);
  const ExportRequest valid = request;
  spans->add_spans()->CopyFrom(spans->spans(0));
  spans->mutable_spans(spans->spans_size() - 1)->set_trace_id(std::string(16, '\0'));
  spans->add_spans()->CopyFrom(spans->spans(0));
  spans->mutable_spans(spans->spans_size() - 1)->set_span_id(random_span_id().substr(0, 7));
  spans->add_spans()->CopyFrom(spans->spans(0));
  spans->mutable_spans(spans->spans_size() - 1)->set_span_id(std::string(8, '\0'));

  CHECK(accepted_rejected_spans(post_spans(agent.port(), request), Format::protobuf) == 3);
  require_delivered_once(upstream, flatten(valid));
  CHECK(agent.metric("spanrelay_receiver_rejected_spans_total") == 3);
  CHECK(agent.metric("spanrelay_receiver_accepted_spans_total") == 5);
}

TEST_CASE("malformed HTTP framing is answered 400 or closed", "[integration][receiver]") {
  FakeUpstream upstream;
  Agent agent(upstream_config(upstream));

  const std::string head =
      "POST /v1/traces HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-protobuf\r\n";
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"garbage request line", "GARBAGE\r\n\r\n"},
      {"TLS hello on the plain port",
       std::string("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 11) + "\r\n\r\n"},
      {"bad chunk size", head + "Transfer-Encoding: chunked\r\n\r\nZZZ\r\nabc\r\n0\r\n\r\n"},
      {"bad Content-Length", head + "Content-Length: 12abc\r\n\r\n"},
      {"header line without colon", head + "this is not a header\r\nContent-Length: 0\r\n\r\n"},
  };
  for (const auto& [name, bytes] : cases) {
    INFO("case: " << name);
    HttpConnection connection(agent.port());
    connection.write(bytes);
    const auto response = connection.read_response(10s);
    if (response) {
      CHECK(response->result_int() == 400);
    }
    CHECK(connection.closed_within(5s));
  }
  check_still_serving(agent, &upstream);
}

TEST_CASE("a slowloris client is cut off by read_timeout", "[integration][receiver]") {
  FakeUpstream upstream;
  AgentConfig config = upstream_config(upstream);
  config.read_timeout = "1s";
  Agent agent(config);

  HttpConnection connection(agent.port());
  const auto start = Clock::now();
  bool cut_off = !connection.write("POST /v1/traces HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ");
  // One header byte every 200ms: a server without a whole-request deadline would wait 20s.
  for (int i = 0; i < 100 && !cut_off; ++i) {
    cut_off = !connection.write("a") || connection.closed_within(200ms);
  }
  const auto elapsed = std::chrono::duration_cast<Millis>(Clock::now() - start);
  INFO("cut off after " << elapsed.count() << " ms");
  // Every byte arrives well within read_timeout of the previous one: only a deadline on the
  // whole request cuts the client off before its 100 bytes (20 s) are out.
  CHECK(cut_off);
  check_still_serving(agent, &upstream);
}

// ---- file exporter ----

namespace {

struct FileSpan {
  std::string trace_id;  // hex
  std::string span_id;   // hex
  std::string name;
};

// Parses the complete lines of the file exporter's output; fails the test on a bad line.
std::vector<std::vector<FileSpan>> read_json_lines(const std::string& path) {
  const std::string content = read_file(path);
  std::vector<std::vector<FileSpan>> lines;
  std::size_t at = 0;
  for (std::size_t end = content.find('\n'); end != std::string::npos;
       at = end + 1, end = content.find('\n', at)) {
    const std::string line = content.substr(at, end - at);
    INFO("line: " << line.substr(0, 300));
    boost::system::error_code ec;
    const auto doc = boost::json::parse(line, ec);
    REQUIRE(!ec);
    REQUIRE(doc.is_object());
    const auto* resource_spans = doc.as_object().if_contains("resourceSpans");
    REQUIRE(resource_spans != nullptr);
    std::vector<FileSpan> spans;
    for (const auto& rs : resource_spans->as_array()) {
      for (const auto& ss : rs.at("scopeSpans").as_array()) {
        for (const auto& span : ss.at("spans").as_array()) {
          spans.push_back({std::string(span.at("traceId").as_string()),
                           std::string(span.at("spanId").as_string()),
                           std::string(span.at("name").as_string())});
        }
      }
    }
    lines.push_back(std::move(spans));
  }
  return lines;
}

std::size_t total_spans(const std::vector<std::vector<FileSpan>>& lines) {
  std::size_t n = 0;
  for (const auto& line : lines) {
    n += line.size();
  }
  return n;
}

}  // namespace

TEST_CASE("the file exporter appends one OTLP/JSON line per batch", "[integration][file]") {
  AgentConfig config;
  config.file_exporter = true;
  Agent agent(config);

  std::map<std::string, std::string> sent;  // hex trace id + hex span id -> name
  for (const char* prefix : {"alpha", "beta", "gamma"}) {
    RequestShape shape;
    shape.name_prefix = prefix;
    const ExportRequest request = make_request(4, shape);
    require_accepted(post_spans(agent.port(), request));
    for (const auto& flat : flatten(request)) {
      sent[hex(flat.span.trace_id()) + hex(flat.span.span_id())] = flat.span.name();
    }
  }

  REQUIRE(wait_until([&] { return total_spans(read_json_lines(agent.file_exporter_path())) >=
                                  sent.size(); },
                     10s, 50ms));
  const auto lines = read_json_lines(agent.file_exporter_path());
  std::map<std::string, std::string> written;
  for (const auto& line : lines) {
    CHECK(!line.empty());
    for (const auto& span : line) {
      CHECK(written.emplace(span.trace_id + span.span_id, span.name).second);
    }
  }
  CHECK(written == sent);
  const auto batches = exporter_series("spanrelay_exporter_sent_requests_total", "local");
  CHECK(agent.wait_metric_at_least(batches, static_cast<double>(lines.size())));
  CHECK(agent.metric(batches) == static_cast<double>(lines.size()));
}

// ---- TLS upstream ----

TEST_CASE("an HTTPS upstream is trusted through tls.ca_file", "[integration][tls]") {
  const TempDir certs;
  const TlsFiles files = make_self_signed_cert(certs.path());
  FakeUpstream upstream(files);
  AgentConfig config = upstream_config(upstream);

  SECTION("with the CA file the spans are delivered") {
    config.exporters["up"].tls_ca_file = files.cert_file;
    Agent agent(config);
    require_delivered_once(upstream, post_and_expect_ok(agent.port(), 4));
    check_upstream_requests(upstream, true);
  }
  SECTION("without it the self-signed upstream is refused") {
    Agent agent(config);
    post_and_expect_ok(agent.port(), 4);
    CHECK(wait_until(
        [&] {
          return agent.metric(exporter_series("spanrelay_exporter_retries_total")) >= 1 ||
                 agent.metric(exporter_series("spanrelay_exporter_failed_spans_total")) >= 4;
        },
        10s, 20ms));
    CHECK(upstream.request_count() == 0);
    check_no_secret(agent.log());
  }
}

// ---- command line ----

namespace {

// Writes a config for --validate into dir; the exporter is never contacted.
std::string write_validate_config(const TempDir& dir, const AgentConfig& config) {
  dir.write("config.yaml", render_config(config, {free_port(), free_port()}, dir.file("x.jsonl")));
  return dir.file("config.yaml");
}

}  // namespace

TEST_CASE("cli: validate prints a redacted summary", "[integration][cli]") {
  REQUIRE(spanrelay_binary_exists());
  const TempDir dir;
  AgentConfig config;
  config.exporters["up"].endpoint = "http://127.0.0.1:9/otlp";
  config.exporters["up"].headers = {{"X-Scope-OrgID", "tenant1"}};
  SECTION("password_env") {}
  SECTION("password_file") {
    dir.write("token", std::string(test_token) + "\n");
    config.exporters["up"].auth =
        "{username: \"123456\", password_file: \"" + dir.file("token") + "\"}";
  }
  const std::string path = write_validate_config(dir, config);
  const ProgramResult result = run_spanrelay({"--validate", "--config", path});
  INFO("output:\n" << result.output);
  REQUIRE(result.exit_code.has_value());
  CHECK(*result.exit_code == 0);
  CHECK(result.output.find("127.0.0.1:9") != std::string::npos);
  check_no_secret(result.output);
}

TEST_CASE("cli: validate names the file line and key of an error", "[integration][cli]") {
  REQUIRE(spanrelay_binary_exists());
  const TempDir dir;
  AgentConfig config;
  config.exporters["up"].endpoint = "http://127.0.0.1:9/otlp";
  std::string yaml = render_config(config, {free_port(), free_port()}, dir.file("x.jsonl"));
  const std::string good_line = "  max_spans: 8192\n";
  const auto at = yaml.find(good_line);
  REQUIRE(at != std::string::npos);
  yaml.replace(at, good_line.size(), "  max_spans: lots\n");
  const auto line_number = 1 + std::count(yaml.begin(), yaml.begin() + at, '\n');
  dir.write("config.yaml", yaml);

  const ProgramResult result = run_spanrelay({"--validate", "--config", dir.file("config.yaml")});
  INFO("output:\n" << result.output);
  REQUIRE(result.exit_code.has_value());
  CHECK(*result.exit_code != 0);
  CHECK(result.output.find(dir.file("config.yaml") + ":" + std::to_string(line_number) + ":") !=
        std::string::npos);
  CHECK(result.output.find("max_spans") != std::string::npos);
  check_no_secret(result.output);
}

TEST_CASE("cli: version and help exit 0 and unknown flags fail", "[integration][cli]") {
  REQUIRE(spanrelay_binary_exists());
  const ProgramResult version = run_spanrelay({"--version"});
  INFO("--version output: " << version.output);
  CHECK(version.exit_code == std::optional<int>(0));
  CHECK(version.output.find_first_of("0123456789") != std::string::npos);

  const ProgramResult help = run_spanrelay({"--help"});
  INFO("--help output: " << help.output);
  CHECK(help.exit_code == std::optional<int>(0));
  CHECK(help.output.find("--config") != std::string::npos);

  const ProgramResult unknown = run_spanrelay({"--no-such-flag"});
  INFO("--no-such-flag output: " << unknown.output);
  REQUIRE(unknown.exit_code.has_value());
  CHECK(*unknown.exit_code != 0);
  CHECK(*unknown.exit_code < 128);
}

}  // namespace it
