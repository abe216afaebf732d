#pragma once
// What the admin endpoint reports, rendered from a read-only view of the running agent:
// Prometheus text for /metrics and the JSON document behind /status.json and the status page.
// The view holds pointers to live counters (atomics); rendering only reads them.

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "common/stats.hpp"
#include "spool/spool.hpp"

namespace spanrelay {

struct ReceiverView {
  std::string name;      // "http" | "grpc"
  std::string endpoint;  // as configured
  std::string state;     // "listening" | "draining" | "stopped"
  const Histogram* duration = nullptr;
};

struct ExporterView {
  std::string name;
  std::string type;      // "otlp_http" | "otlp_grpc" | "file"
  std::string endpoint;  // URL or file path
  bool network = true;   // has a circuit, retries and a queue
  const ExporterStats* stats = nullptr;
  std::uint64_t queue_limit_bytes = 0;
  const Spool* spool = nullptr;  // spool mode
};

struct ProcessorView {
  std::string name;  // "filter", "redact/2", ...
  std::vector<std::pair<std::string, std::uint64_t>> dropped_spans;  // by reason
  std::uint64_t edited_attributes = 0;
};

struct ReloadView {
  std::uint64_t succeeded = 0;
  std::uint64_t failed = 0;
  std::string last_result;  // "" | "success" | "failure"
  std::chrono::system_clock::time_point last_time{};
  std::string last_error;
};

struct AgentView {
  std::string config_source;
  std::chrono::system_clock::time_point started_at{};
  bool live = true;
  std::string live_reason;
  bool ready = false;
  std::string ready_reason;
  ReloadView reloads;
  std::uint64_t http_idle_evictions = 0;        // at max_connections, idle connections closed
  std::uint64_t http_connections_refused = 0;  // at max_connections, every one busy
  std::uint64_t buffer_used = 0;
  std::uint64_t buffer_limit = 0;
  const ReceiverStats* receiver_stats = nullptr;
  const BatcherStats* batcher_stats = nullptr;
  std::vector<ReceiverView> receivers;
  std::vector<ExporterView> exporters;
  std::vector<ProcessorView> processors;  // in chain order
  std::shared_ptr<const void> keep_alive;  // keeps what the pointers above point to alive
};

std::string render_metrics(const AgentView& view);

// Per-second rates between successive status documents (at least half a second apart; a
// closer request gets the previous rate). Thread-safe.
class RateTracker {
 public:
  double rate(const std::string& key, std::uint64_t value);

 private:
  struct Sample {
    std::uint64_t value = 0;
    std::chrono::steady_clock::time_point at{};
    double rate = 0;
  };
  std::mutex mu_;
  std::map<std::string, Sample> samples_;
};

std::string render_status_json(const AgentView& view, RateTracker& rates);

// RFC 3339 UTC with milliseconds, e.g. "2026-12-02T15:04:05.123Z".
std::string rfc3339(std::chrono::system_clock::time_point t);

}  // namespace spanrelay
