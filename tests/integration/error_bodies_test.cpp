// Error bodies of the HTTP receiver, through the real binary: a refused request gets a
// google.rpc.Status in protobuf only when it was itself protobuf; JSON, a missing or any other
// Content-Type gets the Status as JSON ({"code":N,"message":"..."}), readable by the person
// with curl or the browser that sent it. The 404 for the other OTLP signals (/v1/metrics,
// /v1/logs) tells how to send just the traces here.

#include <string>
#include <string_view>
#include <vector>

#include <boost/json.hpp>
#include <catch2/catch.hpp>

#include "google/rpc/status.pb.h"
#include "integration/checks.hpp"
#include "integration/fake_upstream.hpp"
#include "integration/harness.hpp"

namespace it {
namespace {

// gRPC codes the receiver puts in its Status bodies.
constexpr int kInvalidArgument = 3;
constexpr int kNotFound = 5;
constexpr int kUnimplemented = 12;

struct DecodedStatus {
  bool ok = false;  // the body is a google.rpc.Status in the expected encoding
  int code = -1;
  std::string message;
};

// A JSON body that is exactly {"code": <int>, "message": <non-empty string>}, with
// Content-Type application/json.
DecodedStatus json_status(const HttpResponse& response) {
  DecodedStatus out;
  INFO("status " << response.result_int() << ", content type " << content_type_of(response)
                 << ", body: " << response.body());
  CHECK(content_type_of(response).starts_with("application/json"));
  boost::system::error_code ec;
  const boost::json::value body = boost::json::parse(response.body(), ec);
  CHECK(!ec);
  if (ec || !body.is_object()) {
    CHECK(body.is_object());
    return out;
  }
  const boost::json::object& object = body.as_object();
  CHECK(object.size() == 2);
  const auto* code = object.if_contains("code");
  const auto* message = object.if_contains("message");
  CHECK((code != nullptr && code->is_int64()));
  CHECK((message != nullptr && message->is_string()));
  if (code == nullptr || !code->is_int64() || message == nullptr || !message->is_string()) {
    return out;
  }
  out.ok = content_type_of(response).starts_with("application/json");
  out.code = static_cast<int>(code->as_int64());
  out.message = std::string(message->as_string());
  return out;
}

// A protobuf google.rpc.Status body, with Content-Type application/x-protobuf.
DecodedStatus protobuf_status(const HttpResponse& response) {
  DecodedStatus out;
  INFO("status " << response.result_int() << ", content type " << content_type_of(response));
  CHECK(content_type_of(response).starts_with("application/x-protobuf"));
  CHECK(!response.body().starts_with("{"));  // not JSON in disguise
  google::rpc::Status status;
  const bool parsed = status.ParseFromString(response.body());
  CHECK(parsed);
  if (!parsed) {
    return out;
  }
  out.ok = content_type_of(response).starts_with("application/x-protobuf");
  out.code = status.code();
  out.message = status.message();
  return out;
}

HttpRequest request_with(std::string target, std::string content_type, std::string body,
                         std::string method = "POST") {
  HttpRequest request;
  request.method = std::move(method);
  request.target = std::move(target);
  if (!content_type.empty()) {
    request.headers.emplace_back("Content-Type", std::move(content_type));
  }
  request.body = std::move(body);
  return request;
}

// One raw HTTP/1.1 request with the given Host header (the harness's client always sends
// "Host: 127.0.0.1").
HttpResponse post_with_host(std::uint16_t port, std::string_view target, std::string_view host,
                            std::string_view content_type, std::string_view body) {
  std::string raw = "POST " + std::string(target) + " HTTP/1.1\r\nHost: " + std::string(host) +
                    "\r\nContent-Type: " + std::string(content_type) +
                    "\r\nContent-Length: " + std::to_string(body.size()) +
                    "\r\nConnection: close\r\n\r\n" + std::string(body);
  HttpConnection connection(port);
  REQUIRE(connection.write(raw));
  auto response = connection.read_response(10s);
  REQUIRE(response.has_value());
  return *response;
}

constexpr std::string_view kTracesOnly =
    "spanrelay forwards traces only (POST /v1/traces); point just the traces exporter here: "
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=http://";

}  // namespace

TEST_CASE("error bodies: JSON unless the request was protobuf", "[integration][receiver]") {
  FakeUpstream upstream;
  AgentConfig config;
  config.exporters["up"].endpoint = upstream.base_url();
  Agent agent(config);

  const std::string protobuf = make_request(2).SerializeAsString();
  const std::string bad_protobuf = "\x0a\xff\xff\xff\xff\x0f";  // a length past the end

  struct Case {
    std::string name;
    HttpRequest request;
    unsigned status;
    bool protobuf_body;  // else JSON
    int code;
    std::string in_message;  // a piece the message must contain
  };
  std::vector<Case> cases;
  cases.push_back({"text/plain: 415", request_with("/v1/traces", "text/plain", "hello"), 415,
                   false, kInvalidArgument, "unsupported content type \"text/plain\""});
  cases.push_back({"no Content-Type: 415", request_with("/v1/traces", "", protobuf), 415, false,
                   kInvalidArgument, "use application/x-protobuf or application/json"});
  cases.push_back({"curl -d's form type: 415",
                   request_with("/v1/traces", "application/x-www-form-urlencoded", "{}"), 415,
                   false, kInvalidArgument, "application/x-www-form-urlencoded"});
  // The Content-Type is quoted into the message: the body must stay valid JSON.
  cases.push_back({"a Content-Type with quotes and a backslash: 415",
                   request_with("/v1/traces", R"(text/x; a="b\"c")", "x"), 415, false,
                   kInvalidArgument, R"(text/x; a="b\"c")"});
  cases.push_back({"GET without a Content-Type: 405",
                   request_with("/v1/traces", "", "", "GET"), 405, false, kUnimplemented,
                   "method GET not allowed"});
  cases.push_back({"unknown path, text/plain: 404 as before",
                   request_with("/v1/trace", "text/plain", "x"), 404, false, kNotFound,
                   "unknown path /v1/trace: traces are accepted at /v1/traces"});
  cases.push_back({"bad JSON: 400",
                   request_with("/v1/traces", "application/json; charset=utf-8", "{\"resource"),
                   400, false, kInvalidArgument, "invalid OTLP/JSON"});
  cases.push_back({"bad protobuf bytes: 400 in protobuf",
                   request_with("/v1/traces", "application/x-protobuf", bad_protobuf), 400, true,
                   kInvalidArgument, "invalid OTLP protobuf"});
  cases.push_back({"protobuf type in capitals with a parameter: 400 in protobuf",
                   request_with("/v1/traces", "Application/X-Protobuf; proto=x", bad_protobuf),
                   400, true, kInvalidArgument, "invalid OTLP protobuf"});
  HttpRequest brotli = request_with("/v1/traces", "application/x-protobuf", protobuf);
  brotli.headers.emplace_back("Content-Encoding", "br");
  cases.push_back({"protobuf with Content-Encoding br: 415 in protobuf", brotli, 415, true,
                   kInvalidArgument, "unsupported content encoding \"br\""});
  cases.push_back({"unknown path, protobuf: 404 in protobuf",
                   request_with("/v2/traces", "application/x-protobuf", protobuf), 404, true,
                   kNotFound, "unknown path /v2/traces"});

  for (const Case& c : cases) {
    INFO("case: " << c.name);
    const HttpResponse response = send_request(agent.port(), c.request);
    CHECK(response.result_int() == c.status);
    const DecodedStatus status = c.protobuf_body ? protobuf_status(response)
                                                 : json_status(response);
    CHECK(status.ok);
    CHECK(status.code == c.code);
    INFO("message: " << status.message);
    CHECK(status.message.find(c.in_message) != std::string::npos);
    CHECK(status.message.find("traces only") == std::string::npos);
  }
  CHECK(agent.metric("spanrelay_receiver_accepted_spans_total") == 0);
  CHECK(upstream.request_count() == 0);
  // Still serving: a valid export goes all the way through.
  const auto sent = post_and_expect_ok(agent.port(), 3);
  require_delivered_once(upstream, sent);
}

TEST_CASE("/v1/metrics and /v1/logs: 404 saying spanrelay takes traces only and how to point the traces exporter",
          "[integration][receiver]") {
  FakeUpstream upstream;
  AgentConfig config;
  config.exporters["up"].endpoint = upstream.base_url();
  Agent agent(config);
  const std::string protobuf = make_request(2).SerializeAsString();

  for (const char* signal_path : {"/v1/metrics", "/v1/logs"}) {
    const std::string path = signal_path;
    for (const bool as_protobuf : {false, true}) {
      INFO(path << (as_protobuf ? " in protobuf" : " in JSON"));
      const HttpResponse response =
          as_protobuf
              ? send_request(agent.port(), request_with(path, "application/x-protobuf", protobuf))
              : send_request(agent.port(), request_with(path, "application/json", "{}"));
      CHECK(response.result_int() == 404);
      const DecodedStatus status = as_protobuf ? protobuf_status(response)
                                               : json_status(response);
      CHECK(status.ok);
      CHECK(status.code == kNotFound);
      INFO("message: " << status.message);
      CHECK(status.message.starts_with(path + ": "));
      CHECK(status.message.find(kTracesOnly) != std::string::npos);
      // The harness's client sends "Host: 127.0.0.1".
      CHECK(status.message.find("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=http://127.0.0.1/v1/traces")
            != std::string::npos);
      CHECK(status.message.find("send metrics and logs elsewhere") != std::string::npos);
    }
  }

  SECTION("the hint carries the host and port the client used") {
    const HttpResponse response =
        post_with_host(agent.port(), "/v1/metrics", "spanrelay.example:4318", "application/json",
                       "{}");
    CHECK(response.result_int() == 404);
    const DecodedStatus status = json_status(response);
    INFO("message: " << status.message);
    CHECK(status.message.find(
              "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=http://spanrelay.example:4318/v1/traces") !=
          std::string::npos);
  }
  SECTION("a Host header that is no host:port becomes a placeholder") {
    const HttpResponse response =
        post_with_host(agent.port(), "/v1/logs", "x\"y<z>", "application/json", "{}");
    CHECK(response.result_int() == 404);
    const DecodedStatus status = json_status(response);
    INFO("message: " << status.message);
    CHECK(status.message.find("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=http://<host>:<port>/v1/traces")
          != std::string::npos);
    CHECK(status.message.find("x\"y") == std::string::npos);
  }

  CHECK(agent.metric("spanrelay_receiver_accepted_spans_total") == 0);
  CHECK(upstream.request_count() == 0);
}

}  // namespace it
