#include "integration/harness.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <limits>
#include <mutex>
#include <random>
#include <sstream>
#include <stdexcept>
#include <thread>

#include <boost/asio.hpp>
#include <boost/asio/as_tuple.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#define CATCH_CONFIG_EXTERNAL_INTERFACES
#include <catch2/catch.hpp>

extern char** environ;

namespace it {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

std::string expected_authorization() {
  return "Basic " + base64(std::string(test_username) + ":" + std::string(test_token));
}

Env default_env() { return {{"TEST_TOKEN", std::string(test_token)}}; }

bool wait_until(const std::function<bool()>& pred, Millis timeout, Millis poll) {
  const auto deadline = Clock::now() + timeout;
  for (;;) {
    if (pred()) {
      return true;
    }
    if (Clock::now() >= deadline) {
      return pred();
    }
    std::this_thread::sleep_for(poll);
  }
}

// ---- temp dirs, files, ports ----

TempDir::TempDir() {
  const char* base = std::getenv("TMPDIR");
  std::string pattern = std::string(base != nullptr && *base != '\0' ? base : "/tmp") +
                        "/spanrelay-it-XXXXXX";
  if (::mkdtemp(pattern.data()) == nullptr) {
    throw std::runtime_error("mkdtemp failed: " + std::string(std::strerror(errno)));
  }
  path_ = pattern;
}

TempDir::~TempDir() {
  std::error_code ignored;
  std::filesystem::remove_all(path_, ignored);
}

void TempDir::write(std::string_view name, std::string_view content) const {
  std::ofstream out(file(name), std::ios::binary | std::ios::trunc);
  out << content;
  if (!out) {
    throw std::runtime_error("cannot write " + file(name));
  }
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream content;
  content << in.rdbuf();
  return content.str();
}

namespace {

sockaddr_in loopback(std::uint16_t port) {
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return addr;
}

}  // namespace

std::uint16_t free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr = loopback(0);
  socklen_t len = sizeof addr;
  if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    if (fd >= 0) {
      ::close(fd);
    }
    throw std::runtime_error("cannot find a free port");
  }
  ::close(fd);
  return ntohs(addr.sin_port);
}

std::uint16_t stable_free_port() {
  // The ephemeral range (net.ipv4.ip_local_port_range) usually starts at 32768.
  unsigned low = 32768;
  if (std::ifstream range("/proc/sys/net/ipv4/ip_local_port_range"); range) {
    range >> low;
  }
  static std::mt19937 rng(std::random_device{}());
  const unsigned floor = 10000;
  if (low <= floor + 1000) {
    return free_port();  // an unusual range: no room below it
  }
  std::uniform_int_distribution<unsigned> pick(floor, low - 1);
  for (int attempt = 0; attempt < 100; ++attempt) {
    const auto port = static_cast<std::uint16_t>(pick(rng));
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    const sockaddr_in addr = loopback(port);
    const bool ok = fd >= 0 && ::bind(fd, reinterpret_cast<const sockaddr*>(&addr),
                                      sizeof addr) == 0;
    if (fd >= 0) {
      ::close(fd);
    }
    if (ok) {
      return port;
    }
  }
  throw std::runtime_error("cannot find a free port below the ephemeral range");
}

bool port_accepts(std::uint16_t port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    return false;
  }
  const sockaddr_in addr = loopback(port);
  const bool ok = ::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) == 0;
  ::close(fd);
  return ok;
}

bool endpoint_accepts(std::string_view endpoint) {
  constexpr std::string_view unix_prefix = "unix:";
  if (!endpoint.starts_with(unix_prefix)) {
    const auto colon = endpoint.rfind(':');
    return colon != std::string_view::npos &&
           port_accepts(static_cast<std::uint16_t>(
               std::stoul(std::string(endpoint.substr(colon + 1)))));
  }
  const std::string path(endpoint.substr(unix_prefix.size()));
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof addr.sun_path) {
    return false;
  }
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    return false;
  }
  const bool ok = ::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) == 0;
  ::close(fd);
  return ok;
}

// ---- processes ----

Process::Process(const std::vector<std::string>& argv, const Env& env,
                 const std::string& output_file) {
  // Everything the child needs is prepared before fork: after it only async-signal-safe calls.
  std::vector<std::string> env_strings;
  for (char** e = environ; *e != nullptr; ++e) {
    const std::string_view entry(*e);
    const auto name = entry.substr(0, entry.find('='));
    const bool overridden = std::any_of(env.begin(), env.end(),
                                        [&](const auto& kv) { return kv.first == name; });
    if (!overridden) {
      env_strings.emplace_back(entry);
    }
  }
  for (const auto& [name, value] : env) {
    env_strings.push_back(name + "=" + value);
  }
  std::vector<char*> envp;
  for (auto& s : env_strings) {
    envp.push_back(s.data());
  }
  envp.push_back(nullptr);
  std::vector<std::string> args = argv;
  std::vector<char*> argp;
  for (auto& s : args) {
    argp.push_back(s.data());
  }
  argp.push_back(nullptr);

  const int out = ::open(output_file.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  const int null_in = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (out < 0 || null_in < 0) {
    throw std::runtime_error("cannot open " + output_file);
  }
  const pid_t parent = ::getpid();
  pid_ = ::fork();
  if (pid_ == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);  // a crashed test binary takes the agent with it
    if (::getppid() != parent) {
      ::_exit(126);
    }
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    ::signal(SIGPIPE, SIG_DFL);
    ::dup2(null_in, 0);
    ::dup2(out, 1);
    ::dup2(out, 2);
    // Nothing else of the test's: an inherited listening socket (Asio does not set CLOEXEC)
    // would keep a "stopped" fake upstream's port open in the agent.
    ::close_range(3, ~0U, 0);
    ::execve(argp[0], argp.data(), envp.data());
    ::_exit(127);
  }
  ::close(out);
  ::close(null_in);
  if (pid_ < 0) {
    throw std::runtime_error("fork failed");
  }
}

Process::~Process() { kill(); }

bool Process::running() { return !wait_exit(0ms).has_value(); }

void Process::signal(int sig) {
  if (!exit_code_) {
    ::kill(pid_, sig);
  }
}

std::optional<int> Process::wait_exit(Millis timeout) {
  const auto deadline = Clock::now() + timeout;
  while (!exit_code_) {
    int status = 0;
    const pid_t r = ::waitpid(pid_, &status, WNOHANG);
    if (r == pid_) {
      exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    } else if (r < 0 && errno != EINTR) {
      exit_code_ = -1;
    } else if (Clock::now() >= deadline) {
      break;
    } else {
      std::this_thread::sleep_for(5ms);
    }
  }
  return exit_code_;
}

void Process::kill() {
  if (pid_ > 0 && !exit_code_) {
    ::kill(pid_, SIGKILL);
    int status = 0;
    while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
    }
    exit_code_ = 128 + SIGKILL;
  }
}

bool spanrelay_binary_exists() { return ::access(SPANRELAY_BINARY, X_OK) == 0; }

ProgramResult run_spanrelay(const std::vector<std::string>& args, const Env& env,
                            Millis timeout) {
  const TempDir dir;
  std::vector<std::string> argv{SPANRELAY_BINARY};
  argv.insert(argv.end(), args.begin(), args.end());
  ProgramResult result;
  {
    Process process(argv, env, dir.file("output.txt"));
    result.exit_code = process.wait_exit(timeout);
  }
  result.output = read_file(dir.file("output.txt"));
  return result;
}

// ---- agent logs shown when a test case fails ----

namespace {

std::mutex logs_mutex;
std::vector<std::string> finished_agent_logs;

void keep_log(std::string log) {
  constexpr std::size_t max_chars = 12000;
  if (log.size() > max_chars) {
    log = "[...]" + log.substr(log.size() - max_chars);
  }
  const std::lock_guard lock(logs_mutex);
  finished_agent_logs.push_back(std::move(log));
}

struct AgentLogListener : Catch::TestEventListenerBase {
  using TestEventListenerBase::TestEventListenerBase;

  void testCaseStarting(const Catch::TestCaseInfo& info) override {
    TestEventListenerBase::testCaseStarting(info);
    const std::lock_guard lock(logs_mutex);
    finished_agent_logs.clear();
  }

  void testCaseEnded(const Catch::TestCaseStats& stats) override {
    const std::lock_guard lock(logs_mutex);
    if (stats.totals.assertions.failed > 0) {
      for (std::size_t i = 0; i < finished_agent_logs.size(); ++i) {
        std::cerr << "---- spanrelay log #" << (i + 1) << " of test case '" << stats.testInfo.name
                  << "' ----\n"
                  << finished_agent_logs[i] << "\n---- end of log ----\n";
      }
    }
    finished_agent_logs.clear();
    TestEventListenerBase::testCaseEnded(stats);
  }
};

}  // namespace

CATCH_REGISTER_LISTENER(AgentLogListener)

// ---- config ----

namespace {

// The receivers' listening addresses as written in the config.
std::string http_listen(const AgentConfig& c, AgentPorts ports) {
  return c.http_endpoint.empty() ? "127.0.0.1:" + std::to_string(ports.receiver)
                                 : c.http_endpoint;
}

std::string grpc_listen(const AgentConfig& c, AgentPorts ports) {
  return c.grpc_endpoint.empty() ? "127.0.0.1:" + std::to_string(ports.grpc) : c.grpc_endpoint;
}

void render_exporter(std::ostringstream& y, const std::string& name, const ExporterConfig& e) {
  if (e.endpoint.empty()) {
    throw std::invalid_argument("exporter " + name + " has no endpoint");
  }
  y << "  " << name << ":\n"
    << "    type: " << e.type << "\n"
    << "    endpoint: " << e.endpoint << "\n"
    << "    compression: " << e.compression << "\n";
  if (!e.auth.empty()) {
    y << "    auth: " << e.auth << "\n";
  }
  if (!e.headers.empty()) {
    y << "    headers:\n";
    for (const auto& [header, value] : e.headers) {
      y << "      " << header << ": \"" << value << "\"\n";
    }
  }
  y << "    timeout: " << e.timeout << "\n"
    << "    retry:\n"
    << "      initial_interval: " << e.retry_initial_interval << "\n"
    << "      max_interval: " << e.retry_max_interval << "\n"
    << "      max_elapsed: " << e.retry_max_elapsed << "\n";
  if (!e.tls_ca_file.empty() || !e.tls_server_name.empty() || e.tls_insecure_skip_verify) {
    y << "    tls:\n";
    if (!e.tls_ca_file.empty()) {
      y << "      ca_file: \"" << e.tls_ca_file << "\"\n";
    }
    if (!e.tls_server_name.empty()) {
      y << "      server_name: \"" << e.tls_server_name << "\"\n";
    }
    if (e.tls_insecure_skip_verify) {
      y << "      insecure_skip_verify: true\n";
    }
  }
  if (!e.max_queue_bytes.empty()) {
    y << "    max_queue_bytes: " << e.max_queue_bytes << "\n";
  }
}

}  // namespace

std::string render_config(const AgentConfig& c, AgentPorts ports,
                          const std::string& file_exporter_path) {
  std::ostringstream y;
  y << "receivers:\n"
    << "  http:\n"
    << "    endpoint: " << http_listen(c, ports) << "\n"
    << "    max_request_bytes: " << c.max_request_bytes << "\n"
    << "    read_timeout: " << c.read_timeout << "\n"
    << "    idle_timeout: " << c.idle_timeout << "\n";
  if (c.grpc_receiver) {
    y << "  grpc:\n"
      << "    endpoint: " << grpc_listen(c, ports) << "\n"
      << "    max_message_bytes: " << c.grpc_max_message_bytes << "\n";
  }
  y << "buffer:\n"
    << "  max_bytes: " << c.buffer_max_bytes << "\n"
    << "batch:\n"
    << "  max_spans: " << c.batch_max_spans << "\n"
    << "  max_bytes: " << c.batch_max_bytes << "\n"
    << "  timeout: " << c.batch_timeout << "\n"
    << "exporters:\n";
  for (const auto& [name, exporter] : c.exporters) {
    render_exporter(y, name, exporter);
  }
  if (c.file_exporter) {
    y << "  local:\n"
      << "    type: file\n"
      << "    path: \"" << file_exporter_path << "\"\n";
  }
  if (!c.spool.empty()) {
    y << "spool:\n";
    for (const auto& [key, value] : c.spool) {
      y << "  " << key << ": " << value << "\n";
    }
  }
  y << "log:\n"
    << "  level: " << c.log_level << "\n"
    << "  format: " << c.log_format << "\n"
    << "admin:\n"
    << "  endpoint: 127.0.0.1:" << ports.admin << "\n"
    << "shutdown_timeout: " << c.shutdown_timeout << "\n"
    << c.extra_yaml;
  return y.str();
}

// ---- agent ----

Agent::Agent(const AgentConfig& config, const Env& env) : config_(config) {
  if (!spanrelay_binary_exists()) {
    throw std::runtime_error(std::string("spanrelay binary not built: ") + SPANRELAY_BINARY);
  }
  // Distinct free ports for the TCP endpoints the config leaves to us.
  std::vector<std::uint16_t> taken;
  const auto pick = [&taken] {
    std::uint16_t port = 0;
    do {
      port = free_port();
    } while (std::find(taken.begin(), taken.end(), port) != taken.end());
    taken.push_back(port);
    return port;
  };
  ports_.admin = pick();
  if (config_.http_endpoint.empty()) {
    ports_.receiver = pick();
  }
  if (config_.grpc_receiver && config_.grpc_endpoint.empty()) {
    ports_.grpc = pick();
  }
  dir_.write("config.yaml", render_config(config_, ports_, file_exporter_path()));
  std::vector<std::string> argv = config_.command_prefix;
  argv.insert(argv.end(), {SPANRELAY_BINARY, "--config", dir_.file("config.yaml")});
  process_ = std::make_unique<Process>(
      argv, env,
      dir_.file("agent.log"));
  const auto listening = [&] {
    return port_accepts(admin_port()) && endpoint_accepts(http_listen(config_, ports_)) &&
           (!config_.grpc_receiver || endpoint_accepts(grpc_listen(config_, ports_)));
  };
  const bool ready = wait_until([&] { return !process_->running() || listening(); }, 15s);
  if (!ready || !process_->running()) {
    const auto code = process_->wait_exit(0ms);
    throw std::runtime_error(
        "spanrelay did not become ready (" +
        (code ? "exit code " + std::to_string(*code) : std::string("still running")) +
        "); config:\n" + read_file(dir_.file("config.yaml")) + "log:\n" + log());
  }
}

Agent::~Agent() {
  if (process_) {
    process_->kill();
    keep_log(log());
  }
}

std::string Agent::log() const { return read_file(dir_.file("agent.log")); }

void Agent::write_config(const AgentConfig& next) {
  write_config_text(render_config(next, ports_, file_exporter_path()));
}

void Agent::write_config_text(const std::string& yaml) {
  dir_.write("config.yaml.new", yaml);
  std::filesystem::rename(dir_.file("config.yaml.new"), dir_.file("config.yaml"));
}

bool Agent::reload(Millis timeout) {
  const auto count = [this](const char* result) {
    const double v = metric(std::string("spanrelay_config_reloads_total{result=\"") + result +
                            "\"}");
    return std::isnan(v) ? -1.0 : v;
  };
  const double ok_before = count("success");
  const double failed_before = count("failure");
  if (ok_before < 0 || failed_before < 0) {
    throw std::runtime_error("cannot read the reload counters from /metrics");
  }
  signal(SIGHUP);
  bool applied = false;
  const bool done = wait_until(
      [&] {
        const double ok = count("success");
        const double failed = count("failure");
        applied = ok > ok_before;
        return applied || failed > failed_before;
      },
      timeout);
  if (!done) {
    throw std::runtime_error("the agent did not finish a reload in time; log:\n" + log());
  }
  return applied;
}

std::string Agent::grpc_target() const {
  if (!config_.grpc_receiver) {
    throw std::logic_error("the agent runs no gRPC receiver");
  }
  return grpc_listen(config_, ports_);
}

std::string Agent::metrics() {
  const HttpResponse response = http_get(admin_port(), "/metrics");
  if (response.result_int() != 200) {
    throw std::runtime_error("GET /metrics answered " + std::to_string(response.result_int()));
  }
  return response.body();
}

double Agent::metric(std::string_view series) {
  try {
    return parse_metric(metrics(), series);
  } catch (const std::exception&) {
    return std::numeric_limits<double>::quiet_NaN();
  }
}

bool Agent::wait_metric_at_least(std::string_view series, double value, Millis timeout) {
  return wait_until([&] { return metric(series) >= value; }, timeout, 20ms);
}

bool Agent::healthy() {
  try {
    return http_get(admin_port(), "/healthz").result_int() == 200;
  } catch (const std::exception&) {
    return false;
  }
}

// ---- HTTP client ----

std::string render_request(const HttpRequest& r) {
  std::string out = r.method + " " + r.target + " HTTP/1.1\r\nHost: 127.0.0.1\r\n";
  for (const auto& [name, value] : r.headers) {
    out += name + ": " + value + "\r\n";
  }
  if (!r.keep_alive) {
    out += "Connection: close\r\n";
  }
  if (r.chunk_size > 0) {
    out += "Transfer-Encoding: chunked\r\n\r\n";
    for (std::size_t at = 0; at < r.body.size(); at += r.chunk_size) {
      const std::size_t n = std::min(r.chunk_size, r.body.size() - at);
      char size_line[32];
      std::snprintf(size_line, sizeof size_line, "%zx\r\n", n);
      out += size_line;
      out.append(r.body, at, n);
      out += "\r\n";
    }
    out += "0\r\n\r\n";
  } else {
    if (!r.body.empty() || r.method == "POST" || r.method == "PUT") {
      out += "Content-Length: " + std::to_string(r.body.size()) + "\r\n";
    }
    out += "\r\n";
    out += r.body;
  }
  return out;
}

namespace {
constexpr auto nothrow_awaitable = asio::as_tuple(asio::use_awaitable);

bool is_closed_error(const boost::system::error_code& ec) {
  return ec == asio::error::eof || ec == asio::error::connection_reset ||
         ec == asio::error::broken_pipe || ec == http::error::end_of_stream ||
         ec == asio::error::connection_aborted;
}
}  // namespace

struct HttpConnection::Impl {
  asio::io_context ioc;
  asio::generic::stream_protocol::socket socket{ioc};
  beast::flat_buffer buffer;

  // Runs op on this connection's io_context for at most timeout; on timeout the socket is
  // closed (the connection is unusable afterwards) and nullopt is returned.
  template <class T>
  std::optional<T> run(asio::awaitable<T> op, Millis timeout) {
    std::optional<T> result;
    std::exception_ptr error;
    bool done = false;
    asio::co_spawn(ioc, std::move(op), [&](std::exception_ptr e, T value) {
      done = true;
      error = e;
      if (!e) {
        result.emplace(std::move(value));
      }
    });
    ioc.restart();
    ioc.run_for(timeout);
    if (!done) {
      boost::system::error_code ignored;
      socket.close(ignored);
      ioc.restart();
      ioc.run();
      return std::nullopt;
    }
    if (error) {
      std::rethrow_exception(error);
    }
    return result;
  }

  void connect(const asio::generic::stream_protocol::endpoint& endpoint, const std::string& name,
               Millis timeout) {
    auto op = [](Impl* impl, asio::generic::stream_protocol::endpoint to)
        -> asio::awaitable<boost::system::error_code> {
      auto [ec] = co_await impl->socket.async_connect(to, nothrow_awaitable);
      co_return ec;
    };
    const auto ec = run(op(this, endpoint), timeout);
    if (!ec || *ec) {
      throw std::runtime_error("cannot connect to " + name + ": " +
                               (ec ? ec->message() : std::string("timed out")));
    }
  }
};

HttpConnection::HttpConnection(std::uint16_t port, Millis timeout)
    : impl_(std::make_unique<Impl>()) {
  impl_->connect(tcp::endpoint(asio::ip::address_v4::loopback(), port),
                 "127.0.0.1:" + std::to_string(port), timeout);
}

HttpConnection::HttpConnection(const std::string& unix_socket_path, Millis timeout)
    : impl_(std::make_unique<Impl>()) {
  impl_->connect(asio::local::stream_protocol::endpoint(unix_socket_path),
                 "unix:" + unix_socket_path, timeout);
}

HttpConnection::~HttpConnection() = default;

bool HttpConnection::write(std::string_view bytes, Millis timeout) {
  auto op = [](Impl* impl, std::string_view data) -> asio::awaitable<boost::system::error_code> {
    auto [ec, n] = co_await asio::async_write(impl->socket, asio::buffer(data), nothrow_awaitable);
    co_return ec;
  };
  const auto ec = impl_->run(op(impl_.get(), bytes), timeout);
  if (!ec) {
    throw std::runtime_error("timed out writing to the agent");
  }
  if (*ec && !is_closed_error(*ec)) {
    throw std::runtime_error("write failed: " + ec->message());
  }
  return !*ec;
}

std::optional<HttpResponse> HttpConnection::read_response(Millis timeout) {
  using Result = std::pair<boost::system::error_code, HttpResponse>;
  auto op = [](Impl* impl) -> asio::awaitable<Result> {
    http::response_parser<http::string_body> parser;
    parser.body_limit(64u << 20);
    auto [ec, n] = co_await http::async_read(impl->socket, impl->buffer, parser,
                                             nothrow_awaitable);
    co_return Result{ec, ec ? HttpResponse{} : parser.release()};
  };
  auto result = impl_->run(op(impl_.get()), timeout);
  if (!result) {
    throw std::runtime_error("timed out waiting for a response");
  }
  if (result->first) {
    if (is_closed_error(result->first)) {
      return std::nullopt;
    }
    throw std::runtime_error("bad response: " + result->first.message());
  }
  return std::move(result->second);
}

HttpResponse HttpConnection::roundtrip(const HttpRequest& request, Millis timeout) {
  // A server may answer (e.g. 413) and close before reading all of a large body: a failed
  // write is not an error as long as a response can be read.
  write(render_request(request), timeout);
  auto response = read_response(timeout);
  if (!response) {
    throw std::runtime_error("connection closed without a response to " + request.method + " " +
                             request.target);
  }
  return std::move(*response);
}

bool HttpConnection::closed_within(Millis timeout) {
  const int fd = impl_->socket.native_handle();
  if (!impl_->socket.is_open()) {
    return true;
  }
  const auto deadline = Clock::now() + timeout;
  char scratch[4096];
  for (;;) {
    const auto left = std::chrono::duration_cast<Millis>(deadline - Clock::now());
    if (left.count() < 0) {
      return false;
    }
    pollfd p{fd, POLLIN | POLLRDHUP, 0};
    const int r = ::poll(&p, 1, static_cast<int>(left.count()));
    if (r == 0) {
      return false;
    }
    if (r < 0) {
      if (errno == EINTR) {
        continue;
      }
      return true;
    }
    const ssize_t n = ::recv(fd, scratch, sizeof scratch, MSG_DONTWAIT);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
      return true;
    }
  }
}

HttpResponse send_request(std::uint16_t port, const HttpRequest& request, Millis timeout) {
  HttpConnection connection(port, timeout);
  return connection.roundtrip(request, timeout);
}

HttpResponse http_get(std::uint16_t port, std::string_view target) {
  HttpRequest request;
  request.method = "GET";
  request.target = std::string(target);
  request.keep_alive = false;
  return send_request(port, request, 5s);
}

HttpRequest otlp_request(const ExportRequest& request, const PostOptions& options) {
  HttpRequest r;
  if (options.format == Format::json) {
    r.headers.emplace_back("Content-Type", "application/json");
    r.body = to_otlp_json(request);
  } else {
    r.headers.emplace_back("Content-Type", "application/x-protobuf");
    r.body = request.SerializeAsString();
  }
  if (options.gzip) {
    r.headers.emplace_back("Content-Encoding", "gzip");
    r.body = gzip(r.body);
  }
  r.chunk_size = options.chunk_size;
  return r;
}

HttpResponse post_spans(std::uint16_t port, const ExportRequest& request,
                        const PostOptions& options) {
  return send_request(port, otlp_request(request, options));
}

// ---- Prometheus text ----

namespace {

struct Series {
  std::string name;
  std::vector<std::pair<std::string, std::string>> labels;
};

// Parses `name{a="x",b="y"}`; returns the series and the rest of the text after it.
std::pair<Series, std::string_view> parse_series(std::string_view text) {
  Series s;
  const auto end_of_name = text.find_first_of("{ \t");
  s.name = std::string(text.substr(0, end_of_name));
  if (end_of_name == std::string_view::npos) {
    return {s, {}};
  }
  text.remove_prefix(end_of_name);
  if (text.front() == '{') {
    text.remove_prefix(1);
    while (!text.empty() && text.front() != '}') {
      const auto eq = text.find('=');
      if (eq == std::string_view::npos || eq + 1 >= text.size() || text[eq + 1] != '"') {
        break;
      }
      std::string key(text.substr(0, eq));
      key.erase(std::remove_if(key.begin(), key.end(), [](char c) { return c == ' ' || c == ','; }),
                key.end());
      std::string value;
      std::size_t i = eq + 2;
      for (; i < text.size() && text[i] != '"'; ++i) {
        if (text[i] == '\\' && i + 1 < text.size()) {
          ++i;
        }
        value += text[i];
      }
      s.labels.emplace_back(std::move(key), std::move(value));
      text.remove_prefix(std::min(i + 1, text.size()));
      while (!text.empty() && (text.front() == ',' || text.front() == ' ')) {
        text.remove_prefix(1);
      }
    }
    if (!text.empty()) {
      text.remove_prefix(1);
    }
  }
  return {s, text};
}

}  // namespace

double parse_metric(std::string_view text, std::string_view series) {
  const Series want = parse_series(series).first;
  double sum = 0;
  bool found = false;
  std::istringstream lines{std::string(text)};
  std::string line;
  while (std::getline(lines, line)) {
    if (line.empty() || line.front() == '#') {
      continue;
    }
    auto [got, rest] = parse_series(line);
    if (got.name != want.name) {
      continue;
    }
    const bool labels_match =
        std::all_of(want.labels.begin(), want.labels.end(), [&](const auto& label) {
          return std::find(got.labels.begin(), got.labels.end(), label) != got.labels.end();
        });
    if (!labels_match) {
      continue;
    }
    const std::string value(rest);
    char* end = nullptr;
    const double v = std::strtod(value.c_str(), &end);
    if (end != value.c_str()) {
      sum += v;
      found = true;
    }
  }
  return found ? sum : std::numeric_limits<double>::quiet_NaN();
}

}  // namespace it
