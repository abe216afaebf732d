#pragma once
// Batcher: the single consumer of the ring. Merges chunks (concatenation, no decode) into
// batches and hands each batch to the sink (the exporters' fan-out). A batch is flushed when it
// reaches max_spans or max_bytes, or `timeout` after its first chunk arrived.

#include <atomic>
#include <condition_variable>
#include <chrono>
#include <functional>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "common/payload.hpp"
#include "common/stats.hpp"
#include "config/config.hpp"
#include "ring/ring.hpp"

namespace spanrelay {

class Batcher {
 public:
  using Sink = std::function<void(BatchPtr)>;  // called on the batcher thread; must not block

  Batcher(Ring<Chunk>& ring, config::Batch options, Sink sink, BatcherStats& stats);
  ~Batcher();
  Batcher(const Batcher&) = delete;
  Batcher& operator=(const Batcher&) = delete;

  void start();
  // Producers call this after a successful push. Cheap when the batcher is busy.
  void notify() noexcept;
  // Drains the ring, flushes everything and joins the thread. Call after the receivers have
  // stopped pushing.
  void stop();
  // Reload: the batch being built is flushed and later ones follow `options`. Any thread.
  void reconfigure(config::Batch options);
  // Watchdog: true when chunks wait in the ring and the thread has not come round for
  // `patience` (it is stuck). An idle batcher is not stalled.
  bool stalled(std::chrono::steady_clock::time_point now,
               std::chrono::milliseconds patience) const noexcept;

 private:
  void run();
  void take(Chunk&& chunk);
  void flush();
  void emit(std::string&& bytes, std::uint32_t spans, BudgetLease&& lease);

  Ring<Chunk>& ring_;
  config::Batch options_;  // batcher thread only
  std::optional<config::Batch> next_options_;  // under mutex_
  std::atomic<bool> reconfigure_{false};
  std::atomic<std::chrono::steady_clock::rep> last_round_{0};
  Sink sink_;
  BatcherStats& stats_;

  std::string pending_;
  std::uint32_t pending_spans_ = 0;
  BudgetLease pending_lease_;
  std::chrono::steady_clock::time_point pending_since_;

  std::atomic<bool> stopping_{false};
  std::atomic<unsigned> sleeping_{0};
  std::mutex mutex_;
  std::condition_variable wake_;
  std::thread thread_;
};

}  // namespace spanrelay
