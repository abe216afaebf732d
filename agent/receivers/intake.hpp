#pragma once
// The receivers' common door into the pipeline: validates one request in wire form, drops spans
// with invalid ids (reported as partial success), runs the processors, reserves memory and
// pushes to the ring (or hands the request to the spools).
// Every receiver (HTTP and gRPC) goes through here, so all share one ring, one budget and
// one set of counters.

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "common/budget.hpp"
#include "common/log.hpp"
#include "common/payload.hpp"
#include "common/stats.hpp"
#include "processors/processors.hpp"
#include "ring/ring.hpp"

namespace spanrelay {

enum class IntakeStatus {
  kAccepted,      // acknowledged (possibly with rejected spans): answer 200 / OK
  kInvalid,       // undecodable: 400 / INVALID_ARGUMENT, `error` says why
  kFull,          // buffer full: 429 / RESOURCE_EXHAUSTED, retryable
  kTooLarge,      // can never be taken (larger than the spool): 413 / RESOURCE_EXHAUSTED, final
  kShuttingDown,  // 503 / UNAVAILABLE
};

struct IntakeResult {
  IntakeStatus status = IntakeStatus::kInvalid;
  std::uint32_t accepted_spans = 0;
  std::uint32_t rejected_spans = 0;
  std::string error;  // for kInvalid, and the partial-success message when rejected_spans > 0
};

// Thread-safe: receivers call submit from any thread.
class Intake {
 public:
  Intake(Ring<Chunk>& ring, MemoryBudget& budget, ReceiverStats& stats,
         std::function<void()> notify_consumer);

  // Spool mode: `persist` is called with every accepted request (after invalid spans are
  // removed) before it is acknowledged and returns kAccepted (go on), kFull (answer 429 /
  // RESOURCE_EXHAUSTED) or kTooLarge (413, never retried). Without memory exporters (`forward_to_ring` false) the
  // request then goes no further. Call before the receivers start.
  using Persist = std::function<IntakeStatus(std::string_view request, std::uint32_t spans)>;
  struct Route {
    Persist persist;  // empty: memory only
    bool forward_to_ring = true;
    // Applied to every request before it is persisted or buffered; null: none.
    std::shared_ptr<const processors::ProcessorChain> processors{};
  };
  // Any time (reload): requests that start after it use the new route. Returns the old one;
  // once its use_count() is 1, no request is still using it.
  std::shared_ptr<const Route> set_route(Route route);
  void set_persist(Persist persist, bool forward_to_ring) {
    set_route(Route{std::move(persist), forward_to_ring});
  }

  // `request` is a serialized ExportTraceServiceRequest (already decompressed/converted).
  IntakeResult submit(std::string&& request) noexcept;

  // After this returns, submit answers kShuttingDown and no submit is still pushing.
  void close() noexcept;
  bool closed() const noexcept { return closed_.load(); }

  ReceiverStats& stats() noexcept { return stats_; }
  // When a request was last refused for want of memory (buffer or ring full); epoch if never.
  std::chrono::steady_clock::time_point last_full() const noexcept {
    return std::chrono::steady_clock::time_point(
        std::chrono::steady_clock::duration(last_full_.load(std::memory_order_relaxed)));
  }
  // When a spool last refused a request (full with on_full: reject, or a disk error).
  std::chrono::steady_clock::time_point last_spool_full() const noexcept {
    return std::chrono::steady_clock::time_point(
        std::chrono::steady_clock::duration(last_spool_full_.load(std::memory_order_relaxed)));
  }

 private:
  IntakeResult refuse(std::uint32_t spans) noexcept;

  Ring<Chunk>& ring_;
  MemoryBudget& budget_;
  ReceiverStats& stats_;
  std::function<void()> notify_;
  std::atomic<std::shared_ptr<const Route>> route_{std::make_shared<const Route>()};
  std::atomic<bool> closed_{false};
  std::atomic<std::chrono::steady_clock::rep> last_full_{0};
  std::atomic<std::chrono::steady_clock::rep> last_spool_full_{0};
  std::atomic<int> in_progress_{0};
  std::shared_ptr<spdlog::logger> log_;
  RateLimit full_warning_;
};

}  // namespace spanrelay
