#pragma once
// Assertions shared by the integration test files: accepted exports, exactly-once delivery to
// a fake upstream (HTTP or gRPC), metric series names, secrets kept out of output.

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <sys/types.h>
#include <functional>
#include <mutex>
#include <thread>
#include <string>
#include <string_view>
#include <vector>

#include <catch2/catch.hpp>

#include "integration/fake_upstream.hpp"
#include "integration/harness.hpp"

namespace it {

std::string content_type_of(const HttpResponse& response);

// A 200 answer to an OTLP export, decoded in the request's encoding; returns rejected_spans.
std::int64_t accepted_rejected_spans(const HttpResponse& response, Format format);
void require_accepted(const HttpResponse& response, Format format = Format::protobuf);

// Posts a fresh request of n_spans to the HTTP receiver; requires it accepted.
std::vector<FlatSpan> post_and_expect_ok(std::uint16_t port, std::size_t n_spans,
                                         const PostOptions& options = {});

void append(std::vector<FlatSpan>& to, const std::vector<FlatSpan>& more);

// A negative check: pred stays false for the whole window (no event can be awaited instead).
bool stays_false(const std::function<bool()>& pred, Millis window);

// Neither the token nor the Authorization value built from it may appear in output or logs.
void check_no_secret(const std::string& output);

// The resident set size of a running process, in bytes (VmRSS of /proc/<pid>/status); fails
// the test when it cannot be read.
double rss_bytes(pid_t pid);

// `metric{exporter="name"}`.
std::string exporter_series(std::string_view metric, std::string_view exporter = "up");

// The base URL of a FakeUpstream listening on 127.0.0.1:port.
std::string url_on(std::uint16_t port);
// One otlp_http exporter "up" to upstream_url with a disk spool in spool_dir (retries at most
// 500 ms apart).
AgentConfig spool_config(const std::string& upstream_url, const std::string& spool_dir);

// Waits for the spans to arrive and checks each arrived exactly once, unchanged. Upstream is
// a FakeUpstream or a FakeGrpcUpstream.
template <class Upstream>
void require_delivered_once(const Upstream& upstream, const std::vector<FlatSpan>& sent,
                            Millis timeout = 10s) {
  const bool arrived = upstream.wait_for_spans(sent.size(), timeout);
  INFO("delivered " << upstream.delivered_span_count() << " of " << sent.size() << " spans in "
                    << upstream.request_count() << " upstream requests");
  CHECK(arrived);
  const std::string problems = compare_delivery(sent, upstream.delivered_spans());
  INFO(problems);
  CHECK(problems.empty());
}

// A client that keeps exporting small requests from its own thread, remembering every span
// the agent acknowledged with 200.
class Load {
 public:
  Load(std::uint16_t port, std::size_t spans_per_request, Millis pause);
  ~Load() { stop(); }
  Load(const Load&) = delete;
  Load& operator=(const Load&) = delete;

  void stop();
  std::vector<FlatSpan> accepted();
  std::size_t accepted_count();
  std::size_t refused() const { return refused_; }
  std::size_t failed() const { return failed_; }

 private:
  void run(std::uint16_t port, std::size_t n, Millis pause);

  std::atomic<bool> stop_{false};
  std::mutex m_;
  std::vector<FlatSpan> accepted_;
  std::atomic<std::size_t> refused_{0};
  std::atomic<std::size_t> failed_{0};
  std::thread thread_;
};

struct DeliveryReport {
  std::size_t missing = 0;      // acknowledged, never delivered
  std::size_t duplicates = 0;   // deliveries beyond the first of a span
  std::size_t unexpected = 0;   // delivered but never acknowledged (e.g. refused, then kept)
};

// Every span acknowledged must be among the delivered ones (from any of the upstreams).
DeliveryReport compare(const std::vector<FlatSpan>& accepted,
                       const std::vector<const FakeUpstream*>& upstreams,
                       const std::vector<FlatSpan>& delivered_earlier = {});

// Waits until every acknowledged span has been delivered somewhere.
DeliveryReport await_delivery(const std::vector<FlatSpan>& accepted,
                              const std::vector<const FakeUpstream*>& upstreams, Millis timeout,
                              const std::vector<FlatSpan>& delivered_earlier = {});

}  // namespace it
