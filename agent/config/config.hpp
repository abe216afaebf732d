#pragma once
// Typed configuration. YAML is read in one place (config.cpp); every component receives one of
// these option structs and never sees a YAML node. Defaults live here, in-class.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <map>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "processors/options.hpp"

namespace spanrelay::config {

using Duration = std::chrono::milliseconds;
using namespace std::chrono_literals;

constexpr std::size_t KiB = 1024;
constexpr std::size_t MiB = 1024 * KiB;
constexpr std::size_t GiB = 1024 * MiB;

// Thrown by the loader. what() is a complete message for a person, starting with
// "FILE:LINE:COLUMN: KEY.PATH: ..." wherever the YAML gives a position.
class ConfigError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// A listening address: "host:port", "[v6]:port", or "unix:/path/to.sock".
struct ListenEndpoint {
  std::string host;        // empty when unix_path is set
  std::uint16_t port = 0;  // 0 = let the kernel choose
  std::string unix_path;   // non-empty for a Unix domain socket
  std::string text;        // as written, for logs

  bool operator==(const ListenEndpoint&) const = default;
};

struct HttpReceiver {
  bool enabled = false;  // true when receivers.http is present (or receivers is absent)
  ListenEndpoint endpoint{"127.0.0.1", 4318, "", "127.0.0.1:4318"};
  std::size_t max_request_bytes = 16 * MiB;  // after decompression
  std::size_t max_connections = 1024;
  std::size_t max_header_bytes = 16 * KiB;
  Duration read_timeout = 30s;   // whole request (headers + body) must arrive within this
  Duration idle_timeout = 120s;  // keep-alive connection with no request

  bool operator==(const HttpReceiver&) const = default;
};

struct GrpcKeepalive {
  Duration time = 2h;      // ping a connection after this long without activity
  Duration timeout = 20s;  // close it when the ping is not answered within this

  bool operator==(const GrpcKeepalive&) const = default;
};

struct GrpcReceiver {
  bool enabled = false;  // true when receivers.grpc is present
  ListenEndpoint endpoint{"127.0.0.1", 4317, "", "127.0.0.1:4317"};
  std::size_t max_message_bytes = 4 * MiB;  // one request message, after decompression
  std::size_t max_concurrent_streams = 100;  // per HTTP/2 connection
  GrpcKeepalive keepalive;

  bool operator==(const GrpcReceiver&) const = default;
};

struct Receivers {
  HttpReceiver http;
  GrpcReceiver grpc;

  bool operator==(const Receivers&) const = default;
};

struct Buffer {
  std::size_t max_bytes = 64 * MiB;  // memory budget: ring + batches + exports in flight
  std::size_t max_chunks = 65536;    // ring slots (one per accepted request)

  bool operator==(const Buffer&) const = default;
};

struct Batch {
  std::size_t max_spans = 8192;
  std::size_t max_bytes = 4 * MiB;  // uncompressed protobuf
  Duration timeout = 1s;

  bool operator==(const Batch&) const = default;
};

struct Retry {
  bool enabled = true;
  Duration initial_interval = 1s;
  Duration max_interval = 30s;
  Duration max_elapsed = 5min;

  bool operator==(const Retry&) const = default;
};

struct Tls {
  std::string ca_file;             // empty: the system trust store
  bool insecure_skip_verify = false;
  std::string server_name;         // SNI and verification name; empty: the endpoint host

  bool operator==(const Tls&) const = default;
};

struct Auth {
  bool enabled = false;
  std::string username;
  std::string password;         // the resolved secret: never log, print or put in errors
  std::string password_source;  // "env GRAFANA_CLOUD_TOKEN" or "file /path": safe to print
  // The password_file path after ${VAR} expansion (empty with password_env): the exporter
  // re-reads it when it changes (token rotation without a reload).
  std::string password_file;
  // --validate --no-secrets only: the secret is not present here (variable unset, file
  // unreadable or empty) and was not read; password is empty. describe() says "not checked".
  bool password_unchecked = false;

  bool operator==(const Auth&) const = default;
};

// A parsed http(s) URL of the upstream.
struct UpstreamUrl {
  bool tls = false;
  std::string host;
  std::uint16_t port = 0;
  std::string traces_target;  // request target, e.g. "/otlp/v1/traces"
  std::string text;           // as written

  bool operator==(const UpstreamUrl&) const = default;
};

enum class ExporterType { otlp_http, otlp_grpc, file };

struct Exporter {
  std::string name;  // key under exporters:
  ExporterType type = ExporterType::otlp_http;

  // otlp_http and otlp_grpc (for gRPC the URL has no path: http:// = plaintext, https:// = TLS)
  UpstreamUrl endpoint;
  bool gzip = true;  // compression: gzip | none
  Auth auth;
  std::vector<std::pair<std::string, std::string>> headers;  // values may be secret: redact
  // --validate --no-secrets only: headers whose value has an unset ${VAR} (value left empty).
  std::vector<std::string> unchecked_headers;
  Duration timeout = 10s;
  Retry retry;
  Tls tls;
  std::size_t max_in_flight = 4;  // concurrent requests (and connections) to the upstream
  // Batches waiting in this exporter's queue (not yet in flight). Past it the oldest batch is
  // dropped and counted, so a dead upstream cannot hold the memory the others need.
  // 0 = automatic: buffer.max_bytes divided by the number of exporters.
  std::size_t max_queue_bytes = 0;

  // file
  std::string path;

  bool operator==(const Exporter&) const = default;
};

struct Log {
  std::string level = "info";  // trace | debug | info | warn | error | off
  bool json = false;           // format: text | json

  bool operator==(const Log&) const = default;
};

struct Admin {
  bool enabled = false;  // true when admin is present
  ListenEndpoint endpoint{"127.0.0.1", 13133, "", "127.0.0.1:13133"};

  bool operator==(const Admin&) const = default;
};

// The disk spool (opt-in): each network exporter keeps its queue on disk under path/<name>/.
enum class SpoolFsync { always, interval, never };
enum class SpoolOnFull { drop_oldest, reject };
enum class SpoolReplay { oldest_first, newest_first };

struct Spool {
  bool enabled = false;  // true when spool is present
  std::string path;      // the spool directory (required)
  std::size_t max_bytes = GiB;  // per exporter: bound on its segment files
  SpoolFsync fsync = SpoolFsync::interval;
  Duration fsync_interval = 1s;
  SpoolOnFull on_full = SpoolOnFull::drop_oldest;
  SpoolReplay replay = SpoolReplay::oldest_first;
  Duration max_age = 0s;  // older records are dropped (counted); 0: keep until delivered

  bool operator==(const Spool&) const = default;
};

struct Config {
  std::string source;  // file name, or "<embedded default>"
  Receivers receivers;
  Buffer buffer;
  Batch batch;
  std::vector<Exporter> exporters;  // in file order; at least one
  Log log;
  Admin admin;
  Spool spool;
  // Applied in order to every accepted request before it is buffered or spooled.
  std::vector<processors::ProcessorOptions> processors;
  Duration shutdown_timeout = 10s;
  // Loaded with LoadOptions::check_secrets = false and at least one secret was not present:
  // fit for describe(), never for running.
  bool secrets_unchecked = false;
};

struct LoadOptions {
  // false (--validate --no-secrets): a secret that is not present in this environment is
  // reported as not checked instead of an error. Secrets are auth.password_env (variable
  // unset or empty), auth.password_file (unreadable or empty, or an unset ${VAR} in its path)
  // and an unset ${VAR} in a header value. Everything else is validated as usual.
  bool check_secrets = true;
  // --validate: when a missing secret is the only error, the message says so and suggests
  // --validate --no-secrets.
  bool suggest_no_secrets = false;
};

// Parses and validates; resolves ${VAR} / ${env:VAR} and secrets. Throws ConfigError.
Config load_file(const std::string& path, const LoadOptions& options = {});
Config load_string(std::string_view yaml, const std::string& source_name,
                   const LoadOptions& options = {});

// The embedded default configuration (config/spanrelay.yaml, compiled in).
std::string_view embedded_default();

// A human-readable dump for --validate, with every secret redacted.
std::string describe(const Config& config);

// Unit parsers, exposed for tests. Throw std::invalid_argument with a message for a person.
std::size_t parse_size(std::string_view text);   // "64MiB", "4MB", "1024"
Duration parse_duration(std::string_view text);  // "5s", "250ms", "1m30s", "2h"
// "127.0.0.1:4318", "[::1]:4318", "unix:/run/spanrelay.sock". Port 0 is allowed.
ListenEndpoint parse_listen_endpoint(std::string_view text);
// "https://host[:port]/path": no credentials, query or fragment; path + "/v1/traces".
UpstreamUrl parse_upstream_url(std::string_view text);

// Inverses of the parsers, for logs and describe(): "16MiB", "4MB", "1000B"; "1m30s", "250ms".
std::string format_size(std::size_t bytes);
// A host as it appears in a URL or address: IPv6 literals in brackets ("[::1]").
inline std::string url_host(const std::string& host) {
  return host.find(':') != std::string::npos ? "[" + host + "]" : host;
}
// "host:port" or "[v6]:port".
inline std::string host_port(const std::string& host, std::uint16_t port) {
  return url_host(host) + ":" + std::to_string(port);
}
std::string format_duration(Duration duration);

}  // namespace spanrelay::config
