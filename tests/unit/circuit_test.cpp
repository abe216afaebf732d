// The circuit breaker's state machine, on an injected clock.
#include <catch2/catch.hpp>

#include "exporters/circuit.hpp"

using namespace spanrelay;
using namespace std::chrono_literals;
using Clock = Circuit::Clock;

namespace {
Circuit::Options opts() {
  Circuit::Options o;
  o.failure_threshold = 3;
  o.initial_cooldown = 100ms;
  o.max_cooldown = 400ms;
  o.max_concurrency = 4;
  return o;
}
}  // namespace

TEST_CASE("closed: up to max_concurrency attempts at once", "[circuit]") {
  Circuit c(opts());
  const auto t = Clock::now();
  for (int i = 0; i < 4; ++i) {
    REQUIRE(c.try_acquire(t));
  }
  REQUIRE_FALSE(c.try_acquire(t));
  c.succeeded();
  REQUIRE(c.try_acquire(t));
  REQUIRE(c.state() == Circuit::State::kClosed);
}

TEST_CASE("consecutive failures open it, one probe after the cool-down", "[circuit]") {
  Circuit c(opts());
  auto t = Clock::now();
  for (int i = 0; i < 2; ++i) {
    REQUIRE(c.try_acquire(t));
    c.failed(t, std::nullopt);
  }
  REQUIRE(c.state() == Circuit::State::kClosed);
  REQUIRE(c.try_acquire(t));
  c.failed(t, std::nullopt);
  REQUIRE(c.state() == Circuit::State::kOpen);
  REQUIRE(c.opened() == 1);
  REQUIRE_FALSE(c.try_acquire(t + 99ms));
  REQUIRE(c.next_change(t) == t + 100ms);

  REQUIRE(c.try_acquire(t + 100ms));  // the probe
  REQUIRE(c.state() == Circuit::State::kHalfOpen);
  REQUIRE_FALSE(c.try_acquire(t + 100ms));  // only one

  SECTION("a failed probe re-opens it for twice as long, up to max_cooldown") {
    t += 100ms;
    c.failed(t, std::nullopt);
    REQUIRE(c.state() == Circuit::State::kOpen);
    REQUIRE_FALSE(c.try_acquire(t + 199ms));
    REQUIRE(c.try_acquire(t + 200ms));
    c.failed(t + 200ms, std::nullopt);
    REQUIRE(c.try_acquire(t + 600ms));
    c.failed(t + 600ms, std::nullopt);
    REQUIRE_FALSE(c.try_acquire(t + 999ms));
    REQUIRE(c.try_acquire(t + 1000ms));  // capped at 400ms
    REQUIRE(c.opened() == 1);
    REQUIRE(c.probes() == 4);
  }
  SECTION("a good probe closes it, and concurrency ramps 1, 2, 4") {
    c.succeeded();
    REQUIRE(c.state() == Circuit::State::kClosed);
    REQUIRE(c.concurrency_limit() == 1);
    const auto now = t + 100ms;
    REQUIRE(c.try_acquire(now));
    REQUIRE_FALSE(c.try_acquire(now));
    c.succeeded();
    REQUIRE(c.concurrency_limit() == 2);
    REQUIRE(c.try_acquire(now));
    c.succeeded();
    REQUIRE(c.concurrency_limit() == 4);
    c.succeeded();  // extra releases are harmless
    REQUIRE(c.concurrency_limit() == 4);
  }
  SECTION("an abandoned probe leaves it open, ready to probe again") {
    c.abandoned();
    REQUIRE(c.state() == Circuit::State::kOpen);
    REQUIRE(c.try_acquire(t + 100ms));
  }
}

TEST_CASE("Retry-After holds every attempt, and stretches the cool-down", "[circuit]") {
  Circuit c(opts());
  const auto t = Clock::now();
  REQUIRE(c.try_acquire(t));
  c.failed(t, 3s);
  REQUIRE(c.state() == Circuit::State::kClosed);  // one failure: still closed...
  REQUIRE_FALSE(c.try_acquire(t + 2999ms));        // ...but nobody may try before 3 s
  REQUIRE(c.next_change(t + 1s) == t + 3s);
  REQUIRE(c.try_acquire(t + 3s));
  c.failed(t + 3s, std::nullopt);
  REQUIRE(c.try_acquire(t + 3s));
  c.failed(t + 3s, 10s);  // third failure opens it; the upstream's delay beats the cool-down
  REQUIRE(c.state() == Circuit::State::kOpen);
  REQUIRE_FALSE(c.try_acquire(t + 12s));
  REQUIRE(c.try_acquire(t + 13s));
}

TEST_CASE("a success resets the failure count", "[circuit]") {
  Circuit c(opts());
  const auto t = Clock::now();
  for (int round = 0; round < 5; ++round) {
    REQUIRE(c.try_acquire(t));
    c.failed(t, std::nullopt);
    REQUIRE(c.try_acquire(t));
    c.failed(t, std::nullopt);
    REQUIRE(c.try_acquire(t));
    c.succeeded();
  }
  REQUIRE(c.state() == Circuit::State::kClosed);
  REQUIRE(c.opened() == 0);
  REQUIRE(c.next_change(t) == Clock::time_point::max());
}

TEST_CASE("an upstream-requested delay is capped at max_hold", "[circuit]") {
  Circuit::Options o = opts();
  o.max_hold = 2s;
  Circuit c(o);
  const auto t = Clock::now();
  REQUIRE(c.try_acquire(t));
  c.failed(t, std::chrono::hours(1));  // e.g. "Retry-After: 3600" from a proxy
  REQUIRE_FALSE(c.try_acquire(t + 1999ms));
  REQUIRE(c.try_acquire(t + 2s));
}
