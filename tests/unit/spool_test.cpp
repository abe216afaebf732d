// Disk spool: order, acks across restarts, rotation, recovery from torn and corrupt segments
// (including fuzzing), max_bytes policies, max_age, fsync policies, I/O errors, threads.
#include <catch2/catch.hpp>

#include <sys/resource.h>
#include <sys/statvfs.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <random>
#include <set>
#include <thread>

#include "spool/crc32c.hpp"
#include "spool/format.hpp"
#include "spool/spool.hpp"
#include "unit/temp_dir.hpp"

using namespace spanrelay;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

namespace {

using testing::TempDir;

struct FakeClock {
  std::chrono::system_clock::time_point now =
      std::chrono::system_clock::time_point(std::chrono::milliseconds(1'700'000'000'000));
};

SpoolOptions options_for(const TempDir& dir, SpoolFsync fsync = SpoolFsync::kNever) {
  SpoolOptions o;
  o.path = dir.str();
  o.fsync = fsync;
  o.fsync_interval = 1h;  // the background flusher stays out of the way unless a test wants it
  return o;
}

std::string payload(int i, std::size_t size = 100) {
  std::string p = "payload-" + std::to_string(i) + "-";
  while (p.size() < size) {
    p += static_cast<char>('a' + (p.size() * 7 + static_cast<std::size_t>(i)) % 26);
  }
  p.resize(size);
  return p;
}

constexpr std::size_t kRec = spool::kHeaderSize + 100;  // on-disk size of payload(i)

// Takes every pending record (acking each when asked); returns their payloads in order.
std::vector<std::string> drain(Spool& s, bool ack = true) {
  std::vector<std::string> out;
  while (auto r = s.next()) {
    out.push_back(r->payload);
    if (ack) {
      REQUIRE(s.ack(r->id));
    }
  }
  return out;
}

std::vector<fs::path> files_with(const fs::path& dir, const std::string& ext) {
  std::vector<fs::path> out;
  for (const auto& e : fs::directory_iterator(dir)) {
    if (e.path().extension() == ext) {
      out.push_back(e.path());
    }
  }
  std::sort(out.begin(), out.end());
  return out;
}

std::uint64_t segment_bytes_on_disk(const fs::path& dir) {
  std::uint64_t n = 0;
  for (const auto& p : files_with(dir, ".seg")) {
    n += fs::file_size(p);
  }
  return n;
}

void copy_dir(const fs::path& from, const fs::path& to) {
  fs::create_directories(to);
  fs::copy(from, to, fs::copy_options::recursive | fs::copy_options::overwrite_existing);
}

std::string read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

void write_file(const fs::path& p, const std::string& data) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out.write(data.data(), static_cast<std::streamsize>(data.size()));
  REQUIRE(out.good());
}

std::vector<std::string> payloads(int from, int to) {
  std::vector<std::string> v;
  for (int i = from; i < to; ++i) {
    v.push_back(payload(i));
  }
  return v;
}

}  // namespace

TEST_CASE("crc32c matches the standard check value, in both implementations", "[spool]") {
  REQUIRE(spool::crc32c("123456789") == 0xE3069283u);
  REQUIRE(spool::crc32c_portable("123456789", 9) == 0xE3069283u);
  REQUIRE(spool::crc32c("") == 0u);
  REQUIRE(spool::crc32c(std::string(32, '\0')) == 0x8A9136AAu);  // RFC 3720 B.4
  std::mt19937 rng(7);
  std::string data(300, '\0');
  for (char& c : data) {
    c = static_cast<char>(rng());
  }
  for (std::size_t start = 0; start < 9; ++start) {
    for (std::size_t len = 0; len + start <= data.size(); len += 13) {
      const char* p = data.data() + start;
      const std::uint32_t whole = spool::crc32c(p, len);
      REQUIRE(whole == spool::crc32c_portable(p, len));
      const std::size_t half = len / 2;
      REQUIRE(spool::crc32c(p + half, len - half, spool::crc32c(p, half)) == whole);
    }
  }
}

TEST_CASE("records come back oldest first, in flight until acked", "[spool]") {
  TempDir dir;
  auto s = Spool::open(options_for(dir), "grafana");
  for (int i = 0; i < 5; ++i) {
    REQUIRE(s->append(payload(i), static_cast<std::uint32_t>(i + 1)) == AppendStatus::kOk);
  }
  REQUIRE(s->pending_records() == 5);
  REQUIRE(get(s->stats().records) == 5);
  std::vector<std::uint64_t> ids;
  for (int i = 0; i < 5; ++i) {
    auto r = s->next();
    REQUIRE(r);
    REQUIRE(r->payload == payload(i));
    REQUIRE(r->spans == static_cast<std::uint32_t>(i + 1));
    ids.push_back(r->id);
  }
  REQUIRE_FALSE(s->next());  // everything is in flight
  REQUIRE(s->in_flight_records() == 5);
  REQUIRE(std::is_sorted(ids.begin(), ids.end()));
  for (auto id : ids) {
    REQUIRE(s->ack(id));
    REQUIRE_FALSE(s->ack(id));  // twice: no effect
  }
  REQUIRE(s->pending_records() == 0);
  REQUIRE(s->in_flight_records() == 0);
  REQUIRE(get(s->stats().records) == 0);
  REQUIRE(get(s->stats().appended_records) == 5);
  REQUIRE(get(s->stats().acked_records) == 5);
  REQUIRE_FALSE(s->ack(12345));
}

TEST_CASE("replay: newest_first hands out the latest record first", "[spool]") {
  TempDir dir;
  auto o = options_for(dir);
  o.replay = SpoolReplay::kNewestFirst;
  o.segment_bytes = 3 * kRec;
  auto s = Spool::open(o, "e");
  for (int i = 0; i < 7; ++i) {
    REQUIRE(s->append(payload(i), 1) == AppendStatus::kOk);
  }
  auto r = s->next();
  REQUIRE(r->payload == payload(6));
  REQUIRE(s->append(payload(7), 1) == AppendStatus::kOk);
  std::vector<std::string> expected{payload(7), payload(5), payload(4), payload(3),
                                    payload(2), payload(1), payload(0)};
  REQUIRE(drain(*s) == expected);
  REQUIRE(s->ack(r->id));
}

TEST_CASE("nack returns a record for redelivery with the same id", "[spool]") {
  TempDir dir;
  auto s = Spool::open(options_for(dir), "e");
  for (int i = 0; i < 3; ++i) {
    REQUIRE(s->append(payload(i), 2) == AppendStatus::kOk);
  }
  auto a = s->next();
  auto b = s->next();
  REQUIRE(a->payload == payload(0));
  REQUIRE(b->payload == payload(1));
  REQUIRE(s->nack(a->id));
  REQUIRE_FALSE(s->nack(a->id));  // not in flight any more
  REQUIRE(s->pending_records() == 2);
  auto again = s->next();
  REQUIRE(again->id == a->id);
  REQUIRE(again->payload == payload(0));
  REQUIRE(s->nack(b->id));
  REQUIRE(s->ack(again->id));
  REQUIRE(drain(*s) == payloads(1, 3));
}

TEST_CASE("segments rotate, and fully acked ones are deleted", "[spool]") {
  TempDir dir;
  auto o = options_for(dir);
  o.segment_bytes = 2 * kRec + 10;  // two records per segment
  auto s = Spool::open(o, "e");
  const fs::path sdir = s->directory();
  for (int i = 0; i < 10; ++i) {
    REQUIRE(s->append(payload(i), 1) == AppendStatus::kOk);
  }
  REQUIRE(files_with(sdir, ".seg").size() == 5);
  REQUIRE(s->bytes() == 10 * kRec);
  REQUIRE(segment_bytes_on_disk(sdir) == s->bytes());
  std::vector<SpoolRecord> recs;
  while (auto r = s->next()) {
    recs.push_back(std::move(*r));
  }
  REQUIRE(recs.size() == 10);
  const auto first = files_with(sdir, ".seg").front();
  REQUIRE(s->ack(recs[0].id));
  REQUIRE(fs::exists(first));  // half acked: kept, with its ack file
  REQUIRE(files_with(sdir, ".ack").size() == 1);
  REQUIRE(s->ack(recs[1].id));
  REQUIRE_FALSE(fs::exists(first));
  REQUIRE(files_with(sdir, ".ack").empty());
  REQUIRE(s->bytes() == 8 * kRec);
  REQUIRE(get(s->stats().bytes) == 8 * kRec);
  for (std::size_t i = 2; i < recs.size(); ++i) {
    REQUIRE(s->ack(recs[i].id));
  }
  // The segment being written to stays until it is rotated away.
  REQUIRE(files_with(sdir, ".seg").size() == 1);
  REQUIRE(segment_bytes_on_disk(sdir) == s->bytes());
  REQUIRE(s->append(payload(10), 1) == AppendStatus::kOk);  // rotates; the old one goes
  REQUIRE(s->append(payload(11), 1) == AppendStatus::kOk);
  REQUIRE(files_with(sdir, ".seg").size() == 1);
  REQUIRE(s->bytes() == 2 * kRec);
  REQUIRE(drain(*s) == payloads(10, 12));
}

TEST_CASE("reopen: unacked records come back, acked ones do not", "[spool]") {
  TempDir dir;
  auto o = options_for(dir);
  o.segment_bytes = 3 * kRec;
  std::vector<std::uint64_t> ids;
  {
    auto s = Spool::open(o, "e");
    for (int i = 0; i < 8; ++i) {
      REQUIRE(s->append(payload(i), static_cast<std::uint32_t>(i)) == AppendStatus::kOk);
    }
    for (int i = 0; i < 8; ++i) {
      ids.push_back(s->next()->id);
    }
    // Segments [0 1 2] [3 4 5] [6 7]. Delivered: 0, 2, 3, 4, 6. In flight at close: 1, 5, 7.
    for (int i : {0, 2, 3, 4, 6}) {
      REQUIRE(s->ack(ids[static_cast<std::size_t>(i)]));
    }
  }
  {
    auto s = Spool::open(o, "e");
    REQUIRE(get(s->stats().replayed_records) == 3);
    REQUIRE(s->pending_records() == 3);
    auto r = s->next();
    REQUIRE(r->id == ids[1]);  // ids are stable across restarts
    REQUIRE(r->payload == payload(1));
    REQUIRE(r->spans == 1);
    REQUIRE(s->ack(r->id));
    REQUIRE(s->append(payload(8), 8) == AppendStatus::kOk);
  }
  auto s = Spool::open(o, "e");
  REQUIRE(drain(*s) == std::vector<std::string>{payload(5), payload(7), payload(8)});
  REQUIRE(get(s->stats().corrupt_records) == 0);
  REQUIRE(get(s->stats().torn_tails) == 0);
}

TEST_CASE("kill -9: a copy of the directory taken at any moment recovers", "[spool]") {
  TempDir dir;
  TempDir copies;
  auto o = options_for(dir);
  o.segment_bytes = 4 * kRec;
  auto s = Spool::open(o, "e");
  std::mt19937 rng(1);
  std::set<std::string> live;
  std::map<std::uint64_t, std::string> in_flight;
  for (int i = 0; i < 40; ++i) {
    REQUIRE(s->append(payload(i), 1) == AppendStatus::kOk);
    live.insert(payload(i));
    if (rng() % 2 == 0) {
      if (auto r = s->next()) {
        in_flight[r->id] = r->payload;
      }
    }
    if (!in_flight.empty() && rng() % 3 == 0) {
      auto it = in_flight.begin();
      std::advance(it, rng() % in_flight.size());
      REQUIRE(s->ack(it->first));
      live.erase(it->second);
      in_flight.erase(it);
    }
    // The process dies here: what the kernel has is what the next start sees.
    const fs::path copy = copies.path() / std::to_string(i);
    copy_dir(dir.path(), copy);
    auto o2 = o;
    o2.path = copy.string();
    auto recovered = Spool::open(o2, "e");
    auto got = drain(*recovered);
    REQUIRE(std::set<std::string>(got.begin(), got.end()) == live);
    REQUIRE(got.size() == live.size());
    REQUIRE(get(recovered->stats().corrupt_records) == 0);
  }
}

TEST_CASE("kill -9 mid-append: a torn last record is truncated at every cut", "[spool]") {
  TempDir dir;
  auto o = options_for(dir);
  {
    auto s = Spool::open(o, "e");
    for (int i = 0; i < 5; ++i) {
      REQUIRE(s->append(payload(i), 1) == AppendStatus::kOk);
    }
  }
  const fs::path sdir = dir.path() / "e";
  const auto segs = files_with(sdir, ".seg");
  REQUIRE(segs.size() == 1);
  const std::string full = read_file(segs[0]);
  REQUIRE(full.size() == 5 * kRec);
  const std::size_t start = 4 * kRec;
  for (std::size_t cut = start; cut <= full.size(); ++cut) {
    TempDir t;
    copy_dir(sdir, t.path() / "e");
    fs::resize_file(t.path() / "e" / segs[0].filename(), cut);
    auto o2 = o;
    o2.path = t.str();
    auto s = Spool::open(o2, "e");
    const bool torn = cut != start && cut != full.size();
    REQUIRE(get(s->stats().torn_tails) == (torn ? 1u : 0u));
    REQUIRE(get(s->stats().corrupt_records) == 0);
    REQUIRE(s->bytes() == (cut == full.size() ? full.size() : start));
    REQUIRE(fs::file_size(t.path() / "e" / segs[0].filename()) == s->bytes());
    // Appending after recovery goes to a new segment; everything complete is delivered.
    REQUIRE(s->append(payload(99), 1) == AppendStatus::kOk);
    auto expected = payloads(0, cut == full.size() ? 5 : 4);
    expected.push_back(payload(99));
    REQUIRE(drain(*s) == expected);
  }
}

TEST_CASE("a corrupt record in the middle is skipped and counted", "[spool]") {
  TempDir dir;
  auto o = options_for(dir);
  {
    auto s = Spool::open(o, "e");
    for (int i = 0; i < 5; ++i) {
      REQUIRE(s->append(payload(i), 1) == AppendStatus::kOk);
    }
  }
  const fs::path sdir = dir.path() / "e";
  const fs::path seg = files_with(sdir, ".seg").at(0);
  const std::string original = read_file(seg);
  // A payload byte, a header byte (resync on the next header), the last record's header.
  const std::size_t positions[] = {2 * kRec + 50, 2 * kRec + 5, 4 * kRec + 3};
  for (std::size_t pos : positions) {
    std::string bad = original;
    bad[pos] = static_cast<char>(bad[pos] ^ 0x40);
    write_file(seg, bad);
    auto s = Spool::open(o, "e");
    REQUIRE(get(s->stats().corrupt_records) == 1);
    REQUIRE(get(s->stats().corrupt_bytes) == kRec);
    REQUIRE(get(s->stats().torn_tails) == 0);
    std::vector<std::string> expected = payloads(0, 5);
    expected.erase(expected.begin() + static_cast<std::ptrdiff_t>(pos / kRec));
    REQUIRE(drain(*s, false) == expected);  // not acked: the segment stays for the next case
  }
  // A record that changes on disk after open is caught when read back.
  write_file(seg, original);
  auto s = Spool::open(o, "e");
  std::string bad = original;
  bad[kRec + 60] = 'X';
  write_file(seg, bad);  // same inode? ofstream truncates in place: yes
  auto got = drain(*s);
  REQUIRE(get(s->stats().corrupt_records) == 1);
  REQUIRE(got == std::vector<std::string>{payload(0), payload(2), payload(3), payload(4)});
}

TEST_CASE("a torn ack file keeps its whole entries and stays aligned", "[spool]") {
  TempDir dir;
  auto o = options_for(dir);
  {
    auto s = Spool::open(o, "e");
    for (int i = 0; i < 6; ++i) {
      REQUIRE(s->append(payload(i), 1) == AppendStatus::kOk);
    }
    for (int i = 0; i < 3; ++i) {
      REQUIRE(s->ack(s->next()->id));
    }
  }
  const fs::path ack = files_with(dir.path() / "e", ".ack").at(0);
  REQUIRE(fs::file_size(ack) == 3 * spool::kAckEntrySize);
  fs::resize_file(ack, 3 * spool::kAckEntrySize - 3);  // the third ack was torn
  {
    auto s = Spool::open(o, "e");
    REQUIRE(s->pending_records() == 4);
    auto r = s->next();
    REQUIRE(r->payload == payload(2));
    REQUIRE(s->ack(r->id));
    REQUIRE(s->ack(s->next()->id));
  }
  auto s = Spool::open(o, "e");
  REQUIRE(drain(*s) == payloads(4, 6));
}

TEST_CASE("fuzz: mutated segment and ack files never crash recovery", "[spool][fuzz]") {
  TempDir dir;
  auto o = options_for(dir);
  o.segment_bytes = 6 * kRec;
  std::set<std::string> written;
  {
    auto s = Spool::open(o, "e");
    for (int i = 0; i < 20; ++i) {
      const std::string p = payload(i, 20 + static_cast<std::size_t>(i) * 9);
      written.insert(p);
      REQUIRE(s->append(p, 1) == AppendStatus::kOk);
    }
    for (int i = 0; i < 4; ++i) {
      auto r = s->next();
      REQUIRE(s->ack(r->id));
    }
  }
  const fs::path sdir = dir.path() / "e";
  std::vector<fs::path> files = files_with(sdir, ".seg");
  for (const auto& p : files_with(sdir, ".ack")) {
    files.push_back(p);
  }
  std::mt19937 rng(20240601);
  TempDir work;
  for (int iter = 0; iter < 1000; ++iter) {
    const fs::path copy = work.path() / "e";
    fs::remove_all(copy);
    copy_dir(sdir, copy);
    const int mutations = 1 + static_cast<int>(rng() % 4);
    for (int k = 0; k < mutations; ++k) {
      const fs::path target = copy / files[rng() % files.size()].filename();
      std::string data = read_file(target);
      const std::size_t pos = data.empty() ? 0 : rng() % data.size();
      switch (rng() % 6) {
        case 0:  // flip a bit
          if (!data.empty()) {
            data[pos] = static_cast<char>(data[pos] ^ (1 << (rng() % 8)));
          }
          break;
        case 1:  // random byte
          if (!data.empty()) {
            data[pos] = static_cast<char>(rng());
          }
          break;
        case 2:  // truncate
          data.resize(pos);
          break;
        case 3:  // append garbage, sometimes starting with a magic
          if (rng() % 2 == 0) {
            data += "SRS1";
          }
          for (unsigned n = rng() % 64; n > 0; --n) {
            data += static_cast<char>(rng());
          }
          break;
        case 4:  // insert bytes
          data.insert(pos, std::string(1 + rng() % 40, static_cast<char>(rng())));
          break;
        default:  // zero a range
          for (std::size_t i = pos; i < data.size() && i < pos + 1 + rng() % 100; ++i) {
            data[i] = '\0';
          }
          break;
      }
      write_file(target, data);
    }
    auto o2 = o;
    o2.path = work.str();
    auto s = Spool::open(o2, "e");
    std::set<std::string> seen;
    while (auto r = s->next()) {
      REQUIRE(written.contains(r->payload));
      REQUIRE(seen.insert(r->payload).second);
      REQUIRE(s->ack(r->id));
    }
    REQUIRE(s->bytes() == segment_bytes_on_disk(copy));
    REQUIRE(s->append("after", 1) == AppendStatus::kOk);
    s.reset();
    s = Spool::open(o2, "e");
    REQUIRE(drain(*s) == std::vector<std::string>{"after"});
  }
}

TEST_CASE("fuzz: random garbage segment files never crash recovery", "[spool][fuzz]") {
  TempDir dir;
  const fs::path sdir = dir.path() / "e";
  fs::create_directories(sdir);
  std::mt19937 rng(99);
  const auto header = spool::encode_header({10, 1, 0, spool::crc32c("0123456789")});
  for (int iter = 0; iter < 300; ++iter) {
    for (int f = 1; f <= 3; ++f) {
      std::string data(rng() % 2000, '\0');
      for (char& c : data) {
        c = static_cast<char>(rng());
      }
      if (rng() % 2 == 0 && data.size() > 100) {  // plant valid headers with wrong payloads
        std::copy(header.begin(), header.end(), data.begin() + rng() % 50);
      }
      if (rng() % 3 == 0) {  // and sometimes a valid record
        data += std::string(header.begin(), header.end()) + "0123456789";
      }
      char name[32];
      std::snprintf(name, sizeof name, "%020d.seg", f);
      write_file(sdir / name, data);
      std::snprintf(name, sizeof name, "%020d.ack", f);
      write_file(sdir / name, data.substr(0, rng() % 64));
    }
    auto s = Spool::open(options_for(dir), "e");
    while (auto r = s->next()) {
      REQUIRE(r->payload == "0123456789");
      REQUIRE(s->ack(r->id));
    }
    s.reset();
    for (const auto& p : fs::directory_iterator(sdir)) {
      fs::remove(p.path());
    }
  }
}

TEST_CASE("max_bytes with drop_oldest drops whole old segments, never in-flight ones",
          "[spool]") {
  TempDir dir;
  auto o = options_for(dir);
  o.max_bytes = 9 * kRec + 50;
  o.segment_bytes = 2 * kRec;  // <= max_bytes / 4
  auto s = Spool::open(o, "e");
  const fs::path sdir = s->directory();
  for (int i = 0; i < 9; ++i) {
    REQUIRE(s->append(payload(i), static_cast<std::uint32_t>(i + 1)) == AppendStatus::kOk);
  }
  REQUIRE(get(s->stats().dropped_records) == 0);
  const auto oldest = files_with(sdir, ".seg").front();
  REQUIRE(s->append(payload(9), 10) == AppendStatus::kOk);
  REQUIRE_FALSE(fs::exists(oldest));
  REQUIRE(get(s->stats().dropped_records) == 2);
  REQUIRE(get(s->stats().dropped_spans) == 1 + 2);
  REQUIRE(s->bytes() <= o.max_bytes);
  REQUIRE(segment_bytes_on_disk(sdir) == s->bytes());
  // Record 2 goes in flight: its segment is skipped, the next one (4, 5) goes instead.
  auto r = s->next();
  REQUIRE(r->payload == payload(2));
  REQUIRE(s->append(payload(10), 11) == AppendStatus::kOk);  // still fits
  REQUIRE(get(s->stats().dropped_records) == 2);
  REQUIRE(s->append(payload(11), 12) == AppendStatus::kOk);
  REQUIRE(get(s->stats().dropped_records) == 4);
  REQUIRE(get(s->stats().dropped_spans) == 1 + 2 + 5 + 6);
  REQUIRE(s->ack(r->id));
  std::vector<std::string> expected{payload(3), payload(6),  payload(7), payload(8),
                                    payload(9), payload(10), payload(11)};
  REQUIRE(drain(*s) == expected);
  REQUIRE(s->bytes() <= o.max_bytes);
}

TEST_CASE("max_bytes with reject returns kFull until space is freed", "[spool]") {
  TempDir dir;
  auto o = options_for(dir);
  o.max_bytes = 4 * kRec;
  o.segment_bytes = kRec;
  o.on_full = SpoolOnFull::kReject;
  auto s = Spool::open(o, "e");
  for (int i = 0; i < 4; ++i) {
    REQUIRE(s->append(payload(i), 1) == AppendStatus::kOk);
  }
  std::string error;
  REQUIRE(s->append(payload(4), 1, &error) == AppendStatus::kFull);
  REQUIRE_THAT(error, Catch::Contains("full"));
  REQUIRE(get(s->stats().dropped_records) == 0);
  REQUIRE(s->ack(s->next()->id));  // its segment goes
  REQUIRE(s->append(payload(4), 1) == AppendStatus::kOk);
  REQUIRE(drain(*s) == payloads(1, 5));
}

TEST_CASE("a record larger than max_bytes is refused", "[spool]") {
  TempDir dir;
  auto o = options_for(dir);
  o.max_bytes = 1000;
  auto s = Spool::open(o, "e");
  std::string error;
  REQUIRE(s->append(std::string(1000 - spool::kHeaderSize + 1, 'x'), 1, &error) ==
          AppendStatus::kTooLarge);
  REQUIRE_FALSE(error.empty());
  REQUIRE(s->append(std::string(1000 - spool::kHeaderSize, 'x'), 1) == AppendStatus::kOk);
  REQUIRE(s->bytes() == 1000);
  REQUIRE(s->append("", 0) == AppendStatus::kOk);  // drop_oldest makes room for it
  REQUIRE(get(s->stats().dropped_records) == 1);
  REQUIRE(drain(*s) == std::vector<std::string>{""});
}

TEST_CASE("max_age drops old records when reached and at open", "[spool]") {
  TempDir dir;
  FakeClock clock;
  auto o = options_for(dir);
  o.max_age = 10s;
  o.clock = [&clock] { return clock.now; };
  o.segment_bytes = 2 * kRec;
  const auto t0 = clock.now;
  {
    auto s = Spool::open(o, "e");
    for (int i = 0; i < 3; ++i) {
      REQUIRE(s->append(payload(i), 2) == AppendStatus::kOk);
    }
    clock.now = t0 + 8s;
    for (int i = 3; i < 6; ++i) {
      REQUIRE(s->append(payload(i), 3) == AppendStatus::kOk);
    }
    clock.now = t0 + 12s;
    auto r = s->next();
    REQUIRE(r->payload == payload(3));
    REQUIRE(r->written == t0 + 8s);
    REQUIRE(get(s->stats().dropped_records) == 3);
    REQUIRE(get(s->stats().dropped_spans) == 6);
    REQUIRE(s->ack(r->id));
  }
  clock.now = t0 + 30s;
  auto s = Spool::open(o, "e");
  REQUIRE(get(s->stats().dropped_records) == 2);
  REQUIRE(get(s->stats().dropped_spans) == 6);
  REQUIRE(get(s->stats().replayed_records) == 0);
  REQUIRE_FALSE(s->next());
  REQUIRE(files_with(s->directory(), ".seg").empty());
}

TEST_CASE("max_age at open keeps the young records of a partly expired segment", "[spool]") {
  TempDir dir;
  FakeClock clock;
  auto o = options_for(dir);
  o.max_age = 10s;
  o.clock = [&clock] { return clock.now; };
  {
    auto s = Spool::open(o, "e");
    REQUIRE(s->append(payload(0), 4) == AppendStatus::kOk);
    clock.now += 5s;
    REQUIRE(s->append(payload(1), 4) == AppendStatus::kOk);
  }
  clock.now += 7s;
  {
    auto s = Spool::open(o, "e");
    REQUIRE(get(s->stats().dropped_records) == 1);
    REQUIRE(s->pending_records() == 1);
  }
  auto s = Spool::open(o, "e");  // the drop was persisted: not counted again
  REQUIRE(get(s->stats().dropped_records) == 0);
  REQUIRE(drain(*s) == payloads(1, 2));
}

// Found by fuzzing (tests/fuzz/fuzz_spool.cpp): a record header with a valid CRC can hold any
// 64-bit write time; converting it to a time_point, and now - written for max_age, overflowed.
TEST_CASE("records with extreme write times are replayed without overflow", "[spool]") {
  TempDir dir;
  FakeClock clock;
  const std::int64_t now_ms = 1'700'000'000'000;
  const std::vector<std::int64_t> times = {std::numeric_limits<std::int64_t>::min(), -5,
                                           now_ms - 60'000, now_ms + 60'000,
                                           std::numeric_limits<std::int64_t>::max()};
  const fs::path sdir = dir.path() / "e";
  fs::create_directories(sdir);
  std::string segment;
  for (std::size_t i = 0; i < times.size(); ++i) {
    const std::string p = payload(static_cast<int>(i));
    const auto h = spool::encode_header(
        {static_cast<std::uint32_t>(p.size()), 1, times[i], spool::crc32c(p)});
    segment += std::string(h.begin(), h.end()) + p;
  }
  write_file(sdir / "00000000000000000001.seg", segment);
  auto o = options_for(dir);
  o.clock = [&clock] { return clock.now; };
  {
    // No max_age: all are replayed; write times read within [epoch, now].
    auto s = Spool::open(o, "e");
    std::vector<std::chrono::system_clock::time_point> written;
    while (auto r = s->next()) {
      written.push_back(r->written);
    }
    const std::chrono::system_clock::time_point epoch{};
    REQUIRE(written == std::vector<std::chrono::system_clock::time_point>{
                           epoch, epoch, clock.now - 60s, clock.now, clock.now});
  }
  // max_age 1h: the two before the epoch are an age of 53 years or more, dropped; the future
  // ones are not old.
  o.max_age = 1h;
  auto s = Spool::open(o, "e");
  REQUIRE(get(s->stats().dropped_records) == 2);
  REQUIRE(drain(*s) == std::vector<std::string>{payload(2), payload(3), payload(4)});
}

TEST_CASE("fsync: always syncs every append and ack", "[spool][fsync]") {
  TempDir dir;
  auto s = Spool::open(options_for(dir, SpoolFsync::kAlways), "e");
  REQUIRE(s->append(payload(0), 1) == AppendStatus::kOk);
  const auto after_first = get(s->stats().syncs);
  REQUIRE(after_first >= 2);  // the segment, and the directory that now lists it
  REQUIRE(s->append(payload(1), 1) == AppendStatus::kOk);
  REQUIRE(get(s->stats().syncs) == after_first + 1);
  const auto before_ack = get(s->stats().syncs);
  REQUIRE(s->ack(s->next()->id));
  REQUIRE(get(s->stats().syncs) >= before_ack + 1);
  REQUIRE(get(s->stats().io_errors) == 0);
}

TEST_CASE("ack_all acknowledges many records with one sync", "[spool][fsync]") {
  TempDir dir;
  {
    auto s = Spool::open(options_for(dir, SpoolFsync::kAlways), "e");
    std::vector<std::uint64_t> ids;
    for (int i = 0; i < 6; ++i) {
      REQUIRE(s->append(payload(i), 1) == AppendStatus::kOk);
    }
    REQUIRE(s->ack(s->next()->id));  // creates the ack file (and syncs the directory)
    for (int i = 0; i < 4; ++i) {
      ids.push_back(s->next()->id);
    }
    ids.push_back(ids.front());  // an id acked twice counts once
    const auto before = get(s->stats().syncs);
    REQUIRE(s->ack_all(ids) == 4);
    REQUIRE(get(s->stats().syncs) == before + 1);
    REQUIRE(get(s->stats().acked_records) == 5);
  }
  auto reopened = Spool::open(options_for(dir, SpoolFsync::kAlways), "e");
  REQUIRE(reopened->pending_records() == 1);
}

TEST_CASE("fsync: interval syncs once the interval has passed", "[spool][fsync]") {
  TempDir dir;
  FakeClock clock;
  auto o = options_for(dir, SpoolFsync::kInterval);
  o.clock = [&clock] { return clock.now; };
  auto s = Spool::open(o, "e");
  REQUIRE(s->append(payload(0), 1) == AppendStatus::kOk);
  REQUIRE(s->append(payload(1), 1) == AppendStatus::kOk);
  REQUIRE(get(s->stats().syncs) == 0);
  clock.now += 2h;
  REQUIRE(s->append(payload(2), 1) == AppendStatus::kOk);
  const auto synced = get(s->stats().syncs);
  REQUIRE(synced >= 2);  // segment + directory
  REQUIRE(s->append(payload(3), 1) == AppendStatus::kOk);
  REQUIRE(get(s->stats().syncs) == synced);
  s->sync();
  REQUIRE(get(s->stats().syncs) == synced + 1);
  s->sync();  // nothing new: nothing to do
  REQUIRE(get(s->stats().syncs) == synced + 1);
}

TEST_CASE("fsync: interval has a background flusher", "[spool][fsync]") {
  TempDir dir;
  auto o = options_for(dir, SpoolFsync::kInterval);
  o.fsync_interval = 5ms;
  auto s = Spool::open(o, "e");
  REQUIRE(s->append(payload(0), 1) == AppendStatus::kOk);
  // Wait (bounded) for the flusher's effect; its timing is not part of the assertion.
  const auto deadline = std::chrono::steady_clock::now() + 20s;
  while (get(s->stats().syncs) < 2 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(1ms);
  }
  REQUIRE(get(s->stats().syncs) >= 2);
}

TEST_CASE("fsync: never leaves it to the kernel, sync() still works", "[spool][fsync]") {
  TempDir dir;
  auto s = Spool::open(options_for(dir, SpoolFsync::kNever), "e");
  REQUIRE(s->append(payload(0), 1) == AppendStatus::kOk);
  REQUIRE(s->ack(s->next()->id));
  REQUIRE(s->append(payload(1), 1) == AppendStatus::kOk);
  REQUIRE(get(s->stats().syncs) == 0);
  s->sync();
  REQUIRE(get(s->stats().syncs) >= 2);
}

TEST_CASE("open fails clearly on a path that cannot be a directory", "[spool]") {
  TempDir dir;
  write_file(dir.path() / "file", "x");
  SpoolOptions o;
  o.path = (dir.path() / "file" / "spool").string();
  try {
    Spool::open(o, "e");
    FAIL("open should have thrown");
  } catch (const std::runtime_error& e) {
    REQUIRE_THAT(e.what(), Catch::Contains(o.path));
  }
  o.path = dir.str();
  REQUIRE_THROWS_WITH(Spool::open(o, "../x"), Catch::Contains("../x"));
  REQUIRE_THROWS(Spool::open(o, ""));
  auto s = Spool::open(o, "e");
  REQUIRE_THROWS_WITH(Spool::open(o, "e"), Catch::Contains("in use"));
  if (::geteuid() != 0) {  // root may write anywhere
    fs::create_directories(dir.path() / "ro");
    fs::permissions(dir.path() / "ro", fs::perms::owner_read | fs::perms::owner_exec);
    o.path = (dir.path() / "ro").string();
    REQUIRE_THROWS_WITH(Spool::open(o, "e"), Catch::Contains(o.path));
    fs::permissions(dir.path() / "ro", fs::perms::owner_all);
  }
}

TEST_CASE("open leaves unknown files alone and removes empty segments", "[spool]") {
  TempDir dir;
  const fs::path sdir = dir.path() / "e";
  fs::create_directories(sdir);
  write_file(sdir / "README", "mine");
  write_file(sdir / "00000000000000000003.seg", "");
  write_file(sdir / "00000000000000000002.ack", "orphan!!");
  auto s = Spool::open(options_for(dir), "e");
  REQUIRE(fs::exists(sdir / "README"));
  REQUIRE_FALSE(fs::exists(sdir / "00000000000000000003.seg"));
  REQUIRE_FALSE(fs::exists(sdir / "00000000000000000002.ack"));
  REQUIRE(s->append("x", 1) == AppendStatus::kOk);
  REQUIRE(fs::exists(sdir / "00000000000000000004.seg"));  // numbering continues
}

namespace {
// Lowers the file size limit for the current process (writes past it fail with EFBIG) and
// restores it on destruction.
class FileSizeLimit {
 public:
  explicit FileSizeLimit(rlim_t bytes) {
    REQUIRE(::getrlimit(RLIMIT_FSIZE, &saved_) == 0);
    old_handler_ = std::signal(SIGXFSZ, SIG_IGN);
    rlimit l = saved_;
    l.rlim_cur = bytes;
    REQUIRE(::setrlimit(RLIMIT_FSIZE, &l) == 0);
  }
  ~FileSizeLimit() {
    ::setrlimit(RLIMIT_FSIZE, &saved_);
    std::signal(SIGXFSZ, old_handler_);
  }
  FileSizeLimit(const FileSizeLimit&) = delete;
  FileSizeLimit& operator=(const FileSizeLimit&) = delete;

 private:
  rlimit saved_{};
  void (*old_handler_)(int) = nullptr;
};
}  // namespace

TEST_CASE("a failing write returns kIoError and leaves no partial record", "[spool]") {
  TempDir dir;
  auto s = Spool::open(options_for(dir), "e");
  int ok = 0;
  std::string error;
  {
    FileSizeLimit limit(3 * kRec + 40);
    AppendStatus st = AppendStatus::kOk;
    while ((st = s->append(payload(ok), 1, &error)) == AppendStatus::kOk) {
      ++ok;
      REQUIRE(ok < 10);
    }
    REQUIRE(st == AppendStatus::kIoError);
  }
  REQUIRE(ok == 3);
  REQUIRE_THAT(error, Catch::Contains("File too large"));
  REQUIRE(get(s->stats().io_errors) >= 1);
  REQUIRE(s->bytes() == 3 * kRec);
  REQUIRE(segment_bytes_on_disk(s->directory()) == 3 * kRec);
  REQUIRE(s->append(payload(3), 1) == AppendStatus::kOk);  // a new segment
  s.reset();
  auto r = Spool::open(options_for(dir), "e");
  REQUIRE(get(r->stats().torn_tails) == 0);
  REQUIRE(get(r->stats().corrupt_records) == 0);
  REQUIRE(drain(*r) == payloads(0, 4));
}

namespace {

// A disk of `size` bytes under one spool directory, through the spool's syscall seam: a write
// that does not fit writes what still fits and then fails with `err` (ENOSPC or EDQUOT), as a
// full filesystem does; statvfs reports the room left. Everything in the directory counts.
struct SmallDisk {
  fs::path dir;
  std::uint64_t size = 0;
  int err = ENOSPC;
  int failures = 0;  // writes refused for want of room

  std::uint64_t used() const {
    std::uint64_t n = 0;
    std::error_code ec;
    for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
      if (it->is_regular_file()) {
        n += it->file_size();
      }
    }
    return n;
  }
  std::uint64_t room() const { return size > used() ? size - used() : 0; }

  void install(SpoolOptions& o) {
    o.syscalls.writev = [this](int fd, const iovec* iov, int count) -> ssize_t {
      std::uint64_t left = room();
      if (left == 0) {
        ++failures;
        errno = err;
        return -1;
      }
      std::vector<iovec> fit;
      for (int i = 0; i < count && left > 0; ++i) {
        const std::size_t n = std::min<std::uint64_t>(iov[i].iov_len, left);
        fit.push_back(iovec{iov[i].iov_base, n});
        left -= n;
      }
      return ::writev(fd, fit.data(), static_cast<int>(fit.size()));
    };
    o.syscalls.statvfs = [this](const char*, struct statvfs* out) {
      *out = {};
      out->f_frsize = 1;
      out->f_bsize = 1;
      out->f_bavail = room();
      return 0;
    };
  }
};

}  // namespace

TEST_CASE("a full disk (ENOSPC, EDQUOT) with drop_oldest deletes the oldest segment and retries",
          "[spool][disk_full]") {
  const int err = GENERATE(ENOSPC, EDQUOT);
  TempDir dir;
  auto o = options_for(dir);
  o.max_bytes = 1ull << 30;  // far away: the disk fills first
  o.segment_bytes = 2 * kRec;  // under the disk's size / 4, which also bounds it
  SmallDisk disk{dir.path() / "e", 9 * kRec + 50, err};
  disk.install(o);
  auto s = Spool::open(o, "e");
  for (int i = 0; i < 9; ++i) {  // segments [0 1] [2 3] [4 5] [6 7] [8]
    REQUIRE(s->append(payload(i), static_cast<std::uint32_t>(i + 1)) == AppendStatus::kOk);
  }
  REQUIRE(files_with(s->directory(), ".seg").size() == 5);
  REQUIRE(disk.failures == 0);
  const auto oldest = files_with(s->directory(), ".seg").front();
  // Record 9 fits in [8]'s segment by size, not on the disk: 50 bytes go, then `err`.
  std::string error;
  REQUIRE(s->append(payload(9), 10, &error) == AppendStatus::kOk);
  INFO(error);
  REQUIRE(disk.failures == 1);
  REQUIRE_FALSE(fs::exists(oldest));
  REQUIRE(get(s->stats().dropped_records) == 2);
  REQUIRE(get(s->stats().dropped_spans) == 1 + 2);
  REQUIRE(s->bytes() == 8 * kRec);
  REQUIRE(segment_bytes_on_disk(s->directory()) == 8 * kRec);  // the 50 bytes were taken back
  // Every record in flight: nothing may be dropped, so a full disk refuses.
  std::vector<std::uint64_t> ids;
  for (int i = 0; i < 8; ++i) {
    ids.push_back(s->next()->id);
  }
  disk.size = disk.used() + 10;
  REQUIRE(s->append(payload(10), 11, &error) == AppendStatus::kFull);
  REQUIRE_THAT(error, Catch::Contains(std::strerror(err)));
  REQUIRE(get(s->stats().dropped_records) == 2);
  for (auto id : ids) {
    REQUIRE(s->nack(id));
  }
  s.reset();
  auto r = Spool::open(options_for(dir), "e");
  REQUIRE(get(r->stats().torn_tails) == 0);
  REQUIRE(get(r->stats().corrupt_records) == 0);
  REQUIRE(drain(*r) == payloads(2, 10));
}

TEST_CASE("a full disk (ENOSPC, EDQUOT) with reject refuses and keeps every record",
          "[spool][disk_full]") {
  const int err = GENERATE(ENOSPC, EDQUOT);
  TempDir dir;
  auto o = options_for(dir);
  o.max_bytes = 1ull << 30;
  o.segment_bytes = 2 * kRec;
  o.on_full = SpoolOnFull::kReject;
  SmallDisk disk{dir.path() / "e", 9 * kRec + 50, err};
  disk.install(o);
  auto s = Spool::open(o, "e");
  for (int i = 0; i < 9; ++i) {
    REQUIRE(s->append(payload(i), 1) == AppendStatus::kOk);
  }
  std::string error;
  REQUIRE(s->append(payload(9), 1, &error) == AppendStatus::kFull);
  REQUIRE_THAT(error, Catch::Contains("spool full") && Catch::Contains(std::strerror(err)));
  REQUIRE(disk.failures == 1);
  REQUIRE(get(s->stats().dropped_records) == 0);
  REQUIRE(s->bytes() == 9 * kRec);
  REQUIRE(segment_bytes_on_disk(s->directory()) == 9 * kRec);  // no partial record left
  // Space comes back when records are acknowledged: the next append goes in.
  REQUIRE(s->ack(s->next()->id));
  REQUIRE(s->ack(s->next()->id));  // the first segment is deleted
  REQUIRE(s->append(payload(9), 1) == AppendStatus::kOk);
  REQUIRE(drain(*s) == payloads(2, 10));
}

TEST_CASE("segments are sized to the free disk space when it is less than max_bytes",
          "[spool][disk_full]") {
  TempDir dir;
  auto o = options_for(dir);
  o.max_bytes = 1ull << 30;  // default segment_bytes (8 MiB) is max_bytes / 128
  SmallDisk disk{dir.path() / "e", 40 * kRec, ENOSPC};
  disk.install(o);
  fs::create_directories(disk.dir);
  {
    auto s = Spool::open(o, "e");
    // The LOCK file is empty: the whole disk is room.
    REQUIRE(s->capacity() == 40 * kRec);
    for (int i = 0; i < 12; ++i) {
      REQUIRE(s->append(payload(i), 1) == AppendStatus::kOk);
    }
    // Segments of capacity / 4 = 10 records: drop_oldest has several to choose from.
    const auto segs = files_with(s->directory(), ".seg");
    REQUIRE(segs.size() == 2);
    REQUIRE(fs::file_size(segs.front()) == 10 * kRec);
  }
  // At open, what the spool already holds counts as room too.
  disk.size = 12 * kRec + 4 * kRec;
  auto s = Spool::open(o, "e");
  REQUIRE(s->capacity() == 16 * kRec);
  // statvfs failing: max_bytes stands.
  o.syscalls.statvfs = [](const char*, struct statvfs*) {
    errno = EIO;
    return -1;
  };
  s.reset();
  REQUIRE(Spool::open(o, "e")->capacity() == o.max_bytes);
}

TEST_CASE("one thread appends while another consumes", "[spool]") {
  TempDir dir;
  auto o = options_for(dir);
  o.segment_bytes = 8 * kRec;
  auto s = Spool::open(o, "e");
  constexpr int kCount = 2000;
  std::atomic<bool> done{false};
  std::atomic<int> failed_appends{0};
  std::thread producer([&] {  // no REQUIRE off the main thread
    for (int i = 0; i < kCount; ++i) {
      if (s->append(payload(i), 1) != AppendStatus::kOk) {
        ++failed_appends;
      }
    }
    done = true;
  });
  std::vector<std::string> got;
  std::mt19937 rng(3);
  for (;;) {
    const bool finished = done.load();
    auto r = s->next();
    if (!r) {
      if (finished) {
        break;
      }
      std::this_thread::yield();
      continue;
    }
    if (rng() % 10 == 0) {
      REQUIRE(s->nack(r->id));
      continue;
    }
    got.push_back(r->payload);
    REQUIRE(s->ack(r->id));
  }
  producer.join();
  REQUIRE(failed_appends == 0);
  REQUIRE(got == payloads(0, kCount));
  REQUIRE(files_with(s->directory(), ".seg").size() == 1);
}

TEST_CASE("next() follows the replay order through random appends, acks and nacks",
          "[spool][model]") {
  // Checked against what the test knows: ids increase in write order, and every nacked id is
  // pending again until handed out; the spool must respect the order against all of them,
  // across segment rotations, and lose nothing.
  for (const SpoolReplay order : {SpoolReplay::kOldestFirst, SpoolReplay::kNewestFirst}) {
    TempDir dir;
    auto o = options_for(dir);
    o.replay = order;
    o.segment_bytes = 1500;  // a new segment every few records
    auto s = Spool::open(o, "e");
    std::set<std::uint64_t> pending;
    std::vector<std::uint64_t> in_flight;
    std::mt19937 rng(order == SpoolReplay::kOldestFirst ? 7 : 11);
    int appended = 0;
    for (int step = 0; step < 4000; ++step) {
      const int op = static_cast<int>(rng() % 10);
      if (op < 4) {
        // A new id is larger than every other: it never breaks the order against `pending`.
        REQUIRE(s->append(payload(appended++), 1) == AppendStatus::kOk);
        continue;
      }
      if (op < 7) {
        auto rec = s->next();
        if (!rec) {
          REQUIRE(s->pending_records() == 0);
          REQUIRE(pending.empty());
          continue;
        }
        // The nacked ids still pending are known: the record handed out must come before all
        // of them in the replay order.
        pending.erase(rec->id);
        for (std::uint64_t id : pending) {
          if (order == SpoolReplay::kOldestFirst) {
            REQUIRE(rec->id < id);
          } else {
            REQUIRE(rec->id > id);
          }
        }
        in_flight.push_back(rec->id);
        continue;
      }
      if (in_flight.empty()) {
        continue;
      }
      const std::size_t k = rng() % in_flight.size();
      const std::uint64_t id = in_flight[k];
      in_flight.erase(in_flight.begin() + static_cast<std::ptrdiff_t>(k));
      if (op < 9) {
        REQUIRE(s->ack(id));
      } else {
        REQUIRE(s->nack(id));
        pending.insert(id);
      }
    }
    // Drain: every record comes out exactly once more in order, nothing is lost.
    std::vector<std::uint64_t> rest;
    while (auto rec = s->next()) {
      rest.push_back(rec->id);
    }
    REQUIRE(std::is_sorted(rest.begin(), rest.end(), [&](auto a, auto b) {
      return order == SpoolReplay::kOldestFirst ? a < b : a > b;
    }));
    REQUIRE(s->pending_records() == 0);
    REQUIRE(s->in_flight_records() == in_flight.size() + rest.size());
    for (std::uint64_t id : rest) {
      REQUIRE(s->ack(id));
    }
    for (std::uint64_t id : in_flight) {
      REQUIRE(s->ack(id));
    }
    REQUIRE(get(s->stats().acked_records) == static_cast<std::uint64_t>(appended));
  }
}
