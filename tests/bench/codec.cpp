// bench_codec: per-stage CPU cost of spanrelay's hot path on realistic spans, without any
// networking (part of tests/bench; see docs/performance.md). Each case runs the same function
// the agent runs (or the alternative a suggested fix would use) in a loop for about 0.3 s,
// REPS times; it prints ns per span (best and median of the repetitions: on a shared machine
// the best is the least disturbed) and MB/s of uncompressed protobuf.
//
//   bench_codec [--spans N (request size, default 100)] [--reps N (default 5)]

#include <libdeflate.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "otlp/compression.hpp"
#include "otlp/json.hpp"
#include "processors/processors.hpp"
#include "otlp/wire.hpp"
#include "otlp_gen.hpp"

namespace {

using Clock = std::chrono::steady_clock;
namespace otlp = spanrelay::otlp;

std::size_t g_sink = 0;  // keeps results alive

struct Case {
  const char* name;
  std::size_t spans_per_call;
  std::size_t raw_bytes_per_call;
  std::function<void()> fn;
};

void run_case(const Case& c, int reps) {
  std::vector<double> ns_per_span;
  for (int r = 0; r < reps; ++r) {
    std::size_t calls = 0;
    const auto t0 = Clock::now();
    auto t1 = t0;
    while (t1 - t0 < std::chrono::milliseconds(300)) {
      c.fn();
      ++calls;
      t1 = Clock::now();
    }
    const double ns = std::chrono::duration<double, std::nano>(t1 - t0).count();
    ns_per_span.push_back(ns / static_cast<double>(calls * c.spans_per_call));
  }
  std::sort(ns_per_span.begin(), ns_per_span.end());
  const double best = ns_per_span.front();
  const double median = ns_per_span[ns_per_span.size() / 2];
  const double span_bytes =
      static_cast<double>(c.raw_bytes_per_call) / static_cast<double>(c.spans_per_call);
  std::printf("| %-58s | %8.0f | %8.0f | %8.0f | %9.0f |\n", c.name, best, median,
              span_bytes / best * 1e3, 1e9 / best);
}

}  // namespace

int main(int argc, char** argv) {
  std::size_t spans = 100;
  int reps = 5;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (std::strcmp(argv[i], "--spans") == 0) {
      spans = std::stoul(argv[i + 1]);
    } else if (std::strcmp(argv[i], "--reps") == 0) {
      reps = std::stoi(argv[i + 1]);
    }
  }

  // A request as a client sends it, plain and gzipped (level 6, as SDKs do).
  bench::Gen gen(42);
  const std::string request = bench::make_request(gen, spans).SerializeAsString();
  std::string request_gz;
  otlp::GzipCompressor(6).compress(request, request_gz);
  // A batch as the batcher builds it: requests concatenated up to 4 MiB.
  const std::size_t max_batch = 4u << 20;
  std::vector<std::string> chunks;
  std::size_t batch_bytes = 0;
  while (batch_bytes + request.size() <= max_batch) {
    chunks.push_back(bench::make_request(gen, spans).SerializeAsString());
    batch_bytes += chunks.back().size();
  }
  std::string batch;
  for (const auto& c : chunks) {
    batch += c;
  }
  const std::size_t batch_spans = otlp::count_spans(batch);

  std::printf("request: %zu spans, %zu bytes (%.0f B/span), gzip %zu bytes (ratio %.1f); "
              "batch: %zu requests, %zu spans, %zu bytes\n\n",
              spans, request.size(), static_cast<double>(request.size()) / spans,
              request_gz.size(), static_cast<double>(request.size()) / request_gz.size(),
              chunks.size(), batch_spans, batch.size());

  std::vector<Case> cases;
  // Receiver: gunzip (what OtlpHttpReceiver::handle calls), and libdeflate as an alternative.
  cases.push_back({"receiver gunzip: otlp::inflate_limited (zlib)", spans, request.size(), [&] {
                     std::string out;
                     otlp::inflate_limited(request_gz, false, 16u << 20, out);
                     g_sink += out.size();
                   }});
  libdeflate_decompressor* dec = libdeflate_alloc_decompressor();
  cases.push_back({"  alternative: libdeflate_gzip_decompress", spans, request.size(), [&] {
                     std::string out(request.size(), '\0');
                     std::size_t n = 0;
                     libdeflate_gzip_decompress(dec, request_gz.data(), request_gz.size(),
                                                out.data(), out.size(), &n);
                     g_sink += n;
                   }});
  // Intake: validation scan of every request.
  cases.push_back({"intake: otlp::scan_request", spans, request.size(), [&] {
                     g_sink += otlp::scan_request(request).spans;
                   }});
  cases.push_back({"  (for reference) otlp::count_spans", spans, request.size(), [&] {
                     g_sink += otlp::count_spans(request);
                   }});
  // Batcher: building a 4 MiB batch from requests the way Batcher::take does (move the first,
  // append the rest), and with a reserve(max_bytes) first.
  cases.push_back({"batcher: move first chunk + append (Batcher::take)", batch_spans,
                   batch.size(), [&] {
                     std::string pending = chunks[0];  // stands for the moved-in chunk
                     for (std::size_t i = 1; i < chunks.size(); ++i) {
                       pending.append(chunks[i]);
                     }
                     g_sink += pending.size();
                   }});
  cases.push_back({"  (baseline of the above: copy of the first chunk)", batch_spans,
                   batch.size(), [&] {
                     std::string pending = chunks[0];
                     g_sink += pending.size();
                   }});
  cases.push_back({"  alternative: reserve(max_bytes) + append", batch_spans, batch.size(), [&] {
                     std::string pending;
                     pending.reserve(max_batch);
                     for (const auto& c : chunks) {
                       pending.append(c);
                     }
                     g_sink += pending.size();
                   }});
  // Exporter: gzip of a batch (OtlpHttpExporter::deliver -> GzipCompressor::compress into a
  // fresh string), at the level the agent uses (6) and lower ones; and into a reused buffer.
  for (int level : {6, 4, 3, 2, 1}) {
    static std::vector<std::string> names;
    names.push_back("exporter gzip: GzipCompressor(" + std::to_string(level) +
                    ").compress, fresh output" + (level == 6 ? " (agent)" : ""));
    auto gz = std::make_shared<otlp::GzipCompressor>(level);
    std::string probe;
    gz->compress(batch, probe);
    std::printf("gzip level %d of the batch: %zu -> %zu bytes, ratio %.2f\n", level, batch.size(),
                probe.size(), static_cast<double>(batch.size()) / probe.size());
    cases.push_back({names.back().c_str(), batch_spans, batch.size(), [&batch, gz] {
                       std::string out;
                       gz->compress(batch, out);
                       g_sink += out.size();
                     }});
  }
  std::string reused;
  auto gz6 = std::make_shared<otlp::GzipCompressor>(6);
  cases.push_back({"  level 6 into a reused output buffer", batch_spans, batch.size(), [&, gz6] {
                     gz6->compress(batch, reused);
                     g_sink += reused.size();
                   }});
  auto gz1 = std::make_shared<otlp::GzipCompressor>(1);
  cases.push_back({"  level 1 into a reused output buffer", batch_spans, batch.size(), [&, gz1] {
                     gz1->compress(batch, reused);
                     g_sink += reused.size();
                   }});
  // Intake, OTLP/JSON: the same request as JSON, converted to protobuf wire bytes.
  std::string json, json_error;
  otlp::protobuf_to_json(request, json, json_error);
  cases.push_back({"intake JSON: otlp::json_to_protobuf", spans, json.size(), [&] {
                     std::string out;
                     otlp::json_to_protobuf(json, out, json_error);
                     g_sink += out.size();
                   }});
  // Processors (ProcessorChain::run on a copy of the request; the first case is that copy
  // alone). The SQL case adds a db.statement to every span, as an instrumented ORM does.
  namespace proc = spanrelay::processors;
  std::string with_sql;
  {
    auto r = bench::make_request(gen, spans);
    for (auto& rs : *r.mutable_resource_spans()) {
      for (auto& ss : *rs.mutable_scope_spans()) {
        for (auto& sp : *ss.mutable_spans()) {
          auto* kv = sp.add_attributes();
          kv->set_key("db.statement");
          kv->mutable_value()->set_string_value(
              "SELECT o.id, o.total FROM orders o WHERE o.customer_email = 'bob@example.com' "
              "AND o.status IN ('open', 'paid') AND o.total > 100.50 LIMIT 20");
        }
      }
    }
    with_sql = r.SerializeAsString();
  }
  static std::vector<std::pair<std::string, std::shared_ptr<proc::ProcessorChain>>> chains;
  {
    proc::ProcessorOptions attrs;
    attrs.type = proc::ProcessorOptions::Type::kAttributes;
    attrs.name = "attributes";
    attrs.attributes.actions = {
        {proc::Scope::kResource, "deployment.environment.name", proc::AttributeAction::Kind::kUpsert,
         std::string("prod")},
        {proc::Scope::kSpan, "http.request.header.cookie", proc::AttributeAction::Kind::kDelete}};
    proc::ProcessorOptions redact;
    redact.type = proc::ProcessorOptions::Type::kRedact;
    redact.name = "redact";
    proc::ProcessorOptions filter;
    filter.type = proc::ProcessorOptions::Type::kFilter;
    filter.name = "filter";
    proc::SpanRule probes;
    probes.kinds = {2};
    probes.attributes = {{"url.path", {"/healthz", "/readyz", "/metrics"}}};
    filter.filter.drop_spans = {probes};
    proc::ProcessorOptions sampler;
    sampler.type = proc::ProcessorOptions::Type::kSampler;
    sampler.name = "probabilistic_sampler";
    sampler.sampler.percentage = 20;
    chains.emplace_back("processors: attributes (upsert resource attr, delete span attr)",
                        std::make_shared<proc::ProcessorChain>(std::vector{attrs}));
    chains.emplace_back("processors: redact sql_literals (db.statement on every span)",
                        std::make_shared<proc::ProcessorChain>(std::vector{redact}));
    chains.emplace_back("processors: filter (probe rule, nothing matches)",
                        std::make_shared<proc::ProcessorChain>(std::vector{filter}));
    chains.emplace_back("processors: probabilistic_sampler 20%",
                        std::make_shared<proc::ProcessorChain>(std::vector{sampler}));
    chains.emplace_back("processors: attributes + redact + filter",
                        std::make_shared<proc::ProcessorChain>(std::vector{attrs, redact, filter}));
  }
  cases.push_back({"processors: (baseline) copy of the request", spans, with_sql.size(), [&] {
                     std::string copy = with_sql;
                     g_sink += copy.size();
                   }});
  for (const auto& [name, chain] : chains) {
    cases.push_back({name.c_str(), spans, with_sql.size(), [&with_sql, chain = chain, spans] {
                       std::string copy = with_sql;
                       g_sink += chain->run(copy, static_cast<std::uint32_t>(spans));
                     }});
  }
  std::printf("\n");
  std::printf("| %-58s | %8s | %8s | %8s | %9s |\n", "stage (agent function)", "ns/span",
              "median", "MB/s", "spans/s");
  std::printf("|%s|---:|---:|---:|---:|\n", std::string(60, '-').c_str());
  for (const auto& c : cases) {
    run_case(c, reps);
  }
  libdeflate_free_decompressor(dec);
  std::printf("\n(checksum %zu)\n", g_sink);
  return 0;
}
