#include "integration/checks.hpp"

#include <fstream>
#include <map>
#include <sstream>

#include <boost/json.hpp>

namespace it {

std::string content_type_of(const HttpResponse& response) {
  return std::string(response[boost::beast::http::field::content_type]);
}

std::int64_t accepted_rejected_spans(const HttpResponse& response, Format format) {
  INFO("status " << response.result_int() << ", body: " << response.body());
  REQUIRE(response.result_int() == 200);
  if (format == Format::json) {
    CHECK(content_type_of(response).starts_with("application/json"));
    boost::system::error_code ec;
    const auto body = boost::json::parse(response.body(), ec);
    REQUIRE(!ec);
    REQUIRE(body.is_object());
    const auto* partial = body.as_object().if_contains("partialSuccess");
    if (partial == nullptr || !partial->is_object()) {
      return 0;
    }
    const auto* rejected = partial->as_object().if_contains("rejectedSpans");
    if (rejected == nullptr) {
      return 0;
    }
    return rejected->is_string() ? std::stoll(std::string(rejected->as_string()))
                                 : rejected->to_number<std::int64_t>();
  }
  CHECK(content_type_of(response).starts_with("application/x-protobuf"));
  ExportResponse decoded;
  REQUIRE(decoded.ParseFromString(response.body()));
  return decoded.partial_success().rejected_spans();
}

void require_accepted(const HttpResponse& response, Format format) {
  CHECK(accepted_rejected_spans(response, format) == 0);
}

std::vector<FlatSpan> post_and_expect_ok(std::uint16_t port, std::size_t n_spans,
                                         const PostOptions& options) {
  const ExportRequest request = make_request(n_spans);
  require_accepted(post_spans(port, request, options), options.format);
  return flatten(request);
}

void append(std::vector<FlatSpan>& to, const std::vector<FlatSpan>& more) {
  to.insert(to.end(), more.begin(), more.end());
}

bool stays_false(const std::function<bool()>& pred, Millis window) {
  return !wait_until(pred, window, 20ms);
}

void check_no_secret(const std::string& output) {
  CHECK(output.find(test_token) == std::string::npos);
  CHECK(output.find(expected_authorization().substr(6)) == std::string::npos);
}

double rss_bytes(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.starts_with("VmRSS:")) {
      std::istringstream value(line.substr(6));
      double kib = 0;
      value >> kib;
      return kib * 1024.0;
    }
  }
  FAIL("no VmRSS in /proc/" << pid << "/status");
  return 0;
}

std::string exporter_series(std::string_view metric, std::string_view exporter) {
  return std::string(metric) + "{exporter=\"" + std::string(exporter) + "\"}";
}

std::string url_on(std::uint16_t port) {
  return "http://127.0.0.1:" + std::to_string(port) + "/otlp";
}

AgentConfig spool_config(const std::string& upstream_url, const std::string& spool_dir) {
  AgentConfig config;
  config.exporters["up"].endpoint = upstream_url;
  config.exporters["up"].retry_max_interval = "500ms";
  config.spool = {{"path", spool_dir}};
  return config;
}

Load::Load(std::uint16_t port, std::size_t spans_per_request, Millis pause)
    : thread_([this, port, spans_per_request, pause] { run(port, spans_per_request, pause); }) {}

void Load::stop() {
  stop_ = true;
  if (thread_.joinable()) {
    thread_.join();
  }
}

std::vector<FlatSpan> Load::accepted() {
  std::lock_guard lock(m_);
  return accepted_;
}

std::size_t Load::accepted_count() {
  std::lock_guard lock(m_);
  return accepted_.size();
}

void Load::run(std::uint16_t port, std::size_t n, Millis pause) {
  while (!stop_) {
    const ExportRequest request = make_request(n);
    try {
      const HttpResponse response = post_spans(port, request);
      if (response.result_int() == 200) {
        std::lock_guard lock(m_);
        append(accepted_, flatten(request));
      } else {
        ++refused_;
      }
    } catch (const std::exception&) {
      ++failed_;  // the agent is gone (killed or stopped): not acknowledged, not our business
    }
    std::this_thread::sleep_for(pause);  // pacing the load, not synchronising
  }
}

DeliveryReport compare(const std::vector<FlatSpan>& accepted,
                       const std::vector<const FakeUpstream*>& upstreams,
                       const std::vector<FlatSpan>& delivered_earlier) {
  std::map<std::string, std::size_t> delivered;
  for (const FlatSpan& s : delivered_earlier) {
    ++delivered[span_key(s.span)];
  }
  for (const FakeUpstream* u : upstreams) {
    for (const FlatSpan& s : u->delivered_spans()) {
      ++delivered[span_key(s.span)];
    }
  }
  DeliveryReport r;
  std::map<std::string, bool> acked;
  for (const FlatSpan& s : accepted) {
    acked[span_key(s.span)] = true;
    if (!delivered.contains(span_key(s.span))) {
      ++r.missing;
    }
  }
  for (const auto& [key, n] : delivered) {
    r.duplicates += n - 1;
    if (!acked.contains(key)) {
      ++r.unexpected;
    }
  }
  return r;
}

DeliveryReport await_delivery(const std::vector<FlatSpan>& accepted,
                              const std::vector<const FakeUpstream*>& upstreams, Millis timeout,
                              const std::vector<FlatSpan>& delivered_earlier) {
  wait_until([&] { return compare(accepted, upstreams, delivered_earlier).missing == 0; },
             timeout);
  return compare(accepted, upstreams, delivered_earlier);
}

}  // namespace it
