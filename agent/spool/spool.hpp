#pragma once
// The disk spool: a durable queue of OTLP request payloads (opaque bytes + span count), one
// per exporter, so that a span spanrelay accepted reaches every upstream or is counted as
// deliberately dropped, through upstream outages, restarts and kill -9.
//
// Layout: <path>/<exporter name>/ holds
//   LOCK                     flock()ed while a Spool has the directory open (one owner only)
//   00000000000000000001.seg append-only segment files, records back to back (format.hpp)
//   00000000000000000001.ack acknowledged record offsets of that segment (format.hpp)
// A new segment starts when the current one would exceed segment_bytes, and on every open():
// old segments are never written again, only read, acknowledged and deleted. A segment and its
// ack file are deleted once all of its records are acknowledged (or dropped).
//
// Record ids are (segment seq << 32 | byte offset in the segment); they are stable across
// restarts and increase in write order.
//
// Guarantees
// - append() returning kOk means the record is in the file (write() completed). It survives a
//   crash of the process (kill -9) under every fsync policy. It survives a crash of the
//   machine (power loss, kernel panic) under fsync: always (fdatasync before append returns,
//   and the directory is synced when a segment is created); under interval, when the crash
//   comes more than fsync_interval after the append; under never, when the kernel wrote it back.
// - At-least-once: every appended record is handed out by next() until it is acked, or it is
//   counted in stats().dropped_records/dropped_spans (on_full: drop_oldest, max_age, unreadable
//   after open), or in corrupt_records (its bytes on disk failed their checksum).
// - Duplicates: a record handed out but not acked before a restart is handed out again. A
//   record acked before a process crash is not replayed. After a machine crash, acks made in
//   the last fsync window (always: none; interval: fsync_interval; never: until writeback)
//   may be lost, and those records replayed.
// - Recovery (open): every record is checked (magic, header CRC, length bound, payload CRC).
//   A torn tail (the partial last record a crash leaves: a header prefix, or a valid header
//   whose payload runs past the end of the file) is truncated away and counted in torn_tails,
//   not as corruption. A complete record whose payload fails its CRC is skipped and counted
//   (corrupt_records, corrupt_bytes); a bad header is skipped by scanning forward, byte by
//   byte, for the next valid header; the bytes in between count as one corrupt record (and to
//   the end of the file if no valid header follows). Garbage never makes open() fail or crash.
// - Bounded: bytes() (the sum of the segment file sizes; ack files, 8 bytes per acked record,
//   are not counted) never exceeds max_bytes. Records larger than max_bytes are refused.
//   A full disk (ENOSPC, EDQUOT) is treated like max_bytes: on_full applies (drop_oldest
//   deletes old segments and tries again; reject returns kFull).
//
// Thread-safety: every member function may be called from any thread (one internal mutex).
// sync() and the background flusher fdatasync outside the mutex; append()/ack() fdatasync
// inline, holding it, under fsync: always (and under interval when a sync is overdue).
// stats() may be read at any time without locking.
//
// Ownership and units: payloads are copied in (append) and out (next); sizes are bytes, times
// are wall-clock (options.clock) with millisecond resolution on disk.

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <sys/types.h>

#include "common/log.hpp"
#include "common/stats.hpp"

struct iovec;
struct statvfs;

namespace spanrelay {

enum class SpoolFsync {
  kAlways,    // fdatasync before append()/ack() return
  kInterval,  // fdatasync at most fsync_interval after the write (background thread)
  kNever,     // leave write-back to the kernel (sync() still works)
};
enum class SpoolOnFull {
  kDropOldest,  // delete the oldest segments (not holding records in flight), counting drops
  kReject,      // append() returns kFull
};
enum class SpoolReplay { kOldestFirst, kNewestFirst };

struct SpoolOptions {
  std::string path;                                // the spool directory (created if missing)
  std::uint64_t max_bytes = 1ull << 30;            // bound on the segment files, bytes
  SpoolFsync fsync = SpoolFsync::kInterval;
  std::chrono::milliseconds fsync_interval{1000};  // > 0; used by kInterval
  SpoolOnFull on_full = SpoolOnFull::kDropOldest;
  SpoolReplay replay = SpoolReplay::kOldestFirst;
  std::chrono::milliseconds max_age{0};            // records older are dropped; 0: no limit
  // Segment rotation size, bytes (a larger record gets a segment of its own). The effective
  // size is min(segment_bytes, max_bytes / 4) so that drop_oldest never has to drop most of
  // the spool at once. Capped at 1 GiB.
  std::uint64_t segment_bytes = 8ull << 20;
  // Wall clock for write times, max_age and the fsync interval; tests inject their own.
  std::function<std::chrono::system_clock::time_point()> clock;  // empty: system_clock::now
  // Test seam: the system calls through which records and acks are written, and the disk's free
  // space is measured (at open, to size segments). Empty: ::writev and ::statvfs, called
  // directly. Tests inject ENOSPC/EDQUOT or a small disk without needing one.
  struct Syscalls {
    std::function<ssize_t(int fd, const iovec* iov, int count)> writev;
    std::function<int(const char* path, struct statvfs* out)> statvfs;
  };
  Syscalls syscalls;
};

struct SpoolRecord {
  std::uint64_t id = 0;
  std::string payload;
  std::uint32_t spans = 0;
  // When it was appended, as recorded in its header; never before the epoch or after now
  // (a later time, from a clock that stepped back, reads as now).
  std::chrono::system_clock::time_point written;
};

enum class AppendStatus {
  kOk,        // written (durability per fsync policy)
  kFull,      // on_full: reject and no room, or drop_oldest could not free enough (in flight);
              // also when the disk itself is full (ENOSPC, EDQUOT) before max_bytes is reached
  kTooLarge,  // header + payload exceeds max_bytes (or the 1 GiB record limit)
  kIoError,   // write/fsync/create failed (ENOSPC, EIO, ...); nothing was added
};

const char* to_string(AppendStatus s) noexcept;

// Counters and gauges (gauges are set, not added). Records and spans are counted once.
struct SpoolStats {
  Counter records;           // gauge: records on disk not yet acked (pending + in flight)
  Counter bytes;             // gauge: sum of segment file sizes
  Counter appended_records;  // append() == kOk
  Counter replayed_records;  // unacked records found by open()
  Counter acked_records;     // ack() of a live record
  Counter dropped_records;   // dropped by the spool itself: on_full, max_age, unreadable
  Counter dropped_spans;     // spans in those records
  Counter corrupt_records;   // checksum/format failures found at open() or when read back
  Counter corrupt_bytes;     // bytes in those
  Counter torn_tails;        // partial last records truncated at open()
  Counter io_errors;         // failed write/read/fsync/unlink/create (each logged, rate-limited)
  Counter syncs;             // fdatasync/fsync calls that succeeded
};

class Spool {
 public:
  // Opens (creating if needed) <options.path>/<exporter_name>/, recovers its segments and
  // applies the persisted acks. Throws std::runtime_error naming the path when the directory
  // cannot be created or written, is locked by another Spool, or the options are invalid
  // (exporter_name must be a plain file name: non-empty, no '/', not "." or "..").
  static std::unique_ptr<Spool> open(SpoolOptions options, std::string exporter_name);

  // Syncs (unless fsync: never) and closes. Records in flight stay on disk unacked.
  ~Spool();
  Spool(const Spool&) = delete;
  Spool& operator=(const Spool&) = delete;

  // Appends one record. Never throws. On kIoError (and kFull/kTooLarge) `error`, if given,
  // receives a message (with the errno text for I/O errors).
  AppendStatus append(std::string_view payload, std::uint32_t spans,
                      std::string* error = nullptr) noexcept;

  // The next pending record (oldest or newest first per options.replay), now in flight until
  // ack() or nack(); nullopt when nothing is pending. Records older than max_age are dropped
  // (counted) on the way; so is a record that cannot be read back (counted as corrupt or
  // io_errors plus dropped). Reads the payload from disk. Never throws (bad_alloc aside).
  std::optional<SpoolRecord> next();

  // The record is done (delivered, or dropped by the caller, who counts that). Persists the
  // ack (fdatasync under fsync: always). Returns false for an unknown or already acked id.
  bool ack(std::uint64_t id) noexcept;
  // ack() of each id, with one commit (one fdatasync under fsync: always) for all of them.
  // Returns how many were live.
  std::size_t ack_all(std::span<const std::uint64_t> ids) noexcept;
  // A failed attempt: the in-flight record becomes pending again (same id, same position).
  // Returns false when the id is not in flight.
  bool nack(std::uint64_t id) noexcept;

  std::size_t pending_records() const;    // not in flight, not acked
  std::size_t in_flight_records() const;  // handed out by next(), not yet acked/nacked
  std::uint64_t bytes() const;            // sum of segment file sizes
  // max_bytes, or less when the disk had less room than that at open().
  std::uint64_t capacity() const noexcept { return capacity_; }
  const SpoolStats& stats() const noexcept { return stats_; }
  const std::string& directory() const noexcept { return dir_; }

  // fdatasync()s everything written and not yet synced (segment, ack file, directory).
  // Works under every policy. Never throws; failures count in io_errors.
  void sync() noexcept;

 private:
  struct File;
  using FilePtr = std::shared_ptr<File>;
  enum class State : std::uint8_t { kPending, kInFlight, kDone };
  struct Meta {
    std::uint32_t offset;
    std::uint32_t length;
    std::uint32_t spans;
    std::int64_t written_ms;
    State state;
  };
  struct Segment {
    std::uint64_t seq = 0;
    std::uint64_t size = 0;    // file size
    std::vector<Meta> recs;    // by offset
    std::size_t live = 0;      // not kDone
    std::size_t in_flight = 0;
    std::size_t pending = 0;   // kPending
    // Bounds on the indexes in recs of the pending records: none below lo, none at or above hi
    // (hints kept by mark_pending and tightened by the searches in pick_pending).
    std::size_t lo = 0;
    std::size_t hi = 0;
  };

  Spool(SpoolOptions options, std::string name, std::string dir);

  void recover();
  void size_to_disk();
  void recover_segment(std::uint64_t seq, bool has_ack);
  void load_acks(Segment& seg);
  std::int64_t now_ms() const;
  bool expired(const Meta& m, std::int64_t now) const;
  std::string seg_path(std::uint64_t seq) const;
  std::string ack_path(std::uint64_t seq) const;
  Meta* find(std::uint64_t id, Segment** seg);
  bool ack_locked(std::uint64_t id);
  // Bookkeeping of kPending records, kept beside Meta::state (no per-record allocation).
  void mark_pending(Segment& seg, const Meta& m);  // m.state is now kPending
  void unmark_pending(Segment& seg);               // a kPending record is leaving that state
  std::optional<std::uint64_t> pick_pending();     // per options.replay; nullopt if none
  void finish(Segment& seg, Meta& m);  // -> kDone, persist the ack, delete the seg if empty
  void drop(Segment& seg, Meta& m, const char* why);
  void write_ack(Segment& seg, const Meta& m);
  void commit_acks();
  void delete_segment(std::map<std::uint64_t, Segment>::iterator it);
  bool make_room(std::uint64_t need);
  void drop_segment(std::map<std::uint64_t, Segment>::iterator it);
  bool drop_oldest_segment();
  AppendStatus append_locked(std::string_view payload, std::uint32_t spans,
                             std::uint32_t payload_crc, std::uint64_t rec_size,
                             std::string* error);
  AppendStatus open_active(std::string* error);
  void seal_active();
  void set_gauges();
  void retire(FilePtr file);
  int sync_file(File& f) noexcept;  // 0 or errno
  std::vector<FilePtr> take_dirty();
  void flush(const std::vector<FilePtr>& files) noexcept;
  void sync_if_due();
  void io_error(const std::string& what, int err);
  void flusher_loop();

  const SpoolOptions options_;
  const std::string name_;
  const std::string dir_;
  std::uint64_t segment_bytes_ = 0;
  std::uint64_t capacity_ = 0;
  std::shared_ptr<spdlog::logger> log_;
  RateLimit error_log_;

  mutable std::mutex mu_;
  std::map<std::uint64_t, Segment> segments_;  // by seq
  std::size_t pending_ = 0;                    // records in state kPending, all segments
  std::size_t in_flight_ = 0;
  std::uint64_t bytes_ = 0;
  std::uint64_t next_seq_ = 1;
  Segment* active_seg_ = nullptr;  // the segment append() writes to, if any
  FilePtr active_;                 // its file
  FilePtr reader_;                 // cached read-only file of one older segment
  std::uint64_t reader_seq_ = 0;
  FilePtr acker_;                  // cached ack file of one segment
  std::uint64_t acker_seq_ = 0;
  FilePtr dir_file_;               // for directory fsync
  FilePtr lock_file_;
  std::vector<FilePtr> retired_;   // closed while dirty; synced by the next sync()
  bool recovering_ = false;        // inside open(): acks are synced once at the end
  bool defer_commit_ = false;      // inside ack_all(): acks are synced once at the end
  std::int64_t last_sync_ms_ = 0;
  int last_errno_ = 0;             // of append's last failed write/create (under mu_), for ENOSPC

  std::mutex flusher_mu_;
  std::condition_variable flusher_cv_;
  bool stopping_ = false;
  std::thread flusher_;

  SpoolStats stats_;
};

}  // namespace spanrelay
