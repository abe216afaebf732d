#pragma once
// A small HTTP/1.1 server on Boost.Beast: keep-alive, a timeout on every read and idle wait,
// caps on connections, header and body size, and "Expect: 100-continue". It listens on TCP or
// on a Unix domain socket (same behaviour and limits). It parses and frames; what a request
// means is the Handler's business. Used by the OTLP receiver and the admin endpoint.

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/beast/http.hpp>

#include <atomic>
#include <cstddef>
#include <functional>
#include <memory>
#include <mutex>
#include <string>

#include "config/config.hpp"

namespace spanrelay::http {

namespace beast_http = boost::beast::http;
using Request = beast_http::request<beast_http::string_body>;
using Response = beast_http::response<beast_http::string_body>;

struct ServerLimits {
  std::size_t max_connections = 1024;
  std::size_t max_header_bytes = 16 * 1024;
  std::size_t max_body_bytes = 16 * 1024 * 1024;  // on the wire
  config::Duration read_timeout = std::chrono::seconds(30);
  config::Duration idle_timeout = std::chrono::seconds(120);
};

// Connection pressure, counted since start (read from any thread). At max_connections a new
// connection closes the longest-idle keep-alive connection (it loses nothing) to make room; only
// when no connection is idle is the new one refused.
struct ServerStats {
  std::atomic<std::uint64_t> idle_evictions{0};       // idle keep-alive connections closed
  std::atomic<std::uint64_t> connections_refused{0};  // new connections closed, all were busy
};

namespace detail {
struct Connection;  // one accepted connection (server.cpp)
// Connections waiting for the next request on a kept-alive connection, longest-idle first.
// Intrusive doubly linked list: O(1) insert, erase and pop of the oldest.
struct IdleList {
  std::mutex mutex;
  Connection* head = nullptr;
  Connection* tail = nullptr;
};
}  // namespace detail

// What went wrong before a whole request could be handed over.
enum class RequestProblem { kNone, kBodyTooLarge };

// Called on the server's io thread for each request (headers always present; body empty when
// problem != kNone). `peer` is the client's address ("127.0.0.1:50123", or the socket path's
// "unix" for a Unix socket), for logs. Must not block. Returns the response to send.
using Handler =
    std::function<Response(Request& request, RequestProblem problem, const std::string& peer)>;

class Server {
 public:
  Server(boost::asio::io_context& ioc, std::string name, config::ListenEndpoint endpoint,
         ServerLimits limits, Handler handler);
  ~Server();

  // Binds and starts accepting. Throws std::runtime_error naming the endpoint on failure.
  // A Unix socket file left by an earlier run is replaced; the new one is made mode 0666.
  void start();
  // Closes the listener (and removes the Unix socket file); open connections finish their
  // current request and close.
  void stop_accepting();
  // The bound TCP port (useful with port 0); 0 for a Unix socket.
  std::uint16_t port() const noexcept { return port_; }
  std::size_t connections() const noexcept { return state_->connections.load(); }
  const ServerStats& stats() const noexcept { return state_->stats; }
  // Kept-alive connections waiting for their next request now (walks the list: for tests).
  std::size_t idle_connections() const;

 private:
  struct State {
    std::atomic<std::size_t> connections{0};
    std::atomic<bool> closing{false};
    ServerStats stats;
    detail::IdleList idle;
  };
  boost::asio::io_context& ioc_;
  std::string name_;
  config::ListenEndpoint endpoint_;
  ServerLimits limits_;
  Handler handler_;
  // One accept loop per listener, on either protocol.
  template <typename Protocol>
  void spawn_accept_loop(typename Protocol::acceptor& acceptor);
  void start_tcp();
  void start_unix();

  std::shared_ptr<State> state_ = std::make_shared<State>();
  std::unique_ptr<boost::asio::ip::tcp::acceptor> tcp_acceptor_;
  std::unique_ptr<boost::asio::local::stream_protocol::acceptor> unix_acceptor_;
  bool owns_socket_file_ = false;  // the Unix socket file is ours to remove
  std::uint16_t port_ = 0;
};

}  // namespace spanrelay::http
