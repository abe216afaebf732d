#include "app.hpp"

#include <systemd/sd-daemon.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>

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

std::unique_ptr<Exporter> make_exporter(config::Exporter e, const config::Config& c,
                                        const MemoryBudget& budget) {
  if (e.max_queue_bytes == 0) {
    e.max_queue_bytes = c.buffer.max_bytes / c.exporters.size();
  }
  switch (e.type) {
    case config::ExporterType::otlp_http:
      return std::make_unique<QueuedExporter>(e, [](boost::asio::io_context& ioc,
                                                    const config::Exporter& o) {
        return std::make_unique<HttpSender>(ioc, o);
      }, &budget);
    case config::ExporterType::otlp_grpc:
      return std::make_unique<QueuedExporter>(e, [](boost::asio::io_context& ioc,
                                                    const config::Exporter& o) {
        return std::make_unique<GrpcSender>(ioc, o);
      }, &budget);
    case config::ExporterType::file:
      return std::make_unique<FileExporter>(e);
  }
  throw std::logic_error("unknown exporter type");
}

struct Pipeline {
  explicit Pipeline(const config::Config& c)
      : budget(c.buffer.max_bytes), ring(c.buffer.max_chunks),
        batcher(ring, c.batch, [this](BatchPtr b) { fan_out(std::move(b)); }, batcher_stats),
        intake(ring, budget, receiver_stats, [this] { batcher.notify(); }) {
    for (const auto& e : c.exporters) {
      exporters.push_back(make_exporter(e, c, budget));
    }
  }

  void fan_out(BatchPtr batch) {
    for (auto& e : exporters) {
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
    struct Family {
      const char* name;
      const char* help;
      const Counter ExporterStats::*field;
      const char* type = "counter";
    };
    static constexpr Family families[] = {
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
    };
    for (const Family& f : families) {
      out << "# HELP " << f.name << ' ' << f.help << "\n# TYPE " << f.name << ' ' << f.type
          << '\n';
      for (const auto& e : exporters) {
        out << f.name << "{exporter=\"" << e->name() << "\"} " << get(e->stats().*f.field)
            << '\n';
      }
    }
    return out.str();
  }

  MemoryBudget budget;
  Ring<Chunk> ring;
  ReceiverStats receiver_stats;
  BatcherStats batcher_stats;
  std::vector<std::unique_ptr<Exporter>> exporters;
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
