#include "exporters/file/file_exporter.hpp"

#include <cerrno>
#include <cstring>
#include <stdexcept>

#include "otlp/json.hpp"

namespace spanrelay {

FileExporter::FileExporter(config::Exporter options, std::shared_ptr<ExporterStats> stats)
    : options_(std::move(options)), log_(logger("exporter." + options_.name)),
      stats_(stats ? std::move(stats) : std::make_shared<ExporterStats>()) {}

FileExporter::~FileExporter() {
  shutdown(std::chrono::steady_clock::now());
  if (file_ != nullptr) {
    std::fclose(file_);
  }
}

void FileExporter::start() {
  file_ = std::fopen(options_.path.c_str(), "ae");
  if (file_ == nullptr) {
    throw std::runtime_error("exporter " + options_.name + ": cannot open " + options_.path +
                             " for appending: " + std::strerror(errno));
  }
  // Unbuffered: each line goes out in one append write, so two writers of the same file (an
  // exporter and its replacement during a reload) never interleave inside a line.
  std::setvbuf(file_, nullptr, _IONBF, 0);
  log_->info("writing spans as OTLP/JSON lines to {}", options_.path);
  thread_ = std::thread([this] { run(); });
}

void FileExporter::submit(BatchPtr batch) noexcept {
  add(stats_->queued_batches);
  {
    std::lock_guard lock(mutex_);
    queue_.push_back(std::move(batch));
  }
  cv_.notify_one();
}

void FileExporter::shutdown(std::chrono::steady_clock::time_point deadline) noexcept {
  if (!thread_.joinable()) {
    return;
  }
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
    deadline_ = deadline;
  }
  cv_.notify_one();
  thread_.join();
}

void FileExporter::run() {
  std::unique_lock lock(mutex_);
  for (;;) {
    cv_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
    if (queue_.empty()) {
      return;  // stopping and drained
    }
    BatchPtr batch = std::move(queue_.front());
    queue_.pop_front();
    const bool late = stopping_ && std::chrono::steady_clock::now() > deadline_;
    lock.unlock();
    if (late) {
      add(stats_->failed_spans, batch->spans);
      add(stats_->failed_requests);
    } else {
      write(*batch);
    }
    stats_->queued_batches.fetch_sub(1, std::memory_order_relaxed);
    lock.lock();
  }
}

void FileExporter::write(const Batch& batch) {
  const auto started = std::chrono::steady_clock::now();
  std::string line, error;
  if (!otlp::protobuf_to_json(batch.bytes, line, error)) {
    add(stats_->failed_spans, batch.spans);
    add(stats_->failed_requests);
    stats_->health.failed("cannot render a batch as JSON: " + error, "4xx", {});
    log_->error("cannot render a batch as JSON ({}); {} span(s) dropped", error, batch.spans);
    return;
  }
  line += '\n';
  if (std::fwrite(line.data(), 1, line.size(), file_) != line.size() || std::fflush(file_) != 0) {
    const std::string why = std::strerror(errno);
    add(stats_->failed_spans, batch.spans);
    add(stats_->failed_requests);
    stats_->health.failed("cannot write to " + options_.path + ": " + why, "io", {});
    log_->error("cannot write to {}: {}; {} span(s) dropped", options_.path, why, batch.spans);
    std::clearerr(file_);
    return;
  }
  stats_->request_duration.observe(std::chrono::steady_clock::now() - started);
  stats_->health.succeeded();
  add(stats_->sent_spans, batch.spans);
  add(stats_->sent_requests);
  log_->debug("wrote a batch of {} span(s), {} bytes as JSON", batch.spans, line.size());
}

}  // namespace spanrelay
