#pragma once
// The spool records one batch was built from. The batch (and every piece of it, when the
// upstream made us split it) holds the ticket; when the last one lets go, the records are
// acknowledged (delivered, or dropped and counted by the exporter), returned to the spool for
// a later attempt, or left in flight so the next start replays them (shutdown, or a ticket
// nobody settled: nothing is ever acknowledged by default).

#include <cstdint>
#include <vector>

#include "spool/spool.hpp"

namespace spanrelay {

struct SpoolTicket {
  // Ordered: a later outcome overrides an earlier one across the pieces of a batch.
  enum class Then : std::uint8_t { kUnsettled, kAck, kNack, kKeep };

  SpoolTicket(Spool& s, std::vector<std::uint64_t> record_ids) noexcept
      : spool(s), ids(std::move(record_ids)) {}
  SpoolTicket(const SpoolTicket&) = delete;
  SpoolTicket& operator=(const SpoolTicket&) = delete;
  ~SpoolTicket() {
    if (then == Then::kAck) {
      spool.ack_all(ids);
    } else if (then == Then::kNack) {
      for (std::uint64_t id : ids) {
        spool.nack(id);
      }
    }
  }

  // Only the exporter's io thread touches `then`.
  void settle(Then outcome) noexcept {
    if (outcome > then) {
      then = outcome;
    }
  }

  Spool& spool;
  std::vector<std::uint64_t> ids;
  Then then = Then::kUnsettled;
};

}  // namespace spanrelay
