#pragma once
// Self-observability: plain atomic counters, one struct per component, rendered as Prometheus
// text by the admin server. Every drop in the pipeline increments exactly one counter here.

#include <atomic>
#include <cstdint>
#include <string>

namespace spanrelay {

using Counter = std::atomic<std::uint64_t>;

inline void add(Counter& c, std::uint64_t n = 1) noexcept { c.fetch_add(n, std::memory_order_relaxed); }
inline std::uint64_t get(const Counter& c) noexcept { return c.load(std::memory_order_relaxed); }

// Shared by every receiver (one pipeline, one set of receiver counters).
struct ReceiverStats {
  Counter requests;          // requests that reached a handler
  Counter accepted_spans;    // spans acknowledged to a client and pushed to the ring
  Counter refused_spans;     // spans answered with 429/RESOURCE_EXHAUSTED (buffer full)
  Counter rejected_spans;    // spans dropped as invalid (bad ids) and reported in partial_success
  Counter bad_requests;      // requests answered 4xx (undecodable, too large, wrong type...)
  Counter unavailable;       // requests answered 503/UNAVAILABLE while shutting down
};

struct BatcherStats {
  Counter batches;           // batches handed to the exporters
  Counter spans;             // spans in those batches
  Counter splits;            // chunks that had to be split to respect batch.max_bytes/max_spans
};

// One per exporter, labelled with its configured name.
struct ExporterStats {
  Counter sent_spans;        // spans the upstream acknowledged
  Counter sent_requests;     // requests the upstream acknowledged
  Counter failed_spans;      // spans dropped: permanent error or retries exhausted
  Counter failed_requests;
  Counter retries;           // attempts after the first
  Counter rejected_spans;    // spans the upstream reported in partial_success
  Counter queued_batches;    // gauge-like: batches waiting or in flight (inc on submit, dec on done)
  Counter split_batches;     // batches the upstream refused as too large, re-sent in pieces
  Counter circuit_state;     // gauge: 0 closed, 1 open, 2 half-open (one probe out)
  Counter circuit_opened;    // times the circuit opened
  Counter respooled_spans;   // spans whose retries ran out and that went back to the spool
  Counter spool_refused_spans;  // spans refused at intake: this exporter's spool was full/failing
};

}  // namespace spanrelay
