#pragma once
// The protocol half of a network exporter: how one attempt to deliver one batch is made.
// QueuedExporter owns the queue, the retry loop, the counters and the shutdown; a Sender only
// talks to the upstream. All calls happen on the exporter's io thread.

#include <boost/asio/awaitable.hpp>

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>

#include "common/payload.hpp"

namespace spanrelay {

// Why an attempt failed, for logs (one rate limit per class) and the status page.
enum class FailureClass {
  kNone,        // delivered
  kAuth,        // HTTP 401/403, gRPC UNAUTHENTICATED/PERMISSION_DENIED
  kClient,      // any other 4xx (incl. 429), gRPC codes that blame the request
  kServer,      // 5xx, gRPC INTERNAL/UNAVAILABLE answered by the server, ...
  kTimeout,     // no answer within `timeout`, gRPC DEADLINE_EXCEEDED
  kConnection,  // cannot resolve/connect/keep the connection (refused, reset, closed)
  kTls,         // TLS handshake or certificate failure
};
const char* failure_class_name(FailureClass c) noexcept;  // "auth", "4xx", "5xx", ...

struct Attempt {
  enum Outcome { kDelivered, kRetryable, kPermanent } outcome = kRetryable;
  FailureClass failure = FailureClass::kNone;
  int status = 0;  // HTTP status or gRPC status code of the answer; 0: no answer
  // The upstream asked for a delay (HTTP Retry-After, gRPC RetryInfo).
  std::optional<std::chrono::milliseconds> retry_after;
  // A transport failure on a reused connection before any answer: worth one immediate retry.
  bool stale_connection = false;
  // The upstream refused the request for its size (HTTP 413, or Grafana Cloud's 429 "larger
  // than max"): resending the same bytes can never succeed, smaller pieces can.
  bool too_large = false;
  std::string detail;         // for logs; never contains credentials
  std::int64_t rejected = 0;  // partial_success.rejected_spans on delivery
};

class Sender {
 public:
  virtual ~Sender() = default;
  // Called once per batch, before its first attempt: what every attempt will send
  // (e.g. the gzip-compressed bytes).
  virtual std::string prepare(const Batch& batch) = 0;
  // One attempt from worker `slot` (0 .. max_in_flight-1); slots never overlap.
  virtual boost::asio::awaitable<Attempt> send(std::size_t slot, std::string& payload) = 0;
  // The shutdown deadline passed: make every pending send() finish promptly.
  virtual void cancel_all() = 0;
  // Closes whatever slot `slot` keeps open (on its exit).
  virtual void close(std::size_t slot) = 0;
  // The upstream refused the credentials slot `slot` last sent (401/403): re-read them (a
  // rotated password_file). True when the current ones differ from those that were refused
  // (re-read now, or already by another slot's request), so one more attempt is worth making.
  virtual bool refresh_credentials(std::size_t /*slot*/) { return false; }
  // One line for the start-up log, e.g. "https://host/otlp/v1/traces (gzip)". No secrets.
  virtual std::string describe() const = 0;
};

}  // namespace spanrelay
