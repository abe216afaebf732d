// FailureLog: which upstream failures get a log line. The first of a class is never held back,
// then at most one line per interval and class, each carrying the count since the previous
// line; one class never hides another. Time is injected, so every case here is exact.
#include <catch2/catch.hpp>

#include <string>

#include "exporters/failure_log.hpp"
#include "exporters/sender.hpp"

using namespace spanrelay;
using namespace std::chrono_literals;

namespace {

constexpr FailureClass kAllFailures[] = {FailureClass::kAuth,    FailureClass::kClient,
                                         FailureClass::kServer,  FailureClass::kTimeout,
                                         FailureClass::kConnection, FailureClass::kTls};

// An arbitrary origin far from the clock's epoch (a zero time_point must not be special).
const FailureLog::Clock::time_point t0 = FailureLog::Clock::time_point{} + 12345s;

// Records one failure; returns the logged count, or 0 when the failure was held back.
std::uint64_t logged(FailureLog& log, FailureClass c, FailureLog::Clock::duration at) {
  std::uint64_t count = 999;
  if (!log.record(c, t0 + at, count)) {
    return 0;
  }
  return count;
}

}  // namespace

TEST_CASE("failure log: the first failure of a class is logged at once with count 1",
          "[failure_log]") {
  FailureLog log(60s);
  REQUIRE(logged(log, FailureClass::kServer, 0s) == 1);
}

TEST_CASE("failure log: a first failure at the clock's epoch is logged too", "[failure_log]") {
  FailureLog log(60s);
  std::uint64_t count = 0;
  REQUIRE(log.record(FailureClass::kTimeout, FailureLog::Clock::time_point{}, count));
  REQUIRE(count == 1);
}

TEST_CASE("failure log: repeats within the interval are held, then counted in the next line",
          "[failure_log]") {
  FailureLog log(60s);
  REQUIRE(logged(log, FailureClass::kServer, 0s) == 1);
  REQUIRE(logged(log, FailureClass::kServer, 1s) == 0);
  REQUIRE(logged(log, FailureClass::kServer, 2s) == 0);
  REQUIRE(logged(log, FailureClass::kServer, 30s) == 0);
  REQUIRE(logged(log, FailureClass::kServer, 59999ms) == 0);  // just inside the interval
  // The interval has passed: the four held plus this one.
  REQUIRE(logged(log, FailureClass::kServer, 60s) == 5);
  // The interval restarts from that line, and the held count from zero.
  REQUIRE(logged(log, FailureClass::kServer, 61s) == 0);
  REQUIRE(logged(log, FailureClass::kServer, 119s) == 0);
  REQUIRE(logged(log, FailureClass::kServer, 120s) == 3);
}

TEST_CASE("failure log: a 401 during a run of 503s is logged at once", "[failure_log]") {
  FailureLog log(60s);
  REQUIRE(logged(log, FailureClass::kServer, 0s) == 1);
  for (int i = 1; i <= 10; ++i) {
    REQUIRE(logged(log, FailureClass::kServer, std::chrono::seconds(i)) == 0);
  }
  // Its own class: not hidden by the 503s held back.
  REQUIRE(logged(log, FailureClass::kAuth, 11s) == 1);
  // ... nor does it reset or consume theirs.
  REQUIRE(logged(log, FailureClass::kServer, 12s) == 0);
  REQUIRE(logged(log, FailureClass::kServer, 60s) == 12);
  // And auth has its own interval, from its own first line.
  REQUIRE(logged(log, FailureClass::kAuth, 70s) == 0);
  REQUIRE(logged(log, FailureClass::kAuth, 71s) == 2);
}

TEST_CASE("failure log: every class is independent", "[failure_log]") {
  FailureLog log(60s);
  for (FailureClass c : kAllFailures) {
    INFO(failure_class_name(c));
    REQUIRE(logged(log, c, 0s) == 1);
  }
  for (FailureClass c : kAllFailures) {
    INFO(failure_class_name(c));
    REQUIRE(logged(log, c, 10s) == 0);
  }
  // Only one class keeps failing; the others stay quiet and keep nothing held.
  REQUIRE(logged(log, FailureClass::kTls, 20s) == 0);
  REQUIRE(logged(log, FailureClass::kTls, 60s) == 3);
  REQUIRE(logged(log, FailureClass::kTimeout, 60s) == 2);
  REQUIRE(logged(log, FailureClass::kConnection, 300s) == 2);
}

TEST_CASE("failure log: after a quiet spell the next failure is logged at once, counting itself",
          "[failure_log]") {
  FailureLog log(60s);
  REQUIRE(logged(log, FailureClass::kConnection, 0s) == 1);
  REQUIRE(logged(log, FailureClass::kConnection, 3600s) == 1);
  REQUIRE(logged(log, FailureClass::kConnection, 3601s) == 0);
}

TEST_CASE("failure log: the default interval is one minute", "[failure_log]") {
  FailureLog log;
  REQUIRE(logged(log, FailureClass::kClient, 0s) == 1);
  REQUIRE(logged(log, FailureClass::kClient, 59s) == 0);
  REQUIRE(logged(log, FailureClass::kClient, 60s) == 2);
}

TEST_CASE("failure class names are the ones status.json and the logs use", "[failure_log]") {
  REQUIRE(std::string(failure_class_name(FailureClass::kAuth)) == "auth");
  REQUIRE(std::string(failure_class_name(FailureClass::kClient)) == "4xx");
  REQUIRE(std::string(failure_class_name(FailureClass::kServer)) == "5xx");
  REQUIRE(std::string(failure_class_name(FailureClass::kTimeout)) == "timeout");
  REQUIRE(std::string(failure_class_name(FailureClass::kConnection)) == "connection");
  REQUIRE(std::string(failure_class_name(FailureClass::kTls)) == "tls");
}
