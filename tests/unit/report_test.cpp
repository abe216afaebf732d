// What the admin endpoint reports: the latency histogram's Prometheus text, /metrics
// (render_metrics, checked by parsing the exposition text), /status.json (render_status_json,
// parsed with Boost.JSON against the documented schema), RateTracker and rfc3339.
#include <catch2/catch.hpp>

#include <fcntl.h>
#include <unistd.h>

#include <boost/json.hpp>

#include <cstdlib>
#include <filesystem>
#include <limits>
#include <map>
#include <optional>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "admin/report.hpp"
#include "common/histogram.hpp"
#include "common/stats.hpp"
#include "spool/spool.hpp"
#include "unit/temp_dir.hpp"

using namespace spanrelay;
using namespace std::chrono_literals;
namespace json = boost::json;

namespace {

using testing::TempDir;

// ---------------------------------------------------------------------------------------------
// A strict reader of the Prometheus text exposition format, as much of it as render_metrics
// uses: # HELP / # TYPE lines, samples `name{labels} value`. Every problem is collected in
// `errors` so that a test can show them all at once.
struct Exposition {
  std::map<std::string, int> help_lines;   // family -> number of # HELP lines
  std::map<std::string, int> type_lines;   // family -> number of # TYPE lines
  std::map<std::string, std::string> types;
  std::map<std::string, std::string> series;  // `name{labels}` (or `name`) -> value text
  std::map<std::string, int> samples_of;      // family -> number of samples
  std::vector<std::string> errors;

  std::optional<std::string> value(const std::string& key) const {
    auto it = series.find(key);
    if (it == series.end()) {
      return std::nullopt;
    }
    return it->second;
  }
  double number(const std::string& key) const {
    auto v = value(key);
    INFO("series " << key);
    REQUIRE(v.has_value());
    return std::strtod(v->c_str(), nullptr);
  }
  // The NAME_bucket sample of the bucket whose le label reads back as `le` (whatever its
  // spelling), within the series whose other labels are `labels` (e.g. `exporter="x"`).
  double bucket(const std::string& name, const std::string& labels, double le) const {
    const std::string prefix = name + "_bucket{" + labels + (labels.empty() ? "" : ",") + "le=\"";
    std::optional<std::string> found;
    for (auto it = series.lower_bound(prefix);
         it != series.end() && it->first.compare(0, prefix.size(), prefix) == 0; ++it) {
      const std::string text =
          it->first.substr(prefix.size(), it->first.size() - prefix.size() - 2);
      const double v = text == "+Inf" ? std::numeric_limits<double>::infinity()
                                      : std::strtod(text.c_str(), nullptr);
      if (v == le) {
        found = it->second;
      }
    }
    INFO("bucket le=" << le << " of " << name << "{" << labels << "}");
    REQUIRE(found.has_value());
    return std::strtod(found->c_str(), nullptr);
  }
};

bool valid_metric_name(const std::string& n) {
  static const std::regex re("[a-zA-Z_:][a-zA-Z0-9_:]*");
  return std::regex_match(n, re);
}

// Parses `a="x",b="y"` (values with \\, \" and \n escapes); false when malformed.
bool valid_labels(const std::string& s) {
  std::size_t i = 0;
  std::set<std::string> names;
  while (i < s.size()) {
    const std::size_t eq = s.find('=', i);
    if (eq == std::string::npos) {
      return false;
    }
    const std::string name = s.substr(i, eq - i);
    if (!std::regex_match(name, std::regex("[a-zA-Z_][a-zA-Z0-9_]*")) ||
        !names.insert(name).second) {
      return false;
    }
    i = eq + 1;
    if (i >= s.size() || s[i] != '"') {
      return false;
    }
    ++i;
    bool closed = false;
    while (i < s.size()) {
      if (s[i] == '\\') {
        if (i + 1 >= s.size() || (s[i + 1] != '\\' && s[i + 1] != '"' && s[i + 1] != 'n')) {
          return false;
        }
        i += 2;
      } else if (s[i] == '"') {
        closed = true;
        ++i;
        break;
      } else if (s[i] == '\n') {
        return false;
      } else {
        ++i;
      }
    }
    if (!closed) {
      return false;
    }
    if (i < s.size()) {
      if (s[i] != ',') {
        return false;
      }
      ++i;
    }
  }
  return true;
}

Exposition parse_exposition(const std::string& text) {
  Exposition e;
  if (text.empty() || text.back() != '\n') {
    e.errors.push_back("the text does not end with a newline");
  }
  std::istringstream in(text);
  std::string line;
  std::string current;  // the family whose # TYPE came last
  std::set<std::string> finished;  // families whose samples are behind us
  while (std::getline(in, line)) {
    if (line.empty()) {
      e.errors.push_back("empty line");
      continue;
    }
    if (line.rfind("# HELP ", 0) == 0 || line.rfind("# TYPE ", 0) == 0) {
      const bool help = line[2] == 'H';
      const std::string rest = line.substr(7);
      const std::size_t sp = rest.find(' ');
      const std::string name = rest.substr(0, sp);
      const std::string arg = sp == std::string::npos ? "" : rest.substr(sp + 1);
      if (!valid_metric_name(name)) {
        e.errors.push_back("bad family name: " + line);
      }
      if (arg.empty()) {
        e.errors.push_back("no text after the name: " + line);
      }
      if (help) {
        ++e.help_lines[name];
      } else {
        ++e.type_lines[name];
        if (arg != "counter" && arg != "gauge" && arg != "histogram") {
          e.errors.push_back("unexpected type: " + line);
        }
        e.types[name] = arg;
        if (!current.empty()) {
          finished.insert(current);
        }
        current = name;
      }
      continue;
    }
    if (line[0] == '#') {
      e.errors.push_back("unexpected comment: " + line);
      continue;
    }
    // A sample.
    std::size_t name_end = line.find_first_of("{ ");
    if (name_end == std::string::npos) {
      e.errors.push_back("sample without a value: " + line);
      continue;
    }
    const std::string name = line.substr(0, name_end);
    std::string key = name;
    std::size_t value_at = name_end + 1;
    if (line[name_end] == '{') {
      // The labels end at the first '}' outside a quoted value.
      bool quoted = false;
      std::size_t i = name_end + 1;
      for (; i < line.size(); ++i) {
        if (quoted && line[i] == '\\') {
          ++i;
        } else if (line[i] == '"') {
          quoted = !quoted;
        } else if (!quoted && line[i] == '}') {
          break;
        }
      }
      if (i >= line.size()) {
        e.errors.push_back("unterminated labels: " + line);
        continue;
      }
      const std::string labels = line.substr(name_end + 1, i - name_end - 1);
      if (labels.empty() || !valid_labels(labels)) {
        e.errors.push_back("bad labels: " + line);
      }
      key = name + "{" + labels + "}";
      if (i + 1 >= line.size() || line[i + 1] != ' ') {
        e.errors.push_back("no space before the value: " + line);
        continue;
      }
      value_at = i + 2;
    }
    const std::string value = line.substr(value_at);
    char* end = nullptr;
    std::strtod(value.c_str(), &end);
    if (value.empty() || end != value.c_str() + value.size()) {
      e.errors.push_back("bad value: " + line);
    }
    if (!valid_metric_name(name)) {
      e.errors.push_back("bad metric name: " + line);
    }
    std::string family = name;
    if (!e.types.count(family)) {
      for (const char* suffix : {"_bucket", "_sum", "_count"}) {
        const std::string s = suffix;
        if (name.size() > s.size() && name.compare(name.size() - s.size(), s.size(), s) == 0) {
          const std::string base = name.substr(0, name.size() - s.size());
          if (e.types.count(base) && e.types[base] == "histogram") {
            family = base;
          }
        }
      }
    }
    if (!e.types.count(family)) {
      e.errors.push_back("sample before (or without) its # TYPE line: " + line);
    } else if (family != current) {
      e.errors.push_back("sample not grouped with its family: " + line);
    }
    if (finished.count(family)) {
      e.errors.push_back("family continues after another began: " + line);
    }
    if (!e.series.emplace(key, value).second) {
      e.errors.push_back("duplicate series: " + key);
    }
    ++e.samples_of[family];
  }
  return e;
}

void require_well_formed(const Exposition& e, const std::string& text) {
  INFO(text);
  for (const auto& err : e.errors) {
    UNSCOPED_INFO(err);
  }
  REQUIRE(e.errors.empty());
  for (const auto& [name, n] : e.help_lines) {
    INFO("# HELP lines of " << name);
    REQUIRE(n == 1);
    REQUIRE(e.type_lines.count(name) == 1);
  }
  for (const auto& [name, n] : e.type_lines) {
    INFO("# TYPE lines of " << name);
    REQUIRE(n == 1);
    REQUIRE(e.help_lines.count(name) == 1);
  }
}

// ---------------------------------------------------------------------------------------------
// A running agent's state, as the admin endpoint sees it: two network exporters and a file one,
// both receivers.
struct FakeAgent {
  ReceiverStats receiver;
  BatcherStats batcher;
  ExporterStats grafana;
  ExporterStats tempo;
  ExporterStats file;
  AgentView view;

  FakeAgent() {
    view.config_source = "/etc/spanrelay/spanrelay.yaml";
    view.started_at = std::chrono::system_clock::now() - 90s;
    view.live = true;
    view.live_reason = "live";
    view.ready = true;
    view.ready_reason = "ready";
    view.buffer_used = 1234;
    view.buffer_limit = 64ull << 20;
    view.receiver_stats = &receiver;
    view.batcher_stats = &batcher;
    view.receivers = {{"http", "127.0.0.1:4318", "listening", &receiver.http_duration},
                      {"grpc", "127.0.0.1:4317", "listening", &receiver.grpc_duration}};
    view.exporters.push_back(
        {"grafana", "otlp_http", "https://otlp.example.net/otlp", true, &grafana, 32ull << 20,
         nullptr});
    view.exporters.push_back(
        {"tempo", "otlp_grpc", "http://127.0.0.1:4317", true, &tempo, 16ull << 20, nullptr});
    view.exporters.push_back({"archive", "file", "./spans.jsonl", false, &file, 0, nullptr});
  }
};

SpoolOptions spool_options(const TempDir& dir) {
  SpoolOptions o;
  o.path = dir.str();
  o.max_bytes = 1 << 20;
  o.fsync = SpoolFsync::kNever;
  o.fsync_interval = 1h;
  return o;
}

std::string exporter_series(const std::string& family, const std::string& exporter) {
  return family + "{exporter=\"" + exporter + "\"}";
}

// Every family the contract lists for every exporter, and those only a network exporter has.
const std::vector<std::string> kEveryExporterFamilies = {
    "spanrelay_exporter_sent_spans_total", "spanrelay_exporter_sent_requests_total",
    "spanrelay_exporter_failed_spans_total", "spanrelay_exporter_failed_requests_total"};
const std::vector<std::string> kNetworkOnlyFamilies = {
    "spanrelay_exporter_retries_total",       "spanrelay_exporter_queued_batches",
    "spanrelay_exporter_circuit_state",       "spanrelay_exporter_circuit_opened_total",
    "spanrelay_exporter_queue_limit_bytes"};
const std::vector<std::string> kNetworkFamilies = {
    "spanrelay_exporter_rejected_spans_total", "spanrelay_exporter_split_batches_total",
    "spanrelay_exporter_respooled_spans_total", "spanrelay_exporter_spool_refused_spans_total"};
const std::vector<std::string> kSpoolFamilies = {
    "spanrelay_spool_records",
    "spanrelay_spool_bytes",
    "spanrelay_spool_limit_bytes",
    "spanrelay_spool_appended_records_total",
    "spanrelay_spool_replayed_records_total",
    "spanrelay_spool_acked_records_total",
    "spanrelay_spool_dropped_records_total",
    "spanrelay_spool_dropped_spans_total",
    "spanrelay_spool_corrupt_records_total",
    "spanrelay_spool_torn_tails_total",
    "spanrelay_spool_io_errors_total",
    "spanrelay_spool_syncs_total"};

const std::vector<std::string> kBucketBounds = {"0.0001", "0.00025", "0.0005", "0.001",
                                                "0.0025", "0.005",   "0.01",   "0.025",
                                                "0.05",   "0.1",     "0.25",   "0.5",
                                                "1",      "5",       "30",     "+Inf"};

constexpr double kInf = std::numeric_limits<double>::infinity();
const std::vector<double> kBoundValues = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005,
                                          0.01,   0.025,   0.05,   0.1,   0.25,   0.5,
                                          1,      5,       30,     kInf};

const std::regex kRfc3339(R"(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z)");

// Open file descriptors of this process, not counting the one used to list them.
std::size_t count_open_fds() {
  std::size_t n = 0;
  for ([[maybe_unused]] const auto& entry :
       std::filesystem::directory_iterator("/proc/self/fd")) {
    ++n;
  }
  return n - 1;
}

// ---------------------------------------------------------------------------------------------
// JSON helpers.
const json::value& at(const json::object& o, const char* key) {
  INFO("key \"" << key << "\" in " << json::serialize(o));
  REQUIRE(o.contains(key));
  return o.at(key);
}
bool is_integer(const json::value& v) { return v.is_int64() || v.is_uint64(); }
std::uint64_t integer(const json::value& v) {
  REQUIRE(is_integer(v));
  return v.is_uint64() ? v.get_uint64() : static_cast<std::uint64_t>(v.get_int64());
}
bool is_rfc3339(const json::value& v) {
  return v.is_string() && std::regex_match(std::string(v.get_string()), kRfc3339);
}
json::object parse_status(const AgentView& view, RateTracker& rates) {
  const std::string text = render_status_json(view, rates);
  INFO(text);
  boost::system::error_code ec;
  json::value doc = json::parse(text, ec);
  REQUIRE_FALSE(ec);
  REQUIRE(doc.is_object());
  return doc.as_object();
}
const json::object& exporter_named(const json::object& doc, const std::string& name) {
  for (const auto& e : at(doc, "exporters").as_array()) {
    if (e.as_object().at("name").as_string() == name) {
      return e.as_object();
    }
  }
  FAIL("no exporter named " << name << " in " << json::serialize(doc));
  throw std::logic_error("unreachable");
}

}  // namespace

// =============================================================================================
// Histogram

TEST_CASE("histogram: observations land in the first bucket whose bound they do not exceed",
          "[report][histogram]") {
  struct Case {
    std::chrono::nanoseconds elapsed;
    double le;  // the smallest bucket that must count it
  };
  const std::vector<Case> cases = {
      {0ns, 0.0001},
      {100us, 0.0001},  // bounds are inclusive
      {100us + 1ns, 0.00025},
      {250us, 0.00025},
      {1ms, 0.001},  // 1 ms goes into le="0.001"
      {1ms + 1ns, 0.0025},
      {100ms, 0.1},
      {1s, 1},
      {1s + 1ns, 5},
      {30s, 30},
      {30s + 1ns, kInf},
      {1h, kInf},
  };
  for (const Case& c : cases) {
    Histogram h;
    h.observe(c.elapsed);
    std::ostringstream out;
    h.render(out, "t", "");
    const Exposition e = parse_exposition("# HELP t x\n# TYPE t histogram\n" + out.str());
    INFO("observed " << c.elapsed.count() << " ns\n" << out.str());
    REQUIRE(e.errors.empty());
    REQUIRE(e.samples_of.at("t") == 18);
    for (double le : kBoundValues) {
      INFO("le=" << le);
      REQUIRE(e.bucket("t", "", le) == (le >= c.le ? 1 : 0));
    }
    REQUIRE(e.number("t_count") == 1);
    REQUIRE(h.count() == 1);
  }
}

TEST_CASE("histogram: buckets are cumulative, +Inf equals _count, _sum is in seconds",
          "[report][histogram]") {
  Histogram h;
  const std::vector<std::chrono::nanoseconds> observations = {
      50us, 100us, 700us, 1ms, 3ms, 3ms, 20ms, 400ms, 1500ms, 45s};
  for (auto o : observations) {
    h.observe(o);
  }
  std::ostringstream out;
  h.render(out, "spanrelay_x_seconds", "exporter=\"grafana\"");
  const std::string text = out.str();
  INFO(text);
  const Exposition e =
      parse_exposition("# HELP spanrelay_x_seconds x\n# TYPE spanrelay_x_seconds histogram\n" +
                       text);
  REQUIRE(e.errors.empty());
  const std::vector<double> expected = {2, 2, 2, 4, 4, 6, 6, 7, 7, 7, 7, 8, 8, 9, 9, 10};
  REQUIRE(expected.size() == kBoundValues.size());
  double previous = 0;
  for (std::size_t i = 0; i < kBoundValues.size(); ++i) {
    const double n = e.bucket("spanrelay_x_seconds", "exporter=\"grafana\"", kBoundValues[i]);
    INFO("le=" << kBoundValues[i]);
    REQUIRE(n == expected[i]);
    REQUIRE(n >= previous);
    previous = n;
  }
  REQUIRE(e.samples_of.at("spanrelay_x_seconds") == 16 + 2);  // buckets, _sum, _count
  REQUIRE(e.number("spanrelay_x_seconds_count{exporter=\"grafana\"}") == 10);
  REQUIRE(e.bucket("spanrelay_x_seconds", "exporter=\"grafana\"", kInf) == 10);
  REQUIRE(h.count() == 10);
  const double sum_seconds = 0.00005 + 0.0001 + 0.0007 + 0.001 + 0.003 + 0.003 + 0.02 + 0.4 +
                             1.5 + 45;
  REQUIRE(e.number("spanrelay_x_seconds_sum{exporter=\"grafana\"}") ==
          Approx(sum_seconds).epsilon(1e-9));
}

TEST_CASE("histogram: renders without labels and with several, buckets in order",
          "[report][histogram]") {
  SECTION("no labels") {
    Histogram h;
    h.observe(2s);
    std::ostringstream out;
    h.render(out, "h", "");
    const std::string text = out.str();
    INFO(text);
    REQUIRE(text.find("{,") == std::string::npos);
    REQUIRE(text.find("{}") == std::string::npos);
    REQUIRE(text.rfind("h_bucket{le=\"", 0) == 0);
    REQUIRE(text.find("h_bucket{le=\"+Inf\"} 1\nh_sum 2\nh_count 1\n") != std::string::npos);
    // The bucket lines come in increasing order of their bounds, +Inf last.
    std::istringstream lines(text);
    std::string line;
    std::vector<double> les;
    while (std::getline(lines, line)) {
      if (line.rfind("h_bucket{le=\"", 0) == 0) {
        const std::string le = line.substr(13, line.find('"', 13) - 13);
        les.push_back(le == "+Inf" ? kInf : std::strtod(le.c_str(), nullptr));
      }
    }
    REQUIRE(les == kBoundValues);
  }
  SECTION("two labels") {
    Histogram h;
    std::ostringstream out;
    h.render(out, "h", "a=\"1\",b=\"x\"");
    const std::string text = out.str();
    INFO(text);
    REQUIRE(text.find("h_bucket{a=\"1\",b=\"x\",le=\"0.5\"} 0\n") != std::string::npos);
    REQUIRE(text.find("h_bucket{a=\"1\",b=\"x\",le=\"+Inf\"} 0\n") != std::string::npos);
    REQUIRE(text.find("h_sum{a=\"1\",b=\"x\"} 0\n") != std::string::npos);
    REQUIRE(text.find("h_count{a=\"1\",b=\"x\"} 0\n") != std::string::npos);
    const Exposition e = parse_exposition("# HELP h x\n# TYPE h histogram\n" + text);
    REQUIRE(e.errors.empty());
    REQUIRE(e.samples_of.at("h") == 18);
  }
}

TEST_CASE("histogram: le labels are plain decimals, as Prometheus clients write them",
          "[report][histogram]") {
  // client_golang and the other official clients write le="0.0001", never "1e-04"; a
  // dashboard or recording rule that selects a bucket by its le text must find it.
  Histogram h;
  std::ostringstream out;
  h.render(out, "h", "");
  const std::string text = out.str();
  INFO(text);
  std::size_t pos = 0;
  for (const std::string& le : kBucketBounds) {
    const std::size_t at = text.find("h_bucket{le=\"" + le + "\"} 0\n", pos);
    INFO("le=\"" << le << "\"");
    REQUIRE(at != std::string::npos);
    pos = at + 1;
  }
}

TEST_CASE("histogram: a negative duration counts but adds nothing to _sum",
          "[report][histogram]") {
  Histogram h;
  h.observe(-5ms);
  h.observe(2ms);
  std::ostringstream out;
  h.render(out, "h", "");
  INFO(out.str());
  const Exposition e = parse_exposition("# HELP h x\n# TYPE h histogram\n" + out.str());
  REQUIRE(e.bucket("h", "", 0.0001) == 1);
  REQUIRE(e.bucket("h", "", kInf) == 2);
  REQUIRE(e.value("h_sum") == "0.002");
  REQUIRE(e.number("h_count") == 2);
}

// =============================================================================================
// render_metrics

TEST_CASE("metrics: every family has exactly one HELP and one TYPE line, samples grouped "
          "under it",
          "[report][metrics]") {
  FakeAgent a;
  SECTION("memory mode") {
    const std::string text = render_metrics(a.view);
    const Exposition e = parse_exposition(text);
    require_well_formed(e, text);
    REQUIRE(e.type_lines.size() > 30);
  }
  SECTION("with a spool") {
    TempDir dir;
    auto spool = Spool::open(spool_options(dir), "grafana");
    a.view.exporters[0].spool = spool.get();
    const std::string text = render_metrics(a.view);
    const Exposition e = parse_exposition(text);
    require_well_formed(e, text);
    for (const std::string& f : kSpoolFamilies) {
      INFO(f);
      REQUIRE(e.type_lines.count(f) == 1);
    }
  }
  SECTION("no exporters, no receivers") {
    a.view.exporters.clear();
    a.view.receivers.clear();
    const std::string text = render_metrics(a.view);
    require_well_formed(parse_exposition(text), text);
  }
}

TEST_CASE("metrics: every family the contract names is exported, with its type",
          "[report][metrics]") {
  FakeAgent a;
  TempDir dir;
  auto spool = Spool::open(spool_options(dir), "grafana");
  a.view.exporters[0].spool = spool.get();
  const std::string text = render_metrics(a.view);
  INFO(text);
  const Exposition e = parse_exposition(text);
  const std::map<std::string, std::string> expected = {
      {"spanrelay_receiver_requests_total", "counter"},
      {"spanrelay_receiver_accepted_spans_total", "counter"},
      {"spanrelay_receiver_refused_spans_total", "counter"},
      {"spanrelay_receiver_rejected_spans_total", "counter"},
      {"spanrelay_receiver_bad_requests_total", "counter"},
      {"spanrelay_receiver_unavailable_total", "counter"},
      {"spanrelay_batcher_batches_total", "counter"},
      {"spanrelay_batcher_splits_total", "counter"},
      {"spanrelay_buffer_used_bytes", "gauge"},
      {"spanrelay_buffer_limit_bytes", "gauge"},
      {"spanrelay_exporter_sent_spans_total", "counter"},
      {"spanrelay_exporter_sent_requests_total", "counter"},
      {"spanrelay_exporter_failed_spans_total", "counter"},
      {"spanrelay_exporter_failed_requests_total", "counter"},
      {"spanrelay_exporter_retries_total", "counter"},
      {"spanrelay_exporter_rejected_spans_total", "counter"},
      {"spanrelay_exporter_split_batches_total", "counter"},
      {"spanrelay_exporter_queued_batches", "gauge"},
      {"spanrelay_exporter_circuit_state", "gauge"},
      {"spanrelay_exporter_circuit_opened_total", "counter"},
      {"spanrelay_exporter_respooled_spans_total", "counter"},
      {"spanrelay_exporter_spool_refused_spans_total", "counter"},
      {"spanrelay_exporter_queue_limit_bytes", "gauge"},
      {"spanrelay_exporter_request_duration_seconds", "histogram"},
      {"spanrelay_receiver_request_duration_seconds", "histogram"},
      {"spanrelay_spool_records", "gauge"},
      {"spanrelay_spool_bytes", "gauge"},
      {"spanrelay_spool_limit_bytes", "gauge"},
      {"spanrelay_spool_appended_records_total", "counter"},
      {"spanrelay_spool_replayed_records_total", "counter"},
      {"spanrelay_spool_acked_records_total", "counter"},
      {"spanrelay_spool_dropped_records_total", "counter"},
      {"spanrelay_spool_dropped_spans_total", "counter"},
      {"spanrelay_spool_corrupt_records_total", "counter"},
      {"spanrelay_spool_torn_tails_total", "counter"},
      {"spanrelay_spool_io_errors_total", "counter"},
      {"spanrelay_spool_syncs_total", "counter"},
      {"spanrelay_build_info", "gauge"},
      {"process_cpu_seconds_total", "counter"},
      {"process_resident_memory_bytes", "gauge"},
      {"process_virtual_memory_bytes", "gauge"},
      {"process_open_fds", "gauge"},
      {"process_max_fds", "gauge"},
      {"process_start_time_seconds", "gauge"},
      {"spanrelay_config_reloads_total", "counter"},
      {"spanrelay_config_last_reload_successful", "gauge"},
      {"spanrelay_ready", "gauge"},
  };
  for (const auto& [family, type] : expected) {
    INFO(family);
    REQUIRE(e.types.count(family) == 1);
    REQUIRE(e.types.at(family) == type);
    REQUIRE(e.samples_of.count(family) == 1);  // at least one sample
  }
}

TEST_CASE("metrics: build_info carries the version, state gauges follow the view",
          "[report][metrics]") {
  FakeAgent a;
  a.view.ready = false;
  a.view.reloads.succeeded = 3;
  a.view.reloads.failed = 2;
  a.view.reloads.last_result = "failure";
  const Exposition e = parse_exposition(render_metrics(a.view));
  REQUIRE(std::regex_match(std::string(SPANRELAY_VERSION), std::regex(R"(\d+\.\d+\.\d+.*)")));
  REQUIRE(e.value("spanrelay_build_info{version=\"" SPANRELAY_VERSION "\"}") == "1");
  REQUIRE(e.samples_of.at("spanrelay_build_info") == 1);
  REQUIRE(e.number("spanrelay_ready") == 0);
  REQUIRE(e.number("spanrelay_config_reloads_total{result=\"success\"}") == 3);
  REQUIRE(e.number("spanrelay_config_reloads_total{result=\"failure\"}") == 2);
  REQUIRE(e.number("spanrelay_config_last_reload_successful") == 0);

  a.view.ready = true;
  a.view.reloads.last_result = "success";
  const Exposition after = parse_exposition(render_metrics(a.view));
  REQUIRE(after.number("spanrelay_ready") == 1);
  REQUIRE(after.number("spanrelay_config_last_reload_successful") == 1);
}

TEST_CASE("metrics: the file exporter has no circuit, retry or queue series, network ones do",
          "[report][metrics]") {
  FakeAgent a;
  const std::string text = render_metrics(a.view);
  INFO(text);
  const Exposition e = parse_exposition(text);
  for (const char* name : {"grafana", "tempo"}) {
    for (const auto* list : {&kEveryExporterFamilies, &kNetworkOnlyFamilies, &kNetworkFamilies}) {
      for (const std::string& f : *list) {
        INFO(f << " of " << name);
        REQUIRE(e.value(exporter_series(f, name)) ==
                (f != "spanrelay_exporter_queue_limit_bytes" ? "0"
                 : std::string(name) == "grafana"          ? "33554432"
                                                           : "16777216"));
      }
    }
  }
  REQUIRE(e.number(exporter_series("spanrelay_exporter_queue_limit_bytes", "grafana")) ==
          32 << 20);
  for (const std::string& f : kEveryExporterFamilies) {
    INFO(f << " of the file exporter");
    REQUIRE(e.value(exporter_series(f, "archive")) == "0");
  }
  for (const std::string& f : kNetworkOnlyFamilies) {
    INFO(f << " must not exist for the file exporter");
    REQUIRE_FALSE(e.value(exporter_series(f, "archive")));
  }
  for (const auto& [key, value] : e.series) {
    if (key.find("exporter=\"archive\"") != std::string::npos) {
      INFO(key);
      REQUIRE(key.find("circuit") == std::string::npos);
      REQUIRE(key.find("retries") == std::string::npos);
      REQUIRE(key.find("queue") == std::string::npos);
    }
  }
}

TEST_CASE("metrics: exporter counters are reported per exporter", "[report][metrics]") {
  FakeAgent a;
  add(a.grafana.sent_spans, 41);
  add(a.grafana.retries, 2);
  add(a.grafana.circuit_state, 1);
  add(a.tempo.failed_spans, 7);
  add(a.file.sent_spans, 5);
  const Exposition e = parse_exposition(render_metrics(a.view));
  REQUIRE(e.number(exporter_series("spanrelay_exporter_sent_spans_total", "grafana")) == 41);
  REQUIRE(e.number(exporter_series("spanrelay_exporter_sent_spans_total", "tempo")) == 0);
  REQUIRE(e.number(exporter_series("spanrelay_exporter_sent_spans_total", "archive")) == 5);
  REQUIRE(e.number(exporter_series("spanrelay_exporter_retries_total", "grafana")) == 2);
  REQUIRE(e.number(exporter_series("spanrelay_exporter_circuit_state", "grafana")) == 1);
  REQUIRE(e.number(exporter_series("spanrelay_exporter_circuit_state", "tempo")) == 0);
  REQUIRE(e.number(exporter_series("spanrelay_exporter_failed_spans_total", "tempo")) == 7);
}

TEST_CASE("metrics: large counters and byte gauges are exact, not rounded to 6 digits",
          "[report][metrics]") {
  // A counter printed as 1.23457e+08 only moves every 1000 spans: rate() turns into steps.
  FakeAgent a;
  add(a.receiver.accepted_spans, 123456789);
  add(a.receiver.requests, 1000001);
  add(a.batcher.batches, 7654321);
  add(a.grafana.sent_spans, 123456789);
  a.view.buffer_used = 12345678;
  a.view.buffer_limit = 64ull << 20;
  const std::string text = render_metrics(a.view);
  INFO(text);
  const Exposition e = parse_exposition(text);
  REQUIRE(e.number("spanrelay_receiver_accepted_spans_total") == 123456789);
  REQUIRE(e.number("spanrelay_receiver_requests_total") == 1000001);
  REQUIRE(e.number("spanrelay_batcher_batches_total") == 7654321);
  REQUIRE(e.number(exporter_series("spanrelay_exporter_sent_spans_total", "grafana")) ==
          123456789);
  REQUIRE(e.number("spanrelay_buffer_used_bytes") == 12345678);
  REQUIRE(e.number("spanrelay_buffer_limit_bytes") == 67108864);
}

TEST_CASE("metrics: spool families only when a spool is present, only for its exporter",
          "[report][metrics]") {
  FakeAgent a;
  SECTION("memory mode: no spool series at all") {
    const std::string text = render_metrics(a.view);
    INFO(text);
    REQUIRE(text.find("spanrelay_spool_") == std::string::npos);
  }
  SECTION("a spool for one exporter") {
    TempDir dir;
    auto spool = Spool::open(spool_options(dir), "grafana");
    REQUIRE(spool->append("one", 3) == AppendStatus::kOk);
    REQUIRE(spool->append("two", 4) == AppendStatus::kOk);
    a.view.exporters[0].spool = spool.get();
    const std::string text = render_metrics(a.view);
    INFO(text);
    const Exposition e = parse_exposition(text);
    REQUIRE(e.errors.empty());
    for (const std::string& f : kSpoolFamilies) {
      INFO(f);
      REQUIRE(e.value(exporter_series(f, "grafana")));
      REQUIRE_FALSE(e.value(exporter_series(f, "tempo")));
      REQUIRE_FALSE(e.value(exporter_series(f, "archive")));
      REQUIRE(e.samples_of.at(f) == 1);
    }
    REQUIRE(e.number(exporter_series("spanrelay_spool_records", "grafana")) == 2);
    REQUIRE(e.number(exporter_series("spanrelay_spool_appended_records_total", "grafana")) == 2);
    REQUIRE(e.number(exporter_series("spanrelay_spool_bytes", "grafana")) ==
            static_cast<double>(spool->bytes()));
    REQUIRE(spool->bytes() > 0);
    REQUIRE(e.number(exporter_series("spanrelay_spool_limit_bytes", "grafana")) ==
            static_cast<double>(spool->capacity()));
    REQUIRE(spool->capacity() == 1 << 20);
  }
}

TEST_CASE("metrics: request duration histograms per exporter and per receiver",
          "[report][metrics]") {
  FakeAgent a;
  a.grafana.request_duration.observe(1ms);
  a.grafana.request_duration.observe(20ms);
  a.grafana.request_duration.observe(2s);
  a.file.request_duration.observe(300us);
  a.receiver.http_duration.observe(100us);
  a.receiver.http_duration.observe(600ms);
  const std::string text = render_metrics(a.view);
  INFO(text);
  const Exposition e = parse_exposition(text);
  REQUIRE(e.errors.empty());
  const std::string x = "spanrelay_exporter_request_duration_seconds";
  REQUIRE(e.bucket(x, "exporter=\"grafana\"", 0.0005) == 0);
  REQUIRE(e.bucket(x, "exporter=\"grafana\"", 0.001) == 1);
  REQUIRE(e.bucket(x, "exporter=\"grafana\"", 0.025) == 2);
  REQUIRE(e.bucket(x, "exporter=\"grafana\"", 1) == 2);
  REQUIRE(e.bucket(x, "exporter=\"grafana\"", 5) == 3);
  REQUIRE(e.bucket(x, "exporter=\"grafana\"", kInf) == 3);
  REQUIRE(e.number(x + "_count{exporter=\"grafana\"}") == 3);
  REQUIRE(e.number(x + "_sum{exporter=\"grafana\"}") == Approx(2.021).epsilon(1e-6));
  REQUIRE(e.number(x + "_count{exporter=\"tempo\"}") == 0);
  REQUIRE(e.bucket(x, "exporter=\"tempo\"", kInf) == 0);
  REQUIRE(e.number(x + "_count{exporter=\"archive\"}") == 1);  // the file exporter has one too
  REQUIRE(e.samples_of.at(x) == 3 * 18);

  const std::string r = "spanrelay_receiver_request_duration_seconds";
  REQUIRE(e.bucket(r, "receiver=\"http\"", 0.0001) == 1);
  REQUIRE(e.bucket(r, "receiver=\"http\"", 0.5) == 1);
  REQUIRE(e.bucket(r, "receiver=\"http\"", 1) == 2);
  REQUIRE(e.bucket(r, "receiver=\"grpc\"", kInf) == 0);
  REQUIRE(e.number(r + "_count{receiver=\"http\"}") == 2);
  REQUIRE(e.number(r + "_count{receiver=\"grpc\"}") == 0);
  REQUIRE(e.samples_of.at(r) == 2 * 18);
  // Every le label reads back as one of the documented bounds.
  for (const auto& [key, value] : e.series) {
    const auto le = key.find(",le=\"");
    if (le != std::string::npos) {
      const std::string bound = key.substr(le + 5, key.size() - le - 5 - 2);
      const double v = bound == "+Inf" ? kInf : std::strtod(bound.c_str(), nullptr);
      INFO(key);
      REQUIRE(std::find(kBoundValues.begin(), kBoundValues.end(), v) != kBoundValues.end());
    }
  }
}

TEST_CASE("metrics: the process series are present and sane", "[report][metrics]") {
  FakeAgent a;
  a.view.started_at = std::chrono::system_clock::time_point(1796223845123ms);
  const Exposition before = parse_exposition(render_metrics(a.view));
  const std::size_t fds = count_open_fds();
  REQUIRE(before.number("process_open_fds") > 0);
  REQUIRE(before.number("process_open_fds") == static_cast<double>(fds));
  REQUIRE(before.number("process_max_fds") >= before.number("process_open_fds"));
  REQUIRE(before.number("process_resident_memory_bytes") > 0);
  REQUIRE(before.number("process_virtual_memory_bytes") >=
          before.number("process_resident_memory_bytes"));
  REQUIRE(before.number("process_cpu_seconds_total") >= 0);
  REQUIRE(before.number("process_start_time_seconds") == Approx(1796223845.123).margin(0.01));

  // One more descriptor open: the count follows.
  const int fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  REQUIRE(fd >= 0);
  const Exposition after = parse_exposition(render_metrics(a.view));
  ::close(fd);
  REQUIRE(after.number("process_open_fds") == before.number("process_open_fds") + 1);
}

// =============================================================================================
// render_status_json, RateTracker, rfc3339

TEST_CASE("rfc3339: UTC with milliseconds and a Z", "[report][status]") {
  using std::chrono::system_clock;
  REQUIRE(rfc3339(system_clock::time_point{}) == "1970-01-01T00:00:00.000Z");
  REQUIRE(rfc3339(system_clock::time_point(1796223845123ms)) == "2026-12-02T15:04:05.123Z");
  REQUIRE(rfc3339(system_clock::time_point(1796223845999999us)) == "2026-12-02T15:04:05.999Z");
  REQUIRE(rfc3339(system_clock::time_point(951782400000ms)) == "2000-02-29T00:00:00.000Z");
  REQUIRE(std::regex_match(rfc3339(system_clock::now()), kRfc3339));
}

TEST_CASE("status.json: every key of the schema, with its type", "[report][status]") {
  FakeAgent a;
  TempDir dir;
  auto spool = Spool::open(spool_options(dir), "tempo");
  a.view.exporters[1].spool = spool.get();
  add(a.receiver.requests, 9);
  add(a.receiver.accepted_spans, 90);
  add(a.receiver.refused_spans, 3);
  add(a.receiver.rejected_spans, 2);
  add(a.receiver.bad_requests, 1);
  a.receiver.http_duration.observe(1ms);
  a.receiver.http_duration.observe(1ms);
  add(a.grafana.sent_spans, 17);
  add(a.grafana.failed_spans, 4);
  add(a.grafana.retries, 6);
  add(a.grafana.queued_batches, 2);
  add(a.grafana.queued_bytes, 2048);
  RateTracker rates;
  const json::object doc = parse_status(a.view, rates);
  INFO(json::serialize(doc));

  REQUIRE(at(doc, "version") == SPANRELAY_VERSION);
  REQUIRE(at(doc, "config") == "/etc/spanrelay/spanrelay.yaml");
  REQUIRE(is_rfc3339(at(doc, "started_at")));
  REQUIRE(at(doc, "started_at") == json::value(rfc3339(a.view.started_at)));
  REQUIRE(at(doc, "uptime_seconds").is_number());
  REQUIRE(at(doc, "uptime_seconds").to_number<double>() == Approx(90).margin(30));
  REQUIRE(at(doc, "live") == true);
  REQUIRE(at(doc, "ready") == true);
  REQUIRE(at(doc, "ready_reason") == "ready");

  const json::object& reloads = at(doc, "reloads").as_object();
  REQUIRE(integer(at(reloads, "succeeded")) == 0);
  REQUIRE(integer(at(reloads, "failed")) == 0);
  REQUIRE(at(reloads, "last_result").is_null());
  REQUIRE(at(reloads, "last_time").is_null());
  REQUIRE(at(reloads, "last_error").is_null());

  const json::object& buffer = at(doc, "buffer").as_object();
  REQUIRE(integer(at(buffer, "used_bytes")) == 1234);
  REQUIRE(integer(at(buffer, "limit_bytes")) == 64ull << 20);

  const json::object& intake = at(doc, "intake").as_object();
  REQUIRE(integer(at(intake, "requests")) == 9);
  REQUIRE(integer(at(intake, "accepted_spans")) == 90);
  REQUIRE(integer(at(intake, "refused_spans")) == 3);
  REQUIRE(integer(at(intake, "rejected_spans")) == 2);
  REQUIRE(integer(at(intake, "bad_requests")) == 1);
  REQUIRE(at(intake, "accepted_spans_per_second").is_number());
  REQUIRE(at(intake, "accepted_spans_per_second").to_number<double>() == 0);  // first sample

  const json::array& receivers = at(doc, "receivers").as_array();
  REQUIRE(receivers.size() == 2);
  const json::object& http = receivers[0].as_object();
  REQUIRE(at(http, "name") == "http");
  REQUIRE(at(http, "endpoint") == "127.0.0.1:4318");
  REQUIRE(at(http, "state") == "listening");
  REQUIRE(integer(at(http, "requests")) == 2);
  REQUIRE(at(http, "requests_per_second").is_number());
  REQUIRE(at(receivers[1].as_object(), "name") == "grpc");
  REQUIRE(integer(at(receivers[1].as_object(), "requests")) == 0);

  const json::array& exporters = at(doc, "exporters").as_array();
  REQUIRE(exporters.size() == 3);
  const std::vector<std::string> order = {"grafana", "tempo", "archive"};
  const std::set<std::string> states = {"ok", "idle", "failing"};
  const std::set<std::string> circuits = {"closed", "open", "half_open"};
  for (std::size_t i = 0; i < exporters.size(); ++i) {
    const json::object& e = exporters[i].as_object();
    INFO(json::serialize(e));
    REQUIRE(at(e, "name") == json::value(order[i]));
    REQUIRE(at(e, "type").is_string());
    REQUIRE(at(e, "endpoint").is_string());
    REQUIRE(at(e, "state").is_string());
    REQUIRE(states.count(std::string(at(e, "state").get_string())) == 1);
    for (const char* k : {"sent_spans", "failed_spans", "retries", "queued_batches",
                          "queue_bytes", "queue_limit_bytes"}) {
      INFO(k);
      REQUIRE(is_integer(at(e, k)));
    }
    REQUIRE(at(e, "sent_spans_per_second").is_number());
    REQUIRE((at(e, "spool").is_null() || at(e, "spool").is_object()));
    REQUIRE((at(e, "circuit").is_null() ||
             (at(e, "circuit").is_string() &&
              circuits.count(std::string(at(e, "circuit").get_string())) == 1)));
    REQUIRE((at(e, "last_error").is_null() || at(e, "last_error").is_object()));
    REQUIRE((at(e, "last_success").is_null() || is_rfc3339(at(e, "last_success"))));
    REQUIRE((at(e, "next_retry").is_null() || is_rfc3339(at(e, "next_retry"))));
  }
  const json::object& grafana = exporters[0].as_object();
  REQUIRE(at(grafana, "type") == "otlp_http");
  REQUIRE(at(grafana, "endpoint") == "https://otlp.example.net/otlp");
  REQUIRE(at(grafana, "state") == "idle");  // no attempt yet
  REQUIRE(integer(at(grafana, "sent_spans")) == 17);
  REQUIRE(integer(at(grafana, "failed_spans")) == 4);
  REQUIRE(integer(at(grafana, "retries")) == 6);
  REQUIRE(integer(at(grafana, "queued_batches")) == 2);
  REQUIRE(integer(at(grafana, "queue_bytes")) == 2048);
  REQUIRE(integer(at(grafana, "queue_limit_bytes")) == 32ull << 20);
  REQUIRE(at(grafana, "spool").is_null());
  REQUIRE(at(grafana, "circuit") == "closed");
  REQUIRE(at(grafana, "last_error").is_null());
  REQUIRE(at(grafana, "last_success").is_null());
  REQUIRE(at(grafana, "next_retry").is_null());

  const json::object& tempo = exporters[1].as_object();
  REQUIRE(at(tempo, "type") == "otlp_grpc");
  const json::object& tempo_spool = at(tempo, "spool").as_object();
  REQUIRE(integer(at(tempo_spool, "records")) == 0);
  REQUIRE(is_integer(at(tempo_spool, "bytes")));
  REQUIRE(integer(at(tempo_spool, "limit_bytes")) == spool->capacity());

  const json::object& archive = exporters[2].as_object();
  REQUIRE(at(archive, "type") == "file");
  REQUIRE(at(archive, "endpoint") == "./spans.jsonl");
  REQUIRE(at(archive, "circuit").is_null());  // a file has no circuit
  REQUIRE(at(archive, "spool").is_null());
}

TEST_CASE("status.json: reloads report their last result, time and error", "[report][status]") {
  FakeAgent a;
  a.view.ready = false;
  a.view.ready_reason = "memory buffer full";
  a.view.reloads.succeeded = 4;
  a.view.reloads.failed = 1;
  a.view.reloads.last_result = "failure";
  a.view.reloads.last_time = std::chrono::system_clock::time_point(1796223845123ms);
  a.view.reloads.last_error = "spanrelay.yaml:12: unknown key \"exporterz\"";
  RateTracker rates;
  const json::object doc = parse_status(a.view, rates);
  REQUIRE(at(doc, "ready") == false);
  REQUIRE(at(doc, "ready_reason") == "memory buffer full");
  const json::object& reloads = at(doc, "reloads").as_object();
  REQUIRE(integer(at(reloads, "succeeded")) == 4);
  REQUIRE(integer(at(reloads, "failed")) == 1);
  REQUIRE(at(reloads, "last_result") == "failure");
  REQUIRE(at(reloads, "last_time") == "2026-12-02T15:04:05.123Z");
  REQUIRE(at(reloads, "last_error") == "spanrelay.yaml:12: unknown key \"exporterz\"");
}

TEST_CASE("status.json: an exporter is idle, then failing with its last error, then ok",
          "[report][status]") {
  FakeAgent a;
  RateTracker rates;
  REQUIRE(at(exporter_named(parse_status(a.view, rates), "grafana"), "state") == "idle");

  const auto before = std::chrono::system_clock::now();
  const auto retry_at = std::chrono::system_clock::time_point(1796223845123ms);
  a.grafana.health.failed("HTTP 503 Service Unavailable", "5xx", retry_at);
  add(a.grafana.circuit_state, 1);
  const auto after = std::chrono::system_clock::now();
  {
    const json::object doc = parse_status(a.view, rates);
    const json::object& g = exporter_named(doc, "grafana");
    INFO(json::serialize(g));
    REQUIRE(at(g, "state") == "failing");
    REQUIRE(at(g, "circuit") == "open");  // reported apart from the state
    const json::object& err = at(g, "last_error").as_object();
    REQUIRE(at(err, "message") == "HTTP 503 Service Unavailable");
    REQUIRE(at(err, "class") == "5xx");
    REQUIRE(is_rfc3339(at(err, "time")));
    const std::string t(at(err, "time").get_string());
    REQUIRE(t >= rfc3339(before));  // same format, so the strings order like the times
    REQUIRE(t <= rfc3339(after));
    REQUIRE(at(g, "next_retry") == "2026-12-02T15:04:05.123Z");
    REQUIRE(at(g, "last_success").is_null());
    // The others are untouched.
    REQUIRE(at(exporter_named(doc, "tempo"), "state") == "idle");
    REQUIRE(at(exporter_named(doc, "tempo"), "last_error").is_null());
  }

  a.grafana.health.failed("HTTP 401 Unauthorized", "auth", {});  // no retry scheduled
  {
    const json::object doc = parse_status(a.view, rates);
    const json::object& g = exporter_named(doc, "grafana");
    REQUIRE(at(g, "state") == "failing");
    REQUIRE(at(at(g, "last_error").as_object(), "class") == "auth");
    REQUIRE(at(g, "next_retry").is_null());
  }

  a.grafana.health.failed("HTTP 503 Service Unavailable", "5xx", retry_at);
  a.grafana.health.succeeded();
  a.grafana.circuit_state.store(2);
  {
    const json::object doc = parse_status(a.view, rates);
    const json::object& g = exporter_named(doc, "grafana");
    INFO(json::serialize(g));
    REQUIRE(at(g, "state") == "ok");
    REQUIRE(at(g, "circuit") == "half_open");
    REQUIRE(at(g, "next_retry").is_null());  // not failing: nothing scheduled
    REQUIRE(is_rfc3339(at(g, "last_success")));
    // The last error stays visible, with its time.
    REQUIRE(at(at(g, "last_error").as_object(), "class") == "5xx");
  }

  SECTION("a file exporter fails and recovers the same way, without a circuit") {
    a.file.health.failed("write ./spans.jsonl: No space left on device", "connection", {});
    const json::object doc = parse_status(a.view, rates);
    const json::object& f = exporter_named(doc, "archive");
    REQUIRE(at(f, "state") == "failing");
    REQUIRE(at(f, "circuit").is_null());
    a.file.health.succeeded();
    REQUIRE(at(exporter_named(parse_status(a.view, rates), "archive"), "state") == "ok");
  }
}

TEST_CASE("status.json: names and messages with quotes, backslashes and control characters "
          "stay valid JSON",
          "[report][status]") {
  FakeAgent a;
  const std::string weird = "we\"ird\\name\t</script>";
  a.view.config_source = "C:\\spanrelay\\\"conf\".yaml";
  a.view.exporters[0].name = weird;
  a.view.exporters[0].endpoint = "https://host/\"path\"";
  a.grafana.health.failed("bad \"answer\"\n\\ \x01 end", "4xx", {});
  a.view.reloads.last_result = "failure";
  a.view.reloads.last_error = "line 1\nline \"2\"";
  RateTracker rates;
  const json::object doc = parse_status(a.view, rates);
  REQUIRE(at(doc, "config") == "C:\\spanrelay\\\"conf\".yaml");
  const json::object& e = exporter_named(doc, weird);
  REQUIRE(at(e, "endpoint") == "https://host/\"path\"");
  REQUIRE(at(at(e, "last_error").as_object(), "message") == "bad \"answer\"\n\\ \x01 end");
  REQUIRE(at(at(doc, "reloads").as_object(), "last_error") == "line 1\nline \"2\"");
  // The document is one line (the status page fetches it; no raw control characters).
  const std::string text = render_status_json(a.view, rates);
  REQUIRE(text.find('\n') == text.size() - 1);
  for (char c : text.substr(0, text.size() - 1)) {
    REQUIRE(static_cast<unsigned char>(c) >= 0x20);
  }
}

TEST_CASE("status.json: receiver states and exporter spool fill", "[report][status]") {
  FakeAgent a;
  a.view.receivers[1].state = "draining";
  TempDir dir;
  auto spool = Spool::open(spool_options(dir), "grafana");
  REQUIRE(spool->append("payload", 5) == AppendStatus::kOk);
  a.view.exporters[0].spool = spool.get();
  RateTracker rates;
  const json::object doc = parse_status(a.view, rates);
  REQUIRE(at(at(doc, "receivers").as_array()[1].as_object(), "state") == "draining");
  const json::object& s = at(exporter_named(doc, "grafana"), "spool").as_object();
  REQUIRE(integer(at(s, "records")) == 1);
  REQUIRE(integer(at(s, "bytes")) == spool->bytes());
  REQUIRE(integer(at(s, "limit_bytes")) == 1 << 20);
}

// RateTracker reads steady_clock itself (no injection), so these cases bound what it may
// return by the times measured around the calls. The only wait is for time itself to pass
// (half a second, the tracker's minimum spacing); no thread is synchronised by it.
TEST_CASE("rate tracker: the first sample of a key gives 0, a close one the previous rate",
          "[report][rates]") {
  using clock = std::chrono::steady_clock;
  RateTracker r;
  const auto t0 = clock::now();
  REQUIRE(r.rate("a", 1'000'000) == 0);
  const double second = r.rate("a", 2'000'000);
  const auto t1 = clock::now();
  if (t1 - t0 < 500ms) {
    REQUIRE(second == 0);  // closer than half a second: the previous rate (none yet)
  } else {
    // A very slow machine: then it is a real rate over at most t1 - t0.
    REQUIRE(second >= 1'000'000 / std::chrono::duration<double>(t1 - t0).count());
  }
  REQUIRE(r.rate("b", 5) == 0);  // keys are independent
}

TEST_CASE("rate tracker: delta over elapsed time, kept until the next half second",
          "[report][rates]") {
  using clock = std::chrono::steady_clock;
  using seconds = std::chrono::duration<double>;
  RateTracker r;
  const auto before_first = clock::now();
  REQUIRE(r.rate("k", 1000) == 0);
  const auto after_first = clock::now();

  std::this_thread::sleep_until(after_first + 600ms);  // let time pass (nothing to wait for)
  const auto before_second = clock::now();
  const double rate = r.rate("k", 1600);
  const auto after_second = clock::now();
  // The tracker's dt lies between the two measured spans.
  const double max_dt = seconds(after_second - before_first).count();
  const double min_dt = seconds(before_second - after_first).count();
  REQUIRE(min_dt >= 0.6);
  REQUIRE(rate >= 600 / max_dt);
  REQUIRE(rate <= 600 / min_dt);

  // Right after: the previous rate, not a rate over a few microseconds.
  const double again = r.rate("k", 999999);
  if (clock::now() - before_second < 500ms) {
    REQUIRE(again == rate);
  }

  // A counter that went down (a reset, a replaced exporter) gives 0, not a huge number.
  std::this_thread::sleep_until(clock::now() + 600ms);
  REQUIRE(r.rate("k", 10) == 0);
}

TEST_CASE("rate tracker: a status document reports per-second rates", "[report][rates]") {
  using clock = std::chrono::steady_clock;
  FakeAgent a;
  RateTracker rates;
  add(a.grafana.sent_spans, 100);
  add(a.receiver.accepted_spans, 100);
  const auto first = clock::now();
  (void)parse_status(a.view, rates);
  const auto first_done = clock::now();
  add(a.grafana.sent_spans, 300);
  add(a.receiver.accepted_spans, 300);
  a.receiver.http_duration.observe(1ms);
  std::this_thread::sleep_until(first_done + 600ms);  // let time pass (nothing to wait for)
  const auto second = clock::now();
  const json::object doc = parse_status(a.view, rates);
  const auto second_done = clock::now();
  const double max_dt = std::chrono::duration<double>(second_done - first).count();
  const double min_dt = std::chrono::duration<double>(second - first_done).count();
  const double sent = at(exporter_named(doc, "grafana"), "sent_spans_per_second").as_double();
  REQUIRE(sent >= 300 / max_dt);
  REQUIRE(sent <= 300 / min_dt);
  const double accepted =
      at(at(doc, "intake").as_object(), "accepted_spans_per_second").as_double();
  REQUIRE(accepted >= 300 / max_dt);
  REQUIRE(accepted <= 300 / min_dt);
  const double http =
      at(at(doc, "receivers").as_array()[0].as_object(), "requests_per_second").as_double();
  REQUIRE(http >= 1 / max_dt);
  REQUIRE(http <= 1 / min_dt);
  REQUIRE(at(exporter_named(doc, "tempo"), "sent_spans_per_second").as_double() == 0);
}
