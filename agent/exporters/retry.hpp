#pragma once
// Retry policy pieces for OTLP exporters: which statuses are retryable, exponential backoff
// with full jitter, and the Retry-After header.

#include <chrono>
#include <cstdint>
#include <optional>
#include <random>
#include <string_view>

#include "config/config.hpp"

namespace spanrelay {

// OTLP/HTTP: exactly 429, 502, 503 and 504 are retryable; every other non-2xx is permanent.
constexpr bool is_retryable_http_status(unsigned status) noexcept {
  return status == 429 || status == 502 || status == 503 || status == 504;
}

// Parses Retry-After: delta-seconds ("3") or an HTTP-date (IMF-fixdate, RFC 850 or asctime),
// relative to `now`. A date in the past gives zero. Returns nullopt when unparseable.
std::optional<std::chrono::milliseconds> parse_retry_after(
    std::string_view value, std::chrono::system_clock::time_point now);

// Exponential backoff with full jitter: the n-th delay is uniform in [0, min(max, initial*2^n)],
// never below a small floor so a retry is not instantaneous.
class Backoff {
 public:
  explicit Backoff(const config::Retry& retry, std::uint64_t seed = std::random_device{}());
  std::chrono::milliseconds next();
  void reset() noexcept { attempt_ = 0; }
  // The current upper bound (for logs and tests).
  std::chrono::milliseconds ceiling() const noexcept;

 private:
  config::Retry retry_;
  unsigned attempt_ = 0;
  std::mt19937_64 rng_;
};

}  // namespace spanrelay
