#include "exporters/otlp_http/http_sender.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>

#include <optional>

#include "exporters/retry.hpp"
#include "google/rpc/status.pb.h"
#include "otlp/responses.hpp"

namespace spanrelay {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using Clock = std::chrono::steady_clock;
constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);

struct HttpSender::Connection {
  std::string sent_authorization;  // what the last request carried (secret)
  std::optional<beast::tcp_stream> plain;
  std::optional<beast::ssl_stream<beast::tcp_stream>> tls;

  bool open() const { return plain.has_value() || tls.has_value(); }
  beast::tcp_stream& transport() { return tls ? beast::get_lowest_layer(*tls) : *plain; }
  void reset() {
    if (open()) {
      beast::error_code ignored;
      transport().socket().shutdown(tcp::socket::shutdown_both, ignored);
      transport().close();
    }
    tls.reset();
    plain.reset();
  }
};

namespace {

std::string host_header(const config::UpstreamUrl& url) {
  const bool default_port = (url.tls && url.port == 443) || (!url.tls && url.port == 80);
  return default_port ? config::url_host(url.host) : config::host_port(url.host, url.port);
}

// A short, printable excerpt of an upstream response body for logs.
std::string excerpt(std::string_view body) {
  std::string out;
  for (char c : body.substr(0, 256)) {
    out += (c >= 0x20 && c < 0x7f) ? c : '.';
  }
  return out;
}

// What an error answer says: the message of a google.rpc.Status (the OTLP error body), else
// the body as printable text.
std::string error_message(const http::response<http::string_body>& res) {
  const auto type = res[http::field::content_type];
  if (type.starts_with("application/x-protobuf") || type.starts_with("application/protobuf")) {
    google::rpc::Status status;
    if (status.ParseFromString(res.body()) && !status.message().empty()) {
      return excerpt(status.message());
    }
  }
  return excerpt(res.body());
}

// "10s", "1500ms".
std::string format_timeout(std::chrono::milliseconds t) {
  return t.count() % 1000 == 0 ? std::to_string(t.count() / 1000) + "s"
                               : std::to_string(t.count()) + "ms";
}

bool is_tls_error(const beast::error_code& ec) {
  return ec.category() == asio::error::get_ssl_category();
}

struct Exchanged {
  beast::error_code ec;
  bool wrote = false;  // the whole request went out
  bool early = false;  // the answer came while the request was still being sent
};

// Writes the request and reads the answer. An upstream may answer before it has read the
// whole body (a 413 decided from Content-Length) and close the connection: the write then
// fails, but the answer may already have arrived, so it is read before the failure counts.
template <class Stream>
asio::awaitable<Exchanged> write_then_read(Stream& stream,
                                           http::request<http::string_body>& req,
                                           beast::flat_buffer& buffer,
                                           http::response_parser<http::string_body>& parser) {
  Exchanged x;
  std::tie(x.ec, std::ignore) = co_await http::async_write(stream, req, use_tuple);
  if (!x.ec) {
    x.wrote = true;
    std::tie(x.ec, std::ignore) = co_await http::async_read(stream, buffer, parser, use_tuple);
    co_return x;
  }
  if (x.ec == beast::error::timeout || is_tls_error(x.ec)) {
    co_return x;
  }
  auto [rec, n] = co_await http::async_read(stream, buffer, parser, use_tuple);
  (void)n;
  if (!rec) {
    x.ec = {};
    x.early = true;
  }
  co_return x;
}

FailureClass class_of_status(unsigned status) {
  if (status == 401 || status == 403) {
    return FailureClass::kAuth;
  }
  // Anything else that is neither 2xx nor 5xx blames the request: 4xx, and a 1xx or 3xx (a
  // redirect means the endpoint is wrong) too.
  return status >= 500 ? FailureClass::kServer : FailureClass::kClient;
}

}  // namespace

HttpSender::HttpSender(asio::io_context& ioc, const config::Exporter& options)
    : ioc_(ioc), options_(options), log_(logger("exporter." + options.name)),
      ssl_(asio::ssl::context::tls_client), credentials_(options.auth, log_),
      host_header_(host_header(options.endpoint)) {
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
    connections_.push_back(std::make_unique<Connection>());
  }
}

HttpSender::~HttpSender() = default;

std::string HttpSender::describe() const {
  return "POST " + options_.endpoint.text + " -> " + options_.endpoint.traces_target + " (" +
         (options_.gzip ? "gzip" : "no compression") +
         (options_.auth.enabled ? ", basic auth from " + options_.auth.password_source : "") +
         ")";
}

std::string HttpSender::prepare(const Batch& batch) {
  if (!options_.gzip) {
    return batch.bytes;
  }
  std::string body;
  gzip_.compress(batch.bytes, body);
  return body;
}

void HttpSender::cancel_all() {
  for (auto& c : connections_) {
    c->reset();
  }
}

void HttpSender::close(std::size_t slot) { connections_.at(slot)->reset(); }

bool HttpSender::refresh_credentials(std::size_t slot) {
  credentials_.refresh();
  return credentials_.authorization() != connections_.at(slot)->sent_authorization;
}

asio::awaitable<bool> HttpSender::connect(Connection& c, Clock::time_point deadline,
                                          Attempt& failed) {
  const auto& url = options_.endpoint;
  failed.outcome = Attempt::kRetryable;
  failed.failure = FailureClass::kConnection;
  tcp::resolver resolver(ioc_);
  auto [rec, results] = co_await resolver.async_resolve(url.host, std::to_string(url.port),
                                                         use_tuple);
  if (rec) {
    failed.detail = "cannot resolve " + url.host + ": " + rec.message();
    co_return false;
  }
  const std::string& name = options_.tls.server_name.empty() ? url.host : options_.tls.server_name;
  if (url.tls) {
    c.tls.emplace(ioc_, ssl_);
    if (!SSL_set_tlsext_host_name(c.tls->native_handle(), name.c_str())) {
      failed.failure = FailureClass::kTls;
      failed.detail = "TLS: cannot set the server name " + name;
      c.reset();
      co_return false;
    }
    // OpenSSL verifies the name (an address against the IP SANs) with the chain, and a
    // mismatch is its verify result, named in the failure.
    beast::error_code not_ip;
    asio::ip::make_address(name, not_ip);
    X509_VERIFY_PARAM* verify = SSL_get0_param(c.tls->native_handle());
    if (!options_.tls.insecure_skip_verify &&
        (not_ip ? X509_VERIFY_PARAM_set1_host(verify, name.c_str(), name.size())
                : X509_VERIFY_PARAM_set1_ip_asc(verify, name.c_str())) != 1) {
      failed.failure = FailureClass::kTls;
      failed.detail = "TLS: cannot verify the server name " + name;
      c.reset();
      co_return false;
    }
  } else {
    c.plain.emplace(ioc_);
  }
  c.transport().expires_at(deadline);
  auto [cec, ep] = co_await c.transport().async_connect(results, use_tuple);
  (void)ep;
  if (cec) {
    // A connect that times out is a connection failure (unreachable), not a slow answer.
    failed.detail = "cannot connect to " + host_header_ + ": " +
                    (cec == beast::error::timeout
                         ? "no answer within " + format_timeout(options_.timeout)
                         : cec.message());
    c.reset();
    co_return false;
  }
  if (c.tls) {
    auto [hec] = co_await c.tls->async_handshake(asio::ssl::stream_base::client, use_tuple);
    if (hec) {
      if (hec == beast::error::timeout) {
        failed.failure = FailureClass::kTimeout;
        failed.detail = "TLS handshake with " + host_header_ + ": timeout after " +
                        format_timeout(options_.timeout);
      } else if (is_tls_error(hec)) {
        failed.failure = FailureClass::kTls;
        failed.detail = "TLS handshake with " + host_header_ + " failed: " + hec.message();
        if (const long v = SSL_get_verify_result(c.tls->native_handle()); v != X509_V_OK) {
          failed.detail += std::string(": ") + X509_verify_cert_error_string(v);
        }
      } else {  // closed or reset by the server during the handshake
        failed.detail = "connection to " + host_header_ + " lost in the TLS handshake: " +
                        hec.message();
      }
      c.reset();
      co_return false;
    }
  }
  co_return true;
}

asio::awaitable<Attempt> HttpSender::send(std::size_t slot, std::string& payload) {
  Connection& c = *connections_.at(slot);
  const auto deadline = Clock::now() + options_.timeout;
  const bool reused = c.open();
  if (!reused) {
    Attempt failed;
    if (!co_await connect(c, deadline, failed)) {
      co_return failed;
    }
  }
  c.transport().expires_at(deadline);
  Attempt a = co_await exchange(c, payload);
  a.stale_connection = a.stale_connection && reused;
  co_return a;
}

asio::awaitable<Attempt> HttpSender::exchange(Connection& c, std::string& body) {
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
  if (credentials_.enabled()) {
    c.sent_authorization = credentials_.authorization();
    req.set(http::field::authorization, c.sent_authorization);
  }
  req.keep_alive(true);
  req.body() = std::move(body);
  req.prepare_payload();

  http::response_parser<http::string_body> parser;
  parser.body_limit(1024 * 1024);
  beast::flat_buffer buffer;
  const Exchanged x = c.tls ? co_await write_then_read(*c.tls, req, buffer, parser)
                            : co_await write_then_read(*c.plain, req, buffer, parser);
  const beast::error_code ec = x.ec;
  const bool wrote = x.wrote;
  body = std::move(req.body());  // kept for the next attempt
  if (ec) {
    c.reset();
    const bool timeout = ec == beast::error::timeout;
    // The upstream closed an idle kept-alive connection: the write fails, or the read ends
    // before any byte of an answer.
    a.stale_connection = !timeout && (!wrote || ec == http::error::end_of_stream ||
                                      ec == asio::error::eof ||
                                      ec == asio::error::connection_reset);
    if (timeout) {
      a.failure = FailureClass::kTimeout;
      a.detail = "timeout after " + format_timeout(options_.timeout) + " waiting for " +
                 host_header_;
    } else if (is_tls_error(ec)) {
      a.failure = FailureClass::kTls;
      a.detail = "TLS: " + ec.message();
    } else {
      a.failure = FailureClass::kConnection;
      a.detail = (a.stale_connection ? "connection closed before the response: "
                                     : "request failed: ") +
                 ec.message();
    }
    co_return a;
  }
  auto& res = parser.get();
  if (!res.keep_alive() || x.early) {
    c.reset();  // after an early answer the rest of the request was never sent
  }
  const unsigned status = res.result_int();
  a.status = static_cast<int>(status);
  if (status >= 200 && status < 300) {
    a.outcome = Attempt::kDelivered;
    std::string message;
    if (!res.body().empty() && otlp::parse_export_response(res.body(), a.rejected, message)) {
      a.detail = message;
    }
    co_return a;
  }
  credentials_.redact(res.body());  // an upstream or proxy may echo the request's headers
  a.failure = class_of_status(status);
  const auto reason = res.reason().empty() ? http::obsolete_reason(res.result()) : res.reason();
  a.detail = "HTTP " + std::to_string(status) + " " + std::string(reason.data(), reason.size());
  if (std::string message = error_message(res); !message.empty()) {
    a.detail += ": " + message;
  }
  a.too_large = status == 413 ||
                (status == 429 && res.body().find("larger than max") != std::string::npos);
  if (is_retryable_http_status(status)) {
    a.outcome = Attempt::kRetryable;
    if (auto it = res.find(http::field::retry_after); it != res.end()) {
      a.retry_after = parse_retry_after(it->value(), std::chrono::system_clock::now());
    }
  } else {
    a.outcome = Attempt::kPermanent;
  }
  co_return a;
}

}  // namespace spanrelay
