#pragma once
// OTLP/HTTP protobuf over HTTP/1.1 or HTTPS: one kept-alive connection per worker slot,
// gzip, Basic auth (re-read from a rotated password_file) and free headers. Statuses
// 429/502/503/504 and transport errors are retryable (with Retry-After), every other non-2xx is
// permanent.
//
// Failure classes: 401/403 auth; other 1xx/3xx/4xx (413, 429, a redirect) 4xx; 5xx 5xx; no
// answer within `timeout` timeout; resolving, connecting (refused, unreachable, or no answer to
// the SYN within `timeout`), and a connection reset or closed before the answer, connection;
// a TLS handshake, certificate or TLS record failure, tls.
//
// An answer sent before the upstream read the whole body (a 413 decided from Content-Length,
// then a close) fails the write; it is still read and classified like any other answer.

#include <boost/asio/io_context.hpp>
#include <boost/asio/ssl/context.hpp>

#include <memory>
#include <vector>

#include "common/log.hpp"
#include "config/config.hpp"
#include "exporters/credentials.hpp"
#include "exporters/sender.hpp"
#include "otlp/compression.hpp"

namespace spanrelay {

class HttpSender final : public Sender {
 public:
  // Throws std::runtime_error when the TLS set-up fails (unreadable CA file).
  HttpSender(boost::asio::io_context& ioc, const config::Exporter& options);
  ~HttpSender() override;

  std::string prepare(const Batch& batch) override;
  boost::asio::awaitable<Attempt> send(std::size_t slot, std::string& payload) override;
  void cancel_all() override;
  void close(std::size_t slot) override;
  bool refresh_credentials(std::size_t slot) override;
  std::string describe() const override;

 private:
  struct Connection;

  // False with `failed` filled in (class, detail) when no connection could be made.
  boost::asio::awaitable<bool> connect(Connection& c,
                                       std::chrono::steady_clock::time_point deadline,
                                       Attempt& failed);
  boost::asio::awaitable<Attempt> exchange(Connection& c, std::string& body);

  boost::asio::io_context& ioc_;
  const config::Exporter& options_;
  std::shared_ptr<spdlog::logger> log_;
  boost::asio::ssl::context ssl_;
  Credentials credentials_;  // the "Basic ..." header: secret, never logged
  std::string host_header_;
  otlp::GzipCompressor gzip_;
  std::vector<std::unique_ptr<Connection>> connections_;
};

}  // namespace spanrelay
