// The intake's refusals and the HTTP receiver's Content-Encodings through the real binary: a
// request larger than the spool (413), a request that one of two spools cannot take (429, and
// that spool never delivers it: nothing half-accepted), and deflate / x-gzip / multi-member
// gzip / trailing garbage over a real HTTP connection.

#include <zlib.h>

#include <optional>
#include <set>
#include <string>

#include <catch2/catch.hpp>

#include "integration/checks.hpp"
#include "integration/fake_upstream.hpp"
#include "integration/harness.hpp"

namespace it {
namespace {

// zlib format (RFC 1950): what HTTP calls "deflate".
std::string zlib_compress(std::string_view data) {
  uLongf size = compressBound(static_cast<uLong>(data.size()));
  std::string out(size, '\0');
  REQUIRE(compress2(reinterpret_cast<Bytef*>(out.data()), &size,
                    reinterpret_cast<const Bytef*>(data.data()), static_cast<uLong>(data.size()),
                    Z_BEST_SPEED) == Z_OK);
  out.resize(size);
  return out;
}

HttpRequest encoded(std::string body, const std::string& encoding) {
  HttpRequest r;
  r.headers = {{"Content-Type", "application/x-protobuf"}, {"Content-Encoding", encoding}};
  r.body = std::move(body);
  return r;
}

std::set<std::string> keys_of(const std::vector<FlatSpan>& spans) {
  std::set<std::string> keys;
  for (const FlatSpan& s : spans) {
    keys.insert(span_key(s.span));
  }
  return keys;
}

}  // namespace

TEST_CASE("a request larger than the spool is refused with 413 and the next one is taken",
          "[integration][intake]") {
  TempDir spool;
  FakeUpstream upstream;
  AgentConfig config;
  config.exporters["up"].endpoint = upstream.base_url();
  config.spool = {{"path", spool.path()}, {"max_bytes", "1MiB"}};
  Agent agent(config);

  RequestShape big;
  big.attribute_padding = 24 * 1024;
  const ExportRequest too_big = make_request(50, big);  // ~1.2 MiB: fits max_request_bytes
  REQUIRE(too_big.ByteSizeLong() > 1024 * 1024);
  const HttpResponse refused = post_spans(agent.port(), too_big);
  CHECK(refused.result_int() == 413);
  CHECK_THAT(refused.body(), Catch::Contains("spool.max_bytes"));
  CHECK(refused[boost::beast::http::field::retry_after].empty());

  const auto sent = post_and_expect_ok(agent.port(), 5);
  require_delivered_once(upstream, sent, 20s);
  CHECK(compare(flatten(too_big), {&upstream}).missing == 50);  // none of it went anywhere
  CHECK(agent.metric("spanrelay_receiver_accepted_spans_total") == 5);
}

TEST_CASE("a request one of two spools cannot take is refused with 429 and that spool never "
          "delivers it",
          "[integration][intake]") {
  TempDir spool;
  FakeUpstream up_a;
  const std::uint16_t port_b = stable_free_port();  // b's upstream is down until the end
  AgentConfig config;
  config.exporters["a"].endpoint = up_a.base_url();
  config.exporters["b"].endpoint = "http://127.0.0.1:" + std::to_string(port_b);
  config.exporters["b"].retry_max_interval = "500ms";
  // 1 MiB each; a delivers as it goes, b's fills up.
  config.spool = {{"path", spool.path()}, {"max_bytes", "2MiB"}, {"on_full", "reject"}};
  Agent agent(config);

  RequestShape big;
  big.attribute_padding = 2000;  // ~20 KiB per request of 10 spans
  std::vector<FlatSpan> accepted;
  std::optional<ExportRequest> refused;
  for (int i = 0; i < 200 && !refused; ++i) {
    const ExportRequest request = make_request(10, big);
    const HttpResponse response = post_spans(agent.port(), request);
    if (response.result_int() == 200) {
      append(accepted, flatten(request));
    } else {
      CHECK(response.result_int() == 429);
      refused = request;
    }
  }
  REQUIRE(refused.has_value());
  REQUIRE(accepted.size() >= 200);
  CHECK(agent.metric("spanrelay_receiver_refused_spans_total") == 10);
  CHECK(agent.metric("spanrelay_receiver_accepted_spans_total") ==
        static_cast<double>(accepted.size()));
  CHECK(agent.metric(exporter_series("spanrelay_exporter_spool_refused_spans_total", "b")) == 10);
  CHECK(agent.metric(exporter_series("spanrelay_exporter_spool_refused_spans_total", "a")) == 0);

  FakeUpstream up_b(port_b);
  // Everything answered 200 reaches both upstreams.
  CHECK(await_delivery(accepted, {&up_a}, 60s).missing == 0);
  CHECK(await_delivery(accepted, {&up_b}, 60s).missing == 0);
  REQUIRE(wait_until([&] {
    return agent.metric(exporter_series("spanrelay_spool_records", "b")) == 0;
  }, 30s));
  // b's spool never took the refused request: none of its spans reach b. (a's spool took it
  // before b refused: a may deliver it, and again if the client retries; at least once.)
  const std::set<std::string> at_b = keys_of(up_b.delivered_spans());
  for (const FlatSpan& s : flatten(*refused)) {
    CHECK(at_b.count(span_key(s.span)) == 0);
  }
  // Nothing but what was answered 200 reached b.
  CHECK(compare(accepted, {&up_b}).unexpected == 0);
}

TEST_CASE("Content-Encoding over HTTP: deflate and x-gzip and two gzip members are taken "
          "but trailing garbage is 400",
          "[integration][intake]") {
  FakeUpstream upstream;
  AgentConfig config;
  config.exporters["up"].endpoint = upstream.base_url();
  Agent agent(config);

  const ExportRequest a = make_request(3);
  const ExportRequest b = make_request(4);
  const std::string pa = a.SerializeAsString();
  const std::string pb = b.SerializeAsString();
  std::vector<FlatSpan> sent;

  HttpConnection c(agent.port());  // one keep-alive connection for all of them
  CHECK(c.roundtrip(encoded(zlib_compress(pa), "deflate")).result_int() == 200);
  append(sent, flatten(a));
  const HttpResponse x = c.roundtrip(encoded(gzip(pb), "x-gzip"));
  CHECK(x.result_int() == 200);
  append(sent, flatten(b));
  // Two members: one request holding both (protobuf messages concatenate).
  const ExportRequest m1 = make_request(2);
  const ExportRequest m2 = make_request(5);
  CHECK(c.roundtrip(encoded(gzip(m1.SerializeAsString()) + gzip(m2.SerializeAsString()), "gzip"))
            .result_int() == 200);
  append(sent, flatten(m1));
  append(sent, flatten(m2));
  // Garbage after a member: the whole request is refused, none of it taken.
  const ExportRequest g = make_request(6);
  const HttpResponse garbage =
      c.roundtrip(encoded(gzip(g.SerializeAsString()) + "trailing garbage", "gzip"));
  CHECK(garbage.result_int() == 400);
  CHECK_THAT(garbage.body(), Catch::Contains("not valid gzip"));
  const HttpResponse zlib_garbage = c.roundtrip(encoded(zlib_compress(pa) + "x", "deflate"));
  CHECK(zlib_garbage.result_int() == 400);

  require_delivered_once(upstream, sent, 20s);
  CHECK(compare(flatten(g), {&upstream}).missing == 6);
  CHECK(agent.metric("spanrelay_receiver_accepted_spans_total") == 3 + 4 + 2 + 5);
}

}  // namespace it
