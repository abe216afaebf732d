// The agent as a service manager and an operator see it: the sd_notify protocol (READY,
// WATCHDOG, RELOADING, STOPPING), readiness and liveness probes, reload on SIGHUP (refused when
// bad, lossless under load when good, in memory and in spool mode), the status document, the
// metrics a dashboard needs and the log lines a person acts on. Real binary, loopback only.

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <csignal>
#include <cstring>
#include <mutex>
#include <thread>

#include <boost/json.hpp>
#include <catch2/catch.hpp>

#include "integration/checks.hpp"
#include "integration/fake_upstream.hpp"
#include "integration/harness.hpp"

namespace it {
namespace {

// Plays systemd's side of sd_notify(3): a datagram socket whose messages are kept in order.
class NotifySocket {
 public:
  explicit NotifySocket(const std::string& path) : path_(path) {
    fd_ = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, path.c_str(), sizeof addr.sun_path - 1);
    if (fd_ < 0 || ::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
      throw std::runtime_error("cannot bind the notify socket " + path);
    }
    timeval tv{0, 100000};
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    reader_ = std::thread([this] {
      char buf[4096];
      while (!stop_) {
        const ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
        if (n > 0) {
          std::lock_guard lock(m_);
          messages_.emplace_back(buf, static_cast<std::size_t>(n));
        }
      }
    });
  }
  ~NotifySocket() {
    stop_ = true;
    reader_.join();
    ::close(fd_);
    ::unlink(path_.c_str());
  }
  std::vector<std::string> messages() {
    std::lock_guard lock(m_);
    return messages_;
  }
  // Index of the first message at or after `from` containing `field` (e.g. "READY=1"), or -1.
  long find(const std::string& field, std::size_t from = 0) {
    const auto all = messages();
    for (std::size_t i = from; i < all.size(); ++i) {
      if (("\n" + all[i] + "\n").find("\n" + field + "\n") != std::string::npos) {
        return static_cast<long>(i);
      }
    }
    return -1;
  }
  bool wait_for(const std::string& field, std::size_t from = 0, Millis timeout = 10s) {
    return wait_until([&] { return find(field, from) >= 0; }, timeout);
  }

 private:
  std::string path_;
  int fd_ = -1;
  std::atomic<bool> stop_{false};
  std::mutex m_;
  std::vector<std::string> messages_;
  std::thread reader_;
};

std::size_t count_field(const std::vector<std::string>& messages, const std::string& field,
                        std::size_t from, std::size_t to) {
  std::size_t n = 0;
  for (std::size_t i = from; i < to && i < messages.size(); ++i) {
    n += messages[i] == field ? 1 : 0;
  }
  return n;
}

AgentConfig one_upstream(const FakeUpstream& upstream) {
  AgentConfig config;
  config.exporters["up"].endpoint = upstream.base_url();
  return config;
}

boost::json::value status_json(const Agent& agent) {
  const HttpResponse res = http_get(agent.admin_port(), "/status.json");
  REQUIRE(res.result_int() == 200);
  return boost::json::parse(res.body());
}

const boost::json::object* exporter_status(const boost::json::value& status,
                                           std::string_view name) {
  for (const auto& e : status.at("exporters").as_array()) {
    if (e.at("name").as_string() == name) {
      return &e.as_object();
    }
  }
  return nullptr;
}

}  // namespace

TEST_CASE("sd_notify: READY, WATCHDOG pings, RELOADING then READY, STOPPING, in order",
          "[integration][lifecycle]") {
  TempDir dir;
  NotifySocket notify(dir.file("notify.sock"));
  FakeUpstream upstream;
  Env env = default_env();
  env.emplace_back("NOTIFY_SOCKET", dir.file("notify.sock"));
  env.emplace_back("WATCHDOG_USEC", "600000");
  Agent agent(one_upstream(upstream), env);

  REQUIRE(notify.wait_for("READY=1"));
  const auto ready = static_cast<std::size_t>(notify.find("READY=1"));
  // The watchdog is fed at a third of WATCHDOG_USEC: several pings within ~2 s.
  REQUIRE(wait_until([&] { return count_field(notify.messages(), "WATCHDOG=1", ready, 1000) >= 3; },
                     10s));
  CHECK(notify.find("WATCHDOG=1") > static_cast<long>(ready));

  const std::size_t before_reload = notify.messages().size();
  REQUIRE(agent.reload());
  REQUIRE(notify.wait_for("RELOADING=1", before_reload));
  const auto reloading = static_cast<std::size_t>(notify.find("RELOADING=1", before_reload));
  REQUIRE(notify.wait_for("READY=1", reloading + 1));
  // RELOADING=1 carries MONOTONIC_USEC, as Type=notify-reload asks.
  CHECK(notify.messages()[reloading].find("MONOTONIC_USEC=") != std::string::npos);

  const std::size_t before_stop = notify.messages().size();
  agent.signal(SIGTERM);
  REQUIRE(agent.wait_exit(15s) == 0);
  CHECK(notify.find("STOPPING=1", before_stop) >= 0);
  CHECK(notify.find("READY=1", static_cast<std::size_t>(notify.find("STOPPING=1"))) < 0);
}

TEST_CASE("readiness never follows the upstream, only the memory buffer",
          "[integration][lifecycle]") {
  FakeUpstream upstream;
  upstream.set_default(UpstreamResponse::with_status(503));
  AgentConfig config = one_upstream(upstream);
  config.buffer_max_bytes = "1MiB";
  config.batch_max_bytes = "256KiB";
  Agent agent(config);

  const HttpResponse ready = http_get(agent.admin_port(), "/readyz");
  CHECK(ready.result_int() == 200);
  CHECK(ready.body() == "ready\n");
  // Upstream failing: still ready and live (Grafana Cloud down must not take the pod out).
  post_and_expect_ok(agent.port(), 5);
  REQUIRE(upstream.wait_for_requests(2, 10s));
  CHECK(http_get(agent.admin_port(), "/readyz").result_int() == 200);
  CHECK(http_get(agent.admin_port(), "/healthz").result_int() == 200);

  // Fill the 1 MiB memory buffer while the upstream keeps failing: not ready, with the reason.
  RequestShape big;
  big.attribute_padding = 2000;
  for (int i = 0; i < 40 && http_get(agent.admin_port(), "/readyz").result_int() == 200; ++i) {
    post_spans(agent.port(), make_request(100, big));
  }
  const HttpResponse full = http_get(agent.admin_port(), "/readyz");
  CHECK(full.result_int() == 503);
  CHECK(full.body() == "memory buffer full\n");
  CHECK(agent.metric("spanrelay_ready") == 0);
  CHECK(http_get(agent.admin_port(), "/healthz").result_int() == 200);  // still live

  // The upstream comes back: the buffer drains and the agent is ready again.
  upstream.set_default(UpstreamResponse{});
  CHECK(wait_until([&] { return http_get(agent.admin_port(), "/readyz").result_int() == 200; },
                   20s));
}

TEST_CASE("status.json and the page: an exporter shows failing with the upstream's 503",
          "[integration][lifecycle]") {
  FakeUpstream upstream;
  AgentConfig config = one_upstream(upstream);
  config.file_exporter = true;
  Agent agent(config);

  const auto sent = post_and_expect_ok(agent.port(), 7);
  REQUIRE(upstream.wait_for_spans(7, 10s));
  REQUIRE(wait_until(
      [&] {
        const auto doc = status_json(agent);
        const auto* up = exporter_status(doc, "up");
        return up != nullptr && up->at("state").as_string() == "ok" &&
               up->at("sent_spans").as_int64() == 7;
      },
      10s));
  auto s = status_json(agent);
  CHECK(s.at("ready").as_bool());
  CHECK(s.at("intake").at("accepted_spans").as_int64() == 7);
  CHECK(s.at("receivers").as_array().size() == 1);
  CHECK(s.at("receivers").at(0).at("state").as_string() == "listening");
  const auto* local = exporter_status(s, "local");
  REQUIRE(local != nullptr);
  CHECK(local->at("type").as_string() == "file");
  CHECK(local->at("circuit").is_null());
  CHECK(exporter_status(s, "up")->at("circuit").as_string() == "closed");

  upstream.set_default(UpstreamResponse::with_status(503));
  post_and_expect_ok(agent.port(), 3);
  REQUIRE(wait_until(
      [&] {
        const auto doc = status_json(agent);
        return exporter_status(doc, "up")->at("state").as_string() == "failing";
      },
      10s));
  s = status_json(agent);
  const auto* up = exporter_status(s, "up");
  CHECK(up->at("last_error").at("class").as_string() == "5xx");
  CHECK(std::string(up->at("last_error").at("message").as_string()).find("503") !=
        std::string::npos);
  CHECK(up->at("next_retry").is_string());
  CHECK(!up->at("last_success").is_null());

  const HttpResponse page = http_get(agent.admin_port(), "/");
  CHECK(page.result_int() == 200);
  CHECK(std::string(page[boost::beast::http::field::content_type]).starts_with("text/html"));
  CHECK(page.body().find("status.json") != std::string::npos);
}

TEST_CASE("metrics a dashboard needs: build info, process, duration histograms",
          "[integration][lifecycle]") {
  FakeUpstream upstream;
  AgentConfig config = one_upstream(upstream);
  config.file_exporter = true;
  config.grpc_receiver = true;
  Agent agent(config);
  post_and_expect_ok(agent.port(), 4);
  REQUIRE(upstream.wait_for_spans(4, 10s));
  REQUIRE(agent.wait_metric_at_least(
      "spanrelay_exporter_request_duration_seconds_count{exporter=\"up\"}", 1));

  CHECK(agent.metric("spanrelay_build_info{version=\"" SPANRELAY_TEST_VERSION "\"}") == 1);
  CHECK(agent.metric("process_cpu_seconds_total") > 0);
  CHECK(agent.metric("process_resident_memory_bytes") > 1e6);
  CHECK(agent.metric("process_open_fds") > 3);
  CHECK(agent.metric("process_max_fds") >= agent.metric("process_open_fds"));
  CHECK(agent.metric("process_start_time_seconds") > 1.6e9);
  CHECK(agent.metric("spanrelay_receiver_request_duration_seconds_count{receiver=\"http\"}") ==
        1);
  CHECK(agent.metric("spanrelay_receiver_request_duration_seconds_bucket{receiver=\"http\","
                     "le=\"+Inf\"}") == 1);
  CHECK(agent.metric("spanrelay_receiver_request_duration_seconds_count{receiver=\"grpc\"}") ==
        0);
  CHECK(agent.metric("spanrelay_exporter_request_duration_seconds_sum{exporter=\"up\"}") > 0);
  CHECK(agent.metric("spanrelay_ready") == 1);
  // The file exporter has no circuit, retries or queue: no such series for it.
  const std::string text = agent.metrics();
  CHECK(text.find("spanrelay_exporter_circuit_state{exporter=\"local\"}") == std::string::npos);
  CHECK(text.find("spanrelay_exporter_retries_total{exporter=\"local\"}") == std::string::npos);
  CHECK(text.find("spanrelay_exporter_circuit_state{exporter=\"up\"}") != std::string::npos);
  CHECK(agent.metric("spanrelay_exporter_sent_spans_total{exporter=\"local\"}") == 4);
}

TEST_CASE("reload: a bad file is refused with file:line and the running config stays",
          "[integration][lifecycle][reload]") {
  FakeUpstream upstream;
  AgentConfig config = one_upstream(upstream);
  Agent agent(config);

  // The running config with one bad value: the error names its line.
  std::string yaml = read_file(agent.config_file());
  const std::size_t at = yaml.find("  timeout: 100ms");
  REQUIRE(at != std::string::npos);
  yaml.replace(at, 16, "  timeout: 10x");
  const auto line = 1 + std::count(yaml.begin(), yaml.begin() + static_cast<long>(at), '\n');
  agent.write_config_text(yaml);
  CHECK_FALSE(agent.reload());
  const std::string log = agent.log();
  CHECK(log.find("reload refused") != std::string::npos);
  CHECK(log.find("config.yaml:" + std::to_string(line) + ":") != std::string::npos);
  CHECK(log.find("batch.timeout") != std::string::npos);
  CHECK(agent.metric("spanrelay_config_last_reload_successful") == 0);
  // Still serving, still forwarding where it did.
  const auto sent = post_and_expect_ok(agent.port(), 5);
  require_delivered_once(upstream, sent);

  // A change that needs a restart is refused as well, saying so.
  AgentConfig spooled = config;
  spooled.spool = {{"path", agent.config_file() + ".spool"}};
  agent.write_config(spooled);
  CHECK_FALSE(agent.reload());
  CHECK(agent.log().find("spool cannot change while running: restart spanrelay") !=
        std::string::npos);
  CHECK(agent.running());
  const auto status = status_json(agent);
  CHECK(status.at("reloads").at("failed").as_int64() == 2);
  CHECK(status.at("reloads").at("last_error").as_string().find("restart") != std::string::npos);
  CHECK(status.at("reloads").at("last_result").as_string() == "failure");
}

TEST_CASE("reload with a spool: adding a network exporter needs a restart and is refused",
          "[integration][lifecycle][reload]") {
  FakeUpstream upstream, other;
  TempDir spool_dir;
  AgentConfig config = one_upstream(upstream);
  config.spool = {{"path", spool_dir.path()}};
  Agent agent(config);
  AgentConfig more = config;
  more.exporters["second"].endpoint = other.base_url();
  agent.write_config(more);
  CHECK_FALSE(agent.reload());
  CHECK(agent.log().find("the set of network exporters") != std::string::npos);
  // Changing an existing one's options is fine: its successor reads the same spool.
  AgentConfig changed = config;
  changed.exporters["up"].headers = {{"X-Scope-OrgID", "tenant9"}};
  agent.write_config(changed);
  CHECK(agent.reload());
  const auto sent = post_and_expect_ok(agent.port(), 6);
  require_delivered_once(upstream, sent);
  CHECK(upstream.requests().back().header("x-scope-orgid") == "tenant9");
}

TEST_CASE("reload: a receiver whose address changed is re-bound, the others keep connections",
          "[integration][lifecycle][reload]") {
  FakeUpstream upstream;
  AgentConfig config = one_upstream(upstream);
  Agent agent(config);
  HttpConnection kept(agent.port());
  require_accepted(kept.roundtrip(otlp_request(make_request(2))));

  // Same receiver, a new exporter option (headers) and log level: the connection stays.
  AgentConfig next = config;
  next.http_endpoint = "127.0.0.1:" + std::to_string(agent.port());
  next.exporters["up"].headers = {{"X-Scope-OrgID", "tenant2"}};
  next.log_level = "debug";
  agent.write_config(next);
  REQUIRE(agent.reload());
  require_accepted(kept.roundtrip(otlp_request(make_request(2))));
  REQUIRE(upstream.wait_for_spans(4, 10s));
  CHECK(upstream.requests().back().header("x-scope-orgid") == "tenant2");
  REQUIRE(wait_until([&] { return agent.log().find("[debug]") != std::string::npos ||
                                  agent.log().find("debug [") != std::string::npos; },
                     10s));

  // A new address: the new port listens, the old one is closed.
  const std::uint16_t moved = stable_free_port();
  next.http_endpoint = "127.0.0.1:" + std::to_string(moved);
  agent.write_config(next);
  REQUIRE(agent.reload());
  CHECK(port_accepts(moved));
  CHECK(wait_until([&] { return !port_accepts(agent.port()); }, 5s));
  post_and_expect_ok(moved, 3);
  CHECK(upstream.wait_for_spans(7, 10s));
}

namespace {

// Continuous load while the exporter is moved from one upstream to another (and back), with
// other options changing too: every acknowledged span arrives exactly once in total.
void reload_under_load(bool spool) {
  FakeUpstream a, b;
  TempDir spool_dir;
  AgentConfig config;
  config.exporters["up"].endpoint = a.base_url();
  config.exporters["up"].retry_max_interval = "200ms";
  if (spool) {
    config.spool = {{"path", spool_dir.path()}, {"fsync", "never"}};
  }
  Agent agent(config);
  Load load(agent.port(), 10, 2ms);

  REQUIRE(wait_until([&] { return load.accepted_count() >= 300; }, 20s));
  AgentConfig to_b = config;
  to_b.exporters["up"].endpoint = b.base_url();
  to_b.batch_max_spans = 50;
  to_b.exporters["up"].headers = {{"X-Scope-OrgID", "tenant2"}};
  agent.write_config(to_b);
  REQUIRE(agent.reload());
  const std::size_t after_first = load.accepted_count();
  REQUIRE(wait_until([&] { return load.accepted_count() >= after_first + 300; }, 20s));
  REQUIRE(wait_until([&] { return b.delivered_span_count() > 0; }, 10s));

  // B fails: batches pile up in its exporter, retrying. Moved back to A, the replaced
  // exporter must hand every one of them over (B never recovers).
  b.set_default(UpstreamResponse::with_status(503));
  const std::size_t b_requests = b.request_count();
  REQUIRE(wait_until([&] { return b.request_count() >= b_requests + 5; }, 20s));
  const std::size_t before_second = load.accepted_count();
  REQUIRE(wait_until([&] { return load.accepted_count() >= before_second + 200; }, 20s));
  AgentConfig to_a = to_b;
  to_a.exporters["up"].endpoint = a.base_url();
  agent.write_config(to_a);
  REQUIRE(agent.reload());
  const std::size_t after_second = load.accepted_count();
  REQUIRE(wait_until([&] { return load.accepted_count() >= after_second + 300; }, 20s));
  load.stop();

  const auto accepted = load.accepted();
  const DeliveryReport r = await_delivery(accepted, {&a, &b}, 30s);
  INFO("accepted " << accepted.size() << ", refused " << load.refused() << ", failed "
                   << load.failed());
  CHECK(r.missing == 0);
  CHECK(r.duplicates == 0);
  CHECK(r.unexpected == 0);
  CHECK(load.failed() == 0);
  CHECK(agent.metric(exporter_series("spanrelay_exporter_failed_spans_total")) == 0);
  CHECK(agent.metric("spanrelay_config_reloads_total{result=\"success\"}") == 2);
  CHECK(agent.metric(exporter_series("spanrelay_exporter_sent_spans_total")) ==
        static_cast<double>(accepted.size()));
}

}  // namespace

TEST_CASE("reload under load, memory mode: nothing acknowledged is lost or duplicated",
          "[integration][lifecycle][reload]") {
  reload_under_load(false);
}

TEST_CASE("reload under load, spool mode: nothing acknowledged is lost or duplicated",
          "[integration][lifecycle][reload]") {
  reload_under_load(true);
}

TEST_CASE("logs: each failure class is logged at once, JSON levels use the config's names",
          "[integration][lifecycle]") {
  FakeUpstream upstream;
  upstream.script({UpstreamResponse::with_status(503), UpstreamResponse::with_status(503),
                   UpstreamResponse::with_status(401)});
  AgentConfig config = one_upstream(upstream);
  config.log_format = "json";
  Agent agent(config);
  post_and_expect_ok(agent.port(), 2);
  // 503, 503 (held back: same class within a minute), then 401: logged although a line was
  // written a moment ago, and dropped as permanent.
  REQUIRE(agent.wait_metric_at_least(exporter_series("spanrelay_exporter_failed_spans_total"), 2));
  const std::string log = agent.log();
  CHECK(log.find("export failed [5xx]: HTTP 503") != std::string::npos);
  CHECK(log.find("export failed [auth]: HTTP 401") != std::string::npos);
  std::size_t lines_5xx = 0;
  for (std::size_t at = 0; (at = log.find("export failed [5xx]", at)) != std::string::npos;
       ++at) {
    ++lines_5xx;
  }
  CHECK(lines_5xx == 1);
  CHECK(log.find(R"("level":"warn")") != std::string::npos);
  CHECK(log.find(R"("level":"error")") != std::string::npos);
  CHECK(log.find(R"("level":"warning")") == std::string::npos);
  check_no_secret(log);
}

}  // namespace it
