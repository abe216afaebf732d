#include "admin/admin_server.hpp"

#include "admin/status_page.hpp"

namespace spanrelay {

namespace beast_http = http::beast_http;

AdminServer::AdminServer(boost::asio::io_context& ioc, const config::ListenEndpoint& endpoint,
                         AdminHandlers handlers)
    : handlers_(std::move(handlers)),
      server_(ioc, "admin", endpoint,
              http::ServerLimits{.max_connections = 64,
                                 .max_header_bytes = 8 * 1024,
                                 .max_body_bytes = 0,
                                 .read_timeout = std::chrono::seconds(10),
                                 .idle_timeout = std::chrono::seconds(60)},
              [this](http::Request& req, http::RequestProblem, const std::string&) {
                return handle(req);
              }) {}

http::Response AdminServer::handle(http::Request& req) {
  http::Response res{beast_http::status::ok, req.version()};
  res.set(beast_http::field::content_type, "text/plain; charset=utf-8");
  res.set(beast_http::field::cache_control, "no-store");
  std::string_view target = req.target();
  target = target.substr(0, target.find('?'));
  auto probe = [&](const Probe& p) {
    res.result(p.ok ? beast_http::status::ok : beast_http::status::service_unavailable);
    res.body() = p.reason + "\n";
  };
  if (req.method() != beast_http::verb::get && req.method() != beast_http::verb::head) {
    res.result(beast_http::status::method_not_allowed);
    res.set(beast_http::field::allow, "GET, HEAD");
    res.body() = "use GET\n";
  } else if (target == "/metrics") {
    res.set(beast_http::field::content_type, "text/plain; version=0.0.4; charset=utf-8");
    res.body() = handlers_.metrics();
  } else if (target == "/healthz" || target == "/health") {
    probe(handlers_.live());
  } else if (target == "/readyz") {
    probe(handlers_.ready());
  } else if (target == "/status.json") {
    res.set(beast_http::field::content_type, "application/json");
    res.body() = handlers_.status_json();
  } else if (target == "/" || target == "/status") {
    res.set(beast_http::field::content_type, "text/html; charset=utf-8");
    res.body() = std::string(status_page_html());
  } else {
    res.result(beast_http::status::not_found);
    res.body() = "not found: try /, /status.json, /metrics, /healthz or /readyz\n";
  }
  return res;
}

}  // namespace spanrelay
