// TLS to the upstream, through the real binary: the certificate's chain AND its name are
// verified (otlp_http and otlp_grpc), a refusal says which of the two failed, tls.server_name
// names the host to verify and to send as SNI, and tls.insecure_skip_verify (otlp_http only)
// turns verification off. Certificates come from a CA made per test (certs.hpp), so a
// certificate can be trusted and still be for another host.

#include <string>
#include <vector>

#include <boost/json.hpp>
#include <catch2/catch.hpp>

#include "integration/certs.hpp"
#include "integration/checks.hpp"
#include "integration/fake_grpc_upstream.hpp"
#include "integration/fake_upstream.hpp"
#include "integration/harness.hpp"

namespace it {
namespace {

constexpr std::string_view sent_spans = "spanrelay_exporter_sent_spans_total";
constexpr std::string_view failed_spans = "spanrelay_exporter_failed_spans_total";

AgentConfig tls_config(std::string endpoint, std::string type = "otlp_http") {
  AgentConfig config;
  ExporterConfig& up = config.exporters["up"];
  up.type = std::move(type);
  up.endpoint = std::move(endpoint);
  up.retry_max_elapsed = "5m";  // refusals are retried, never dropped, while the test looks
  return config;
}

// The otlp_http endpoint of an HTTPS fake upstream under another host name.
std::string https_url(const std::string& host, const FakeUpstream& upstream) {
  return "https://" + host + ":" + std::to_string(upstream.port()) + "/otlp";
}

// The exporter's last error on the status page: {"class": ..., "message": ...}; empty if none.
struct LastError {
  std::string cls;
  std::string message;
};
LastError last_error(std::uint16_t admin_port) {
  const HttpResponse response = http_get(admin_port, "/status.json");
  boost::system::error_code ec;
  const auto doc = boost::json::parse(response.body(), ec);
  if (ec || !doc.is_object()) {
    return {};
  }
  for (const auto& e : doc.at("exporters").as_array()) {
    if (e.at("name").as_string() == "up" && e.at("last_error").is_object()) {
      const auto& error = e.at("last_error").as_object();
      return {std::string(error.at("class").as_string()),
              std::string(error.at("message").as_string())};
    }
  }
  return {};
}

// Waits for the exporter's first TLS failure, then checks that the log line and the status
// page both classify it as TLS and give `reason` (OpenSSL's or gRPC's words for what failed),
// and that nothing reached the upstream.
template <class Upstream>
void require_tls_refusal(Agent& agent, const Upstream& upstream, std::string_view reason) {
  const bool failed = wait_until(
      [&] { return agent.log().find("export failed [tls]") != std::string::npos; }, 15s, 20ms);
  const std::string log = agent.log();
  INFO("agent log:\n" << log);
  REQUIRE(failed);
  const auto line_start = log.find("export failed [tls]");
  const std::string line = log.substr(line_start, log.find('\n', line_start) - line_start);
  INFO("failure line: " << line);
  CHECK(line.find(reason) != std::string::npos);
  const LastError error = last_error(agent.admin_port());
  INFO("status page: [" << error.cls << "] " << error.message);
  CHECK(error.cls == "tls");
  CHECK(error.message.find(reason) != std::string::npos);
  CHECK(upstream.request_count() == 0);
  CHECK(upstream.delivered_span_count() == 0);
  CHECK(agent.metric(exporter_series(sent_spans)) == 0);
  CHECK(agent.metric(exporter_series(failed_spans)) == 0);  // kept for a later attempt
  check_no_secret(log);
}

}  // namespace

// ---- otlp_http ----

TEST_CASE("TLS otlp_http: a trusted certificate for another name is refused, saying so",
          "[integration][tls]") {
  const TempDir dir;
  const TestCa ca(dir.path());
  struct Case {
    const char* name;
    const char* host;  // in the endpoint
    const char* sans;  // the certificate's names
    const char* reason;
  };
  const Case c = GENERATE(values<Case>({
      // Valid for the address the agent connects to, not for the name it was told.
      {"a DNS name", "localhost", "DNS:other.test,IP:127.0.0.1", "hostname mismatch"},
      // Valid for a name, not for the address in the endpoint.
      {"an IP address", "127.0.0.1", "DNS:localhost,IP:127.0.0.2", "IP address mismatch"},
  }));
  INFO("endpoint host " << c.host << " is " << c.name << "; certificate for " << c.sans);
  FakeUpstream upstream(ca.issue("wrong-name", c.sans));
  AgentConfig config = tls_config(https_url(c.host, upstream));
  config.exporters["up"].tls_ca_file = ca.cert_file();
  Agent agent(config);
  post_and_expect_ok(agent.port(), 4);
  require_tls_refusal(agent, upstream, c.reason);
}

TEST_CASE("TLS otlp_http: the same CA with the right name delivers (control for the refusals)",
          "[integration][tls]") {
  const TempDir dir;
  const TestCa ca(dir.path());
  const auto host = GENERATE(as<std::string>{}, "localhost", "127.0.0.1");
  INFO("endpoint host " << host);
  FakeUpstream upstream(ca.issue("right-name", "DNS:localhost,IP:127.0.0.1"));
  AgentConfig config = tls_config(https_url(host, upstream));
  config.exporters["up"].tls_ca_file = ca.cert_file();
  Agent agent(config);
  require_delivered_once(upstream, post_and_expect_ok(agent.port(), 4));
  CHECK(agent.log().find("export failed") == std::string::npos);
}

TEST_CASE("TLS otlp_http: a certificate from an untrusted CA is refused, saying so",
          "[integration][tls]") {
  const TempDir dir;
  const TestCa trusted(dir.path(), "trusted");
  const TestCa other(dir.path(), "other");
  FakeUpstream upstream(other.issue("untrusted", "DNS:localhost,IP:127.0.0.1"));
  AgentConfig config = tls_config(upstream.base_url());
  config.exporters["up"].tls_ca_file = trusted.cert_file();
  Agent agent(config);
  post_and_expect_ok(agent.port(), 4);
  // The server sends its CA along: the chain ends in a root the agent does not trust.
  require_tls_refusal(agent, upstream, "self-signed certificate in certificate chain");
}

TEST_CASE("TLS otlp_http: tls.server_name is the name verified", "[integration][tls]") {
  const TempDir dir;
  const TestCa ca(dir.path());
  // Only for upstream.test, served on 127.0.0.1: the endpoint's host cannot match.
  FakeUpstream upstream(ca.issue("upstream-test", "DNS:upstream.test"));
  AgentConfig config = tls_config(upstream.base_url());
  config.exporters["up"].tls_ca_file = ca.cert_file();

  SECTION("server_name: upstream.test delivers") {
    config.exporters["up"].tls_server_name = "upstream.test";
    Agent agent(config);
    require_delivered_once(upstream, post_and_expect_ok(agent.port(), 5));
    CHECK(agent.log().find("export failed") == std::string::npos);
  }
  SECTION("without server_name the address is verified, and refused") {
    Agent agent(config);
    post_and_expect_ok(agent.port(), 5);
    require_tls_refusal(agent, upstream, "IP address mismatch");
  }
  SECTION("another server_name is refused") {
    config.exporters["up"].tls_server_name = "other.test";
    Agent agent(config);
    post_and_expect_ok(agent.port(), 5);
    require_tls_refusal(agent, upstream, "hostname mismatch");
  }
}

TEST_CASE("TLS otlp_http: tls.insecure_skip_verify delivers despite name and CA, and warns",
          "[integration][tls]") {
  const TempDir dir;
  const TestCa trusted(dir.path(), "trusted");
  const TestCa other(dir.path(), "other");
  const bool trusted_ca = GENERATE(true, false);
  // Never for 127.0.0.1; from a trusted CA or not.
  const TestCa& issuer = trusted_ca ? trusted : other;
  INFO("certificate for another name, from " << (trusted_ca ? "a trusted" : "an untrusted")
                                             << " CA");
  FakeUpstream upstream(issuer.issue("wrong", "DNS:other.test"));
  AgentConfig config = tls_config(upstream.base_url());
  config.exporters["up"].tls_ca_file = trusted.cert_file();
  config.exporters["up"].tls_insecure_skip_verify = true;
  Agent agent(config);
  require_delivered_once(upstream, post_and_expect_ok(agent.port(), 6));
  const std::string log = agent.log();
  CHECK(log.find("tls.insecure_skip_verify is on") != std::string::npos);
  CHECK(log.find("export failed") == std::string::npos);
}

// ---- otlp_grpc ----

TEST_CASE("TLS otlp_grpc: an upstream trusted through tls.ca_file gets every span once",
          "[integration][tls][otlp_grpc]") {
  const TempDir dir;
  const TestCa ca(dir.path());
  FakeGrpcUpstream upstream(ca.issue("grpc", "DNS:localhost,IP:127.0.0.1"));
  REQUIRE(upstream.endpoint().starts_with("https://"));
  AgentConfig config = tls_config(upstream.endpoint(), "otlp_grpc");
  config.exporters["up"].tls_ca_file = ca.cert_file();
  Agent agent(config);

  const auto sent = post_and_expect_ok(agent.port(), 12);
  require_delivered_once(upstream, sent);
  CHECK(agent.wait_metric_at_least(exporter_series(sent_spans), 12));
  CHECK(agent.metric(exporter_series(sent_spans)) == 12);
  CHECK(agent.metric(exporter_series(failed_spans)) == 0);
  for (const auto& call : upstream.requests()) {
    CHECK(call.method == otlp_export_method);
    CHECK(call.metadata_values("authorization") == std::vector{expected_authorization()});
  }
  check_no_secret(agent.log());
}

TEST_CASE("TLS otlp_grpc: a certificate for another name or from an untrusted CA is refused",
          "[integration][tls][otlp_grpc]") {
  const TempDir dir;
  const TestCa trusted(dir.path(), "trusted");
  const TestCa other(dir.path(), "other");
  struct Case {
    const char* name;
    bool trusted_ca;
    const char* sans;
    const char* reason;  // gRPC core's words
  };
  const Case c = GENERATE(values<Case>({
      {"trusted, for another name", true, "DNS:other.test", "Peer name 127.0.0.1 is not in"},
      {"for 127.0.0.1, from an untrusted CA", false, "DNS:localhost,IP:127.0.0.1",
       "certificate verify failed"},
  }));
  INFO("certificate " << c.name);
  FakeGrpcUpstream upstream((c.trusted_ca ? trusted : other).issue("grpc", c.sans));
  AgentConfig config = tls_config(upstream.endpoint(), "otlp_grpc");
  config.exporters["up"].tls_ca_file = trusted.cert_file();
  Agent agent(config);
  post_and_expect_ok(agent.port(), 4);
  require_tls_refusal(agent, upstream, c.reason);
}

TEST_CASE("TLS otlp_grpc: tls.server_name is the name verified", "[integration][tls][otlp_grpc]") {
  const TempDir dir;
  const TestCa ca(dir.path());
  FakeGrpcUpstream upstream(ca.issue("grpc", "DNS:upstream.test"));
  AgentConfig config = tls_config(upstream.endpoint(), "otlp_grpc");
  config.exporters["up"].tls_ca_file = ca.cert_file();

  SECTION("server_name: upstream.test delivers") {
    config.exporters["up"].tls_server_name = "upstream.test";
    Agent agent(config);
    require_delivered_once(upstream, post_and_expect_ok(agent.port(), 5));
  }
  SECTION("without it the address is verified, and refused") {
    Agent agent(config);
    post_and_expect_ok(agent.port(), 5);
    require_tls_refusal(agent, upstream, "Peer name 127.0.0.1 is not in");
  }
}

}  // namespace it
