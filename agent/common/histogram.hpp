#pragma once
// A latency histogram for Prometheus: fixed bucket bounds in seconds, lock-free atomic counts.
// Observations are cheap (a short scan and two relaxed adds), so it sits on the hot path.

#include <array>
#include <atomic>
#include <charconv>
#include <chrono>
#include <cstdint>
#include <ostream>
#include <string_view>

namespace spanrelay {

// A sample value as Prometheus text: the shortest form that reads back as the same double
// (integers stay integers: 67108864, not 6.71089e+07).
inline void write_number(std::ostream& out, double value) {
  char buf[32];
  const auto [end, ec] = std::to_chars(buf, buf + sizeof buf, value);
  out.write(buf, ec == std::errc() ? end - buf : 0);
}

class Histogram {
 public:
  // Upper bounds of the buckets, in seconds (+Inf is implicit): 100 µs to 30 s.
  static constexpr std::array<double, 15> kBounds = {0.0001, 0.00025, 0.0005, 0.001, 0.0025,
                                                     0.005,  0.01,    0.025,  0.05,  0.1,
                                                     0.25,   0.5,     1,      5,     30};

  void observe(std::chrono::nanoseconds elapsed) noexcept {
    const double seconds = std::chrono::duration<double>(elapsed).count();
    std::size_t i = 0;
    while (i < kBounds.size() && seconds > kBounds[i]) {
      ++i;
    }
    counts_[i].fetch_add(1, std::memory_order_relaxed);
    sum_ns_.fetch_add(static_cast<std::uint64_t>(elapsed.count() > 0 ? elapsed.count() : 0),
                      std::memory_order_relaxed);
  }

  std::uint64_t count() const noexcept {
    std::uint64_t n = 0;
    for (const auto& c : counts_) {
      n += c.load(std::memory_order_relaxed);
    }
    return n;
  }

  // Writes NAME_bucket{LABELS,le="..."}, NAME_sum{LABELS} and NAME_count{LABELS} lines;
  // `labels` is e.g. `exporter="grafana"` (may be empty).
  void render(std::ostream& out, std::string_view name, std::string_view labels) const {
    const std::string_view sep = labels.empty() ? "" : ",";
    std::uint64_t cumulative = 0;
    for (std::size_t i = 0; i <= kBounds.size(); ++i) {
      cumulative += counts_[i].load(std::memory_order_relaxed);
      out << name << "_bucket{" << labels << sep << "le=\"";
      if (i < kBounds.size()) {
        // Plain decimals, as Prometheus clients write them ("0.0001", not "1e-04"), so that
        // a query selecting a bucket by its le text finds it.
        char buf[32];
        const auto [end, ec] =
            std::to_chars(buf, buf + sizeof buf, kBounds[i], std::chars_format::fixed);
        out.write(buf, ec == std::errc() ? end - buf : 0);
      } else {
        out << "+Inf";
      }
      out << "\"} " << cumulative << '\n';
    }
    const std::string_view open = labels.empty() ? "" : "{";
    const std::string_view close = labels.empty() ? "" : "}";
    out << name << "_sum" << open << labels << close << ' ';
    write_number(out, static_cast<double>(sum_ns_.load(std::memory_order_relaxed)) / 1e9);
    out << '\n';
    out << name << "_count" << open << labels << close << ' ' << cumulative << '\n';
  }

 private:
  std::array<std::atomic<std::uint64_t>, kBounds.size() + 1> counts_{};
  std::atomic<std::uint64_t> sum_ns_{0};
};

}  // namespace spanrelay
