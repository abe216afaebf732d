#include "batcher/batcher.hpp"

#include "otlp/wire.hpp"

namespace spanrelay {

Batcher::Batcher(Ring<Chunk>& ring, config::Batch options, Sink sink, BatcherStats& stats)
    : ring_(ring), options_(options), sink_(std::move(sink)), stats_(stats) {}

Batcher::~Batcher() { stop(); }

void Batcher::start() { thread_ = std::thread([this] { run(); }); }

void Batcher::notify() noexcept {
  // Both sides do a read-modify-write on sleeping_, so the two are ordered: either our RMW comes
  // first and the batcher's, which reads from it, sees the chunk we pushed before it sleeps, or
  // the batcher's comes first and we see it asleep and wake it. (RMWs rather than fences, which
  // ThreadSanitizer does not model.) The lock is only taken while the batcher sleeps.
  if (sleeping_.fetch_add(0, std::memory_order_acq_rel) != 0) {
    { std::lock_guard lock(mutex_); }
    wake_.notify_one();
  }
}

void Batcher::stop() {
  if (!thread_.joinable()) {
    return;
  }
  {
    std::lock_guard lock(mutex_);
    stopping_.store(true);
  }
  wake_.notify_one();
  thread_.join();
}

void Batcher::reconfigure(config::Batch options) {
  {
    std::lock_guard lock(mutex_);
    next_options_ = options;
    reconfigure_.store(true);
  }
  wake_.notify_one();
}

bool Batcher::stalled(std::chrono::steady_clock::time_point now,
                      std::chrono::milliseconds patience) const noexcept {
  const auto last = last_round_.load(std::memory_order_relaxed);
  if (last == 0 || ring_.empty()) {  // not running, or asleep with nothing to do until woken
    return false;
  }
  return now.time_since_epoch().count() - last >
         std::chrono::duration_cast<std::chrono::steady_clock::duration>(patience).count();
}

void Batcher::run() {
  using clock = std::chrono::steady_clock;
  for (;;) {
    last_round_.store(clock::now().time_since_epoch().count(), std::memory_order_relaxed);
    if (reconfigure_.load()) {
      flush();
      std::lock_guard lock(mutex_);
      options_ = *next_options_;
      reconfigure_.store(false);
    }
    // A reconfigure ends the round even while the ring never empties (continuous load).
    while (!reconfigure_.load(std::memory_order_relaxed)) {
      auto chunk = ring_.try_pop();
      if (!chunk) {
        break;
      }
      take(std::move(*chunk));
      last_round_.store(clock::now().time_since_epoch().count(), std::memory_order_relaxed);
    }
    if (reconfigure_.load()) {
      continue;
    }
    if (stopping_.load()) {
      // Receivers are stopped: one last drain, then flush whatever is pending.
      while (auto chunk = ring_.try_pop()) {
        take(std::move(*chunk));
      }
      flush();
      last_round_.store(0, std::memory_order_relaxed);
      return;
    }
    if (pending_spans_ > 0 && clock::now() - pending_since_ >= options_.timeout) {
      flush();
    }
    std::unique_lock lock(mutex_);
    sleeping_.exchange(1, std::memory_order_acq_rel);
    if (ring_.empty() && !stopping_.load() && !reconfigure_.load()) {
      if (pending_spans_ > 0) {
        wake_.wait_until(lock, pending_since_ + options_.timeout);
      } else {
        last_round_.store(0, std::memory_order_relaxed);  // idle: not stalled while asleep
        wake_.wait(lock);
      }
    }
    sleeping_.store(0, std::memory_order_relaxed);
    last_round_.store(clock::now().time_since_epoch().count(), std::memory_order_relaxed);
  }
}

void Batcher::take(Chunk&& chunk) {
  if (chunk.spans == 0) {
    return;  // nothing to forward; the lease is released here
  }
  const bool too_big = chunk.bytes.size() > options_.max_bytes || chunk.spans > options_.max_spans;
  if (too_big) {
    // Split it; each piece carries its share of the chunk's budget.
    flush();
    add(stats_.splits);
    otlp::split_request(chunk.bytes, options_.max_bytes, options_.max_spans,
                        [&](std::string&& piece, std::uint32_t spans) {
                          BudgetLease share = chunk.lease.split_off(piece.size());
                          emit(std::move(piece), spans, std::move(share));
                        });
    return;
  }
  if (pending_spans_ > 0 && (pending_.size() + chunk.bytes.size() > options_.max_bytes ||
                             pending_spans_ + chunk.spans > options_.max_spans)) {
    flush();
  }
  if (pending_spans_ == 0) {
    pending_since_ = std::chrono::steady_clock::now();
    pending_ = std::move(chunk.bytes);  // a batch of one request needs no copy
  } else {
    if (pending_.capacity() < options_.max_bytes) {
      pending_.reserve(options_.max_bytes);  // grow once, not once per doubling
    }
    pending_.append(chunk.bytes);
  }
  pending_spans_ += chunk.spans;
  pending_lease_.absorb(std::move(chunk.lease));
  if (pending_spans_ >= options_.max_spans || pending_.size() >= options_.max_bytes) {
    flush();
  }
}

void Batcher::flush() {
  if (pending_spans_ == 0) {
    return;
  }
  emit(std::move(pending_), pending_spans_, std::move(pending_lease_));
  pending_.clear();
  pending_spans_ = 0;
}

void Batcher::emit(std::string&& bytes, std::uint32_t spans, BudgetLease&& lease) {
  auto batch = std::make_shared<Batch>();
  batch->bytes = std::move(bytes);
  batch->spans = spans;
  batch->lease = std::move(lease);
  add(stats_.batches);
  add(stats_.spans, spans);
  sink_(std::move(batch));
}

}  // namespace spanrelay
