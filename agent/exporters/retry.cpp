#include "exporters/retry.hpp"

#include <algorithm>
#include <charconv>
#include <ctime>
#include <string>

namespace spanrelay {

std::optional<std::chrono::milliseconds> parse_retry_after(
    std::string_view value, std::chrono::system_clock::time_point now) {
  while (!value.empty() && (value.front() == ' ' || value.front() == '\t')) {
    value.remove_prefix(1);
  }
  while (!value.empty() && (value.back() == ' ' || value.back() == '\t')) {
    value.remove_suffix(1);
  }
  if (value.empty()) {
    return std::nullopt;
  }
  if (std::all_of(value.begin(), value.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    std::uint64_t seconds = 0;
    auto [ptr, ec] = std::from_chars(value.data(), value.data() + value.size(), seconds);
    if (ec != std::errc() || ptr != value.data() + value.size()) {
      return std::nullopt;
    }
    seconds = std::min<std::uint64_t>(seconds, 365ull * 24 * 3600);  // clamp absurd values
    return std::chrono::seconds(seconds);
  }
  // HTTP-date: the three formats RFC 9110 tells recipients to accept; always GMT.
  static constexpr const char* formats[] = {
      "%a, %d %b %Y %H:%M:%S GMT",  // IMF-fixdate: Sun, 06 Nov 1994 08:49:37 GMT
      "%A, %d-%b-%y %H:%M:%S GMT",  // RFC 850:    Sunday, 06-Nov-94 08:49:37 GMT
      "%a %b %e %H:%M:%S %Y",       // asctime:    Sun Nov  6 08:49:37 1994
  };
  const std::string text(value);
  for (const char* format : formats) {
    std::tm tm{};
    const char* end = strptime(text.c_str(), format, &tm);
    if (end != nullptr && *end == '\0') {
      const auto when = std::chrono::system_clock::from_time_t(timegm(&tm));
      if (when <= now) {
        return std::chrono::milliseconds(0);
      }
      return std::chrono::duration_cast<std::chrono::milliseconds>(when - now);
    }
  }
  return std::nullopt;
}

Backoff::Backoff(const config::Retry& retry, std::uint64_t seed) : retry_(retry), rng_(seed) {}

std::chrono::milliseconds Backoff::ceiling() const noexcept {
  const auto initial = std::max<std::int64_t>(retry_.initial_interval.count(), 1);
  const auto cap = std::max<std::int64_t>(retry_.max_interval.count(), initial);
  const unsigned shift = std::min(attempt_, 30u);
  const std::int64_t grown = initial << shift;
  return std::chrono::milliseconds(grown > cap || grown < initial ? cap : grown);
}

std::chrono::milliseconds Backoff::next() {
  const auto top = ceiling().count();
  ++attempt_;
  // Full jitter, with a floor of a tenth of the initial interval.
  const std::int64_t floor = std::max<std::int64_t>(retry_.initial_interval.count() / 10, 1);
  std::uniform_int_distribution<std::int64_t> dist(std::min(floor, top), top);
  return std::chrono::milliseconds(dist(rng_));
}

}  // namespace spanrelay
