#pragma once
// Which upstream failures to log: every class of failure (auth, 4xx, 5xx, timeout, connection,
// TLS) is logged the first time it happens and then at most once per interval, each line
// saying how many of that class happened since the previous one. One class never hides
// another: a 401 after a minute of 503s is logged at once. Pure logic, time injected.

#include <array>
#include <chrono>
#include <cstdint>
#include <optional>

#include "exporters/sender.hpp"

namespace spanrelay {

class FailureLog {
 public:
  using Clock = std::chrono::steady_clock;

  explicit FailureLog(std::chrono::milliseconds interval = std::chrono::minutes(1))
      : interval_(interval) {}

  // Records one failure of class `c` at `now`. Returns true when it should be logged now;
  // then `count` is the number of failures of that class since its previous line, this one
  // included.
  bool record(FailureClass c, Clock::time_point now, std::uint64_t& count) noexcept {
    Entry& e = entries_[static_cast<std::size_t>(c)];
    ++e.held;
    if (e.last_logged && now - *e.last_logged < interval_) {
      return false;
    }
    e.last_logged = now;
    count = e.held;
    e.held = 0;
    return true;
  }

 private:
  struct Entry {
    std::optional<Clock::time_point> last_logged;
    std::uint64_t held = 0;
  };
  std::chrono::milliseconds interval_;
  std::array<Entry, static_cast<std::size_t>(FailureClass::kTls) + 1> entries_{};
};

}  // namespace spanrelay
