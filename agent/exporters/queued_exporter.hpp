#pragma once
// A network exporter: its own io thread, a bounded queue of batches, `max_in_flight` workers
// that each deliver one batch at a time through the Sender, and the retry policy (backoff with
// full jitter, Retry-After, max_elapsed). Used by otlp_http and otlp_grpc.
//
// Threading: all state lives on the io thread; submit() and shutdown() post to it.

#include <boost/asio/awaitable.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>

#include <deque>
#include <functional>
#include <memory>
#include <thread>
#include <vector>

#include "common/budget.hpp"
#include "common/log.hpp"
#include "config/config.hpp"
#include "exporters/exporter.hpp"
#include "exporters/sender.hpp"

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
  QueuedExporter(config::Exporter options, SenderFactory make_sender,
                 const MemoryBudget* budget = nullptr);
  ~QueuedExporter() override;

  const std::string& name() const noexcept override { return options_.name; }
  void start() override;
  void submit(BatchPtr batch) noexcept override;
  void shutdown(std::chrono::steady_clock::time_point deadline) noexcept override;
  const ExporterStats& stats() const noexcept override { return stats_; }

 private:
  struct Worker;

  boost::asio::awaitable<void> run_worker(Worker& w);
  boost::asio::awaitable<BatchPtr> next_batch(Worker& w);
  boost::asio::awaitable<void> deliver(Worker& w, const BatchPtr& batch);
  void requeue_in_pieces(const BatchPtr& batch);
  void enqueue(BatchPtr batch);
  bool memory_pressure() const noexcept;
  void wake_one();
  void expire();
  void drop(std::uint32_t spans, const std::string& why);

  config::Exporter options_;
  std::shared_ptr<spdlog::logger> log_;
  boost::asio::io_context ioc_;
  boost::asio::executor_work_guard<boost::asio::io_context::executor_type> work_;
  std::unique_ptr<Sender> sender_;
  const MemoryBudget* budget_;

  std::deque<BatchPtr> queue_;
  std::size_t queued_bytes_ = 0;
  std::vector<std::unique_ptr<Worker>> workers_;
  std::vector<Worker*> idle_;
  std::size_t running_workers_ = 0;
  bool stopping_ = false;
  bool expired_ = false;
  boost::asio::steady_timer deadline_timer_;
  std::thread thread_;
  ExporterStats stats_;
  RateLimit failure_log_;
  RateLimit retry_log_;
};

}  // namespace spanrelay
