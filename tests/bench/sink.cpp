// bench_sink: the upstream of spanrelay's benchmark (driven by tests/bench/run.sh).
//
// A minimal HTTP/1.1 server on Boost.Beast, one thread: answers every POST with 200 and an
// empty body (an OTLP full success), counting requests, body bytes on the wire, bytes after
// gunzip and spans (gunzip, then otlp::count_spans: the agent only forwards scanned requests).
// GET /stats answers "requests=N spans=N bytes=N raw_bytes=N" for the load generator.
//
//   bench_sink [--listen HOST:PORT] [--port-file PATH]
// Port 0 picks a free port; --port-file receives the bound port once listening.

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include <cstdint>
#include <fstream>
#include <iostream>
#include <string>
#include <string_view>

#include "otlp/compression.hpp"
#include "otlp/wire.hpp"

namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);

struct Stats {
  std::uint64_t requests = 0;
  std::uint64_t spans = 0;
  std::uint64_t bytes = 0;      // bodies as received
  std::uint64_t raw_bytes = 0;  // bodies after gunzip
  std::uint64_t bad = 0;        // bodies that did not gunzip
};

asio::awaitable<void> serve(tcp::socket socket, Stats& stats) {
  beast::tcp_stream stream(std::move(socket));
  beast::flat_buffer buffer;
  std::string plain;  // reused across requests
  for (;;) {
    http::request_parser<http::string_body> parser;
    parser.body_limit(1ull << 30);
    auto [ec, n] = co_await http::async_read(stream, buffer, parser, use_tuple);
    (void)n;
    if (ec) {
      break;
    }
    auto& req = parser.get();
    http::response<http::string_body> res{http::status::ok, req.version()};
    if (req.method() == http::verb::post) {
      ++stats.requests;
      stats.bytes += req.body().size();
      std::string_view body = req.body();
      const auto encoding = req[http::field::content_encoding];
      if (encoding == "gzip") {
        if (spanrelay::otlp::inflate_limited(body, false, 1ull << 30, plain) ==
            spanrelay::otlp::InflateStatus::kOk) {
          body = plain;
        } else {
          ++stats.bad;
          body = {};
        }
      }
      stats.raw_bytes += body.size();
      stats.spans += spanrelay::otlp::count_spans(body);
      res.set(http::field::content_type, "application/x-protobuf");
    } else if (req.target() == "/stats") {
      res.set(http::field::content_type, "text/plain");
      res.body() = "requests=" + std::to_string(stats.requests) +
                   " spans=" + std::to_string(stats.spans) +
                   " bytes=" + std::to_string(stats.bytes) +
                   " raw_bytes=" + std::to_string(stats.raw_bytes) +
                   " bad=" + std::to_string(stats.bad) + "\n";
    } else {
      res.result(http::status::not_found);
    }
    res.keep_alive(req.keep_alive());
    res.prepare_payload();
    auto [wec, wn] = co_await http::async_write(stream, res, use_tuple);
    (void)wn;
    if (wec || !res.keep_alive()) {
      break;
    }
  }
  beast::error_code ignored;
  stream.socket().shutdown(tcp::socket::shutdown_both, ignored);
}

asio::awaitable<void> accept_loop(tcp::acceptor& acceptor, Stats& stats) {
  for (;;) {
    auto [ec, socket] = co_await acceptor.async_accept(use_tuple);
    if (ec) {
      if (!acceptor.is_open()) {
        co_return;
      }
      continue;
    }
    socket.set_option(tcp::no_delay(true));
    asio::co_spawn(acceptor.get_executor(), serve(std::move(socket), stats), asio::detached);
  }
}

}  // namespace

int main(int argc, char** argv) {
  std::string listen = "127.0.0.1:0";
  std::string port_file;
  for (int i = 1; i < argc; ++i) {
    const std::string_view a = argv[i];
    if (a == "--listen" && i + 1 < argc) {
      listen = argv[++i];
    } else if (a == "--port-file" && i + 1 < argc) {
      port_file = argv[++i];
    } else {
      std::cerr << "usage: bench_sink [--listen HOST:PORT] [--port-file PATH]\n";
      return 2;
    }
  }
  const auto colon = listen.rfind(':');
  if (colon == std::string::npos) {
    std::cerr << "bench_sink: --listen wants HOST:PORT\n";
    return 2;
  }
  try {
    asio::io_context ioc(1);
    tcp::endpoint ep(asio::ip::make_address(listen.substr(0, colon)),
                     static_cast<std::uint16_t>(std::stoul(listen.substr(colon + 1))));
    tcp::acceptor acceptor(ioc, ep, /*reuse_address=*/true);
    const auto port = acceptor.local_endpoint().port();
    if (!port_file.empty()) {
      std::ofstream(port_file + ".tmp") << port << '\n';
      std::rename((port_file + ".tmp").c_str(), port_file.c_str());
    }
    Stats stats;
    asio::co_spawn(ioc, accept_loop(acceptor, stats), asio::detached);
    asio::signal_set signals(ioc, SIGINT, SIGTERM);
    signals.async_wait([&](const beast::error_code&, int) {
      beast::error_code ignored;
      acceptor.close(ignored);
      ioc.stop();
    });
    ioc.run();
    std::cerr << "bench_sink: " << stats.requests << " requests, " << stats.spans << " spans, "
              << stats.bytes << " bytes (" << stats.raw_bytes << " after gunzip), " << stats.bad
              << " bad bodies\n";
  } catch (const std::exception& e) {
    std::cerr << "bench_sink: " << e.what() << '\n';
    return 1;
  }
  return 0;
}
