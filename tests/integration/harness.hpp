#pragma once
// Runs the real spanrelay binary for the integration suite: temp dirs, free ports, the config
// file, the child process (killed by RAII whatever happens), an HTTP client with timeouts for
// the receiver and the admin endpoint, and a Prometheus text reader.

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <boost/beast/http/message.hpp>
#include <boost/beast/http/string_body.hpp>

#include "integration/otlp_data.hpp"

namespace it {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using Millis = std::chrono::milliseconds;
using Env = std::vector<std::pair<std::string, std::string>>;

// The exporter credentials every test config uses; the token must never show in any output.
inline constexpr std::string_view test_username = "123456";
inline constexpr std::string_view test_token = "glc_T0k3n-SECRET-9f8e7d6c5b4a";
std::string expected_authorization();  // "Basic base64(username:token)"
Env default_env();                     // TEST_TOKEN=<test_token>

// Polls pred every `poll` until it holds or timeout passes; returns its last value.
bool wait_until(const std::function<bool()>& pred, Millis timeout, Millis poll = 10ms);

// A fresh directory under $TMPDIR, removed with its content on destruction.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  std::string file(std::string_view name) const { return path_ + "/" + std::string(name); }
  void write(std::string_view name, std::string_view content) const;

 private:
  std::string path_;
};

std::string read_file(const std::string& path);

// A loopback TCP port that was free a moment ago (bound to 127.0.0.1:0, then closed).
std::uint16_t free_port();
// A free loopback port outside the kernel's ephemeral range, for an upstream that must come
// back on the same port later: an ephemeral port may meanwhile be taken as the local port of
// some client connection.
std::uint16_t stable_free_port();
bool port_accepts(std::uint16_t port);
// A listening endpoint as the agent's config writes it ("host:port" or "unix:/path") accepts
// connections.
bool endpoint_accepts(std::string_view endpoint);

// A child process with stdout+stderr going to a file; SIGKILLed on destruction if still running.
class Process {
 public:
  Process(const std::vector<std::string>& argv, const Env& env, const std::string& output_file);
  ~Process();
  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;

  pid_t pid() const { return pid_; }
  bool running();
  void signal(int sig);
  // Exit code (128 + signal number if killed by a signal); nullopt if still running at timeout.
  std::optional<int> wait_exit(Millis timeout);
  void kill();

 private:
  pid_t pid_ = -1;
  std::optional<int> exit_code_;
};

struct ProgramResult {
  std::optional<int> exit_code;  // nullopt: timed out (and killed)
  std::string output;            // stdout + stderr
};
// Runs SPANRELAY_BINARY with args to completion.
ProgramResult run_spanrelay(const std::vector<std::string>& args, const Env& env = default_env(),
                            Millis timeout = 10s);
bool spanrelay_binary_exists();

// One otlp_http or otlp_grpc exporter in the agent's YAML.
struct ExporterConfig {
  std::string type = "otlp_http";  // or "otlp_grpc"
  std::string endpoint;            // otlp_http: base URL; otlp_grpc: http://host:port
  std::string compression = "gzip";
  std::string auth = R"({username: "123456", password_env: TEST_TOKEN})";  // "" for none
  std::vector<std::pair<std::string, std::string>> headers = {{"X-Scope-OrgID", "tenant1"}};
  std::string timeout = "5s";
  std::string retry_initial_interval = "100ms";
  std::string retry_max_interval = "1s";
  std::string retry_max_elapsed = "30s";
  std::string tls_ca_file;
  std::string tls_server_name;  // "" for the endpoint's host
  bool tls_insecure_skip_verify = false;
  std::string max_queue_bytes;  // "" for auto
};

// Everything a test may vary in the agent's YAML; the defaults make a fast pipeline.
struct AgentConfig {
  // receivers.http; an empty endpoint is 127.0.0.1 on a free port (else e.g. "unix:/path")
  std::string http_endpoint;
  std::string max_request_bytes = "16MiB";
  std::string read_timeout = "10s";
  std::string idle_timeout = "30s";
  // receivers.grpc, when enabled; endpoint as for http
  bool grpc_receiver = false;
  std::string grpc_endpoint;
  std::string grpc_max_message_bytes = "4MiB";
  // buffer, batch
  std::string buffer_max_bytes = "64MiB";
  std::size_t batch_max_spans = 8192;
  std::string batch_max_bytes = "4MiB";
  std::string batch_timeout = "100ms";
  // exporters by name (most tests use one named "up"); each needs an endpoint
  std::map<std::string, ExporterConfig> exporters;
  // exporters.local (file), written to <agent dir>/spans.jsonl
  bool file_exporter = false;
  // argv before the agent's own (a wrapper such as unshare); the first is an absolute path
  std::vector<std::string> command_prefix;
  // spool: keys and values under it (path, fsync, ...); empty: no spool
  std::vector<std::pair<std::string, std::string>> spool;
  // log, shutdown
  std::string log_level = "info";
  std::string log_format = "text";
  std::string shutdown_timeout = "10s";
  // Appended to the YAML as it is (top-level keys).
  std::string extra_yaml;
};

// TCP ports for the endpoints the config leaves empty (grpc: only with the gRPC receiver).
struct AgentPorts {
  std::uint16_t receiver = 0;
  std::uint16_t admin = 0;
  std::uint16_t grpc = 0;
};
std::string render_config(const AgentConfig& config, AgentPorts ports,
                          const std::string& file_exporter_path);

// The agent under test: config written to a temp dir, started, and ready (receiver and admin
// ports accept connections) when the constructor returns; throws with the agent's log if not.
class Agent {
 public:
  explicit Agent(const AgentConfig& config, const Env& env = default_env());
  ~Agent();
  Agent(const Agent&) = delete;
  Agent& operator=(const Agent&) = delete;

  std::uint16_t port() const { return ports_.receiver; }  // 0 when HTTP listens on a socket file
  std::uint16_t admin_port() const { return ports_.admin; }
  // The gRPC receiver as a gRPC client target: "127.0.0.1:PORT" or "unix:/path".
  std::string grpc_target() const;
  std::string file_exporter_path() const { return dir_.file("spans.jsonl"); }
  std::string log() const;

  pid_t pid() const { return process_->pid(); }
  bool running() { return process_->running(); }
  void signal(int sig) { process_->signal(sig); }
  std::optional<int> wait_exit(Millis timeout) { return process_->wait_exit(timeout); }

  std::string config_file() const { return dir_.file("config.yaml"); }
  // Replaces the config file (write to a temp file, then rename, as an editor or a config
  // reloader does) with `next` rendered on the same ports, or with raw YAML text.
  void write_config(const AgentConfig& next);
  void write_config_text(const std::string& yaml);
  // Sends SIGHUP and waits until the agent has finished the reload (its reload counters
  // moved); true when it was applied, false when it was refused. Throws on timeout.
  bool reload(Millis timeout = 30s);

  std::string metrics();
  // Sum of the samples of a series, e.g. `spanrelay_exporter_sent_spans_total{exporter="up"}`;
  // NaN when absent or when /metrics cannot be read.
  double metric(std::string_view series);
  // Waits until metric(series) >= value.
  bool wait_metric_at_least(std::string_view series, double value, Millis timeout = 10s);
  bool healthy();  // GET /healthz answers 200

 private:
  TempDir dir_;
  AgentConfig config_;
  AgentPorts ports_;
  std::unique_ptr<Process> process_;
};

// ---- HTTP client ----

using HttpResponse = boost::beast::http::response<boost::beast::http::string_body>;

struct HttpRequest {
  std::string method = "POST";
  std::string target = "/v1/traces";
  std::vector<std::pair<std::string, std::string>> headers;  // Host/Content-Length are added
  std::string body;
  std::size_t chunk_size = 0;  // > 0: Transfer-Encoding: chunked, chunks of this size
  bool keep_alive = true;
};
std::string render_request(const HttpRequest& request);

// One client connection to 127.0.0.1:port or to a Unix socket. Every operation is bounded by
// its timeout.
class HttpConnection {
 public:
  explicit HttpConnection(std::uint16_t port, Millis timeout = 5s);
  explicit HttpConnection(const std::string& unix_socket_path, Millis timeout = 5s);
  ~HttpConnection();
  HttpConnection(const HttpConnection&) = delete;
  HttpConnection& operator=(const HttpConnection&) = delete;

  // false when the peer had closed or reset the connection.
  bool write(std::string_view bytes, Millis timeout = 10s);
  // nullopt when the peer closed the connection before a response; throws on timeout.
  std::optional<HttpResponse> read_response(Millis timeout = 10s);
  // Writes the request and reads the response; throws when none arrives.
  HttpResponse roundtrip(const HttpRequest& request, Millis timeout = 10s);
  // true when the peer closes (or resets) the connection within timeout; data is discarded.
  bool closed_within(Millis timeout);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

HttpResponse send_request(std::uint16_t port, const HttpRequest& request, Millis timeout = 10s);
HttpResponse http_get(std::uint16_t port, std::string_view target);

enum class Format { protobuf, json };
struct PostOptions {
  Format format = Format::protobuf;
  bool gzip = false;
  std::size_t chunk_size = 0;
};
HttpRequest otlp_request(const ExportRequest& request, const PostOptions& options = {});
HttpResponse post_spans(std::uint16_t port, const ExportRequest& request,
                        const PostOptions& options = {});

// ---- Prometheus text ----

// Sum of the samples whose name matches and whose labels include the query's labels; NaN if none.
double parse_metric(std::string_view text, std::string_view series);

}  // namespace it
