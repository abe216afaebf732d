// Memory per request: the peak resident memory one large request adds to the agent, read from
// the kernel (VmHWM, reset through /proc/<pid>/clear_refs just before the request).

#include <fstream>
#include <sstream>
#include <string>

#include <catch2/catch.hpp>

#include "integration/checks.hpp"
#include "integration/fake_upstream.hpp"
#include "integration/harness.hpp"

namespace it {
namespace {

constexpr double kMiB = 1024.0 * 1024.0;

// A field of /proc/<pid>/status in bytes ("VmHWM:   123456 kB").
double proc_status_bytes(pid_t pid, std::string_view field) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.starts_with(field) && line.size() > field.size() && line[field.size()] == ':') {
      std::istringstream value(line.substr(field.size() + 1));
      double kib = 0;
      value >> kib;
      return kib * 1024.0;
    }
  }
  FAIL("no " << field << " in /proc/" << pid << "/status");
  return 0;
}

// Sets the process's peak RSS back to its current RSS (proc(5): clear_refs, value 5).
void reset_peak(pid_t pid) {
  std::ofstream out("/proc/" + std::to_string(pid) + "/clear_refs");
  out << "5";
  out.flush();
  REQUIRE(out.good());
}

// One request of about `target` bytes: spans padded with a string attribute.
ExportRequest large_request(std::size_t target) {
  RequestShape shape;
  shape.resources = 4;
  shape.attribute_padding = 4000;
  shape.random_padding = true;
  ExportRequest request = make_request(target / 4400, shape);
  return request;
}

}  // namespace

TEST_CASE("one large request raises the agent's peak memory by at most about twice its size "
          "plus a batch",
          "[integration][memory]") {
  // Content-Length bodies, a chunked one (its size unknown until the end), gzip, JSON.
  const PostOptions post = GENERATE(PostOptions{}, PostOptions{.chunk_size = 64 * 1024},
                                    PostOptions{.gzip = true}, PostOptions{.format = Format::json},
                                    PostOptions{.format = Format::json, .gzip = true});
  const bool gzip = post.gzip;
  const Format format = post.format;
  const bool spool = GENERATE(false, true);
  TempDir spool_dir;
  FakeUpstream upstream(0);
  AgentConfig config;
  if (spool) {
    config.spool = {{"path", spool_dir.path()}, {"fsync", "never"}};
  }
  config.exporters["up"].endpoint = upstream.base_url();
  config.batch_max_bytes = "4MiB";
  config.max_request_bytes = "16MiB";
  config.buffer_max_bytes = "64MiB";
  Agent agent(config);

  // Warm-up: every thread, connection and allocator arena the pipeline uses is in place, so
  // what the large request adds is what it costs.
  std::vector<FlatSpan> sent =
      post_and_expect_ok(agent.port(), 200, post);
  require_delivered_once(upstream, sent);

  const ExportRequest request = large_request(format == Format::json ? 12u << 20 : 15u << 20);
  const HttpRequest http = otlp_request(request, post);
  // N: the request as decoded (protobuf or JSON text); the body on the wire when gzipped.
  const double wire = static_cast<double>(http.body.size());
  const double n = format == Format::json
                       ? static_cast<double>(to_otlp_json(request).size())
                       : static_cast<double>(request.ByteSizeLong());
  REQUIRE(n < 16 * kMiB);

  reset_peak(agent.pid());
  const double before = proc_status_bytes(agent.pid(), "VmRSS");
  const HttpResponse response = send_request(agent.port(), http, 30s);
  require_accepted(response, format);
  append(sent, flatten(request));
  require_delivered_once(upstream, sent, 30s);
  const double peak = proc_status_bytes(agent.pid(), "VmHWM");
  const double growth = peak - before;

  // What the request may cost: its body as received (compressed, then decoded), one more
  // copy of its size (the protobuf it becomes, cut into batches), and the batch being
  // compressed with its compressed output.
  const double batch = 4 * kMiB;
  const double allowed = (gzip ? wire : 0.0) + 2 * n + 2 * batch;
  const std::string what = std::string(gzip ? "gzip " : "") +
                           (post.chunk_size > 0 ? "chunked " : "") + (spool ? "spooled " : "") +
                           (format == Format::json ? "JSON" : "protobuf");
  INFO(what << ": N = " << n / kMiB << " MiB (" << wire / kMiB << " MiB on the wire), peak RSS grew "
            << growth / kMiB << " MiB, allowed " << allowed / kMiB << " MiB");
  WARN("peak RSS growth " << growth / kMiB << " MiB = " << growth / n << " N for a " << what
                          << " request of N = " << n / kMiB << " MiB");
  CHECK(growth <= allowed);
}

}  // namespace it
