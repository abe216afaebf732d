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
#include <functional>
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

// Polls `done` until it holds; false after a generous deadline (never a timing assertion).
bool eventually(const std::function<bool()>& done) {
  const auto until = std::chrono::steady_clock::now() + 20s;
  while (!done()) {
    if (std::chrono::steady_clock::now() > until) {
      return false;
    }
    std::this_thread::sleep_for(1ms);
  }
  return true;
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
    // The server has made the call's reactor (counted there), which waits in its first read.
    const auto calls = static_cast<std::uint64_t>(i + 1);
    REQUIRE(eventually([&] { return get(r.stats.requests) == calls; }));
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
  // The server has started the call: its reactor exists (counted there) and waits in a read.
  REQUIRE(eventually([&] { return get(r.stats.requests) == 1; }));

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

// ---------------------------------------------------------------------------------------------
// gRPC framing, seen from the wire. A grpc::GenericStub can only send well-framed messages, so
// these cases speak HTTP/2 themselves: a minimal h2c client (prior knowledge, RFC 9113) over a
// loopback TCP socket, sending arbitrary DATA bytes on one stream and decoding the answer (HPACK,
// RFC 7541: static and dynamic tables, no Huffman since gRPC does not Huffman-code the
// grpc-status and grpc-message values).

#include <poll.h>

#include <cerrno>
#include <cstring>
#include <deque>
#include <optional>
#include <stdexcept>
#include <tuple>

namespace {

// What a gRPC client would conclude about one call.
struct WireOutcome {
  std::map<std::string, std::string> headers;  // response headers and trailers, merged
  std::string data;                            // DATA payload (the framed response message)
  std::optional<std::uint32_t> reset_code;     // RST_STREAM's HTTP/2 error code, if reset
  // grpc-status from the trailers; for a reset stream, the status a gRPC client derives from
  // the HTTP/2 error code (gRPC's http-grpc-status-mapping: CANCEL -> CANCELLED, ENHANCE_YOUR_CALM
  // -> RESOURCE_EXHAUSTED, REFUSED_STREAM -> UNAVAILABLE, anything else -> INTERNAL).
  int grpc_status = -1;
};

class H2cClient {
 public:
  explicit H2cClient(std::uint16_t port) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    if (fd_ < 0) throw std::runtime_error("socket failed");
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons(port);
    if (::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
      throw std::runtime_error(std::string("connect failed: ") + std::strerror(errno));
    }
    write_all("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
    send_frame(kSettings, 0, 0, "");
  }
  ~H2cClient() { ::close(fd_); }
  H2cClient(const H2cClient&) = delete;
  H2cClient& operator=(const H2cClient&) = delete;

  // One Export call on a new stream: its headers, then each of `data` as one DATA frame, the last
  // with END_STREAM (an empty `data` sends one empty DATA frame with END_STREAM).
  WireOutcome export_call(const std::vector<std::string>& data, const std::string& encoding = "",
                          std::chrono::milliseconds timeout = 20s) {
    const std::uint32_t stream = next_stream_;
    next_stream_ += 2;
    std::string block;
    literal(block, ":method", "POST");
    literal(block, ":scheme", "http");
    literal(block, ":path", kExport);
    literal(block, ":authority", "127.0.0.1");
    literal(block, "content-type", "application/grpc");
    literal(block, "te", "trailers");
    if (!encoding.empty()) {
      literal(block, "grpc-encoding", encoding);
    }
    send_frame(kHeaders, kEndHeaders, stream, block);
    if (data.empty()) {
      send_frame(kData, kEndStream, stream, "");
    }
    for (std::size_t i = 0; i < data.size(); ++i) {
      send_frame(kData, i + 1 == data.size() ? kEndStream : 0, stream, data[i]);
    }
    return await(stream, std::chrono::steady_clock::now() + timeout);
  }

 private:
  static constexpr std::uint8_t kData = 0, kHeaders = 1, kRstStream = 3, kSettings = 4,
                                kPing = 6, kGoaway = 7, kContinuation = 9;
  static constexpr std::uint8_t kEndStream = 0x1, kAck = 0x1, kEndHeaders = 0x4, kPadded = 0x8,
                                kPriority = 0x20;

  void write_all(const std::string& bytes) {
    std::size_t done = 0;
    while (done < bytes.size()) {
      const ssize_t n = ::send(fd_, bytes.data() + done, bytes.size() - done, MSG_NOSIGNAL);
      if (n <= 0) throw std::runtime_error("send failed");
      done += static_cast<std::size_t>(n);
    }
  }

  void send_frame(std::uint8_t type, std::uint8_t flags, std::uint32_t stream,
                  const std::string& payload) {
    std::string frame;
    const auto length = static_cast<std::uint32_t>(payload.size());
    frame.push_back(static_cast<char>(length >> 16));
    frame.push_back(static_cast<char>(length >> 8));
    frame.push_back(static_cast<char>(length));
    frame.push_back(static_cast<char>(type));
    frame.push_back(static_cast<char>(flags));
    for (int shift = 24; shift >= 0; shift -= 8) {
      frame.push_back(static_cast<char>(stream >> shift));
    }
    write_all(frame + payload);
  }

  // HPACK integer with an n-bit prefix; `first` carries the bits above the prefix.
  static void put_int(std::string& out, std::uint8_t first, int prefix, std::size_t value) {
    const std::size_t max = (1u << prefix) - 1;
    if (value < max) {
      out.push_back(static_cast<char>(first | value));
      return;
    }
    out.push_back(static_cast<char>(first | max));
    value -= max;
    while (value >= 128) {
      out.push_back(static_cast<char>(0x80 | (value & 0x7f)));
      value >>= 7;
    }
    out.push_back(static_cast<char>(value));
  }

  // "Literal header field without indexing, new name", plain strings.
  static void literal(std::string& out, const std::string& name, const std::string& value) {
    out.push_back(0);
    put_int(out, 0, 7, name.size());
    out += name;
    put_int(out, 0, 7, value.size());
    out += value;
  }

  // Reads exactly n bytes before the deadline.
  std::string read_exactly(std::size_t n, std::chrono::steady_clock::time_point deadline) {
    std::string out(n, '\0');
    std::size_t done = 0;
    while (done < n) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) throw std::runtime_error("timed out reading from the server");
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) continue;
      const ssize_t got = ::recv(fd_, out.data() + done, n - done, 0);
      if (got == 0) throw std::runtime_error("the server closed the connection");
      if (got < 0) {
        if (errno == EINTR) continue;
        throw std::runtime_error(std::string("recv failed: ") + std::strerror(errno));
      }
      done += static_cast<std::size_t>(got);
    }
    return out;
  }

  WireOutcome await(std::uint32_t stream, std::chrono::steady_clock::time_point deadline) {
    WireOutcome outcome;
    std::string header_block;
    bool block_ends_stream = false;
    for (;;) {
      const std::string head = read_exactly(9, deadline);
      const auto* h = reinterpret_cast<const std::uint8_t*>(head.data());
      const std::size_t length = (std::size_t(h[0]) << 16) | (std::size_t(h[1]) << 8) | h[2];
      const std::uint8_t type = h[3];
      const std::uint8_t flags = h[4];
      const std::uint32_t id = ((std::uint32_t(h[5]) & 0x7f) << 24) | (std::uint32_t(h[6]) << 16) |
                               (std::uint32_t(h[7]) << 8) | h[8];
      std::string payload = read_exactly(length, deadline);
      if (type == kSettings && !(flags & kAck)) {
        send_frame(kSettings, kAck, 0, "");
      } else if (type == kPing && !(flags & kAck)) {
        send_frame(kPing, kAck, 0, payload);
      } else if (type == kGoaway) {
        throw std::runtime_error("the server sent GOAWAY");
      } else if (id == stream && type == kRstStream && payload.size() == 4) {
        const auto* p = reinterpret_cast<const std::uint8_t*>(payload.data());
        const std::uint32_t code = (std::uint32_t(p[0]) << 24) | (std::uint32_t(p[1]) << 16) |
                                   (std::uint32_t(p[2]) << 8) | p[3];
        outcome.reset_code = code;
        if (outcome.grpc_status < 0) {
          outcome.grpc_status = code == 0x8   ? int(grpc::StatusCode::CANCELLED)
                                : code == 0xb ? int(grpc::StatusCode::RESOURCE_EXHAUSTED)
                                : code == 0x7 ? int(grpc::StatusCode::UNAVAILABLE)
                                              : int(grpc::StatusCode::INTERNAL);
        }
        return outcome;
      } else if (id == stream && type == kData) {
        outcome.data += strip_padding(payload, flags);
        if (flags & kEndStream) {
          return outcome;  // ended without trailers: a client sees INTERNAL
        }
      } else if (id == stream && (type == kHeaders || type == kContinuation)) {
        if (type == kHeaders) {
          payload = strip_padding(payload, flags);
          if (flags & kPriority) payload.erase(0, 5);
          block_ends_stream = (flags & kEndStream) != 0;
        }
        header_block += payload;
        if (flags & kEndHeaders) {
          decode_block(header_block, outcome.headers);
          header_block.clear();
          if (block_ends_stream) {
            const auto status = outcome.headers.find("grpc-status");
            outcome.grpc_status = status == outcome.headers.end() ? int(grpc::StatusCode::UNKNOWN)
                                                                  : std::stoi(status->second);
            return outcome;
          }
        }
      }
    }
  }

  static std::string strip_padding(std::string payload, std::uint8_t flags) {
    if ((flags & kPadded) && !payload.empty()) {
      const std::size_t pad = static_cast<std::uint8_t>(payload[0]);
      payload = payload.substr(1, payload.size() - 1 - std::min(pad, payload.size() - 1));
    }
    return payload;
  }

  static std::size_t get_int(const std::string& in, std::size_t& pos, int prefix) {
    const std::size_t max = (1u << prefix) - 1;
    std::size_t value = static_cast<std::uint8_t>(in.at(pos++)) & max;
    if (value < max) return value;
    for (int shift = 0;; shift += 7) {
      const auto byte = static_cast<std::uint8_t>(in.at(pos++));
      value += std::size_t(byte & 0x7f) << shift;
      if (!(byte & 0x80)) return value;
    }
  }

  static std::string get_string(const std::string& in, std::size_t& pos) {
    const bool huffman = (static_cast<std::uint8_t>(in.at(pos)) & 0x80) != 0;
    const std::size_t length = get_int(in, pos, 7);
    std::string value = in.substr(pos, length);
    pos += length;
    return huffman ? "<huffman-coded>" : value;  // never a value these tests read
  }

  std::pair<std::string, std::string> entry(std::size_t index) const {
    static const std::vector<std::pair<std::string, std::string>> kStatic = {
        {":authority", ""}, {":method", "GET"}, {":method", "POST"}, {":path", "/"},
        {":path", "/index.html"}, {":scheme", "http"}, {":scheme", "https"}, {":status", "200"},
        {":status", "204"}, {":status", "206"}, {":status", "304"}, {":status", "400"},
        {":status", "404"}, {":status", "500"}, {"accept-charset", ""},
        {"accept-encoding", "gzip, deflate"}, {"accept-language", ""}, {"accept-ranges", ""},
        {"accept", ""}, {"access-control-allow-origin", ""}, {"age", ""}, {"allow", ""},
        {"authorization", ""}, {"cache-control", ""}, {"content-disposition", ""},
        {"content-encoding", ""}, {"content-language", ""}, {"content-length", ""},
        {"content-location", ""}, {"content-range", ""}, {"content-type", ""}, {"cookie", ""},
        {"date", ""}, {"etag", ""}, {"expect", ""}, {"expires", ""}, {"from", ""}, {"host", ""},
        {"if-match", ""}, {"if-modified-since", ""}, {"if-none-match", ""}, {"if-range", ""},
        {"if-unmodified-since", ""}, {"last-modified", ""}, {"link", ""}, {"location", ""},
        {"max-forwards", ""}, {"proxy-authenticate", ""}, {"proxy-authorization", ""},
        {"range", ""}, {"referer", ""}, {"refresh", ""}, {"retry-after", ""}, {"server", ""},
        {"set-cookie", ""}, {"strict-transport-security", ""}, {"transfer-encoding", ""},
        {"user-agent", ""}, {"vary", ""}, {"via", ""}, {"www-authenticate", ""}};
    if (index >= 1 && index <= kStatic.size()) return kStatic[index - 1];
    const std::size_t dynamic = index - kStatic.size() - 1;
    if (index == 0 || dynamic >= table_.size()) {
      throw std::runtime_error("HPACK index out of range: " + std::to_string(index));
    }
    return table_[dynamic];
  }

  void remember(const std::string& name, const std::string& value) {
    table_.emplace_front(name, value);
    table_bytes_ += name.size() + value.size() + 32;
    evict();
  }

  void evict() {
    while (table_bytes_ > table_max_ && !table_.empty()) {
      table_bytes_ -= table_.back().first.size() + table_.back().second.size() + 32;
      table_.pop_back();
    }
  }

  void decode_block(const std::string& block, std::map<std::string, std::string>& out) {
    std::size_t pos = 0;
    while (pos < block.size()) {
      const auto byte = static_cast<std::uint8_t>(block[pos]);
      if (byte & 0x80) {  // indexed field
        const auto field = entry(get_int(block, pos, 7));
        out[field.first] = field.second;
      } else if ((byte & 0xe0) == 0x20) {  // dynamic table size update
        table_max_ = get_int(block, pos, 5);
        evict();
      } else {
        const bool indexing = (byte & 0xc0) == 0x40;
        const std::size_t index = get_int(block, pos, indexing ? 6 : 4);
        const std::string name = index == 0 ? get_string(block, pos) : entry(index).first;
        const std::string value = get_string(block, pos);
        if (indexing) remember(name, value);
        out[name] = value;
      }
    }
  }

  int fd_ = -1;
  std::uint32_t next_stream_ = 1;
  std::deque<std::pair<std::string, std::string>> table_;
  std::size_t table_bytes_ = 0;
  std::size_t table_max_ = 4096;
};

// A gRPC length-prefixed message: compressed flag, 4-byte big-endian length, the bytes. The
// declared length can be made to disagree with the bytes.
std::string grpc_frame(const std::string& message, std::uint8_t flag = 0,
                       std::optional<std::uint32_t> declared = std::nullopt) {
  const std::uint32_t length = declared.value_or(static_cast<std::uint32_t>(message.size()));
  std::string out;
  out.push_back(static_cast<char>(flag));
  for (int shift = 24; shift >= 0; shift -= 8) {
    out.push_back(static_cast<char>(length >> shift));
  }
  return out + message;
}

}  // namespace

TEST_CASE("wire: a well-formed Export over raw HTTP/2 is OK (the h2c client works)") {
  Receiver r;
  H2cClient h2(r.receiver.port());
  const std::string body = request_bytes(4);
  // The message split over two DATA frames, as any client may do.
  const std::string framed = grpc_frame(body);
  const WireOutcome outcome = h2.export_call({framed.substr(0, 3), framed.substr(3)});
  REQUIRE(outcome.grpc_status == 0);
  CHECK_FALSE(outcome.reset_code);
  CHECK(outcome.headers.at(":status") == "200");
  REQUIRE(outcome.data.size() >= 5);
  CHECK(rejected_in(outcome.data.substr(5)) == 0);
  auto chunks = r.drain();
  REQUIRE(chunks.size() == 1);
  CHECK(chunks[0].bytes == body);
  CHECK(get(r.stats.accepted_spans) == 4);
}

TEST_CASE("wire: a body that is not one complete length-prefixed message is INVALID_ARGUMENT") {
  // gRPC core drops bytes that do not complete a message at the end of the stream and reports
  // "no message"; the receiver answers that, instead of OK.
  Receiver r;
  H2cClient h2(r.receiver.port());
  const std::string body = request_bytes(2);
  const std::vector<std::pair<const char*, std::vector<std::string>>> cases = {
      {"no DATA bytes at all", {}},
      {"3 bytes, shorter than the 5-byte prefix", {std::string("\0\0\0", 3)}},
      {"a prefix declaring 10 bytes, none following", {grpc_frame("", 0, 10)}},
      {"a prefix declaring 7 bytes more than follow",
       {grpc_frame(body, 0, std::uint32_t(body.size() + 7))}},
      {"the same, split over two DATA frames",
       {grpc_frame(body.substr(0, 10), 0, std::uint32_t(body.size() + 7)), body.substr(10)}},
      // Not listed: a first prefix whose flag byte is neither 0 nor 1 (alone, or before a
      // message). gRPC core 1.51 sometimes hands it over as an empty message with flag 0 (about
      // 1 run in 20), which nothing here can tell from a real empty request (docs/protocol.md).
  };
  for (const auto& [name, data] : cases) {
    INFO(name);
    WireOutcome outcome = h2.export_call(data);
    CHECK(outcome.grpc_status == int(grpc::StatusCode::INVALID_ARGUMENT));
    CHECK_FALSE(outcome.reset_code);
    CHECK_THAT(outcome.headers["grpc-message"], Contains("expected one ExportTraceServiceRequest"));
  }
  CHECK(get(r.stats.accepted_spans) == 0);
  CHECK(get(r.stats.bad_requests) == cases.size());
  CHECK(r.drain().empty());
  // The connection is still good for a well-formed call.
  REQUIRE(h2.export_call({grpc_frame(body)}).grpc_status == 0);
  CHECK(get(r.stats.accepted_spans) == 2);
}

TEST_CASE("wire: a declared length shorter than the body is never OK") {
  // The prefix claims 3 bytes fewer than follow: gRPC core cuts the message there and drops the
  // 3 left over (too few for a prefix). The truncated message fails to decode here; a truncation
  // that decoded would still be refused if 5 or more bytes were left (next test case).
  Receiver r;
  H2cClient h2(r.receiver.port());
  const std::string body = request_bytes(2);
  const WireOutcome outcome =
      h2.export_call({grpc_frame(body, 0, std::uint32_t(body.size() - 3))});
  CHECK(outcome.grpc_status == int(grpc::StatusCode::INVALID_ARGUMENT));
  CHECK(get(r.stats.accepted_spans) == 0);
  CHECK(r.drain().empty());
}

TEST_CASE("wire: anything after the message is INVALID_ARGUMENT, and nothing is accepted") {
  Receiver r;
  H2cClient h2(r.receiver.port());
  const std::string body = request_bytes(3);
  const std::vector<std::pair<const char*, std::vector<std::string>>> cases = {
      {"two messages in one DATA frame", {grpc_frame(body) + grpc_frame(body)}},
      {"two messages in two DATA frames", {grpc_frame(body), grpc_frame(body)}},
      {"the message, then an empty message", {grpc_frame(body) + grpc_frame("")}},
      // A flag byte other than 0 or 1: gRPC core fails the frame but hands over an empty message.
      {"the message, then 7 bytes that are not a prefix",
       {grpc_frame(body) + std::string("\x07\0\0\0\0\0\0", 7)}},
      // A short message whose declared length covers only part of the body.
      {"a declared length that leaves a whole second prefix behind",
       {grpc_frame(body, 0, std::uint32_t(body.size() - 6)) + std::string(6, '\0')}},
  };
  for (const auto& [name, data] : cases) {
    INFO(name);
    WireOutcome outcome = h2.export_call(data);
    CHECK(outcome.grpc_status == int(grpc::StatusCode::INVALID_ARGUMENT));
    CHECK_FALSE(outcome.reset_code);
  }
  CHECK(get(r.stats.accepted_spans) == 0);
  CHECK(get(r.stats.bad_requests) == cases.size());
  CHECK(r.drain().empty());
  REQUIRE(h2.export_call({grpc_frame(body)}).grpc_status == 0);
  CHECK(get(r.stats.accepted_spans) == 3);
  CHECK(r.drain().size() == 1);
}

TEST_CASE("wire: the compressed flag without a grpc-encoding is INTERNAL") {
  Receiver r;
  H2cClient h2(r.receiver.port());
  const std::string body = request_bytes(2);
  const std::vector<std::tuple<const char*, std::string, std::string>> cases = {
      {"no grpc-encoding", grpc_frame(body, 1), ""},
      {"grpc-encoding: identity", grpc_frame(body, 1), "identity"},
      {"an empty message", grpc_frame("", 1), ""},
  };
  for (const auto& [name, data, encoding] : cases) {
    INFO(name);
    WireOutcome outcome = h2.export_call({data}, encoding);
    CHECK(outcome.grpc_status == int(grpc::StatusCode::INTERNAL));
    CHECK_THAT(outcome.headers["grpc-message"], Contains("compressed flag"));
  }
  CHECK(get(r.stats.accepted_spans) == 0);
  CHECK(r.drain().empty());
  // Unflagged bytes are plain whatever grpc-encoding says (compression is per message).
  CHECK(h2.export_call({grpc_frame(body)}, "gzip").grpc_status == 0);
  CHECK(h2.export_call({grpc_frame(body)}, "identity").grpc_status == 0);
  CHECK(get(r.stats.accepted_spans) == 4);
}
