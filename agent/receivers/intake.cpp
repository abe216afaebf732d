#include "receivers/intake.hpp"

#include <thread>

#include "otlp/wire.hpp"

namespace spanrelay {

Intake::Intake(Ring<Chunk>& ring, MemoryBudget& budget, ReceiverStats& stats,
               std::function<void()> notify_consumer)
    : ring_(ring), budget_(budget), stats_(stats), notify_(std::move(notify_consumer)),
      log_(logger("intake")) {}

std::shared_ptr<const Intake::Route> Intake::set_route(Route route) {
  return route_.exchange(std::make_shared<const Route>(std::move(route)));
}

IntakeResult Intake::submit(std::string&& request) noexcept {
  IntakeResult r;
  // Counted in-progress before the closed check, so close() can wait for us.
  in_progress_.fetch_add(1, std::memory_order_seq_cst);
  struct Done {
    std::atomic<int>& n;
    ~Done() { n.fetch_sub(1, std::memory_order_seq_cst); }
  } done{in_progress_};
  if (closed_.load(std::memory_order_seq_cst)) {
    r.status = IntakeStatus::kShuttingDown;
    add(stats_.unavailable);
    return r;
  }
  try {
    // Reserve before any work: under overload the CPU is better spent delivering than
    // validating requests that will be refused anyway.
    BudgetLease lease;
    if (budget_.try_reserve(request.size())) {
      lease = BudgetLease(&budget_, request.size());
    } else {
      return refuse(otlp::count_spans(request));
    }
    otlp::ScanResult scan = otlp::scan_request(request);
    if (!scan.ok) {
      r.status = IntakeStatus::kInvalid;
      r.error = std::move(scan.error);
      add(stats_.bad_requests);
      return r;
    }
    if (scan.invalid_spans > 0) {
      request = otlp::drop_invalid_spans(request);
      lease.split_off(lease.bytes() - request.size());  // the shrunk part goes back at once
      r.rejected_spans = scan.invalid_spans;
      r.error = std::to_string(scan.invalid_spans) +
                " span(s) rejected: trace id must be 16 bytes and span id 8 bytes, not all zero";
      add(stats_.rejected_spans, scan.invalid_spans);
    }
    std::uint32_t spans = scan.spans - scan.invalid_spans;
    r.status = IntakeStatus::kAccepted;
    if (spans == 0) {
      return r;  // nothing to forward (an empty request is a valid one)
    }
    const std::shared_ptr<const Route> route = route_.load();
    if (route->processors && !route->processors->empty()) {
      // Before anything is persisted or buffered: nothing redacted reaches the disk. Spans a
      // processor drops (filter, sampler) are counted by the processor, and acknowledged.
      spans = route->processors->run(request, spans);
      if (request.size() < lease.bytes()) {
        lease.split_off(lease.bytes() - request.size());
      } else if (request.size() > lease.bytes()) {
        const std::size_t more = request.size() - lease.bytes();
        if (!budget_.try_reserve(more)) {
          return refuse(spans);
        }
        lease.absorb(BudgetLease(&budget_, more));
      }
      if (spans == 0) {
        return r;
      }
    }
    if (route->persist) {
      const IntakeStatus persisted = route->persist(request, spans);
      if (persisted == IntakeStatus::kFull) {
        add(stats_.refused_spans, spans);  // the spool logged why
        last_spool_full_.store(std::chrono::steady_clock::now().time_since_epoch().count(),
                               std::memory_order_relaxed);
        r.status = IntakeStatus::kFull;
        return r;
      }
      if (persisted == IntakeStatus::kTooLarge) {
        add(stats_.bad_requests);
        r.status = persisted;
        r.error = "the request is larger than the disk spool can hold (spool.max_bytes)";
        return r;
      }
    }
    if (route->forward_to_ring) {
      Chunk chunk{std::move(request), spans, std::move(lease)};
      if (!ring_.try_push(chunk)) {
        return refuse(spans);
      }
      notify_();
    }
    r.accepted_spans = spans;
    add(stats_.accepted_spans, spans);
    return r;
  } catch (const std::exception& e) {
    r.status = IntakeStatus::kFull;  // allocation failure: the client may retry
    r.error = e.what();
    return r;
  }
}

IntakeResult Intake::refuse(std::uint32_t spans) noexcept {
  add(stats_.refused_spans, spans);
  last_full_.store(std::chrono::steady_clock::now().time_since_epoch().count(),
                   std::memory_order_relaxed);
  std::uint64_t suppressed = 0;
  if (full_warning_.allow(suppressed)) {
    log_->warn("buffer full ({} of {} bytes used): refusing requests with 429/"
               "RESOURCE_EXHAUSTED ({} more refusals since the last warning)",
               budget_.used(), budget_.limit(), suppressed);
  }
  IntakeResult r;
  r.status = IntakeStatus::kFull;
  return r;
}

void Intake::close() noexcept {
  closed_.store(true, std::memory_order_seq_cst);
  while (in_progress_.load(std::memory_order_seq_cst) > 0) {
    std::this_thread::yield();
  }
}

}  // namespace spanrelay
