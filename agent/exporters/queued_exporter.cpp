#include "exporters/queued_exporter.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <future>

#include "exporters/retry.hpp"
#include "exporters/spool_ticket.hpp"
#include "otlp/wire.hpp"

namespace spanrelay {

namespace asio = boost::asio;
using Clock = ExporterClock;  // the retry loop, the circuit and the timers
using Steady = std::chrono::steady_clock;  // the watchdog, logs and latency: real time
constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);

struct QueuedExporter::Worker {
  Worker(asio::io_context& ioc, std::size_t slot) : wake(ioc), sleep(ioc), slot(slot) {}
  ExporterTimer wake;   // parked here while the queue is empty
  ExporterTimer sleep;  // backoff between attempts
  std::size_t slot;
};

namespace {
Circuit::Options circuit_options(const config::Exporter& o) {
  Circuit::Options c;
  c.initial_cooldown = o.retry.initial_interval;
  c.max_cooldown = o.retry.max_interval;
  c.max_concurrency = o.max_in_flight;
  c.max_hold = o.retry.max_elapsed;
  return c;
}
}  // namespace

QueuedExporter::QueuedExporter(config::Exporter options, SenderFactory make_sender,
                               MemoryBudget* budget, std::shared_ptr<ExporterStats> stats)
    : QueuedExporter(std::move(options), std::move(make_sender), budget, nullptr, {},
                     std::move(stats)) {}

QueuedExporter::QueuedExporter(config::Exporter options, SenderFactory make_sender,
                               MemoryBudget* budget, std::shared_ptr<Spool> spool,
                               config::Batch batch, std::shared_ptr<ExporterStats> stats)
    : options_(std::move(options)), log_(logger("exporter." + options_.name)),
      work_(asio::make_work_guard(ioc_)), sender_(make_sender(ioc_, options_)), budget_(budget),
      spool_(std::move(spool)), batch_limits_(batch), circuit_(circuit_options(options_)),
      deadline_timer_(ioc_), circuit_timer_(ioc_),
      stats_(stats ? std::move(stats) : std::make_shared<ExporterStats>()) {}

bool QueuedExporter::memory_pressure() const noexcept {
  // Three quarters of the budget: receivers are close to answering 429.
  return budget_ == nullptr || budget_->used() >= budget_->limit() / 4 * 3;
}

QueuedExporter::~QueuedExporter() { shutdown(Steady::now()); }

void QueuedExporter::start() {
  for (std::size_t i = 0; i < options_.max_in_flight; ++i) {
    workers_.push_back(std::make_unique<Worker>(ioc_, i));
  }
  running_workers_ = workers_.size();
  for (auto& w : workers_) {
    asio::co_spawn(ioc_, run_worker(*w), asio::detached);
  }
  if (spool_) {
    log_->info("exporting to {}; {} in flight at most, queue on disk in {} ({} record(s) "
               "waiting)",
               sender_->describe(), options_.max_in_flight, spool_->directory(),
               spool_->pending_records());
  } else {
    log_->info("exporting to {}; {} in flight at most, queue up to {} bytes",
               sender_->describe(), options_.max_in_flight, options_.max_queue_bytes);
  }
  running_.store(true);
  thread_ = std::thread([this] { ioc_.run(); });
}

void QueuedExporter::set_queue_limit(std::size_t bytes) {
  asio::post(ioc_, [this, bytes] { options_.max_queue_bytes = bytes; });
}

AppendStatus QueuedExporter::spool_append(std::string_view request,
                                          std::uint32_t spans) noexcept {
  std::string error;
  const AppendStatus status = spool_->append(request, spans, &error);
  if (status == AppendStatus::kOk) {
    if (collector_waiting_.exchange(false)) {
      asio::post(ioc_, [this] {
        if (collector_ != nullptr) {
          collector_->wake.cancel();
        }
      });
    }
    return status;
  }
  add(stats_->spool_refused_spans, spans);
  std::uint64_t suppressed = 0;
  if (spool_log_.allow(suppressed)) {
    log_->error("spool {}: refusing {} span(s): {} ({} more refusals not logged)",
                spool_->directory(), spans, error, suppressed);
  }
  return status;
}

void QueuedExporter::submit(BatchPtr batch) noexcept {
  add(stats_->queued_batches);
  asio::post(ioc_, [this, batch = std::move(batch)]() mutable { enqueue(std::move(batch)); });
}

void QueuedExporter::enqueue(BatchPtr batch) {
  if (retiring_ && successor_) {
    hand_over(std::move(batch));  // submitted just before the reload switched exporters
    return;
  }
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
  stats_->queued_bytes.store(queued_bytes_, std::memory_order_relaxed);
  queue_.push_back(std::move(batch));
  wake_one();
}

void QueuedExporter::retire(Successor successor) {
  if (!thread_.joinable()) {
    return;
  }
  std::promise<void> applied;
  asio::post(ioc_, [&] {
    retiring_ = true;
    successor_ = spool_ ? nullptr : std::move(successor);
    while (successor_ && !queue_.empty()) {
      BatchPtr b = std::move(queue_.front());
      queue_.pop_front();
      queued_bytes_ -= b->bytes.size();
      hand_over(std::move(b));
    }
    stats_->queued_bytes.store(queued_bytes_, std::memory_order_relaxed);
    // Workers waiting out a backoff, a hold or the circuit hand their batch over now.
    for (auto& w : workers_) {
      w->sleep.cancel();
    }
    if (collector_ != nullptr) {
      collector_->wake.cancel();
    }
    applied.set_value();
  });
  applied.get_future().wait();
}

// Reload: the batch leaves this exporter for its successor (memory mode) or goes back to the
// spool the two share, untried by us.
void QueuedExporter::hand_over(BatchPtr batch) {
  if (batch->ticket) {
    batch->ticket->settle(SpoolTicket::Then::kNack);
    done();
    return;
  }
  done();
  successor_(std::move(batch));
}

void QueuedExporter::kick() noexcept {
  asio::post(ioc_, [this] {
    if (collector_ != nullptr) {
      collector_->wake.cancel();
    } else {
      wake_one();
    }
  });
}

void QueuedExporter::clock_moved() noexcept {
  asio::post(ioc_, [this] {
    // Arming a timer that is already due makes the reactor re-read every timer's deadline.
    auto due = std::make_shared<ExporterTimer>(ioc_, Clock::time_point::min());
    due->async_wait([due](boost::system::error_code) {});
  });
}

void QueuedExporter::ping() noexcept {
  const std::int64_t now = Steady::now().time_since_epoch().count();
  std::int64_t none = 0;
  if (ping_sent_.compare_exchange_strong(none, now)) {  // else the last one is still out
    asio::post(ioc_, [this] { ping_sent_.store(0); });
  }
}

bool QueuedExporter::responsive(Steady::time_point now,
                                std::chrono::milliseconds patience) const noexcept {
  const std::int64_t sent = ping_sent_.load();
  return sent == 0 || !running_.load() ||
         now.time_since_epoch().count() - sent <
             std::chrono::duration_cast<Steady::duration>(patience).count();
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
                        piece->ticket = batch.ticket;
                        pieces.push_back(std::move(piece));
                      });
  add(stats_->split_batches);
  stats_->queued_batches.fetch_add(pieces.size() - 1, std::memory_order_relaxed);
  log_->warn("upstream refused a batch of {} bytes as too large; re-sending it as {} pieces",
             batch.bytes.size(), pieces.size());
  for (auto it = pieces.rbegin(); it != pieces.rend(); ++it) {
    queued_bytes_ += (*it)->bytes.size();
    queue_.push_front(std::move(*it));
  }
  stats_->queued_bytes.store(queued_bytes_, std::memory_order_relaxed);
  for (std::size_t i = 0; i < pieces.size(); ++i) {
    wake_one();
  }
}

void QueuedExporter::shutdown(Steady::time_point deadline) noexcept {
  if (!thread_.joinable()) {
    return;
  }
  asio::post(ioc_, [this, deadline] {
    stopping_ = true;
    wake_all();
    if (collector_ != nullptr) {
      collector_->wake.cancel();
    }
    if (spool_) {
      // Durable already: no worker waits out a backoff or a hold at shutdown.
      for (auto& w : workers_) {
        w->sleep.cancel();
      }
    }
    deadline_timer_.expires_at(Clock::from_steady(deadline));
    deadline_timer_.async_wait([this](boost::system::error_code ec) {
      if (!ec) {
        expire();
      }
    });
    work_.reset();
  });
  running_.store(false);
  thread_.join();
}

void QueuedExporter::wake_one() {
  if (!idle_.empty()) {
    Worker* w = idle_.back();
    idle_.pop_back();
    w->wake.cancel();
  }
}

void QueuedExporter::wake_all() {
  while (!idle_.empty()) {
    wake_one();
  }
}

// The shutdown deadline passed: abandon what is left, counting it.
void QueuedExporter::expire() {
  expired_ = true;
  sender_->cancel_all();
  circuit_timer_.cancel();
  for (auto& w : workers_) {
    w->wake.cancel();
    w->sleep.cancel();
  }
  idle_.clear();
}

// The end of one batch's life in this exporter (delivered, dropped or handed back).
void QueuedExporter::done() {
  stats_->queued_batches.fetch_sub(1, std::memory_order_relaxed);
}

// A batch that cannot be delivered now. From the spool it stays there: back to pending for a
// later attempt, or, at shutdown, in flight so the next start replays it. Otherwise it is lost
// and counted.
void QueuedExporter::give_up(const BatchPtr& batch_ptr, const std::string& why) {
  const Batch& batch = *batch_ptr;
  if (retiring_ && (successor_ || batch.ticket)) {
    hand_over(batch_ptr);
    return;
  }
  if (!batch.ticket) {
    drop(batch.spans, why);
    return;
  }
  if (stopping_ || expired_) {
    batch.ticket->settle(SpoolTicket::Then::kKeep);
  } else {
    batch.ticket->settle(SpoolTicket::Then::kNack);
    add(stats_->respooled_spans, batch.spans);
    std::uint64_t suppressed = 0;
    if (failure_log_.allow(suppressed)) {
      log_->warn("{} span(s) back to the spool for a later attempt: {} ({} more not logged)",
                 batch.spans, why, suppressed);
    }
  }
  done();
}

void QueuedExporter::circuit_changed() {
  const Circuit::State now = circuit_.state();
  stats_->circuit_state.store(static_cast<std::uint64_t>(now), std::memory_order_relaxed);

  for (Worker* w : admission_waiters_) {
    w->sleep.cancel();
  }
  if (spool_ && now == Circuit::State::kOpen) {
    // Nobody holds a batch while it is open: wake a worker to read the probe when it may go.
    const auto t = Clock::now();
    if (circuit_.would_admit(t)) {
      wake_one();
    } else if (const auto at = circuit_.next_change(t); at != Clock::time_point::max()) {
      circuit_timer_.expires_at(at);
      circuit_timer_.async_wait([this](boost::system::error_code ec) {
        if (!ec && !expired_) {
          wake_one();
        }
      });
    }
  }
  if (now == published_state_) {
    return;
  }
  if (published_state_ == Circuit::State::kClosed && now == Circuit::State::kOpen) {
    add(stats_->circuit_opened);
    log_->warn("upstream failing: circuit open, probing it with one request at a time");
  } else if (now == Circuit::State::kClosed) {
    log_->info("upstream answering again: circuit closed, concurrency ramping up to {}",
               options_.max_in_flight);
    wake_all();  // idle workers may read the spool again
  }
  published_state_ = now;
}

// Spool mode: may a worker read records into a new batch? While the circuit is open, only when
// it would let a probe through right now; at shutdown, not once the upstream failed.
bool QueuedExporter::may_read_spool() const noexcept {
  if (retiring_) {
    return false;  // the successor reads the spool now
  }
  if (stopping_ && (circuit_.open_or_probing() || stop_failed_)) {
    return false;
  }
  return !circuit_.open_or_probing() || (holders_ == 0 && circuit_.would_admit(Clock::now()));
}

// Waits until the circuit lets this worker make an attempt. kStop: shutting down (deadline, or
// spool mode with the upstream down); kTimedOut: `give_up_at` came first.
asio::awaitable<QueuedExporter::Admission> QueuedExporter::admit(Worker& w,
                                                                 Clock::time_point give_up_at) {
  for (;;) {
    if (retiring_ && (successor_ || spool_)) {
      co_return Admission::kHandOver;
    }
    if (expired_) {
      co_return Admission::kStop;
    }
    // At shutdown with the upstream down, a spooled batch is safe where it is: do not wait.
    if (stopping_ && spool_ && circuit_.open_or_probing()) {
      co_return Admission::kStop;
    }
    const auto now = Clock::now();
    if (circuit_.try_acquire(now)) {
      circuit_changed();
      co_return Admission::kGo;
    }
    if (stopping_ && spool_) {
      co_return Admission::kStop;  // not admitted now: the batch is safe in the spool
    }
    // Spool mode with the upstream down: batches go back to the spool rather than hold memory
    // for as long as the outage lasts; the probe is read fresh when the cool-down ends (so
    // that with replay: newest_first it carries the newest records).
    if (spool_ && circuit_.open_or_probing()) {
      co_return Admission::kYield;
    }
    if (now >= give_up_at) {
      co_return Admission::kTimedOut;
    }
    admission_waiters_.push_back(&w);
    w.sleep.expires_at(std::min(circuit_.next_change(now), give_up_at));
    co_await w.sleep.async_wait(use_tuple);
    std::erase(admission_waiters_, &w);
  }
}

// One failed attempt: the status page's last error, and a log line for the first failure of
// its class and then at most one a minute (with the count since the previous line).
// `next_retry`: when the same batch is tried again; nullopt when it is not.
void QueuedExporter::record_failure(const Attempt& a, const std::string& outcome,
                                    std::optional<std::chrono::milliseconds> next_retry) {
  const char* cls = failure_class_name(a.failure);
  const auto wall = std::chrono::system_clock::now();
  stats_->health.failed(a.detail, cls, next_retry ? wall + *next_retry : ExporterHealth::Time{});
  // An open circuit holds every attempt until its cool-down ends.
  const auto t = Clock::now();
  if (const auto at = circuit_.next_change(t);
      next_retry && circuit_.state() == Circuit::State::kOpen && at != Clock::time_point::max()) {
    stats_->health.retry_not_before(
        wall + std::chrono::duration_cast<std::chrono::system_clock::duration>(at - t));
  }
  std::uint64_t count = 0;
  if (!upstream_log_.record(a.failure, Steady::now(), count)) {
    return;
  }
  const auto level = a.failure == FailureClass::kAuth || !next_retry ? spdlog::level::err
                                                                     : spdlog::level::warn;
  if (next_retry) {
    log_->log(level,
              "export failed [{}]: {}; {} failure(s) of this kind since the last such line; {} "
              "(next attempt in {} ms)",
              cls, a.detail, count, outcome, next_retry->count());
  } else {
    log_->log(level,
              "export failed [{}]: {}; {} failure(s) of this kind since the last such line; {}",
              cls, a.detail, count, outcome);
  }
}

void QueuedExporter::drop(std::uint32_t spans, const std::string& why) {
  add(stats_->failed_spans, spans);
  add(stats_->failed_requests);
  done();
  std::uint64_t suppressed = 0;
  if (failure_log_.allow(suppressed)) {
    log_->error("dropped {} span(s): {} ({} more drops not logged)", spans, why, suppressed);
  }
}

asio::awaitable<void> QueuedExporter::run_worker(Worker& w) {
  while (BatchPtr batch = co_await next_batch(w)) {
    ++holders_;
    try {
      co_await deliver(w, batch);
    } catch (const std::exception& e) {  // e.g. bad_alloc: give the batch up, keep the worker
      give_up(batch, std::string("internal error: ") + e.what());
    }
    --holders_;
    if (batch->ticket) {
      batch.reset();  // acks its records, or returns them to the spool, now
      if (collector_ != nullptr) {
        collector_->wake.cancel();  // returned records are pending again: look
      }
    }
  }
  sender_->close(w.slot);
  if (--running_workers_ == 0) {
    // Everything delivered, dropped or left in the spool: let the io context run out of work.
    deadline_timer_.cancel();
    circuit_timer_.cancel();
    while (!queue_.empty()) {
      give_up(queue_.front(), "exporter stopped");
      queue_.pop_front();
    }
    queued_bytes_ = 0;
    stats_->queued_bytes.store(0, std::memory_order_relaxed);
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
      stats_->queued_bytes.store(queued_bytes_, std::memory_order_relaxed);
      co_return b;
    }
    if (spool_ && collector_ == nullptr && may_read_spool()) {
      collector_ = &w;
      BatchPtr b = co_await collect(w);
      collector_ = nullptr;
      if (b) {
        wake_one();  // another worker may gather the next batch meanwhile
        co_return b;
      }
      if (!stopping_) {
        continue;
      }
    }
    if (stopping_ && collector_ == nullptr) {
      wake_all();  // nothing more to read: let the others finish too
      co_return nullptr;
    }
    idle_.push_back(&w);
    w.wake.expires_at(Clock::time_point::max());
    co_await w.wake.async_wait(use_tuple);
    std::erase(idle_, &w);
  }
}

// Spool mode: gathers pending records into one batch, waiting (up to batch.timeout after the
// oldest record was written) for more when it is not full. Returns nullptr when there is
// nothing to read and the exporter is stopping, or reading should pause (circuit open).
asio::awaitable<BatchPtr> QueuedExporter::collect(Worker& w) {
  std::vector<std::uint64_t> ids;
  std::string bytes;
  std::uint64_t spans = 0;
  auto oldest = std::chrono::system_clock::time_point::max();
  for (;;) {
    if (ids.empty() && !may_read_spool()) {
      break;  // the circuit opened meanwhile: one batch already waits to probe
    }
    // Armed before looking, so an append that finds nothing pending-yet still wakes us.
    collector_waiting_.store(true);
    bool full = false;
    while (!full) {
      std::optional<SpoolRecord> rec = spool_->next();
      if (!rec) {
        break;
      }
      if (!ids.empty() && (bytes.size() + rec->payload.size() > batch_limits_.max_bytes ||
                           spans + rec->spans > batch_limits_.max_spans)) {
        spool_->nack(rec->id);  // starts the next batch
        full = true;
        break;
      }
      ids.push_back(rec->id);
      if (bytes.empty()) {
        bytes = std::move(rec->payload);  // a batch of one record needs no copy
      } else {
        bytes += rec->payload;
      }
      spans += rec->spans;
      oldest = std::min(oldest, rec->written);
      full = bytes.size() >= batch_limits_.max_bytes || spans >= batch_limits_.max_spans;
    }
    if (full || stopping_ || expired_) {
      break;
    }
    auto until = Clock::time_point::max();
    if (!ids.empty()) {
      // Wall clock (records carry their write time): a step backwards must not stretch it.
      const auto age = std::max(std::chrono::system_clock::now() - oldest,
                                std::chrono::system_clock::duration::zero());
      if (age >= batch_limits_.timeout) {
        break;
      }
      until = Clock::now() +
              std::chrono::duration_cast<Clock::duration>(batch_limits_.timeout - age);
    }
    w.wake.expires_at(until);
    co_await w.wake.async_wait(use_tuple);
  }
  collector_waiting_.store(false);
  if (ids.empty()) {
    co_return nullptr;
  }
  auto batch = std::make_shared<Batch>();
  if (budget_ != nullptr) {
    budget_->reserve_unchecked(bytes.size());
    batch->lease = BudgetLease(budget_, bytes.size());
  }
  batch->bytes = std::move(bytes);
  batch->spans = static_cast<std::uint32_t>(spans);
  batch->ticket = std::make_shared<SpoolTicket>(*spool_, std::move(ids));
  add(stats_->queued_batches);
  co_return batch;
}

asio::awaitable<void> QueuedExporter::deliver(Worker& w, const BatchPtr& batch_ptr) {
  const Batch& batch = *batch_ptr;
  std::string payload = sender_->prepare(batch);
  Backoff backoff(options_.retry);
  const auto started = Clock::now();
  bool retried_stale = false;
  bool refreshed_credentials = false;
  for (unsigned attempt = 0;; ++attempt) {
    const Admission admission = co_await admit(w, started + options_.retry.max_elapsed);
    if (admission == Admission::kHandOver) {
      hand_over(batch_ptr);
      co_return;
    }
    if (admission == Admission::kStop) {
      give_up(batch_ptr, expired_ ? "shutdown_timeout reached before delivery"
                              : "stopping while the upstream is down");
      co_return;
    }
    if (admission == Admission::kYield) {
      batch.ticket->settle(SpoolTicket::Then::kNack);
      done();
      co_return;
    }
    if (admission == Admission::kTimedOut) {
      give_up(batch_ptr, "retry.max_elapsed reached while the upstream is down (circuit open)");
      co_return;
    }
    if (attempt > 0) {
      add(stats_->retries);
    }
    const auto attempt_started = Steady::now();
    Attempt a = co_await sender_->send(w.slot, payload);
    const auto took = Steady::now() - attempt_started;
    stats_->request_duration.observe(took);
    if (log_->should_log(spdlog::level::debug)) {
      log_->debug("batch of {} span(s), {} bytes ({} on the wire): {} in {:.1f} ms",
                  batch.spans, batch.bytes.size(), payload.size(),
                  a.outcome == Attempt::kDelivered ? "delivered" : a.detail,
                  std::chrono::duration<double, std::milli>(took).count());
    }
    if (a.outcome == Attempt::kDelivered) {
      stats_->health.succeeded();
      circuit_.succeeded();
      circuit_changed();
      if (batch.ticket) {
        batch.ticket->settle(SpoolTicket::Then::kAck);
      }
      add(stats_->sent_spans, batch.spans);
      add(stats_->sent_requests);
      done();
      if (a.rejected > 0) {
        add(stats_->rejected_spans, static_cast<std::uint64_t>(a.rejected));
        log_->warn("upstream accepted the batch but rejected {} span(s): {}", a.rejected,
                   a.detail);
      }
      co_return;
    }
    if (expired_) {
      circuit_.abandoned();
      circuit_changed();
      record_failure(a, "giving up: shutdown_timeout reached", {});
      give_up(batch_ptr, "shutdown_timeout reached before delivery");
      co_return;
    }
    // 401/403 after the token file was replaced: the next attempt carries the new token.
    if (a.failure == FailureClass::kAuth && !refreshed_credentials) {
      refreshed_credentials = true;
      if (sender_->refresh_credentials(w.slot)) {
        circuit_.abandoned();
        circuit_changed();
        record_failure(a, "credentials changed, retrying now", std::chrono::milliseconds(0));
        continue;
      }
    }
    if (a.outcome == Attempt::kPermanent || a.too_large) {
      circuit_.succeeded();  // the upstream answered: it is up
      circuit_changed();
      if (a.too_large && batch.spans > 1) {
        record_failure(a, "splitting the batch", std::chrono::milliseconds(0));
        requeue_in_pieces(batch_ptr);
        co_return;
      }
      record_failure(a, "permanent error, " + std::to_string(batch.spans) +
                            " span(s) dropped, no retry", {});
      if (batch.ticket) {
        batch.ticket->settle(SpoolTicket::Then::kAck);  // dropped, and counted below
      }
      drop(batch.spans, "permanent error from upstream: " + a.detail);
      co_return;
    }
    // An idle keep-alive connection the upstream closed fails at once: reconnect, no backoff.
    if (a.stale_connection && !retried_stale) {
      circuit_.abandoned();
      circuit_changed();
      retried_stale = true;
      continue;
    }
    if (retiring_ && (successor_ || spool_)) {
      circuit_.abandoned();
      circuit_changed();
      hand_over(batch_ptr);  // the successor retries it, with its own options
      co_return;
    }
    circuit_.failed(Clock::now(), a.retry_after);
    circuit_changed();
    if (!options_.retry.enabled) {
      record_failure(a, "retry disabled", {});
      give_up(batch_ptr, "retryable error and retry disabled: " + a.detail);
      co_return;
    }
    if (stopping_ && spool_) {
      stop_failed_ = true;  // durable already: leave it for the next start
      record_failure(a, "stopping: the batch stays in the spool", {});
      give_up(batch_ptr, "stopping, last error: " + a.detail);
      co_return;
    }
    const auto delay = a.retry_after ? *a.retry_after : backoff.next();
    if (Clock::now() - started + delay > options_.retry.max_elapsed) {
      record_failure(a, "retry.max_elapsed reached", {});
      give_up(batch_ptr, "retry.max_elapsed reached; last error: " + a.detail);
      co_return;
    }
    record_failure(a, "retrying", std::chrono::duration_cast<std::chrono::milliseconds>(delay));
    w.sleep.expires_after(delay);
    co_await w.sleep.async_wait(use_tuple);
  }
}

}  // namespace spanrelay
