#include "spool/spool.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <filesystem>
#include <set>
#include <stdexcept>
#include <system_error>

#include "spool/format.hpp"

namespace spanrelay {

namespace fs = std::filesystem;
using spool::kHeaderSize;

namespace {

constexpr std::uint64_t kMaxOffset = 0xFFFFFFFFu;      // record offsets are 32-bit in ids
constexpr std::uint64_t kMaxSegmentBytes = 1ull << 30;

std::string errno_text(int err) { return std::error_code(err, std::generic_category()).message(); }

std::uint64_t make_id(std::uint64_t seq, std::uint32_t offset) noexcept {
  return (seq << 32) | offset;
}

// "00000000000000000042.seg" -> 42 (suffix ".seg" or ".ack"); nullopt for anything else.
std::optional<std::uint64_t> parse_name(const std::string& name, std::string_view suffix) {
  if (name.size() != 20 + suffix.size() || !name.ends_with(suffix)) {
    return std::nullopt;
  }
  std::uint64_t v = 0;
  const char* end = name.data() + 20;
  const auto r = std::from_chars(name.data(), end, v);
  if (r.ec != std::errc() || r.ptr != end) {
    return std::nullopt;
  }
  return v;
}

std::string seq_name(std::uint64_t seq, const char* suffix) {
  std::array<char, 32> buf{};
  std::snprintf(buf.data(), buf.size(), "%020llu%s", static_cast<unsigned long long>(seq),
                suffix);
  return buf.data();
}

// Full pread; returns false (errno set; 0 for a short file) when fewer bytes were available.
bool pread_full(int fd, void* buf, std::size_t n, std::uint64_t off) {
  auto* p = static_cast<char*>(buf);
  while (n > 0) {
    const ssize_t r = ::pread(fd, p, n, static_cast<off_t>(off));
    if (r < 0) {
      if (errno == EINTR) {
        continue;
      }
      return false;
    }
    if (r == 0) {
      errno = 0;
      return false;
    }
    p += r;
    n -= static_cast<std::size_t>(r);
    off += static_cast<std::uint64_t>(r);
  }
  return true;
}

// Writes all of iov (modified) through `sys` (the test seam; empty: ::writev). Returns the
// bytes written and sets `err` (0 on success).
std::size_t writev_full(const SpoolOptions::Syscalls& sys, int fd, iovec* iov, int count,
                        int& err) {
  std::size_t total = 0;
  err = 0;
  while (count > 0) {
    const ssize_t r = sys.writev ? sys.writev(fd, iov, count) : ::writev(fd, iov, count);
    if (r < 0) {
      if (errno == EINTR) {
        continue;
      }
      err = errno;
      return total;
    }
    auto n = static_cast<std::size_t>(r);
    total += n;
    while (count > 0 && n >= iov->iov_len) {
      n -= iov->iov_len;
      ++iov;
      --count;
    }
    if (count > 0) {
      iov->iov_base = static_cast<char*>(iov->iov_base) + n;
      iov->iov_len -= n;
    }
  }
  return total;
}

}  // namespace

const char* to_string(AppendStatus s) noexcept {
  switch (s) {
    case AppendStatus::kOk:
      return "ok";
    case AppendStatus::kFull:
      return "spool full";
    case AppendStatus::kTooLarge:
      return "record larger than the spool";
    case AppendStatus::kIoError:
      return "spool I/O error";
  }
  return "?";
}

// An open file descriptor; closed when the last holder lets go (sync() may still hold one
// whose segment was just rotated or deleted).
struct Spool::File {
  File(int fd, std::string path, bool is_dir) : fd(fd), path(std::move(path)), is_dir(is_dir) {}
  File(const File&) = delete;
  File& operator=(const File&) = delete;
  ~File() { ::close(fd); }
  const int fd;
  const std::string path;
  const bool is_dir;
  bool dirty = false;  // written since the last sync; guarded by Spool::mu_
};

std::unique_ptr<Spool> Spool::open(SpoolOptions options, std::string exporter_name) {
  if (exporter_name.empty() || exporter_name == "." || exporter_name == ".." ||
      exporter_name.find('/') != std::string::npos ||
      exporter_name.find('\0') != std::string::npos) {
    throw std::runtime_error("spool: exporter name '" + exporter_name +
                             "' cannot be used as a directory name");
  }
  if (options.path.empty()) {
    throw std::runtime_error("spool: path is empty");
  }
  if (options.max_bytes <= kHeaderSize) {
    throw std::runtime_error("spool: max_bytes is too small");
  }
  if (options.segment_bytes == 0) {
    throw std::runtime_error("spool: segment_bytes must be positive");
  }
  if (options.fsync == SpoolFsync::kInterval && options.fsync_interval.count() <= 0) {
    throw std::runtime_error("spool: fsync_interval must be positive");
  }
  if (options.max_age.count() < 0) {
    throw std::runtime_error("spool: max_age must not be negative");
  }
  const std::string dir = (fs::path(options.path) / exporter_name).string();
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) {
    throw std::runtime_error("spool: cannot create directory '" + dir + "': " + ec.message());
  }
  std::unique_ptr<Spool> spool(new Spool(std::move(options), std::move(exporter_name), dir));
  spool->recover();
  spool->size_to_disk();
  if (spool->options_.fsync == SpoolFsync::kInterval) {
    spool->flusher_ = std::thread([s = spool.get()] { s->flusher_loop(); });
  }
  return spool;
}

// A disk smaller than max_bytes fills first; on_full then applies on ENOSPC. Segments are
// sized to what the disk can hold, so that drop_oldest has several to choose from.
void Spool::size_to_disk() {
  capacity_ = options_.max_bytes;
  struct statvfs vfs {};
  const int rc = options_.syscalls.statvfs ? options_.syscalls.statvfs(dir_.c_str(), &vfs)
                                            : ::statvfs(dir_.c_str(), &vfs);
  if (rc == 0) {
    const std::uint64_t room = bytes_ + static_cast<std::uint64_t>(vfs.f_bavail) * vfs.f_frsize;
    if (room < capacity_) {
      capacity_ = room;
      log_->warn("{}: the disk has room for {} bytes, less than max_bytes ({}); when it is full "
                 "on_full applies",
                 dir_, room, options_.max_bytes);
    }
  }
  segment_bytes_ = std::min(segment_bytes_, std::max<std::uint64_t>(capacity_ / 4, 1));
}

Spool::Spool(SpoolOptions options, std::string name, std::string dir)
    : options_(std::move(options)), name_(std::move(name)), dir_(std::move(dir)),
      log_(logger("spool." + name_)) {
  segment_bytes_ = std::min({options_.segment_bytes,
                             std::max<std::uint64_t>(options_.max_bytes / 4, 1), kMaxSegmentBytes});
}

Spool::~Spool() {
  if (flusher_.joinable()) {
    {
      std::lock_guard lk(flusher_mu_);
      stopping_ = true;
    }
    flusher_cv_.notify_all();
    flusher_.join();
  }
  if (options_.fsync != SpoolFsync::kNever) {
    sync();
  }
}

// ---- recovery ----

void Spool::recover() {
  const int dfd = ::open(dir_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd < 0) {
    throw std::runtime_error("spool: cannot open directory '" + dir_ + "': " +
                             errno_text(errno));
  }
  dir_file_ = std::make_shared<File>(dfd, dir_, true);
  if (::access(dir_.c_str(), W_OK | X_OK) != 0) {
    throw std::runtime_error("spool: directory '" + dir_ + "' is not writable: " +
                             errno_text(errno));
  }
  const std::string lock_path = (fs::path(dir_) / "LOCK").string();
  const int lfd = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (lfd < 0) {
    throw std::runtime_error("spool: cannot create '" + lock_path + "': " + errno_text(errno));
  }
  lock_file_ = std::make_shared<File>(lfd, lock_path, false);
  if (::flock(lfd, LOCK_EX | LOCK_NB) != 0) {
    throw std::runtime_error("spool: '" + dir_ + "' is in use by another spool (" +
                             errno_text(errno) + ")");
  }

  std::set<std::uint64_t> segs;
  std::set<std::uint64_t> acks;
  std::error_code ec;
  for (fs::directory_iterator it(dir_, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    std::optional<std::uint64_t> seq;
    bool is_seg = false;
    if ((seq = parse_name(name, ".seg"))) {
      is_seg = true;
    } else if (!(seq = parse_name(name, ".ack"))) {
      continue;  // LOCK, or not ours: left alone
    }
    if (*seq == 0 || *seq > kMaxOffset) {
      log_->warn("ignoring {}: sequence number out of range", name);
      continue;
    }
    (is_seg ? segs : acks).insert(*seq);
    next_seq_ = std::max(next_seq_, *seq + 1);
  }
  if (ec) {
    throw std::runtime_error("spool: cannot list directory '" + dir_ + "': " + ec.message());
  }

  std::lock_guard lk(mu_);
  recovering_ = true;
  for (std::uint64_t seq : segs) {
    recover_segment(seq, acks.contains(seq));
  }
  for (std::uint64_t seq : acks) {
    if (!segs.contains(seq) && ::unlink(ack_path(seq).c_str()) != 0 && errno != ENOENT) {
      io_error("unlink " + ack_path(seq), errno);
    }
  }
  recovering_ = false;
  last_sync_ms_ = now_ms();
  if (options_.fsync != SpoolFsync::kNever) {
    flush(take_dirty());
  }
  set_gauges();
  if (!segments_.empty() || get(stats_.corrupt_records) > 0 || get(stats_.torn_tails) > 0) {
    log_->info("{}: {} record(s) in {} segment(s), {} bytes to replay; {} dropped (max_age), "
               "{} corrupt record(s) skipped, {} torn tail(s) truncated",
               dir_, pending_, segments_.size(), bytes_, get(stats_.dropped_records),
               get(stats_.corrupt_records), get(stats_.torn_tails));
  }
}

void Spool::recover_segment(std::uint64_t seq, bool has_ack) {
  const std::string path = seg_path(seq);
  const int fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
  if (fd < 0) {
    throw std::runtime_error("spool: cannot open segment '" + path + "': " + errno_text(errno));
  }
  File file(fd, path, false);
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    throw std::runtime_error("spool: cannot stat segment '" + path + "': " + errno_text(errno));
  }
  const auto size = static_cast<std::uint64_t>(st.st_size);
  Segment seg;
  seg.seq = seq;
  seg.size = size;
  std::uint64_t corrupt_records = 0;
  std::uint64_t corrupt_bytes = 0;
  std::optional<std::uint64_t> torn_at;
  if (size > 0) {
    void* map = ::mmap(nullptr, size, PROT_READ, MAP_SHARED, fd, 0);
    if (map == MAP_FAILED) {
      throw std::runtime_error("spool: cannot map segment '" + path + "': " + errno_text(errno));
    }
    const auto* b = static_cast<const unsigned char*>(map);
    std::uint64_t off = 0;
    while (off < size) {
      if (off > kMaxOffset) {  // cannot be named by an id; we never write this far
        ++corrupt_records;
        corrupt_bytes += size - off;
        break;
      }
      if (size - off < kHeaderSize) {
        torn_at = off;
        break;
      }
      const auto h = spool::decode_header(b + off);
      if (!h) {
        // Resynchronise on the next valid header; everything before it is one corrupt record.
        std::uint64_t next = off + 1;
        while (next + kHeaderSize <= size) {
          const void* m = ::memmem(b + next, size - next, "SRS1", 4);
          if (m == nullptr) {
            next = size;
            break;
          }
          next = static_cast<std::uint64_t>(static_cast<const unsigned char*>(m) - b);
          if (next + kHeaderSize <= size && spool::decode_header(b + next)) {
            break;
          }
          ++next;
        }
        next = std::min(next, size);
        if (next + kHeaderSize > size) {
          next = size;
        }
        ++corrupt_records;
        corrupt_bytes += next - off;
        off = next;
        continue;
      }
      const std::uint64_t end = off + kHeaderSize + h->length;
      if (end > size) {
        torn_at = off;  // a valid header whose payload was not completely written
        break;
      }
      if (spool::crc32c(b + off + kHeaderSize, h->length) != h->payload_crc) {
        ++corrupt_records;
        corrupt_bytes += end - off;
      } else {
        seg.recs.push_back(Meta{static_cast<std::uint32_t>(off), h->length, h->spans,
                                h->written_ms, State::kPending});
      }
      off = end;
    }
    ::munmap(map, size);
  }
  if (corrupt_records > 0) {
    add(stats_.corrupt_records, corrupt_records);
    add(stats_.corrupt_bytes, corrupt_bytes);
    log_->error("{}: skipped {} corrupt region(s), {} bytes", path, corrupt_records,
                corrupt_bytes);
  }
  if (torn_at) {
    add(stats_.torn_tails);
    log_->warn("{}: truncating a torn last record ({} bytes at offset {})", path,
               size - *torn_at, *torn_at);
    if (::ftruncate(fd, static_cast<off_t>(*torn_at)) == 0) {
      seg.size = *torn_at;
    } else {
      io_error("truncate " + path, errno);
    }
  }
  seg.live = seg.recs.size();
  auto [it, inserted] = segments_.emplace(seq, std::move(seg));
  Segment& s = it->second;
  bytes_ += s.size;
  if (has_ack) {
    load_acks(s);
  }
  const std::int64_t now = now_ms();
  for (Meta& m : s.recs) {
    if (m.state == State::kPending) {
      mark_pending(s, m);
    }
  }
  for (Meta& m : s.recs) {
    if (m.state == State::kPending && expired(m, now)) {
      drop(s, m, "older than max_age");  // may delete the segment: `s` is then gone
      if (!segments_.contains(seq)) {
        return;
      }
    }
  }
  if (s.live == 0) {
    delete_segment(it);
    return;
  }
  add(stats_.replayed_records, s.live);
}

void Spool::load_acks(Segment& seg) {
  const std::string path = ack_path(seg.seq);
  const int fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
  if (fd < 0) {
    io_error("open " + path, errno);  // its records will be replayed: duplicates, no loss
    return;
  }
  File file(fd, path, false);
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    io_error("stat " + path, errno);
    return;
  }
  std::string data(static_cast<std::size_t>(st.st_size), '\0');
  if (!pread_full(fd, data.data(), data.size(), 0)) {
    io_error("read " + path, errno);
    return;
  }
  const std::size_t whole = data.size() - data.size() % spool::kAckEntrySize;
  for (std::size_t i = 0; i < whole; i += spool::kAckEntrySize) {
    const auto offset =
        spool::decode_ack(seg.seq, reinterpret_cast<const unsigned char*>(data.data() + i));
    if (!offset) {
      continue;
    }
    auto m = std::lower_bound(seg.recs.begin(), seg.recs.end(), *offset,
                              [](const Meta& a, std::uint32_t o) { return a.offset < o; });
    if (m != seg.recs.end() && m->offset == *offset && m->state != State::kDone) {
      m->state = State::kDone;
      --seg.live;
    }
  }
  // A torn entry would misalign every entry appended after it.
  if (whole != data.size() && ::ftruncate(fd, static_cast<off_t>(whole)) != 0) {
    io_error("truncate " + path, errno);
  }
}

// ---- helpers ----

std::int64_t Spool::now_ms() const {
  const auto t = options_.clock ? options_.clock() : std::chrono::system_clock::now();
  return std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
}

// now - written_ms > max_age, computed without overflow: a header with a valid CRC (damaged or
// crafted) can hold any 64-bit write time.
bool Spool::expired(const Meta& m, std::int64_t now) const {
  const std::int64_t max_age = options_.max_age.count();
  return max_age > 0 && m.written_ms < now &&
         static_cast<std::uint64_t>(now) - static_cast<std::uint64_t>(m.written_ms) >
             static_cast<std::uint64_t>(max_age);
}

std::string Spool::seg_path(std::uint64_t seq) const {
  return (fs::path(dir_) / seq_name(seq, ".seg")).string();
}

std::string Spool::ack_path(std::uint64_t seq) const {
  return (fs::path(dir_) / seq_name(seq, ".ack")).string();
}

Spool::Meta* Spool::find(std::uint64_t id, Segment** seg) {
  auto it = segments_.find(id >> 32);
  if (it == segments_.end()) {
    return nullptr;
  }
  const auto offset = static_cast<std::uint32_t>(id & kMaxOffset);
  auto& recs = it->second.recs;
  auto m = std::lower_bound(recs.begin(), recs.end(), offset,
                            [](const Meta& a, std::uint32_t o) { return a.offset < o; });
  if (m == recs.end() || m->offset != offset) {
    return nullptr;
  }
  *seg = &it->second;
  return &*m;
}

void Spool::set_gauges() {
  stats_.records.store(pending_ + in_flight_, std::memory_order_relaxed);
  stats_.bytes.store(bytes_, std::memory_order_relaxed);
}

void Spool::io_error(const std::string& what, int err) {
  add(stats_.io_errors);
  std::uint64_t suppressed = 0;
  if (error_log_.allow(suppressed)) {
    log_->error("{}: {} ({} more errors not logged)", what, errno_text(err), suppressed);
  }
}

// ---- completing records ----

void Spool::finish(Segment& seg, Meta& m) {
  m.state = State::kDone;
  --seg.live;
  if (seg.live == 0 && &seg != active_seg_) {
    delete_segment(segments_.find(seg.seq));  // no ack needed: the whole file goes
  } else {
    write_ack(seg, m);
    if (!recovering_ && !defer_commit_) {
      commit_acks();
    }
  }
  set_gauges();
}

void Spool::drop(Segment& seg, Meta& m, const char* why) {
  if (m.state == State::kPending) {
    unmark_pending(seg);
  } else if (m.state == State::kInFlight) {
    --seg.in_flight;
    --in_flight_;
  }
  add(stats_.dropped_records);
  add(stats_.dropped_spans, m.spans);
  std::uint64_t suppressed = 0;
  if (error_log_.allow(suppressed)) {
    log_->error("dropped a record of {} span(s): {} ({} more errors not logged)", m.spans, why,
                suppressed);
  }
  finish(seg, m);
}

void Spool::write_ack(Segment& seg, const Meta& m) {
  if (!acker_ || acker_seq_ != seg.seq) {
    if (acker_ && acker_->dirty && options_.fsync == SpoolFsync::kAlways) {
      sync_file(*acker_);  // ack_all() moving on to the next segment's ack file
    }
    retire(std::move(acker_));
    const std::string path = ack_path(seg.seq);
    const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0) {
      io_error("open " + path, errno);  // replayed after a restart: a duplicate, no loss
      return;
    }
    acker_ = std::make_shared<File>(fd, path, false);
    acker_seq_ = seg.seq;
    dir_file_->dirty = true;  // it may be new
  }
  const auto entry = spool::encode_ack(seg.seq, m.offset);
  iovec iov{const_cast<unsigned char*>(entry.data()), entry.size()};
  int err = 0;
  const std::size_t n = writev_full(options_.syscalls, acker_->fd, &iov, 1, err);
  if (err != 0) {
    io_error("write " + acker_->path, err);
    if (n > 0) {
      // Keep the file a whole number of entries.
      struct stat st {};
      if (::fstat(acker_->fd, &st) == 0) {
        const auto whole = st.st_size - st.st_size % static_cast<off_t>(spool::kAckEntrySize);
        if (::ftruncate(acker_->fd, whole) != 0) {
          io_error("truncate " + acker_->path, errno);
        }
      }
    }
    return;
  }
  acker_->dirty = true;
}

void Spool::commit_acks() {
  if (options_.fsync == SpoolFsync::kAlways) {
    if (acker_ && acker_->dirty) {
      sync_file(*acker_);
    }
    if (dir_file_->dirty) {
      sync_file(*dir_file_);
    }
  } else if (options_.fsync == SpoolFsync::kInterval) {
    sync_if_due();
  }
}

void Spool::delete_segment(std::map<std::uint64_t, Segment>::iterator it) {
  const std::uint64_t seq = it->first;
  if (active_seg_ == &it->second) {
    active_seg_ = nullptr;
    active_.reset();
  }
  if (reader_seq_ == seq) {
    reader_.reset();
    reader_seq_ = 0;
  }
  if (acker_seq_ == seq) {
    acker_.reset();
    acker_seq_ = 0;
  }
  bytes_ -= it->second.size;
  segments_.erase(it);
  const std::string seg = seg_path(seq);
  const std::string ack_file = ack_path(seq);
  // A deleted file owes no fdatasync, and its space comes back only when its last descriptor
  // is closed: a full disk needs that now, not at the next sync.
  std::erase_if(retired_, [&](const FilePtr& f) { return f->path == seg || f->path == ack_file; });
  if (::unlink(seg.c_str()) != 0 && errno != ENOENT) {
    // Keep the ack file: if the segment comes back at the next open, so do its acks.
    io_error("unlink " + seg, errno);
    return;
  }
  dir_file_->dirty = true;
  // The segment's removal must be durable before its acks go, or a machine crash could bring
  // back the segment without them.
  if (options_.fsync == SpoolFsync::kAlways) {
    sync_file(*dir_file_);
  }
  const std::string ack = ack_path(seq);
  if (::unlink(ack.c_str()) != 0 && errno != ENOENT) {
    io_error("unlink " + ack, errno);
  }
}

// ---- durability ----

void Spool::retire(FilePtr file) {
  // Written but not yet synced: sync() still owes it an fdatasync (interval: within
  // fsync_interval). Under never nobody does.
  if (file && file->dirty && options_.fsync == SpoolFsync::kInterval) {
    retired_.push_back(std::move(file));
  }
}

int Spool::sync_file(File& f) noexcept {
  f.dirty = false;
  if ((f.is_dir ? ::fsync(f.fd) : ::fdatasync(f.fd)) != 0) {
    const int err = errno;
    io_error((f.is_dir ? "fsync " : "fdatasync ") + f.path, err);
    return err;
  }
  add(stats_.syncs);
  return 0;
}

std::vector<Spool::FilePtr> Spool::take_dirty() {
  std::vector<FilePtr> files = std::move(retired_);
  retired_.clear();
  for (const FilePtr& f : {active_, acker_, dir_file_}) {
    if (f && f->dirty) {
      files.push_back(f);
    }
  }
  last_sync_ms_ = now_ms();
  return files;
}

void Spool::flush(const std::vector<FilePtr>& files) noexcept {
  for (const FilePtr& f : files) {
    sync_file(*f);
  }
}

void Spool::sync_if_due() {
  if (now_ms() - last_sync_ms_ >= options_.fsync_interval.count()) {
    flush(take_dirty());
  }
}

void Spool::sync() noexcept {
  try {
    std::vector<FilePtr> files;
    {
      std::lock_guard lk(mu_);
      files = take_dirty();
    }
    flush(files);  // outside the lock: appends go on meanwhile
  } catch (const std::exception& e) {
    add(stats_.io_errors);
    log_->error("sync failed: {}", e.what());
  }
}

void Spool::flusher_loop() {
  std::unique_lock lk(flusher_mu_);
  while (!flusher_cv_.wait_for(lk, options_.fsync_interval, [this] { return stopping_; })) {
    lk.unlock();
    sync();
    lk.lock();
  }
}

// ---- appending ----

AppendStatus Spool::open_active(std::string* error) {
  if (next_seq_ > kMaxOffset) {
    if (error != nullptr) {
      *error = "spool " + dir_ + ": segment sequence numbers exhausted";
    }
    add(stats_.io_errors);
    return AppendStatus::kIoError;
  }
  const std::uint64_t seq = next_seq_++;
  const std::string path = seg_path(seq);
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) {
    const int err = errno;
    last_errno_ = err;
    io_error("create " + path, err);
    if (error != nullptr) {
      *error = "create " + path + ": " + errno_text(err);
    }
    return AppendStatus::kIoError;
  }
  active_ = std::make_shared<File>(fd, path, false);
  Segment& seg = segments_[seq];
  seg.seq = seq;
  active_seg_ = &seg;
  dir_file_->dirty = true;
  return AppendStatus::kOk;
}

void Spool::seal_active() {
  if (active_seg_ == nullptr) {
    return;
  }
  Segment& seg = *active_seg_;
  retire(std::move(active_));
  active_.reset();
  active_seg_ = nullptr;
  if (seg.live == 0) {
    delete_segment(segments_.find(seg.seq));
  } else {
    seg.recs.shrink_to_fit();  // it grows no more: give back the vector's slack
  }
}

// Deletes one segment, counting its pending records as dropped (on_full: drop_oldest).
void Spool::drop_segment(std::map<std::uint64_t, Segment>::iterator it) {
  Segment& seg = it->second;
  std::uint64_t records = 0;
  std::uint64_t spans = 0;
  for (Meta& m : seg.recs) {
    if (m.state == State::kPending) {
      unmark_pending(seg);
      m.state = State::kDone;
      ++records;
      spans += m.spans;
    }
  }
  seg.live = 0;
  add(stats_.dropped_records, records);
  add(stats_.dropped_spans, spans);
  if (records > 0) {
    std::uint64_t suppressed = 0;
    if (error_log_.allow(suppressed)) {
      log_->error("spool full: dropped the oldest segment, {} record(s) with {} span(s) ({} more "
                  "errors not logged)",
                  records, spans, suppressed);
    }
  }
  delete_segment(it);
}

bool Spool::make_room(std::uint64_t need) {
  for (auto it = segments_.begin(); it != segments_.end() && bytes_ + need > options_.max_bytes;) {
    if (it->second.in_flight > 0) {
      ++it;  // never drop what a worker is delivering
      continue;
    }
    drop_segment(it++);
  }
  set_gauges();
  return bytes_ + need <= options_.max_bytes;
}

bool Spool::drop_oldest_segment() {
  for (auto it = segments_.begin(); it != segments_.end(); ++it) {
    if (it->second.in_flight == 0 && &it->second != active_seg_ && it->second.size > 0) {
      drop_segment(it);
      set_gauges();
      return true;
    }
  }
  return false;
}

AppendStatus Spool::append(std::string_view payload, std::uint32_t spans,
                           std::string* error) noexcept {
  try {
    const std::uint64_t rec_size = kHeaderSize + payload.size();
    if (payload.size() > spool::kMaxPayload || rec_size > options_.max_bytes) {
      if (error != nullptr) {
        *error = "record of " + std::to_string(rec_size) + " bytes exceeds the spool's max_bytes";
      }
      return AppendStatus::kTooLarge;
    }
    const std::uint32_t payload_crc = spool::crc32c(payload);  // outside the lock
    std::lock_guard lk(mu_);
    for (;;) {
      last_errno_ = 0;
      const AppendStatus status = append_locked(payload, spans, payload_crc, rec_size, error);
      if (status != AppendStatus::kIoError || (last_errno_ != ENOSPC && last_errno_ != EDQUOT)) {
        return status;
      }
      // The disk (or the quota) is full before max_bytes is: the same policy applies.
      const int full = last_errno_;
      if (options_.on_full == SpoolOnFull::kReject || !drop_oldest_segment()) {
        if (error != nullptr) {
          *error = "spool full: " + errno_text(full) + " with " + std::to_string(bytes_) +
                   " bytes in the spool";
        }
        return AppendStatus::kFull;
      }
    }
  } catch (const std::exception& e) {
    add(stats_.io_errors);
    if (error != nullptr) {
      *error = std::string("spool append failed: ") + e.what();
    }
    return AppendStatus::kIoError;
  }
}

AppendStatus Spool::append_locked(std::string_view payload, std::uint32_t spans,
                                  std::uint32_t payload_crc, std::uint64_t rec_size,
                                  std::string* error) {
  {
    if (bytes_ + rec_size > options_.max_bytes &&
        (options_.on_full == SpoolOnFull::kReject || !make_room(rec_size))) {
      if (error != nullptr) {
        *error = "spool full: " + std::to_string(bytes_) + " of " +
                 std::to_string(options_.max_bytes) + " bytes used";
      }
      return AppendStatus::kFull;
    }
    if (active_seg_ != nullptr && active_seg_->size > 0 &&
        active_seg_->size + rec_size > segment_bytes_) {
      seal_active();
    }
    if (active_seg_ == nullptr) {
      if (const AppendStatus s = open_active(error); s != AppendStatus::kOk) {
        return s;
      }
    }
    Segment& seg = *active_seg_;
    const std::uint64_t offset = seg.size;  // < segment_bytes_ <= 1 GiB: fits the id
    spool::RecordHeader h;
    h.length = static_cast<std::uint32_t>(payload.size());
    h.spans = spans;
    h.written_ms = now_ms();
    h.payload_crc = payload_crc;
    const auto header = spool::encode_header(h);
    std::array<iovec, 2> iov{iovec{const_cast<unsigned char*>(header.data()), header.size()},
                             iovec{const_cast<char*>(payload.data()), payload.size()}};
    int err = 0;
    const std::size_t written = writev_full(options_.syscalls, active_->fd, iov.data(), 2, err);
    std::string what;
    if (err != 0) {
      what = "write " + active_->path;
      io_error(what, err);
    } else {
      active_->dirty = true;
      if (options_.fsync == SpoolFsync::kAlways) {
        if ((err = sync_file(*active_)) != 0) {
          what = "fdatasync " + active_->path;
        } else if (dir_file_->dirty && (err = sync_file(*dir_file_)) != 0) {
          what = "fsync " + dir_;
        }
      }
    }
    if (err != 0) {
      last_errno_ = err;
      if (error != nullptr) {
        *error = what + ": " + errno_text(err);
      }
      // Take the partial or unsynced record back out, then leave this file: after a failed
      // fdatasync its state is unknown. Recovery treats any leftover as a torn tail.
      if (written > 0 && ::ftruncate(active_->fd, static_cast<off_t>(offset)) != 0) {
        io_error("truncate " + active_->path, errno);
        seg.size = offset + written;
        bytes_ += written;
      }
      seal_active();
      set_gauges();
      return AppendStatus::kIoError;
    }
    seg.size += rec_size;
    bytes_ += rec_size;
    seg.recs.push_back(Meta{static_cast<std::uint32_t>(offset), h.length, spans, h.written_ms,
                            State::kPending});
    ++seg.live;
    mark_pending(seg, seg.recs.back());
    add(stats_.appended_records);
    set_gauges();
    if (options_.fsync == SpoolFsync::kInterval) {
      sync_if_due();
    }
    return AppendStatus::kOk;
  }
}

// ---- consuming ----

void Spool::mark_pending(Segment& seg, const Meta& m) {
  const auto index = static_cast<std::size_t>(&m - seg.recs.data());
  if (seg.pending == 0) {
    seg.lo = index;
    seg.hi = index + 1;
  } else {
    seg.lo = std::min(seg.lo, index);
    seg.hi = std::max(seg.hi, index + 1);
  }
  ++seg.pending;
  ++pending_;
}

void Spool::unmark_pending(Segment& seg) {
  --seg.pending;
  --pending_;
}

// The oldest (or newest) pending record: segments in order, and within one the first (last)
// kPending entry between its hints, which the search tightens. Amortised O(1) per record.
std::optional<std::uint64_t> Spool::pick_pending() {
  if (pending_ == 0) {
    return std::nullopt;
  }
  if (options_.replay == SpoolReplay::kNewestFirst) {
    for (auto it = segments_.rbegin(); it != segments_.rend(); ++it) {
      Segment& seg = it->second;
      if (seg.pending == 0) {
        continue;
      }
      seg.hi = std::min(seg.hi, seg.recs.size());
      while (seg.hi > 0 && seg.recs[seg.hi - 1].state != State::kPending) {
        --seg.hi;
      }
      if (seg.hi > 0) {
        return make_id(seg.seq, seg.recs[seg.hi - 1].offset);
      }
    }
  } else {
    for (auto& [seq, seg] : segments_) {
      if (seg.pending == 0) {
        continue;
      }
      while (seg.lo < seg.recs.size() && seg.recs[seg.lo].state != State::kPending) {
        ++seg.lo;
      }
      if (seg.lo < seg.recs.size()) {
        return make_id(seq, seg.recs[seg.lo].offset);
      }
    }
  }
  return std::nullopt;
}

std::optional<SpoolRecord> Spool::next() {
  std::lock_guard lk(mu_);
  const std::int64_t now = now_ms();
  while (const std::optional<std::uint64_t> next_id = pick_pending()) {
    const std::uint64_t id = *next_id;
    Segment* seg = nullptr;
    Meta* m = find(id, &seg);
    if (m == nullptr) {  // cannot happen: pick_pending returns a live record
      break;
    }
    if (expired(*m, now)) {
      drop(*seg, *m, "older than max_age");
      continue;
    }
    // Read back and check.
    int fd = -1;
    if (seg == active_seg_) {
      fd = active_->fd;
    } else {
      if (!reader_ || reader_seq_ != seg->seq) {
        reader_.reset();
        const std::string path = seg_path(seg->seq);
        const int rfd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
        if (rfd < 0) {
          io_error("open " + path, errno);
          drop(*seg, *m, "segment cannot be opened");
          continue;
        }
        reader_ = std::make_shared<File>(rfd, path, false);
        reader_seq_ = seg->seq;
      }
      fd = reader_->fd;
    }
    std::array<unsigned char, kHeaderSize> header{};
    SpoolRecord rec;
    rec.payload.resize(m->length);
    if (!pread_full(fd, header.data(), header.size(), m->offset) ||
        !pread_full(fd, rec.payload.data(), rec.payload.size(), m->offset + kHeaderSize)) {
      io_error("read " + seg_path(seg->seq), errno == 0 ? EIO : errno);
      drop(*seg, *m, "record cannot be read back");
      continue;
    }
    const auto h = spool::decode_header(header.data());
    if (!h || h->length != m->length || spool::crc32c(rec.payload) != h->payload_crc) {
      add(stats_.corrupt_records);
      add(stats_.corrupt_bytes, kHeaderSize + m->length);
      std::uint64_t suppressed = 0;
      if (error_log_.allow(suppressed)) {
        log_->error("{}: record at offset {} changed on disk (checksum); skipped ({} more "
                    "errors not logged)",
                    seg_path(seg->seq), m->offset, suppressed);
      }
      unmark_pending(*seg);
      finish(*seg, *m);
      continue;
    }
    unmark_pending(*seg);
    m->state = State::kInFlight;
    ++seg->in_flight;
    ++in_flight_;
    rec.id = id;
    rec.spans = m->spans;
    // Within [epoch, now], so that a write time from a clock that stepped back, or any 64-bit
    // value a damaged header with a valid CRC holds, converts without overflow and keeps
    // now - written (the exporters' batch age) in range.
    const std::int64_t written_ms =
        std::clamp<std::int64_t>(m->written_ms, 0, std::max<std::int64_t>(now, 0));
    rec.written = std::chrono::system_clock::time_point(std::chrono::milliseconds(written_ms));
    return rec;
  }
  return std::nullopt;
}

bool Spool::ack_locked(std::uint64_t id) {
  Segment* seg = nullptr;
  Meta* m = find(id, &seg);
  if (m == nullptr || m->state == State::kDone) {
    return false;
  }
  if (m->state == State::kPending) {
    unmark_pending(*seg);
  } else {
    --seg->in_flight;
    --in_flight_;
  }
  add(stats_.acked_records);
  finish(*seg, *m);
  return true;
}

bool Spool::ack(std::uint64_t id) noexcept {
  try {
    std::lock_guard lk(mu_);
    return ack_locked(id);
  } catch (const std::exception& e) {
    add(stats_.io_errors);
    log_->error("ack failed: {}", e.what());
    return false;
  }
}

std::size_t Spool::ack_all(std::span<const std::uint64_t> ids) noexcept {
  std::lock_guard lk(mu_);
  std::size_t acked = 0;
  try {
    defer_commit_ = true;
    for (std::uint64_t id : ids) {
      acked += ack_locked(id) ? 1 : 0;
    }
  } catch (const std::exception& e) {
    add(stats_.io_errors);
    log_->error("ack failed: {}", e.what());
  }
  defer_commit_ = false;
  try {
    commit_acks();
  } catch (const std::exception& e) {
    add(stats_.io_errors);
    log_->error("ack failed: {}", e.what());
  }
  return acked;
}

bool Spool::nack(std::uint64_t id) noexcept {
  try {
    std::lock_guard lk(mu_);
    Segment* seg = nullptr;
    Meta* m = find(id, &seg);
    if (m == nullptr || m->state != State::kInFlight) {
      return false;
    }
    m->state = State::kPending;
    mark_pending(*seg, *m);
    --seg->in_flight;
    --in_flight_;
    return true;
  } catch (const std::exception& e) {
    add(stats_.io_errors);
    log_->error("nack failed: {}", e.what());
    return false;
  }
}

std::size_t Spool::pending_records() const {
  std::lock_guard lk(mu_);
  return pending_;
}

std::size_t Spool::in_flight_records() const {
  std::lock_guard lk(mu_);
  return in_flight_;
}

std::uint64_t Spool::bytes() const {
  std::lock_guard lk(mu_);
  return bytes_;
}

}  // namespace spanrelay
