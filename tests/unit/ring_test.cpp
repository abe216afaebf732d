// The ring under many concurrent producers and consumers. Also built with ThreadSanitizer
// (ring_test_tsan) in every build.
#include <catch2/catch.hpp>

#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "ring/ring.hpp"

using spanrelay::Ring;

TEST_CASE("ring rounds capacity up and reports full and empty", "[ring]") {
  Ring<int> ring(5);
  REQUIRE(ring.capacity() == 8);
  REQUIRE(ring.empty());
  for (int i = 0; i < 8; ++i) {
    int v = i;
    REQUIRE(ring.try_push(v));
  }
  int extra = 99;
  REQUIRE_FALSE(ring.try_push(extra));
  REQUIRE(extra == 99);  // a refused value is left untouched
  for (int i = 0; i < 8; ++i) {
    auto v = ring.try_pop();
    REQUIRE(v.has_value());
    REQUIRE(*v == i);  // FIFO
  }
  REQUIRE_FALSE(ring.try_pop().has_value());
}

TEST_CASE("ring moves values in and out without copies", "[ring]") {
  Ring<std::string> ring(4);
  std::string s(1000, 'x');
  const char* data = s.data();
  REQUIRE(ring.try_push(s));
  auto out = ring.try_pop();
  REQUIRE(out.has_value());
  REQUIRE(out->data() == data);
}

TEST_CASE("ring wraps around many times", "[ring]") {
  Ring<std::size_t> ring(4);
  for (std::size_t i = 0; i < 10000; ++i) {
    std::size_t v = i;
    REQUIRE(ring.try_push(v));
    REQUIRE(ring.try_pop().value() == i);
  }
}

TEST_CASE("ring keeps every element exactly once under concurrent producers", "[ring][mt]") {
  constexpr int kProducers = 8;
  constexpr int kPerProducer = 20000;
  Ring<std::uint64_t> ring(256);
  std::atomic<int> refused{0};
  std::atomic<bool> producers_done{false};
  std::vector<int> seen(kProducers * kPerProducer, 0);
  std::vector<std::uint64_t> last_of_producer(kProducers, 0);
  bool order_ok = true;

  std::thread consumer([&] {
    std::size_t got = 0;
    while (got < seen.size()) {
      if (auto v = ring.try_pop()) {
        const auto producer = *v >> 32;
        const auto seq = *v & 0xffffffffu;
        // Per producer, elements come out in the order they went in.
        if (seq + 1 <= last_of_producer[producer]) {
          order_ok = false;
        }
        last_of_producer[producer] = seq + 1;
        ++seen[producer * kPerProducer + seq];
        ++got;
      } else if (producers_done.load()) {
        if (ring.empty()) {
          break;
        }
      } else {
        std::this_thread::yield();
      }
    }
  });
  std::vector<std::thread> producers;
  for (int p = 0; p < kProducers; ++p) {
    producers.emplace_back([&, p] {
      for (int i = 0; i < kPerProducer; ++i) {
        std::uint64_t v = (static_cast<std::uint64_t>(p) << 32) | static_cast<std::uint32_t>(i);
        while (!ring.try_push(v)) {  // the test retries; real receivers answer 429 instead
          refused.fetch_add(1, std::memory_order_relaxed);
          std::this_thread::yield();
        }
      }
    });
  }
  for (auto& t : producers) {
    t.join();
  }
  producers_done.store(true);
  consumer.join();
  REQUIRE(order_ok);
  for (std::size_t i = 0; i < seen.size(); ++i) {
    REQUIRE(seen[i] == 1);
  }
}

TEST_CASE("ring with several consumers hands out each element once", "[ring][mt]") {
  constexpr int kItems = 50000;
  Ring<int> ring(64);
  std::vector<std::atomic<int>> seen(kItems);
  std::atomic<int> consumed{0};
  std::vector<std::thread> threads;
  for (int c = 0; c < 3; ++c) {
    threads.emplace_back([&] {
      while (consumed.load() < kItems) {
        if (auto v = ring.try_pop()) {
          seen[*v].fetch_add(1);
          consumed.fetch_add(1);
        } else {
          std::this_thread::yield();
        }
      }
    });
  }
  for (int p = 0; p < 3; ++p) {
    threads.emplace_back([&, p] {
      for (int i = p; i < kItems; i += 3) {
        int v = i;
        while (!ring.try_push(v)) {
          std::this_thread::yield();
        }
      }
    });
  }
  for (auto& t : threads) {
    t.join();
  }
  for (int i = 0; i < kItems; ++i) {
    REQUIRE(seen[i].load() == 1);
  }
}
