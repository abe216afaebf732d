#pragma once
// Admin endpoint, for probes, scrapers and people:
//   GET /healthz      liveness: 200 while the pipeline makes progress, 503 when it is stuck
//                     (the systemd watchdog would fire) or stopping
//   GET /readyz       readiness: 200 when the receivers listen and spans can be taken, 503 with
//                     a one-line reason otherwise. The upstream's health is never part of it: a
//                     sidecar's readiness gates its whole pod.
//   GET /metrics      Prometheus text format
//   GET /status.json  receivers and exporters right now (docs/operations.md)
//   GET /             a self-contained status page that renders /status.json
// Handlers run on the admin server's io thread and must not block.

#include <functional>
#include <string>
#include <utility>

#include "receivers/http/server.hpp"

namespace spanrelay {

// A probe's answer: ok, and a one-line reason ("ready", "draining", ...).
struct Probe {
  bool ok = false;
  std::string reason;
};

struct AdminHandlers {
  std::function<std::string()> metrics;
  std::function<std::string()> status_json;
  std::function<Probe()> live;
  std::function<Probe()> ready;
};

class AdminServer {
 public:
  AdminServer(boost::asio::io_context& ioc, const config::ListenEndpoint& endpoint,
              AdminHandlers handlers);
  void start() { server_.start(); }
  void stop_accepting() { server_.stop_accepting(); }
  std::uint16_t port() const noexcept { return server_.port(); }

 private:
  http::Response handle(http::Request& req);

  AdminHandlers handlers_;
  http::Server server_;
};

}  // namespace spanrelay
