#pragma once
// Exporter `file`: appends each batch as one line of OTLP/JSON to a file a person can read
// (and jq). For trying spanrelay without an account, and for debugging what is forwarded.

#include <condition_variable>
#include <cstdio>
#include <deque>
#include <mutex>
#include <thread>

#include "common/log.hpp"
#include "config/config.hpp"
#include "exporters/exporter.hpp"

namespace spanrelay {

class FileExporter final : public Exporter {
 public:
  // `stats`: counters carried over from a predecessor of the same name (nullptr: fresh ones).
  explicit FileExporter(config::Exporter options, std::shared_ptr<ExporterStats> stats = {});
  ~FileExporter() override;

  const std::string& name() const noexcept override { return options_.name; }
  void start() override;  // opens the file for appending; throws naming the path
  void submit(BatchPtr batch) noexcept override;
  void shutdown(std::chrono::steady_clock::time_point deadline) noexcept override;
  const ExporterStats& stats() const noexcept override { return *stats_; }

 private:
  void run();
  void write(const Batch& batch);

  config::Exporter options_;
  std::shared_ptr<spdlog::logger> log_;
  std::FILE* file_ = nullptr;
  std::mutex mutex_;
  std::condition_variable cv_;
  std::deque<BatchPtr> queue_;
  bool stopping_ = false;
  std::chrono::steady_clock::time_point deadline_ = std::chrono::steady_clock::time_point::max();
  std::thread thread_;
  std::shared_ptr<ExporterStats> stats_;
};

}  // namespace spanrelay
