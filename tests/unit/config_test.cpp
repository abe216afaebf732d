#include "config/config.hpp"

#include <stdlib.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <string_view>

using namespace spanrelay::config;
using Catch::Contains;
using Catch::Matches;
using Catch::StartsWith;

namespace {

// A minimal valid tail: every test config needs one exporter.
const std::string kFileExporter = "exporters:\n  local: {type: file, path: ./s.jsonl}\n";

std::string error_of(std::string_view yaml, const std::string& source = "t.yaml") {
  try {
    load_string(yaml, source);
  } catch (const ConfigError& e) {
    return e.what();
  }
  FAIL("expected a ConfigError for:\n" << yaml);
  return {};
}

std::string size_error(std::string_view text) {
  try {
    parse_size(text);
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  FAIL("expected std::invalid_argument for size " << text);
  return {};
}

std::string duration_error(std::string_view text) {
  try {
    parse_duration(text);
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  FAIL("expected std::invalid_argument for duration " << text);
  return {};
}

std::string endpoint_error(std::string_view text) {
  try {
    parse_listen_endpoint(text);
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  FAIL("expected std::invalid_argument for endpoint " << text);
  return {};
}

std::string url_error(std::string_view text) {
  try {
    parse_upstream_url(text);
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  FAIL("expected std::invalid_argument for URL " << text);
  return {};
}

// Sets an environment variable for one scope (nullptr: unset it).
class EnvVar {
 public:
  EnvVar(std::string name, const char* value) : name_(std::move(name)) {
    if (const char* old = ::getenv(name_.c_str())) {
      old_ = old;
      had_ = true;
    }
    if (value != nullptr) {
      ::setenv(name_.c_str(), value, 1);
    } else {
      ::unsetenv(name_.c_str());
    }
  }
  ~EnvVar() {
    if (had_) {
      ::setenv(name_.c_str(), old_.c_str(), 1);
    } else {
      ::unsetenv(name_.c_str());
    }
  }
  EnvVar(const EnvVar&) = delete;
  EnvVar& operator=(const EnvVar&) = delete;

 private:
  std::string name_;
  std::string old_;
  bool had_ = false;
};

// A file that lives for one scope.
class TempFile {
 public:
  explicit TempFile(std::string_view content) {
    static int counter = 0;
    path_ =
        (std::filesystem::temp_directory_path() /
         ("spanrelay_config_test_" + std::to_string(::getpid()) + "_" + std::to_string(counter++)))
            .string();
    std::ofstream(path_, std::ios::binary) << content;
  }
  ~TempFile() { std::filesystem::remove(path_); }
  TempFile(const TempFile&) = delete;
  TempFile& operator=(const TempFile&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

std::string otlp_exporter(std::string_view extra_lines) {
  return "exporters:\n"
         "  up:\n"
         "    type: otlp_http\n"
         "    endpoint: http://127.0.0.1:9999\n" +
         std::string(extra_lines);
}

}  // namespace

// ---- unit parsers ----

TEST_CASE("parse_size accepts bytes, decimal and binary units, and fractions") {
  CHECK(parse_size("0") == 0);
  CHECK(parse_size("1024") == 1024);
  CHECK(parse_size("7B") == 7);
  CHECK(parse_size("4KB") == 4000);
  CHECK(parse_size("4MB") == 4'000'000);
  CHECK(parse_size("1GB") == 1'000'000'000);
  CHECK(parse_size("1KiB") == 1024);
  CHECK(parse_size("64MiB") == 64 * MiB);
  CHECK(parse_size("2GiB") == 2 * GiB);
  CHECK(parse_size("1.5MiB") == 1'572'864);
  CHECK(parse_size("0.5KiB") == 512);
  CHECK(parse_size("1.0") == 1);
  CHECK(parse_size("16000000000GiB") == 16'000'000'000ull * GiB);
}

TEST_CASE("parse_size rejects bad sizes with a reason") {
  CHECK_THAT(size_error(""), Contains("empty"));
  CHECK_THAT(size_error("-1"), Contains("\"-1\"") && Contains("negative"));
  CHECK_THAT(size_error("-1MiB"), Contains("negative"));
  CHECK_THAT(size_error("16mib"), Contains("unknown unit \"mib\"") && Contains("KiB"));
  CHECK_THAT(size_error("16 MiB"), Contains("unknown unit \" MiB\""));
  CHECK_THAT(size_error("16TB"), Contains("unknown unit \"TB\""));
  CHECK_THAT(size_error("1e6"), Contains("unknown unit \"e6\""));
  CHECK_THAT(size_error("MiB"), Contains("\"MiB\" is not a size"));
  CHECK_THAT(size_error("1."), Contains("is not a size"));
  CHECK_THAT(size_error(".5MiB"), Contains("is not a size"));
  CHECK_THAT(size_error("1.5"), Contains("whole"));
  CHECK_THAT(size_error("1.5B"), Contains("whole"));
  CHECK_THAT(size_error("18446744073709551616"), Contains("too large"));
  CHECK_THAT(size_error("17179869184GiB"), Contains("too large"));
  CHECK_THAT(size_error("999999999999999999999999999999999GiB"), Contains("too large"));
}

TEST_CASE("parse_duration accepts Go-style sequences") {
  CHECK(parse_duration("5s") == 5s);
  CHECK(parse_duration("250ms") == 250ms);
  CHECK(parse_duration("1m30s") == 90s);
  CHECK(parse_duration("1.5s") == 1500ms);
  CHECK(parse_duration("2h") == 2h);
  CHECK(parse_duration("1h2m3s4ms") == 1h + 2min + 3s + 4ms);
  CHECK(parse_duration("0.5m") == 30s);
  CHECK(parse_duration("0s") == 0ms);
  CHECK(parse_duration("1s1s") == 2s);
}

TEST_CASE("parse_duration rejects bad durations with a reason") {
  CHECK(duration_error("10x") == "\"10x\" is not a duration (use e.g. 5s, 250ms, 1m)");
  CHECK_THAT(duration_error("10"), Contains("needs a unit, e.g. 5s or 250ms"));
  CHECK_THAT(duration_error("0"), Contains("needs a unit"));
  CHECK_THAT(duration_error("1.5"), Contains("needs a unit"));
  CHECK_THAT(duration_error("-5s"), Contains("negative"));
  CHECK_THAT(duration_error(""), Contains("empty"));
  CHECK_THAT(duration_error("s"), Contains("is not a duration"));
  CHECK_THAT(duration_error("5sec"), Contains("is not a duration"));
  CHECK_THAT(duration_error("5S"), Contains("is not a duration"));
  CHECK_THAT(duration_error("1 s"), Contains("is not a duration"));
  CHECK_THAT(duration_error("1m30"), Contains("is not a duration"));
  CHECK_THAT(duration_error("5us"), Contains("is not a duration"));
  CHECK_THAT(duration_error("99999999999999999999h"), Contains("too large"));
}

TEST_CASE("format_size and format_duration print units that parse back") {
  CHECK(format_size(16 * MiB) == "16MiB");
  CHECK(format_size(1536 * KiB) == "1536KiB");
  CHECK(format_size(4'000'000) == "4MB");
  CHECK(format_size(1000) == "1KB");
  CHECK(format_size(1234) == "1234B");
  CHECK(format_size(0) == "0B");
  CHECK(format_duration(90s) == "1m30s");
  CHECK(format_duration(1500ms) == "1s500ms");
  CHECK(format_duration(250ms) == "250ms");
  CHECK(format_duration(5min) == "5m");
  CHECK(format_duration(0ms) == "0s");
  CHECK(format_duration(2h + 1ms) == "2h1ms");
  for (Duration d : {Duration(1ms), Duration(999ms), Duration(61s), Duration(3601001ms)}) {
    CHECK(parse_duration(format_duration(d)) == d);
  }
  for (std::size_t s : {std::size_t{1}, 1023 * KiB, 3 * GiB, std::size_t{999'999}}) {
    CHECK(parse_size(format_size(s)) == s);
  }
}

TEST_CASE("parse_listen_endpoint: host:port, IPv6 and unix sockets") {
  const ListenEndpoint v4 = parse_listen_endpoint("127.0.0.1:4318");
  CHECK(v4.host == "127.0.0.1");
  CHECK(v4.port == 4318);
  CHECK(v4.unix_path.empty());
  CHECK(v4.text == "127.0.0.1:4318");

  const ListenEndpoint v6 = parse_listen_endpoint("[::1]:4318");
  CHECK(v6.host == "::1");
  CHECK(v6.port == 4318);
  CHECK(v6.text == "[::1]:4318");

  const ListenEndpoint any6 = parse_listen_endpoint("[::]:0");
  CHECK(any6.host == "::");
  CHECK(any6.port == 0);

  const ListenEndpoint name = parse_listen_endpoint("localhost:65535");
  CHECK(name.host == "localhost");
  CHECK(name.port == 65535);

  const ListenEndpoint sock = parse_listen_endpoint("unix:/run/spanrelay.sock");
  CHECK(sock.unix_path == "/run/spanrelay.sock");
  CHECK(sock.host.empty());
  CHECK(sock.text == "unix:/run/spanrelay.sock");
}

TEST_CASE("parse_listen_endpoint rejects bad endpoints") {
  CHECK_THAT(endpoint_error("4318"), Contains("has no port"));
  CHECK_THAT(endpoint_error("::1:4318"), Contains("brackets"));
  CHECK_THAT(endpoint_error(":4318"), Contains("has no host"));
  CHECK_THAT(endpoint_error("host:65536"), Contains("0..65535"));
  CHECK_THAT(endpoint_error("host:-1"), Contains("0..65535"));
  CHECK_THAT(endpoint_error("host:http"), Contains("0..65535"));
  CHECK_THAT(endpoint_error("host:"), Contains("0..65535"));
  CHECK_THAT(endpoint_error("[::1]"), Contains("has no port"));
  CHECK_THAT(endpoint_error("[::1:4318"), Contains("missing ]"));
  CHECK_THAT(endpoint_error("[nope]:4318"), Contains("not an IPv6 address"));
  CHECK_THAT(endpoint_error("ho st:1"), Contains("not a host name"));
  CHECK_THAT(endpoint_error("unix:"), Contains("path is empty"));
  CHECK_THAT(endpoint_error("unix:/" + std::string(200, 'a')), Contains("at most 107 bytes"));
  CHECK_THAT(endpoint_error(""), Contains("has no port"));
}

TEST_CASE("parse_upstream_url maps the base URL to the traces target") {
  const UpstreamUrl grafana =
      parse_upstream_url("https://otlp-gateway-prod-eu-west-2.grafana.net/otlp");
  CHECK(grafana.tls);
  CHECK(grafana.host == "otlp-gateway-prod-eu-west-2.grafana.net");
  CHECK(grafana.port == 443);
  CHECK(grafana.traces_target == "/otlp/v1/traces");
  CHECK(grafana.text == "https://otlp-gateway-prod-eu-west-2.grafana.net/otlp");

  const UpstreamUrl local = parse_upstream_url("http://127.0.0.1:9999");
  CHECK_FALSE(local.tls);
  CHECK(local.host == "127.0.0.1");
  CHECK(local.port == 9999);
  CHECK(local.traces_target == "/v1/traces");

  CHECK(parse_upstream_url("http://collector").port == 80);
  CHECK(parse_upstream_url("https://h/otlp/").traces_target == "/otlp/v1/traces");
  CHECK(parse_upstream_url("https://h//").traces_target == "/v1/traces");
  CHECK(parse_upstream_url("https://h/").traces_target == "/v1/traces");
  CHECK(parse_upstream_url("https://h/a%20b/c").traces_target == "/a%20b/c/v1/traces");
  CHECK(parse_upstream_url("HTTPS://h:8443/x").port == 8443);
  CHECK(parse_upstream_url("https://h:/x").port == 443);

  const UpstreamUrl v6 = parse_upstream_url("http://[::1]:4318/base");
  CHECK(v6.host == "::1");
  CHECK(v6.port == 4318);
  CHECK(v6.traces_target == "/base/v1/traces");
}

TEST_CASE("parse_upstream_url rejects what it cannot use") {
  CHECK_THAT(url_error("https://h/otlp?x=1"), Contains("query string is not allowed"));
  CHECK_THAT(url_error("https://h/otlp?"), Contains("query string is not allowed"));
  CHECK_THAT(url_error("https://h/otlp#frag"), Contains("fragment"));
  CHECK_THAT(url_error("ftp://h/otlp"), Contains("must start with http:// or https://"));
  CHECK_THAT(url_error("otlp.example.com:4318"), Contains("must start with http://"));
  CHECK_THAT(url_error("https:///otlp"), Contains("has no host"));
  CHECK_THAT(url_error("https://h:0/"), Contains("1..65535"));
  CHECK_THAT(url_error("https://h:70000/"), Contains("1..65535"));
  CHECK_THAT(url_error("not a url"), Contains("is not a valid URL"));
  CHECK_THAT(url_error(""), Contains("empty"));
  const std::string credentials = url_error("https://user:hunter2@h/otlp");
  CHECK_THAT(credentials, Contains("credentials"));
  CHECK_THAT(credentials, !Contains("hunter2"));
}

// ---- loader: happy paths ----

TEST_CASE("a minimal config gets every default") {
  const Config c = load_string(kFileExporter, "min.yaml");
  CHECK(c.source == "min.yaml");
  CHECK(c.receivers.http.enabled);
  CHECK(c.receivers.http.endpoint.host == "127.0.0.1");
  CHECK(c.receivers.http.endpoint.port == 4318);
  CHECK(c.receivers.http.max_request_bytes == 16 * MiB);
  CHECK(c.receivers.http.max_connections == 1024);
  CHECK(c.receivers.http.max_header_bytes == 16 * KiB);
  CHECK(c.receivers.http.read_timeout == 30s);
  CHECK(c.receivers.http.idle_timeout == 120s);
  CHECK(c.buffer.max_bytes == 64 * MiB);
  CHECK(c.buffer.max_chunks == 65536);
  CHECK(c.batch.max_spans == 8192);
  CHECK(c.batch.max_bytes == 4 * MiB);
  CHECK(c.batch.timeout == 1s);
  REQUIRE(c.exporters.size() == 1);
  CHECK(c.exporters[0].name == "local");
  CHECK(c.exporters[0].type == ExporterType::file);
  CHECK(c.exporters[0].path == "./s.jsonl");
  CHECK(c.log.level == "info");
  CHECK_FALSE(c.log.json);
  CHECK_FALSE(c.admin.enabled);
  CHECK(c.shutdown_timeout == 10s);
}

TEST_CASE("otlp_http exporter defaults") {
  const Config c = load_string(otlp_exporter(""), "t.yaml");
  REQUIRE(c.exporters.size() == 1);
  const Exporter& e = c.exporters[0];
  CHECK(e.type == ExporterType::otlp_http);
  CHECK(e.gzip);
  CHECK_FALSE(e.auth.enabled);
  CHECK(e.headers.empty());
  CHECK(e.timeout == 10s);
  CHECK(e.retry.enabled);
  CHECK(e.retry.initial_interval == 1s);
  CHECK(e.retry.max_interval == 30s);
  CHECK(e.retry.max_elapsed == 5min);
  CHECK(e.tls.ca_file.empty());
  CHECK_FALSE(e.tls.insecure_skip_verify);
  CHECK(e.tls.server_name.empty());
  CHECK(e.max_in_flight == 4);
  CHECK(e.path.empty());
}

TEST_CASE("every key is read") {
  EnvVar token("SR_TEST_TOKEN", "tok-value-1");
  TempFile ca("-----BEGIN CERTIFICATE-----\n");
  const std::string yaml =
      "receivers:\n"
      "  http:\n"
      "    endpoint: 0.0.0.0:14318\n"
      "    max_request_bytes: 8MiB\n"
      "    max_connections: 10\n"
      "    max_header_bytes: 32KiB\n"
      "    read_timeout: 5s\n"
      "    idle_timeout: 1m\n"
      "buffer: {max_bytes: 128MiB, max_chunks: 100}\n"
      "batch: {max_spans: 100, max_bytes: 1MB, timeout: 250ms}\n"
      "exporters:\n"
      "  grafana:\n"
      "    type: otlp_http\n"
      "    endpoint: https://otlp-gateway-prod-eu-west-2.grafana.net/otlp\n"
      "    compression: none\n"
      "    auth: {username: \"123456\", password_env: SR_TEST_TOKEN}\n"
      "    headers: {X-Scope-OrgID: tenant-1, x-extra: \"a b\"}\n"
      "    timeout: 3s\n"
      "    retry: {initial_interval: 2s, max_interval: 1m, max_elapsed: 10m, enabled: false}\n"
      "    tls: {ca_file: " +
      ca.path() +
      ", insecure_skip_verify: true, server_name: tempo.internal}\n"
      "    max_in_flight: 8\n"
      "  local: {type: file, path: /var/lib/spanrelay/spans.jsonl}\n"
      "  a-2_B: {type: file, path: x}\n"
      "log: {level: debug, format: json}\n"
      "admin: {endpoint: \"[::1]:9090\"}\n"
      "shutdown_timeout: 1m30s\n";
  const Config c = load_string(yaml, "all.yaml");

  CHECK(c.receivers.http.enabled);
  CHECK(c.receivers.http.endpoint.host == "0.0.0.0");
  CHECK(c.receivers.http.endpoint.port == 14318);
  CHECK(c.receivers.http.max_request_bytes == 8 * MiB);
  CHECK(c.receivers.http.max_connections == 10);
  CHECK(c.receivers.http.max_header_bytes == 32 * KiB);
  CHECK(c.receivers.http.read_timeout == 5s);
  CHECK(c.receivers.http.idle_timeout == 60s);
  CHECK(c.buffer.max_bytes == 128 * MiB);
  CHECK(c.buffer.max_chunks == 100);
  CHECK(c.batch.max_spans == 100);
  CHECK(c.batch.max_bytes == 1'000'000);
  CHECK(c.batch.timeout == 250ms);

  REQUIRE(c.exporters.size() == 3);
  CHECK(c.exporters[0].name == "grafana");  // file order, not alphabetical
  CHECK(c.exporters[1].name == "local");
  CHECK(c.exporters[2].name == "a-2_B");
  const Exporter& g = c.exporters[0];
  CHECK(g.type == ExporterType::otlp_http);
  CHECK(g.endpoint.tls);
  CHECK(g.endpoint.host == "otlp-gateway-prod-eu-west-2.grafana.net");
  CHECK(g.endpoint.port == 443);
  CHECK(g.endpoint.traces_target == "/otlp/v1/traces");
  CHECK_FALSE(g.gzip);
  CHECK(g.auth.enabled);
  CHECK(g.auth.username == "123456");
  CHECK(g.auth.password == "tok-value-1");
  CHECK(g.auth.password_source == "env SR_TEST_TOKEN");
  REQUIRE(g.headers.size() == 2);
  CHECK(g.headers[0] == std::pair<std::string, std::string>{"X-Scope-OrgID", "tenant-1"});
  CHECK(g.headers[1] == std::pair<std::string, std::string>{"x-extra", "a b"});
  CHECK(g.timeout == 3s);
  CHECK_FALSE(g.retry.enabled);
  CHECK(g.retry.initial_interval == 2s);
  CHECK(g.retry.max_interval == 60s);
  CHECK(g.retry.max_elapsed == 10min);
  CHECK(g.tls.ca_file == ca.path());
  CHECK(g.tls.insecure_skip_verify);
  CHECK(g.tls.server_name == "tempo.internal");
  CHECK(g.max_in_flight == 8);
  CHECK(c.exporters[1].type == ExporterType::file);
  CHECK(c.exporters[1].path == "/var/lib/spanrelay/spans.jsonl");

  CHECK(c.log.level == "debug");
  CHECK(c.log.json);
  CHECK(c.admin.enabled);
  CHECK(c.admin.endpoint.host == "::1");
  CHECK(c.admin.endpoint.port == 9090);
  CHECK(c.shutdown_timeout == 90s);

  const std::string text = describe(c);
  CHECK_THAT(text, Contains("source: all.yaml\n"));
  CHECK_THAT(text, Contains("    endpoint: 0.0.0.0:14318\n"));
  CHECK_THAT(text, Contains("    max_request_bytes: 8MiB\n"));
  CHECK_THAT(text, Contains("    max_connections: 10\n"));
  CHECK_THAT(text, Contains("    idle_timeout: 1m\n"));
  CHECK_THAT(text, Contains("  max_bytes: 128MiB\n"));
  CHECK_THAT(text, Contains("  max_bytes: 1MB\n"));
  CHECK_THAT(text, Contains("  timeout: 250ms\n"));
  CHECK_THAT(text, Contains("/otlp/v1/traces"));
  CHECK_THAT(text, Contains("    compression: none\n"));
  CHECK_THAT(text,
             Contains("auth: username: 123456, password: <redacted, from env SR_TEST_TOKEN>"));
  CHECK_THAT(text, Contains("      X-Scope-OrgID: <redacted>\n"));
  CHECK_THAT(text, Contains("      enabled: false\n"));
  CHECK_THAT(text, Contains("      max_interval: 1m\n"));
  CHECK_THAT(text, Contains("      server_name: tempo.internal\n"));
  CHECK_THAT(text, Contains("    max_in_flight: 8\n"));
  CHECK_THAT(text, Contains("    path: /var/lib/spanrelay/spans.jsonl\n"));
  CHECK_THAT(text, Contains("  level: debug\n"));
  CHECK_THAT(text, Contains("  format: json\n"));
  CHECK_THAT(text, Contains("admin:\n  endpoint: [::1]:9090\n"));
  CHECK_THAT(text, Contains("shutdown_timeout: 1m30s\n"));
  CHECK_THAT(text, !Contains("tok-value-1"));
  CHECK_THAT(text, !Contains("tenant-1"));
  CHECK_THAT(text, !Contains("a b"));
}

TEST_CASE("describe of the defaults shows disabled parts") {
  const std::string text = describe(load_string("receivers: {http: }\n" + kFileExporter, "d"));
  CHECK_THAT(text, Contains("admin: disabled\n"));
  CHECK_THAT(text, Contains("  http:\n    endpoint: 127.0.0.1:4318\n"));
  CHECK_THAT(text, Contains("    read_timeout: 30s\n"));
  CHECK_THAT(text, Contains("    idle_timeout: 2m\n"));
  CHECK_THAT(text, Contains("  max_chunks: 65536\n"));
  CHECK_THAT(text, Contains("  level: info\n  format: text\n"));
  CHECK_THAT(text, Contains("shutdown_timeout: 10s\n"));
  const std::string up = describe(load_string(otlp_exporter(""), "d"));
  CHECK_THAT(up, Contains("    auth: none\n"));
  CHECK_THAT(up, Contains("    headers: none\n"));
  CHECK_THAT(up, Contains("    tls: not used (http://)\n"));
  CHECK_THAT(up, Contains("(POST http://127.0.0.1:9999/v1/traces)"));
  CHECK_THAT(up, Contains("      max_elapsed: 5m\n"));
}

TEST_CASE("the embedded default is config/spanrelay.yaml and needs no account") {
  std::ifstream in(std::string(SPANRELAY_SOURCE_DIR) + "/config/spanrelay.yaml", std::ios::binary);
  REQUIRE(in);
  std::stringstream file;
  file << in.rdbuf();
  CHECK(embedded_default() == file.str());
  CHECK_THAT(std::string(embedded_default()), Contains("config/examples/grafana-cloud.yaml"));

  const Config c = load_string(embedded_default(), "<embedded default>");
  CHECK(c.source == "<embedded default>");
  CHECK(c.receivers.http.enabled);
  CHECK(c.receivers.http.endpoint.host == "127.0.0.1");
  CHECK(c.receivers.http.endpoint.port == 4318);
  CHECK(c.admin.enabled);
  CHECK(c.admin.endpoint.host == "127.0.0.1");
  CHECK(c.admin.endpoint.port == 13133);
  REQUIRE(c.exporters.size() == 1);
  CHECK(c.exporters[0].name == "local");
  CHECK(c.exporters[0].type == ExporterType::file);
  CHECK(c.exporters[0].path == "./spans.jsonl");
}

TEST_CASE("the Grafana Cloud example loads with the token from the environment") {
  const std::string path =
      std::string(SPANRELAY_SOURCE_DIR) + "/config/examples/grafana-cloud.yaml";
  SECTION("token set") {
    EnvVar token("GRAFANA_CLOUD_TOKEN", "glc_example_secret");
    const Config c = load_file(path);
    CHECK(c.source == path);
    REQUIRE(c.exporters.size() == 1);
    const Exporter& g = c.exporters[0];
    CHECK(g.name == "grafana");
    CHECK(g.type == ExporterType::otlp_http);
    CHECK(g.endpoint.text == "https://otlp-gateway-prod-eu-west-2.grafana.net/otlp");
    CHECK(g.endpoint.tls);
    CHECK(g.endpoint.port == 443);
    CHECK(g.endpoint.traces_target == "/otlp/v1/traces");
    CHECK(g.gzip);
    CHECK(g.auth.enabled);
    CHECK(g.auth.username == "123456");
    CHECK(g.auth.password == "glc_example_secret");
    CHECK(g.auth.password_source == "env GRAFANA_CLOUD_TOKEN");
    CHECK(c.receivers.http.endpoint.port == 4318);
    CHECK(c.admin.enabled);
    CHECK_THAT(describe(c), !Contains("glc_example_secret"));
    CHECK_THAT(describe(c), Contains("password: <redacted, from env GRAFANA_CLOUD_TOKEN>"));
  }
  SECTION("token missing") {
    EnvVar token("GRAFANA_CLOUD_TOKEN", nullptr);
    try {
      load_file(path);
      FAIL("expected a ConfigError");
    } catch (const ConfigError& e) {
      CHECK_THAT(e.what(), Matches("^" + path + ":[0-9]+:[0-9]+: " +
                                   "exporters\\.grafana\\.auth\\.password_env: .*"));
      CHECK_THAT(e.what(), Contains("GRAFANA_CLOUD_TOKEN is not set"));
    }
  }
}

TEST_CASE("load_file reports a missing file with strerror") {
  try {
    load_file("/nonexistent/spanrelay.yaml");
    FAIL("expected a ConfigError");
  } catch (const ConfigError& e) {
    CHECK(std::string(e.what()) ==
          "cannot read config file /nonexistent/spanrelay.yaml: No such file or directory");
  }
  const std::string dir = std::filesystem::temp_directory_path().string();
  try {
    load_file(dir);
    FAIL("expected a ConfigError");
  } catch (const ConfigError& e) {
    CHECK(std::string(e.what()) == "cannot read config file " + dir + ": Is a directory");
  }
}

TEST_CASE("load_file uses the path as given in messages") {
  TempFile file("batch:\n  timeout: 10x\n" + kFileExporter);
  try {
    load_file(file.path());
    FAIL("expected a ConfigError");
  } catch (const ConfigError& e) {
    CHECK(std::string(e.what()) == file.path() +
                                       ":2:12: batch.timeout: \"10x\" is not a duration "
                                       "(use e.g. 5s, 250ms, 1m)");
  }
}

// ---- loader: errors. Every message starts with FILE:LINE:COLUMN: key.path: ----

TEST_CASE("unknown keys are rejected with the known ones listed") {
  CHECK(error_of("batchh: {}\n" + kFileExporter) ==
        "t.yaml:1:1: batchh: unknown key (known: receivers, buffer, batch, exporters, log, "
        "admin, spool, processors, shutdown_timeout)");
  CHECK(error_of(otlp_exporter("    retry:\n      max_elapsd: 5m\n")) ==
        "t.yaml:6:7: exporters.up.retry.max_elapsd: unknown key (known: initial_interval, "
        "max_interval, max_elapsed, enabled)");
  CHECK(error_of("receivers:\n  http:\n    endpointt: x\n" + kFileExporter) ==
        "t.yaml:3:5: receivers.http.endpointt: unknown key (known: endpoint, max_request_bytes, "
        "max_connections, max_header_bytes, read_timeout, idle_timeout)");
  CHECK(error_of("receivers:\n  grcp: {}\n" + kFileExporter) ==
        "t.yaml:2:3: receivers.grcp: unknown key (known: http, grpc)");
  CHECK(error_of("exporters:\n  local: {type: file, path: x, paht: y}\n") ==
        "t.yaml:2:32: exporters.local.paht: unknown key (known: type, path, max_queue_bytes)");
  CHECK(error_of(otlp_exporter("    tls: {cafile: x}\n")) ==
        "t.yaml:5:11: exporters.up.tls.cafile: unknown key (known: ca_file, "
        "insecure_skip_verify, server_name)");
  CHECK(error_of(otlp_exporter("    auth: {username: u, password_env: HOME, pw: x}\n")) ==
        "t.yaml:5:45: exporters.up.auth.pw: unknown key (known: username, password_env, "
        "password_file)");
  CHECK_THAT(error_of(otlp_exporter("    compresion: gzip\n")),
             StartsWith("t.yaml:5:5: exporters.up.compresion: unknown key (known: type, endpoint, "
                        "compression, auth, headers, timeout, retry, tls, max_in_flight, "
                        "max_queue_bytes)"));
  CHECK_THAT(error_of("log: {levl: info}\n" + kFileExporter),
             StartsWith("t.yaml:1:7: log.levl: unknown key (known: level, format)"));
  CHECK_THAT(error_of("admin: {port: 1}\n" + kFileExporter),
             StartsWith("t.yaml:1:9: admin.port: unknown key (known: endpoint)"));
  CHECK_THAT(error_of("buffer: {chunks: 1}\n" + kFileExporter),
             StartsWith("t.yaml:1:10: buffer.chunks: unknown key (known: max_bytes, max_chunks)"));
  CHECK_THAT(error_of("batch: {spans: 1}\n" + kFileExporter),
             StartsWith("t.yaml:1:9: batch.spans: unknown key (known: max_spans, max_bytes, "
                        "timeout)"));
  // Keys are never substituted.
  CHECK_THAT(error_of("${HOME}: 1\n" + kFileExporter), StartsWith("t.yaml:1:1: ${HOME}: unknown"));
}

TEST_CASE("bad values name the position, the key and what is expected") {
  CHECK(error_of("batch:\n  timeout: 10x\n" + kFileExporter) ==
        "t.yaml:2:12: batch.timeout: \"10x\" is not a duration (use e.g. 5s, 250ms, 1m)");
  CHECK(error_of("batch:\n  timeout: 10\n" + kFileExporter) ==
        "t.yaml:2:12: batch.timeout: \"10\" is not a duration: a duration needs a unit, e.g. 5s "
        "or 250ms");
  CHECK_THAT(error_of("buffer:\n  max_bytes: 64Mb\n" + kFileExporter),
             StartsWith("t.yaml:2:14: buffer.max_bytes: \"64Mb\" is not a size: unknown unit "
                        "\"Mb\""));
  CHECK(error_of("batch: {max_bytes: 512B}\n" + kFileExporter) ==
        "t.yaml:1:20: batch.max_bytes: 512B is too small (minimum 1KiB)");
  CHECK(error_of("receivers:\n  http: {max_request_bytes: 1000}\n" + kFileExporter) ==
        "t.yaml:2:29: receivers.http.max_request_bytes: 1KB is too small (minimum 1KiB)");
  CHECK(error_of("batch: {max_spans: 0}\n" + kFileExporter) ==
        "t.yaml:1:20: batch.max_spans: 0 is out of range (a whole number from 1 to 4294967296)");
  CHECK_THAT(error_of("batch: {max_spans: many}\n" + kFileExporter),
             StartsWith("t.yaml:1:20: batch.max_spans: \"many\" is not a whole number"));
  CHECK_THAT(error_of("batch: {max_spans: -1}\n" + kFileExporter),
             StartsWith("t.yaml:1:20: batch.max_spans: \"-1\" is not a whole number"));
  CHECK(error_of(otlp_exporter("    max_in_flight: 65\n")) ==
        "t.yaml:5:20: exporters.up.max_in_flight: 65 is out of range (a whole number from 1 to "
        "64)");
  CHECK_THAT(error_of(otlp_exporter("    max_in_flight: 0\n")),
             StartsWith("t.yaml:5:20: exporters.up.max_in_flight: 0 is out of range"));
  CHECK(error_of(otlp_exporter("    retry: {enabled: yes}\n")) ==
        "t.yaml:5:22: exporters.up.retry.enabled: \"yes\" is not a boolean (use true or false)");
  CHECK(error_of(otlp_exporter("    compression: zstd\n")) ==
        "t.yaml:5:18: exporters.up.compression: \"zstd\" is not one of: gzip, none");
  CHECK(error_of("log:\n  level: verbose\n" + kFileExporter) ==
        "t.yaml:2:10: log.level: \"verbose\" is not one of: trace, debug, info, warn, error, off");
  CHECK(error_of("log:\n  format: xml\n" + kFileExporter) ==
        "t.yaml:2:11: log.format: \"xml\" is not one of: text, json");
  CHECK(error_of("exporters:\n  x: {type: grpc}\n") ==
        "t.yaml:2:13: exporters.x.type: \"grpc\" is not one of: otlp_http, otlp_grpc, file");
  CHECK(error_of("receivers:\n  http: {endpoint: 4318}\n" + kFileExporter) ==
        "t.yaml:2:20: receivers.http.endpoint: \"4318\" has no port (use host:port, [::1]:port "
        "or unix:/path/to.sock)");
  CHECK_THAT(error_of("admin:\n  endpoint: \"::1:80\"\n" + kFileExporter),
             StartsWith("t.yaml:2:13: admin.endpoint: \"::1:80\": an IPv6 address needs brackets"));
  CHECK(error_of("exporters:\n  up:\n    type: otlp_http\n    endpoint: https://h/otlp?a=b\n") ==
        "t.yaml:4:15: exporters.up.endpoint: \"https://h/otlp?a=b\": a query string is not "
        "allowed (/v1/traces is appended to the path)");
  CHECK_THAT(error_of("exporters:\n  up: {type: otlp_http, endpoint: \"grpc://h:4317\"}\n"),
             StartsWith("t.yaml:2:35: exporters.up.endpoint: \"grpc://h:4317\" must start with "
                        "http:// or https://"));
  CHECK_THAT(error_of("exporters:\n  local: {type: file, path: \"\"}\n"),
             StartsWith("t.yaml:2:29: exporters.local.path: must not be empty"));
}

TEST_CASE("durations must be positive") {
  CHECK(error_of("batch: {timeout: 0s}\n" + kFileExporter) ==
        "t.yaml:1:18: batch.timeout: \"0s\" must be greater than 0 (at least 1ms)");
  CHECK_THAT(error_of("shutdown_timeout: 0ms\n" + kFileExporter),
             StartsWith("t.yaml:1:19: shutdown_timeout: \"0ms\" must be greater than 0"));
  CHECK_THAT(error_of("shutdown_timeout: -1s\n" + kFileExporter),
             StartsWith("t.yaml:1:19: shutdown_timeout: \"-1s\" is not a duration: it must not "
                        "be negative"));
  CHECK_THAT(error_of(otlp_exporter("    timeout: 0.1ms\n")),
             StartsWith("t.yaml:5:14: exporters.up.timeout: \"0.1ms\" must be greater than 0"));
  CHECK_THAT(error_of(otlp_exporter("    retry: {max_elapsed: 0s}\n")),
             StartsWith("t.yaml:5:26: exporters.up.retry.max_elapsed: \"0s\" must be greater"));
  CHECK_THAT(error_of("receivers:\n  http: {read_timeout: 0s}\n" + kFileExporter),
             StartsWith("t.yaml:2:24: receivers.http.read_timeout: \"0s\" must be greater"));
  CHECK_THAT(error_of("receivers:\n  http: {idle_timeout: 0s}\n" + kFileExporter),
             StartsWith("t.yaml:2:24: receivers.http.idle_timeout: \"0s\" must be greater"));
}

TEST_CASE("cross-key limits name both keys") {
  CHECK(error_of("buffer: {max_bytes: 2MiB}\n" + kFileExporter) ==
        "t.yaml:1:21: buffer.max_bytes: buffer.max_bytes (2MiB) must be at least "
        "batch.max_bytes (4MiB): a full batch must fit in the buffer");
  CHECK(error_of("batch: {max_bytes: 128MiB}\n" + kFileExporter) ==
        "t.yaml:1:20: batch.max_bytes: buffer.max_bytes (64MiB) must be at least "
        "batch.max_bytes (128MiB): a full batch must fit in the buffer");
  CHECK_NOTHROW(load_string("buffer: {max_bytes: 1MiB}\nbatch: {max_bytes: 1MiB}\n" + kFileExporter,
                            "t.yaml"));
  CHECK(error_of(otlp_exporter("    retry: {initial_interval: 1m, max_interval: 30s}\n")) ==
        "t.yaml:5:31: exporters.up.retry.initial_interval: retry.initial_interval (1m) must not "
        "exceed retry.max_interval (30s)");
  CHECK_THAT(error_of(otlp_exporter("    retry: {max_interval: 500ms}\n")),
             StartsWith("t.yaml:5:27: exporters.up.retry.max_interval: retry.initial_interval "
                        "(1s) must not exceed retry.max_interval (500ms)"));
  CHECK(error_of("receivers: {http: {endpoint: \"127.0.0.1:9000\"}}\n"
                 "admin: {endpoint: \"127.0.0.1:9000\"}\n" +
                 kFileExporter) ==
        "t.yaml:2:19: admin.endpoint: the same address as receivers.http.endpoint");
  CHECK_NOTHROW(
      load_string("receivers: {http: {endpoint: \"127.0.0.1:0\"}}\n"
                  "admin: {endpoint: \"127.0.0.1:0\"}\n" +
                      kFileExporter,
                  "t.yaml"));
}

TEST_CASE("duplicate keys are errors") {
  CHECK(error_of("batch: {timeout: 1s}\nbatch: {timeout: 2s}\n" + kFileExporter) ==
        "t.yaml:2:1: batch: duplicate key (first at line 1)");
  CHECK(error_of("exporters:\n  a: {type: file, path: x, path: y}\n") ==
        "t.yaml:2:28: exporters.a.path: duplicate key (first at line 2)");
  CHECK(error_of("exporters:\n  a: {type: file, path: x}\n  a: {type: file, path: y}\n") ==
        "t.yaml:3:3: exporters.a: duplicate key (first at line 2)");
  CHECK(error_of(otlp_exporter("    headers:\n      X-A: 1\n      X-A: 2\n")) ==
        "t.yaml:7:7: exporters.up.headers.X-A: duplicate key (first at line 6)");
}

TEST_CASE("wrong node kinds are errors") {
  CHECK(error_of("receivers: [http]\n" + kFileExporter) ==
        "t.yaml:1:12: receivers: expected a map, got a list");
  CHECK(error_of("batch: 5\n" + kFileExporter) ==
        "t.yaml:1:8: batch: expected a map, got a single value");
  CHECK(error_of("shutdown_timeout: {a: 1}\n" + kFileExporter) ==
        "t.yaml:1:19: shutdown_timeout: expected a single value, got a map");
  CHECK(error_of("exporters:\n  - local\n") == "t.yaml:2:3: exporters: expected a map, got a list");
  CHECK(error_of("exporters:\n  local: file\n") ==
        "t.yaml:2:10: exporters.local: expected a map, got a single value");
  CHECK(error_of(otlp_exporter("    headers: [a]\n")) ==
        "t.yaml:5:14: exporters.up.headers: expected a map, got a list");
  CHECK(error_of(otlp_exporter("    headers: {X-A: [1]}\n")) ==
        "t.yaml:5:20: exporters.up.headers.X-A: expected a single value, got a list");
  CHECK(error_of("- a\n- b\n") == "t.yaml:1:1: expected a map, got a list");
  CHECK(error_of("just text\n") == "t.yaml:1:1: expected a map, got a single value");
  CHECK_THAT(error_of("shutdown_timeout:\n" + kFileExporter),
             Matches("t\\.yaml:[12]:[0-9]+: shutdown_timeout: needs a value"));
  CHECK_THAT(error_of("exporters:\n  local: {type: file, path: }\n"),
             Matches("t\\.yaml:2:[0-9]+: exporters\\.local\\.path: needs a value"));
  CHECK_THAT(error_of("? [a, b]\n: c\n" + kFileExporter),
             Matches("t\\.yaml:1:[0-9]+: keys must be plain strings, got a list"));
  CHECK_THAT(error_of(""), StartsWith("t.yaml: the config is empty"));
  CHECK_THAT(error_of("# only a comment\n"), StartsWith("t.yaml: the config is empty"));
}

TEST_CASE("YAML syntax errors carry a position") {
  CHECK_THAT(error_of("batch: {max_spans: 1\n" + kFileExporter),
             Matches("t\\.yaml:[0-9]+:[0-9]+: invalid YAML: .+"));
  CHECK(error_of("exporters:\n  local: {type: file, path: x}\n - bad\n") ==
        "t.yaml:3:2: invalid YAML: end of map not found");
  CHECK(error_of("exporters:\n  local: {type: file, path: x}\n  bad: [1, 2\n") ==
        "t.yaml:4:1: invalid YAML: end of sequence flow not found");
  CHECK_THAT(error_of("a: &x 1\nb: *y\n"), Matches("t\\.yaml:2:[0-9]+: invalid YAML: .+"));
}

TEST_CASE("receivers and admin presence rules") {
  CHECK(error_of("receivers: {}\n" + kFileExporter) ==
        "t.yaml:1:1: receivers: no receiver is enabled (add http: {} or remove receivers: for "
        "the default)");
  CHECK_THAT(error_of("receivers:\n" + kFileExporter),
             StartsWith("t.yaml:1:1: receivers: no receiver is enabled"));

  const Config null_http = load_string("receivers:\n  http:\n" + kFileExporter, "t.yaml");
  CHECK(null_http.receivers.http.enabled);
  CHECK(null_http.receivers.http.endpoint.port == 4318);
  CHECK(load_string("receivers: {http: {}}\n" + kFileExporter, "t.yaml").receivers.http.enabled);

  const Config null_admin = load_string("admin:\n" + kFileExporter, "t.yaml");
  CHECK(null_admin.admin.enabled);
  CHECK(null_admin.admin.endpoint.host == "127.0.0.1");
  CHECK(null_admin.admin.endpoint.port == 13133);
  CHECK(load_string("admin: {}\n" + kFileExporter, "t.yaml").admin.enabled);
}

TEST_CASE("unix and IPv6 listen endpoints through the loader") {
  const Config c = load_string(
      "receivers:\n  http:\n    endpoint: unix:/tmp/sr.sock\n"
      "admin:\n  endpoint: \"[::1]:13133\"\n" +
          kFileExporter,
      "t.yaml");
  CHECK(c.receivers.http.endpoint.unix_path == "/tmp/sr.sock");
  CHECK(c.receivers.http.endpoint.host.empty());
  CHECK(c.receivers.http.endpoint.text == "unix:/tmp/sr.sock");
  CHECK(c.admin.endpoint.host == "::1");
  CHECK(c.admin.endpoint.port == 13133);
  CHECK_THAT(error_of("receivers:\n  http:\n    endpoint: \"unix:\"\n" + kFileExporter),
             StartsWith("t.yaml:3:15: receivers.http.endpoint: \"unix:\": the unix socket path is "
                        "empty"));
  CHECK_THAT(error_of("admin: {endpoint: \"[::g]:1\"}\n" + kFileExporter),
             StartsWith("t.yaml:1:19: admin.endpoint: \"[::g]:1\": \"::g\" is not an IPv6"));
}

TEST_CASE("receivers.grpc: defaults, presence and every key") {
  const Config none = load_string(kFileExporter, "t.yaml");
  CHECK_FALSE(none.receivers.grpc.enabled);  // receivers absent: HTTP only, as before
  CHECK(none.receivers.http.enabled);
  CHECK_THAT(describe(none), Contains("  grpc: disabled\n"));

  const Config only_grpc = load_string("receivers:\n  grpc:\n" + kFileExporter, "t.yaml");
  const GrpcReceiver& d = only_grpc.receivers.grpc;
  CHECK(d.enabled);
  CHECK_FALSE(only_grpc.receivers.http.enabled);
  CHECK(d.endpoint.host == "127.0.0.1");
  CHECK(d.endpoint.port == 4317);
  CHECK(d.endpoint.text == "127.0.0.1:4317");
  CHECK(d.max_message_bytes == 4 * MiB);
  CHECK(d.max_concurrent_streams == 100);
  CHECK(d.keepalive.time == 2h);
  CHECK(d.keepalive.timeout == 20s);
  const std::string text = describe(only_grpc);
  CHECK_THAT(text, Contains("  http: disabled\n"));
  CHECK_THAT(text, Contains("  grpc:\n    endpoint: 127.0.0.1:4317\n    max_message_bytes: 4MiB\n"
                            "    max_concurrent_streams: 100\n    keepalive:\n      time: 2h\n"
                            "      timeout: 20s\n"));

  const Config both = load_string(
      "receivers:\n"
      "  http: {}\n"
      "  grpc:\n"
      "    endpoint: 0.0.0.0:14317\n"
      "    max_message_bytes: 8MiB\n"
      "    max_concurrent_streams: 10\n"
      "    keepalive: {time: 1m, timeout: 5s}\n" +
          kFileExporter,
      "t.yaml");
  const GrpcReceiver& g = both.receivers.grpc;
  CHECK(both.receivers.http.enabled);
  CHECK(g.enabled);
  CHECK(g.endpoint.host == "0.0.0.0");
  CHECK(g.endpoint.port == 14317);
  CHECK(g.max_message_bytes == 8 * MiB);
  CHECK(g.max_concurrent_streams == 10);
  CHECK(g.keepalive.time == 1min);
  CHECK(g.keepalive.timeout == 5s);
  CHECK_THAT(describe(both), Contains("    endpoint: 0.0.0.0:14317\n    max_message_bytes: 8MiB\n"
                                      "    max_concurrent_streams: 10\n    keepalive:\n"
                                      "      time: 1m\n      timeout: 5s\n"));

  const Config unix_socket = load_string(
      "receivers: {grpc: {endpoint: \"unix:/run/spanrelay/otlp-grpc.sock\"}}\n" + kFileExporter,
      "t.yaml");
  CHECK(unix_socket.receivers.grpc.endpoint.unix_path == "/run/spanrelay/otlp-grpc.sock");
}

TEST_CASE("receivers.grpc: bad keys and values") {
  CHECK(error_of("receivers:\n  grpc:\n    endpont: x\n" + kFileExporter) ==
        "t.yaml:3:5: receivers.grpc.endpont: unknown key (known: endpoint, max_message_bytes, "
        "max_concurrent_streams, keepalive)");
  CHECK(error_of("receivers:\n  grpc:\n    keepalive: {tme: 1s}\n" + kFileExporter) ==
        "t.yaml:3:17: receivers.grpc.keepalive.tme: unknown key (known: time, timeout)");
  CHECK(error_of("receivers:\n  grpc: {max_message_bytes: 512}\n" + kFileExporter) ==
        "t.yaml:2:29: receivers.grpc.max_message_bytes: 512B is too small (minimum 1KiB)");
  CHECK(error_of("receivers:\n  grpc: {max_message_bytes: 2GiB}\n" + kFileExporter) ==
        "t.yaml:2:29: receivers.grpc.max_message_bytes: 2GiB is too large (maximum 1GiB)");
  CHECK(error_of("receivers:\n  grpc: {max_concurrent_streams: 0}\n" + kFileExporter) ==
        "t.yaml:2:34: receivers.grpc.max_concurrent_streams: 0 is out of range (a whole number "
        "from 1 to 1000000)");
  CHECK_THAT(error_of("receivers:\n  grpc: {keepalive: {time: 0s}}\n" + kFileExporter),
             StartsWith("t.yaml:2:28: receivers.grpc.keepalive.time: \"0s\" must be greater"));
  CHECK_THAT(error_of("receivers:\n  grpc: {keepalive: {timeout: 5}}\n" + kFileExporter),
             StartsWith("t.yaml:2:31: receivers.grpc.keepalive.timeout: \"5\" is not a duration"));
  CHECK_THAT(error_of("receivers:\n  grpc: {endpoint: \"unix:\"}\n" + kFileExporter),
             StartsWith("t.yaml:2:20: receivers.grpc.endpoint: \"unix:\": the unix socket path "
                        "is empty"));
  CHECK(error_of("receivers: {grpc: [1]}\n" + kFileExporter) ==
        "t.yaml:1:19: receivers.grpc: expected a map, got a list");
}

TEST_CASE("receivers.grpc must not share an address with http or admin") {
  CHECK(error_of("receivers:\n  http: {endpoint: \"127.0.0.1:4317\"}\n  grpc: {}\n" +
                 kFileExporter) ==
        "t.yaml:3:3: receivers.grpc.endpoint: the same address as receivers.http.endpoint");
  CHECK(error_of("receivers:\n  http: {endpoint: \"unix:/tmp/a.sock\"}\n"
                 "  grpc: {endpoint: \"unix:/tmp/a.sock\"}\n" +
                 kFileExporter) ==
        "t.yaml:3:20: receivers.grpc.endpoint: the same address as receivers.http.endpoint");
  CHECK(error_of("receivers: {grpc: {}}\nadmin: {endpoint: \"127.0.0.1:4317\"}\n" +
                 kFileExporter) ==
        "t.yaml:2:19: admin.endpoint: the same address as receivers.grpc.endpoint");
  // The default HTTP receiver (receivers absent) and an admin on 4317 are fine: no gRPC.
  CHECK_NOTHROW(load_string("admin: {endpoint: \"127.0.0.1:4317\"}\n" + kFileExporter, "t.yaml"));
  CHECK_NOTHROW(load_string("receivers: {http: {endpoint: \"127.0.0.1:0\"}, grpc: {endpoint: "
                            "\"127.0.0.1:0\"}}\n" +
                                kFileExporter,
                            "t.yaml"));
}

TEST_CASE("exporter structure rules") {
  CHECK(error_of("log: {level: info}\n") ==
        "t.yaml:1:1: exporters: at least one exporter is required (see "
        "config/examples/grafana-cloud.yaml)");
  CHECK(error_of("log: {level: info}\nexporters: {}\n") ==
        "t.yaml:2:1: exporters: at least one exporter is required (see "
        "config/examples/grafana-cloud.yaml)");
  CHECK_THAT(error_of("log: {level: info}\nexporters:\n"),
             StartsWith("t.yaml:2:1: exporters: at least one exporter is required"));
  CHECK(error_of("exporters:\n  \"my exporter\": {type: file, path: x}\n") ==
        "t.yaml:2:3: exporters: exporter name \"my exporter\" must be letters, digits, _ or - "
        "(not empty)");
  CHECK_THAT(error_of("exporters:\n  \"\": {type: file, path: x}\n"),
             StartsWith("t.yaml:2:3: exporters: exporter name \"\" must be"));
  CHECK_THAT(error_of("exporters:\n  a.b: {type: file, path: x}\n"),
             StartsWith("t.yaml:2:3: exporters: exporter name \"a.b\""));
  CHECK(error_of("exporters:\n  local: {path: x}\n") ==
        "t.yaml:2:3: exporters.local.type: is required (otlp_http, otlp_grpc or file)");
  CHECK_THAT(error_of("exporters:\n  local:\n"),
             StartsWith("t.yaml:2:3: exporters.local.type: is required"));
  CHECK_THAT(error_of("exporters:\n  local: {type: file}\n"),
             StartsWith("t.yaml:2:3: exporters.local.path: is required"));
  CHECK_THAT(error_of("exporters:\n  up: {type: otlp_http}\n"),
             StartsWith("t.yaml:2:3: exporters.up.endpoint: is required"));
  CHECK(error_of(otlp_exporter("    path: x\n")) ==
        "t.yaml:5:5: exporters.up.path: only valid for type: file");
  CHECK(error_of("exporters:\n  local: {type: file, path: x, endpoint: http://h}\n") ==
        "t.yaml:2:32: exporters.local.endpoint: only valid for type: otlp_http and otlp_grpc");
  CHECK_THAT(error_of("exporters:\n  local: {type: file, path: x, headers: {}}\n"),
             StartsWith("t.yaml:2:32: exporters.local.headers: only valid for type: otlp_http and otlp_grpc"));
  CHECK_THAT(error_of("exporters:\n  local: {type: file, path: x, max_in_flight: 2}\n"),
             StartsWith("t.yaml:2:32: exporters.local.max_in_flight: only valid for type"));
}

TEST_CASE("auth rules") {
  EnvVar set("SR_TEST_PW", "pw-from-env");
  EnvVar unset("SR_TEST_UNSET", nullptr);
  EnvVar empty("SR_TEST_EMPTY", "");

  CHECK(error_of(otlp_exporter("    auth: {password_env: SR_TEST_PW}\n")) ==
        "t.yaml:5:5: exporters.up.auth.username: is required (the user or instance ID, e.g. "
        "\"123456\")");
  CHECK_THAT(error_of(otlp_exporter("    auth: {username: a:b, password_env: SR_TEST_PW}\n")),
             StartsWith("t.yaml:5:22: exporters.up.auth.username: must be non-empty and must not "
                        "contain ':'"));
  CHECK_THAT(error_of(otlp_exporter(
                 "    auth: {username: u, password_env: SR_TEST_PW, password_file: /x}\n")),
             StartsWith("t.yaml:5:66: exporters.up.auth.password_file: set only one of "
                        "password_env and password_file"));
  CHECK(error_of(otlp_exporter("    auth: {username: u}\n")) ==
        "t.yaml:5:5: exporters.up.auth: needs password_env (an environment variable name) or "
        "password_file (a path)");
  CHECK(error_of(otlp_exporter("    auth: {username: u, password_env: SR_TEST_UNSET}\n")) ==
        "t.yaml:5:39: exporters.up.auth.password_env: environment variable SR_TEST_UNSET is not "
        "set or is empty");
  CHECK_THAT(error_of(otlp_exporter("    auth: {username: u, password_env: SR_TEST_EMPTY}\n")),
             StartsWith("t.yaml:5:39: exporters.up.auth.password_env: environment variable "
                        "SR_TEST_EMPTY is not set or is empty"));
  CHECK_THAT(error_of(otlp_exporter("    auth: {username: u, password_env: 1BAD}\n")),
             StartsWith("t.yaml:5:39: exporters.up.auth.password_env: \"1BAD\" is not an "
                        "environment variable name"));
  CHECK(error_of(otlp_exporter("    auth: {username: u, password_file: /nonexistent/token}\n")) ==
        "t.yaml:5:40: exporters.up.auth.password_file: cannot read /nonexistent/token: No such "
        "file or directory");

  SECTION("password_file is read and trailing whitespace stripped") {
    TempFile token("  file secret\t \n\n");
    const Config c = load_string(
        otlp_exporter("    auth: {username: \"42\", password_file: " + token.path() + "}\n"),
        "t.yaml");
    CHECK(c.exporters[0].auth.enabled);
    CHECK(c.exporters[0].auth.username == "42");
    CHECK(c.exporters[0].auth.password == "  file secret");
    CHECK(c.exporters[0].auth.password_source == "file " + token.path());
    CHECK_THAT(describe(c), Contains("password: <redacted, from file " + token.path() + ">"));
    CHECK_THAT(describe(c), !Contains("file secret"));
  }
  SECTION("an empty password_file is an error naming the path only") {
    TempFile token(" \n");
    CHECK(
        error_of(otlp_exporter("    auth: {username: u, password_file: " + token.path() + "}\n")) ==
        "t.yaml:5:40: exporters.up.auth.password_file: " + token.path() + " is empty");
  }
  SECTION("a numeric username stays a string") {
    const Config c = load_string(
        otlp_exporter("    auth: {username: 0123456, password_env: SR_TEST_PW}\n"), "t.yaml");
    CHECK(c.exporters[0].auth.username == "0123456");
    CHECK(c.exporters[0].auth.password == "pw-from-env");
  }
}

TEST_CASE("header rules") {
  EnvVar token("SR_TEST_HDR", "hdr-secret-value");
  const Config c = load_string(
      otlp_exporter("    headers:\n      Authorization: \"Bearer ${SR_TEST_HDR}\"\n      X-Empty: "
                    "\"\"\n"),
      "t.yaml");
  REQUIRE(c.exporters[0].headers.size() == 2);
  CHECK(c.exporters[0].headers[0].second == "Bearer hdr-secret-value");
  CHECK(c.exporters[0].headers[1].second.empty());
  CHECK_THAT(describe(c), Contains("      Authorization: <redacted>\n"));
  CHECK_THAT(describe(c), !Contains("hdr-secret-value"));

  CHECK(error_of(otlp_exporter("    headers: {\"Bad Name\": v}\n")) ==
        "t.yaml:5:15: exporters.up.headers.Bad Name: is not a valid HTTP header name");
  CHECK_THAT(error_of(otlp_exporter("    headers: {\"X:Y\": v}\n")),
             StartsWith("t.yaml:5:15: exporters.up.headers.X:Y: is not a valid HTTP header"));
  const std::string crlf =
      error_of(otlp_exporter("    headers: {X-A: \"hdr-secret-value\\r\\nEvil: 1\"}\n"));
  CHECK(crlf ==
        "t.yaml:5:20: exporters.up.headers.X-A: the value must not contain CR, LF or NUL "
        "characters");
  CHECK_THAT(error_of(otlp_exporter("    headers: {X-A: \"a\\nb\"}\n")), Contains("CR, LF"));
  CHECK_THAT(error_of(otlp_exporter("    headers: {Content-Type: text/plain}\n")),
             StartsWith("t.yaml:5:15: exporters.up.headers.Content-Type: is set by spanrelay"));
  CHECK_THAT(error_of(otlp_exporter("    headers: {HOST: x}\n")), Contains("is set by spanrelay"));
  CHECK_THAT(error_of(otlp_exporter("    headers: {X-A: 1, x-a: 2}\n")),
             StartsWith("t.yaml:5:23: exporters.up.headers.x-a: duplicate header"));
  CHECK(error_of(otlp_exporter("    auth: {username: u, password_env: SR_TEST_HDR}\n"
                               "    headers: {authorization: x}\n")) ==
        "t.yaml:6:15: exporters.up.headers.authorization: conflicts with auth: (use one or the "
        "other)");
}

TEST_CASE("secrets never appear in errors or describe()") {
  EnvVar token("SR_TEST_SECRET", "TOP-SECRET-42");
  EnvVar nope("SR_TEST_NOPE", nullptr);
  const std::string base =
      "exporters:\n"
      "  up:\n"
      "    type: otlp_http\n"
      "    endpoint: https://h/otlp\n"
      "    auth: {username: u, password_env: SR_TEST_SECRET}\n"
      "    headers: {X-Key: \"${SR_TEST_SECRET}\", X-Literal: LITERAL-SECRET}\n";
  const Config c = load_string(base, "t.yaml");
  CHECK(c.exporters[0].auth.password == "TOP-SECRET-42");
  const std::string text = describe(c);
  CHECK_THAT(text, !Contains("TOP-SECRET-42"));
  CHECK_THAT(text, !Contains("LITERAL-SECRET"));
  CHECK_THAT(text, Contains("      X-Key: <redacted>\n      X-Literal: <redacted>\n"));

  for (const std::string& bad :
       {std::string("    max_in_flight: 0\n"), std::string("    retry: {enabled: maybe}\n"),
        std::string("    tls: {server_name: ${SR_TEST_NOPE}}\n")}) {
    const std::string message = error_of(base + bad);
    CHECK_THAT(message, StartsWith("t.yaml:7:"));
    CHECK_THAT(message, !Contains("TOP-SECRET-42"));
    CHECK_THAT(message, !Contains("LITERAL-SECRET"));
  }
  // A header value that cannot be used is reported without its text.
  const std::string header =
      error_of(otlp_exporter("    headers: {X-Key: \"${SR_TEST_SECRET}\\n\"}\n"));
  CHECK_THAT(header, Contains("exporters.up.headers.X-Key"));
  CHECK_THAT(header, !Contains("TOP-SECRET-42"));
  const std::string url = error_of(otlp_exporter("").replace(otlp_exporter("").find("http://"), 7,
                                                             "http://user:TOP-SECRET-42@"));
  CHECK_THAT(url, StartsWith("t.yaml:4:15: exporters.up.endpoint: the URL must not contain "
                             "credentials"));
  CHECK_THAT(url, !Contains("TOP-SECRET-42"));
}

TEST_CASE("${VAR} substitution happens in every scalar, before parsing") {
  EnvVar timeout("SR_TEST_T", "250ms");
  EnvVar unset("SR_TEST_UNSET", nullptr);
  EnvVar empty("SR_TEST_EMPTY", "");
  EnvVar url("SR_TEST_URL", "https://tempo.example.com:8443/base/");

  const Config c = load_string(
      "batch:\n  timeout: ${SR_TEST_T}\n"
      "shutdown_timeout: ${SR_TEST_UNSET:-3s}\n"
      "log: {level: \"${SR_TEST_EMPTY:-warn}\"}\n"
      "exporters:\n"
      "  up: {type: otlp_http, endpoint: \"${SR_TEST_URL}\"}\n"
      "  local: {type: file, path: \"./a$$b-${SR_TEST_T}-$x-${SR_TEST_EMPTY}.jsonl\"}\n",
      "t.yaml");
  CHECK(c.batch.timeout == 250ms);
  CHECK(c.shutdown_timeout == 3s);
  CHECK(c.log.level == "warn");
  CHECK(c.exporters[0].endpoint.host == "tempo.example.com");
  CHECK(c.exporters[0].endpoint.port == 8443);
  CHECK(c.exporters[0].endpoint.traces_target == "/base/v1/traces");
  CHECK(c.exporters[0].endpoint.text == "https://tempo.example.com:8443/base/");
  CHECK(c.exporters[1].path == "./a$b-250ms-$x-.jsonl");

  CHECK(error_of("batch:\n  timeout: ${SR_TEST_UNSET}\n" + kFileExporter) ==
        "t.yaml:2:12: batch.timeout: environment variable SR_TEST_UNSET is not set (use "
        "${SR_TEST_UNSET:-default} for a fallback)");
  CHECK_THAT(error_of("batch:\n  timeout: ${SR_TEST_EMPTY}\n" + kFileExporter),
             StartsWith("t.yaml:2:12: batch.timeout: an empty value is not a duration"));
  CHECK_THAT(error_of("exporters:\n  local: {type: file, path: \"./a${SR_TEST_T\"}\n"),
             StartsWith("t.yaml:2:29: exporters.local.path: unterminated ${ (write $$ for a "
                        "literal $)"));
  CHECK_THAT(error_of("exporters:\n  local: {type: file, path: \"${1X}\"}\n"),
             StartsWith("t.yaml:2:29: exporters.local.path: \"1X\" is not an environment "
                        "variable name"));
  EnvVar bad("SR_TEST_BAD", "10x");
  CHECK(error_of("batch:\n  timeout: ${SR_TEST_BAD}\n" + kFileExporter) ==
        "t.yaml:2:12: batch.timeout: \"10x\" is not a duration (use e.g. 5s, 250ms, 1m)");
}

TEST_CASE("${VAR} edges: empty defaults, braces and nested ${} in defaults, values never "
          "re-expanded") {
  EnvVar set("SR_TEST_SET", "v");
  EnvVar unset("SR_TEST_UNSET", nullptr);
  EnvVar unset2("SR_TEST_UNSET2", nullptr);
  EnvVar empty("SR_TEST_EMPTY", "");
  EnvVar dollar("SR_TEST_DOLLAR", "a$$b${SR_TEST_SET}c$d");
  const auto path = [](const std::string& value) {
    return load_string("exporters:\n  local: {type: file, path: \"./" + value + "\"}\n", "t.yaml")
        .exporters[0]
        .path;
  };
  // ${A:-}: empty when unset or empty; the value when set.
  CHECK(path("x${SR_TEST_UNSET:-}y") == "./xy");
  CHECK(path("x${SR_TEST_EMPTY:-}y") == "./xy");
  CHECK(path("x${SR_TEST_SET:-}y") == "./xvy");
  // A default with braces ends at the '}' matching its "${": nothing leaks when the variable
  // is set, the whole default comes out when it is not.
  CHECK(path("${SR_TEST_UNSET:-{a{b}c}}.z") == "./{a{b}c}.z");
  CHECK(path("${SR_TEST_SET:-{a{b}c}}.z") == "./v.z");
  CHECK(path("${SR_TEST_UNSET:-a}b}") == "./ab}");  // a lone '}' ends it, as in sh
  CHECK(path("${SR_TEST_UNSET:-$$}") == "./$");
  CHECK(path("${SR_TEST_UNSET:-$${x}}") == "./${x}");
  // A default may name another variable, expanded only when the default is used.
  CHECK(path("${SR_TEST_UNSET:-${SR_TEST_SET}}") == "./v");
  CHECK(path("${SR_TEST_UNSET:-${SR_TEST_UNSET2:-deep}}") == "./deep");
  CHECK(path("${SR_TEST_SET:-${SR_TEST_UNSET2}}") == "./v");
  CHECK(error_of("exporters:\n  local: {type: file, path: \"${SR_TEST_UNSET:-${SR_TEST_UNSET2}}\"}"
                 "\n") ==
        "t.yaml:2:29: exporters.local.path: environment variable SR_TEST_UNSET2 is not set (use "
        "${SR_TEST_UNSET2:-default} for a fallback)");
  // A value holding '$', "$$" or "${...}" is used as it is, never expanded again, also when it
  // comes in through a default.
  CHECK(path("${SR_TEST_DOLLAR}") == "./a$$b${SR_TEST_SET}c$d");
  CHECK(path("${env:SR_TEST_DOLLAR}") == "./a$$b${SR_TEST_SET}c$d");
  CHECK(path("${SR_TEST_UNSET:-${SR_TEST_DOLLAR}}") == "./a$$b${SR_TEST_SET}c$d");
  // An unbalanced '{' in a default leaves the "${" unterminated.
  CHECK_THAT(error_of("exporters:\n  local: {type: file, path: \"${SR_TEST_UNSET:-{x}\"}\n"),
             StartsWith("t.yaml:2:29: exporters.local.path: unterminated ${"));
}

TEST_CASE("tls.ca_file must be readable") {
  CHECK(error_of(otlp_exporter("    tls: {ca_file: /nonexistent/ca.pem}\n")) ==
        "t.yaml:5:20: exporters.up.tls.ca_file: cannot read /nonexistent/ca.pem: No such file or "
        "directory");
  CHECK(load_string(otlp_exporter("    tls: {ca_file: \"\"}\n"), "t.yaml")
            .exporters[0]
            .tls.ca_file.empty());
}

TEST_CASE("the sidecar example loads with Grafana Cloud settings from the environment") {
  EnvVar endpoint("GRAFANA_CLOUD_OTLP_ENDPOINT",
                  "https://otlp-gateway-prod-us-east-0.grafana.net/otlp");
  EnvVar instance("GRAFANA_CLOUD_INSTANCE_ID", "424242");
  EnvVar token("GRAFANA_CLOUD_TOKEN", "glc_sidecar_secret");
  const Config c =
      load_file(std::string(SPANRELAY_SOURCE_DIR) + "/config/examples/sidecar.yaml");
  CHECK(c.receivers.http.endpoint.host == "0.0.0.0");
  CHECK(c.receivers.grpc.enabled);
  CHECK(c.receivers.grpc.endpoint.port == 4317);
  REQUIRE(c.exporters.size() == 1);
  CHECK(c.exporters[0].endpoint.traces_target == "/otlp/v1/traces");
  CHECK(c.exporters[0].auth.username == "424242");
  CHECK(c.log.json);
  CHECK(describe(c).find("glc_sidecar_secret") == std::string::npos);
}

TEST_CASE("spool: defaults, every key, and errors that name the key") {
  const Config none = load_string(kFileExporter, "t.yaml");
  CHECK_FALSE(none.spool.enabled);

  const Config minimal = load_string("spool: {path: /var/lib/spanrelay}\n" + kFileExporter,
                                     "t.yaml");
  CHECK(minimal.spool.enabled);
  CHECK(minimal.spool.path == "/var/lib/spanrelay");
  CHECK(minimal.spool.max_bytes == GiB);
  CHECK(minimal.spool.fsync == SpoolFsync::interval);
  CHECK(minimal.spool.fsync_interval == 1s);
  CHECK(minimal.spool.on_full == SpoolOnFull::drop_oldest);
  CHECK(minimal.spool.replay == SpoolReplay::oldest_first);
  CHECK(minimal.spool.max_age == 0s);

  const Config full = load_string(
      "spool:\n  path: /s\n  max_bytes: 2GiB\n  fsync: always\n  fsync_interval: 250ms\n"
      "  on_full: reject\n  replay: newest_first\n  max_age: 1h\n" + kFileExporter,
      "t.yaml");
  CHECK(full.spool.max_bytes == 2 * GiB);
  CHECK(full.spool.fsync == SpoolFsync::always);
  CHECK(full.spool.fsync_interval == 250ms);
  CHECK(full.spool.on_full == SpoolOnFull::reject);
  CHECK(full.spool.replay == SpoolReplay::newest_first);
  CHECK(full.spool.max_age == 1h);
  CHECK(describe(full).find("fsync: always") != std::string::npos);

  CHECK_THAT(error_of("spool: {max_bytes: 1GiB}\n" + kFileExporter),
             StartsWith("t.yaml:1:") && Contains("spool.path: is required"));
  CHECK(error_of("spool: {path: /s, fsync: sometimes}\n" + kFileExporter) ==
        "t.yaml:1:26: spool.fsync: \"sometimes\" is not one of: always, interval, never");
  CHECK(error_of("spool: {path: /s, on_full: block}\n" + kFileExporter) ==
        "t.yaml:1:28: spool.on_full: \"block\" is not one of: drop_oldest, reject");
  CHECK(error_of("spool: {path: /s, max_bytes: 10KiB}\n" + kFileExporter).starts_with(
      "t.yaml:1:30: spool.max_bytes: 10KiB is too small"));
  CHECK(error_of("spool: {path: /s, replay: random}\n" + kFileExporter).starts_with(
      "t.yaml:1:27: spool.replay:"));
}

// ---- issue 9, item 5: config edges that passed validation and failed at start, or misled ----

TEST_CASE("otlp_grpc refuses tls.insecure_skip_verify at validation, naming the key") {
  const std::string grpc =
      "exporters:\n"
      "  tempo:\n"
      "    type: otlp_grpc\n"
      "    endpoint: https://tempo.example.com:4317\n";
  CHECK(error_of(grpc + "    tls: {insecure_skip_verify: true}\n") ==
        "t.yaml:5:33: exporters.tempo.tls.insecure_skip_verify: tls.insecure_skip_verify is not "
        "supported by otlp_grpc: use tls.ca_file with the upstream's CA, or otlp_http");
  // Also over http:// (where it would do nothing): the key is not supported by the type.
  CHECK_THAT(error_of("exporters:\n  tempo:\n    type: otlp_grpc\n"
                      "    endpoint: http://127.0.0.1:4317\n"
                      "    tls:\n      insecure_skip_verify: true\n"),
             StartsWith("t.yaml:6:29: exporters.tempo.tls.insecure_skip_verify: "));
  // false is the default and fine; otlp_http still supports it.
  CHECK_FALSE(load_string(grpc + "    tls: {insecure_skip_verify: false}\n", "t.yaml")
                  .exporters[0]
                  .tls.insecure_skip_verify);
  CHECK(load_string(otlp_exporter("    tls: {insecure_skip_verify: true}\n"), "t.yaml")
            .exporters[0]
            .tls.insecure_skip_verify);
}

TEST_CASE("a listen endpoint written as a URL says to drop the scheme") {
  CHECK(endpoint_error("http://127.0.0.1:4318") ==
        "\"http://127.0.0.1:4318\": write host:port without a scheme, e.g. 127.0.0.1:4318 (or "
        "unix:/path)");
  CHECK(endpoint_error("https://0.0.0.0:4318/v1/traces") ==
        "\"https://0.0.0.0:4318/v1/traces\": write host:port without a scheme, e.g. "
        "0.0.0.0:4318 (or unix:/path)");
  CHECK(endpoint_error("grpc://[::1]:4317") ==
        "\"grpc://[::1]:4317\": write host:port without a scheme, e.g. [::1]:4317 (or "
        "unix:/path)");
  // Nothing usable inside: a generic example.
  CHECK(endpoint_error("http://localhost") ==
        "\"http://localhost\": write host:port without a scheme, e.g. 127.0.0.1:4318 (or "
        "unix:/path)");
  CHECK_THAT(endpoint_error("http://127.0.0.1:4318"), !Contains("IPv6"));
  // A real IPv6 address without brackets still gets the bracket advice.
  CHECK_THAT(endpoint_error("::1:4318"), Contains("an IPv6 address needs brackets"));
  // unix:// is a unix socket path ("//run/x.sock" is /run/x.sock).
  CHECK(parse_listen_endpoint("unix:///run/x.sock").unix_path == "///run/x.sock");

  CHECK(error_of("receivers:\n  http:\n    endpoint: \"http://127.0.0.1:4318\"\n" +
                 kFileExporter) ==
        "t.yaml:3:15: receivers.http.endpoint: \"http://127.0.0.1:4318\": write host:port "
        "without a scheme, e.g. 127.0.0.1:4318 (or unix:/path)");
  CHECK_THAT(error_of("receivers:\n  grpc:\n    endpoint: grpc://0.0.0.0:4317\n" + kFileExporter),
             StartsWith("t.yaml:3:15: receivers.grpc.endpoint: \"grpc://0.0.0.0:4317\": write "
                        "host:port without a scheme, e.g. 0.0.0.0:4317"));
  CHECK_THAT(error_of("admin:\n  endpoint: https://127.0.0.1:13133\n" + kFileExporter),
             StartsWith("t.yaml:2:13: admin.endpoint: ") && Contains("without a scheme"));
}

TEST_CASE("${env:VAR} and ${env:VAR:-default}, as in the OpenTelemetry Collector") {
  EnvVar t("SR_TEST_T", "2s");
  EnvVar url("SR_TEST_URL", "https://h.example/otlp");
  EnvVar empty("SR_TEST_EMPTY", "");
  EnvVar unset("SR_TEST_UNSET", nullptr);
  const Config c = load_string(
      "batch:\n  timeout: ${env:SR_TEST_T}\n"
      "shutdown_timeout: ${env:SR_TEST_UNSET:-3s}\n"
      "log: {level: \"${env:SR_TEST_EMPTY:-warn}\"}\n"
      "exporters:\n"
      "  up: {type: otlp_http, endpoint: \"${env:SR_TEST_URL}\"}\n"
      "  local: {type: file, path: \"./x-${env:SR_TEST_T}-${SR_TEST_T}-$${env:SR_TEST_T}\"}\n",
      "t.yaml");
  CHECK(c.batch.timeout == 2s);
  CHECK(c.shutdown_timeout == 3s);
  CHECK(c.log.level == "warn");
  CHECK(c.exporters[0].endpoint.host == "h.example");
  CHECK(c.exporters[1].path == "./x-2s-2s-${env:SR_TEST_T}");

  CHECK(error_of("batch:\n  timeout: ${env:SR_TEST_UNSET}\n" + kFileExporter) ==
        "t.yaml:2:12: batch.timeout: environment variable SR_TEST_UNSET is not set (use "
        "${SR_TEST_UNSET:-default} for a fallback)");
  CHECK_THAT(error_of("batch:\n  timeout: ${env:}\n" + kFileExporter),
             StartsWith("t.yaml:2:12: batch.timeout: \"\" is not an environment variable name"));
  CHECK_THAT(error_of("batch:\n  timeout: ${env:1X}\n" + kFileExporter),
             Contains("\"1X\" is not an environment variable name"));
  // Other Collector providers are named as unsupported.
  CHECK(error_of("batch:\n  timeout: \"${file:/etc/t}\"\n" + kFileExporter) ==
        "t.yaml:2:12: batch.timeout: ${file:...} is not supported (only ${VAR} and ${env:VAR})");
  // Secrets work the same way in headers.
  EnvVar secret("SR_TEST_SECRET", "TOP-SECRET-42");
  const Config h = load_string(
      otlp_exporter("    headers: {Authorization: \"Bearer ${env:SR_TEST_SECRET}\"}\n"), "t.yaml");
  CHECK(h.exporters[0].headers[0].second == "Bearer TOP-SECRET-42");
}

namespace {

// A production-like file whose secrets are not set in this environment.
std::string production_yaml(const std::string& token_file) {
  return "exporters:\n"
         "  grafana:\n"
         "    type: otlp_http\n"
         "    endpoint: https://otlp-gateway-prod-eu-west-2.grafana.net/otlp\n"
         "    auth: {username: \"123456\", password_env: SR_TEST_PROD_TOKEN}\n"
         "    headers: {X-Scope-OrgID: tenant-1, X-Api-Key: \"${SR_TEST_PROD_KEY}\"}\n"
         "  backup:\n"
         "    type: otlp_grpc\n"
         "    endpoint: https://tempo.example.com:4317\n"
         "    auth: {username: u, password_file: \"" +
         token_file +
         "\"}\n"
         "  systemd:\n"
         "    type: otlp_http\n"
         "    endpoint: https://h/otlp\n"
         "    auth: {username: u, password_file: \"${SR_TEST_CREDS_DIR}/token\"}\n";
}

}  // namespace

TEST_CASE("check_secrets = false: missing secrets are reported as not checked, the rest is "
          "validated") {
  EnvVar token("SR_TEST_PROD_TOKEN", nullptr);
  EnvVar key("SR_TEST_PROD_KEY", nullptr);
  EnvVar creds("SR_TEST_CREDS_DIR", nullptr);
  const std::string missing_file = "/nonexistent/spanrelay-test/token";
  const std::string yaml = production_yaml(missing_file);

  // A plain load fails on the first missing secret, with its position.
  CHECK(error_of(yaml) ==
        "t.yaml:5:46: exporters.grafana.auth.password_env: environment variable "
        "SR_TEST_PROD_TOKEN is not set or is empty");

  const LoadOptions no_secrets{.check_secrets = false};
  const Config c = load_string(yaml, "t.yaml", no_secrets);
  CHECK(c.secrets_unchecked);
  REQUIRE(c.exporters.size() == 3);
  CHECK(c.exporters[0].auth.password_unchecked);
  CHECK(c.exporters[0].auth.password.empty());
  CHECK(c.exporters[0].auth.password_source == "env SR_TEST_PROD_TOKEN");
  CHECK(c.exporters[0].unchecked_headers == std::vector<std::string>{"X-Api-Key"});
  CHECK(c.exporters[1].auth.password_unchecked);
  CHECK(c.exporters[1].auth.password_source == "file " + missing_file);
  CHECK(c.exporters[2].auth.password_unchecked);
  CHECK(c.exporters[2].auth.password_source == "file ${SR_TEST_CREDS_DIR}/token");

  const std::string text = describe(c);
  CHECK_THAT(text, Contains("secrets: some not present here, not checked (--no-secrets)\n"));
  CHECK_THAT(text, Contains("auth: username: 123456, password: <not checked (--no-secrets), "
                            "from env SR_TEST_PROD_TOKEN>\n"));
  CHECK_THAT(text, Contains("      X-Scope-OrgID: <redacted>\n"
                            "      X-Api-Key: <not checked (--no-secrets)>\n"));
  CHECK_THAT(text, Contains("password: <not checked (--no-secrets), from file " + missing_file));
  CHECK_THAT(text, Contains("from file ${SR_TEST_CREDS_DIR}/token>"));

  // Everything that is not a secret's presence is still checked.
  try {
    load_string(yaml + "    max_in_flight: 0\n", "t.yaml", no_secrets);
    FAIL("max_in_flight: 0 was accepted with check_secrets = false");
  } catch (const ConfigError& e) {
    CHECK_THAT(e.what(),
               StartsWith("t.yaml:15:20: exporters.systemd.max_in_flight: 0 is out of range"));
  }
  const auto no_secrets_error = [&](const std::string& bad) -> std::string {
    try {
      load_string(bad, "t.yaml", no_secrets);
    } catch (const ConfigError& e) {
      return e.what();
    }
    FAIL("expected a ConfigError with check_secrets = false for:\n" << bad);
    return {};
  };
  // A ${VAR} outside a secret position, a bad variable name, a malformed header value.
  CHECK_THAT(no_secrets_error("batch: {timeout: \"${SR_TEST_PROD_KEY}\"}\n" + kFileExporter),
             StartsWith("t.yaml:1:18: batch.timeout: environment variable SR_TEST_PROD_KEY is "
                        "not set"));
  CHECK_THAT(no_secrets_error(otlp_exporter("    auth: {username: u, password_env: 1BAD}\n")),
             Contains("\"1BAD\" is not an environment variable name"));
  CHECK_THAT(no_secrets_error(otlp_exporter("    auth: {username: u}\n")),
             Contains("needs password_env"));
  CHECK_THAT(no_secrets_error(otlp_exporter("    headers: {X-A: \"${SR_TEST_PROD_KEY\"}\n")),
             Contains("unterminated ${"));
  CHECK_THAT(no_secrets_error(otlp_exporter("    auth: {username: u, password_file: \"\"}\n")),
             Contains("password_file: must not be empty"));

  // Present secrets are read and checked as usual.
  EnvVar set_token("SR_TEST_PROD_TOKEN", "tok");
  EnvVar set_key("SR_TEST_PROD_KEY", "key");
  EnvVar set_creds("SR_TEST_CREDS_DIR", "/nonexistent");
  TempFile file("file-token\n");
  const Config present = load_string(production_yaml(file.path()), "t.yaml", no_secrets);
  CHECK(present.exporters[0].auth.password == "tok");
  CHECK_FALSE(present.exporters[0].auth.password_unchecked);
  CHECK(present.exporters[0].unchecked_headers.empty());
  CHECK(present.exporters[1].auth.password == "file-token");
  CHECK_FALSE(present.exporters[1].auth.password_unchecked);
  CHECK(present.exporters[2].auth.password_unchecked);  // /nonexistent/token
  CHECK(present.secrets_unchecked);
  CHECK_THAT(describe(present), !Contains("tok\n") && !Contains("file-token"));
  TempFile empty("\n");
  const Config empty_file = load_string(
      otlp_exporter("    auth: {username: u, password_file: \"" + empty.path() + "\"}\n"),
      "t.yaml", no_secrets);
  CHECK(empty_file.exporters[0].auth.password_unchecked);
  // Nothing missing: nothing said.
  const Config all = load_string(kFileExporter, "t.yaml", no_secrets);
  CHECK_FALSE(all.secrets_unchecked);
  CHECK_THAT(describe(all), !Contains("not checked"));
}

TEST_CASE("suggest_no_secrets: a missing secret as the only error suggests --no-secrets") {
  EnvVar token("SR_TEST_PROD_TOKEN", nullptr);
  EnvVar key("SR_TEST_PROD_KEY", nullptr);
  EnvVar creds("SR_TEST_CREDS_DIR", nullptr);
  const std::string yaml = production_yaml("/nonexistent/spanrelay-test/token");
  const LoadOptions validate{.suggest_no_secrets = true};
  const auto error = [&](const std::string& text) -> std::string {
    try {
      load_string(text, "t.yaml", validate);
    } catch (const ConfigError& e) {
      return e.what();
    }
    FAIL("expected a ConfigError for:\n" << text);
    return {};
  };
  CHECK(error(yaml) ==
        "t.yaml:5:46: exporters.grafana.auth.password_env: environment variable "
        "SR_TEST_PROD_TOKEN is not set or is empty (everything else is valid; to validate a "
        "file whose secrets are set only where it runs, use --validate --no-secrets)");
  // The header's ${VAR} and the password_file are secrets too.
  EnvVar set_token("SR_TEST_PROD_TOKEN", "tok");
  CHECK_THAT(error(yaml), StartsWith("t.yaml:6:51: exporters.grafana.headers.X-Api-Key: "
                                     "environment variable SR_TEST_PROD_KEY is not set") &&
                              Contains("use --validate --no-secrets"));
  EnvVar set_key("SR_TEST_PROD_KEY", "k");
  CHECK_THAT(error(yaml), StartsWith("t.yaml:10:40: exporters.backup.auth.password_file: cannot "
                                     "read /nonexistent/spanrelay-test/token: ") &&
                              Contains("use --validate --no-secrets"));
  // Another error as well: no suggestion, since --no-secrets would not make it pass.
  EnvVar unset_token("SR_TEST_PROD_TOKEN", nullptr);
  const std::string both = error(yaml + "    max_in_flight: 0\n");
  CHECK_THAT(both, StartsWith("t.yaml:5:46: exporters.grafana.auth.password_env: "));
  CHECK_THAT(both, !Contains("--no-secrets"));
  // Errors that are not about secrets never suggest it.
  CHECK_THAT(error("batch: {timeout: \"${SR_TEST_PROD_KEY}x\"}\n" + kFileExporter),
             !Contains("--no-secrets"));
  // Without the option (start, reload): no suggestion.
  CHECK_THAT(error_of(yaml), !Contains("--no-secrets"));
}

TEST_CASE("YAML merge keys (<<) merge, explicit keys win, in nested positions and at the top") {
  const Config c = load_string(
      "exporters:\n"
      "  primary: &upstream\n"
      "    type: otlp_http\n"
      "    endpoint: https://a.example/otlp\n"
      "    timeout: 3s\n"
      "    retry: &retry {max_elapsed: 1m, initial_interval: 2s}\n"
      "  secondary:\n"
      "    <<: *upstream\n"
      "    endpoint: https://b.example/otlp\n"
      "    retry:\n"
      "      <<: *retry\n"
      "      initial_interval: 500ms\n"
      "  third:\n"
      "    endpoint: https://c.example/otlp\n"
      "    <<: [{timeout: 7s}, *upstream]\n"
      "<<: {shutdown_timeout: 4s, batch: {timeout: 250ms}}\n"
      "batch: {max_spans: 10}\n",
      "t.yaml");
  REQUIRE(c.exporters.size() == 3);
  const Exporter& b = c.exporters[1];
  CHECK(b.name == "secondary");
  CHECK(b.type == ExporterType::otlp_http);
  CHECK(b.endpoint.host == "b.example");  // written in the mapping: wins over the merged one
  CHECK(b.timeout == 3s);                 // merged
  CHECK(b.retry.max_elapsed == 1min);     // nested merge
  CHECK(b.retry.initial_interval == 500ms);
  const Exporter& t = c.exporters[2];
  CHECK(t.endpoint.host == "c.example");
  CHECK(t.timeout == 7s);  // the earlier map in the list wins
  CHECK(t.retry.max_elapsed == 1min);
  CHECK(c.shutdown_timeout == 4s);  // merged at the top level
  CHECK(c.batch.max_spans == 10);   // explicit batch replaces the merged one as a whole
  CHECK(c.batch.timeout == 1s);

  // A merged key is validated like a written one, at the position where it is written.
  CHECK(error_of("exporters:\n"
                 "  a: &a {type: file, path: x, colour: red}\n"
                 "  b: {<<: *a, path: y}\n") ==
        "t.yaml:2:31: exporters.a.colour: unknown key (known: type, path, max_queue_bytes)");
  CHECK_THAT(error_of("exporters:\n"
                      "  a: &a {type: otlp_http, endpoint: http://h, max_in_flight: 0}\n"
                      "  b: {type: file, path: y}\n"
                      "  c: {<<: *a}\n"),
             StartsWith("t.yaml:2:62: exporters.a.max_in_flight: "));
  CHECK_THAT(error_of("x: &x {colour: red}\n<<: *x\n" + kFileExporter),
             StartsWith("t.yaml:1:1: x: unknown key"));
  CHECK_THAT(error_of("x: &x {shutdown_timeout: 0s}\n" + kFileExporter),
             StartsWith("t.yaml:1:1: x: unknown key"));
  // A merged key that is a duplicate of a written one is not an error (the written one wins);
  // a key written twice still is.
  CHECK_THAT(error_of("exporters:\n  a: {type: file, path: x, path: y}\n"),
             Contains("exporters.a.path: duplicate key"));

  // Values that cannot be merged.
  CHECK(error_of("exporters:\n  a: {type: file, path: x, <<: 5}\n") ==
        "t.yaml:2:32: exporters.a.<<: the value of a YAML merge key (<<) must be a map, an alias "
        "of one (*name) or a list of them");
  CHECK_THAT(error_of("exporters:\n  a: {type: file, path: x, <<: [{}, 5]}\n"),
             StartsWith("t.yaml:2:37: exporters.a.<<: the value of a YAML merge key"));
  CHECK_THAT(error_of("<<:\n" + kFileExporter), StartsWith("t.yaml:1:") &&
                                                    Contains("<<: the value of a YAML merge key"));
  // A quoted "<<" is an ordinary key, so an unknown one.
  CHECK_THAT(error_of("exporters:\n  a: {type: file, path: x, \"<<\": {}}\n"),
             StartsWith("t.yaml:2:28: exporters.a.<<: unknown key"));
  // An anchor merged into itself, and merges that multiply, end with an error.
  CHECK_THAT(error_of("exporters:\n  a: &a {type: file, path: x, <<: *a}\n"),
             Contains("YAML merge keys (<<) nested too deeply"));
  std::string bomb = "exporters:\n  l0: &l0 {type: file, path: x}\n";
  for (int i = 1; i < 12; ++i) {
    const std::string prev = "*l" + std::to_string(i - 1);
    bomb += "  l" + std::to_string(i) + ": &l" + std::to_string(i) + " {<<: [" + prev + ", " +
            prev + ", " + prev + ", " + prev + "]}\n";
  }
  CHECK_THAT(error_of(bomb), Contains("YAML merge keys (<<) bring in too many keys"));
}

// ---- processors ----

TEST_CASE("processors: the issue's example loads with every key as written") {
  setenv("SPANRELAY_TEST_DEPLOY_ENV", "staging", 1);
  const Config c = load_string(R"(
processors:
  - type: attributes
    actions:
      - {scope: resource, key: deployment.environment.name, action: upsert, value: "${SPANRELAY_TEST_DEPLOY_ENV:-prod}"}
      - {scope: span, key: http.request.header.cookie, action: delete}
      - {scope: event, key: old, action: rename, to: new}
      - {key: retries, action: insert, value: 3}
      - {key: ratio, action: insert, value: 0.5}
      - {key: sampled, action: insert, value: true}
      - {key: quoted, action: insert, value: "42"}
  - type: redact
    keys: [db.statement, db.query.text]
    mode: sql_literals
  - type: redact
    keys: url.query
    mode: truncate
    max_bytes: 64
    delete_values_matching: ['\d{16}']
  - type: filter
    drop_spans:
      - {kind: server, attributes: {url.path: [/healthz, /readyz, /metrics]}}
      - {reason: errors_only, status: [error, unset], name: GET /ping, resource: {service.name: probe}}
  - type: probabilistic_sampler
    percentage: 20
)" + kFileExporter, "t.yaml");
  using spanrelay::processors::AttributeAction;
  namespace processors = spanrelay::processors;
  using spanrelay::processors::ProcessorOptions;
  REQUIRE(c.processors.size() == 5);
  const auto& attrs = c.processors[0];
  CHECK(attrs.type == ProcessorOptions::Type::kAttributes);
  CHECK(attrs.name == "attributes");
  REQUIRE(attrs.attributes.actions.size() == 7);
  const auto& upsert = attrs.attributes.actions[0];
  CHECK(upsert.scope == processors::Scope::kResource);
  CHECK(upsert.action == AttributeAction::Kind::kUpsert);
  CHECK(std::get<std::string>(upsert.value) == "staging");
  CHECK(attrs.attributes.actions[1].action == AttributeAction::Kind::kDelete);
  CHECK(attrs.attributes.actions[2].to == "new");
  CHECK(attrs.attributes.actions[2].scope == processors::Scope::kEvent);
  CHECK(attrs.attributes.actions[3].scope == processors::Scope::kSpan);  // the default
  CHECK(std::get<std::int64_t>(attrs.attributes.actions[3].value) == 3);
  CHECK(std::get<double>(attrs.attributes.actions[4].value) == 0.5);
  CHECK(std::get<bool>(attrs.attributes.actions[5].value) == true);
  CHECK(std::get<std::string>(attrs.attributes.actions[6].value) == "42");
  CHECK(c.processors[1].name == "redact");
  CHECK(c.processors[1].redact.keys == std::vector<std::string>{"db.statement", "db.query.text"});
  CHECK(c.processors[2].name == "redact/2");  // a second of the same type
  CHECK(c.processors[2].redact.keys == std::vector<std::string>{"url.query"});
  CHECK(c.processors[2].redact.max_bytes == 64);
  CHECK(c.processors[2].redact.delete_values_matching == std::vector<std::string>{"\\d{16}"});
  const auto& rules = c.processors[3].filter.drop_spans;
  REQUIRE(rules.size() == 2);
  CHECK(rules[0].kinds == std::vector<std::uint32_t>{2});
  REQUIRE(rules[0].attributes.size() == 1);
  CHECK(rules[0].attributes[0].second ==
        std::vector<std::string>{"/healthz", "/readyz", "/metrics"});
  CHECK(rules[1].name == "errors_only");
  CHECK(rules[1].statuses == std::vector<std::uint32_t>{2, 0});
  CHECK(rules[1].span_names == std::vector<std::string>{"GET /ping"});
  CHECK(c.processors[4].sampler.percentage == 20.0f);
  const std::string described = describe(c);
  CHECK(described.find("processors:") != std::string::npos);
  CHECK(described.find("- probabilistic_sampler: 20% of traces, proportional") != std::string::npos);
  unsetenv("SPANRELAY_TEST_DEPLOY_ENV");
}

TEST_CASE("processors: mistakes are errors with the file, line and key") {
  const auto error = [](const std::string& processors) {
    return error_of("processors:\n" + processors + kFileExporter);
  };
  CHECK(error("  - type: bogus\n") ==
        "t.yaml:2:11: processors[0].type: \"bogus\" is not one of: attributes, redact, filter, "
        "probabilistic_sampler");
  CHECK(error("  - {type: attributes, actions: [{key: k, action: upsert}]}\n").find(
            "processors[0].actions[0].value: is required") != std::string::npos);
  CHECK(error("  - {type: attributes, actions: [{key: k, action: delete, value: 1}]}\n").find(
            "processors[0].actions[0].value: only insert, update and upsert write a value") !=
        std::string::npos);
  CHECK(error("  - {type: attributes, actions: [{key: k, action: rename}]}\n").find(
            "actions[0].to: is required") != std::string::npos);
  CHECK(error("  - {type: redact, delete_keys_matching: ['(unclosed']}\n").find(
            "processors[0]: delete_keys_matching: invalid regular expression") != std::string::npos);
  CHECK(error("  - {type: redact, mode: truncate}\n").find("processors[0].max_bytes: is required") !=
        std::string::npos);
  CHECK(error("  - {type: filter, drop_spans: [{kind: sever}]}\n").find(
            "drop_spans[0].kind: \"sever\" is not one of") != std::string::npos);
  CHECK(error("  - {type: filter, drop_spans: [{reason: x}]}\n").find(
            "drop_spans[0]: a rule needs at least one condition") != std::string::npos);
  CHECK(error("  - {type: probabilistic_sampler, percentage: 120}\n").find(
            "processors[0].percentage: \"120\" is not a number from 0 to 100") != std::string::npos);
  CHECK(error("  - {type: probabilistic_sampler}\n").find("percentage: is required") !=
        std::string::npos);
  CHECK(error("  - {type: filter, drop_spans: [{kind: server}], extra: 1}\n").find(
            "processors[0].extra: unknown key") != std::string::npos);
  CHECK(error_of("processors: {type: redact}\n" + kFileExporter).find(
            "processors: expected a list") != std::string::npos);
}
