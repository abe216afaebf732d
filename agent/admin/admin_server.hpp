#pragma once
// Admin endpoint: GET /metrics (Prometheus text format) and GET /healthz (200 while serving,
// 503 once shutting down).

#include <functional>
#include <string>

#include "receivers/http/server.hpp"

namespace spanrelay {

class AdminServer {
 public:
  AdminServer(boost::asio::io_context& ioc, const config::ListenEndpoint& endpoint,
              std::function<std::string()> render_metrics, std::function<bool()> healthy);
  void start() { server_.start(); }
  void stop_accepting() { server_.stop_accepting(); }

 private:
  http::Response handle(http::Request& req);

  std::function<std::string()> render_metrics_;
  std::function<bool()> healthy_;
  http::Server server_;
};

}  // namespace spanrelay
