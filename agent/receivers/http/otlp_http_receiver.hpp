#pragma once
// OTLP/HTTP receiver: POST /v1/traces, protobuf or JSON, gzip/deflate or identity.

#include <memory>

#include "common/log.hpp"
#include "config/config.hpp"
#include "receivers/http/server.hpp"
#include "receivers/intake.hpp"

namespace spanrelay::http {

class OtlpHttpReceiver {
 public:
  OtlpHttpReceiver(boost::asio::io_context& ioc, const config::HttpReceiver& options,
                   Intake& intake);
  void start() { server_.start(); }
  void stop_accepting() { server_.stop_accepting(); }
  std::uint16_t port() const noexcept { return server_.port(); }
  const ServerStats& connection_stats() const noexcept { return server_.stats(); }

  // The request handler, exposed for tests.
  Response handle(Request& request, RequestProblem problem);

 private:
  Response timed(Request& request, RequestProblem problem, const std::string& peer);

  config::HttpReceiver options_;
  Intake& intake_;
  Server server_;
  std::shared_ptr<spdlog::logger> log_;
};

}  // namespace spanrelay::http
