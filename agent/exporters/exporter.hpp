#pragma once
// The seam between the batcher and an upstream. Every configured exporter receives every
// batch (fan-out); each owns its queue, retry state and counters, so a slow or dead upstream
// never delays the others.

#include <chrono>
#include <string>

#include "common/payload.hpp"
#include "common/stats.hpp"

namespace spanrelay {

class Exporter {
 public:
  virtual ~Exporter() = default;

  virtual const std::string& name() const noexcept = 0;
  // Starts the exporter's own thread(s). Throws on set-up failure (bad TLS files, ...).
  virtual void start() = 0;
  // Queues a batch. Called from the batcher thread; never blocks on the upstream.
  virtual void submit(BatchPtr batch) noexcept = 0;
  // Delivers what is queued or in flight until `deadline`, then drops (and counts) the rest
  // and joins the threads. Idempotent.
  virtual void shutdown(std::chrono::steady_clock::time_point deadline) noexcept = 0;

  virtual const ExporterStats& stats() const noexcept = 0;

  // Watchdog: an exporter with a thread of its own answers ping() on it; responsive() is
  // false once a ping waited longer than `patience`.
  virtual void ping() noexcept {}
  virtual bool responsive(std::chrono::steady_clock::time_point /*now*/,
                          std::chrono::milliseconds /*patience*/) const noexcept {
    return true;
  }
};

}  // namespace spanrelay
