#pragma once
// Exporter `otlp_http`: OTLP/HTTP protobuf over HTTP/1.1 or HTTPS to one upstream (Grafana
// Cloud's gateway, a Collector, Tempo). Keeps up to max_in_flight connections alive, each
// carrying one request at a time; gzip; Basic auth and free headers injected; retries 429,
// 502, 503, 504 and connection errors with backoff and Retry-After until retry.max_elapsed.
//
// Threading: one io thread owns all state; submit() and shutdown() post to it.

#include <boost/asio/awaitable.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/steady_timer.hpp>

#include <deque>
#include <memory>
#include <thread>
#include <vector>

#include "common/log.hpp"
#include "config/config.hpp"
#include "exporters/exporter.hpp"
#include "otlp/compression.hpp"

namespace spanrelay {

class OtlpHttpExporter final : public Exporter {
 public:
  explicit OtlpHttpExporter(config::Exporter options);
  ~OtlpHttpExporter() override;

  const std::string& name() const noexcept override { return options_.name; }
  void start() override;
  void submit(BatchPtr batch) noexcept override;
  void shutdown(std::chrono::steady_clock::time_point deadline) noexcept override;
  const ExporterStats& stats() const noexcept override { return stats_; }

 private:
  struct Worker;
  struct Attempt;

  boost::asio::awaitable<void> run_worker(Worker& w);
  boost::asio::awaitable<BatchPtr> next_batch(Worker& w);
  boost::asio::awaitable<void> deliver(Worker& w, const Batch& batch);
  boost::asio::awaitable<Attempt> send_once(Worker& w, std::string& body);
  boost::asio::awaitable<Attempt> exchange(Worker& w, std::string& body);
  boost::asio::awaitable<bool> connect(Worker& w, std::chrono::steady_clock::time_point deadline,
                                       std::string& error);
  void wake_one();
  void expire();
  void drop(std::uint32_t spans, const char* why);

  config::Exporter options_;
  std::shared_ptr<spdlog::logger> log_;
  boost::asio::io_context ioc_;
  boost::asio::executor_work_guard<boost::asio::io_context::executor_type> work_;
  boost::asio::ssl::context ssl_;
  std::string authorization_;  // "Basic ..." or empty: secret, never logged
  std::string host_header_;
  otlp::GzipCompressor gzip_;

  std::deque<BatchPtr> queue_;
  std::vector<std::unique_ptr<Worker>> workers_;
  std::vector<Worker*> idle_;
  std::size_t running_workers_ = 0;
  bool stopping_ = false;
  bool expired_ = false;
  boost::asio::steady_timer deadline_timer_;
  std::thread thread_;
  ExporterStats stats_;
  RateLimit failure_log_;
  RateLimit retry_log_;
};

}  // namespace spanrelay
