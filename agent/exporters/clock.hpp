#pragma once
// The time a QueuedExporter, its retry loop and its circuit breaker see: the steady clock plus
// an offset that only tests move (advance()), so that a test can jump over a backoff, a
// cool-down or a Retry-After instead of waiting for it. In production the offset is zero and
// never changes: now() is steady_clock::now() plus one relaxed atomic load.
//
// The exporter's timers (ExporterTimer) run on this clock. A timer computes its wait when it
// is armed, so after advance() the exporter must be told to look again
// (QueuedExporter::clock_moved()); timers whose time has come then fire at once.

#include <boost/asio/basic_waitable_timer.hpp>

#include <atomic>
#include <chrono>

namespace spanrelay {

struct ExporterClock {
  using base = std::chrono::steady_clock;
  using rep = base::rep;
  using period = base::period;
  using duration = base::duration;
  using time_point = std::chrono::time_point<ExporterClock, duration>;
  static constexpr bool is_steady = true;

  static time_point now() noexcept {
    return time_point(base::now().time_since_epoch() +
                      duration(offset_.load(std::memory_order_relaxed)));
  }
  // The same instant, on this clock (e.g. a shutdown deadline given on the steady clock).
  static time_point from_steady(base::time_point t) noexcept {
    if (t == base::time_point::max()) {
      return time_point::max();
    }
    return time_point(t.time_since_epoch() + duration(offset_.load(std::memory_order_relaxed)));
  }
  // Tests only: moves this clock forward by `d` (never backwards), for every exporter of the
  // process.
  static void advance(duration d) noexcept {
    if (d > duration::zero()) {
      offset_.fetch_add(d.count(), std::memory_order_relaxed);
    }
  }

 private:
  inline static std::atomic<rep> offset_{0};
};

using ExporterTimer = boost::asio::basic_waitable_timer<ExporterClock>;

}  // namespace spanrelay
