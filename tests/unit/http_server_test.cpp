// The HTTP server under connection pressure: at max_connections a new client closes the
// longest-idle kept-alive connection and is served; only when every connection is busy (mid
// request) is it refused. Raw loopback sockets on the client side, with deadlines everywhere.
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

// A server on 127.0.0.1:0 run by its own io thread; answers every request "200 ok".
struct TestServer {
  explicit TestServer(std::size_t max_connections) : work(boost::asio::make_work_guard(ioc)) {
    http::ServerLimits limits;
    limits.max_connections = max_connections;
    server = std::make_unique<http::Server>(
        ioc, "http-test", config::ListenEndpoint{"127.0.0.1", 0, "", "127.0.0.1:0"}, limits,
        [](http::Request& req, http::RequestProblem, const std::string&) {
          http::Response res{http::beast_http::status::ok, req.version()};
          res.body() = "ok";
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
