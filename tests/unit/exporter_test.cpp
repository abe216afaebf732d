// QueuedExporter's retry loop, queue bound and shutdown, driven through a fake Sender; and
// the gRPC status classification.
#include <catch2/catch.hpp>

#ifndef SPANRELAY_EXPORTER_TSAN  // exporter_test_tsan: the queue, retry and spool logic only
#include <grpcpp/support/status.h>
#endif

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <atomic>
#include <deque>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#ifndef SPANRELAY_EXPORTER_TSAN
#include "exporters/otlp_grpc/grpc_sender.hpp"
#endif
#include "exporters/queued_exporter.hpp"
#include "google/rpc/status.pb.h"
#include "otlp/wire.hpp"
#include "unit/otlp_builders.hpp"
#include "unit/temp_dir.hpp"

using namespace spanrelay;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

namespace {

Attempt retryable_attempt(std::string detail,
                          std::optional<std::chrono::milliseconds> after = std::nullopt) {
  Attempt a;
  a.outcome = Attempt::kRetryable;
  a.retry_after = after;
  a.detail = std::move(detail);
  return a;
}

Attempt retryable(std::optional<std::chrono::milliseconds> after = std::nullopt) {
  return retryable_attempt("503", after);
}

// Answers each send() with the next scripted Attempt (default: delivered), after an optional
// delay; records every call. Thread-safe for the test thread's reads.
struct Script {
  std::mutex m;
  std::deque<Attempt> answers;
  std::vector<Clock::time_point> calls;
  std::chrono::milliseconds delay{0};
  bool cancelled = false;
  int in_flight = 0;
  std::vector<int> concurrent;  // per call: how many other calls were in flight when it began
  std::vector<std::string> payloads;
  int cancelled_sends = 0;  // sends ended early by cancel_all()

  std::size_t count() {
    std::lock_guard lock(m);
    return calls.size();
  }
};

// Honours the Sender contract with several sends in flight (one per slot): cancel_all() ends
// every pending one promptly, as a cancelled attempt.
class FakeSender final : public Sender {
 public:
  FakeSender(boost::asio::io_context& ioc, Script& s) : ioc_(ioc), s_(s) {}
  std::string prepare(const Batch& b) override { return b.bytes; }
  boost::asio::awaitable<Attempt> send(std::size_t, std::string& payload) override {
    Attempt a;
    std::chrono::milliseconds delay;
    {
      std::lock_guard lock(s_.m);
      s_.calls.push_back(Clock::now());
      s_.payloads.push_back(payload);
      s_.concurrent.push_back(s_.in_flight++);
      a.outcome = Attempt::kDelivered;
      if (!s_.answers.empty()) {
        a = s_.answers.front();
        s_.answers.pop_front();
      }
      delay = s_.delay;
    }
    if (delay.count() > 0) {
      boost::asio::steady_timer t(ioc_, delay);
      pending_.insert(&t);
      auto [ec] = co_await t.async_wait(boost::asio::as_tuple(boost::asio::use_awaitable));
      pending_.erase(&t);
      if (ec) {
        a = retryable_attempt("cancelled");
        std::lock_guard lock(s_.m);
        ++s_.cancelled_sends;
      }
    }
    std::lock_guard lock(s_.m);
    --s_.in_flight;
    co_return a;
  }
  void cancel_all() override {
    {
      std::lock_guard lock(s_.m);
      s_.cancelled = true;
    }
    for (auto* t : pending_) {
      t->cancel();
    }
  }
  void close(std::size_t) override {}
  std::string describe() const override { return "fake"; }

 private:
  boost::asio::io_context& ioc_;
  Script& s_;
  std::set<boost::asio::steady_timer*> pending_;  // io thread only
};

config::Exporter options() {
  config::Exporter o;
  o.name = "fake";
  o.max_in_flight = 1;
  o.max_queue_bytes = 1 << 20;
  o.retry.initial_interval = 10ms;
  o.retry.max_interval = 50ms;
  o.retry.max_elapsed = 5s;
  return o;
}

BatchPtr batch(std::uint32_t spans, std::size_t bytes = 100) {
  auto b = std::make_shared<Batch>();
  b->bytes.assign(bytes, 'x');
  b->spans = spans;
  return b;
}

std::unique_ptr<QueuedExporter> make(Script& s, config::Exporter o = options(),
                                     MemoryBudget* budget = nullptr) {
  auto e = std::make_unique<QueuedExporter>(
      o,
      [&s](boost::asio::io_context& ioc, const config::Exporter&) {
        return std::make_unique<FakeSender>(ioc, s);
      },
      budget);
  e->start();
  return e;
}

template <typename Pred>
bool eventually(Pred p, std::chrono::milliseconds timeout = 10s) {
  const auto until = Clock::now() + timeout;
  while (Clock::now() < until) {
    if (p()) {
      return true;
    }
    std::this_thread::sleep_for(2ms);  // polling a condition with a deadline
  }
  return p();
}

// A negative check: `p` stays false for the whole window (there is no event to await).
template <typename Pred>
bool stays_false_for(Pred p, std::chrono::milliseconds window) {
  return !eventually(p, window);
}

// Simulated time: moves the exporters' clock (ExporterClock) forward in small steps until `p`
// holds, so a backoff, hold or cool-down of minutes passes in a fraction of a second of real
// time. The steps are small next to the delays under test, and each one is followed by
// clock_moved(), so whatever the exporter armed meanwhile fires at the simulated time it asked
// for, give or take a step or two.
template <typename Pred>
bool advance_until(QueuedExporter& e, Pred p, std::chrono::milliseconds step = 2s,
                   std::chrono::milliseconds real_timeout = 20s) {
  const auto until = Clock::now() + real_timeout;
  while (Clock::now() < until) {
    if (p()) {
      return true;
    }
    ExporterClock::advance(step);
    e.clock_moved();
    std::this_thread::sleep_for(1ms);  // polling a condition with a deadline
  }
  return p();
}

}  // namespace

TEST_CASE("retryable failures are retried until delivered, once", "[exporter]") {
  Script s;
  s.answers = {retryable(), retryable()};
  auto e = make(s);
  e->submit(batch(7));
  REQUIRE(eventually([&] { return get(e->stats().sent_spans) == 7; }));
  REQUIRE(s.count() == 3);
  REQUIRE(get(e->stats().retries) == 2);
  REQUIRE(get(e->stats().failed_spans) == 0);
}

TEST_CASE("a permanent failure drops the batch at once and counts it", "[exporter]") {
  Script s;
  Attempt permanent;
  permanent.outcome = Attempt::kPermanent;
  permanent.detail = "HTTP 400";
  s.answers = {permanent};
  auto e = make(s);
  e->submit(batch(5));
  REQUIRE(eventually([&] { return get(e->stats().failed_spans) == 5; }));
  e->shutdown(Clock::now() + 1s);
  REQUIRE(s.count() == 1);
  REQUIRE(get(e->stats().sent_spans) == 0);
}

TEST_CASE("Retry-After sets the delay before the next attempt", "[exporter]") {
  Script s;
  s.answers = {retryable(300ms)};
  auto e = make(s);
  e->submit(batch(1));
  REQUIRE(eventually([&] { return get(e->stats().sent_spans) == 1; }));
  std::lock_guard lock(s.m);
  REQUIRE(s.calls.size() == 2);
  REQUIRE(s.calls[1] - s.calls[0] >= 300ms);
}

TEST_CASE("retries stop at max_elapsed and the batch is counted as failed", "[exporter]") {
  Script s;
  for (int i = 0; i < 1000; ++i) {
    s.answers.push_back(retryable());
  }
  auto o = options();
  o.retry.max_elapsed = 200ms;
  auto e = make(s, o);
  e->submit(batch(3));
  REQUIRE(eventually([&] { return get(e->stats().failed_spans) == 3; }));
  REQUIRE(s.count() >= 2);
}

TEST_CASE("a stale kept-alive connection costs one immediate retry", "[exporter]") {
  Script s;
  Attempt stale = retryable();
  stale.stale_connection = true;
  auto o = options();
  // Any backoff is at least a tenth of an hour: only the immediate retry can make the second
  // attempt within the test's wait.
  o.retry.initial_interval = 1h;
  o.retry.max_interval = 1h;
  o.retry.max_elapsed = 10h;
  SECTION("one stale failure: retried at once, delivered") {
    s.answers = {stale};
    auto e = make(s, o);
    e->submit(batch(1));
    REQUIRE(eventually([&] { return get(e->stats().sent_spans) == 1; }));
    REQUIRE(s.count() == 2);
    REQUIRE(get(e->stats().retries) == 1);
    REQUIRE(get(e->stats().circuit_opened) == 0);
  }
  SECTION("a second stale failure in a row waits out the backoff") {
    s.answers = {stale, stale};
    auto e = make(s, o);
    e->submit(batch(1));
    REQUIRE(eventually([&] { return s.count() == 2; }));
    CHECK(stays_false_for([&] { return s.count() > 2; }, 300ms));  // no third immediate one
    REQUIRE(advance_until(*e, [&] { return get(e->stats().sent_spans) == 1; }, 1min));
    REQUIRE(s.count() == 3);
  }
}

TEST_CASE("retry.enabled: false makes one attempt, then drops and counts the batch",
          "[exporter]") {
  Script s;
  s.answers = {retryable(), retryable()};
  auto o = options();
  o.retry.enabled = false;
  auto e = make(s, o);
  e->submit(batch(4));
  REQUIRE(eventually([&] { return get(e->stats().failed_spans) == 4; }));
  e->shutdown(Clock::now() + 5s);
  CHECK(s.count() == 1);
  CHECK(get(e->stats().retries) == 0);
  CHECK(get(e->stats().failed_requests) == 1);
  CHECK(get(e->stats().sent_spans) == 0);
}

TEST_CASE("at the shutdown deadline cancel_all() ends every attempt in flight",
          "[exporter]") {
  Script s;
  s.delay = 60s;  // an upstream that does not answer
  auto o = options();
  o.max_in_flight = 4;
  auto e = make(s, o);
  for (int i = 0; i < 4; ++i) {
    e->submit(batch(3));
  }
  REQUIRE(eventually([&] { return s.count() == 4; }));  // all four workers wait for an answer
  e->shutdown(Clock::now() + 200ms);
  CHECK(s.cancelled);
  CHECK(s.cancelled_sends == 4);
  CHECK(get(e->stats().failed_spans) == 4 * 3);
  CHECK(get(e->stats().sent_spans) == 0);
}

TEST_CASE("a full queue drops its oldest batch, counted", "[exporter]") {
  Script s;
  s.delay = 200ms;  // the one worker is busy while the queue fills
  auto o = options();
  o.max_queue_bytes = 250;  // two 100-byte batches fit
  auto e = make(s, o);
  e->submit(batch(1));
  REQUIRE(eventually([&] { return s.count() == 1; }));  // batch 1 is in flight
  for (std::uint32_t i = 2; i <= 5; ++i) {
    e->submit(batch(i));
  }
  e->shutdown(Clock::now() + 10s);
  // In flight: batch 1. Queue 2,3 -> 4 evicts 2 -> 5 evicts 3. Delivered: 1, 4, 5.
  REQUIRE(get(e->stats().sent_spans) == 1 + 4 + 5);
  REQUIRE(get(e->stats().failed_spans) == 2 + 3);
}

TEST_CASE("a queue over its share keeps its batches while memory is plentiful", "[exporter]") {
  Script s;
  s.delay = 100ms;
  auto o = options();
  o.max_queue_bytes = 250;
  MemoryBudget budget(1 << 20);  // nearly empty: no pressure
  auto e = make(s, o, &budget);
  e->submit(batch(1));
  REQUIRE(eventually([&] { return s.count() == 1; }));
  for (std::uint32_t i = 2; i <= 5; ++i) {
    e->submit(batch(i));
  }
  e->shutdown(Clock::now() + 10s);
  REQUIRE(get(e->stats().sent_spans) == 1 + 2 + 3 + 4 + 5);
  REQUIRE(get(e->stats().failed_spans) == 0);

  SECTION("and sheds the oldest once the budget is three quarters used") {
    Script s2;
    s2.delay = 100ms;
    MemoryBudget tight(1000);
    REQUIRE(tight.try_reserve(800));
    auto e2 = make(s2, o, &tight);
    e2->submit(batch(1));
    REQUIRE(eventually([&] { return s2.count() == 1; }));
    for (std::uint32_t i = 2; i <= 5; ++i) {
      e2->submit(batch(i));
    }
    e2->shutdown(Clock::now() + 10s);
    REQUIRE(get(e2->stats().failed_spans) == 2 + 3);
    tight.release(800);
  }
}

TEST_CASE("shutdown delivers the queue, then gives up at the deadline", "[exporter]") {
  SECTION("healthy upstream: everything delivered") {
    Script s;
    auto e = make(s);
    for (int i = 0; i < 10; ++i) {
      e->submit(batch(1));
    }
    e->shutdown(Clock::now() + 10s);
    REQUIRE(get(e->stats().sent_spans) == 10);
  }
  SECTION("dead upstream: shutdown returns at the deadline, all counted") {
    Script s;
    for (int i = 0; i < 100000; ++i) {
      s.answers.push_back(retryable());
    }
    auto o = options();
    o.retry.max_elapsed = 10h;  // only the shutdown deadline can end these retries
    auto e = make(s, o);
    for (int i = 0; i < 4; ++i) {
      e->submit(batch(2));
    }
    e->shutdown(Clock::now() + 300ms);  // returns: the deadline was honoured
    REQUIRE(get(e->stats().failed_spans) == 8);
    REQUIRE(get(e->stats().sent_spans) == 0);
  }
}

TEST_CASE("a batch refused as too large is re-sent in smaller pieces", "[exporter]") {
  // An upstream that takes at most 3 spans per request and says "too large" otherwise.
  struct SizeLimited : Sender {
    std::mutex m;
    std::vector<std::string> accepted;
    std::string prepare(const Batch& b) override { return b.bytes; }
    boost::asio::awaitable<Attempt> send(std::size_t, std::string& payload) override {
      Attempt a;
      if (otlp::count_spans(payload) > 3) {
        a.outcome = Attempt::kPermanent;
        a.too_large = true;
        a.detail = "HTTP 429 larger than max";
      } else {
        a.outcome = Attempt::kDelivered;
        std::lock_guard lock(m);
        accepted.push_back(payload);
      }
      co_return a;
    }
    void cancel_all() override {}
    void close(std::size_t) override {}
    std::string describe() const override { return "size-limited"; }
  };
  SizeLimited* upstream = nullptr;
  QueuedExporter e(options(), [&](boost::asio::io_context&, const config::Exporter&) {
    auto s = std::make_unique<SizeLimited>();
    upstream = s.get();
    return s;
  });
  e.start();
  auto b = std::make_shared<Batch>();
  b->bytes = testing::make_request(2, 2, 5).SerializeAsString();  // 20 spans
  b->spans = 20;
  e.submit(b);
  e.shutdown(Clock::now() + 10s);
  REQUIRE(get(e.stats().sent_spans) == 20);
  REQUIRE(get(e.stats().failed_spans) == 0);
  REQUIRE(get(e.stats().split_batches) >= 1);
  std::size_t spans = 0;
  for (const auto& p : upstream->accepted) {
    spans += otlp::count_spans(p);
  }
  REQUIRE(spans == 20);  // every span exactly once
}

TEST_CASE("a failing upstream opens the circuit: one probe at a time until it recovers",
          "[exporter][circuit]") {
  Script s;
  s.delay = 30ms;
  for (int i = 0; i < 30; ++i) {
    s.answers.push_back(retryable());
  }
  auto o = options();
  o.max_in_flight = 4;
  auto e = make(s, o);
  for (int i = 0; i < 4; ++i) {
    e->submit(batch(1));
  }
  REQUIRE(eventually([&] { return get(e->stats().sent_spans) == 4; }, 30s));
  REQUIRE(get(e->stats().circuit_opened) >= 1);
  REQUIRE(get(e->stats().circuit_state) == 0);
  std::lock_guard lock(s.m);
  // Four workers fail once each, then once more: the fifth failure opens the circuit, so no
  // third attempt of any worker starts while it is closed. From the ninth call on, until the
  // upstream answers again, each attempt is a lone probe.
  REQUIRE(s.concurrent.size() >= 31);
  for (std::size_t i = 8; i <= 30; ++i) {
    INFO("call " << i + 1);
    REQUIRE(s.concurrent[i] == 0);
  }
}

namespace {

std::unique_ptr<QueuedExporter> make_spooled(Script& s, const std::string& dir,
                                             config::Exporter o = options(),
                                             SpoolReplay replay = SpoolReplay::kOldestFirst) {
  SpoolOptions so;
  so.path = dir;
  so.fsync = SpoolFsync::kNever;
  so.replay = replay;
  config::Batch limits;
  limits.max_spans = 100;
  limits.timeout = 200ms;
  auto e = std::make_unique<QueuedExporter>(
      o,
      [&s](boost::asio::io_context& ioc, const config::Exporter&) {
        return std::make_unique<FakeSender>(ioc, s);
      },
      nullptr, Spool::open(so, o.name), limits);
  e->start();
  return e;
}

}  // namespace

TEST_CASE("spool mode: appended requests are batched, delivered once and released",
          "[exporter][spool]") {
  testing::TempDir dir;
  Script s;
  auto e = make_spooled(s, dir.str());
  for (int i = 0; i < 250; ++i) {
    REQUIRE(e->spool_append("0123456789", 1) == AppendStatus::kOk);
  }
  REQUIRE(eventually([&] { return get(e->stats().sent_spans) == 250; }));
  REQUIRE(eventually([&] { return e->spool()->pending_records() == 0 &&
                                  e->spool()->in_flight_records() == 0; }));
  REQUIRE(get(e->spool()->stats().acked_records) == 250);
  REQUIRE(s.count() >= 3);   // batch.max_spans is 100
  REQUIRE(s.count() < 250);  // merged, not one request per record
  e->shutdown(Clock::now() + 5s);
  REQUIRE(get(e->stats().sent_spans) == 250);
}

TEST_CASE("spool mode: retries that run out go back to the spool and are delivered later",
          "[exporter][spool]") {
  testing::TempDir dir;
  Script s;
  // On simulated time: attempts at 0, ~10 and ~20 min (Retry-After: 10 min); after the third
  // failure 20 + 10 > 25 min gives up, after three failures: fewer than open the circuit. The
  // records go back to the spool, and the next read delivers them once the hold is over.
  for (int i = 0; i < 3; ++i) {
    s.answers.push_back(retryable(10min));
  }
  auto o = options();
  o.retry.max_elapsed = 25min;
  SpoolOptions so;
  so.path = dir.str();
  so.fsync = SpoolFsync::kNever;
  std::shared_ptr<Spool> spool = Spool::open(so, o.name);
  for (int i = 0; i < 10; ++i) {  // all pending before the exporter starts: one batch of 20
    REQUIRE(spool->append("abc", 2) == AppendStatus::kOk);
  }
  config::Batch limits;
  limits.max_spans = 100;
  limits.timeout = 200ms;
  QueuedExporter e(
      o,
      [&s](boost::asio::io_context& ioc, const config::Exporter&) {
        return std::make_unique<FakeSender>(ioc, s);
      },
      nullptr, spool, limits);
  e.start();
  REQUIRE(advance_until(e, [&] { return get(e.stats().sent_spans) == 20; }));
  CHECK(s.count() == 4);
  CHECK(get(e.stats().retries) == 2);
  CHECK(get(e.stats().respooled_spans) == 20);
  CHECK(get(e.stats().circuit_opened) == 0);
  CHECK(get(e.stats().failed_spans) == 0);
  REQUIRE(eventually([&] { return e.spool()->stats().records == 0; }));
  std::lock_guard lock(s.m);
  std::string all;
  for (int i = 0; i < 10; ++i) {
    all += "abc";
  }
  for (const auto& p : s.payloads) {
    CHECK(p == all);  // the same ten records each time, then acked once
  }
}

TEST_CASE("spool mode: shutdown with the upstream down is prompt and keeps every record",
          "[exporter][spool]") {
  testing::TempDir dir;
  Script s;
  // The upstream asks for an hour: the worker sleeps on it, and the circuit stays closed.
  for (int i = 0; i < 100; ++i) {
    s.answers.push_back(retryable(1h));
  }
  auto o = options();
  o.retry.max_elapsed = 10h;
  {
    auto e = make_spooled(s, dir.str(), o);
    for (int i = 0; i < 5; ++i) {
      REQUIRE(e->spool_append("abc", 1) == AppendStatus::kOk);
    }
    REQUIRE(eventually([&] { return s.count() >= 1; }));
    // Returns: it waited for neither the Retry-After nor the deadline (an hour each).
    e->shutdown(Clock::now() + 1h);
    REQUIRE(get(e->stats().failed_spans) == 0);
  }
  SpoolOptions so;
  so.path = dir.str();
  auto reopened = Spool::open(so, "fake");
  REQUIRE(reopened->pending_records() == 5);
}

TEST_CASE("spool mode: no batch waits in memory through an outage, and the probe is fresh",
          "[exporter][spool][circuit]") {
  testing::TempDir dir;
  Script s;
  for (int i = 0; i < 12; ++i) {
    s.answers.push_back(retryable());
  }
  auto o = options();
  o.max_in_flight = 4;
  auto e = make_spooled(s, dir.str(), o, SpoolReplay::kNewestFirst);
  for (int i = 0; i < 8; ++i) {
    REQUIRE(e->spool_append("old" + std::to_string(i) + ";", 1) == AppendStatus::kOk);
  }
  REQUIRE(eventually([&] { return get(e->stats().circuit_opened) >= 1; }));
  // While it is open the records are back on disk, not held by waiting workers.
  REQUIRE(eventually([&] { return e->spool()->in_flight_records() == 0; }));
  REQUIRE(e->spool_append("newest;", 1) == AppendStatus::kOk);
  REQUIRE(eventually([&] { return get(e->stats().sent_spans) == 9; }, 20s));
  std::lock_guard lock(s.m);
  // The first delivered request (after the 12 failures) starts with the newest record.
  REQUIRE(s.payloads.size() > 12);
  INFO(s.payloads[12]);
  REQUIRE(s.payloads[12].starts_with("newest;"));
}

TEST_CASE("spool mode: a permanent error acknowledges the records and counts the spans",
          "[exporter][spool]") {
  testing::TempDir dir;
  Script s;
  Attempt permanent;
  permanent.outcome = Attempt::kPermanent;
  permanent.detail = "HTTP 400";
  s.answers = {permanent};
  auto e = make_spooled(s, dir.str());
  REQUIRE(e->spool_append("abc", 3) == AppendStatus::kOk);
  REQUIRE(eventually([&] { return get(e->stats().failed_spans) == 3; }));
  REQUIRE(eventually([&] { return e->spool()->stats().records == 0; }));
}

TEST_CASE("spool mode: several threads append while the exporter reads and acks",
          "[exporter][spool][threads]") {
  // Also run under ThreadSanitizer (exporter_test_tsan): spool_append() on the receivers'
  // threads against the exporter's io thread reading, batching, acking.
  testing::TempDir dir;
  Script s;
  for (int i = 0; i < 6; ++i) {
    s.answers.push_back(retryable(1ms));  // some batches go round the retry loop too
  }
  auto o = options();
  o.max_in_flight = 4;
  auto e = make_spooled(s, dir.str(), o);
  constexpr int kThreads = 4;
  constexpr int kPerThread = 300;
  std::vector<std::thread> appenders;
  std::atomic<int> refused{0};
  for (int t = 0; t < kThreads; ++t) {
    appenders.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        const std::string record = "t" + std::to_string(t) + "-" + std::to_string(i) + ";";
        if (e->spool_append(record, 1) != AppendStatus::kOk) {
          ++refused;
        }
      }
    });
  }
  for (auto& t : appenders) {
    t.join();
  }
  REQUIRE(refused == 0);
  REQUIRE(eventually([&] { return get(e->stats().sent_spans) == kThreads * kPerThread; }, 60s));
  REQUIRE(eventually([&] { return e->spool()->pending_records() == 0 &&
                                  e->spool()->in_flight_records() == 0; }));
  e->shutdown(Clock::now() + 5s);
  CHECK(get(e->spool()->stats().acked_records) == kThreads * kPerThread);
  // Every record delivered exactly once (a failed attempt's payload is not a delivery).
  std::lock_guard lock(s.m);
  std::map<std::string, int> seen;
  for (std::size_t call = 6; call < s.payloads.size(); ++call) {
    const std::string& p = s.payloads[call];
    for (std::size_t at = 0; at < p.size();) {
      const auto end = p.find(';', at);
      REQUIRE(end != std::string::npos);
      ++seen[p.substr(at, end - at)];
      at = end + 1;
    }
  }
  CHECK(seen.size() == static_cast<std::size_t>(kThreads * kPerThread));
  for (const auto& [record, n] : seen) {
    INFO(record);
    CHECK(n == 1);
  }
}

#ifndef SPANRELAY_EXPORTER_TSAN

TEST_CASE("gRPC statuses map to retryable and permanent per OTLP", "[exporter][grpc]") {
  using grpc::StatusCode;
  for (auto code : {StatusCode::CANCELLED, StatusCode::DEADLINE_EXCEEDED, StatusCode::ABORTED,
                    StatusCode::OUT_OF_RANGE, StatusCode::UNAVAILABLE, StatusCode::DATA_LOSS}) {
    REQUIRE(classify_grpc_status(grpc::Status(code, "x")).outcome == Attempt::kRetryable);
  }
  for (auto code : {StatusCode::INVALID_ARGUMENT, StatusCode::UNAUTHENTICATED,
                    StatusCode::PERMISSION_DENIED, StatusCode::UNIMPLEMENTED,
                    StatusCode::INTERNAL, StatusCode::NOT_FOUND, StatusCode::RESOURCE_EXHAUSTED}) {
    REQUIRE(classify_grpc_status(grpc::Status(code, "x")).outcome == Attempt::kPermanent);
  }
  REQUIRE(classify_grpc_status(grpc::Status::OK).outcome == Attempt::kDelivered);

  // RESOURCE_EXHAUSTED with RetryInfo is throttling: retry after the given delay.
  google::rpc::RetryInfo info;
  info.mutable_retry_delay()->set_seconds(2);
  info.mutable_retry_delay()->set_nanos(500000000);
  google::rpc::Status details;
  details.set_code(8);
  auto* any = details.add_details();
  any->set_type_url("type.googleapis.com/google.rpc.RetryInfo");
  any->set_value(info.SerializeAsString());
  auto a = classify_grpc_status(
      grpc::Status(StatusCode::RESOURCE_EXHAUSTED, "slow down", details.SerializeAsString()));
  REQUIRE(a.outcome == Attempt::kRetryable);
  REQUIRE(a.retry_after == std::chrono::milliseconds(2500));
}

// ==== The senders' failure classification and credential refresh, against loopback servers ====

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include <filesystem>
#include <fstream>
#include <functional>
#include <thread>

#include "common/base64.hpp"
#include "exporters/otlp_http/http_sender.hpp"

namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

// An HTTP/1.1 server on 127.0.0.1:<ephemeral> answering each request with the status that
// `respond` picks from its Authorization header; it records those headers. With `silent` it
// reads requests and never answers; with `garbage` it answers anything with a plain-text HTTP
// response and closes (what a TLS client gets from a plain server).
class LoopbackServer {
 public:
  enum Mode { kAnswer, kSilent, kGarbage };
  explicit LoopbackServer(std::function<unsigned(const std::string&)> respond, Mode mode = kAnswer)
      : respond_(std::move(respond)), mode_(mode) {
    acceptor_.open(tcp::v4());
    acceptor_.bind({asio::ip::address_v4::loopback(), 0});
    acceptor_.listen();
    asio::co_spawn(ioc_, accept_loop(), asio::detached);
    thread_ = std::thread([this] { ioc_.run(); });
  }
  ~LoopbackServer() {
    ioc_.stop();
    thread_.join();
  }
  std::uint16_t port() const { return acceptor_.local_endpoint().port(); }
  std::vector<std::string> authorizations() {
    std::lock_guard lock(m_);
    return authorizations_;
  }

 private:
  asio::awaitable<void> accept_loop() {
    for (;;) {
      auto [ec, socket] = co_await acceptor_.async_accept(asio::as_tuple(asio::use_awaitable));
      if (ec) {
        co_return;
      }
      asio::co_spawn(ioc_, serve(std::move(socket)), asio::detached);
    }
  }
  asio::awaitable<void> serve(tcp::socket socket) {
    constexpr auto tuple = asio::as_tuple(asio::use_awaitable);
    beast::flat_buffer buffer;
    if (mode_ == kGarbage) {
      co_await socket.async_read_some(buffer.prepare(4096), tuple);
      const std::string reply = "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n";
      co_await asio::async_write(socket, asio::buffer(reply), tuple);
      co_return;
    }
    for (;;) {
      http::request<http::string_body> req;
      auto [ec, n] = co_await http::async_read(socket, buffer, req, tuple);
      if (ec) {
        co_return;
      }
      const std::string auth(req[http::field::authorization]);
      {
        std::lock_guard lock(m_);
        authorizations_.push_back(auth);
      }
      if (mode_ == kSilent) {
        kept_.push_back(std::move(socket));  // held open, never answered
        co_return;
      }
      http::response<http::string_body> res{static_cast<http::status>(respond_(auth)), 11};
      res.set(http::field::content_type, "text/plain");
      res.body() = "answer from the loopback server";
      res.keep_alive(true);
      res.prepare_payload();
      auto [wec, w] = co_await http::async_write(socket, res, tuple);
      if (wec) {
        co_return;
      }
    }
  }

  asio::io_context ioc_;
  tcp::acceptor acceptor_{ioc_};
  std::function<unsigned(const std::string&)> respond_;
  Mode mode_;
  std::mutex m_;
  std::vector<std::string> authorizations_;
  std::vector<tcp::socket> kept_;
  std::thread thread_;
};

// A loopback port nothing listens on (bound a moment ago, then closed).
std::uint16_t closed_port() {
  asio::io_context ioc;
  tcp::acceptor a(ioc, {asio::ip::address_v4::loopback(), 0});
  return a.local_endpoint().port();
}

config::Exporter http_options(std::uint16_t port, bool tls = false) {
  config::Exporter o;
  o.name = "classify";
  o.type = config::ExporterType::otlp_http;
  o.endpoint.tls = tls;
  o.endpoint.host = "127.0.0.1";
  o.endpoint.port = port;
  o.endpoint.traces_target = "/otlp/v1/traces";
  o.endpoint.text = std::string(tls ? "https" : "http") + "://127.0.0.1:" + std::to_string(port) +
                    "/otlp";
  o.gzip = false;
  o.timeout = 2s;
  o.max_in_flight = 1;
  return o;
}

// One send() of `sender`, run to completion on `ioc` in this thread.
Attempt send_once(asio::io_context& ioc, Sender& sender) {
  std::string payload = "spans";
  std::optional<Attempt> out;
  asio::co_spawn(
      ioc, [&]() -> asio::awaitable<void> { out = co_await sender.send(0, payload); },
      asio::detached);
  ioc.restart();
  ioc.run();
  REQUIRE(out.has_value());
  return *out;
}

std::string basic_of(const std::string& token) {
  return "Basic " + base64_encode("123456:" + token);
}

}  // namespace

TEST_CASE("HttpSender classifies each HTTP answer", "[exporter][http][classify]") {
  struct Case {
    unsigned status;
    Attempt::Outcome outcome;
    FailureClass failure;
  };
  const auto c = GENERATE(values<Case>({
      {200, Attempt::kDelivered, FailureClass::kNone},
      {401, Attempt::kPermanent, FailureClass::kAuth},
      {403, Attempt::kPermanent, FailureClass::kAuth},
      {400, Attempt::kPermanent, FailureClass::kClient},
      {413, Attempt::kPermanent, FailureClass::kClient},
      {429, Attempt::kRetryable, FailureClass::kClient},
      {500, Attempt::kPermanent, FailureClass::kServer},
      {503, Attempt::kRetryable, FailureClass::kServer},
  }));
  LoopbackServer server([&](const std::string&) { return c.status; });
  asio::io_context ioc;
  const auto o = http_options(server.port());
  HttpSender sender(ioc, o);
  const Attempt a = send_once(ioc, sender);
  INFO("HTTP " << c.status << ": " << a.detail);
  CHECK(a.outcome == c.outcome);
  CHECK(a.failure == c.failure);
  CHECK(a.status == static_cast<int>(c.status));
  if (c.status != 200) {
    CHECK_THAT(a.detail, Catch::StartsWith("HTTP " + std::to_string(c.status) + " "));
    CHECK_THAT(a.detail, Catch::Contains("answer from the loopback server"));
  }
  if (c.status == 503) {
    CHECK(a.detail == "HTTP 503 Service Unavailable: answer from the loopback server");
  }
}

TEST_CASE("HttpSender classifies transport failures", "[exporter][http][classify]") {
  asio::io_context ioc;
  SECTION("connection refused") {
    const auto o = http_options(closed_port());
    HttpSender sender(ioc, o);
    const Attempt a = send_once(ioc, sender);
    INFO(a.detail);
    CHECK(a.outcome == Attempt::kRetryable);
    CHECK(a.failure == FailureClass::kConnection);
    CHECK(a.status == 0);
    CHECK_THAT(a.detail, Catch::Contains("refused"));
  }
  SECTION("no answer within the timeout") {
    LoopbackServer server([](const std::string&) { return 200u; }, LoopbackServer::kSilent);
    auto o = http_options(server.port());
    o.timeout = 300ms;
    HttpSender sender(ioc, o);
    const auto start = Clock::now();
    const Attempt a = send_once(ioc, sender);
    INFO(a.detail);
    CHECK(Clock::now() - start < 5s);
    CHECK(a.outcome == Attempt::kRetryable);
    CHECK(a.failure == FailureClass::kTimeout);
    CHECK(a.status == 0);
    CHECK_THAT(a.detail, Catch::StartsWith("timeout after 300ms"));
  }
  SECTION("TLS to a server that does not speak it") {
    LoopbackServer server([](const std::string&) { return 200u; }, LoopbackServer::kGarbage);
    const auto o = http_options(server.port(), true);
    HttpSender sender(ioc, o);
    const Attempt a = send_once(ioc, sender);
    INFO(a.detail);
    CHECK(a.outcome == Attempt::kRetryable);
    CHECK(a.failure == FailureClass::kTls);
    CHECK_THAT(a.detail, Catch::StartsWith("TLS handshake with 127.0.0.1:"));
  }
}

TEST_CASE("HttpSender: after a 401, refresh_credentials() takes the rotated password_file",
          "[exporter][http][credentials]") {
  testing::TempDir dir;
  const auto token = dir.path() / "token";
  const auto write = [&](const std::string& content) {
    const auto tmp = dir.path() / "token.tmp";
    std::ofstream(tmp) << content;
    std::filesystem::rename(tmp, token);
  };
  write("tokenA\n");
  std::atomic<bool> accept_b{false};
  LoopbackServer server([&](const std::string& auth) {
    return auth == basic_of(accept_b ? "tokenB" : "tokenA") ? 200u : 401u;
  });
  auto o = http_options(server.port());
  o.auth.enabled = true;
  o.auth.username = "123456";
  o.auth.password = "tokenA";
  o.auth.password_source = "file " + token.string();
  o.auth.password_file = token.string();
  asio::io_context ioc;
  HttpSender sender(ioc, o);
  CHECK(sender.describe().find("tokenA") == std::string::npos);

  CHECK(send_once(ioc, sender).outcome == Attempt::kDelivered);
  accept_b = true;  // the upstream has the new token, the agent not yet
  const Attempt refused = send_once(ioc, sender);
  CHECK(refused.failure == FailureClass::kAuth);
  CHECK(refused.status == 401);
  CHECK(refused.outcome == Attempt::kPermanent);
  CHECK_FALSE(sender.refresh_credentials(0));  // the file has not changed

  write("tokenB\n");
  CHECK(sender.refresh_credentials(0));
  CHECK(sender.refresh_credentials(0));  // still: slot 0's last request carried the old one
  const Attempt retried = send_once(ioc, sender);
  CHECK(retried.outcome == Attempt::kDelivered);
  CHECK(retried.status == 200);
  const auto seen = server.authorizations();
  REQUIRE(seen.size() == 3);
  CHECK(seen[0] == basic_of("tokenA"));
  CHECK(seen[1] == basic_of("tokenA"));
  CHECK(seen[2] == basic_of("tokenB"));
  CHECK(refused.detail.find(base64_encode("123456:tokenA")) == std::string::npos);
}

TEST_CASE("gRPC statuses map to failure classes", "[exporter][grpc][classify]") {
  using grpc::StatusCode;
  const auto class_of = [](StatusCode code, const std::string& message = "x") {
    return classify_grpc_status(grpc::Status(code, message)).failure;
  };
  CHECK(class_of(StatusCode::UNAUTHENTICATED) == FailureClass::kAuth);
  CHECK(class_of(StatusCode::PERMISSION_DENIED) == FailureClass::kAuth);
  CHECK(class_of(StatusCode::DEADLINE_EXCEEDED) == FailureClass::kTimeout);
  for (auto code : {StatusCode::INVALID_ARGUMENT, StatusCode::NOT_FOUND,
                    StatusCode::RESOURCE_EXHAUSTED, StatusCode::FAILED_PRECONDITION,
                    StatusCode::OUT_OF_RANGE, StatusCode::UNIMPLEMENTED,
                    StatusCode::ALREADY_EXISTS, StatusCode::ABORTED}) {
    INFO("code " << code);
    CHECK(class_of(code) == FailureClass::kClient);
  }
  for (auto code : {StatusCode::INTERNAL, StatusCode::UNKNOWN, StatusCode::DATA_LOSS,
                    StatusCode::CANCELLED}) {
    INFO("code " << code);
    CHECK(class_of(code) == FailureClass::kServer);
  }
  // UNAVAILABLE: the client's transport names its failures; a server's is 5xx.
  CHECK(class_of(StatusCode::UNAVAILABLE, "server is shutting down") == FailureClass::kServer);
  CHECK(class_of(StatusCode::UNAVAILABLE,
                 "failed to connect to all addresses; last error: UNKNOWN: "
                 "ipv4:127.0.0.1:9: Failed to connect to remote host: Connection refused") ==
        FailureClass::kConnection);
  CHECK(class_of(StatusCode::UNAVAILABLE, "Socket closed") == FailureClass::kConnection);
  CHECK(class_of(StatusCode::UNAVAILABLE,
                 "failed to connect to all addresses; last error: UNKNOWN: ipv4:127.0.0.1:9: "
                 "Ssl handshake failed: SSL_ERROR_SSL: CERTIFICATE_VERIFY_FAILED") ==
        FailureClass::kTls);

  const Attempt a = classify_grpc_status(grpc::Status(StatusCode::UNAVAILABLE, "overloaded"));
  CHECK(a.status == 14);
  CHECK(a.detail == "gRPC UNAVAILABLE: overloaded");
  CHECK(classify_grpc_status(grpc::Status::OK).failure == FailureClass::kNone);
  CHECK(std::string(failure_class_name(FailureClass::kAuth)) == "auth");
  CHECK(std::string(failure_class_name(FailureClass::kClient)) == "4xx");
  CHECK(std::string(failure_class_name(FailureClass::kServer)) == "5xx");
  CHECK(std::string(failure_class_name(FailureClass::kTimeout)) == "timeout");
  CHECK(std::string(failure_class_name(FailureClass::kConnection)) == "connection");
  CHECK(std::string(failure_class_name(FailureClass::kTls)) == "tls");
  CHECK(std::string(failure_class_name(FailureClass::kNone)) == "none");
}

TEST_CASE("GrpcSender classifies a refused connection and a failed TLS handshake",
          "[exporter][grpc][classify]") {
  asio::io_context ioc;
  SECTION("connection refused") {
    auto o = http_options(closed_port());
    o.type = config::ExporterType::otlp_grpc;
    GrpcSender sender(ioc, o);
    const Attempt a = send_once(ioc, sender);
    INFO(a.detail);
    CHECK(a.outcome == Attempt::kRetryable);
    CHECK(a.failure == FailureClass::kConnection);
    CHECK(a.status == 14);
    CHECK_THAT(a.detail, Catch::StartsWith("gRPC UNAVAILABLE: "));
  }
  SECTION("TLS to a server that does not speak it") {
    LoopbackServer server([](const std::string&) { return 200u; }, LoopbackServer::kGarbage);
    auto o = http_options(server.port(), true);
    o.type = config::ExporterType::otlp_grpc;
    GrpcSender sender(ioc, o);
    const Attempt a = send_once(ioc, sender);
    INFO(a.detail);
    CHECK(a.outcome == Attempt::kRetryable);
    CHECK(a.failure == FailureClass::kTls);
  }
}

#endif  // SPANRELAY_EXPORTER_TSAN
