// `spanrelay healthcheck`: the container HEALTHCHECK's client, run as the real binary against
// the real agent's admin endpoint and against loopback servers that misbehave on purpose.

#include <chrono>
#include <mutex>
#include <string>
#include <thread>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/streambuf.hpp>
#include <boost/asio/write.hpp>
#include <catch2/catch.hpp>

#include "integration/harness.hpp"

namespace it {
namespace {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

std::string url(std::string_view host, std::uint16_t port, std::string_view path) {
  return "http://" + std::string(host) + ":" + std::to_string(port) + std::string(path);
}

ProgramResult healthcheck(const std::string& target_url) {
  return run_spanrelay({"healthcheck", "--url", target_url}, default_env(), 15s);
}

// Answers one connection with a canned response and records the request head; gives up after
// 10 s so a test that fails never hangs.
class CannedServer {
 public:
  CannedServer(const std::string& address, std::string response)
      : acceptor_(ioc_, tcp::endpoint(asio::ip::make_address(address), 0)),
        response_(std::move(response)) {
    acceptor_.async_accept(socket_, [this](boost::system::error_code ec) {
      if (ec) return;
      asio::async_read_until(socket_, buffer_, "\r\n\r\n", [this](boost::system::error_code ec2,
                                                                   std::size_t n) {
        if (ec2) return;
        {
          std::lock_guard lock(mutex_);
          request_.assign(asio::buffers_begin(buffer_.data()),
                          asio::buffers_begin(buffer_.data()) + static_cast<std::ptrdiff_t>(n));
        }
        asio::async_write(socket_, asio::buffer(response_),
                          [this](boost::system::error_code, std::size_t) {
                            boost::system::error_code ignored;
                            socket_.shutdown(tcp::socket::shutdown_send, ignored);
                          });
      });
    });
    thread_ = std::thread([this] { ioc_.run_for(10s); });
  }
  ~CannedServer() {
    ioc_.stop();
    thread_.join();
  }
  std::uint16_t port() const { return acceptor_.local_endpoint().port(); }
  std::string request() {
    std::lock_guard lock(mutex_);
    return request_;
  }

 private:
  asio::io_context ioc_;
  tcp::acceptor acceptor_;
  tcp::socket socket_{ioc_};
  asio::streambuf buffer_;
  std::string response_;
  std::mutex mutex_;
  std::string request_;
  std::thread thread_;
};

}  // namespace

TEST_CASE("healthcheck: exit 0 against a running agent's /healthz", "[integration][healthcheck]") {
  AgentConfig config;
  config.file_exporter = true;
  Agent agent(config);
  const std::string target = url("127.0.0.1", agent.admin_port(), "/healthz");
  const ProgramResult result = healthcheck(target);
  INFO(result.output);
  REQUIRE(result.exit_code.has_value());
  CHECK(*result.exit_code == 0);
  CHECK(result.output == "spanrelay healthcheck: " + target + ": 200 OK\n");

  SECTION("a path the admin endpoint does not serve is a failure") {
    const std::string missing = url("127.0.0.1", agent.admin_port(), "/no-such-path");
    const ProgramResult not_found = healthcheck(missing);
    INFO(not_found.output);
    REQUIRE(not_found.exit_code.has_value());
    CHECK(*not_found.exit_code == 1);
    CHECK(not_found.output == "spanrelay healthcheck: " + missing + ": 404 Not Found\n");
  }
}

TEST_CASE("healthcheck: exit 1 when nothing listens", "[integration][healthcheck]") {
  const std::string target = url("127.0.0.1", free_port(), "/healthz");
  const ProgramResult result = healthcheck(target);
  INFO(result.output);
  REQUIRE(result.exit_code.has_value());
  CHECK(*result.exit_code == 1);
  CHECK(result.output == "spanrelay healthcheck: " + target + ": connection refused\n");
}

TEST_CASE("healthcheck: a non-2xx status is a failure, its body is not needed",
          "[integration][healthcheck]") {
  // 503 with a body larger than any buffer the client keeps, and a 204 without one.
  CannedServer unavailable("127.0.0.1", "HTTP/1.1 503 Service Unavailable\r\nContent-Length: " +
                                            std::to_string(4 << 20) + "\r\n\r\n" +
                                            std::string(4 << 20, 'x'));
  const std::string target = url("127.0.0.1", unavailable.port(), "/healthz");
  const ProgramResult result = healthcheck(target);
  INFO(result.output);
  REQUIRE(result.exit_code.has_value());
  CHECK(*result.exit_code == 1);
  CHECK(result.output == "spanrelay healthcheck: " + target + ": 503 Service Unavailable\n");
  CHECK(unavailable.request().starts_with("GET /healthz HTTP/1.1\r\n"));
}

TEST_CASE("healthcheck: a bracketed IPv6 address, its Host header and the path",
          "[integration][healthcheck]") {
  CannedServer server("::1", "HTTP/1.1 204 No Content\r\n\r\n");
  const std::string authority = "[::1]:" + std::to_string(server.port());
  const std::string target = "http://" + authority + "/readyz?verbose=1";
  const ProgramResult result = healthcheck(target);
  INFO(result.output);
  REQUIRE(result.exit_code.has_value());
  CHECK(*result.exit_code == 0);
  CHECK(result.output == "spanrelay healthcheck: " + target + ": 204 No Content\n");
  const std::string request = server.request();
  INFO(request);
  CHECK(request.starts_with("GET /readyz?verbose=1 HTTP/1.1\r\n"));
  CHECK(request.find("\r\nHost: " + authority + "\r\n") != std::string::npos);
}

TEST_CASE("healthcheck: a server that accepts but never answers times out after 3 s",
          "[integration][healthcheck]") {
  // Listening but never accepting: the kernel completes the handshake, nobody answers.
  asio::io_context ioc;
  tcp::acceptor silent(ioc, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  const std::string target = url("127.0.0.1", silent.local_endpoint().port(), "/healthz");
  const auto start = Clock::now();
  const ProgramResult result = healthcheck(target);
  const auto elapsed = Clock::now() - start;
  INFO(result.output);
  REQUIRE(result.exit_code.has_value());
  CHECK(*result.exit_code == 1);
  CHECK(result.output == "spanrelay healthcheck: " + target + ": timed out after 3s\n");
  CHECK(elapsed >= 2900ms);
  CHECK(elapsed < 6s);
}

TEST_CASE("healthcheck: URLs it cannot use are refused with exit 1", "[integration][healthcheck]") {
  for (const std::string bad : {"https://127.0.0.1:13133/healthz", "127.0.0.1:13133/healthz",
                                "http://:13133/healthz", "http://127.0.0.1:99999/healthz",
                                "http://[::1/healthz"}) {
    const ProgramResult result = healthcheck(bad);
    INFO(bad << ": " << result.output);
    REQUIRE(result.exit_code.has_value());
    CHECK(*result.exit_code == 1);
    CHECK(result.output.starts_with("spanrelay healthcheck: " + bad + ": bad URL: "));
  }
}

}  // namespace it
