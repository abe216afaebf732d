// The OTLP/gRPC receiver against a real gRPC client (generic stub, raw bytes) and a real
// Intake, ring and budget; plus one HTTP and one gRPC round trip over Unix sockets.
#include "receivers/grpc/otlp_grpc_receiver.hpp"

#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <catch2/catch.hpp>
#include <grpcpp/create_channel.h>
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <filesystem>
#include <future>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "google/rpc/status.pb.h"
#include "otlp/responses.hpp"
#include "receivers/http/otlp_http_receiver.hpp"
#include "receivers/intake.hpp"
#include "unit/otlp_builders.hpp"

using namespace spanrelay;
using namespace std::chrono_literals;
using Catch::Contains;

namespace {

const std::string kExport(kOtlpTraceExportPath);

config::GrpcReceiver local_options(std::size_t max_message_bytes = 4 * config::MiB) {
  config::GrpcReceiver options;
  options.enabled = true;
  options.endpoint = config::parse_listen_endpoint("127.0.0.1:0");
  options.max_message_bytes = max_message_bytes;
  return options;
}

// A whole pipeline front: budget, ring, Intake and a started receiver.
struct Receiver {
  explicit Receiver(config::GrpcReceiver options = local_options(),
                    std::size_t budget_bytes = 64 * config::MiB)
      : budget(budget_bytes), ring(1024), intake(ring, budget, stats, [] {}),
        receiver(options, intake) {
    receiver.start();
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
  OtlpGrpcReceiver receiver;
};

struct Client {
  explicit Client(const std::string& target)
      : channel(grpc::CreateChannel(target, grpc::InsecureChannelCredentials())),
        stub(channel) {}
  explicit Client(std::uint16_t port) : Client("127.0.0.1:" + std::to_string(port)) {}

  std::shared_ptr<grpc::Channel> channel;
  grpc::GenericStub stub;
};

struct Reply {
  grpc::Status status;
  std::string body;
};

// One unary call with raw bytes, waited for.
Reply call(Client& client, const std::string& body,
           grpc_compression_algorithm compression = GRPC_COMPRESS_NONE,
           const std::string& method = kExport) {
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + 20s);
  ctx.set_compression_algorithm(compression);
  grpc::Slice slice(body);
  grpc::ByteBuffer request(&slice, 1);
  grpc::ByteBuffer response;
  std::promise<grpc::Status> done;
  client.stub.UnaryCall(&ctx, method, grpc::StubOptions(), &request, &response,
                        [&done](grpc::Status s) { done.set_value(std::move(s)); });
  Reply reply;
  reply.status = done.get_future().get();
  std::vector<grpc::Slice> slices;
  if (reply.status.ok() && response.Dump(&slices).ok()) {
    for (const auto& s : slices) {
      reply.body.append(reinterpret_cast<const char*>(s.begin()), s.size());
    }
  }
  return reply;
}

std::string request_bytes(int spans, std::uint64_t seed = 1, std::size_t attribute_bytes = 16) {
  return testing::make_request(1, 1, spans, seed, attribute_bytes).SerializeAsString();
}

std::int64_t rejected_in(const std::string& response) {
  std::int64_t rejected = -1;
  std::string message;
  REQUIRE(otlp::parse_export_response(response, rejected, message));
  return rejected;
}

// A unique temporary directory for socket files, removed at the end of the scope.
struct TempDir {
  TempDir() {
    std::string pattern =
        (std::filesystem::temp_directory_path() / "spanrelay_grpc_test_XXXXXX").string();
    REQUIRE(::mkdtemp(pattern.data()) != nullptr);
    path = pattern;
  }
  ~TempDir() { std::filesystem::remove_all(path); }
  std::string path;
};

}  // namespace

TEST_CASE("Export: OK, and the request bytes land in the ring unchanged") {
  Receiver r;
  Client client(r.receiver.port());
  REQUIRE(r.receiver.port() != 0);
  const std::string body = request_bytes(5);
  const Reply reply = call(client, body);
  REQUIRE(reply.status.ok());
  CHECK(rejected_in(reply.body) == 0);  // no partial_success
  auto chunks = r.drain();
  REQUIRE(chunks.size() == 1);
  CHECK(chunks[0].bytes == body);
  CHECK(chunks[0].spans == 5);
  CHECK(get(r.stats.requests) == 1);
  CHECK(get(r.stats.accepted_spans) == 5);
}

TEST_CASE("Export: gzip- and deflate-compressed messages arrive decompressed") {
  Receiver r;
  Client client(r.receiver.port());
  const std::string body = request_bytes(20, 7, 4096);
  REQUIRE(call(client, body, GRPC_COMPRESS_GZIP).status.ok());
  REQUIRE(call(client, body, GRPC_COMPRESS_DEFLATE).status.ok());
  const std::string empty;
  REQUIRE(call(client, empty, GRPC_COMPRESS_GZIP).status.ok());
  auto chunks = r.drain();
  REQUIRE(chunks.size() == 2);
  CHECK(chunks[0].bytes == body);
  CHECK(chunks[1].bytes == body);
}

TEST_CASE("Export: undecodable bytes are INVALID_ARGUMENT with the reason") {
  Receiver r;
  Client client(r.receiver.port());
  const Reply reply = call(client, std::string("\x0a\xff\xff\xff\xff\x0f", 6));
  CHECK(reply.status.error_code() == grpc::StatusCode::INVALID_ARGUMENT);
  CHECK_THAT(reply.status.error_message(), Contains("invalid OTLP protobuf"));
  CHECK(r.drain().empty());
  CHECK(get(r.stats.bad_requests) == 1);
}

TEST_CASE("Export: spans with an all-zero trace id are dropped and reported in partial_success") {
  Receiver r;
  Client client(r.receiver.port());
  auto request = testing::make_request(1, 1, 3);
  request.mutable_resource_spans(0)->mutable_scope_spans(0)->mutable_spans(1)->set_trace_id(
      std::string(16, '\0'));
  const Reply reply = call(client, request.SerializeAsString());
  REQUIRE(reply.status.ok());
  CHECK(rejected_in(reply.body) == 1);
  auto chunks = r.drain();
  REQUIRE(chunks.size() == 1);
  CHECK(chunks[0].spans == 2);
}

TEST_CASE("Export: a full buffer is RESOURCE_EXHAUSTED with RetryInfo in the status details") {
  Receiver r(local_options(), /*budget_bytes=*/1024);
  Client client(r.receiver.port());
  const Reply reply = call(client, request_bytes(10, 1, 200));
  REQUIRE(reply.status.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED);
  CHECK_THAT(reply.status.error_message(), Contains("buffer is full"));

  google::rpc::Status details;
  REQUIRE(details.ParseFromString(reply.status.error_details()));
  CHECK(details.code() == grpc::StatusCode::RESOURCE_EXHAUSTED);
  CHECK(details.message() == reply.status.error_message());
  REQUIRE(details.details_size() == 1);
  CHECK(details.details(0).type_url() == "type.googleapis.com/google.rpc.RetryInfo");
  google::rpc::RetryInfo retry;
  REQUIRE(details.details(0).UnpackTo(&retry));
  CHECK(retry.retry_delay().seconds() == 1);
  CHECK(retry.retry_delay().nanos() == 0);
  CHECK(get(r.stats.refused_spans) == 10);
  CHECK(r.drain().empty());
}

TEST_CASE("Export: max_message_bytes is enforced on the decompressed message") {
  Receiver r;  // 4 MiB
  Client client(r.receiver.port());
  // One span with a large attribute: compresses to a few KiB.
  const std::string over = request_bytes(1, 1, 4 * config::MiB + 1024);
  const std::string under = request_bytes(1, 2, 4 * config::MiB - 1024);
  REQUIRE(over.size() > 4 * config::MiB);
  REQUIRE(under.size() < 4 * config::MiB);

  SECTION("plain") {
    const Reply reply = call(client, over);
    CHECK(reply.status.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED);
    CHECK_THAT(reply.status.error_message(), Contains("larger than"));
    CHECK(reply.status.error_details().empty());  // no RetryInfo: retrying cannot help
    CHECK(call(client, under).status.ok());
  }
  SECTION("gzip") {
    // Refused by spanrelay's own bounded inflate (gRPC 1.51's would inflate it all first).
    const Reply reply = call(client, over, GRPC_COMPRESS_GZIP);
    CHECK(reply.status.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED);
    CHECK_THAT(reply.status.error_message(), Contains("receivers.grpc.max_message_bytes"));
    CHECK(reply.status.error_details().empty());
    CHECK(call(client, under, GRPC_COMPRESS_GZIP).status.ok());
  }
  auto chunks = r.drain();
  REQUIRE(chunks.size() == 1);
  CHECK(chunks[0].bytes == under);
  // The connection survives a refused message.
  CHECK(call(client, request_bytes(1)).status.ok());
}

TEST_CASE("other methods are UNIMPLEMENTED") {
  Receiver r;
  Client client(r.receiver.port());
  const std::string body = request_bytes(1);
  for (const std::string method :
       {"/opentelemetry.proto.collector.trace.v1.TraceService/Exprt",
        "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export", "/x.Y/Z"}) {
    const Reply reply = call(client, body, GRPC_COMPRESS_NONE, method);
    CHECK(reply.status.error_code() == grpc::StatusCode::UNIMPLEMENTED);
  }
  CHECK(r.drain().empty());
}

TEST_CASE("after Intake::close, Export is UNAVAILABLE") {
  Receiver r;
  Client client(r.receiver.port());
  REQUIRE(call(client, request_bytes(1)).status.ok());
  r.intake.close();
  const Reply reply = call(client, request_bytes(1));
  CHECK(reply.status.error_code() == grpc::StatusCode::UNAVAILABLE);
  CHECK(get(r.stats.unavailable) == 1);
  CHECK(r.drain().size() == 1);
}

TEST_CASE("an empty request is OK and forwards nothing") {
  Receiver r;
  Client client(r.receiver.port());
  const Reply reply = call(client, "");
  REQUIRE(reply.status.ok());
  CHECK(reply.body.empty());
  CHECK(r.drain().empty());
}

TEST_CASE("concurrent calls from several threads all land exactly once") {
  Receiver r;
  constexpr int kThreads = 6;
  constexpr int kCalls = 40;
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      Client client(r.receiver.port());  // one channel (connection) per thread
      for (int i = 0; i < kCalls; ++i) {
        if (!call(client, request_bytes(2, std::uint64_t(t * 1000 + i))).status.ok()) {
          ++failures;
        }
      }
    });
  }
  for (auto& t : threads) {
    t.join();
  }
  CHECK(failures == 0);
  std::map<std::string, int> seen;
  for (auto& chunk : r.drain()) {
    ++seen[chunk.bytes];
  }
  REQUIRE(seen.size() == std::size_t(kThreads * kCalls));
  for (int t = 0; t < kThreads; ++t) {
    for (int i = 0; i < kCalls; ++i) {
      CHECK(seen[request_bytes(2, std::uint64_t(t * 1000 + i))] == 1);
    }
  }
  CHECK(get(r.stats.accepted_spans) == std::uint64_t(2 * kThreads * kCalls));
}

TEST_CASE("a client that goes away mid-call leaves the server healthy") {
  Receiver r;
  Client client(r.receiver.port());
  // Streaming calls that never send their message: the server's reactor waits in a read when
  // the client cancels or its deadline passes.
  for (int i = 0; i < 20; ++i) {
    grpc::ClientContext ctx;
    grpc::CompletionQueue cq;
    auto stream = client.stub.PrepareCall(&ctx, kExport, &cq);
    stream->StartCall(reinterpret_cast<void*>(1));
    void* tag = nullptr;
    bool ok = false;
    REQUIRE(cq.Next(&tag, &ok));
    std::this_thread::sleep_for(5ms);
    ctx.TryCancel();
    grpc::Status status;
    stream->Finish(&status, reinterpret_cast<void*>(2));
    while (cq.Next(&tag, &ok) && tag != reinterpret_cast<void*>(2)) {
    }
    CHECK(status.error_code() == grpc::StatusCode::CANCELLED);
    cq.Shutdown();
    while (cq.Next(&tag, &ok)) {
    }
  }
  CHECK(call(client, request_bytes(1)).status.ok());
  CHECK(r.drain().size() == 1);
}

TEST_CASE("shutdown cancels a call still in progress at the deadline") {
  Receiver r;
  Client client(r.receiver.port());
  grpc::ClientContext ctx;
  grpc::CompletionQueue cq;
  auto stream = client.stub.PrepareCall(&ctx, kExport, &cq);
  stream->StartCall(reinterpret_cast<void*>(1));
  void* tag = nullptr;
  bool ok = false;
  REQUIRE(cq.Next(&tag, &ok));
  std::this_thread::sleep_for(20ms);  // let the server start the call

  r.intake.close();
  const auto started = std::chrono::steady_clock::now();
  r.receiver.shutdown(started + 200ms);
  CHECK(std::chrono::steady_clock::now() - started < 5s);
  r.receiver.shutdown(started);  // idempotent

  grpc::Status status;
  stream->Finish(&status, reinterpret_cast<void*>(2));
  while (cq.Next(&tag, &ok) && tag != reinterpret_cast<void*>(2)) {
  }
  CHECK_FALSE(status.ok());
  cq.Shutdown();
  while (cq.Next(&tag, &ok)) {
  }
}

TEST_CASE("start() fails with the endpoint in the message when the port is taken") {
  // A plain listening socket (no SO_REUSEPORT) holds a port.
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  REQUIRE(fd >= 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
  REQUIRE(::listen(fd, 1) == 0);
  socklen_t len = sizeof addr;
  REQUIRE(::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0);
  const std::string endpoint = "127.0.0.1:" + std::to_string(ntohs(addr.sin_port));

  MemoryBudget budget(config::MiB);
  Ring<Chunk> ring(4);
  ReceiverStats stats;
  Intake intake(ring, budget, stats, [] {});
  config::GrpcReceiver options = local_options();
  options.endpoint = config::parse_listen_endpoint(endpoint);
  OtlpGrpcReceiver taken(options, intake);
  CHECK_THROWS_WITH(taken.start(), Contains("cannot listen on " + endpoint));
  ::close(fd);

  // Nor can a second gRPC receiver share a port with the first (no SO_REUSEPORT).
  Receiver first;
  options.endpoint = config::parse_listen_endpoint("127.0.0.1:" +
                                                   std::to_string(first.receiver.port()));
  OtlpGrpcReceiver second(options, intake);
  CHECK_THROWS_WITH(second.start(), Contains("cannot listen on 127.0.0.1:"));
}

TEST_CASE("both receivers serve a round trip over Unix sockets") {
  TempDir dir;
  MemoryBudget budget(64 * config::MiB);
  Ring<Chunk> ring(64);
  ReceiverStats stats;
  Intake intake(ring, budget, stats, [] {});
  const std::string body = request_bytes(3);

  SECTION("gRPC") {
    const std::string path = dir.path + "/otlp-grpc.sock";
    // A stale socket file from an earlier run is replaced.
    {
      const int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
      auto ep = boost::asio::local::stream_protocol::endpoint(path);
      REQUIRE(::bind(fd, ep.data(), static_cast<socklen_t>(ep.size())) == 0);
      ::close(fd);
      REQUIRE(std::filesystem::is_socket(path));
    }
    config::GrpcReceiver options = local_options();
    options.endpoint = config::parse_listen_endpoint("unix:" + path);
    OtlpGrpcReceiver receiver(options, intake);
    receiver.start();
    CHECK(receiver.port() == 0);
    struct stat st {};
    REQUIRE(::stat(path.c_str(), &st) == 0);
    CHECK((st.st_mode & 0777) == 0666);

    // A second receiver must not steal a live socket.
    OtlpGrpcReceiver second(options, intake);
    CHECK_THROWS_WITH(second.start(), Contains("in use"));

    Client client("unix:" + path);
    const Reply reply = call(client, body, GRPC_COMPRESS_GZIP);
    REQUIRE(reply.status.ok());
    receiver.shutdown(std::chrono::steady_clock::now() + 1s);
    CHECK_FALSE(std::filesystem::exists(path));
  }

  SECTION("HTTP") {
    const std::string path = dir.path + "/otlp-http.sock";
    boost::asio::io_context ioc(1);
    config::HttpReceiver options;
    options.enabled = true;
    options.endpoint = config::parse_listen_endpoint("unix:" + path);
    http::OtlpHttpReceiver receiver(ioc, options, intake);
    receiver.start();
    CHECK(receiver.port() == 0);
    struct stat st {};
    REQUIRE(::stat(path.c_str(), &st) == 0);
    CHECK((st.st_mode & 0777) == 0666);
    std::thread io([&ioc] { ioc.run(); });

    namespace beast = boost::beast;
    boost::asio::io_context client_ioc;
    boost::asio::local::stream_protocol::socket socket(client_ioc);
    socket.connect(boost::asio::local::stream_protocol::endpoint(path));
    beast::http::request<beast::http::string_body> req{beast::http::verb::post, "/v1/traces",
                                                        11};
    req.set(beast::http::field::host, "localhost");
    req.set(beast::http::field::content_type, "application/x-protobuf");
    req.body() = body;
    req.prepare_payload();
    beast::http::write(socket, req);
    beast::flat_buffer buffer;
    beast::http::response<beast::http::string_body> res;
    beast::http::read(socket, buffer, res);
    CHECK(res.result() == beast::http::status::ok);
    CHECK(rejected_in(res.body()) == 0);

    receiver.stop_accepting();
    CHECK_FALSE(std::filesystem::exists(path));
    ioc.stop();
    io.join();
  }

  auto chunk = ring.try_pop();
  REQUIRE(chunk);
  CHECK(chunk->bytes == body);
  CHECK(chunk->spans == 3);
}
