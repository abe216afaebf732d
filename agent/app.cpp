#include "app.hpp"

#include <systemd/sd-daemon.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>

#include <algorithm>
#include <future>
#include <memory>
#include <sstream>
#include <thread>
#include <vector>

#include "admin/admin_server.hpp"
#include "batcher/batcher.hpp"
#include "common/log.hpp"
#include "exporters/file/file_exporter.hpp"
#include "exporters/otlp_grpc/grpc_sender.hpp"
#include "exporters/otlp_http/http_sender.hpp"
#include "exporters/queued_exporter.hpp"
#include "receivers/grpc/otlp_grpc_receiver.hpp"
#include "receivers/http/otlp_http_receiver.hpp"
#include "receivers/intake.hpp"

namespace spanrelay {
namespace {

SpoolOptions spool_options(const config::Spool& s, std::size_t spooled_exporters) {
  SpoolOptions o;
  o.path = s.path;
  o.max_bytes = s.max_bytes / std::max<std::size_t>(spooled_exporters, 1);
  o.fsync = s.fsync == config::SpoolFsync::always     ? SpoolFsync::kAlways
            : s.fsync == config::SpoolFsync::interval ? SpoolFsync::kInterval
                                                      : SpoolFsync::kNever;
  o.fsync_interval = s.fsync_interval;
  o.on_full = s.on_full == config::SpoolOnFull::reject ? SpoolOnFull::kReject
                                                       : SpoolOnFull::kDropOldest;
  o.replay = s.replay == config::SpoolReplay::newest_first ? SpoolReplay::kNewestFirst
                                                           : SpoolReplay::kOldestFirst;
  o.max_age = s.max_age;
  return o;
}

// One Prometheus metric family with a sample per exporter.
template <typename Stats>
struct Family {
  const char* name;
  const char* help;
  const Counter Stats::*field;
  const char* type = "counter";
};

template <typename Stats, std::size_t N, typename Exporters, typename StatsOf>
void render_families(std::ostream& out, const Family<Stats> (&families)[N],
                     const Exporters& exporters, StatsOf stats_of) {
  for (const Family<Stats>& f : families) {
    out << "# HELP " << f.name << ' ' << f.help << "\n# TYPE " << f.name << ' ' << f.type << '\n';
    for (const auto& e : exporters) {
      out << f.name << "{exporter=\"" << e->name() << "\"} " << get(stats_of(*e).*f.field)
          << '\n';
    }
  }
}

bool is_network(const config::Exporter& e) { return e.type != config::ExporterType::file; }

struct Pipeline {
  explicit Pipeline(const config::Config& c)
      : budget(c.buffer.max_bytes), ring(c.buffer.max_chunks),
        batcher(ring, c.batch, [this](BatchPtr b) { fan_out(std::move(b)); }, batcher_stats),
        intake(ring, budget, receiver_stats, [this] { batcher.notify(); }) {
    const auto spooled_count = c.spool.enabled ? static_cast<std::size_t>(std::count_if(
                                                     c.exporters.begin(), c.exporters.end(),
                                                     is_network))
                                               : 0;
    const auto memory_count = c.exporters.size() - spooled_count;
    for (config::Exporter e : c.exporters) {
      if (e.type == config::ExporterType::file) {
        auto exporter = std::make_unique<FileExporter>(e);
        memory_exporters.push_back(exporter.get());
        exporters.push_back(std::move(exporter));
        continue;
      }
      if (e.max_queue_bytes == 0) {
        e.max_queue_bytes = c.buffer.max_bytes / std::max<std::size_t>(memory_count, 1);
      }
      QueuedExporter::SenderFactory sender;
      if (e.type == config::ExporterType::otlp_grpc) {
        sender = [](boost::asio::io_context& ioc, const config::Exporter& o) {
          return std::make_unique<GrpcSender>(ioc, o);
        };
      } else {
        sender = [](boost::asio::io_context& ioc, const config::Exporter& o) {
          return std::make_unique<HttpSender>(ioc, o);
        };
      }
      if (spooled_count > 0) {
        auto spool = Spool::open(spool_options(c.spool, spooled_count), e.name);
        // A batch in flight pins its records' segments against on_full: drop_oldest; keep the
        // batches small next to the spool so that most of it can always be freed.
        config::Batch limits = c.batch;
        limits.max_bytes = std::min<std::size_t>(limits.max_bytes, spool->capacity() / 16);
        auto exporter = std::make_unique<QueuedExporter>(e, std::move(sender), &budget,
                                                         std::move(spool), limits);
        spooled.push_back(exporter.get());
        exporters.push_back(std::move(exporter));
      } else {
        auto exporter = std::make_unique<QueuedExporter>(e, std::move(sender), &budget);
        memory_exporters.push_back(exporter.get());
        exporters.push_back(std::move(exporter));
      }
    }
    if (!spooled.empty()) {
      intake.set_persist([this](std::string_view request,
                                std::uint32_t spans) { return persist(request, spans); },
                         !memory_exporters.empty());
    }
  }

  // Spool mode: every network exporter's spool takes the request before it is acknowledged.
  // A refusal by any of them refuses the request (the client retries; the spools that took it
  // may then hold it twice: at least once, never lost).
  IntakeStatus persist(std::string_view request, std::uint32_t spans) {
    IntakeStatus status = IntakeStatus::kAccepted;
    for (QueuedExporter* e : spooled) {
      switch (e->spool_append(request, spans)) {
        case AppendStatus::kOk:
          break;
        case AppendStatus::kTooLarge:  // can never fit: retrying would not help
          return IntakeStatus::kTooLarge;
        default:
          status = IntakeStatus::kFull;
      }
    }
    return status;
  }

  void fan_out(BatchPtr batch) {
    for (Exporter* e : memory_exporters) {
      e->submit(batch);
    }
  }

  std::string render_metrics() const {
    std::ostringstream out;
    auto counter = [&](const char* name, const char* help, std::uint64_t v) {
      out << "# HELP " << name << ' ' << help << "\n# TYPE " << name << " counter\n"
          << name << ' ' << v << '\n';
    };
    const ReceiverStats& r = receiver_stats;
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
    counter("spanrelay_batcher_batches_total", "Batches handed to the exporters.",
            get(batcher_stats.batches));
    counter("spanrelay_batcher_splits_total", "Requests split to respect the batch limits.",
            get(batcher_stats.splits));
    out << "# HELP spanrelay_buffer_used_bytes Memory held by buffered spans.\n"
           "# TYPE spanrelay_buffer_used_bytes gauge\nspanrelay_buffer_used_bytes "
        << budget.used() << "\n# HELP spanrelay_buffer_limit_bytes buffer.max_bytes.\n"
           "# TYPE spanrelay_buffer_limit_bytes gauge\nspanrelay_buffer_limit_bytes "
        << budget.limit() << '\n';
    static constexpr Family<ExporterStats> families[] = {
        {"spanrelay_exporter_sent_spans_total", "Spans the upstream acknowledged.",
         &ExporterStats::sent_spans},
        {"spanrelay_exporter_sent_requests_total", "Requests the upstream acknowledged.",
         &ExporterStats::sent_requests},
        {"spanrelay_exporter_failed_spans_total",
         "Spans dropped after a permanent error, exhausted retries or the shutdown deadline.",
         &ExporterStats::failed_spans},
        {"spanrelay_exporter_failed_requests_total", "Requests dropped.",
         &ExporterStats::failed_requests},
        {"spanrelay_exporter_retries_total", "Attempts after the first.",
         &ExporterStats::retries},
        {"spanrelay_exporter_rejected_spans_total",
         "Spans the upstream reported as rejected in partial_success.",
         &ExporterStats::rejected_spans},
        {"spanrelay_exporter_split_batches_total",
         "Batches the upstream refused as too large and that were re-sent in pieces.",
         &ExporterStats::split_batches},
        {"spanrelay_exporter_queued_batches", "Batches waiting or in flight.",
         &ExporterStats::queued_batches, "gauge"},
        {"spanrelay_exporter_circuit_state",
         "Circuit breaker: 0 closed, 1 open (upstream failing), 2 half-open (one probe out).",
         &ExporterStats::circuit_state, "gauge"},
        {"spanrelay_exporter_circuit_opened_total", "Times the circuit breaker opened.",
         &ExporterStats::circuit_opened},
        {"spanrelay_exporter_respooled_spans_total",
         "Spans whose retries ran out (retry.max_elapsed) and went back to the disk spool.",
         &ExporterStats::respooled_spans},
        {"spanrelay_exporter_spool_refused_spans_total",
         "Spans refused with 429/RESOURCE_EXHAUSTED because this exporter's spool could not "
         "take them (on_full: reject, or a disk error).",
         &ExporterStats::spool_refused_spans},
    };
    render_families(out, families, exporters,
                    [](const Exporter& e) -> const ExporterStats& { return e.stats(); });
    static constexpr Family<SpoolStats> spool_families[] = {
        {"spanrelay_spool_records", "Records on disk not yet delivered.", &SpoolStats::records,
         "gauge"},
        {"spanrelay_spool_bytes", "Size of the spool's segment files.", &SpoolStats::bytes,
         "gauge"},
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
    if (!spooled.empty()) {
      render_families(out, spool_families, spooled,
                      [](const QueuedExporter& e) -> const SpoolStats& { return e.spool()->stats(); });
    }
    return out.str();
  }

  MemoryBudget budget;
  Ring<Chunk> ring;
  ReceiverStats receiver_stats;
  BatcherStats batcher_stats;
  std::vector<std::unique_ptr<Exporter>> exporters;  // in config order
  std::vector<Exporter*> memory_exporters;          // fed by the batcher
  std::vector<QueuedExporter*> spooled;             // fed through their disk spools
  Batcher batcher;
  Intake intake;
};

}  // namespace

int run_agent(const config::Config& config) {
  auto log = logger("agent");
  Pipeline pipeline(config);
  boost::asio::io_context ioc(1);

  std::unique_ptr<http::OtlpHttpReceiver> http_receiver;
  if (config.receivers.http.enabled) {
    http_receiver =
        std::make_unique<http::OtlpHttpReceiver>(ioc, config.receivers.http, pipeline.intake);
  }
  std::unique_ptr<OtlpGrpcReceiver> grpc_receiver;
  if (config.receivers.grpc.enabled) {
    grpc_receiver = std::make_unique<OtlpGrpcReceiver>(config.receivers.grpc, pipeline.intake);
  }
  std::unique_ptr<AdminServer> admin;
  if (config.admin.enabled) {
    admin = std::make_unique<AdminServer>(
        ioc, config.admin.endpoint, [&pipeline] { return pipeline.render_metrics(); },
        [&pipeline] { return !pipeline.intake.closed(); });
  }

  // Start from the back of the pipeline so nothing is accepted before it can be forwarded.
  for (auto& e : pipeline.exporters) {
    e->start();
  }
  pipeline.batcher.start();
  if (http_receiver) {
    http_receiver->start();
  }
  if (grpc_receiver) {
    grpc_receiver->start();
  }
  if (admin) {
    admin->start();
  }

  std::promise<int> stop_signal;
  boost::asio::signal_set signals(ioc, SIGINT, SIGTERM);
  signals.async_wait([&](const boost::system::error_code& ec, int signo) {
    if (!ec) {
      stop_signal.set_value(signo);
    }
  });
  std::thread io_thread([&ioc] { ioc.run(); });
  sd_notify(0, "READY=1");
  log->info("spanrelay {} running ({} exporter(s)); config {}", SPANRELAY_VERSION,
            pipeline.exporters.size(), config.source);

  const int signo = stop_signal.get_future().get();
  const auto deadline = std::chrono::steady_clock::now() + config.shutdown_timeout;
  sd_notify(0, "STOPPING=1");
  log->info("received signal {}: draining (up to {} ms)", signo, config.shutdown_timeout.count());

  // 1. Stop taking spans: close the listener, answer stragglers 503, wait for in-progress pushes.
  if (http_receiver) {
    http_receiver->stop_accepting();
  }
  pipeline.intake.close();
  // gRPC calls that arrived meanwhile have been answered UNAVAILABLE; wait briefly for those in
  // flight, then cancel the rest.
  if (grpc_receiver) {
    grpc_receiver->shutdown(std::min(deadline, std::chrono::steady_clock::now() +
                                                   std::chrono::seconds(1)));
  }
  // 2. Flush the ring and the pending batch to the exporters.
  pipeline.batcher.stop();
  // 3. Deliver what is queued and in flight, until the deadline.
  for (auto& e : pipeline.exporters) {
    e->shutdown(deadline);
  }
  ioc.stop();
  io_thread.join();

  std::uint64_t sent = 0, failed = 0;
  for (auto& e : pipeline.exporters) {
    sent += get(e->stats().sent_spans);
    failed += get(e->stats().failed_spans);
  }
  log->info("stopped: {} span(s) accepted, {} delivered, {} dropped by exporters, {} refused",
            get(pipeline.receiver_stats.accepted_spans), sent, failed,
            get(pipeline.receiver_stats.refused_spans));
  return 0;
}

}  // namespace spanrelay
