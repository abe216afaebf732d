// libFuzzer harness, end to end: the real OTLP/gRPC receiver (gRPC core 1.51 for HTTP/2 and
// the 5-byte length-prefix deframing, then our framing decisions and read_message), served on
// a loopback port in this process, and a raw HTTP/2 client (prior knowledge, RFC 9113) that
// writes the preface, SETTINGS, one Export call's HEADERS and the fuzzed gRPC body as DATA.
//
// Input: byte 0: grpc-encoding (% 5: none, gzip, deflate, identity, snappy) and, (byte0 / 5)
// % 2, whether each frame gets a send() of its own; byte 1: where to cut the body into DATA
// frames (each bit a cut point); the rest is the body (flag byte,
// 4-byte big-endian length, message, and whatever follows). Properties:
// - grpc-status 0 => the body was exactly one complete length-prefixed message (flag 0, or
//   flag 1 with grpc-encoding gzip or deflate), whose payload (inflated if flagged) is an
//   ExportTraceServiceRequest that libprotobuf parses and the receivers' scanner accepts;
// - conversely such a body (nothing after the message, payload within the size limits) is
//   answered 0, unless the request names an encoding gRPC does not know (snappy);
// - every call is answered (trailers or RST_STREAM) within 10 s, and the connection survives.
// Known exception, allowed and counted (printed at exit): gRPC 1.51 core silently discards an
// incomplete trailing frame at the end of the stream (fewer than 5 bytes, or fewer bytes than
// its prefix declares, after a complete message); the call is then answered for the first
// message alone. The receiver never sees those bytes (docs/reliability.md, "Fuzzing").
// Open finding, allowed and counted the same way until decided: a frame whose compressed
// flag is neither 0 nor 1 (see bad_flag_frame below).
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <grpc/grpc.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "common/log.hpp"
#include "config/config.hpp"
#include "otlp/compression.hpp"
#include "otlp/wire.hpp"
#include "otlp_check.hpp"
#include "receivers/grpc/otlp_grpc_receiver.hpp"
#include "receivers/intake.hpp"

using namespace spanrelay;
using namespace spanrelay::fuzz;

namespace {

constexpr std::size_t kMaxMessageBytes = 64 * 1024;
constexpr auto kAnswerTimeout = std::chrono::seconds(10);

// The pipeline front of the agent: budget, ring, Intake, and the started gRPC receiver.
struct Server {
  Server() : budget(64u << 20), ring(1024), intake(ring, budget, stats, [] {}) {
    config::GrpcReceiver options;
    options.enabled = true;
    options.endpoint = config::parse_listen_endpoint("127.0.0.1:0");
    options.max_message_bytes = kMaxMessageBytes;
    receiver = std::make_unique<OtlpGrpcReceiver>(options, intake);
    receiver->start();
  }
  // What the Intake accepted since the last call (hex), for the report of a finding.
  std::string drain() {
    std::string seen;
    while (auto chunk = ring.try_pop()) {
      static const char* const digits = "0123456789abcdef";
      seen += "[";
      for (const char c : chunk->bytes) {
        seen += digits[static_cast<std::uint8_t>(c) >> 4];
        seen += digits[static_cast<std::uint8_t>(c) & 15];
      }
      seen += "] ";
    }
    return seen;
  }
  MemoryBudget budget;
  Ring<Chunk> ring;
  ReceiverStats stats;
  Intake intake;
  std::unique_ptr<OtlpGrpcReceiver> receiver;
};

[[noreturn]] void fail(const std::string& what) {
  std::fprintf(stderr, "\n==fuzz_grpc== %s\n", what.c_str());
  std::fflush(stderr);
  std::abort();
}

// RFC 7541 Appendix A.
const char* const kStaticNames[] = {
    ":authority", ":method", ":method", ":path", ":path", ":scheme", ":scheme", ":status",
    ":status", ":status", ":status", ":status", ":status", ":status", "accept-charset",
    "accept-encoding", "accept-language", "accept-ranges", "accept",
    "access-control-allow-origin", "age", "allow", "authorization", "cache-control",
    "content-disposition", "content-encoding", "content-language", "content-length",
    "content-location", "content-range", "content-type", "cookie", "date", "etag", "expect",
    "expires", "from", "host", "if-match", "if-modified-since", "if-none-match", "if-range",
    "if-unmodified-since", "last-modified", "link", "location", "max-forwards",
    "proxy-authenticate", "proxy-authorization", "range", "referer", "refresh", "retry-after",
    "server", "set-cookie", "strict-transport-security", "transfer-encoding", "user-agent",
    "vary", "via", "www-authenticate"};
const char* const kStaticValues[] = {"", "GET", "POST", "/", "/index.html", "http", "https",
                                     "200", "204", "206", "304", "400", "404", "500"};
constexpr std::size_t kStaticCount = sizeof kStaticNames / sizeof kStaticNames[0];

// Just enough HPACK decoding for a gRPC server's answers: static and dynamic table, no Huffman
// (gRPC 1.51 does not Huffman-code text values; a Huffman-coded value reads as "<huffman>").
class HpackDecoder {
 public:
  void decode(const std::string& block, std::map<std::string, std::string>& out) {
    std::size_t pos = 0;
    while (pos < block.size()) {
      const auto b = static_cast<std::uint8_t>(block[pos]);
      if ((b & 0x80) != 0) {
        const auto field = entry(integer(block, pos, 7));
        out[field.first] = field.second;
      } else if ((b & 0xe0) == 0x20) {
        max_ = integer(block, pos, 5);
        evict();
      } else {
        const bool index = (b & 0xc0) == 0x40;
        const std::size_t name_index = integer(block, pos, index ? 6 : 4);
        const std::string name = name_index == 0 ? string(block, pos) : entry(name_index).first;
        const std::string value = string(block, pos);
        if (index) {
          table_.emplace_front(name, value);
          size_ += name.size() + value.size() + 32;
          evict();
        }
        out[name] = value;
      }
    }
  }

 private:
  static std::uint8_t at(const std::string& s, std::size_t pos) {
    if (pos >= s.size()) {
      fail("HPACK block ends early");
    }
    return static_cast<std::uint8_t>(s[pos]);
  }
  static std::size_t integer(const std::string& s, std::size_t& pos, int prefix) {
    const std::size_t max = (std::size_t{1} << prefix) - 1;
    std::size_t v = at(s, pos++) & max;
    if (v < max) {
      return v;
    }
    for (int shift = 0; shift < 28; shift += 7) {
      const std::uint8_t b = at(s, pos++);
      v += std::size_t(b & 0x7f) << shift;
      if ((b & 0x80) == 0) {
        return v;
      }
    }
    fail("HPACK integer too long");
  }
  static std::string string(const std::string& s, std::size_t& pos) {
    const bool huffman = (at(s, pos) & 0x80) != 0;
    const std::size_t n = integer(s, pos, 7);
    if (n > s.size() - pos) {
      fail("HPACK string runs past the block");
    }
    std::string v = s.substr(pos, n);
    pos += n;
    return huffman ? "<huffman>" : v;
  }
  std::pair<std::string, std::string> entry(std::size_t index) const {
    if (index >= 1 && index <= kStaticCount) {
      return {kStaticNames[index - 1], index <= 14 ? kStaticValues[index - 1] : ""};
    }
    if (index == 0 || index - kStaticCount - 1 >= table_.size()) {
      fail("HPACK index out of range");
    }
    return table_[index - kStaticCount - 1];
  }
  void evict() {
    while (size_ > max_ && !table_.empty()) {
      size_ -= table_.back().first.size() + table_.back().second.size() + 32;
      table_.pop_back();
    }
  }
  std::deque<std::pair<std::string, std::string>> table_;
  std::size_t size_ = 0;
  std::size_t max_ = 4096;
};

struct Answer {
  int grpc_status = -1;  // from the trailers; -1 when the stream was reset
  std::optional<std::uint32_t> reset_code;
  std::string message;   // grpc-message
};

// One HTTP/2 connection to the receiver; calls one at a time, each on a new stream.
class H2Connection {
 public:
  explicit H2Connection(std::uint16_t port) {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons(port);
    if (fd_ < 0 || ::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
      fail(std::string("cannot connect to the receiver: ") + std::strerror(errno));
    }
    const int one = 1;
    ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    out_ = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    frame(kSettings, 0, 0, "");
  }
  ~H2Connection() { ::close(fd_); }

  // write_each_frame: one send() per frame (else one for the whole call), which changes what
  // gRPC core has read when the server's first read is posted.
  Answer call(const std::string& encoding, const std::vector<std::string>& data,
              bool write_each_frame) {
    const std::uint32_t stream = next_stream_;
    next_stream_ += 2;
    std::string block;
    literal(block, ":method", "POST");
    literal(block, ":scheme", "http");
    literal(block, ":path", std::string(kOtlpTraceExportPath));
    literal(block, ":authority", "127.0.0.1");
    literal(block, "content-type", "application/grpc");
    literal(block, "te", "trailers");
    if (!encoding.empty()) {
      literal(block, "grpc-encoding", encoding);
    }
    frame(kHeaders, kEndHeaders, stream, block);
    for (std::size_t i = 0; i < data.size(); ++i) {
      if (write_each_frame) {
        flush();
      }
      frame(kData, i + 1 == data.size() ? kEndStream : 0, stream, data[i]);
    }
    flush();
    return await(stream);
  }

 private:
  static constexpr std::uint8_t kData = 0, kHeaders = 1, kRstStream = 3, kSettings = 4,
                                kPing = 6, kGoaway = 7, kWindowUpdate = 8, kContinuation = 9;
  static constexpr std::uint8_t kEndStream = 1, kAck = 1, kEndHeaders = 4, kPadded = 8,
                                kPriority = 0x20;

  void frame(std::uint8_t type, std::uint8_t flags, std::uint32_t stream,
             const std::string& payload) {
    const auto n = static_cast<std::uint32_t>(payload.size());
    const char head[9] = {static_cast<char>(n >> 16), static_cast<char>(n >> 8),
                          static_cast<char>(n), static_cast<char>(type),
                          static_cast<char>(flags), static_cast<char>(stream >> 24),
                          static_cast<char>(stream >> 16), static_cast<char>(stream >> 8),
                          static_cast<char>(stream)};
    out_.append(head, 9);
    out_ += payload;
  }

  // Gives the server back the connection-level flow-control window its DATA used (the answers
  // would stop after 64 KiB otherwise); each stream's own window is never exhausted.
  void window_update(std::size_t n) {
    const auto v = static_cast<std::uint32_t>(n);
    frame(kWindowUpdate, 0, 0,
          std::string{static_cast<char>(v >> 24), static_cast<char>(v >> 16),
                      static_cast<char>(v >> 8), static_cast<char>(v)});
    flush();
  }

  void flush() {
    std::size_t done = 0;
    while (done < out_.size()) {
      const ssize_t n = ::send(fd_, out_.data() + done, out_.size() - done, MSG_NOSIGNAL);
      if (n < 0 && errno == EINTR) {
        continue;
      }
      if (n <= 0) {
        fail(std::string("send to the receiver failed: ") + std::strerror(errno));
      }
      done += static_cast<std::size_t>(n);
    }
    out_.clear();
  }

  static void literal(std::string& out, const std::string& name, const std::string& value) {
    out.push_back(0);  // literal without indexing, new name; lengths < 127 here
    out.push_back(static_cast<char>(name.size()));
    out += name;
    out.push_back(static_cast<char>(value.size()));
    out += value;
  }

  // Ensures `n` bytes are buffered, waiting until the deadline.
  void fill(std::size_t n, std::chrono::steady_clock::time_point deadline) {
    while (in_.size() - in_pos_ < n) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) {
        fail("no answer from the receiver within 10 s");
      }
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) {
        continue;
      }
      char buf[16384];
      const ssize_t got = ::recv(fd_, buf, sizeof buf, 0);
      if (got < 0 && errno == EINTR) {
        continue;
      }
      if (got <= 0) {
        fail("the receiver closed the connection");
      }
      if (in_pos_ > 0) {
        in_.erase(0, in_pos_);
        in_pos_ = 0;
      }
      in_.append(buf, static_cast<std::size_t>(got));
    }
  }

  Answer await(std::uint32_t stream) {
    const auto deadline = std::chrono::steady_clock::now() + kAnswerTimeout;
    Answer answer;
    std::string block;
    bool block_ends_stream = false;
    std::map<std::string, std::string> headers;
    for (;;) {
      fill(9, deadline);
      const auto* h = reinterpret_cast<const std::uint8_t*>(in_.data() + in_pos_);
      const std::size_t length = std::size_t{h[0]} << 16 | std::size_t{h[1]} << 8 | h[2];
      const std::uint8_t type = h[3];
      const std::uint8_t flags = h[4];
      const std::uint32_t id = (std::uint32_t{h[5]} & 0x7f) << 24 | std::uint32_t{h[6]} << 16 |
                               std::uint32_t{h[7]} << 8 | h[8];
      fill(9 + length, deadline);
      std::string payload = in_.substr(in_pos_ + 9, length);
      in_pos_ += 9 + length;
      if (type == kSettings && (flags & kAck) == 0) {
        frame(kSettings, kAck, 0, "");
        flush();
      } else if (type == kPing && (flags & kAck) == 0) {
        frame(kPing, kAck, 0, payload);
        flush();
      } else if (type == kGoaway) {
        fail("the receiver sent GOAWAY");
      } else if (id != stream) {
        if (type == kData && length > 0) {
          window_update(length);
        }
        continue;  // an earlier stream's late frames (RST_STREAM after trailers), WINDOW_UPDATE
      } else if (type == kRstStream) {
        if (payload.size() != 4) {
          fail("malformed RST_STREAM");
        }
        const auto* p = reinterpret_cast<const std::uint8_t*>(payload.data());
        answer.reset_code = std::uint32_t{p[0]} << 24 | std::uint32_t{p[1]} << 16 |
                            std::uint32_t{p[2]} << 8 | p[3];
        return answer;
      } else if (type == kHeaders || type == kContinuation) {
        if (type == kHeaders) {
          if ((flags & kPadded) != 0 && !payload.empty()) {
            const std::size_t pad = static_cast<std::uint8_t>(payload[0]);
            payload = payload.substr(1, payload.size() - 1 - std::min(pad, payload.size() - 1));
          }
          if ((flags & kPriority) != 0) {
            payload.erase(0, 5);
          }
          block_ends_stream = (flags & kEndStream) != 0;
        }
        block += payload;
        if ((flags & kEndHeaders) != 0) {
          hpack_.decode(block, headers);
          block.clear();
          if (block_ends_stream) {
            const auto status = headers.find("grpc-status");
            if (status == headers.end()) {
              fail("trailers without grpc-status");
            }
            answer.grpc_status = std::atoi(status->second.c_str());
            answer.message = headers["grpc-message"];
            return answer;
          }
        }
      } else if (type == kData) {
        if (length > 0) {
          window_update(length);
        }
        if ((flags & kEndStream) != 0) {
          fail("the stream ended without trailers");
        }
      }
    }
  }

  int fd_ = -1;
  std::uint32_t next_stream_ = 1;
  std::string out_;
  std::string in_;
  std::size_t in_pos_ = 0;
  HpackDecoder hpack_;
};

Server* g_server = nullptr;
H2Connection* g_connection = nullptr;
std::atomic<std::uint64_t> g_trailing_discarded{0};
std::atomic<std::uint64_t> g_bad_flag_first{0};
std::atomic<std::uint64_t> g_bad_flag_after{0};

std::uint32_t be32(const std::string& s, std::size_t pos) {
  const auto* p = reinterpret_cast<const std::uint8_t*>(s.data()) + pos;
  return std::uint32_t{p[0]} << 24 | std::uint32_t{p[1]} << 16 | std::uint32_t{p[2]} << 8 | p[3];
}

// The payload of a flagged message, inflated as the receiver must (gzip, or deflate as a zlib
// stream; within max_message_bytes); nullopt if that fails.
std::optional<std::string> inflated(const std::string& payload, const std::string& encoding) {
  std::string out;
  if (payload.empty()) {
    return out;
  }
  if (otlp::inflate_limited(payload, encoding == "deflate", kMaxMessageBytes, out) !=
      otlp::InflateStatus::kOk) {
    return std::nullopt;
  }
  return out;
}

bool is_request(const std::string& payload) {
  ExportTraceServiceRequest parsed;
  return otlp::scan_request(payload).ok && parse(payload, parsed);
}

void report_exceptions() {
  std::fprintf(stderr,
               "fuzz_grpc: %llu call(s) answered OK although an incomplete frame followed the "
               "message (gRPC core discards it; the known exception)\n",
               static_cast<unsigned long long>(g_trailing_discarded.load()));
  std::fprintf(stderr,
               "fuzz_grpc: %llu call(s) answered OK for a body whose first compressed flag is "
               "neither 0 nor 1, %llu for one whose second is (gRPC core passes an empty "
               "message on, or drops the frame and what follows; the open finding)\n",
               static_cast<unsigned long long>(g_bad_flag_first.load()),
               static_cast<unsigned long long>(g_bad_flag_after.load()));
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  init_logging("off", false);
  ::setenv("GRPC_VERBOSITY", "NONE", 0);  // gRPC logs every refused grpc-encoding otherwise
  g_server = new Server();
  g_connection = new H2Connection(g_server->receiver->port());
  std::atexit(report_exceptions);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  Input in{data, size};
  static const char* const kEncodings[] = {"", "gzip", "deflate", "identity", "snappy"};
  const std::uint8_t options = in.byte();
  const std::string encoding = kEncodings[options % 5];
  const bool write_each_frame = (options / 5) % 2 != 0;
  const std::uint8_t cuts = in.byte();
  const std::string body(in.rest());
  if (body.size() > 16000) {
    return 0;  // one DATA frame per piece must stay within the default 16 KiB frame size
  }

  std::vector<std::string> frames;
  std::size_t from = 0;
  for (int bit = 0; bit < 8; ++bit) {
    if ((cuts >> bit & 1) != 0) {
      const std::size_t to = body.size() * static_cast<std::size_t>(bit + 1) / 9;
      if (to > from) {
        frames.push_back(body.substr(from, to - from));
        from = to;
      }
    }
  }
  frames.push_back(body.substr(from));  // the last carries END_STREAM (may be empty)

  const Answer answer = g_connection->call(encoding, frames, write_each_frame);
  const std::string accepted = g_server->drain();
  if (std::getenv("FUZZ_GRPC_TRACE") != nullptr) {
    std::fprintf(stderr, "call: %zu body bytes, encoding '%s', %zu frames -> status %d (%s)%s\n",
                 body.size(), encoding.c_str(), frames.size(), answer.grpc_status,
                 answer.message.c_str(), answer.reset_code ? " reset" : "");
  }

  // What the body is, seen by the gRPC protocol.
  bool one_message = false;  // exactly one complete message and nothing after it
  bool trailing_incomplete = false;
  std::optional<std::string> payload;  // the message's request bytes, inflated if flagged
  if (body.size() >= 5 && static_cast<std::uint8_t>(body[0]) <= 1 &&
      be32(body, 1) <= body.size() - 5) {
    const std::size_t end = 5 + std::size_t{be32(body, 1)};
    const std::string message = body.substr(5, end - 5);
    const std::string rest = body.substr(end);
    one_message = rest.empty();
    trailing_incomplete =
        !rest.empty() && (rest.size() < 5 || be32(rest, 1) > rest.size() - 5);
    if (body[0] == 0) {
      payload = message;
    } else if (encoding == "gzip" || encoding == "deflate") {
      payload = inflated(message, encoding);
    }
  }
  const bool valid_request = payload && payload->size() <= kMaxMessageBytes &&
                             is_request(*payload);
  // The frame (1-based) whose compressed flag is neither 0 nor 1, if gRPC core gets to read it:
  // every frame before it complete, and its 5-byte prefix there; 0 if none.
  int bad_flag_frame = 0;
  for (std::size_t pos = 0, index = 1; body.size() - pos >= 5; ++index) {
    if (static_cast<std::uint8_t>(body[pos]) > 1) {
      bad_flag_frame = static_cast<int>(index);
      break;
    }
    const std::size_t length = be32(body, pos + 1);
    if (length > body.size() - pos - 5) {
      break;  // incomplete
    }
    pos += 5 + length;
  }

  if (answer.grpc_status == 0) {
    // Open finding (docs/reliability.md, "Fuzzing"): gRPC 1.51 core, meeting a compressed flag
    // that is neither 0 nor 1, either hands the server an empty message in its place or drops
    // it and everything after it without telling anyone, depending on what it has read when
    // the server's read is posted. As the first frame: an empty message, which the receiver
    // cannot tell from a real one, accepted with 0 spans. Right after the message: the call
    // ends there, and the message is accepted.
    if (bad_flag_frame == 1) {
      ++g_bad_flag_first;
      return 0;
    }
    if (bad_flag_frame == 2 && valid_request) {
      ++g_bad_flag_after;
      return 0;
    }
    if (!(one_message || trailing_incomplete) || !valid_request) {
      std::fprintf(stderr, "grpc-status 0 for a body that is not one valid message (%zu bytes, "
                           "encoding '%s'); accepted: %s\n", body.size(), encoding.c_str(),
                   accepted.c_str());
      FUZZ_CHECK(!"grpc-status 0 => exactly one complete message holding a valid request");
    }
    if (trailing_incomplete) {
      ++g_trailing_discarded;
    }
  } else if (one_message && valid_request && encoding != "snappy") {
    std::fprintf(stderr, "grpc-status %d (%s), reset %d, for one valid message\n",
                 answer.grpc_status, answer.message.c_str(),
                 answer.reset_code ? static_cast<int>(*answer.reset_code) : -1);
    FUZZ_CHECK(!"one complete message holding a valid request => grpc-status 0");
  }
  return 0;
}
