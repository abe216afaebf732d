// The batcher: flush triggers (spans, bytes, timeout), merging without decode, splitting,
// budget accounting and the final drain.
#include <catch2/catch.hpp>

#include <condition_variable>
#include <mutex>
#include <set>

#include "batcher/batcher.hpp"
#include "otlp/wire.hpp"
#include "unit/otlp_builders.hpp"

using namespace spanrelay;
using namespace std::chrono_literals;
using testing::ExportTraceServiceRequest;
using testing::make_request;
using testing::span_ids;

namespace {

// Collects batches handed to the sink; lets a test await a condition.
struct Collector {
  std::mutex m;
  std::condition_variable cv;
  std::vector<BatchPtr> batches;

  void operator()(BatchPtr b) {
    std::lock_guard lock(m);
    batches.push_back(std::move(b));
    cv.notify_all();
  }
  std::size_t spans() {
    std::size_t n = 0;
    for (auto& b : batches) {
      n += b->spans;
    }
    return n;
  }
  bool wait_spans(std::size_t n, std::chrono::milliseconds timeout) {
    std::unique_lock lock(m);
    return cv.wait_for(lock, timeout, [&] { return spans() >= n; });
  }
};

struct Fixture {
  MemoryBudget budget{64 << 20};
  Ring<Chunk> ring{1024};
  BatcherStats stats;
  Collector collector;
  std::unique_ptr<Batcher> batcher;

  explicit Fixture(config::Batch options) {
    batcher = std::make_unique<Batcher>(
        ring, options, [this](BatchPtr b) { collector(std::move(b)); }, stats);
    batcher->start();
  }
  void push(const ExportTraceServiceRequest& req) {
    std::string bytes = req.SerializeAsString();
    REQUIRE(budget.try_reserve(bytes.size()));
    const std::size_t size = bytes.size();
    Chunk c{std::move(bytes), otlp::count_spans(req.SerializeAsString()),
            BudgetLease(&budget, size)};
    REQUIRE(ring.try_push(c));
    batcher->notify();
  }
};

}  // namespace

TEST_CASE("batcher flushes when max_spans is reached", "[batcher]") {
  Fixture f({.max_spans = 10, .max_bytes = 4 << 20, .timeout = 1h});
  for (int i = 0; i < 5; ++i) {
    f.push(make_request(1, 1, 2, i));
  }
  REQUIRE(f.collector.wait_spans(10, 10s));
  std::lock_guard lock(f.collector.m);
  REQUIRE(f.collector.batches.size() == 1);
  ExportTraceServiceRequest merged;
  REQUIRE(merged.ParseFromString(f.collector.batches[0]->bytes));
  REQUIRE(merged.resource_spans_size() == 5);  // merged by concatenation
}

TEST_CASE("batcher flushes a partial batch after the timeout", "[batcher]") {
  Fixture f({.max_spans = 1000, .max_bytes = 4 << 20, .timeout = 50ms});
  f.push(make_request(1, 1, 3));
  REQUIRE(f.collector.wait_spans(3, 10s));
}

TEST_CASE("batcher keeps batches under max_bytes and splits big requests", "[batcher]") {
  Fixture f({.max_spans = 100000, .max_bytes = 2048, .timeout = 20ms});
  f.push(make_request(1, 2, 50, 3, 100));  // far larger than 2 KiB
  f.push(make_request(1, 1, 1, 4));
  REQUIRE(f.collector.wait_spans(101, 10s));
  std::lock_guard lock(f.collector.m);
  REQUIRE(f.collector.batches.size() > 2);
  for (auto& b : f.collector.batches) {
    REQUIRE(b->bytes.size() <= 2048);
    REQUIRE(otlp::count_spans(b->bytes) == b->spans);
  }
  REQUIRE(get(f.stats.splits) == 1);
}

TEST_CASE("budget is released when the last holder drops a batch", "[batcher]") {
  Fixture f({.max_spans = 5, .max_bytes = 4 << 20, .timeout = 1h});
  f.push(make_request(1, 1, 5));
  REQUIRE(f.collector.wait_spans(5, 10s));
  REQUIRE(f.budget.used() > 0);  // held by the batch the collector keeps
  {
    std::lock_guard lock(f.collector.m);
    f.collector.batches.clear();
  }
  REQUIRE(f.budget.used() == 0);
}

TEST_CASE("stop drains the ring and flushes the pending batch", "[batcher]") {
  Fixture f({.max_spans = 100000, .max_bytes = 4 << 20, .timeout = 1h});
  for (int i = 0; i < 20; ++i) {
    f.push(make_request(1, 1, 1, i));
  }
  f.batcher->stop();
  REQUIRE(f.collector.spans() == 20);
  REQUIRE(f.ring.empty());
}

// ---- reload (reconfigure) and the watchdog's view (stalled) ----

namespace {

// Every span id in the batches (each test request has distinct ids), with duplicates.
std::multiset<std::string> span_ids(const std::vector<BatchPtr>& batches) {
  std::multiset<std::string> ids;
  for (const auto& b : batches) {
    ExportTraceServiceRequest req;
    if (!req.ParseFromString(b->bytes)) {
      ids.insert("<unparsable batch>");
      continue;
    }
    for (const auto& rs : req.resource_spans()) {
      for (const auto& ss : rs.scope_spans()) {
        for (const auto& s : ss.spans()) {
          ids.insert(s.span_id());
        }
      }
    }
  }
  return ids;
}

// Polls `done` until it holds or the deadline passes (for state no callback announces).
template <typename Pred>
bool eventually(Pred done, std::chrono::milliseconds timeout = 10s) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!done()) {
    if (std::chrono::steady_clock::now() > deadline) {
      return false;
    }
    std::this_thread::sleep_for(1ms);
  }
  return true;
}

std::size_t batch_count(Collector& c) {
  std::lock_guard lock(c.m);
  return c.batches.size();
}

}  // namespace

TEST_CASE("batcher reconfigure flushes the pending batch and later batches follow the new limits",
          "[batcher][reload]") {
  Fixture f({.max_spans = 100, .max_bytes = 4 << 20, .timeout = 1h});
  std::multiset<std::string> expected;
  for (int i = 0; i < 3; ++i) {
    const auto req = make_request(1, 1, 1, 100 + i);
    expected.merge(span_ids(req));
    f.push(req);
  }
  // The three chunks left the ring: they wait in the batch being built (timeout 1 h).
  REQUIRE(eventually([&] { return f.ring.empty(); }));
  REQUIRE(batch_count(f.collector) == 0);

  f.batcher->reconfigure({.max_spans = 2, .max_bytes = 4 << 20, .timeout = 1h});
  // Nothing else would flush it for an hour.
  REQUIRE(f.collector.wait_spans(3, 10s));
  {
    std::lock_guard lock(f.collector.m);
    REQUIRE(f.collector.batches.size() == 1);
    REQUIRE(f.collector.batches[0]->spans == 3);  // built under the old limits, sent as is
  }

  for (int i = 0; i < 10; ++i) {
    const auto req = make_request(1, 1, 1, 200 + i);
    expected.merge(span_ids(req));
    f.push(req);
  }
  REQUIRE(f.collector.wait_spans(13, 10s));  // 5 full batches of the new size: no timeout needed
  f.batcher->stop();
  std::lock_guard lock(f.collector.m);
  REQUIRE(f.collector.batches.size() == 6);
  for (std::size_t i = 1; i < f.collector.batches.size(); ++i) {
    INFO("batch " << i);
    REQUIRE(f.collector.batches[i]->spans == 2);
    REQUIRE(otlp::count_spans(f.collector.batches[i]->bytes) == 2);
  }
  REQUIRE(span_ids(f.collector.batches) == expected);  // nothing lost, nothing twice
  REQUIRE(get(f.stats.spans) == 13);
  REQUIRE(get(f.stats.batches) == 6);
}

TEST_CASE("batcher reconfigure with nothing pending emits nothing and applies the new limits",
          "[batcher][reload]") {
  Fixture f({.max_spans = 100, .max_bytes = 4 << 20, .timeout = 1h});
  f.batcher->reconfigure({.max_spans = 3, .max_bytes = 4 << 20, .timeout = 1h});
  // Three single-span requests make one full batch under the new limit, at once.
  for (int i = 0; i < 3; ++i) {
    f.push(make_request(1, 1, 1, 300 + i));
  }
  REQUIRE(f.collector.wait_spans(3, 10s));
  std::lock_guard lock(f.collector.m);
  REQUIRE(f.collector.batches.size() == 1);
  REQUIRE(f.collector.batches[0]->spans == 3);
}

TEST_CASE("batcher reconfigure changes the flush timeout", "[batcher][reload]") {
  Fixture f({.max_spans = 1000, .max_bytes = 4 << 20, .timeout = 1h});
  f.batcher->reconfigure({.max_spans = 1000, .max_bytes = 4 << 20, .timeout = 20ms});
  f.push(make_request(1, 1, 2, 400));
  // Under the old timeout this partial batch would wait an hour.
  REQUIRE(f.collector.wait_spans(2, 10s));
}

TEST_CASE("batcher reconfigure to a smaller max_bytes splits later requests to fit",
          "[batcher][reload]") {
  Fixture f({.max_spans = 100000, .max_bytes = 4 << 20, .timeout = 1h});
  f.batcher->reconfigure({.max_spans = 100000, .max_bytes = 2048, .timeout = 1h});
  const auto big = make_request(1, 2, 50, 500, 100);  // far larger than 2 KiB
  f.push(big);
  REQUIRE(f.collector.wait_spans(100, 10s));
  f.batcher->stop();
  std::lock_guard lock(f.collector.m);
  REQUIRE(f.collector.batches.size() > 2);
  for (auto& b : f.collector.batches) {
    REQUIRE(b->bytes.size() <= 2048);
  }
  REQUIRE(span_ids(f.collector.batches) == span_ids(big));
}

TEST_CASE("batcher reconfigure under continuous load takes effect and loses nothing",
          "[batcher][reload]") {
  // Single-span requests; the old limit is 50, the new 5. Batches built under the old limit
  // are full (50, the timeout is an hour) except the one the reconfigure flushes; every batch
  // after that one follows the new limit. The second half is pushed after reconfigure()
  // returned, without pause: the new limit must not wait for a lull in the traffic (the ring
  // to run empty). At most one batch above the new limit may hold spans of the second half:
  // the one being built when the batcher noticed the reconfigure.
  constexpr int kBefore = 1500;
  constexpr int kAfter = 1500;
  Fixture f({.max_spans = 50, .max_bytes = 4 << 20, .timeout = 1h});
  std::vector<std::string> payloads;
  std::multiset<std::string> expected;
  for (int i = 0; i < kBefore + kAfter + 10; ++i) {
    const auto req = make_request(1, 1, 1, 1000 + static_cast<std::uint64_t>(i));
    expected.merge(span_ids(req));
    payloads.push_back(req.SerializeAsString());
  }
  // No Catch assertions off the main thread: the producer reports through atomics.
  std::atomic<int> pushed{0};
  std::atomic<bool> producer_failed{false};
  std::atomic<bool> go_on{false};
  auto push_one = [&](int i) {
    const std::string& bytes = payloads[static_cast<std::size_t>(i)];
    if (!f.budget.try_reserve(bytes.size())) {
      producer_failed = true;
      return;
    }
    Chunk c{bytes, 1, BudgetLease(&f.budget, bytes.size())};
    const auto deadline = std::chrono::steady_clock::now() + 10s;
    while (!f.ring.try_push(c)) {  // full: the batcher is behind
      if (std::chrono::steady_clock::now() > deadline) {
        producer_failed = true;
        return;
      }
      std::this_thread::yield();
    }
    f.batcher->notify();
    pushed.fetch_add(1);
  };
  std::thread producer([&] {
    for (int i = 0; i < kBefore; ++i) {
      push_one(i);
    }
    while (!go_on.load()) {
      std::this_thread::yield();
    }
    for (int i = kBefore; i < kBefore + kAfter; ++i) {
      push_one(i);
    }
  });
  // Reconfigure while the first half is flowing.
  REQUIRE(f.collector.wait_spans(200, 10s));
  f.batcher->reconfigure({.max_spans = 5, .max_bytes = 4 << 20, .timeout = 1h});
  go_on = true;
  producer.join();
  REQUIRE_FALSE(producer_failed.load());
  REQUIRE(pushed.load() == kBefore + kAfter);
  // Ten more, one at a time once the ring is empty, so that the batcher has come round to the
  // new limits before the last of them.
  for (int i = kBefore + kAfter; i < kBefore + kAfter + 10; ++i) {
    REQUIRE(eventually([&] { return f.ring.empty(); }));
    push_one(i);
  }
  REQUIRE_FALSE(producer_failed.load());
  f.batcher->stop();

  std::lock_guard lock(f.collector.m);
  const auto& batches = f.collector.batches;
  REQUIRE(span_ids(batches) == expected);
  // The first batch that is not a full old one: from there on, nothing above the new limit.
  std::size_t first_other = 0;
  while (first_other < batches.size() && batches[first_other]->spans == 50) {
    ++first_other;
  }
  REQUIRE(first_other >= 4);  // 200 spans went out before the reconfigure
  std::size_t new_size = 0;
  for (std::size_t i = first_other + 1; i < batches.size(); ++i) {
    INFO("batch " << i << " of " << batches.size() << "; first not full: " << first_other);
    REQUIRE(batches[i]->spans <= 5);
    ++new_size;
  }
  REQUIRE(new_size >= 1);

  std::set<std::string> second_half;
  for (int i = kBefore; i < kBefore + kAfter; ++i) {
    ExportTraceServiceRequest req;
    REQUIRE(req.ParseFromString(payloads[static_cast<std::size_t>(i)]));
    for (const auto& id : span_ids(req)) {
      second_half.insert(id);
    }
  }
  std::size_t old_size_with_second_half = 0;
  std::size_t second_half_spans_in_old_batches = 0;
  for (const auto& b : batches) {
    if (b->spans <= 5) {
      continue;
    }
    std::size_t n = 0;
    for (const auto& id : span_ids(std::vector<BatchPtr>{b})) {
      n += second_half.count(id);
    }
    if (n > 0) {
      ++old_size_with_second_half;
      second_half_spans_in_old_batches += n;
    }
  }
  INFO(second_half_spans_in_old_batches << " of the " << kAfter
                                        << " spans pushed after reconfigure() returned went out "
                                           "in "
                                        << old_size_with_second_half
                                        << " batches above the new limit");
  REQUIRE(old_size_with_second_half <= 1);
}

TEST_CASE("batcher is not stalled when idle, before start, or keeping up", "[batcher][watchdog]") {
  MemoryBudget budget{64 << 20};
  Ring<Chunk> ring{1024};
  BatcherStats stats;
  Collector collector;
  Batcher b(ring, {.max_spans = 10, .max_bytes = 4 << 20, .timeout = 10ms},
            [&](BatchPtr batch) { collector(std::move(batch)); }, stats);
  const auto far_future = std::chrono::steady_clock::now() + 24h;
  REQUIRE_FALSE(b.stalled(far_future, 1ms));  // not started
  b.start();
  REQUIRE_FALSE(b.stalled(far_future, 1ms));  // idle: the ring is empty

  auto push = [&](int i) {
    std::string bytes = make_request(1, 1, 1, static_cast<std::uint64_t>(i)).SerializeAsString();
    REQUIRE(budget.try_reserve(bytes.size()));
    const std::size_t size = bytes.size();
    Chunk c{std::move(bytes), 1, BudgetLease(&budget, size)};
    REQUIRE(ring.try_push(c));
    b.notify();
  };
  // One batch through first, so that the thread has surely come round once.
  push(0);
  REQUIRE(collector.wait_spans(1, 10s));

  // Keeping up with a steady flow: never stalled by a real clock.
  for (int i = 1; i < 300; ++i) {
    push(i);
    REQUIRE_FALSE(b.stalled(std::chrono::steady_clock::now(), 5s));
  }
  REQUIRE(collector.wait_spans(300, 10s));
  REQUIRE(eventually([&] { return ring.empty(); }));
  REQUIRE_FALSE(b.stalled(far_future, 1ms));  // idle again
  b.stop();
  REQUIRE_FALSE(b.stalled(far_future, 1ms));  // stopped
}

TEST_CASE("batcher is stalled when chunks wait while its thread is stuck", "[batcher][watchdog]") {
  MemoryBudget budget{64 << 20};
  Ring<Chunk> ring{1024};
  BatcherStats stats;
  std::mutex m;
  std::condition_variable cv;
  bool in_sink = false;
  bool release = false;
  std::size_t delivered = 0;
  // A sink that blocks (it must not, in production): the batcher thread is stuck in it.
  Batcher b(
      ring, {.max_spans = 1, .max_bytes = 4 << 20, .timeout = 1h},
      [&](BatchPtr) {
        std::unique_lock lock(m);
        in_sink = true;
        cv.notify_all();
        cv.wait(lock, [&] { return release; });
        ++delivered;
        cv.notify_all();
      },
      stats);
  // Whatever happens below, the sink is released before the batcher is stopped and joined.
  struct Release {
    std::mutex& m;
    std::condition_variable& cv;
    bool& release;
    ~Release() {
      {
        std::lock_guard lock(m);
        release = true;
      }
      cv.notify_all();
    }
  } release_at_exit{m, cv, release};
  b.start();
  auto push = [&](std::uint64_t seed) {
    std::string bytes = make_request(1, 1, 1, seed).SerializeAsString();
    REQUIRE(budget.try_reserve(bytes.size()));
    const std::size_t size = bytes.size();
    Chunk c{std::move(bytes), 1, BudgetLease(&budget, size)};
    REQUIRE(ring.try_push(c));
    b.notify();
  };
  push(1);
  {
    std::unique_lock lock(m);
    REQUIRE(cv.wait_for(lock, 10s, [&] { return in_sink; }));
  }
  push(2);  // waits in the ring: the thread is in the sink
  const auto now = std::chrono::steady_clock::now();
  REQUIRE_FALSE(b.stalled(now, 1h));          // not for long enough yet
  REQUIRE(b.stalled(now + 10min, 1s));        // ten minutes later it would be
  {
    std::lock_guard lock(m);
    release = true;
  }
  cv.notify_all();
  {
    std::unique_lock lock(m);
    REQUIRE(cv.wait_for(lock, 10s, [&] { return delivered == 2; }));
  }
  REQUIRE(eventually([&] { return ring.empty(); }));
  REQUIRE_FALSE(b.stalled(now + 10min, 1s));  // came round, nothing waits
  b.stop();
}
