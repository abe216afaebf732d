#pragma once
// Self-observability: plain atomic counters, one struct per component, rendered as Prometheus
// text by the admin server. Every drop in the pipeline increments exactly one counter here.

#include <atomic>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <string>

#include "common/histogram.hpp"

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
  Histogram http_duration;   // time to handle one OTLP/HTTP request (body read to answer)
  Histogram grpc_duration;   // time to handle one OTLP/gRPC call (message read to answer)
};

struct BatcherStats {
  Counter batches;           // batches handed to the exporters
  Counter spans;             // spans in those batches
  Counter splits;            // chunks that had to be split to respect batch.max_bytes/max_spans
};

// What an operator wants to know about an exporter's upstream right now (the status page).
// Written by the exporter's thread after each attempt, read by the admin endpoint.
struct ExporterHealth {
  using Time = std::chrono::system_clock::time_point;
  struct Snapshot {
    bool attempted = false;     // any attempt yet
    bool failing = false;       // the latest attempt failed
    std::string last_error;     // one line, no secrets
    std::string last_error_class;  // failure_class_name()
    Time last_error_at{};
    Time last_success_at{};
    Time next_retry_at{};       // epoch when no retry is scheduled
  };

  void succeeded() {
    std::lock_guard lock(mu_);
    s_.attempted = true;
    s_.failing = false;
    s_.last_success_at = std::chrono::system_clock::now();
    s_.next_retry_at = Time{};
  }
  void failed(std::string error, std::string error_class, Time next_retry) {
    std::lock_guard lock(mu_);
    s_.attempted = true;
    s_.failing = true;
    s_.last_error = std::move(error);
    s_.last_error_class = std::move(error_class);
    s_.last_error_at = std::chrono::system_clock::now();
    s_.next_retry_at = next_retry;
  }
  // The circuit holds every attempt until `t`: no retry comes before it.
  void retry_not_before(Time t) {
    std::lock_guard lock(mu_);
    if (s_.failing && t > s_.next_retry_at) {
      s_.next_retry_at = t;
    }
  }
  Snapshot snapshot() const {
    std::lock_guard lock(mu_);
    return s_;
  }

 private:
  mutable std::mutex mu_;
  Snapshot s_;
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
  Counter queued_bytes;      // gauge: bytes of the batches waiting in the memory queue
  Histogram request_duration;  // one observation per attempt to the upstream
  ExporterHealth health;
};



}  // namespace spanrelay
