#include "admin/admin_server.hpp"

namespace spanrelay {

namespace beast_http = http::beast_http;

AdminServer::AdminServer(boost::asio::io_context& ioc, const config::ListenEndpoint& endpoint,
                         std::function<std::string()> render_metrics,
                         std::function<bool()> healthy)
    : render_metrics_(std::move(render_metrics)), healthy_(std::move(healthy)),
      server_(ioc, "admin", endpoint,
              http::ServerLimits{.max_connections = 64,
                                 .max_header_bytes = 8 * 1024,
                                 .max_body_bytes = 0,
                                 .read_timeout = std::chrono::seconds(10),
                                 .idle_timeout = std::chrono::seconds(60)},
              [this](http::Request& req, http::RequestProblem) { return handle(req); }) {}

http::Response AdminServer::handle(http::Request& req) {
  http::Response res{beast_http::status::ok, req.version()};
  res.set(beast_http::field::content_type, "text/plain; charset=utf-8");
  std::string_view target = req.target();
  target = target.substr(0, target.find('?'));
  if (req.method() != beast_http::verb::get && req.method() != beast_http::verb::head) {
    res.result(beast_http::status::method_not_allowed);
    res.set(beast_http::field::allow, "GET, HEAD");
    res.body() = "use GET\n";
  } else if (target == "/metrics") {
    res.set(beast_http::field::content_type, "text/plain; version=0.0.4; charset=utf-8");
    res.body() = render_metrics_();
  } else if (target == "/healthz" || target == "/health") {
    const bool ok = healthy_();
    res.result(ok ? beast_http::status::ok : beast_http::status::service_unavailable);
    res.body() = ok ? "ok\n" : "shutting down\n";
  } else {
    res.result(beast_http::status::not_found);
    res.body() = "not found: try /metrics or /healthz\n";
  }
  return res;
}

}  // namespace spanrelay
