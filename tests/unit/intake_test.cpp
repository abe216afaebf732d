// The intake's refusals as the receivers answer them, with a real Intake, ring and budget: a
// full ring (429 / RESOURCE_EXHAUSTED with RetryInfo), a spool that refuses (429) or can never
// hold the request (413 / RESOURCE_EXHAUSTED without RetryInfo), never half taken; and the HTTP
// receiver's Content-Encodings (deflate, x-gzip, multi-member gzip, trailing garbage).
#include "receivers/intake.hpp"

#include <zlib.h>

#include <boost/asio/io_context.hpp>
#include <catch2/catch.hpp>
#include <grpcpp/create_channel.h>
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>

#include <future>
#include <optional>
#include <string>
#include <vector>

#include "google/rpc/status.pb.h"
#include "receivers/grpc/otlp_grpc_receiver.hpp"
#include "receivers/http/otlp_http_receiver.hpp"
#include "unit/otlp_builders.hpp"

using namespace spanrelay;
using namespace std::chrono_literals;
using Catch::Contains;
namespace beast_http = boost::beast::http;

namespace {

std::string request_bytes(int spans, std::uint64_t seed) {
  return testing::make_request(1, 1, spans, seed, 16).SerializeAsString();
}

// Intake, ring (`ring_slots`), budget, and both receivers on loopback. The HTTP receiver is
// driven through its handler (no socket needed); gRPC through a real client.
struct Front {
  explicit Front(std::size_t ring_slots = 1024)
      : budget(64 * config::MiB), ring(ring_slots), intake(ring, budget, stats, [] {}),
        http(ioc, http_options(), intake), grpc(grpc_options(), intake) {
    grpc.start();
    channel = grpc::CreateChannel("127.0.0.1:" + std::to_string(grpc.port()),
                                  grpc::InsecureChannelCredentials());
    stub = std::make_unique<grpc::GenericStub>(channel);
  }

  static config::HttpReceiver http_options() {
    config::HttpReceiver o;
    o.enabled = true;
    o.endpoint = config::parse_listen_endpoint("127.0.0.1:0");
    return o;
  }
  static config::GrpcReceiver grpc_options() {
    config::GrpcReceiver o;
    o.enabled = true;
    o.endpoint = config::parse_listen_endpoint("127.0.0.1:0");
    return o;
  }

  http::Response post(std::string body, const std::string& encoding = "") {
    http::Request req{beast_http::verb::post, "/v1/traces", 11};
    req.set(beast_http::field::content_type, "application/x-protobuf");
    if (!encoding.empty()) {
      req.set(beast_http::field::content_encoding, encoding);
    }
    req.body() = std::move(body);
    return http.handle(req, http::RequestProblem::kNone);
  }

  grpc::Status call(const std::string& body) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + 20s);
    grpc::Slice slice(body);
    grpc::ByteBuffer request(&slice, 1);
    grpc::ByteBuffer response;
    std::promise<grpc::Status> done;
    stub->UnaryCall(&ctx, std::string(kOtlpTraceExportPath), grpc::StubOptions(), &request,
                    &response, [&done](grpc::Status s) { done.set_value(std::move(s)); });
    return done.get_future().get();
  }

  std::vector<Chunk> drain() {
    std::vector<Chunk> chunks;
    while (auto chunk = ring.try_pop()) {
      chunks.push_back(std::move(*chunk));
    }
    return chunks;
  }

  MemoryBudget budget;
  Ring<Chunk> ring;
  ReceiverStats stats;
  Intake intake;
  boost::asio::io_context ioc;
  http::OtlpHttpReceiver http;
  OtlpGrpcReceiver grpc;
  std::shared_ptr<grpc::Channel> channel;
  std::unique_ptr<grpc::GenericStub> stub;
};

bool has_retry_info(const grpc::Status& status) {
  google::rpc::Status details;
  return details.ParseFromString(status.error_details()) && details.details_size() == 1 &&
         details.details(0).type_url() == "type.googleapis.com/google.rpc.RetryInfo";
}

// zlib's compress2 with a window of 15 bits; `gzip` adds the gzip wrapper (+16).
std::string zip(std::string_view data, bool gzip) {
  z_stream zs{};
  REQUIRE(deflateInit2(&zs, Z_BEST_SPEED, Z_DEFLATED, gzip ? 15 + 16 : 15, 8,
                       Z_DEFAULT_STRATEGY) == Z_OK);
  std::string out(deflateBound(&zs, static_cast<uLong>(data.size())) + 32, '\0');
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data()));
  zs.avail_in = static_cast<uInt>(data.size());
  zs.next_out = reinterpret_cast<Bytef*>(out.data());
  zs.avail_out = static_cast<uInt>(out.size());
  REQUIRE(deflate(&zs, Z_FINISH) == Z_STREAM_END);
  out.resize(zs.total_out);
  deflateEnd(&zs);
  return out;
}

}  // namespace

TEST_CASE("a full ring refuses: 429 with Retry-After, RESOURCE_EXHAUSTED with RetryInfo") {
  Front f(2);  // two slots
  CHECK(f.post(request_bytes(3, 1)).result_int() == 200);
  CHECK(f.call(request_bytes(3, 2)).ok());
  const std::size_t held = f.budget.used();

  const http::Response refused = f.post(request_bytes(5, 3));
  CHECK(refused.result_int() == 429);
  CHECK(refused[beast_http::field::retry_after] == "1");
  const grpc::Status exhausted = f.call(request_bytes(7, 4));
  CHECK(exhausted.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED);
  CHECK(has_retry_info(exhausted));
  // Counted, and nothing of the refused requests is held: not in the ring, not in the budget.
  CHECK(get(f.stats.refused_spans) == 5 + 7);
  CHECK(get(f.stats.accepted_spans) == 3 + 3);
  CHECK(f.budget.used() == held);
  CHECK(f.intake.last_full() != std::chrono::steady_clock::time_point{});
  const auto chunks = f.drain();
  REQUIRE(chunks.size() == 2);
  CHECK(chunks[0].bytes == request_bytes(3, 1));
  CHECK(chunks[1].bytes == request_bytes(3, 2));
  // Room again: accepted.
  CHECK(f.post(request_bytes(5, 3)).result_int() == 200);
  CHECK(f.drain().size() == 1);
}

TEST_CASE("a spool that is full refuses the request: 429 / RESOURCE_EXHAUSTED, and it goes no "
          "further") {
  Front f;
  std::vector<std::uint32_t> persisted;
  f.intake.set_persist(
      [&](std::string_view, std::uint32_t spans) {
        persisted.push_back(spans);
        return IntakeStatus::kFull;
      },
      /*forward_to_ring=*/true);
  const http::Response refused = f.post(request_bytes(4, 1));
  CHECK(refused.result_int() == 429);
  CHECK(refused[beast_http::field::retry_after] == "1");
  const grpc::Status exhausted = f.call(request_bytes(6, 2));
  CHECK(exhausted.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED);
  CHECK(has_retry_info(exhausted));
  CHECK(persisted == std::vector<std::uint32_t>{4, 6});
  CHECK(f.drain().empty());  // the memory exporters do not get what the spool refused
  CHECK(get(f.stats.refused_spans) == 4 + 6);
  CHECK(get(f.stats.accepted_spans) == 0);
  CHECK(f.budget.used() == 0);
  CHECK(f.intake.last_spool_full() != std::chrono::steady_clock::time_point{});
}

TEST_CASE("a request larger than the spool can hold is 413 / RESOURCE_EXHAUSTED without "
          "RetryInfo") {
  Front f;
  f.intake.set_persist([](std::string_view, std::uint32_t) { return IntakeStatus::kTooLarge; },
                       /*forward_to_ring=*/true);
  const http::Response refused = f.post(request_bytes(4, 1));
  CHECK(refused.result_int() == 413);
  CHECK(refused[beast_http::field::retry_after].empty());
  CHECK_THAT(refused.body(), Contains("spool.max_bytes"));
  const grpc::Status exhausted = f.call(request_bytes(6, 2));
  CHECK(exhausted.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED);
  CHECK_THAT(exhausted.error_message(), Contains("spool.max_bytes"));
  CHECK_FALSE(has_retry_info(exhausted));  // retrying cannot help
  CHECK(f.drain().empty());
  CHECK(get(f.stats.accepted_spans) == 0);
  CHECK(get(f.stats.bad_requests) == 2);
  CHECK(f.budget.used() == 0);
}

TEST_CASE("HTTP Content-Encoding: deflate, x-gzip and multi-member gzip are accepted") {
  Front f;
  const std::string a = request_bytes(2, 1);
  const std::string b = request_bytes(3, 2);
  CHECK(f.post(zip(a, false), "deflate").result_int() == 200);
  CHECK(f.post(zip(a, true), "x-gzip").result_int() == 200);
  CHECK(f.post(zip(a, true), "GZIP").result_int() == 200);
  // Two gzip members: the body is their concatenation (RFC 1952), one request of a + b.
  const std::string both = a + b;  // two ResourceSpans entries: still one valid request
  CHECK(f.post(zip(a, true) + zip(b, true), "gzip").result_int() == 200);
  const auto chunks = f.drain();
  REQUIRE(chunks.size() == 4);
  CHECK(chunks[0].bytes == a);
  CHECK(chunks[1].bytes == a);
  CHECK(chunks[2].bytes == a);
  CHECK(chunks[3].bytes == both);
  CHECK(chunks[3].spans == 5);
}

TEST_CASE("HTTP Content-Encoding: trailing garbage, truncation and the wrong wrapper are 400") {
  Front f;
  const std::string a = request_bytes(2, 1);
  const std::string gz = zip(a, true);
  struct Case {
    const char* what;
    std::string body;
    std::string encoding;
  };
  const std::vector<Case> cases = {
      {"garbage after the gzip member", gz + "garbage!", "gzip"},
      {"a zero byte after the gzip member", gz + std::string(1, '\0'), "gzip"},
      {"a truncated second gzip member", gz + gz.substr(0, gz.size() / 2), "gzip"},
      {"garbage after the zlib stream", zip(a, false) + "x", "deflate"},
      {"a truncated gzip member", gz.substr(0, gz.size() - 4), "gzip"},
      {"gzip data sent as deflate", gz, "deflate"},
      {"zlib data sent as gzip", zip(a, false), "x-gzip"},
  };
  for (const Case& c : cases) {
    INFO(c.what);
    const http::Response res = f.post(c.body, c.encoding);
    CHECK(res.result_int() == 400);
    CHECK_THAT(res.body(), Contains("not valid"));
  }
  CHECK(f.drain().empty());
  CHECK(get(f.stats.bad_requests) == cases.size());
  CHECK(get(f.stats.accepted_spans) == 0);
}
