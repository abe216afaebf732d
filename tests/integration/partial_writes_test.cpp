// A request that arrives in pieces, as a slow client, a proxy or a congested link delivers it:
// split inside the request line, inside a header, between headers and body, inside the body,
// inside a chunk-size line, one byte at a time. The pauses between pieces are the stimulus
// (each piece reaches the server as a read of its own), not a synchronisation: the outcome
// asserted is the same whatever the scheduling.

#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>

#include "integration/checks.hpp"
#include "integration/fake_upstream.hpp"
#include "integration/harness.hpp"

namespace it {
namespace {

// Cuts `wire` at the given offsets (ascending, inside the string).
std::vector<std::string> cut(const std::string& wire, const std::vector<std::size_t>& at) {
  std::vector<std::string> pieces;
  std::size_t from = 0;
  for (const std::size_t to : at) {
    REQUIRE(to > from);
    REQUIRE(to < wire.size());
    pieces.push_back(wire.substr(from, to - from));
    from = to;
  }
  pieces.push_back(wire.substr(from));
  return pieces;
}

std::size_t offset_of(const std::string& wire, std::string_view what, std::size_t extra = 0) {
  const std::size_t at = wire.find(what);
  REQUIRE(at != std::string::npos);
  return at + extra;
}

HttpResponse answer(HttpConnection& connection) {
  std::optional<HttpResponse> response = connection.read_response();
  REQUIRE(response.has_value());
  return *response;
}

// Writes the pieces with a pause between them, then reads the answer.
HttpResponse send_in_pieces(std::uint16_t port, const std::vector<std::string>& pieces) {
  HttpConnection connection(port);
  for (std::size_t i = 0; i < pieces.size(); ++i) {
    if (i > 0) {
      std::this_thread::sleep_for(20ms);  // stimulus: a separate arrival (see the file comment)
    }
    REQUIRE(connection.write(pieces[i]));
  }
  return answer(connection);
}

}  // namespace

TEST_CASE("a request split across delayed writes is read whole and accepted once",
          "[integration][http]") {
  FakeUpstream upstream(0);
  AgentConfig config;
  config.exporters["up"].endpoint = upstream.base_url();
  Agent agent(config);

  std::vector<FlatSpan> sent;
  const auto request_of = [&](std::size_t spans, const PostOptions& options) {
    const ExportRequest request = make_request(spans);
    append(sent, flatten(request));
    return render_request(otlp_request(request, options));
  };

  SECTION("Content-Length: cut in the request line, a header, the blank line and the body") {
    const std::string wire = request_of(40, {});
    const std::size_t body = offset_of(wire, "\r\n\r\n", 4);
    const auto response = send_in_pieces(
        agent.port(), cut(wire, {5, offset_of(wire, "Content-Type", 7), body - 2, body,
                                 body + 1, body + (wire.size() - body) / 2, wire.size() - 1}));
    require_accepted(response);
  }
  SECTION("chunked: cut inside chunk-size lines, chunk data and the last chunk") {
    const std::string wire = request_of(40, {.chunk_size = 1000});
    const std::size_t body = offset_of(wire, "\r\n\r\n", 4);
    const std::size_t second_size_line = offset_of(wire.substr(body + 1000), "\r\n", 0) +
                                         body + 1000 + 3;  // just past a chunk's data
    const auto response = send_in_pieces(
        agent.port(), cut(wire, {body + 1, body + 500, second_size_line, wire.size() - 4,
                                 wire.size() - 2}));
    require_accepted(response);
  }
  SECTION("gzip: the compressed body cut in the middle of the deflate stream") {
    const std::string wire = request_of(40, {.gzip = true});
    const std::size_t body = offset_of(wire, "\r\n\r\n", 4);
    const auto response = send_in_pieces(
        agent.port(), cut(wire, {body + 3, body + 11, body + (wire.size() - body) / 2}));
    require_accepted(response);
  }
  SECTION("JSON: the headers one byte at a time") {
    const std::string wire = request_of(10, {.format = Format::json});
    const std::size_t body = offset_of(wire, "\r\n\r\n", 4);
    std::vector<std::size_t> at;
    for (std::size_t i = 1; i <= body; ++i) {
      at.push_back(i);
    }
    std::vector<std::string> pieces = cut(wire, at);
    HttpConnection connection(agent.port());
    for (const std::string& piece : pieces) {
      REQUIRE(connection.write(piece));  // no pause: 1-byte writes arrive as they come
    }
    require_accepted(answer(connection), Format::json);
  }
  require_delivered_once(upstream, sent);
}

}  // namespace it
