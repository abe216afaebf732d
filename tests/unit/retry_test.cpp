// Retry policy: retryable statuses, backoff bounds, Retry-After in both forms.
#include <catch2/catch.hpp>

#include <set>

#include "exporters/retry.hpp"

using namespace spanrelay;
using namespace std::chrono_literals;
using std::chrono::milliseconds;

TEST_CASE("only 429, 502, 503 and 504 are retryable", "[retry]") {
  for (unsigned s : {429u, 502u, 503u, 504u}) {
    REQUIRE(is_retryable_http_status(s));
  }
  for (unsigned s : {400u, 401u, 403u, 404u, 413u, 415u, 500u, 501u, 505u}) {
    REQUIRE_FALSE(is_retryable_http_status(s));
  }
}

TEST_CASE("Retry-After as delta-seconds", "[retry]") {
  const auto now = std::chrono::system_clock::now();
  REQUIRE(parse_retry_after("3", now) == milliseconds(3000));
  REQUIRE(parse_retry_after(" 0 ", now) == milliseconds(0));
  REQUIRE(parse_retry_after("120", now) == milliseconds(120000));
  REQUIRE_FALSE(parse_retry_after("", now).has_value());
  REQUIRE_FALSE(parse_retry_after("-1", now).has_value());
  REQUIRE_FALSE(parse_retry_after("1.5", now).has_value());
  REQUIRE_FALSE(parse_retry_after("soon", now).has_value());
}

TEST_CASE("Retry-After as HTTP-date", "[retry]") {
  // Sun, 06 Nov 1994 08:49:37 GMT = 784111777
  const auto base = std::chrono::system_clock::from_time_t(784111777);
  REQUIRE(parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", base - 5s) == milliseconds(5000));
  REQUIRE(parse_retry_after("Sunday, 06-Nov-94 08:49:37 GMT", base - 2s) == milliseconds(2000));
  REQUIRE(parse_retry_after("Sun Nov  6 08:49:37 1994", base - 1s) == milliseconds(1000));
  // A date in the past means "now".
  REQUIRE(parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", base + 60s) == milliseconds(0));
  REQUIRE_FALSE(parse_retry_after("Sun, 06 Nov 1994 08:49:37", base).has_value());
  REQUIRE_FALSE(parse_retry_after("Sun, 32 Nov 1994 08:49:37 GMT", base).has_value());
}

TEST_CASE("backoff grows exponentially with full jitter, capped", "[retry]") {
  config::Retry retry;
  retry.initial_interval = 100ms;
  retry.max_interval = 1s;
  Backoff backoff(retry, 12345);
  const std::int64_t ceilings[] = {100, 200, 400, 800, 1000, 1000, 1000};
  for (std::int64_t ceiling : ceilings) {
    REQUIRE(backoff.ceiling().count() == ceiling);
    const auto d = backoff.next();
    REQUIRE(d.count() >= 10);  // floor: a tenth of initial_interval
    REQUIRE(d.count() <= ceiling);
  }
  backoff.reset();
  REQUIRE(backoff.ceiling() == 100ms);
}

TEST_CASE("backoff delays are spread, not constant", "[retry]") {
  config::Retry retry;
  retry.initial_interval = 1s;
  retry.max_interval = 1s;
  Backoff backoff(retry, 7);
  std::set<std::int64_t> seen;
  for (int i = 0; i < 50; ++i) {
    seen.insert(backoff.next().count());
  }
  REQUIRE(seen.size() > 10);
}
