// The HTTP server under connection pressure: at max_connections a new client closes the
// longest-idle kept-alive connection and is served; only when every connection is busy (mid
// request) is it refused. And its other limits: 431 for headers over max_header_bytes,
// "Expect: 100-continue", idle_timeout. Raw loopback sockets on the client side, with
// deadlines everywhere.
#include "receivers/http/server.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <boost/asio/executor_work_guard.hpp>
#include <catch2/catch.hpp>

#include <chrono>
#include <functional>
#include <string>
#include <thread>
#include <vector>

using namespace spanrelay;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

namespace {

constexpr auto kDeadline = 10s;

// Waits until `done` holds; false after the deadline.
bool await(const std::function<bool()>& done, Clock::duration deadline = kDeadline) {
  const auto until = Clock::now() + deadline;
  while (!done()) {
    if (Clock::now() > until) {
      return false;
    }
    std::this_thread::sleep_for(1ms);
  }
  return true;
}

http::ServerLimits with_max_connections(std::size_t max_connections) {
  http::ServerLimits limits;
  limits.max_connections = max_connections;
  return limits;
}

// A server on 127.0.0.1:0 run by its own io thread; answers every request "200 ok" (its body
// echoed after "ok" when it has one), and a body over the limit "413 ok".
struct TestServer {
  explicit TestServer(std::size_t max_connections)
      : TestServer(with_max_connections(max_connections)) {}
  explicit TestServer(const http::ServerLimits& limits)
      : work(boost::asio::make_work_guard(ioc)) {
    server = std::make_unique<http::Server>(
        ioc, "http-test", config::ListenEndpoint{"127.0.0.1", 0, "", "127.0.0.1:0"}, limits,
        [](http::Request& req, http::RequestProblem problem, const std::string&) {
          http::Response res{problem == http::RequestProblem::kBodyTooLarge
                                 ? http::beast_http::status::payload_too_large
                                 : http::beast_http::status::ok,
                             req.version()};
          res.body() = "ok" + req.body();
          return res;
        });
    server->start();
    thread = std::thread([this] { ioc.run(); });
  }
  ~TestServer() {
    server->stop_accepting();
    work.reset();
    ioc.stop();
    thread.join();
  }
  boost::asio::io_context ioc;
  boost::asio::executor_work_guard<boost::asio::io_context::executor_type> work;
  std::unique_ptr<http::Server> server;
  std::thread thread;
};

struct Client {
  int fd = -1;
  explicit Client(std::uint16_t port) {
    fd = ::socket(AF_INET, SOCK_STREAM, 0);
    REQUIRE(fd >= 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
  }
  ~Client() {
    if (fd >= 0) {
      ::close(fd);
    }
  }
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  bool send(const std::string& bytes) const {
    std::size_t off = 0;
    while (off < bytes.size()) {
      const auto n = ::send(fd, bytes.data() + off, bytes.size() - off, MSG_NOSIGNAL);
      if (n <= 0) {
        return false;
      }
      off += static_cast<std::size_t>(n);
    }
    return true;
  }

  // Reads bytes until `enough` holds on what came, EOF/error (returns what came), or deadline.
  std::string read_until(const std::function<bool(const std::string&)>& enough,
                         bool* closed = nullptr) const {
    std::string got;
    const auto until = Clock::now() + kDeadline;
    while (!enough(got)) {
      const auto left =
          std::chrono::duration_cast<std::chrono::milliseconds>(until - Clock::now()).count();
      if (left <= 0) {
        break;
      }
      pollfd p{fd, POLLIN, 0};
      if (::poll(&p, 1, static_cast<int>(left)) <= 0) {
        continue;
      }
      char buf[4096];
      const auto n = ::recv(fd, buf, sizeof buf, 0);
      if (n <= 0) {
        if (closed != nullptr) {
          *closed = true;
        }
        break;
      }
      got.append(buf, static_cast<std::size_t>(n));
    }
    return got;
  }

  // One whole response ("...ok" body); returns the status line, or "" when none came.
  std::string read_response() const {
    const auto got = read_until([](const std::string& s) {
      const auto end = s.find("\r\n\r\n");
      return end != std::string::npos && s.size() >= end + 4 + 2;  // the body is "ok"
    });
    return got.substr(0, got.find("\r\n"));
  }

  std::string get() const {
    if (!send("GET / HTTP/1.1\r\nHost: test\r\n\r\n")) {
      return "";
    }
    return read_response();
  }

  // True when the server closes this connection (EOF or reset) with no bytes before the deadline.
  bool closed_without_response() const {
    bool closed = false;
    const auto got = read_until([](const std::string&) { return false; }, &closed);
    return closed && got.empty();
  }
};

const std::string kOk = "HTTP/1.1 200 OK";

}  // namespace

TEST_CASE("at max_connections a new client closes the longest-idle keep-alive connection") {
  TestServer t(8);
  auto& server = *t.server;
  std::vector<std::unique_ptr<Client>> clients;
  for (std::size_t i = 0; i < 8; ++i) {
    clients.push_back(std::make_unique<Client>(server.port()));
    REQUIRE(clients.back()->get() == kOk);
    // In the idle list in this order: client 0 has been idle longest.
    REQUIRE(await([&] { return server.idle_connections() == i + 1; }));
  }
  REQUIRE(server.connections() == 8);

  Client newcomer(server.port());
  CHECK(newcomer.get() == kOk);
  CHECK(clients[0]->closed_without_response());
  CHECK(server.stats().idle_evictions.load() == 1);
  CHECK(server.stats().connections_refused.load() == 0);
  // Every other kept-alive connection is still served.
  for (std::size_t i = 1; i < 8; ++i) {
    CHECK(clients[i]->get() == kOk);
  }
  CHECK(newcomer.get() == kOk);
  CHECK(await([&] { return server.connections() == 8; }));
  CHECK(server.stats().idle_evictions.load() == 1);
}

TEST_CASE("at max_connections with every connection mid-request a new client is refused") {
  TestServer t(8);
  auto& server = *t.server;
  std::vector<std::unique_ptr<Client>> clients;
  for (std::size_t i = 0; i < 8; ++i) {
    clients.push_back(std::make_unique<Client>(server.port()));
    REQUIRE(clients.back()->get() == kOk);
  }
  REQUIRE(await([&] { return server.idle_connections() == 8; }));
  // Each kept-alive connection starts a second request: headers, part of the body.
  for (auto& c : clients) {
    REQUIRE(c->send("POST / HTTP/1.1\r\nHost: test\r\nContent-Length: 10\r\n\r\nabc"));
  }
  REQUIRE(await([&] { return server.idle_connections() == 0; }));

  Client newcomer(server.port());
  CHECK(newcomer.closed_without_response());
  CHECK(await([&] { return server.stats().connections_refused.load() == 1; }));
  CHECK(server.stats().idle_evictions.load() == 0);
  // None of the busy connections was touched: each finishes its request.
  for (auto& c : clients) {
    REQUIRE(c->send("defghij"));
    CHECK(c->read_response() == kOk);
  }
  CHECK(server.stats().idle_evictions.load() == 0);
}

TEST_CASE("at max_connections an idle connection is evicted, never one mid-request") {
  TestServer t(4);
  auto& server = *t.server;
  std::vector<std::unique_ptr<Client>> clients;
  for (std::size_t i = 0; i < 4; ++i) {
    clients.push_back(std::make_unique<Client>(server.port()));
    REQUIRE(clients.back()->get() == kOk);
    REQUIRE(await([&] { return server.idle_connections() == i + 1; }));
  }
  // The three longest idle become busy; the newest stays idle.
  for (std::size_t i = 0; i < 3; ++i) {
    REQUIRE(clients[i]->send("POST / HTTP/1.1\r\nHost: test\r\nContent-Length: 4\r\n\r\nab"));
  }
  REQUIRE(await([&] { return server.idle_connections() == 1; }));

  Client newcomer(server.port());
  CHECK(newcomer.get() == kOk);
  CHECK(clients[3]->closed_without_response());
  CHECK(server.stats().idle_evictions.load() == 1);
  for (std::size_t i = 0; i < 3; ++i) {
    REQUIRE(clients[i]->send("cd"));
    CHECK(clients[i]->read_response() == kOk);
  }
  // All four idle again, the newcomer longest (it finished first): the next newcomer evicts it.
  REQUIRE(await([&] { return server.idle_connections() == 4; }));
  Client second(server.port());
  CHECK(second.get() == kOk);
  CHECK(newcomer.closed_without_response());
  for (std::size_t i = 0; i < 3; ++i) {
    CHECK(clients[i]->get() == kOk);
  }
  CHECK(server.stats().idle_evictions.load() == 2);
  CHECK(server.stats().connections_refused.load() == 0);
}

TEST_CASE("2000 idle keep-alive connections do not lock out a new client") {
  // Default max_connections (1024); each new client evicts the longest idle one.
  const std::size_t limit = http::ServerLimits{}.max_connections;
  constexpr std::size_t kClients = 2000;
  TestServer t(limit);
  auto& server = *t.server;
  std::vector<std::unique_ptr<Client>> clients;
  std::size_t failed = 0;
  for (std::size_t i = 0; i < kClients; ++i) {
    clients.push_back(std::make_unique<Client>(server.port()));
    if (clients.back()->get() != kOk) {
      ++failed;
    }
  }
  CHECK(failed == 0);
  CHECK(server.stats().idle_evictions.load() == kClients - limit);
  CHECK(server.stats().connections_refused.load() == 0);
  CHECK(await([&] { return server.connections() == limit; }));
  // The evicted ones are the oldest: the first client is closed, the last is served.
  CHECK(clients.front()->closed_without_response());
  CHECK(clients.back()->get() == kOk);
}

TEST_CASE("headers over max_header_bytes are answered 431 and the connection closed") {
  http::ServerLimits limits;
  limits.max_header_bytes = 1024;
  TestServer t(limits);
  const auto request = [](std::size_t header_bytes) {
    return "GET / HTTP/1.1\r\nHost: test\r\nX-Big: " + std::string(header_bytes, 'a') +
           "\r\n\r\n";
  };
  Client small(t.server->port());
  REQUIRE(small.send(request(800)));
  CHECK(small.read_response() == kOk);

  Client big(t.server->port());
  REQUIRE(big.send(request(2000)));
  bool closed = false;
  const std::string got = big.read_until([](const std::string&) { return false; }, &closed);
  CHECK(got.rfind("HTTP/1.1 431 ", 0) == 0);
  CHECK_THAT(got, Catch::Contains("request headers too large"));
  CHECK(closed);
}

TEST_CASE("Expect: 100-continue is answered before the body is sent, and an announced oversized "
          "body gets 413 instead") {
  http::ServerLimits limits;
  limits.max_body_bytes = 1000;
  TestServer t(limits);
  const auto head_end = [](const std::string& s) {
    return s.find("\r\n\r\n") != std::string::npos;
  };

  Client c(t.server->port());
  REQUIRE(c.send("POST / HTTP/1.1\r\nHost: test\r\nContent-Length: 5\r\n"
                 "Expect: 100-continue\r\n\r\n"));
  // The body is sent only once 100 Continue has arrived.
  const std::string interim = c.read_until(head_end);
  REQUIRE(interim == "HTTP/1.1 100 Continue\r\n\r\n");
  REQUIRE(c.send("hello"));
  const std::string final_response =
      c.read_until([](const std::string& s) { return s.find("okhello") != std::string::npos; });
  CHECK(final_response.rfind("HTTP/1.1 200 OK\r\n", 0) == 0);
  CHECK(c.get() == kOk);  // the connection is kept alive

  Client big(t.server->port());
  REQUIRE(big.send("POST / HTTP/1.1\r\nHost: test\r\nContent-Length: 5000\r\n"
                   "Expect: 100-continue\r\n\r\n"));
  bool closed = false;
  const std::string refused = big.read_until([](const std::string&) { return false; }, &closed);
  CHECK(refused.rfind("HTTP/1.1 413 ", 0) == 0);  // no 100 Continue before it
  CHECK(closed);
}

TEST_CASE("idle_timeout closes a connection that sends nothing, before and between requests") {
  http::ServerLimits limits;
  limits.idle_timeout = std::chrono::milliseconds(100);
  TestServer t(limits);
  Client silent(t.server->port());
  Client kept(t.server->port());
  REQUIRE(kept.get() == kOk);
  // Awaited (up to the 10 s deadline), not timed: without idle_timeout neither closes.
  CHECK(silent.closed_without_response());
  CHECK(kept.closed_without_response());
  CHECK(await([&] { return t.server->connections() == 0; }));
}
