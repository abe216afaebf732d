#include "receivers/http/server.hpp"

#include <type_traits>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>

#include <functional>
#include <mutex>
#include <stdexcept>
#include <utility>

#include "common/log.hpp"
#include "common/unix_socket.hpp"

namespace spanrelay::http {

namespace asio = boost::asio;
namespace beast = boost::beast;
using tcp = asio::ip::tcp;
using unix_socket = asio::local::stream_protocol;
constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);

namespace detail {

// Touched under IdleList::mutex: the links, `idle` and `evicted`. `cancel` only on the
// connection's strand (set by serve during a keep-alive wait, called by the posted eviction).
struct Connection : std::enable_shared_from_this<Connection> {
  explicit Connection(asio::any_io_executor ex) : executor(std::move(ex)) {}
  asio::any_io_executor executor;
  Connection* prev = nullptr;
  Connection* next = nullptr;
  bool idle = false;     // linked in the idle list
  bool evicted = false;  // taken off the idle list to make room: close
  std::function<void()> cancel;
};

}  // namespace detail

namespace {

using detail::Connection;
using detail::IdleList;

void push_idle(IdleList& list, Connection& c) {
  c.prev = list.tail;
  c.next = nullptr;
  (list.tail ? list.tail->next : list.head) = &c;
  list.tail = &c;
  c.idle = true;
}

void unlink_idle(IdleList& list, Connection& c) {
  (c.prev ? c.prev->next : list.head) = c.next;
  (c.next ? c.next->prev : list.tail) = c.prev;
  c.prev = c.next = nullptr;
  c.idle = false;
}

// Takes the longest-idle connection off the list and has it close on its strand. False when no
// connection is idle.
bool evict_oldest_idle(IdleList& list) {
  std::shared_ptr<Connection> victim;
  {
    std::lock_guard lock(list.mutex);
    if (list.head == nullptr) {
      return false;
    }
    victim = list.head->shared_from_this();  // alive: serve unlinks it before it goes
    unlink_idle(list, *victim);
    victim->evicted = true;
  }
  asio::post(victim->executor, [victim] {
    if (victim->cancel) {
      victim->cancel();
    }
  });
  return true;
}

Response plain_error(beast_http::status status, std::string text, unsigned version) {
  Response res{status, version};
  res.set(beast_http::field::content_type, "text/plain");
  res.body() = std::move(text);
  res.keep_alive(false);
  res.prepare_payload();
  return res;
}

// One connection, from accept to close. Requests on it are handled one after another.
// Protocol is tcp or local::stream_protocol: nothing below depends on which.
template <typename Protocol>
asio::awaitable<void> serve(typename Protocol::socket socket, ServerLimits limits,
                            Handler& handler, std::shared_ptr<void> keep_server_state_alive,
                            std::atomic<bool>& closing, IdleList& idle,
                            std::shared_ptr<Connection> conn,
                            std::shared_ptr<spdlog::logger> log) {
  (void)keep_server_state_alive;
  std::string peer = "unix";
  if constexpr (std::is_same_v<Protocol, asio::ip::tcp>) {
    beast::error_code ec;
    const auto remote = socket.remote_endpoint(ec);
    peer = ec ? "?" : config::host_port(remote.address().to_string(), remote.port());
  }
  beast::basic_stream<Protocol> stream(std::move(socket));
  beast::flat_buffer buffer;
  // Before `stream` goes, even when the frame is destroyed mid-wait (io_context torn down): an
  // eviction posted late finds nothing to cancel, and the idle list never points at it.
  struct ForgetStream {
    IdleList& list;
    Connection& c;
    ~ForgetStream() {
      c.cancel = nullptr;
      std::lock_guard lock(list.mutex);
      if (c.idle) {
        unlink_idle(list, c);
      }
    }
  } forget_stream{idle, *conn};
  bool served_one = false;
  bool evicted = false;
  for (;;) {
    // Idle wait for the first byte of the next request, then the whole request must arrive
    // within read_timeout (slow senders are cut off). Between requests on a kept-alive
    // connection the wait is in the idle list: a new connection at max_connections may close
    // it (it holds no request).
    if (buffer.size() == 0) {
      stream.expires_after(limits.idle_timeout);
      if (served_one) {
        // Set only for this wait: an eviction that reaches the strand after a request's first
        // bytes came in leaves the request alone.
        conn->cancel = [&stream] { stream.cancel(); };
        std::lock_guard lock(idle.mutex);
        push_idle(idle, *conn);
      }
      auto [ec, n] = co_await stream.async_read_some(buffer.prepare(4096), use_tuple);
      if (served_one) {
        conn->cancel = nullptr;
        std::lock_guard lock(idle.mutex);
        if (conn->idle) {
          unlink_idle(idle, *conn);
        }
        evicted = conn->evicted;
      }
      if (ec) {
        break;
      }
      buffer.commit(n);
      // Evicted as the request's first bytes came in: serve it (nothing is lost), then close.
    }
    stream.expires_after(limits.read_timeout);
    beast_http::request_parser<beast_http::string_body> parser;
    parser.header_limit(static_cast<std::uint32_t>(limits.max_header_bytes));
    parser.body_limit(limits.max_body_bytes);
    auto [hec, hn] = co_await beast_http::async_read_header(stream, buffer, parser, use_tuple);
    (void)hn;
    RequestProblem problem = RequestProblem::kNone;
    if (hec == beast_http::error::body_limit) {
      // Content-Length alone is over the limit: answer 413 in the request's encoding.
      problem = RequestProblem::kBodyTooLarge;
    } else if (hec) {
      if (hec == beast_http::error::header_limit) {
        auto res = plain_error(beast_http::status::request_header_fields_too_large,
                               "request headers too large\n", 11);
        co_await beast_http::async_write(stream, res, use_tuple);
      } else if (hec != beast::error::timeout && hec != asio::error::eof &&
                 hec != asio::error::connection_reset && hec != beast_http::error::end_of_stream) {
        auto res = plain_error(beast_http::status::bad_request,
                               "malformed HTTP request: " + hec.message() + "\n", 11);
        co_await beast_http::async_write(stream, res, use_tuple);
      }
      break;
    }
    const auto& header = parser.get();
    if (problem == RequestProblem::kNone &&
        header[beast_http::field::expect] == "100-continue") {
      // Reject an announced oversized body before the client sends it.
      if (parser.content_length() && *parser.content_length() > limits.max_body_bytes) {
        problem = RequestProblem::kBodyTooLarge;
      } else {
        beast_http::response<beast_http::empty_body> cont{beast_http::status::continue_,
                                                          header.version()};
        auto [cec, cn] = co_await beast_http::async_write(stream, cont, use_tuple);
        (void)cn;
        if (cec) {
          break;
        }
      }
    }
    if (problem == RequestProblem::kNone) {
      auto [bec, bn] = co_await beast_http::async_read(stream, buffer, parser, use_tuple);
      (void)bn;
      if (bec == beast_http::error::body_limit) {
        problem = RequestProblem::kBodyTooLarge;
      } else if (bec) {
        if (bec != beast::error::timeout && bec != asio::error::eof &&
            bec != asio::error::connection_reset && bec != beast_http::error::partial_message) {
          auto res = plain_error(beast_http::status::bad_request,
                                 "malformed HTTP request: " + bec.message() + "\n", 11);
          co_await beast_http::async_write(stream, res, use_tuple);
        }
        break;
      }
    }
    Request request = parser.release();
    Response response;
    try {
      response = handler(request, problem, peer);
    } catch (const std::exception& e) {
      log->error("handler failed: {}", e.what());
      response = plain_error(beast_http::status::internal_server_error, "internal error\n",
                             request.version());
    }
    // After a framing problem the rest of the stream cannot be trusted: close.
    const bool keep = problem == RequestProblem::kNone && request.keep_alive() &&
                      response.keep_alive() && !closing.load(std::memory_order_relaxed) &&
                      !evicted;
    response.version(request.version());
    response.keep_alive(keep);
    response.prepare_payload();
    auto [wec, wn] = co_await beast_http::async_write(stream, response, use_tuple);
    (void)wn;
    if (wec || !keep) {
      break;
    }
    served_one = true;
  }
  beast::error_code ignored;
  stream.socket().shutdown(asio::socket_base::shutdown_both, ignored);
  stream.socket().close(ignored);
}

}  // namespace

Server::Server(asio::io_context& ioc, std::string name, config::ListenEndpoint endpoint,
               ServerLimits limits, Handler handler)
    : ioc_(ioc), name_(std::move(name)), endpoint_(std::move(endpoint)), limits_(limits),
      handler_(std::move(handler)) {}

Server::~Server() {
  if (owns_socket_file_) {
    remove_unix_socket(endpoint_.unix_path);
  }
}

void Server::start() {
  if (endpoint_.unix_path.empty()) {
    start_tcp();
  } else {
    start_unix();
  }
}

void Server::start_tcp() {
  auto log = logger(name_);
  beast::error_code ec;
  tcp::resolver resolver(ioc_);
  auto results = resolver.resolve(endpoint_.host, std::to_string(endpoint_.port),
                                  tcp::resolver::passive, ec);
  if (ec || results.empty()) {
    throw std::runtime_error(name_ + ": cannot resolve " + endpoint_.text + ": " + ec.message());
  }
  const tcp::endpoint ep = results.begin()->endpoint();
  tcp_acceptor_ = std::make_unique<tcp::acceptor>(ioc_);
  tcp_acceptor_->open(ep.protocol(), ec);
  if (!ec) {
    tcp_acceptor_->set_option(asio::socket_base::reuse_address(true), ec);
    tcp_acceptor_->bind(ep, ec);
  }
  if (!ec) {
    tcp_acceptor_->listen(asio::socket_base::max_listen_connections, ec);
  }
  if (ec) {
    throw std::runtime_error(name_ + ": cannot listen on " + endpoint_.text + ": " + ec.message());
  }
  port_ = tcp_acceptor_->local_endpoint().port();
  log->info("listening on {}:{}", ep.address().to_string(), port_);
  spawn_accept_loop<tcp>(*tcp_acceptor_);
}

void Server::start_unix() {
  auto log = logger(name_);
  const std::string cannot = name_ + ": cannot listen on " + endpoint_.text + ": ";
  try {
    clear_stale_unix_socket(endpoint_.unix_path);
  } catch (const std::runtime_error& e) {
    throw std::runtime_error(cannot + e.what());
  }
  beast::error_code ec;
  unix_acceptor_ = std::make_unique<unix_socket::acceptor>(ioc_);
  unix_acceptor_->open(unix_socket(), ec);
  if (!ec) {
    unix_acceptor_->bind(unix_socket::endpoint(endpoint_.unix_path), ec);
  }
  if (!ec) {
    owns_socket_file_ = true;
    unix_acceptor_->listen(asio::socket_base::max_listen_connections, ec);
  }
  if (ec) {
    throw std::runtime_error(cannot + ec.message());
  }
  try {
    open_unix_socket_permissions(endpoint_.unix_path);
  } catch (const std::runtime_error& e) {
    throw std::runtime_error(cannot + e.what());
  }
  log->info("listening on {}", endpoint_.text);
  spawn_accept_loop<unix_socket>(*unix_acceptor_);
}

template <typename Protocol>
void Server::spawn_accept_loop(typename Protocol::acceptor& acceptor) {
  auto log = logger(name_);
  asio::co_spawn(
      ioc_,
      [this, &acceptor, log]() -> asio::awaitable<void> {
        for (;;) {
          auto [ec, socket] = co_await acceptor.async_accept(asio::make_strand(ioc_), use_tuple);
          if (ec) {
            if (ec == asio::error::operation_aborted || !acceptor.is_open()) {
              co_return;
            }
            log->warn("accept failed: {}", ec.message());
            continue;
          }
          if (state_->connections.load() >= limits_.max_connections &&
              evict_oldest_idle(state_->idle)) {
            // The evicted connection closes on its own strand and leaves the count then.
            state_->stats.idle_evictions.fetch_add(1, std::memory_order_relaxed);
          } else if (state_->connections.load() >= limits_.max_connections) {
            state_->stats.connections_refused.fetch_add(1, std::memory_order_relaxed);
            static RateLimit limit;
            std::uint64_t suppressed = 0;
            if (limit.allow(suppressed)) {
              log->warn("connection limit ({}) reached and every connection busy; closing new "
                        "connections ({} more)",
                        limits_.max_connections, suppressed);
            }
            beast::error_code ignored;
            socket.close(ignored);
            continue;
          }
          state_->connections.fetch_add(1);
          auto state = state_;
          auto executor = socket.get_executor();
          auto conn = std::make_shared<Connection>(executor);
          asio::co_spawn(
              executor,
              serve<Protocol>(std::move(socket), limits_, handler_, state, state->closing,
                              state->idle, std::move(conn), log),
              [state](std::exception_ptr) { state->connections.fetch_sub(1); });
        }
      },
      asio::detached);
}

std::size_t Server::idle_connections() const {
  std::lock_guard lock(state_->idle.mutex);
  std::size_t n = 0;
  for (const Connection* c = state_->idle.head; c != nullptr; c = c->next) {
    ++n;
  }
  return n;
}

void Server::stop_accepting() {
  state_->closing.store(true);
  if (tcp_acceptor_ || unix_acceptor_) {
    asio::post(ioc_, [this] {
      beast::error_code ignored;
      if (tcp_acceptor_) {
        tcp_acceptor_->close(ignored);
      }
      if (unix_acceptor_) {
        unix_acceptor_->close(ignored);
      }
    });
  }
  // New clients get "no such file" at once, whether or not the io thread has run the close.
  if (owns_socket_file_) {
    remove_unix_socket(endpoint_.unix_path);
    owns_socket_file_ = false;
  }
}

}  // namespace spanrelay::http
