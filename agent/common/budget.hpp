#pragma once
// One byte budget across everything the agent holds in memory (ring, batches, exports in flight).
// Receivers reserve before they enqueue; the bytes come back when the last holder lets go.

#include <atomic>
#include <cstddef>
#include <utility>

namespace spanrelay {

// Thread-safe; lock-free.
class MemoryBudget {
 public:
  explicit MemoryBudget(std::size_t limit) noexcept : limit_(limit) {}

  // Reserves n bytes if they fit under the limit. Never blocks.
  bool try_reserve(std::size_t n) noexcept {
    std::size_t used = used_.load(std::memory_order_relaxed);
    do {
      if (n > limit_ || used > limit_ - n) {
        return false;
      }
    } while (!used_.compare_exchange_weak(used, used + n, std::memory_order_acq_rel,
                                          std::memory_order_relaxed));
    return true;
  }
  // Reserves n bytes even past the limit: for data already accepted that must move (a batch
  // read back from the disk spool). Receivers then see the budget full and refuse.
  void reserve_unchecked(std::size_t n) noexcept { used_.fetch_add(n, std::memory_order_acq_rel); }
  void release(std::size_t n) noexcept { used_.fetch_sub(n, std::memory_order_acq_rel); }

  std::size_t used() const noexcept { return used_.load(std::memory_order_relaxed); }
  std::size_t limit() const noexcept { return limit_; }

 private:
  const std::size_t limit_;
  std::atomic<std::size_t> used_{0};
};

// Move-only ownership of reserved bytes; releases them on destruction.
class BudgetLease {
 public:
  BudgetLease() noexcept = default;
  BudgetLease(MemoryBudget* budget, std::size_t bytes) noexcept : budget_(budget), bytes_(bytes) {}
  BudgetLease(BudgetLease&& o) noexcept
      : budget_(std::exchange(o.budget_, nullptr)), bytes_(std::exchange(o.bytes_, 0)) {}
  BudgetLease& operator=(BudgetLease&& o) noexcept {
    if (this != &o) {
      reset();
      budget_ = std::exchange(o.budget_, nullptr);
      bytes_ = std::exchange(o.bytes_, 0);
    }
    return *this;
  }
  BudgetLease(const BudgetLease&) = delete;
  BudgetLease& operator=(const BudgetLease&) = delete;
  ~BudgetLease() { reset(); }

  // Takes over another lease's bytes (same budget), e.g. when chunks merge into a batch.
  void absorb(BudgetLease&& o) noexcept {
    if (budget_ == nullptr) {
      budget_ = o.budget_;
    }
    bytes_ += std::exchange(o.bytes_, 0);
    o.budget_ = nullptr;
  }
  // Moves up to n of this lease's bytes into a new lease (for pieces of a split chunk).
  BudgetLease split_off(std::size_t n) noexcept {
    const std::size_t take = n < bytes_ ? n : bytes_;
    bytes_ -= take;
    return BudgetLease(budget_, take);
  }
  void reset() noexcept {
    if (budget_ != nullptr && bytes_ != 0) {
      budget_->release(bytes_);
    }
    budget_ = nullptr;
    bytes_ = 0;
  }
  std::size_t bytes() const noexcept { return bytes_; }

 private:
  MemoryBudget* budget_ = nullptr;
  std::size_t bytes_ = 0;
};

}  // namespace spanrelay
