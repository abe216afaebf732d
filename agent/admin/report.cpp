#include "admin/report.hpp"

#include <dirent.h>
#include <sys/resource.h>
#include <unistd.h>

#include <boost/json.hpp>

#include <cstdio>
#include <ctime>
#include <fstream>
#include <sstream>

namespace spanrelay {
namespace {

// One metric family with a sample per exporter (or per spool).
template <typename Stats>
struct Family {
  const char* name;
  const char* help;
  const Counter Stats::*field;
  const char* type = "counter";
  bool network_only = false;  // meaningless for the file exporter (circuit, retries, ...)
};

// A Prometheus label value: backslash, double quote and newline escaped.
std::string label_value(std::string_view text) {
  std::string out;
  for (const char c : text) {
    if (c == '\\' || c == '"') {
      out += '\\';
      out += c;
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

void header(std::ostream& out, const char* name, const char* help, const char* type) {
  out << "# HELP " << name << ' ' << help << "\n# TYPE " << name << ' ' << type << '\n';
}

void single(std::ostream& out, const char* name, const char* help, const char* type,
            double value) {
  header(out, name, help, type);
  out << name << ' ';
  write_number(out, value);
  out << '\n';
}

constexpr Family<ExporterStats> kExporterFamilies[] = {
    {"spanrelay_exporter_sent_spans_total", "Spans the upstream acknowledged.",
     &ExporterStats::sent_spans},
    {"spanrelay_exporter_sent_requests_total", "Requests the upstream acknowledged.",
     &ExporterStats::sent_requests},
    {"spanrelay_exporter_failed_spans_total",
     "Spans dropped after a permanent error, exhausted retries or the shutdown deadline.",
     &ExporterStats::failed_spans},
    {"spanrelay_exporter_failed_requests_total", "Requests dropped.",
     &ExporterStats::failed_requests},
    {"spanrelay_exporter_retries_total", "Attempts after the first.", &ExporterStats::retries,
     "counter", true},
    {"spanrelay_exporter_rejected_spans_total",
     "Spans the upstream reported as rejected in partial_success.",
     &ExporterStats::rejected_spans, "counter", true},
    {"spanrelay_exporter_split_batches_total",
     "Batches the upstream refused as too large and that were re-sent in pieces.",
     &ExporterStats::split_batches, "counter", true},
    {"spanrelay_exporter_queued_batches", "Batches waiting or in flight.",
     &ExporterStats::queued_batches, "gauge", true},
    {"spanrelay_exporter_queued_bytes", "Bytes of the batches waiting in the memory queue.",
     &ExporterStats::queued_bytes, "gauge", true},
    {"spanrelay_exporter_circuit_state",
     "Circuit breaker: 0 closed, 1 open (upstream failing), 2 half-open (one probe out).",
     &ExporterStats::circuit_state, "gauge", true},
    {"spanrelay_exporter_circuit_opened_total", "Times the circuit breaker opened.",
     &ExporterStats::circuit_opened, "counter", true},
    {"spanrelay_exporter_respooled_spans_total",
     "Spans whose retries ran out (retry.max_elapsed) and went back to the disk spool.",
     &ExporterStats::respooled_spans, "counter", true},
    {"spanrelay_exporter_spool_refused_spans_total",
     "Spans refused with 429/RESOURCE_EXHAUSTED because this exporter's spool could not take "
     "them (on_full: reject, or a disk error).",
     &ExporterStats::spool_refused_spans, "counter", true},
};

constexpr Family<SpoolStats> kSpoolFamilies[] = {
    {"spanrelay_spool_records", "Records on disk not yet delivered.", &SpoolStats::records,
     "gauge"},
    {"spanrelay_spool_bytes", "Size of the spool's segment files.", &SpoolStats::bytes, "gauge"},
    {"spanrelay_spool_appended_records_total", "Requests written to the spool.",
     &SpoolStats::appended_records},
    {"spanrelay_spool_replayed_records_total",
     "Undelivered records found in the spool at start-up.", &SpoolStats::replayed_records},
    {"spanrelay_spool_acked_records_total", "Records delivered (or dropped) and released.",
     &SpoolStats::acked_records},
    {"spanrelay_spool_dropped_records_total",
     "Records the spool dropped: on_full: drop_oldest, max_age, or unreadable.",
     &SpoolStats::dropped_records},
    {"spanrelay_spool_dropped_spans_total", "Spans in the records the spool dropped.",
     &SpoolStats::dropped_spans},
    {"spanrelay_spool_corrupt_records_total",
     "Records skipped because their bytes on disk failed the checksum.",
     &SpoolStats::corrupt_records},
    {"spanrelay_spool_torn_tails_total",
     "Partially written last records (a crash mid-write) truncated at start-up.",
     &SpoolStats::torn_tails},
    {"spanrelay_spool_io_errors_total", "Failed disk operations.", &SpoolStats::io_errors},
    {"spanrelay_spool_syncs_total", "fdatasync calls.", &SpoolStats::syncs},
};

struct ProcessStats {
  double cpu_seconds = 0;
  std::uint64_t rss_bytes = 0;
  std::uint64_t virtual_bytes = 0;
  std::uint64_t open_fds = 0;
  std::uint64_t max_fds = 0;
};

ProcessStats read_process_stats() {
  ProcessStats p;
  std::string line;
  {
    std::ifstream stat("/proc/self/stat");  // closed before the descriptors are counted
    std::getline(stat, line);
  }
  if (!line.empty()) {
    // Fields after the command name (which may contain spaces) start after the last ')'.
    std::istringstream rest(line.substr(line.rfind(')') + 2));
    std::string field;
    unsigned long long utime = 0, stime = 0, vsize = 0, rss_pages = 0;
    for (int i = 3; rest >> field; ++i) {
      if (i == 14) {
        utime = std::stoull(field);
      } else if (i == 15) {
        stime = std::stoull(field);
      } else if (i == 23) {
        vsize = std::stoull(field);
      } else if (i == 24) {
        rss_pages = std::stoull(field);
        break;
      }
    }
    const long ticks = sysconf(_SC_CLK_TCK);
    p.cpu_seconds = static_cast<double>(utime + stime) / static_cast<double>(ticks > 0 ? ticks : 100);
    p.virtual_bytes = vsize;
    p.rss_bytes = rss_pages * static_cast<unsigned long long>(sysconf(_SC_PAGESIZE));
  }
  if (DIR* d = opendir("/proc/self/fd")) {
    while (const dirent* e = readdir(d)) {
      if (e->d_name[0] != '.') {
        ++p.open_fds;
      }
    }
    closedir(d);
    if (p.open_fds > 0) {
      --p.open_fds;  // the directory stream's own descriptor
    }
  }
  rlimit lim{};
  if (getrlimit(RLIMIT_NOFILE, &lim) == 0) {
    p.max_fds = lim.rlim_cur;
  }
  return p;
}

double seconds_since_epoch(std::chrono::system_clock::time_point t) {
  return std::chrono::duration<double>(t.time_since_epoch()).count();
}

}  // namespace

std::string rfc3339(std::chrono::system_clock::time_point t) {
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch());
  const std::time_t secs = static_cast<std::time_t>(ms.count() / 1000);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[96];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                static_cast<int>(ms.count() % 1000));
  return buf;
}

std::string render_metrics(const AgentView& v) {
  std::ostringstream out;
  const ReceiverStats& r = *v.receiver_stats;
  auto counter = [&](const char* name, const char* help, std::uint64_t value) {
    single(out, name, help, "counter", static_cast<double>(value));
  };
  header(out, "spanrelay_build_info", "The running spanrelay's version (always 1).", "gauge");
  out << "spanrelay_build_info{version=\"" << SPANRELAY_VERSION << "\"} 1\n";
  single(out, "spanrelay_ready", "1 when /readyz answers 200.", "gauge", v.ready ? 1 : 0);
  header(out, "spanrelay_config_reloads_total", "Configuration reloads (SIGHUP) by result.",
         "counter");
  out << "spanrelay_config_reloads_total{result=\"success\"} " << v.reloads.succeeded << '\n'
      << "spanrelay_config_reloads_total{result=\"failure\"} " << v.reloads.failed << '\n';
  single(out, "spanrelay_config_last_reload_successful",
         "0 when the last reload was refused (the previous configuration still runs).", "gauge",
         v.reloads.last_result == "failure" ? 0 : 1);

  const ProcessStats p = read_process_stats();
  single(out, "process_cpu_seconds_total", "User and system CPU time spent, in seconds.",
         "counter", p.cpu_seconds);
  single(out, "process_resident_memory_bytes", "Resident memory size in bytes.", "gauge",
         static_cast<double>(p.rss_bytes));
  single(out, "process_virtual_memory_bytes", "Virtual memory size in bytes.", "gauge",
         static_cast<double>(p.virtual_bytes));
  single(out, "process_open_fds", "Open file descriptors.", "gauge",
         static_cast<double>(p.open_fds));
  single(out, "process_max_fds", "The limit on open file descriptors.", "gauge",
         static_cast<double>(p.max_fds));
  single(out, "process_start_time_seconds", "Start time of the process, in Unix seconds.",
         "gauge", seconds_since_epoch(v.started_at));

  counter("spanrelay_receiver_requests_total", "Export requests received.", get(r.requests));
  counter("spanrelay_receiver_accepted_spans_total", "Spans acknowledged and buffered.",
          get(r.accepted_spans));
  counter("spanrelay_receiver_refused_spans_total",
          "Spans refused with 429/RESOURCE_EXHAUSTED because the buffer was full.",
          get(r.refused_spans));
  counter("spanrelay_receiver_rejected_spans_total",
          "Spans rejected as invalid (bad ids) and reported in partial_success.",
          get(r.rejected_spans));
  counter("spanrelay_receiver_bad_requests_total", "Requests answered with a 4xx status.",
          get(r.bad_requests));
  counter("spanrelay_receiver_unavailable_total", "Requests refused while shutting down.",
          get(r.unavailable));
  header(out, "spanrelay_receiver_request_duration_seconds",
         "Time to handle one export request, from its body read to its answer.", "histogram");
  for (const ReceiverView& rv : v.receivers) {
    rv.duration->render(out, "spanrelay_receiver_request_duration_seconds",
                        "receiver=\"" + rv.name + "\"");
  }
  counter("spanrelay_receiver_http_idle_evictions_total",
          "Idle keep-alive connections closed to make room for a new client at max_connections.",
          v.http_idle_evictions);
  counter("spanrelay_receiver_http_connections_refused_total",
          "New connections refused at max_connections because every connection was busy.",
          v.http_connections_refused);
  counter("spanrelay_batcher_batches_total", "Batches handed to the exporters.",
          get(v.batcher_stats->batches));
  counter("spanrelay_batcher_splits_total", "Requests split to respect the batch limits.",
          get(v.batcher_stats->splits));
  if (!v.processors.empty()) {
    header(out, "spanrelay_processor_dropped_spans_total",
           "Spans a processor dropped, by reason (filter rule, sampler decision, parent dropped).",
           "counter");
    for (const ProcessorView& p : v.processors) {
      for (const auto& [reason, n] : p.dropped_spans) {
        out << "spanrelay_processor_dropped_spans_total{processor=\"" << label_value(p.name)
            << "\",reason=\"" << label_value(reason) << "\"} " << n << '\n';
      }
    }
    header(out, "spanrelay_processor_edited_attributes_total",
           "Attributes a processor set, renamed, redacted or deleted.", "counter");
    for (const ProcessorView& p : v.processors) {
      out << "spanrelay_processor_edited_attributes_total{processor=\"" << label_value(p.name)
          << "\"} " << p.edited_attributes << '\n';
    }
  }
  single(out, "spanrelay_buffer_used_bytes", "Memory held by buffered spans.", "gauge",
         static_cast<double>(v.buffer_used));
  single(out, "spanrelay_buffer_limit_bytes", "buffer.max_bytes.", "gauge",
         static_cast<double>(v.buffer_limit));

  for (const auto& f : kExporterFamilies) {
    header(out, f.name, f.help, f.type);
    for (const ExporterView& e : v.exporters) {
      if (!f.network_only || e.network) {
        out << f.name << "{exporter=\"" << e.name << "\"} " << get(e.stats->*f.field) << '\n';
      }
    }
  }
  header(out, "spanrelay_exporter_queue_limit_bytes",
         "max_queue_bytes: past it, under memory pressure, the oldest batch is dropped.",
         "gauge");
  for (const ExporterView& e : v.exporters) {
    if (e.network) {
      out << "spanrelay_exporter_queue_limit_bytes{exporter=\"" << e.name << "\"} "
          << e.queue_limit_bytes << '\n';
    }
  }
  header(out, "spanrelay_exporter_request_duration_seconds",
         "Time of one attempt to deliver a batch upstream (or to write it, for a file).",
         "histogram");
  for (const ExporterView& e : v.exporters) {
    e.stats->request_duration.render(out, "spanrelay_exporter_request_duration_seconds",
                                     "exporter=\"" + e.name + "\"");
  }
  bool any_spool = false;
  for (const ExporterView& e : v.exporters) {
    any_spool = any_spool || e.spool != nullptr;
  }
  if (any_spool) {
    for (const auto& f : kSpoolFamilies) {
      header(out, f.name, f.help, f.type);
      for (const ExporterView& e : v.exporters) {
        if (e.spool != nullptr) {
          out << f.name << "{exporter=\"" << e.name << "\"} " << get(e.spool->stats().*f.field)
              << '\n';
        }
      }
    }
    header(out, "spanrelay_spool_limit_bytes", "The bound on this exporter's spool.", "gauge");
    for (const ExporterView& e : v.exporters) {
      if (e.spool != nullptr) {
        out << "spanrelay_spool_limit_bytes{exporter=\"" << e.name << "\"} "
            << e.spool->capacity() << '\n';
      }
    }
  }
  return out.str();
}

double RateTracker::rate(const std::string& key, std::uint64_t value) {
  const auto now = std::chrono::steady_clock::now();
  std::lock_guard lock(mu_);
  auto [it, inserted] = samples_.try_emplace(key, Sample{value, now, 0});
  Sample& s = it->second;
  if (inserted) {
    return 0;
  }
  const double dt = std::chrono::duration<double>(now - s.at).count();
  if (dt >= 0.5) {
    s.rate = value >= s.value ? static_cast<double>(value - s.value) / dt : 0;
    s.value = value;
    s.at = now;
  }
  return s.rate;
}

std::string render_status_json(const AgentView& v, RateTracker& rates) {
  namespace json = boost::json;
  auto time_or_null = [](std::chrono::system_clock::time_point t) -> json::value {
    if (t == std::chrono::system_clock::time_point{}) {
      return nullptr;
    }
    return json::value(rfc3339(t));
  };
  const auto now = std::chrono::system_clock::now();
  const ReceiverStats& r = *v.receiver_stats;
  json::object doc;
  doc["version"] = SPANRELAY_VERSION;
  doc["config"] = v.config_source;
  doc["started_at"] = rfc3339(v.started_at);
  doc["uptime_seconds"] = std::chrono::duration<double>(now - v.started_at).count();
  doc["live"] = v.live;
  doc["live_reason"] = v.live_reason;
  doc["ready"] = v.ready;
  doc["ready_reason"] = v.ready_reason;
  json::object reloads;
  reloads["succeeded"] = v.reloads.succeeded;
  reloads["failed"] = v.reloads.failed;
  reloads["last_result"] =
      v.reloads.last_result.empty() ? json::value(nullptr) : json::value(v.reloads.last_result);
  reloads["last_time"] = time_or_null(v.reloads.last_time);
  reloads["last_error"] =
      v.reloads.last_error.empty() ? json::value(nullptr) : json::value(v.reloads.last_error);
  doc["reloads"] = std::move(reloads);
  doc["buffer"] = {{"used_bytes", v.buffer_used}, {"limit_bytes", v.buffer_limit}};
  doc["intake"] = {
      {"requests", get(r.requests)},
      {"accepted_spans", get(r.accepted_spans)},
      {"refused_spans", get(r.refused_spans)},
      {"rejected_spans", get(r.rejected_spans)},
      {"bad_requests", get(r.bad_requests)},
      {"accepted_spans_per_second", rates.rate("intake.accepted", get(r.accepted_spans))}};
  json::array receivers;
  for (const ReceiverView& rv : v.receivers) {
    const std::uint64_t requests = rv.duration->count();
    receivers.push_back({{"name", rv.name},
                         {"endpoint", rv.endpoint},
                         {"state", rv.state},
                         {"requests", requests},
                         {"requests_per_second", rates.rate("receiver." + rv.name, requests)}});
  }
  doc["receivers"] = std::move(receivers);
  json::array exporters;
  for (const ExporterView& e : v.exporters) {
    const ExporterStats& s = *e.stats;
    const ExporterHealth::Snapshot h = s.health.snapshot();
    json::object o;
    o["name"] = e.name;
    o["type"] = e.type;
    o["endpoint"] = e.endpoint;
    const auto circuit = get(s.circuit_state);
    // The latest attempt decides; the circuit (open while the upstream keeps failing) is
    // reported on its own.
    o["state"] = !h.attempted ? "idle" : h.failing ? "failing" : "ok";
    o["sent_spans"] = get(s.sent_spans);
    o["failed_spans"] = get(s.failed_spans);
    o["retries"] = get(s.retries);
    o["sent_spans_per_second"] = rates.rate("exporter." + e.name, get(s.sent_spans));
    o["queued_batches"] = get(s.queued_batches);
    o["queue_bytes"] = get(s.queued_bytes);
    o["queue_limit_bytes"] = e.queue_limit_bytes;
    if (e.spool != nullptr) {
      o["spool"] = {{"records", get(e.spool->stats().records)},
                    {"bytes", get(e.spool->stats().bytes)},
                    {"limit_bytes", e.spool->capacity()}};
    } else {
      o["spool"] = nullptr;
    }
    if (e.network) {
      o["circuit"] = circuit == 0 ? "closed" : circuit == 1 ? "open" : "half_open";
    } else {
      o["circuit"] = nullptr;
    }
    if (h.last_error_at != ExporterHealth::Time{}) {
      o["last_error"] = {{"message", h.last_error},
                         {"class", h.last_error_class},
                         {"time", rfc3339(h.last_error_at)}};
    } else {
      o["last_error"] = nullptr;
    }
    o["last_success"] = time_or_null(h.last_success_at);
    o["next_retry"] = h.failing ? time_or_null(h.next_retry_at) : json::value(nullptr);
    exporters.push_back(std::move(o));
  }
  doc["exporters"] = std::move(exporters);
  return json::serialize(doc) + "\n";
}

}  // namespace spanrelay
