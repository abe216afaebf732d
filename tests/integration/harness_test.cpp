// Self-checks of the integration harness (no agent involved): the fake upstream, the HTTP
// client, the codecs and the metrics reader must be right before agent failures mean anything.

#include <cmath>
#include <csignal>

#include <boost/json.hpp>
#include <catch2/catch.hpp>

#include "google/rpc/status.pb.h"
#include "integration/fake_grpc_upstream.hpp"
#include "integration/fake_upstream.hpp"
#include "integration/grpc_client.hpp"
#include "integration/harness.hpp"

namespace it {

TEST_CASE("harness: the fake upstream records and decodes what it receives", "[harness]") {
  FakeUpstream upstream;
  const ExportRequest request = make_request(9);
  PostOptions options;
  SECTION("plain") {}
  SECTION("gzip") { options.gzip = true; }
  SECTION("chunked gzip") {
    options.gzip = true;
    options.chunk_size = 100;
  }
  HttpRequest http_request = otlp_request(request, options);
  http_request.target = "/otlp/v1/traces";
  http_request.headers.emplace_back("Authorization", expected_authorization());

  HttpConnection connection(upstream.port());
  for (int i = 0; i < 2; ++i) {  // the second one reuses the connection
    const HttpResponse response = connection.roundtrip(http_request);
    CHECK(response.result_int() == 200);
  }
  REQUIRE(upstream.wait_for_spans(18, 5s));
  const auto requests = upstream.requests();
  REQUIRE(requests.size() == 2);
  CHECK(requests[0].target == "/otlp/v1/traces");
  CHECK(requests[0].header("authorization") == expected_authorization());
  CHECK(requests[0].header("content-encoding") == (options.gzip ? "gzip" : ""));
  CHECK(requests[0].decoded);
  const auto delivered = upstream.delivered_spans();
  const std::vector<FlatSpan> once(delivered.begin(), delivered.begin() + 9);
  CHECK(compare_delivery(flatten(request), once).empty());
  CHECK(!compare_delivery(flatten(request), delivered).empty());  // each span came twice
}

TEST_CASE("harness: scripted responses and held requests", "[harness]") {
  FakeUpstream upstream;
  UpstreamResponse throttled = UpstreamResponse::with_status(429);
  throttled.headers = {{"Retry-After", "1"}};
  upstream.script({throttled});
  const ExportRequest request = make_request(2);

  const HttpResponse first = post_spans(upstream.port(), request);
  CHECK(first.result_int() == 429);
  CHECK(first["Retry-After"] == "1");
  CHECK(upstream.delivered_span_count() == 0);

  upstream.hold();
  HttpConnection held(upstream.port());
  REQUIRE(held.write(render_request(otlp_request(request))));
  REQUIRE(wait_until([&] { return upstream.held_count() == 1; }, 5s));
  CHECK(upstream.requests().back().response_status == 0);
  upstream.release();
  const auto response = held.read_response(5s);
  REQUIRE(response.has_value());
  CHECK(response->result_int() == 200);
  CHECK(upstream.wait_for_spans(2, 5s));
  CHECK(upstream.held_count() == 0);
}

TEST_CASE("harness: the fake gRPC upstream records calls and answers from its script",
          "[harness]") {
  FakeGrpcUpstream upstream;
  upstream.script({FakeGrpcUpstream::throttled(1500ms),
                   grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "no")});
  GrpcClient client("127.0.0.1:" + std::to_string(upstream.port()));
  const ExportRequest request = make_request(6);
  const std::string message = request.SerializeAsString();

  const GrpcReply throttled = client.call(message, GRPC_COMPRESS_GZIP);
  CHECK(throttled.status.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED);
  google::rpc::Status details;
  REQUIRE(details.ParseFromString(throttled.status.error_details()));
  CHECK(details.code() == 8);
  REQUIRE(details.details_size() == 1);
  CHECK(details.details(0).type_url() == "type.googleapis.com/google.rpc.RetryInfo");
  google::rpc::RetryInfo retry;
  REQUIRE(retry.ParseFromString(details.details(0).value()));
  CHECK(retry.retry_delay().seconds() == 1);
  CHECK(retry.retry_delay().nanos() == 500000000);

  CHECK(client.call(message).status.error_code() == grpc::StatusCode::INVALID_ARGUMENT);
  client.require_exported(request);
  REQUIRE(upstream.wait_for_spans(6, 5s));

  const auto calls = upstream.requests();
  REQUIRE(calls.size() == 3);
  CHECK(calls[0].method == otlp_export_method);
  CHECK(calls[0].encoding == "gzip");
  CHECK(calls[0].compressed);
  CHECK(calls[0].wire_message != message);
  CHECK(calls[0].message == message);
  CHECK(calls[2].encoding == "identity");
  CHECK(!calls[2].compressed);
  CHECK(calls[2].wire_message == message);
  CHECK(!calls[2].metadata_values("user-agent").empty());
  CHECK(calls[2].metadata_values("authorization").empty());
  CHECK(calls[1].answered == grpc::StatusCode::INVALID_ARGUMENT);
  CHECK(calls[2].answered == grpc::StatusCode::OK);
  for (const auto& call : calls) {
    CHECK(call.decoded);
  }
  // Only the call answered OK counts as delivered.
  CHECK(upstream.delivered_span_count() == 6);
  CHECK(compare_delivery(flatten(request), upstream.delivered_spans()).empty());
}

TEST_CASE("harness: codecs and OTLP/JSON rendering", "[harness]") {
  const std::string data = make_request(20).SerializeAsString();
  const std::string packed = gzip(data);
  CHECK(gunzip(packed) == data);
  CHECK(!gunzip(packed.substr(0, packed.size() / 2)).has_value());
  CHECK(!gunzip(gzip(std::string(1 << 20, 'x')), 1000).has_value());
  CHECK(base64("123456:abc") == "MTIzNDU2OmFiYw==");
  CHECK(base64("ab") == "YWI=");
  CHECK(hex(std::string("\x01\xab", 2)) == "01ab");

  const ExportRequest request = make_request(5);
  boost::system::error_code ec;
  const auto doc = boost::json::parse(to_otlp_json(request), ec);
  REQUIRE(!ec);
  const auto& span = doc.at("resourceSpans").at(0).at("scopeSpans").at(0).at("spans").at(0);
  CHECK(span.at("traceId").as_string() ==
        hex(request.resource_spans(0).scope_spans(0).spans(0).trace_id()));
  CHECK(span.at("startTimeUnixNano").is_string());
  CHECK(span.at("kind").is_int64());
}

TEST_CASE("harness: Prometheus text reader", "[harness]") {
  const std::string text =
      "# HELP spanrelay_exporter_sent_spans_total Spans sent.\n"
      "# TYPE spanrelay_exporter_sent_spans_total counter\n"
      "spanrelay_exporter_sent_spans_total{exporter=\"up\"} 42\n"
      "spanrelay_exporter_sent_spans_total{exporter=\"local\",type=\"file\"} 7\n"
      "spanrelay_buffer_used_bytes 1.5e3\n";
  CHECK(parse_metric(text, "spanrelay_exporter_sent_spans_total{exporter=\"up\"}") == 42);
  CHECK(parse_metric(text, "spanrelay_exporter_sent_spans_total{exporter=\"local\"}") == 7);
  CHECK(parse_metric(text, "spanrelay_exporter_sent_spans_total") == 49);
  CHECK(parse_metric(text, "spanrelay_buffer_used_bytes") == 1500);
  CHECK(std::isnan(parse_metric(text, "spanrelay_buffer_limit_bytes")));
}

TEST_CASE("harness: child processes with exit codes and captured output", "[harness]") {
  const TempDir dir;
  {
    Process process({"/bin/sh", "-c", "echo \"out $TEST_TOKEN\"; echo err >&2; exit 3"},
                    default_env(), dir.file("out.txt"));
    CHECK(process.wait_exit(5s) == std::optional<int>(3));
  }
  CHECK(read_file(dir.file("out.txt")) == "out " + std::string(test_token) + "\nerr\n");

  Process sleeper({"/bin/sh", "-c", "exec sleep 30"}, {}, dir.file("sleep.txt"));
  CHECK(!sleeper.wait_exit(50ms).has_value());
  sleeper.signal(SIGTERM);
  CHECK(sleeper.wait_exit(5s) == std::optional<int>(128 + SIGTERM));
}

}  // namespace it
