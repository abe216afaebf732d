#pragma once
// The two units of data that move through the pipeline, both kept as OTLP wire bytes.

#include <cstdint>
#include <memory>
#include <string>

#include "common/budget.hpp"

namespace spanrelay {

// One accepted request: a valid serialized ExportTraceServiceRequest (after gunzip, JSON
// conversion and removal of invalid spans) and the memory it holds against the budget.
struct Chunk {
  std::string bytes;
  std::uint32_t spans = 0;
  BudgetLease lease;
};

struct SpoolTicket;  // exporters/spool_ticket.hpp

// What the batcher hands to every exporter: a merged request within batch.max_bytes and
// batch.max_spans (a single span larger than max_bytes travels alone). Immutable and shared
// by all exporters; the budget is released when the last exporter lets go of it.
struct Batch {
  std::string bytes;
  std::uint32_t spans = 0;
  BudgetLease lease;
  // For a piece of a batch the upstream refused as too large: keeps the original (and so its
  // budget) alive until every piece is done.
  std::shared_ptr<const Batch> origin;
  // For a batch read back from an exporter's disk spool: the records it holds, acknowledged
  // (or returned to the spool) when the last piece of the batch is done.
  std::shared_ptr<SpoolTicket> ticket;
};
using BatchPtr = std::shared_ptr<const Batch>;

}  // namespace spanrelay
