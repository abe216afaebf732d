#pragma once
// The circuit breaker of one exporter: decides when an attempt may start, so that a dead or
// throttling upstream is not hammered and a recovering one is not hit by a retry storm.
//
//   closed ──(failure_threshold consecutive failures)──▶ open
//   open ──(cool-down over)──▶ half-open: exactly one probe attempt
//   half-open ──probe fails──▶ open, cool-down doubled (up to max_cooldown)
//   half-open ──probe succeeds──▶ closed, concurrency ramping 1, 2, 4 … max_concurrency
//
// Independently of the state, a Retry-After/RetryInfo from the upstream holds every attempt
// until that time (the upstream asked the whole client to wait, not one request).
//
// Pure logic with an injected time (ExporterClock time points): no threads, no timers.
// QueuedExporter calls it from its io thread and parks workers until next_change().

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>

#include "exporters/clock.hpp"

namespace spanrelay {

class Circuit {
 public:
  using Clock = ExporterClock;
  using Duration = std::chrono::milliseconds;
  enum class State { kClosed, kOpen, kHalfOpen };

  struct Options {
    unsigned failure_threshold = 5;  // consecutive failed attempts that open the circuit
    Duration initial_cooldown{1000};
    Duration max_cooldown{30000};
    std::size_t max_concurrency = 4;
    // Upper bound on an upstream-requested delay (a Retry-After of hours must not stall the
    // exporter past what its retry policy allows).
    Duration max_hold{300000};
  };

  explicit Circuit(Options o) noexcept : o_(o), ramp_(std::max<std::size_t>(o.max_concurrency, 1)) {}

  // May an attempt start now? On true the caller must report it with succeeded() or failed()
  // (or abandoned() if it never ran).
  bool try_acquire(Clock::time_point now) noexcept {
    if (now < hold_until_) {
      return false;
    }
    switch (state_) {
      case State::kClosed:
        if (in_flight_ >= ramp_) {
          return false;
        }
        break;
      case State::kOpen:
        if (now < reopen_at_ || in_flight_ > 0) {
          return false;
        }
        state_ = State::kHalfOpen;  // this attempt is the probe
        ++probes_;
        break;
      case State::kHalfOpen:
        return false;  // the probe is out
    }
    ++in_flight_;
    return true;
  }

  // Would try_acquire(now) succeed? Changes nothing.
  bool would_admit(Clock::time_point now) const noexcept {
    if (now < hold_until_) {
      return false;
    }
    switch (state_) {
      case State::kClosed:
        return in_flight_ < ramp_;
      case State::kOpen:
        return now >= reopen_at_ && in_flight_ == 0;
      case State::kHalfOpen:
        break;
    }
    return false;
  }

  void succeeded() noexcept {
    release();
    failures_ = 0;
    if (state_ != State::kClosed) {
      state_ = State::kClosed;
      cooldown_ = Duration::zero();
      ramp_ = 1;  // recovering: slow start
    } else {
      ramp_ = std::min(std::max<std::size_t>(o_.max_concurrency, 1), ramp_ * 2);
    }
  }

  // A retryable failure (transport error, 429, 5xx). `retry_after`: the upstream's own delay.
  void failed(Clock::time_point now, std::optional<Duration> retry_after) noexcept {
    release();
    if (retry_after && *retry_after > o_.max_hold) {
      retry_after = o_.max_hold;
    }
    if (retry_after) {
      hold_until_ = std::max(hold_until_, now + *retry_after);
    }
    ++failures_;
    if (state_ == State::kHalfOpen ||
        (state_ == State::kClosed && failures_ >= o_.failure_threshold)) {
      open(now, retry_after);
    }
  }

  // An attempt that was admitted but not made (shutdown), or ended in a non-retryable way
  // that says nothing about the upstream's health (a permanent error on one batch).
  void abandoned() noexcept {
    release();
    if (state_ == State::kHalfOpen) {
      state_ = State::kOpen;  // no verdict: probe again at once
    }
  }

  // When try_acquire may next change its answer by itself (a hold or a cool-down ending);
  // time_point::max() when only a call into this object (an attempt ending) can change it.
  Clock::time_point next_change(Clock::time_point now) const noexcept {
    Clock::time_point t = Clock::time_point::max();
    if (hold_until_ > now) {
      t = hold_until_;
    }
    if (state_ == State::kOpen && reopen_at_ > now) {
      t = t == Clock::time_point::max() ? reopen_at_ : std::max(t, reopen_at_);
    }
    return t;
  }

  State state() const noexcept { return state_; }
  bool open_or_probing() const noexcept { return state_ != State::kClosed; }
  std::size_t in_flight() const noexcept { return in_flight_; }
  std::size_t concurrency_limit() const noexcept { return ramp_; }
  std::uint64_t opened() const noexcept { return opened_; }
  std::uint64_t probes() const noexcept { return probes_; }

 private:
  void release() noexcept {
    if (in_flight_ > 0) {
      --in_flight_;
    }
  }

  void open(Clock::time_point now, std::optional<Duration> retry_after) noexcept {
    if (state_ == State::kClosed) {
      ++opened_;
    }
    state_ = State::kOpen;
    cooldown_ = cooldown_ == Duration::zero() ? o_.initial_cooldown
                                              : std::min(o_.max_cooldown, cooldown_ * 2);
    Duration wait = cooldown_;
    if (retry_after && *retry_after > wait) {
      wait = *retry_after;
    }
    reopen_at_ = now + wait;
    ramp_ = 1;
  }

  Options o_;
  State state_ = State::kClosed;
  unsigned failures_ = 0;
  std::size_t in_flight_ = 0;
  std::size_t ramp_;
  Duration cooldown_{0};
  Clock::time_point reopen_at_{};
  Clock::time_point hold_until_ = Clock::time_point::min();
  std::uint64_t opened_ = 0;
  std::uint64_t probes_ = 0;
};

}  // namespace spanrelay
