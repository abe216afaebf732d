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
