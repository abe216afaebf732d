#include "app.hpp"

#include <systemd/sd-daemon.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/signal_set.hpp>

#include <algorithm>
#include <condition_variable>
#include <deque>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <thread>
#include <utility>
#include <vector>

#include "admin/admin_server.hpp"
#include "admin/report.hpp"
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

using Clock = std::chrono::steady_clock;

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

bool is_network(const config::Exporter& e) { return e.type != config::ExporterType::file; }

const char* type_name(config::ExporterType t) {
  switch (t) {
    case config::ExporterType::otlp_http:
      return "otlp_http";
    case config::ExporterType::otlp_grpc:
      return "otlp_grpc";
    case config::ExporterType::file:
      return "file";
  }
  return "unknown";
}

// Runs `fn` on the io thread and waits for it (exceptions included): the HTTP servers'
// acceptors and sessions belong to that thread.
template <typename Fn>
void run_on(boost::asio::io_context& ioc, Fn fn) {
  std::packaged_task<void()> task(std::move(fn));
  auto result = task.get_future();
  boost::asio::post(ioc, [&task] { task(); });
  result.get();
}

// The same exporter for a reload: equal as configured. The password is left out (a rotated
// password_file is picked up without a reload) and so is an automatic max_queue_bytes (an
// exporter count that changed resizes queues in place, see QueuedExporter::set_queue_limit).
bool same_exporter(config::Exporter a, config::Exporter b, std::size_t a_auto_queue,
                   std::size_t b_auto_queue) {
  a.auth.password.clear();
  b.auth.password.clear();
  if (a.max_queue_bytes == a_auto_queue && b.max_queue_bytes == b_auto_queue) {
    a.max_queue_bytes = b.max_queue_bytes = 0;
  }
  return a == b;
}

// The exporters of one configuration, in config order, as the batcher and intake see them.
struct ExporterSet {
  std::size_t auto_queue_bytes = 0;       // max_queue_bytes when it is left automatic
  std::vector<config::Exporter> options;  // resolved (max_queue_bytes set)
  std::vector<std::shared_ptr<Exporter>> all;
  std::vector<const Spool*> spool_of;     // parallel to `all`; nullptr without a spool
  std::vector<Exporter*> memory;          // fed by the batcher
  std::vector<QueuedExporter*> spooled;   // fed through their disk spools
  // Reload: kept exporters whose automatic queue limit moves, applied once the reload commits.
  std::vector<std::pair<QueuedExporter*, std::size_t>> queue_limits;

  Exporter* find(const std::string& name, const config::Exporter** options_out) const {
    for (std::size_t i = 0; i < all.size(); ++i) {
      if (all[i]->name() == name) {
        if (options_out != nullptr) {
          *options_out = &options[i];
        }
        return all[i].get();
      }
    }
    return nullptr;
  }
};

// The receivers and admin endpoint of one configuration. A reload re-binds only those whose
// address changed; the others keep their listener and connections.
struct Listeners {
  std::unique_ptr<http::OtlpHttpReceiver> http;
  std::unique_ptr<OtlpGrpcReceiver> grpc;
  std::unique_ptr<AdminServer> admin;
};

class Agent {
 public:
  Agent(config::Config config, std::string config_path)
      : config_(std::move(config)), config_path_(std::move(config_path)), log_(logger("agent")),
        started_at_(std::chrono::system_clock::now()), budget_(config_.buffer.max_bytes),
        ring_(config_.buffer.max_chunks),
        batcher_(ring_, config_.batch, [this](BatchPtr b) { fan_out(std::move(b)); },
                 batcher_stats_),
        intake_(ring_, budget_, receiver_stats_, [this] { batcher_.notify(); }),
        processors_(std::make_shared<const processors::ProcessorChain>(config_.processors)) {
    exporters_ = build_exporters(config_, nullptr);
    route_intake(*exporters_);
  }

  // After a failed start (or run()), the pipeline is taken down front to back: the batcher
  // flushes into exporters that still exist.
  ~Agent() {
    intake_.close();
    batcher_.stop();
    if (exporters_) {
      for (const auto& e : exporters_->all) {
        e->shutdown(Clock::now());
      }
    }
  }

  int run();

 private:
  enum class Event { kStop, kReload };

  std::shared_ptr<ExporterSet> build_exporters(const config::Config& c,
                                               const ExporterSet* previous);
  std::shared_ptr<const Intake::Route> route_intake(const ExporterSet& set);
  void fan_out(BatchPtr batch);
  std::unique_ptr<Listeners> make_listeners(const config::Config& c, const Listeners* keep);
  void start_listeners(Listeners& l, const Listeners* keep);
  void stop_listeners(Listeners& l);
  void reload();
  void apply(config::Config next);
  void watchdog_loop(std::chrono::microseconds watchdog_usec);
  void check_liveness();
  Probe live() const;
  Probe ready() const;
  AgentView view() const;
  void post_event(Event e);

  config::Config config_;  // the running configuration (main thread; copied under state_mu_)
  const std::string config_path_;
  std::shared_ptr<spdlog::logger> log_;
  const std::chrono::system_clock::time_point started_at_;

  MemoryBudget budget_;
  Ring<Chunk> ring_;
  ReceiverStats receiver_stats_;
  BatcherStats batcher_stats_;
  Batcher batcher_;
  Intake intake_;
  boost::asio::io_context ioc_{1};

  // Carried across reloads, by exporter name: counters (so they never go backwards) and the
  // disk spools (a replaced exporter's successor reads the same records).
  std::map<std::string, std::shared_ptr<ExporterStats>> exporter_stats_;
  std::map<std::string, std::shared_ptr<Spool>> spools_;

  mutable std::mutex exporters_mu_;  // guards exporters_ and processors_ (reload, reports)
  std::shared_ptr<const ExporterSet> exporters_;
  // The processors chain the intake runs (a reload that changes `processors:` builds a new one,
  // whose counters start at 0).
  std::shared_ptr<const processors::ProcessorChain> processors_;

  std::unique_ptr<Listeners> listeners_;
  std::vector<std::unique_ptr<Listeners>> retired_listeners_;  // finishing their connections

  mutable std::mutex state_mu_;  // guards what the admin endpoint reads below
  std::string http_endpoint_, grpc_endpoint_;
  bool listening_ = false;
  bool draining_ = false;
  ReloadView reloads_;
  std::string live_reason_ = "live";

  std::atomic<bool> live_{true};
  std::atomic<std::int64_t> io_ping_{0};  // the io thread answers the watchdog's pings
  std::atomic<bool> stop_watchdog_{false};
  RateTracker rates_;

  std::mutex events_mu_;
  std::condition_variable events_cv_;
  std::condition_variable watchdog_cv_;
  std::deque<Event> events_;
};

std::shared_ptr<ExporterSet> Agent::build_exporters(const config::Config& c,
                                                    const ExporterSet* previous) {
  auto set = std::make_shared<ExporterSet>();
  const auto spooled_count =
      c.spool.enabled
          ? static_cast<std::size_t>(std::count_if(c.exporters.begin(), c.exporters.end(),
                                                   is_network))
          : 0;
  const auto memory_count = c.exporters.size() - spooled_count;
  set->auto_queue_bytes = c.buffer.max_bytes / std::max<std::size_t>(memory_count, 1);
  for (config::Exporter e : c.exporters) {
    if (is_network(e) && e.max_queue_bytes == 0) {
      e.max_queue_bytes = set->auto_queue_bytes;
    }
    const config::Exporter* before = nullptr;
    Exporter* existing = previous != nullptr ? previous->find(e.name, &before) : nullptr;
    // A spooled exporter batches its own reads: new batch limits mean a new one.
    const bool unchanged =
        existing != nullptr &&
        same_exporter(*before, e, previous->auto_queue_bytes, set->auto_queue_bytes) &&
        (spooled_count == 0 || !is_network(e) || c.batch == config_.batch);
    std::shared_ptr<Exporter> exporter;
    const Spool* spool = nullptr;
    auto& stats = exporter_stats_[e.name];
    if (!stats) {
      stats = std::make_shared<ExporterStats>();
    }
    if (unchanged) {  // keeps running as it is
      for (std::size_t i = 0; i < previous->all.size(); ++i) {
        if (previous->all[i].get() == existing) {
          exporter = previous->all[i];
          spool = previous->spool_of[i];
        }
      }
      if (auto* q = dynamic_cast<QueuedExporter*>(exporter.get());
          q != nullptr && before->max_queue_bytes != e.max_queue_bytes) {
        set->queue_limits.emplace_back(q, e.max_queue_bytes);
      }
    } else if (!is_network(e)) {
      exporter = std::make_shared<FileExporter>(e, stats);
    } else {
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
        auto& shared = spools_[e.name];
        if (!shared) {
          shared = Spool::open(spool_options(c.spool, spooled_count), e.name);
        }
        // A batch in flight pins its records' segments against on_full: drop_oldest; keep the
        // batches small next to the spool so that most of it can always be freed.
        config::Batch limits = c.batch;
        limits.max_bytes = std::min<std::size_t>(limits.max_bytes, shared->capacity() / 16);
        exporter = std::make_shared<QueuedExporter>(e, std::move(sender), &budget_, shared,
                                                    limits, stats);
        spool = shared.get();
      } else {
        exporter = std::make_shared<QueuedExporter>(e, std::move(sender), &budget_, nullptr,
                                                    config::Batch{}, stats);
      }
    }
    if (spool != nullptr) {
      set->spooled.push_back(static_cast<QueuedExporter*>(exporter.get()));
    } else {
      set->memory.push_back(exporter.get());
    }
    set->options.push_back(std::move(e));
    set->all.push_back(std::move(exporter));
    set->spool_of.push_back(spool);
  }
  return set;
}

// Spool mode: every network exporter's spool takes the request before it is acknowledged.
// A refusal by any of them refuses the request (the client retries; the spools that took it
// may then hold it twice: at least once, never lost).
std::shared_ptr<const Intake::Route> Agent::route_intake(const ExporterSet& set) {
  std::shared_ptr<const processors::ProcessorChain> chain;
  {
    std::lock_guard lock(exporters_mu_);
    chain = processors_;
  }
  if (chain && chain->empty()) {
    chain.reset();
  }
  if (set.spooled.empty()) {
    return intake_.set_route(Intake::Route{{}, true, std::move(chain)});
  }
  std::vector<QueuedExporter*> spooled = set.spooled;
  return intake_.set_route(Intake::Route{
      [spooled](std::string_view request, std::uint32_t spans) {
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
      },
      !set.memory.empty(), std::move(chain)});
}

void Agent::fan_out(BatchPtr batch) {
  std::lock_guard lock(exporters_mu_);
  for (Exporter* e : exporters_->memory) {
    e->submit(batch);
  }
}

std::unique_ptr<Listeners> Agent::make_listeners(const config::Config& c, const Listeners* keep) {
  auto l = std::make_unique<Listeners>();
  const auto& http = c.receivers.http;
  if (http.enabled && !(keep != nullptr && keep->http && http == config_.receivers.http)) {
    l->http = std::make_unique<http::OtlpHttpReceiver>(ioc_, http, intake_);
  }
  const auto& grpc = c.receivers.grpc;
  if (grpc.enabled && !(keep != nullptr && keep->grpc && grpc == config_.receivers.grpc)) {
    l->grpc = std::make_unique<OtlpGrpcReceiver>(grpc, intake_);
  }
  if (c.admin.enabled && !(keep != nullptr && keep->admin && c.admin == config_.admin)) {
    l->admin = std::make_unique<AdminServer>(
        ioc_, c.admin.endpoint,
        AdminHandlers{.metrics = [this] { return render_metrics(view()); },
                      .status_json = [this] { return render_status_json(view(), rates_); },
                      .live = [this] { return live(); },
                      .ready = [this] { return ready(); }});
  }
  return l;
}

void Agent::stop_listeners(Listeners& l) {
  if (l.admin) {
    l.admin->stop_accepting();
  }
  if (l.http) {
    l.http->stop_accepting();
  }
  if (l.grpc) {
    l.grpc->shutdown(Clock::now() + std::chrono::seconds(1));
  }
}

// Binds the new listeners; on failure closes the ones it opened and rethrows.
void Agent::start_listeners(Listeners& l, const Listeners* keep) {
  try {
    if (l.admin) {
      run_on(ioc_, [&] { l.admin->start(); });
    }
    if (l.http) {
      run_on(ioc_, [&] { l.http->start(); });
    }
    if (l.grpc) {
      l.grpc->start();
    }
  } catch (...) {
    stop_listeners(l);
    retired_listeners_.push_back(std::make_unique<Listeners>(std::move(l)));
    throw;
  }
  (void)keep;
}

Probe Agent::live() const {
  std::lock_guard lock(state_mu_);
  if (draining_) {
    return {false, "stopping"};
  }
  return {live_.load(), live_reason_};
}

Probe Agent::ready() const {
  {
    std::lock_guard lock(state_mu_);
    if (draining_) {
      return {false, "draining"};
    }
    if (!listening_) {
      return {false, "starting"};
    }
  }
  if (intake_.closed()) {
    return {false, "draining"};
  }
  // Full now, or a request was refused for want of memory a moment ago.
  const auto now = Clock::now();
  if (budget_.used() >= budget_.limit() - budget_.limit() / 20 ||
      now - intake_.last_full() < std::chrono::seconds(2)) {
    return {false, "memory buffer full"};
  }
  if (now - intake_.last_spool_full() < std::chrono::seconds(2)) {
    return {false, "spool full"};
  }
  return {true, "ready"};
}

AgentView Agent::view() const {
  AgentView v;
  std::shared_ptr<const ExporterSet> set;
  {
    std::lock_guard lock(exporters_mu_);
    set = exporters_;
  }
  const Probe l = live();
  const Probe r = ready();
  v.live = l.ok;
  v.live_reason = l.reason;
  v.ready = r.ok;
  v.ready_reason = r.reason;
  v.started_at = started_at_;
  v.buffer_used = budget_.used();
  v.buffer_limit = budget_.limit();
  v.receiver_stats = &receiver_stats_;
  v.batcher_stats = &batcher_stats_;
  {
    std::lock_guard lock(state_mu_);
    v.config_source = config_.source;
    v.reloads = reloads_;
    const std::string state = draining_ ? "draining" : listening_ ? "listening" : "starting";
    if (listeners_ && listeners_->http) {
      const auto& c = listeners_->http->connection_stats();
      v.http_idle_evictions = c.idle_evictions.load(std::memory_order_relaxed);
      v.http_connections_refused = c.connections_refused.load(std::memory_order_relaxed);
    }
    if (!http_endpoint_.empty()) {
      v.receivers.push_back({"http", http_endpoint_, state, &receiver_stats_.http_duration});
    }
    if (!grpc_endpoint_.empty()) {
      v.receivers.push_back({"grpc", grpc_endpoint_, state, &receiver_stats_.grpc_duration});
    }
  }
  std::shared_ptr<const processors::ProcessorChain> chain;
  {
    std::lock_guard lock(exporters_mu_);
    chain = processors_;
  }
  for (const auto& p : chain->processors()) {
    ProcessorView pv;
    pv.name = p->name();
    p->drops().for_each(
        [&](const std::string& reason, std::uint64_t n) { pv.dropped_spans.emplace_back(reason, n); });
    pv.edited_attributes = p->edited_attributes();
    v.processors.push_back(std::move(pv));
  }
  for (std::size_t i = 0; i < set->all.size(); ++i) {
    const config::Exporter& o = set->options[i];
    ExporterView e;
    e.name = o.name;
    e.type = type_name(o.type);
    e.endpoint = is_network(o) ? o.endpoint.text : o.path;
    e.network = is_network(o);
    e.stats = &set->all[i]->stats();
    e.queue_limit_bytes = e.network ? o.max_queue_bytes : 0;
    e.spool = set->spool_of[i];
    v.exporters.push_back(std::move(e));
  }
  v.keep_alive = std::move(set);  // the exporters and their counters outlive the rendering
  return v;
}

void Agent::post_event(Event e) {
  {
    std::lock_guard lock(events_mu_);
    events_.push_back(e);
  }
  events_cv_.notify_one();
}

// The pipeline is live when every thread that moves spans comes round: the batcher (when
// chunks wait for it), each exporter's thread, and the receivers' io thread. An idle pipeline
// is live. /healthz and the systemd watchdog follow this, so a wedged agent gets restarted.
void Agent::check_liveness() {
  constexpr std::chrono::seconds patience(10);
  const auto now = Clock::now();
  std::string reason;
  if (batcher_.stalled(now, patience)) {
    reason = "batcher stalled: spans wait in the ring";
  }
  std::shared_ptr<const ExporterSet> set;
  {
    std::lock_guard lock(exporters_mu_);
    set = exporters_;
  }
  for (const auto& e : set->all) {
    if (reason.empty() && !e->responsive(now, patience)) {
      reason = "exporter " + e->name() + " stalled: its thread does not answer";
    }
    e->ping();
  }
  const std::int64_t sent = io_ping_.load();
  if (reason.empty() && sent != 0 &&
      now.time_since_epoch().count() - sent >
          std::chrono::duration_cast<Clock::duration>(patience).count()) {
    reason = "receiver io thread stalled";
  }
  std::int64_t none = 0;
  if (io_ping_.compare_exchange_strong(none, now.time_since_epoch().count())) {
    boost::asio::post(ioc_, [this] { io_ping_.store(0); });
  }
  const bool was_live = live_.load();
  {
    std::lock_guard lock(state_mu_);
    live_reason_ = reason.empty() ? "live" : reason;
  }
  live_.store(reason.empty());
  if (was_live && !reason.empty()) {
    log_->error("liveness lost: {}; /healthz answers 503 and the watchdog is no longer fed",
                reason);
  } else if (!was_live && reason.empty()) {
    log_->info("liveness regained");
  }
}

void Agent::watchdog_loop(std::chrono::microseconds watchdog_usec) {
  using namespace std::chrono_literals;
  auto period = std::chrono::duration_cast<Clock::duration>(1s);
  if (watchdog_usec.count() > 0) {
    period = std::clamp<Clock::duration>(watchdog_usec / 3, 50ms, 1s);
  }
  std::unique_lock lock(events_mu_);
  while (!stop_watchdog_.load()) {
    lock.unlock();
    check_liveness();
    if (watchdog_usec.count() > 0 && live_.load()) {
      sd_notify(0, "WATCHDOG=1");
    }
    lock.lock();
    watchdog_cv_.wait_for(lock, period, [this] { return stop_watchdog_.load(); });
  }
}

void Agent::reload() {
  const auto usec = std::chrono::duration_cast<std::chrono::microseconds>(
                        std::chrono::steady_clock::now().time_since_epoch())
                        .count();
  sd_notifyf(0, "RELOADING=1\nMONOTONIC_USEC=%lld\nSTATUS=reloading the configuration",
             static_cast<long long>(usec));
  log_->info("SIGHUP: reloading the configuration from {}",
             config_path_.empty() ? "<embedded default>" : config_path_);
  std::string error;
  try {
    if (config_path_.empty()) {
      throw config::ConfigError(
          "running on the embedded default configuration (no --config FILE): nothing to reload");
    }
    apply(config::load_file(config_path_));
  } catch (const std::exception& e) {
    error = e.what();
  }
  {
    std::lock_guard lock(state_mu_);
    reloads_.last_time = std::chrono::system_clock::now();
    reloads_.last_result = error.empty() ? "success" : "failure";
    reloads_.last_error = error;
    ++(error.empty() ? reloads_.succeeded : reloads_.failed);
  }
  if (!error.empty()) {
    log_->error("reload refused, the running configuration stays: {}", error);
  }
  sd_notify(0, "READY=1\nSTATUS=running");
}

// What a reload cannot change while running: the memory budget and ring, the spool (its
// files are open), and a receiver's options other than its address (its listener is kept).
void check_reloadable(const config::Config& now, const config::Config& next) {
  auto refuse = [&](const std::string& what) {
    throw config::ConfigError(next.source + ": " + what +
                              " cannot change while running: restart spanrelay to apply it");
  };
  if (!(now.buffer == next.buffer)) {
    refuse("buffer");
  }
  if (!(now.spool == next.spool)) {
    refuse("spool");
  }
  // Each network exporter owns a spool directory and a share of spool.max_bytes: adding,
  // removing or renaming one would strand records or break the bound.
  auto spooled_names = [](const config::Config& c) {
    std::vector<std::string> names;
    for (const auto& e : c.exporters) {
      if (c.spool.enabled && is_network(e)) {
        names.push_back(e.name);
      }
    }
    std::sort(names.begin(), names.end());
    return names;
  };
  if (spooled_names(now) != spooled_names(next)) {
    refuse("with a spool, the set of network exporters (each has its own spool directory and "
           "share of spool.max_bytes)");
  }
  auto same_but_address = [](auto a, auto b) {
    a.endpoint = b.endpoint;
    return a == b;
  };
  if (now.receivers.http.enabled && next.receivers.http.enabled &&
      now.receivers.http.endpoint == next.receivers.http.endpoint &&
      !same_but_address(now.receivers.http, next.receivers.http)) {
    refuse("receivers.http (other than its endpoint)");
  }
  if (now.receivers.grpc.enabled && next.receivers.grpc.enabled &&
      now.receivers.grpc.endpoint == next.receivers.grpc.endpoint &&
      !same_but_address(now.receivers.grpc, next.receivers.grpc)) {
    refuse("receivers.grpc (other than its endpoint)");
  }
}

void Agent::apply(config::Config next) {
  check_reloadable(config_, next);
  std::unique_ptr<Listeners> fresh_listeners;

  // 1. Everything that can fail, before anything changes: new exporters (TLS files, spool
  //    directories) and new listeners (addresses in use).
  std::shared_ptr<const ExporterSet> old;
  {
    std::lock_guard lock(exporters_mu_);
    old = exporters_;
  }
  std::shared_ptr<ExporterSet> fresh = build_exporters(next, old.get());
  std::shared_ptr<const processors::ProcessorChain> fresh_processors;
  if (!(next.processors == config_.processors)) {
    fresh_processors = std::make_shared<const processors::ProcessorChain>(next.processors);
  }
  fresh_listeners = make_listeners(next, listeners_.get());
  start_listeners(*fresh_listeners, listeners_.get());  // new requests still go the old way
  std::set<const Exporter*> kept;
  std::vector<Exporter*> started;
  try {
    for (const auto& e : fresh->all) {
      if (old->find(e->name(), nullptr) == e.get()) {
        kept.insert(e.get());
      } else {
        e->start();  // new or replaced; a file exporter throws when it cannot open its file
        started.push_back(e.get());
      }
    }
  } catch (...) {
    for (Exporter* e : started) {
      if (auto* q = dynamic_cast<QueuedExporter*>(e)) {
        q->retire(nullptr);  // records it read from a shared spool go back to it
      }
      e->shutdown(Clock::now());
    }
    stop_listeners(*fresh_listeners);
    retired_listeners_.push_back(std::move(fresh_listeners));
    throw;
  }
  std::vector<std::string> changed;
  for (Exporter* e : started) {
    changed.push_back(e->name());
  }

  // 2. Switch: new batches and new requests go to the new exporters from here on.
  {
    std::lock_guard lock(exporters_mu_);
    exporters_ = fresh;
    if (fresh_processors) {
      processors_ = fresh_processors;
    }
  }
  std::shared_ptr<const Intake::Route> old_route = route_intake(*fresh);
  for (auto [exporter, bytes] : fresh->queue_limits) {
    exporter->set_queue_limit(bytes);
  }
  if (!(next.batch == config_.batch)) {
    batcher_.reconfigure(next.batch);
  }
  if (!(next.log == config_.log)) {
    init_logging(next.log.level, next.log.json);
  }

  // 3. Retire what was replaced or removed. A replaced exporter hands its waiting batches to
  //    its successor (or back to the spool they share) and finishes the attempts in flight.
  //    Wait first for requests still appending through the old spool route.
  while (old_route.use_count() > 1) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  std::atomic_thread_fence(std::memory_order_acquire);  // their appends happened before
  old_route.reset();
  for (const auto& e : old->all) {
    if (kept.contains(e.get())) {
      continue;
    }
    auto* queued = dynamic_cast<QueuedExporter*>(e.get());
    const config::Exporter* before = nullptr;
    old->find(e->name(), &before);
    Exporter* successor = fresh->find(e->name(), nullptr);
    if (queued != nullptr && successor != nullptr) {
      queued->retire([successor](BatchPtr b) { successor->submit(std::move(b)); });
      e->shutdown(Clock::now() + before->timeout + std::chrono::seconds(2));
    } else {
      e->shutdown(Clock::now() + next.shutdown_timeout);
    }
  }
  for (QueuedExporter* e : fresh->spooled) {
    e->kick();  // records appended through the old route wake the old reader only
  }

  // 4. Listeners: the new ones replace those whose address changed; the old ones finish the
  //    requests they have.
  auto retired = std::make_unique<Listeners>();
  auto swap_in = [&](auto& current, auto& incoming, auto& out, bool enabled) {
    if (incoming || !enabled) {
      out = std::move(current);
      current = std::move(incoming);
    }
  };
  {
    std::lock_guard lock(state_mu_);  // the admin endpoint reads the HTTP receiver's counters
    swap_in(listeners_->http, fresh_listeners->http, retired->http, next.receivers.http.enabled);
    swap_in(listeners_->grpc, fresh_listeners->grpc, retired->grpc, next.receivers.grpc.enabled);
    swap_in(listeners_->admin, fresh_listeners->admin, retired->admin, next.admin.enabled);
  }
  stop_listeners(*retired);
  retired_listeners_.push_back(std::move(retired));

  std::string summary;
  for (const auto& name : changed) {
    summary += (summary.empty() ? "" : ", ") + name;
  }
  {
    std::lock_guard lock(state_mu_);
    http_endpoint_ = next.receivers.http.enabled ? next.receivers.http.endpoint.text : "";
    grpc_endpoint_ = next.receivers.grpc.enabled ? next.receivers.grpc.endpoint.text : "";
    config_ = std::move(next);
  }
  log_->info("configuration reloaded: {} exporter(s){}", fresh->all.size(),
             summary.empty() ? std::string(", none changed")
                             : "; started or replaced: " + summary);
}

int Agent::run() {
  listeners_ = make_listeners(config_, nullptr);
  {
    std::lock_guard lock(state_mu_);
    http_endpoint_ = config_.receivers.http.enabled ? config_.receivers.http.endpoint.text : "";
    grpc_endpoint_ = config_.receivers.grpc.enabled ? config_.receivers.grpc.endpoint.text : "";
  }
  boost::asio::signal_set signals(ioc_, SIGINT, SIGTERM, SIGHUP);
  std::function<void(const boost::system::error_code&, int)> on_signal =
      [&](const boost::system::error_code& ec, int signo) {
        if (ec) {
          return;
        }
        post_event(signo == SIGHUP ? Event::kReload : Event::kStop);
        if (signo == SIGHUP) {
          signals.async_wait(on_signal);
        }
      };
  signals.async_wait(on_signal);
  std::thread io_thread([this] { ioc_.run(); });
  struct JoinIo {
    boost::asio::io_context& ioc;
    std::thread& t;
    ~JoinIo() {
      ioc.stop();
      if (t.joinable()) {
        t.join();
      }
    }
  } join_io{ioc_, io_thread};

  // The admin endpoint first (it answers /readyz "starting"), then from the back of the
  // pipeline so nothing is accepted before it can be forwarded.
  if (listeners_->admin) {
    run_on(ioc_, [&] { listeners_->admin->start(); });
  }
  for (auto& e : exporters_->all) {
    e->start();
  }
  batcher_.start();
  if (listeners_->http) {
    run_on(ioc_, [&] { listeners_->http->start(); });
  }
  if (listeners_->grpc) {
    listeners_->grpc->start();
  }
  {
    std::lock_guard lock(state_mu_);
    listening_ = true;
  }
  std::uint64_t watchdog_usec = 0;
  if (sd_watchdog_enabled(0, &watchdog_usec) <= 0) {
    watchdog_usec = 0;
  }
  sd_notify(0, "READY=1\nSTATUS=running");
  std::thread watchdog([this, watchdog_usec] {
    watchdog_loop(std::chrono::microseconds(watchdog_usec));
  });
  log_->info("spanrelay {} running ({} exporter(s)); config {}", SPANRELAY_VERSION,
             exporters_->all.size(), config_.source);

  for (;;) {
    Event e;
    {
      std::unique_lock lock(events_mu_);
      events_cv_.wait(lock, [this] { return !events_.empty(); });
      e = events_.front();
      events_.pop_front();
    }
    if (e == Event::kStop) {
      break;
    }
    reload();
  }

  const auto deadline = Clock::now() + config_.shutdown_timeout;
  sd_notify(0, "STOPPING=1\nSTATUS=draining");
  log_->info("stopping: draining (up to {} ms)", config_.shutdown_timeout.count());
  {
    std::lock_guard lock(state_mu_);
    draining_ = true;
  }

  // 1. Stop taking spans: close the listener, answer stragglers 503, wait for in-progress pushes.
  if (listeners_->http) {
    listeners_->http->stop_accepting();
  }
  intake_.close();
  // gRPC calls that arrived meanwhile have been answered UNAVAILABLE; wait briefly for those in
  // flight, then cancel the rest.
  if (listeners_->grpc) {
    listeners_->grpc->shutdown(std::min(deadline, Clock::now() + std::chrono::seconds(1)));
  }
  // 2. Flush the ring and the pending batch to the exporters.
  batcher_.stop();
  // 3. Deliver what is queued and in flight, until the deadline.
  for (auto& ex : exporters_->all) {
    ex->shutdown(deadline);
  }
  {
    std::lock_guard lock(events_mu_);
    stop_watchdog_.store(true);
  }
  watchdog_cv_.notify_all();
  watchdog.join();

  std::uint64_t sent = 0, failed = 0;
  for (auto& ex : exporters_->all) {
    sent += get(ex->stats().sent_spans);
    failed += get(ex->stats().failed_spans);
  }
  log_->info("stopped: {} span(s) accepted, {} delivered, {} dropped by exporters, {} refused",
             get(receiver_stats_.accepted_spans), sent, failed,
             get(receiver_stats_.refused_spans));
  return 0;
}

}  // namespace

int run_agent(config::Config config, std::string config_path) {
  Agent agent(std::move(config), std::move(config_path));
  return agent.run();
}

}  // namespace spanrelay
