#pragma once
// Logging: one named spdlog logger per component, all writing to stderr (journald picks it up),
// as text or as one JSON object per line.

#include <spdlog/spdlog.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

namespace spanrelay {

// Installs the sink, level and format for every logger created after it (and the default one).
// level: trace|debug|info|warn|error|off.
void init_logging(const std::string& level, bool json);

// The logger for one component ("receiver.http", "batcher", "exporter.grafana", ...).
std::shared_ptr<spdlog::logger> logger(const std::string& name);

// Lets a hot-path warning through at most once per interval; counts what it held back so the
// next message can say how many were suppressed. Thread-safe, lock-free.
class RateLimit {
 public:
  explicit RateLimit(std::chrono::milliseconds interval = std::chrono::seconds(10))
      : interval_ns_(std::chrono::nanoseconds(interval).count()) {}

  // Returns true when the caller should log now; `suppressed` = messages held back since.
  bool allow(std::uint64_t& suppressed) noexcept {
    const std::int64_t now = std::chrono::steady_clock::now().time_since_epoch().count();
    std::int64_t last = last_ns_.load(std::memory_order_relaxed);
    if (last != 0 && now - last < interval_ns_) {
      held_.fetch_add(1, std::memory_order_relaxed);
      return false;
    }
    if (!last_ns_.compare_exchange_strong(last, now, std::memory_order_relaxed)) {
      held_.fetch_add(1, std::memory_order_relaxed);
      return false;
    }
    suppressed = held_.exchange(0, std::memory_order_relaxed);
    return true;
  }

 private:
  const std::int64_t interval_ns_;
  std::atomic<std::int64_t> last_ns_{0};
  std::atomic<std::uint64_t> held_{0};
};

}  // namespace spanrelay
