#pragma once
// OTLP/HTTP protobuf over HTTP/1.1 or HTTPS: one kept-alive connection per worker slot,
// gzip, Basic auth and free headers. Statuses 429/502/503/504 and transport errors are
// retryable (with Retry-After), every other non-2xx is permanent.

#include <boost/asio/io_context.hpp>
#include <boost/asio/ssl/context.hpp>

#include <memory>
#include <vector>

#include "common/log.hpp"
#include "config/config.hpp"
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
  std::string describe() const override;

 private:
  struct Connection;

  boost::asio::awaitable<bool> connect(Connection& c,
                                       std::chrono::steady_clock::time_point deadline,
                                       std::string& error);
  boost::asio::awaitable<Attempt> exchange(Connection& c, std::string& body);

  boost::asio::io_context& ioc_;
  const config::Exporter& options_;
  std::shared_ptr<spdlog::logger> log_;
  boost::asio::ssl::context ssl_;
  std::string authorization_;  // "Basic ...": secret, never logged
  std::string host_header_;
  otlp::GzipCompressor gzip_;
  std::vector<std::unique_ptr<Connection>> connections_;
};

}  // namespace spanrelay
