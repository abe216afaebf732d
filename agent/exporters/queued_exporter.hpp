#pragma once
// A network exporter: its own io thread, a queue of batches, `max_in_flight` workers that each
// deliver one batch at a time through the Sender, the retry policy (backoff with full jitter,
// Retry-After, max_elapsed) and a circuit breaker (circuit.hpp) that every attempt must pass.
// Used by otlp_http and otlp_grpc.
//
// Two modes:
// - memory (no spool): the batcher submit()s shared batches into a bounded in-memory queue;
//   retries that run out (max_elapsed) drop the batch and count it.
// - spool: the queue is on disk. Intake appends every accepted request with spool_append()
//   before the client gets its answer; workers read records back, batch them (batch.max_spans,
//   max_bytes, timeout) and acknowledge them once delivered. Retries that run out return the
//   records to the spool, and at shutdown anything undelivered simply stays there.
//
// Time: the retry loop, the circuit and every timer run on ExporterClock (clock.hpp), the
// steady clock in production, moved forward by tests (then clock_moved()).
//
// Threading: all state lives on the io thread; submit(), shutdown(), retire() and the wake-up
// of spool_append() post to it. spool_append() itself runs on the caller's thread.
//
// Reload: an exporter whose options changed is replaced by a new one of the same name. The
// old one retire()s: its waiting batches go to the successor at once, and a batch in flight
// finishes its current attempt and, if that fails, goes to the successor too (spool mode: its
// records return to the shared spool, which the successor reads). Nothing is dropped or sent
// twice by the handover itself. Counters (ExporterStats) are shared by the two.

#include <boost/asio/awaitable.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>

#include <atomic>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <thread>
#include <vector>

#include "common/budget.hpp"
#include "common/log.hpp"
#include "config/config.hpp"
#include "exporters/exporter.hpp"
#include "exporters/circuit.hpp"
#include "exporters/clock.hpp"
#include "exporters/failure_log.hpp"
#include "exporters/sender.hpp"
#include "spool/spool.hpp"

namespace spanrelay {

class QueuedExporter final : public Exporter {
 public:
  // Builds the sender on the exporter's io context, with the exporter's options (which
  // outlive it).
  using SenderFactory = std::function<std::unique_ptr<Sender>(boost::asio::io_context&,
                                                              const config::Exporter&)>;

  // max_queue_bytes must be resolved (non-zero). `budget` is the agent's memory budget: the
  // queue sheds its oldest batches past max_queue_bytes only while that budget is under
  // pressure (nullptr: always), so a slow but healthy upstream keeps its backlog while memory
  // is plentiful and a dead one cannot starve the others when it is not.
  // `stats`: counters to carry over from a predecessor (nullptr: fresh ones).
  QueuedExporter(config::Exporter options, SenderFactory make_sender,
                 MemoryBudget* budget = nullptr, std::shared_ptr<ExporterStats> stats = {});
  // Spool mode: batches are read from `spool` (opened by the caller, possibly shared with a
  // retiring predecessor) within `batch` limits.
  QueuedExporter(config::Exporter options, SenderFactory make_sender, MemoryBudget* budget,
                 std::shared_ptr<Spool> spool, config::Batch batch,
                 std::shared_ptr<ExporterStats> stats = {});
  ~QueuedExporter() override;

  const std::string& name() const noexcept override { return options_.name; }
  void start() override;
  void submit(BatchPtr batch) noexcept override;
  void shutdown(std::chrono::steady_clock::time_point deadline) noexcept override;
  const ExporterStats& stats() const noexcept override { return *stats_; }
  const std::shared_ptr<ExporterStats>& shared_stats() const noexcept { return stats_; }
  const config::Exporter& options() const noexcept { return options_; }

  // Reload: stop taking new work and hand every batch that is not mid-attempt to `successor`
  // (memory mode; called on this exporter's thread, must not block) or back to the spool
  // (spool mode; `successor` unused). Follow with shutdown(). Blocks until it took effect.
  using Successor = std::function<void(BatchPtr)>;
  void retire(Successor successor);
  // Spool mode: look at the spool now (records may have been appended through a predecessor).
  void kick() noexcept;
  // Reload: an automatic max_queue_bytes follows the number of exporters. Any thread.
  void set_queue_limit(std::size_t bytes);
  // Tests: ExporterClock::advance() moved the exporter's time; timers whose time has come fire
  // now (a timer computes its wait when armed, so it must be made to look again).
  void clock_moved() noexcept;

  // Watchdog: ping() asks the io thread to answer; responsive() is false when an earlier
  // ping has waited longer than `patience` (the thread is stuck).
  void ping() noexcept override;
  bool responsive(std::chrono::steady_clock::time_point now,
                  std::chrono::milliseconds patience) const noexcept override;
  // Spool mode only, from any thread: appends one accepted request to this exporter's spool
  // (durable per spool.fsync when it returns kOk) and wakes a worker. Counts refusals.
  AppendStatus spool_append(std::string_view request, std::uint32_t spans) noexcept;
  const Spool* spool() const noexcept { return spool_.get(); }

 private:
  struct Worker;

  boost::asio::awaitable<void> run_worker(Worker& w);
  boost::asio::awaitable<BatchPtr> next_batch(Worker& w);
  boost::asio::awaitable<BatchPtr> collect(Worker& w);
  boost::asio::awaitable<void> deliver(Worker& w, const BatchPtr& batch);
  enum class Admission { kGo, kStop, kTimedOut, kYield, kHandOver };
  boost::asio::awaitable<Admission> admit(Worker& w, ExporterClock::time_point give_up_at);
  void circuit_changed();
  bool may_read_spool() const noexcept;
  void give_up(const BatchPtr& batch, const std::string& why);
  void hand_over(BatchPtr batch);
  void record_failure(const Attempt& a, const std::string& outcome,
                      std::optional<std::chrono::milliseconds> next_retry);
  void done();  // a batch left this exporter (delivered, dropped or handed back)
  void requeue_in_pieces(const BatchPtr& batch);
  void enqueue(BatchPtr batch);
  bool memory_pressure() const noexcept;
  void wake_one();
  void wake_all();
  void expire();
  void drop(std::uint32_t spans, const std::string& why);

  config::Exporter options_;
  std::shared_ptr<spdlog::logger> log_;
  boost::asio::io_context ioc_;
  boost::asio::executor_work_guard<boost::asio::io_context::executor_type> work_;
  std::unique_ptr<Sender> sender_;
  MemoryBudget* budget_;
  std::shared_ptr<Spool> spool_;  // declared before the queue: tickets ack into it
  config::Batch batch_limits_;
  Circuit circuit_;
  Circuit::State published_state_ = Circuit::State::kClosed;

  std::deque<BatchPtr> queue_;
  std::size_t queued_bytes_ = 0;
  std::vector<std::unique_ptr<Worker>> workers_;
  std::vector<Worker*> idle_;
  std::vector<Worker*> admission_waiters_;
  Worker* collector_ = nullptr;           // the worker reading the spool into a batch
  std::atomic<bool> collector_waiting_{false};  // it waits for spool_append()
  std::size_t holders_ = 0;               // workers holding a batch
  bool stop_failed_ = false;              // spool mode: an attempt failed after shutdown began
  std::size_t running_workers_ = 0;
  bool stopping_ = false;
  bool expired_ = false;
  bool retiring_ = false;
  Successor successor_;
  ExporterTimer deadline_timer_;
  ExporterTimer circuit_timer_;  // spool mode: the end of an open circuit's cool-down
  std::thread thread_;
  std::shared_ptr<ExporterStats> stats_;
  FailureLog upstream_log_;  // one line per failure class per minute, never a first one held
  std::atomic<std::int64_t> ping_sent_{0};  // steady-clock ns; 0: none outstanding
  std::atomic<bool> running_{false};        // the io thread runs (read by the watchdog)
  RateLimit failure_log_;
  RateLimit retry_log_;
  RateLimit spool_log_;
};

}  // namespace spanrelay
