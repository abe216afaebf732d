#pragma once
// The processors stage: edits every accepted request, in its wire form, before it is buffered
// or spooled (so nothing redacted ever reaches the disk). Each processor indexes the request,
// records its edits and, if it made any, the request is rewritten before the next one runs.
// With no processor configured the chain is empty and costs nothing.

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/stats.hpp"
#include "processors/options.hpp"
#include "processors/request_view.hpp"

namespace spanrelay::processors {

// Spans one processor dropped, by reason (a filter rule's name, a sampler reason, ...).
// The reasons are fixed when the processor is built, so the counters never move in memory.
class DropCounts {
 public:
  void declare(std::string reason);
  Counter& operator[](std::string_view reason);
  template <class Fn>
  void for_each(Fn&& fn) const {
    for (const auto& entry : entries_) {
      fn(entry->reason, get(entry->count));
    }
  }

 private:
  struct Entry {
    std::string reason;
    Counter count{0};
  };
  std::vector<std::unique_ptr<Entry>> entries_;
};

class Processor {
 public:
  virtual ~Processor() = default;
  // Records its edits of the request `view` indexes. Called from any receiver thread at once:
  // implementations keep no per-request state in members.
  virtual void process(const RequestView& view, Edits& edits) const = 0;

  const std::string& name() const noexcept { return name_; }
  const DropCounts& drops() const noexcept { return drops_; }
  // Attributes this processor changed or deleted (redact, attributes).
  std::uint64_t edited_attributes() const noexcept { return get(edited_); }

 protected:
  explicit Processor(std::string name) : name_(std::move(name)) {}
  mutable DropCounts drops_;
  mutable Counter edited_{0};

 private:
  std::string name_;
};

// Builds one processor; throws std::invalid_argument with a message naming the problem (an
// invalid regular expression, an unknown kind) — configuration errors, at start-up.
std::unique_ptr<Processor> make_processor(const ProcessorOptions& options);

class ProcessorChain {
 public:
  ProcessorChain() = default;
  explicit ProcessorChain(const std::vector<ProcessorOptions>& options);

  bool empty() const noexcept { return processors_.empty(); }
  // Runs every processor in order on `request` (a scanned-valid ExportTraceServiceRequest
  // holding `spans` spans), rewriting it in place when one edits it. Returns the spans left.
  std::uint32_t run(std::string& request, std::uint32_t spans) const;
  const std::vector<std::unique_ptr<Processor>>& processors() const noexcept { return processors_; }

 private:
  std::vector<std::unique_ptr<Processor>> processors_;
};

}  // namespace spanrelay::processors
