#include "exporters/otlp_http/otlp_http_exporter.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/host_name_verification.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>

#include <optional>

#include "common/base64.hpp"
#include "exporters/otlp_http/retry.hpp"
#include "otlp/responses.hpp"

namespace spanrelay {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using Clock = std::chrono::steady_clock;
constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);

// One connection slot: the exporter runs max_in_flight of these, each with one request in
// flight at a time on its own kept-alive connection.
struct OtlpHttpExporter::Worker {
  explicit Worker(asio::io_context& ioc) : wake(ioc), sleep(ioc) {}
  asio::steady_timer wake;   // parked here while the queue is empty
  asio::steady_timer sleep;  // backoff between attempts
  std::optional<beast::tcp_stream> plain;
  std::optional<beast::ssl_stream<beast::tcp_stream>> tls;

  bool connected() const { return plain.has_value() || tls.has_value(); }
  beast::tcp_stream& transport() { return tls ? beast::get_lowest_layer(*tls) : *plain; }
  void disconnect() {
    if (connected()) {
      beast::error_code ignored;
      transport().socket().shutdown(tcp::socket::shutdown_both, ignored);
      transport().close();
    }
    tls.reset();
    plain.reset();
  }
};

struct OtlpHttpExporter::Attempt {
  enum Outcome { kDelivered, kRetryable, kPermanent } outcome = kRetryable;
  unsigned status = 0;  // HTTP status, 0 for a transport error
  std::optional<std::chrono::milliseconds> retry_after;
  std::string detail;   // for logs; never contains request headers
  std::int64_t rejected = 0;
};

namespace {

std::string host_header(const config::UpstreamUrl& url) {
  const bool default_port = (url.tls && url.port == 443) || (!url.tls && url.port == 80);
  const bool v6 = url.host.find(':') != std::string::npos;
  std::string host = v6 ? "[" + url.host + "]" : url.host;
  return default_port ? host : host + ":" + std::to_string(url.port);
}

// A short, printable excerpt of an upstream response body for logs.
std::string excerpt(std::string_view body) {
  std::string out;
  for (char c : body.substr(0, 256)) {
    out += (c >= 0x20 && c < 0x7f) ? c : '.';
  }
  return out;
}

}  // namespace

OtlpHttpExporter::OtlpHttpExporter(config::Exporter options)
    : options_(std::move(options)), log_(logger("exporter." + options_.name)),
      work_(asio::make_work_guard(ioc_)), ssl_(asio::ssl::context::tls_client),
      host_header_(host_header(options_.endpoint)), deadline_timer_(ioc_) {
  if (options_.auth.enabled) {
    authorization_ =
        "Basic " + base64_encode(options_.auth.username + ":" + options_.auth.password);
  }
}

OtlpHttpExporter::~OtlpHttpExporter() { shutdown(Clock::now()); }

void OtlpHttpExporter::start() {
  if (options_.endpoint.tls) {
    ssl_.set_options(asio::ssl::context::default_workarounds | asio::ssl::context::no_sslv2 |
                     asio::ssl::context::no_sslv3 | asio::ssl::context::no_tlsv1 |
                     asio::ssl::context::no_tlsv1_1);
    if (options_.tls.insecure_skip_verify) {
      ssl_.set_verify_mode(asio::ssl::verify_none);
      log_->warn("tls.insecure_skip_verify is on: the upstream's certificate is not checked");
    } else {
      ssl_.set_verify_mode(asio::ssl::verify_peer);
      beast::error_code ec;
      if (!options_.tls.ca_file.empty()) {
        ssl_.load_verify_file(options_.tls.ca_file, ec);
      } else {
        ssl_.set_default_verify_paths(ec);
      }
      if (ec) {
        throw std::runtime_error("exporter " + options_.name + ": cannot load CA certificates" +
                                 (options_.tls.ca_file.empty() ? "" : " from " +
                                  options_.tls.ca_file) + ": " + ec.message());
      }
    }
  }
  for (std::size_t i = 0; i < options_.max_in_flight; ++i) {
    workers_.push_back(std::make_unique<Worker>(ioc_));
  }
  running_workers_ = workers_.size();
  for (auto& w : workers_) {
    asio::co_spawn(ioc_, run_worker(*w), asio::detached);
  }
  log_->info("exporting to {} ({}gzip, {} connection(s){})", options_.endpoint.text,
             options_.gzip ? "" : "no ", options_.max_in_flight,
             options_.auth.enabled ? ", basic auth from " + options_.auth.password_source : "");
  thread_ = std::thread([this] { ioc_.run(); });
}

void OtlpHttpExporter::submit(BatchPtr batch) noexcept {
  add(stats_.queued_batches);
  asio::post(ioc_, [this, batch = std::move(batch)]() mutable {
    if (expired_) {
      drop(batch->spans, "exporter stopped");
      return;
    }
    queue_.push_back(std::move(batch));
    wake_one();
  });
}

void OtlpHttpExporter::shutdown(Clock::time_point deadline) noexcept {
  if (!thread_.joinable()) {
    return;
  }
  asio::post(ioc_, [this, deadline] {
    stopping_ = true;
    while (!idle_.empty()) {
      wake_one();
    }
    deadline_timer_.expires_at(deadline);
    deadline_timer_.async_wait([this](beast::error_code ec) {
      if (!ec) {
        expire();
      }
    });
    work_.reset();
  });
  thread_.join();
}

void OtlpHttpExporter::wake_one() {
  if (!idle_.empty()) {
    Worker* w = idle_.back();
    idle_.pop_back();
    w->wake.cancel();
  }
}

// The shutdown deadline passed: abandon what is left, counting it.
void OtlpHttpExporter::expire() {
  expired_ = true;
  for (auto& w : workers_) {
    w->wake.cancel();
    w->sleep.cancel();
    w->disconnect();
  }
  idle_.clear();
}

void OtlpHttpExporter::drop(std::uint32_t spans, const char* why) {
  add(stats_.failed_spans, spans);
  add(stats_.failed_requests);
  stats_.queued_batches.fetch_sub(1, std::memory_order_relaxed);
  std::uint64_t suppressed = 0;
  if (failure_log_.allow(suppressed)) {
    log_->error("dropped {} span(s): {} ({} more drops not logged)", spans, why, suppressed);
  }
}

asio::awaitable<void> OtlpHttpExporter::run_worker(Worker& w) {
  while (BatchPtr batch = co_await next_batch(w)) {
    co_await deliver(w, *batch);
  }
  w.disconnect();
  if (--running_workers_ == 0) {
    // Everything delivered or dropped: let the io context run out of work.
    deadline_timer_.cancel();
    while (!queue_.empty()) {
      drop(queue_.front()->spans, "exporter stopped");
      queue_.pop_front();
    }
  }
}

asio::awaitable<BatchPtr> OtlpHttpExporter::next_batch(Worker& w) {
  for (;;) {
    if (expired_) {
      co_return nullptr;
    }
    if (!queue_.empty()) {
      BatchPtr b = std::move(queue_.front());
      queue_.pop_front();
      co_return b;
    }
    if (stopping_) {
      co_return nullptr;
    }
    idle_.push_back(&w);
    w.wake.expires_at(Clock::time_point::max());
    co_await w.wake.async_wait(use_tuple);
    std::erase(idle_, &w);
  }
}

asio::awaitable<void> OtlpHttpExporter::deliver(Worker& w, const Batch& batch) {
  std::string body;
  if (options_.gzip) {
    gzip_.compress(batch.bytes, body);
  } else {
    body = batch.bytes;
  }
  Backoff backoff(options_.retry);
  const auto started = Clock::now();
  for (unsigned attempt = 0;; ++attempt) {
    if (attempt > 0) {
      add(stats_.retries);
    }
    Attempt a = co_await send_once(w, body);
    if (a.outcome == Attempt::kDelivered) {
      add(stats_.sent_spans, batch.spans);
      add(stats_.sent_requests);
      stats_.queued_batches.fetch_sub(1, std::memory_order_relaxed);
      if (a.rejected > 0) {
        add(stats_.rejected_spans, static_cast<std::uint64_t>(a.rejected));
        log_->warn("upstream accepted the batch but rejected {} span(s): {}", a.rejected,
                   a.detail);
      }
      co_return;
    }
    if (expired_) {
      drop(batch.spans, "shutdown_timeout reached before delivery");
      co_return;
    }
    if (a.outcome == Attempt::kPermanent) {
      drop(batch.spans, ("permanent error from upstream: " + a.detail).c_str());
      co_return;
    }
    if (!options_.retry.enabled) {
      drop(batch.spans, ("retryable error, retry disabled: " + a.detail).c_str());
      co_return;
    }
    const auto delay = a.retry_after ? *a.retry_after : backoff.next();
    if (Clock::now() - started + delay > options_.retry.max_elapsed) {
      drop(batch.spans, ("retry.max_elapsed reached; last error: " + a.detail).c_str());
      co_return;
    }
    std::uint64_t suppressed = 0;
    if (retry_log_.allow(suppressed)) {
      log_->warn("export failed ({}); retrying in {} ms ({} more retries not logged)", a.detail,
                 delay.count(), suppressed);
    }
    w.sleep.expires_after(delay);
    co_await w.sleep.async_wait(use_tuple);
    if (expired_) {
      drop(batch.spans, "shutdown_timeout reached before delivery");
      co_return;
    }
  }
}

asio::awaitable<bool> OtlpHttpExporter::connect(Worker& w, Clock::time_point deadline,
                                                std::string& error) {
  const auto& url = options_.endpoint;
  tcp::resolver resolver(ioc_);
  auto [rec, results] = co_await resolver.async_resolve(url.host, std::to_string(url.port),
                                                         use_tuple);
  if (rec) {
    error = "cannot resolve " + url.host + ": " + rec.message();
    co_return false;
  }
  if (url.tls) {
    w.tls.emplace(ioc_, ssl_);
    const std::string& sni = options_.tls.server_name.empty() ? url.host : options_.tls.server_name;
    if (!SSL_set_tlsext_host_name(w.tls->native_handle(), sni.c_str())) {
      error = "cannot set TLS server name";
      w.disconnect();
      co_return false;
    }
    if (!options_.tls.insecure_skip_verify) {
      w.tls->set_verify_callback(asio::ssl::host_name_verification(sni));
    }
  } else {
    w.plain.emplace(ioc_);
  }
  w.transport().expires_at(deadline);
  auto [cec, ep] = co_await w.transport().async_connect(results, use_tuple);
  (void)ep;
  if (cec) {
    error = "cannot connect to " + url.host + ":" + std::to_string(url.port) + ": " +
            cec.message();
    w.disconnect();
    co_return false;
  }
  if (w.tls) {
    auto [hec] = co_await w.tls->async_handshake(asio::ssl::stream_base::client, use_tuple);
    if (hec) {
      error = "TLS handshake with " + url.host + " failed: " + hec.message();
      w.disconnect();
      co_return false;
    }
  }
  co_return true;
}

asio::awaitable<OtlpHttpExporter::Attempt> OtlpHttpExporter::send_once(Worker& w,
                                                                      std::string& body) {
  Attempt a;
  const auto deadline = Clock::now() + options_.timeout;
  // A kept-alive connection the upstream closed while idle fails at once: that costs one
  // immediate reconnect, not a retry with backoff.
  for (bool reused = w.connected();; reused = false) {
    if (!w.connected()) {
      std::string error;
      if (!co_await connect(w, deadline, error)) {
        a.detail = error;
        co_return a;
      }
    }
    w.transport().expires_at(deadline);
    a = co_await exchange(w, body);
    if (!(reused && a.status == 0 && a.outcome == Attempt::kRetryable)) {
      co_return a;
    }
  }
}

asio::awaitable<OtlpHttpExporter::Attempt> OtlpHttpExporter::exchange(Worker& w,
                                                                     std::string& body) {
  Attempt a;
  http::request<http::string_body> req{http::verb::post, options_.endpoint.traces_target, 11};
  req.set(http::field::host, host_header_);
  req.set(http::field::user_agent, "spanrelay/" SPANRELAY_VERSION);
  req.set(http::field::content_type, "application/x-protobuf");
  if (options_.gzip) {
    req.set(http::field::content_encoding, "gzip");
  }
  for (const auto& [k, v] : options_.headers) {
    req.set(k, v);
  }
  if (!authorization_.empty()) {
    req.set(http::field::authorization, authorization_);
  }
  req.keep_alive(true);
  req.body() = std::move(body);
  req.prepare_payload();

  beast::error_code ec;
  http::response_parser<http::string_body> parser;
  parser.body_limit(1024 * 1024);
  beast::flat_buffer buffer;
  if (w.tls) {
    std::tie(ec, std::ignore) = co_await http::async_write(*w.tls, req, use_tuple);
    if (!ec) {
      std::tie(ec, std::ignore) = co_await http::async_read(*w.tls, buffer, parser, use_tuple);
    }
  } else {
    std::tie(ec, std::ignore) = co_await http::async_write(*w.plain, req, use_tuple);
    if (!ec) {
      std::tie(ec, std::ignore) = co_await http::async_read(*w.plain, buffer, parser, use_tuple);
    }
  }
  body = std::move(req.body());  // reused by the next attempt
  if (ec) {
    w.disconnect();
    a.detail = ec == beast::error::timeout
                   ? "no response within " + std::to_string(options_.timeout.count()) + " ms"
                   : "request failed: " + ec.message();
    co_return a;
  }
  auto& res = parser.get();
  if (!res.keep_alive()) {
    w.disconnect();
  }
  a.status = res.result_int();
  if (a.status >= 200 && a.status < 300) {
    a.outcome = Attempt::kDelivered;
    std::string message;
    if (res.body().size() > 0 && otlp::parse_export_response(res.body(), a.rejected, message)) {
      a.detail = message;
    }
    co_return a;
  }
  a.detail = "HTTP " + std::to_string(a.status) + " " + excerpt(res.body());
  if (is_retryable_http_status(a.status)) {
    a.outcome = Attempt::kRetryable;
    auto it = res.find(http::field::retry_after);
    if (it != res.end()) {
      a.retry_after = parse_retry_after(it->value(), std::chrono::system_clock::now());
    }
  } else {
    a.outcome = Attempt::kPermanent;
  }
  co_return a;
}

}  // namespace spanrelay
