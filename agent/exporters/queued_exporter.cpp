#include "exporters/queued_exporter.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "exporters/retry.hpp"
#include "otlp/wire.hpp"

namespace spanrelay {

namespace asio = boost::asio;
using Clock = std::chrono::steady_clock;
constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);

struct QueuedExporter::Worker {
  Worker(asio::io_context& ioc, std::size_t slot) : wake(ioc), sleep(ioc), slot(slot) {}
  asio::steady_timer wake;   // parked here while the queue is empty
  asio::steady_timer sleep;  // backoff between attempts
  std::size_t slot;
};

QueuedExporter::QueuedExporter(config::Exporter options, SenderFactory make_sender,
                               const MemoryBudget* budget)
    : options_(std::move(options)), log_(logger("exporter." + options_.name)),
      work_(asio::make_work_guard(ioc_)), sender_(make_sender(ioc_, options_)), budget_(budget),
      deadline_timer_(ioc_) {}

bool QueuedExporter::memory_pressure() const noexcept {
  // Three quarters of the budget: receivers are close to answering 429.
  return budget_ == nullptr || budget_->used() >= budget_->limit() / 4 * 3;
}

QueuedExporter::~QueuedExporter() { shutdown(Clock::now()); }

void QueuedExporter::start() {
  for (std::size_t i = 0; i < options_.max_in_flight; ++i) {
    workers_.push_back(std::make_unique<Worker>(ioc_, i));
  }
  running_workers_ = workers_.size();
  for (auto& w : workers_) {
    asio::co_spawn(ioc_, run_worker(*w), asio::detached);
  }
  log_->info("exporting to {}; {} in flight at most, queue up to {} bytes",
             sender_->describe(), options_.max_in_flight, options_.max_queue_bytes);
  thread_ = std::thread([this] { ioc_.run(); });
}

void QueuedExporter::submit(BatchPtr batch) noexcept {
  add(stats_.queued_batches);
  asio::post(ioc_, [this, batch = std::move(batch)]() mutable { enqueue(std::move(batch)); });
}

void QueuedExporter::enqueue(BatchPtr batch) {
  if (expired_) {
    drop(batch->spans, "exporter stopped");
    return;
  }
  // A dead upstream must not hold the memory the other exporters need: past this exporter's
  // share, and only when memory is getting scarce, the oldest waiting batch goes.
  while (!queue_.empty() && queued_bytes_ + batch->bytes.size() > options_.max_queue_bytes &&
         memory_pressure()) {
    BatchPtr oldest = std::move(queue_.front());
    queue_.pop_front();
    queued_bytes_ -= oldest->bytes.size();
    drop(oldest->spans, "queue full (max_queue_bytes); oldest batch dropped");
  }
  queued_bytes_ += batch->bytes.size();
  queue_.push_back(std::move(batch));
  wake_one();
}

// Halves the batch at span boundaries and puts the pieces at the head of the queue, in order;
// pieces still too large are halved again when they come back.
void QueuedExporter::requeue_in_pieces(const BatchPtr& whole) {
  const Batch& batch = *whole;
  std::vector<BatchPtr> pieces;
  otlp::split_request(batch.bytes, std::max<std::size_t>(batch.bytes.size() / 2, 1),
                      std::max<std::uint32_t>(batch.spans / 2, 1),
                      [&](std::string&& bytes, std::uint32_t spans) {
                        auto piece = std::make_shared<Batch>();
                        piece->bytes = std::move(bytes);
                        piece->spans = spans;
                        piece->origin = whole;
                        pieces.push_back(std::move(piece));
                      });
  add(stats_.split_batches);
  stats_.queued_batches.fetch_add(pieces.size() - 1, std::memory_order_relaxed);
  log_->warn("upstream refused a batch of {} bytes as too large; re-sending it as {} pieces",
             batch.bytes.size(), pieces.size());
  for (auto it = pieces.rbegin(); it != pieces.rend(); ++it) {
    queued_bytes_ += (*it)->bytes.size();
    queue_.push_front(std::move(*it));
  }
  for (std::size_t i = 0; i < pieces.size(); ++i) {
    wake_one();
  }
}

void QueuedExporter::shutdown(Clock::time_point deadline) noexcept {
  if (!thread_.joinable()) {
    return;
  }
  asio::post(ioc_, [this, deadline] {
    stopping_ = true;
    while (!idle_.empty()) {
      wake_one();
    }
    deadline_timer_.expires_at(deadline);
    deadline_timer_.async_wait([this](boost::system::error_code ec) {
      if (!ec) {
        expire();
      }
    });
    work_.reset();
  });
  thread_.join();
}

void QueuedExporter::wake_one() {
  if (!idle_.empty()) {
    Worker* w = idle_.back();
    idle_.pop_back();
    w->wake.cancel();
  }
}

// The shutdown deadline passed: abandon what is left, counting it.
void QueuedExporter::expire() {
  expired_ = true;
  sender_->cancel_all();
  for (auto& w : workers_) {
    w->wake.cancel();
    w->sleep.cancel();
  }
  idle_.clear();
}

void QueuedExporter::drop(std::uint32_t spans, const std::string& why) {
  add(stats_.failed_spans, spans);
  add(stats_.failed_requests);
  stats_.queued_batches.fetch_sub(1, std::memory_order_relaxed);
  std::uint64_t suppressed = 0;
  if (failure_log_.allow(suppressed)) {
    log_->error("dropped {} span(s): {} ({} more drops not logged)", spans, why, suppressed);
  }
}

asio::awaitable<void> QueuedExporter::run_worker(Worker& w) {
  while (BatchPtr batch = co_await next_batch(w)) {
    co_await deliver(w, batch);
  }
  sender_->close(w.slot);
  if (--running_workers_ == 0) {
    // Everything delivered or dropped: let the io context run out of work.
    deadline_timer_.cancel();
    while (!queue_.empty()) {
      drop(queue_.front()->spans, "exporter stopped");
      queue_.pop_front();
    }
    queued_bytes_ = 0;
  }
}

asio::awaitable<BatchPtr> QueuedExporter::next_batch(Worker& w) {
  for (;;) {
    if (expired_) {
      co_return nullptr;
    }
    if (!queue_.empty()) {
      BatchPtr b = std::move(queue_.front());
      queue_.pop_front();
      queued_bytes_ -= b->bytes.size();
      co_return b;
    }
    if (stopping_) {
      co_return nullptr;
    }
    idle_.push_back(&w);
    w.wake.expires_at(Clock::time_point::max());
    co_await w.wake.async_wait(use_tuple);
    std::erase(idle_, &w);
  }
}

asio::awaitable<void> QueuedExporter::deliver(Worker& w, const BatchPtr& batch_ptr) {
  const Batch& batch = *batch_ptr;
  std::string payload = sender_->prepare(batch);
  Backoff backoff(options_.retry);
  const auto started = Clock::now();
  bool retried_stale = false;
  for (unsigned attempt = 0;; ++attempt) {
    if (attempt > 0) {
      add(stats_.retries);
    }
    Attempt a = co_await sender_->send(w.slot, payload);
    if (a.outcome == Attempt::kDelivered) {
      add(stats_.sent_spans, batch.spans);
      add(stats_.sent_requests);
      stats_.queued_batches.fetch_sub(1, std::memory_order_relaxed);
      if (a.rejected > 0) {
        add(stats_.rejected_spans, static_cast<std::uint64_t>(a.rejected));
        log_->warn("upstream accepted the batch but rejected {} span(s): {}", a.rejected,
                   a.detail);
      }
      co_return;
    }
    if (expired_) {
      drop(batch.spans, "shutdown_timeout reached before delivery");
      co_return;
    }
    if (a.too_large && batch.spans > 1) {
      requeue_in_pieces(batch_ptr);
      co_return;
    }
    if (a.outcome == Attempt::kPermanent) {
      drop(batch.spans, "permanent error from upstream: " + a.detail);
      co_return;
    }
    // An idle keep-alive connection the upstream closed fails at once: reconnect, no backoff.
    if (a.stale_connection && !retried_stale) {
      retried_stale = true;
      continue;
    }
    if (!options_.retry.enabled) {
      drop(batch.spans, "retryable error and retry disabled: " + a.detail);
      co_return;
    }
    const auto delay = a.retry_after ? *a.retry_after : backoff.next();
    if (Clock::now() - started + delay > options_.retry.max_elapsed) {
      drop(batch.spans, "retry.max_elapsed reached; last error: " + a.detail);
      co_return;
    }
    std::uint64_t suppressed = 0;
    if (retry_log_.allow(suppressed)) {
      log_->warn("export failed ({}); retrying in {} ms ({} more retries not logged)", a.detail,
                 delay.count(), suppressed);
    }
    w.sleep.expires_after(delay);
    co_await w.sleep.async_wait(use_tuple);
    if (expired_) {
      drop(batch.spans, "shutdown_timeout reached before delivery");
      co_return;
    }
  }
}

}  // namespace spanrelay
