// Fan-out to several exporters, the otlp_grpc exporter against a real gRPC upstream, the
// OTLP/gRPC receiver next to the HTTP one, and both receivers on Unix sockets: the real binary
// each time. Every wait has a deadline; agent and upstreams are torn down by RAII.

#include <algorithm>
#include <csignal>
#include <filesystem>
#include <latch>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>

#include "integration/checks.hpp"
#include "integration/fake_grpc_upstream.hpp"
#include "integration/fake_upstream.hpp"
#include "integration/grpc_client.hpp"
#include "integration/harness.hpp"

namespace it {
namespace {

constexpr std::string_view sent_spans = "spanrelay_exporter_sent_spans_total";
constexpr std::string_view failed_spans = "spanrelay_exporter_failed_spans_total";
constexpr std::string_view retries = "spanrelay_exporter_retries_total";

ExporterConfig http_exporter(std::string endpoint) {
  ExporterConfig exporter;
  exporter.endpoint = std::move(endpoint);
  return exporter;
}

// An otlp_http endpoint where nothing listens.
std::string closed_port_url() {
  return "http://127.0.0.1:" + std::to_string(free_port()) + "/otlp";
}

void require_exit_zero(Agent& agent) {
  agent.signal(SIGTERM);
  const auto exit_code = agent.wait_exit(15s);
  REQUIRE(exit_code.has_value());
  CHECK(*exit_code == 0);
}

}  // namespace

// ---- fan-out ----

TEST_CASE("fan-out: an exporter failing for long neither delays nor starves the other",
          "[integration][fanout]") {
  FakeUpstream a;
  FakeUpstream b;
  b.set_default(UpstreamResponse::with_status(503));
  AgentConfig config;
  config.exporters["a"] = http_exporter(a.base_url());
  config.exporters["b"] = http_exporter(b.base_url());
  config.exporters["b"].retry_max_elapsed = "5m";
  Agent agent(config);

  std::vector<FlatSpan> sent;
  for (int round = 0; round < 5; ++round) {
    append(sent, post_and_expect_ok(agent.port(), 4));
    // Batches leave after 100 ms; b's retries (up to 5 minutes) must not hold a's copy back.
    INFO("round " << round);
    REQUIRE(a.wait_for_spans(sent.size(), 3s));
  }
  const auto n = static_cast<double>(sent.size());
  require_delivered_once(a, sent);
  CHECK(agent.wait_metric_at_least(exporter_series(sent_spans, "a"), n));
  CHECK(agent.metric(exporter_series(sent_spans, "a")) == n);
  REQUIRE(b.wait_for_requests(1, 5s));
  CHECK(b.delivered_span_count() == 0);
  CHECK(agent.metric(exporter_series(sent_spans, "b")) == 0);
  CHECK(agent.metric(exporter_series(failed_spans, "b")) == 0);

  b.set_default(UpstreamResponse{});  // b recovers: its queued and retried batches go out
  require_delivered_once(b, sent, 15s);
  CHECK(agent.wait_metric_at_least(exporter_series(sent_spans, "b"), n));
  CHECK(agent.metric(exporter_series(sent_spans, "b")) == n);
  CHECK(agent.metric(exporter_series(failed_spans, "b")) == 0);
  CHECK(agent.metric(exporter_series(retries, "b")) >= 1);
  CHECK(compare_delivery(sent, a.delivered_spans()).empty());  // a was not sent anything again
}

TEST_CASE("fan-out: a dead exporter with a small queue drops and counts, the other gets all",
          "[integration][fanout]") {
  FakeUpstream a;
  AgentConfig config;
  config.buffer_max_bytes = "512KiB";  // less than is sent: b may not keep it all
  config.batch_max_bytes = "16KiB";
  config.exporters["a"] = http_exporter(a.base_url());
  ExporterConfig& b = config.exporters["b"] = http_exporter(closed_port_url());
  b.max_queue_bytes = "8KiB";
  b.retry_max_elapsed = "1s";
  Agent agent(config);

  RequestShape shape;
  shape.attribute_padding = 1024;  // ~11 KiB per request, ~880 KiB in all
  std::vector<FlatSpan> sent;
  std::vector<unsigned> refusals;
  for (int round = 0; round < 8; ++round) {
    for (int i = 0; i < 10; ++i) {
      const ExportRequest request = make_request(8, shape);
      const HttpResponse response = post_spans(agent.port(), request);
      if (response.result_int() == 200) {
        append(sent, flatten(request));
      } else {
        refusals.push_back(response.result_int());
      }
    }
    // Paced by a (whose own queue is 256 KiB): what stays held is b's doing.
    INFO("round " << round);
    REQUIRE(a.wait_for_spans(sent.size(), 10s));
  }
  CHECK(refusals.empty());  // never 429: b's share of the buffer is bounded
  CHECK(agent.metric("spanrelay_receiver_refused_spans_total") == 0);

  const auto n = static_cast<double>(sent.size());
  require_delivered_once(a, sent, 20s);
  CHECK(agent.wait_metric_at_least(exporter_series(sent_spans, "a"), n));
  CHECK(agent.metric(exporter_series(sent_spans, "a")) == n);
  // Each of b's batches is dropped, from its full queue or after retry.max_elapsed, and counted.
  CHECK(agent.wait_metric_at_least(exporter_series(failed_spans, "b"), n, 15s));
  CHECK(agent.metric(exporter_series(failed_spans, "b")) == n);
  CHECK(agent.metric(exporter_series(sent_spans, "b")) == 0);
  CHECK(wait_until([&] { return agent.metric("spanrelay_buffer_used_bytes") == 0; }, 5s));
}

// ---- otlp_grpc exporter ----

namespace {

AgentConfig grpc_upstream_config(const FakeGrpcUpstream& upstream) {
  AgentConfig config;
  ExporterConfig& up = config.exporters["up"];
  up.type = "otlp_grpc";
  up.endpoint = upstream.endpoint();
  up.headers = {{"X-Scope-OrgID", "tenant1"}, {"X-Custom-Header", "custom value"}};
  return config;
}

using Values = std::vector<std::string>;

// Every call must be an Export carrying the credentials and headers as metadata, compressed as
// configured.
void check_grpc_calls(const FakeGrpcUpstream& upstream, bool gzip) {
  const auto calls = upstream.requests();
  REQUIRE(!calls.empty());
  for (const auto& call : calls) {
    INFO("call " << call.method << " grpc-encoding " << call.encoding);
    CHECK(call.method == otlp_export_method);
    CHECK(call.metadata_values("authorization") == Values{expected_authorization()});
    CHECK(call.metadata_values("x-scope-orgid") == Values{"tenant1"});
    CHECK(call.metadata_values("x-custom-header") == Values{"custom value"});
    CHECK(call.encoding == (gzip ? "gzip" : "identity"));
    CHECK(call.compressed == gzip);
    CHECK(call.decoded);
  }
}

}  // namespace

TEST_CASE("otlp_grpc: spans arrive unchanged, once, with auth and headers as metadata",
          "[integration][otlp_grpc]") {
  const bool gzip = GENERATE(true, false);
  INFO("compression: " << (gzip ? "gzip" : "none"));
  FakeGrpcUpstream upstream;
  AgentConfig config = grpc_upstream_config(upstream);
  config.exporters["up"].compression = gzip ? "gzip" : "none";
  config.log_level = "debug";  // the most talkative level must still not leak the token
  Agent agent(config);

  RequestShape shape;
  shape.resources = 2;
  const ExportRequest request = make_request(24, shape);
  require_accepted(post_spans(agent.port(), request));
  require_delivered_once(upstream, flatten(request));
  check_grpc_calls(upstream, gzip);

  CHECK(agent.wait_metric_at_least(exporter_series(sent_spans), 24));
  CHECK(agent.metric(exporter_series(sent_spans)) == 24);
  CHECK(agent.metric(exporter_series(failed_spans)) == 0);
  CHECK(agent.metric(exporter_series(retries)) == 0);
  check_no_secret(agent.log());
}

TEST_CASE("otlp_grpc: UNAVAILABLE twice then OK delivers once after retries",
          "[integration][otlp_grpc]") {
  FakeGrpcUpstream upstream;
  upstream.script({grpc::Status(grpc::StatusCode::UNAVAILABLE, "down"),
                   grpc::Status(grpc::StatusCode::UNAVAILABLE, "still down")});
  Agent agent(grpc_upstream_config(upstream));

  const auto sent = post_and_expect_ok(agent.port(), 10);
  require_delivered_once(upstream, sent);
  const auto calls = upstream.requests();
  REQUIRE(calls.size() >= 3);
  CHECK(calls[0].answered == grpc::StatusCode::UNAVAILABLE);
  CHECK(calls[1].answered == grpc::StatusCode::UNAVAILABLE);
  CHECK(calls[2].answered == grpc::StatusCode::OK);
  CHECK(agent.wait_metric_at_least(exporter_series(sent_spans), 10));
  CHECK(agent.metric(exporter_series(retries)) >= 2);
  CHECK(agent.metric(exporter_series(failed_spans)) == 0);
}

TEST_CASE("otlp_grpc: RESOURCE_EXHAUSTED with RetryInfo is retried after its delay",
          "[integration][otlp_grpc]") {
  FakeGrpcUpstream upstream;
  upstream.script({FakeGrpcUpstream::throttled(1s)});
  Agent agent(grpc_upstream_config(upstream));  // initial_interval 100ms: only RetryInfo waits 1s

  const auto sent = post_and_expect_ok(agent.port(), 5);
  require_delivered_once(upstream, sent);
  const auto calls = upstream.requests();
  REQUIRE(calls.size() >= 2);
  CHECK(calls[0].answered == grpc::StatusCode::RESOURCE_EXHAUSTED);
  const auto gap = std::chrono::duration_cast<Millis>(calls[1].received_at - calls[0].received_at);
  INFO("second attempt " << gap.count() << " ms after the first");
  CHECK(gap >= 900ms);
  CHECK(agent.wait_metric_at_least(exporter_series(retries), 1));
  CHECK(agent.metric(exporter_series(failed_spans)) == 0);
}

namespace {
struct PermanentError {
  std::string name;
  grpc::StatusCode code;
};
}  // namespace

TEST_CASE("otlp_grpc: a permanent error drops the batch after one attempt and counts it",
          "[integration][otlp_grpc]") {
  const auto error = GENERATE(values<PermanentError>({
      {"RESOURCE_EXHAUSTED without RetryInfo", grpc::StatusCode::RESOURCE_EXHAUSTED},
      {"INVALID_ARGUMENT", grpc::StatusCode::INVALID_ARGUMENT},
  }));
  INFO("upstream answers " << error.name);
  FakeGrpcUpstream upstream;
  upstream.script({grpc::Status(error.code, "fake upstream refuses")});
  Agent agent(grpc_upstream_config(upstream));

  post_and_expect_ok(agent.port(), 7);
  REQUIRE(agent.wait_metric_at_least(exporter_series(failed_spans), 7));
  CHECK(agent.metric(exporter_series(failed_spans)) == 7);
  CHECK(agent.metric(exporter_series(retries)) == 0);
  // Absence of a retry cannot be awaited: watch for one over several retry intervals.
  CHECK(stays_false([&] { return upstream.request_count() > 1; }, 600ms));
  CHECK(upstream.request_count() == 1);

  require_delivered_once(upstream, post_and_expect_ok(agent.port(), 3));  // later batches go
}

TEST_CASE("otlp_grpc: a message over the upstream's size limit is split until it fits, each "
          "span delivered once",
          "[integration][otlp_grpc]") {
  const bool gzip = GENERATE(true, false);
  INFO("compression: " << (gzip ? "gzip" : "none"));
  constexpr std::size_t limit = 8 * 1024;
  FakeGrpcUpstream upstream;
  upstream.set_max_message_bytes(limit);  // RESOURCE_EXHAUSTED "... larger than max", no RetryInfo
  AgentConfig config = grpc_upstream_config(upstream);
  config.exporters["up"].compression = gzip ? "gzip" : "none";
  Agent agent(config);

  RequestShape shape;
  shape.attribute_padding = 1024;
  shape.random_padding = true;  // still over the limit once gzipped
  const ExportRequest request = make_request(48, shape);
  REQUIRE(request.ByteSizeLong() > 4 * limit);
  require_accepted(post_spans(agent.port(), request));
  // Span ids compared one by one: no span lost or sent twice by the splitting.
  require_delivered_once(upstream, flatten(request), 20s);

  const auto calls = upstream.requests();
  std::size_t refused = 0;
  for (const auto& call : calls) {
    INFO("call of " << call.wire_message.size() << " bytes on the wire, " << call.message.size()
                    << " inflated, answered " << call.answered);
    CHECK(call.compressed == gzip);
    if (call.answered == grpc::StatusCode::RESOURCE_EXHAUSTED) {
      ++refused;
      CHECK(std::max(call.wire_message.size(), call.message.size()) > limit);
    } else {
      CHECK(call.answered == grpc::StatusCode::OK);
      CHECK(call.wire_message.size() <= limit);
      CHECK(call.message.size() <= limit);
    }
  }
  CHECK(refused >= 1);
  CHECK(agent.wait_metric_at_least(exporter_series(sent_spans), 48));
  CHECK(agent.metric(exporter_series(sent_spans)) == 48);
  CHECK(agent.metric(exporter_series(failed_spans)) == 0);
  CHECK(agent.metric(exporter_series("spanrelay_exporter_split_batches_total")) >= 1);
  CHECK(agent.log().find("as too large; re-sending it as") != std::string::npos);
}

TEST_CASE("otlp_grpc: partial_success counts the rejected spans and does not resend the batch",
          "[integration][otlp_grpc]") {
  FakeGrpcUpstream upstream;
  upstream.set_partial_success(3, "3 spans had an invalid trace id");
  Agent agent(grpc_upstream_config(upstream));

  require_delivered_once(upstream, post_and_expect_ok(agent.port(), 10));
  const auto rejected = exporter_series("spanrelay_exporter_rejected_spans_total");
  CHECK(agent.wait_metric_at_least(rejected, 3));
  CHECK(agent.metric(rejected) == 3);
  CHECK(agent.metric(exporter_series(sent_spans)) == 10);  // accepted: not a failure
  CHECK(agent.metric(exporter_series(failed_spans)) == 0);
  CHECK(agent.metric(exporter_series(retries)) == 0);
  CHECK(upstream.request_count() == 1);
  const std::string log = agent.log();
  INFO(log);
  CHECK(log.find("rejected 3 span(s): 3 spans had an invalid trace id") != std::string::npos);
}

// ---- OTLP/gRPC receiver ----

namespace {

AgentConfig grpc_receiver_config(const FakeUpstream& upstream) {
  AgentConfig config;
  config.exporters["up"] = http_exporter(upstream.base_url());
  config.grpc_receiver = true;
  return config;
}

}  // namespace

TEST_CASE("gRPC and HTTP clients on many connections: every span upstream exactly once",
          "[integration][grpc_receiver]") {
  FakeUpstream upstream;
  Agent agent(grpc_receiver_config(upstream));

  constexpr std::size_t clients = 8;  // even: HTTP, odd: gRPC; each on its own connection
  constexpr std::size_t requests_per_client = 25;
  std::vector<std::vector<ExportRequest>> requests(clients);
  std::vector<FlatSpan> sent;
  for (auto& mine : requests) {
    for (std::size_t i = 0; i < requests_per_client; ++i) {
      mine.push_back(make_request(3));
      append(sent, flatten(mine.back()));
    }
  }

  std::vector<std::vector<std::string>> errors(clients);  // Catch asserts on this thread only
  std::latch start(clients);
  std::vector<std::thread> threads;
  for (std::size_t c = 0; c < clients; ++c) {
    threads.emplace_back([&, c] {
      const auto fail = [&](std::size_t i, const std::string& what) {
        errors[c].push_back("request " + std::to_string(i) + ": " + what);
      };
      bool started = false;
      try {
        std::optional<HttpConnection> http;
        std::optional<GrpcClient> grpc;
        if (c % 2 == 0) {
          http.emplace(agent.port());
        } else {
          grpc.emplace(agent.grpc_target());
        }
        start.arrive_and_wait();
        started = true;
        for (std::size_t i = 0; i < requests_per_client; ++i) {
          const ExportRequest& request = requests[c][i];
          if (http) {
            const Format format = i % 2 == 0 ? Format::protobuf : Format::json;
            const HttpResponse response = http->roundtrip(otlp_request(request, {format}));
            if (response.result_int() != 200) {
              fail(i, "HTTP " + std::to_string(response.result_int()) + ": " + response.body());
            }
          } else {
            const auto compression = i % 2 == 0 ? GRPC_COMPRESS_NONE : GRPC_COMPRESS_GZIP;
            const GrpcReply reply = grpc->call(request.SerializeAsString(), compression);
            if (!reply.status.ok()) {
              fail(i, "gRPC " + std::to_string(reply.status.error_code()) + ": " +
                          reply.status.error_message());
            }
          }
        }
      } catch (const std::exception& e) {
        fail(requests_per_client, e.what());
        if (!started) {
          start.count_down();  // the others must not wait for this one
        }
      }
    });
  }
  for (auto& thread : threads) {
    thread.join();
  }
  for (std::size_t c = 0; c < clients; ++c) {
    INFO("client " << c << ": " << (errors[c].empty() ? "" : errors[c].front()));
    CHECK(errors[c].empty());
  }

  require_delivered_once(upstream, sent, 20s);
  CHECK(agent.metric("spanrelay_receiver_accepted_spans_total") ==
        static_cast<double>(sent.size()));
  CHECK(agent.metric("spanrelay_receiver_refused_spans_total") == 0);
}

TEST_CASE("gRPC receiver: oversize and garbage messages are refused, SIGTERM exits 0",
          "[integration][grpc_receiver]") {
  FakeUpstream upstream;
  AgentConfig config = grpc_receiver_config(upstream);
  config.grpc_max_message_bytes = "64KiB";
  Agent agent(config);
  GrpcClient client(agent.grpc_target());

  RequestShape big;
  big.attribute_padding = 4096;
  const std::string too_big = make_request(32, big).SerializeAsString();
  REQUIRE(too_big.size() > 2 * 64 * 1024);
  const GrpcReply plain = client.call(too_big);
  CHECK(plain.status.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED);
  // Compressed it is small: the limit applies to what it inflates to.
  const GrpcReply gzipped = client.call(too_big, GRPC_COMPRESS_GZIP);
  CHECK(gzipped.status.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED);

  const std::string valid = make_request(3).SerializeAsString();
  for (const std::string& garbage :
       {std::string("\x0a\xff\xff\xff\xff\x0f"), valid.substr(0, valid.size() / 2)}) {
    const GrpcReply reply = client.call(garbage);
    INFO("garbage of " << garbage.size() << " bytes: " << reply.status.error_message());
    CHECK(reply.status.error_code() == grpc::StatusCode::INVALID_ARGUMENT);
  }
  CHECK(agent.metric("spanrelay_receiver_accepted_spans_total") == 0);

  // Still serving, on both receivers.
  std::vector<FlatSpan> sent;
  const ExportRequest over_grpc = make_request(5);
  client.require_exported(over_grpc);
  append(sent, flatten(over_grpc));
  append(sent, post_and_expect_ok(agent.port(), 4));
  require_delivered_once(upstream, sent);

  require_exit_zero(agent);
}

// ---- Unix sockets ----

TEST_CASE("HTTP and gRPC receivers on Unix sockets deliver and remove the sockets on exit",
          "[integration][unix]") {
  FakeUpstream upstream;
  const TempDir sockets;
  const std::string http_socket = sockets.file("http.sock");
  const std::string grpc_socket = sockets.file("grpc.sock");
  AgentConfig config = grpc_receiver_config(upstream);
  config.http_endpoint = "unix:" + http_socket;
  config.grpc_endpoint = "unix:" + grpc_socket;
  Agent agent(config);
  CHECK(std::filesystem::is_socket(http_socket));
  CHECK(std::filesystem::is_socket(grpc_socket));

  std::vector<FlatSpan> sent;
  {
    const ExportRequest over_http = make_request(4);
    HttpConnection connection(http_socket);
    require_accepted(connection.roundtrip(otlp_request(over_http)));
    append(sent, flatten(over_http));
    const ExportRequest over_grpc = make_request(5);
    GrpcClient client(agent.grpc_target());
    client.require_exported(over_grpc);
    append(sent, flatten(over_grpc));
  }
  require_delivered_once(upstream, sent);

  require_exit_zero(agent);
  CHECK(!std::filesystem::exists(http_socket));
  CHECK(!std::filesystem::exists(grpc_socket));
}

}  // namespace it
