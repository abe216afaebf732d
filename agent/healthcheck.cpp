#include "healthcheck.hpp"

#include <algorithm>
#include <cctype>
#include <iostream>
#include <optional>
#include <utility>
#include <vector>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>
#include <boost/system/system_error.hpp>

namespace spanrelay {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
using tcp = asio::ip::tcp;

struct Target {
  std::string host;         // without brackets
  std::string port = "80";  // numeric
  std::string host_header;  // as written in the URL's authority
  std::string path = "/";
};

// http://host[:port][/path]; nullopt with a reason on anything else.
std::optional<Target> parse_url(std::string_view url, std::string& error) {
  constexpr std::string_view scheme = "http://";
  if (url.size() < scheme.size() ||
      !std::equal(scheme.begin(), scheme.end(), url.begin(),
                  [](char a, char b) { return a == std::tolower(static_cast<unsigned char>(b)); })) {
    error = "only http:// URLs are supported";
    return std::nullopt;
  }
  std::string_view rest = url.substr(scheme.size());
  const auto slash = rest.find_first_of("/?#");
  std::string_view authority = rest.substr(0, slash);
  Target target;
  if (slash != std::string_view::npos) {
    std::string_view path = rest.substr(slash);
    path = path.substr(0, path.find('#'));
    target.path = path.starts_with('/') ? std::string(path) : "/" + std::string(path);
  }
  if (authority.find('@') != std::string_view::npos) {
    error = "credentials in the URL are not supported";
    return std::nullopt;
  }
  target.host_header = std::string(authority);
  std::string_view port;
  if (authority.starts_with('[')) {
    const auto close = authority.find(']');
    if (close == std::string_view::npos) {
      error = "unterminated [IPv6 address]";
      return std::nullopt;
    }
    target.host = std::string(authority.substr(1, close - 1));
    std::string_view after = authority.substr(close + 1);
    if (!after.empty()) {
      if (!after.starts_with(':')) {
        error = "unexpected characters after ]";
        return std::nullopt;
      }
      port = after.substr(1);
    }
  } else {
    const auto colon = authority.find(':');
    target.host = std::string(authority.substr(0, colon));
    if (colon != std::string_view::npos) port = authority.substr(colon + 1);
  }
  if (target.host.empty()) {
    error = "no host";
    return std::nullopt;
  }
  if (!port.empty()) {
    unsigned value = 0;
    for (const char c : port) {
      if (!std::isdigit(static_cast<unsigned char>(c)) || (value = value * 10 + (c - '0')) > 65535) {
        error = "bad port";
        return std::nullopt;
      }
    }
    if (value == 0) {
      error = "bad port";
      return std::nullopt;
    }
    target.port = std::string(port);
  }
  return target;
}

std::string describe(const boost::system::error_code& ec) {
  std::string message = ec.message();
  if (!message.empty()) message[0] = static_cast<char>(std::tolower(static_cast<unsigned char>(message[0])));
  return message;
}

struct Outcome {
  bool done = false;
  bool ok = false;
  std::string line;
};

asio::awaitable<void> check(Target target, std::chrono::steady_clock::time_point deadline,
                            Outcome& outcome) {
  auto executor = co_await asio::this_coro::executor;
  beast::tcp_stream stream(executor);
  try {
    boost::system::error_code ec;
    const asio::ip::address address = asio::ip::make_address(target.host, ec);
    std::vector<tcp::endpoint> endpoints;
    if (!ec) {
      endpoints.emplace_back(address, static_cast<unsigned short>(std::stoul(target.port)));
    } else {
      tcp::resolver resolver(executor);
      for (const auto& entry : co_await resolver.async_resolve(
               target.host, target.port, tcp::resolver::numeric_service, asio::use_awaitable)) {
        endpoints.push_back(entry.endpoint());
      }
    }
    stream.expires_at(deadline);
    co_await stream.async_connect(endpoints, asio::use_awaitable);

    bhttp::request<bhttp::empty_body> request{bhttp::verb::get, target.path, 11};
    request.set(bhttp::field::host, target.host_header);
    request.set(bhttp::field::user_agent, "spanrelay-healthcheck/" SPANRELAY_VERSION);
    request.set(bhttp::field::connection, "close");
    stream.expires_at(deadline);
    co_await bhttp::async_write(stream, request, asio::use_awaitable);

    // The status line and headers decide; the body (whatever its size) is not read.
    beast::flat_buffer buffer(16 * 1024);
    bhttp::response_parser<bhttp::string_body> parser;
    stream.expires_at(deadline);
    co_await bhttp::async_read_header(stream, buffer, parser, asio::use_awaitable);
    const auto& response = parser.get();
    const unsigned status = response.result_int();
    std::string reason(response.reason());
    if (reason.empty()) reason = std::string(bhttp::obsolete_reason(response.result()));
    outcome.ok = status >= 200 && status < 300;
    outcome.line = std::to_string(status) + (reason.empty() ? "" : " " + reason);
  } catch (const boost::system::system_error& e) {
    outcome.line = e.code() == beast::error::timeout ? "timed out" : describe(e.code());
  }
  boost::system::error_code ignored;
  stream.socket().shutdown(tcp::socket::shutdown_both, ignored);
  outcome.done = true;
}

}  // namespace

int run_healthcheck(const std::string& url, std::chrono::milliseconds timeout) {
  const std::string prefix = "spanrelay healthcheck: " + url + ": ";
  std::string error;
  const auto target = parse_url(url, error);
  if (!target) {
    std::cerr << prefix << "bad URL: " << error << '\n';
    return 1;
  }
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  Outcome outcome;
  asio::io_context ioc;
  asio::co_spawn(ioc, check(*target, deadline, outcome), asio::detached);
  ioc.run_until(deadline + std::chrono::milliseconds(50));
  if (!outcome.done || outcome.line == "timed out") {
    const auto ms = timeout.count();
    outcome.ok = false;
    outcome.line = "timed out after " +
                   (ms % 1000 == 0 ? std::to_string(ms / 1000) + "s" : std::to_string(ms) + "ms");
  }
  (outcome.ok ? std::cout : std::cerr) << prefix << outcome.line << '\n';
  return outcome.ok ? 0 : 1;
}

}  // namespace spanrelay
