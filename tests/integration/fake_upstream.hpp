#pragma once
// A real HTTP/1.1 (optionally HTTPS) server on 127.0.0.1:<ephemeral> standing in for the OTLP
// upstream (Grafana Cloud). It records every request, decodes OTLP bodies, answers from a
// programmable script, and can hold requests unanswered to play a stuck upstream.

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "integration/otlp_data.hpp"

namespace it {

struct UpstreamResponse {
  unsigned status = 200;
  std::vector<std::pair<std::string, std::string>> headers;  // e.g. {"Retry-After", "1"}
  std::string content_type = "application/x-protobuf";
  std::string body;  // the default is an empty (serialized) ExportTraceServiceResponse

  static UpstreamResponse with_status(unsigned status);  // body: a google.rpc.Status
  // 200 with an ExportTraceServiceResponse whose partial_success rejects some spans.
  static UpstreamResponse partial_success(std::int64_t rejected_spans, std::string message);
};

// How an upstream with a size limit refuses a request body larger than the limit.
enum class SizeRefusal {
  k413,          // reads the body, answers 413 (google.rpc.Status), keeps the connection
  kGrafana429,   // reads the body, answers 429 "... larger than max ..." as Grafana Cloud does
  kEarly413,     // answers 413 from the headers alone (Content-Length), before reading the
                 // body, then closes the connection with the body unread
};

struct RecordedRequest {
  std::string method;
  std::string target;
  std::map<std::string, std::string> headers;  // names lower-cased
  std::string raw_body;
  std::string body;      // raw_body, gunzipped when Content-Encoding: gzip
  bool decoded = false;  // body parsed as an ExportTraceServiceRequest
  ExportRequest request;
  std::chrono::steady_clock::time_point received_at;
  unsigned response_status = 0;  // 0 while held / not yet answered
  std::uint64_t content_length = 0;  // as announced (the body is empty when refused early)
  bool refused_for_size = false;     // answered by the size limit, not the script

  // "" when absent.
  std::string header(const std::string& lower_case_name) const;
};

struct TlsFiles {
  std::string cert_file;  // PEM certificate (self-signed, CN and SAN 127.0.0.1)
  std::string key_file;   // PEM private key
};

// Writes a fresh self-signed certificate for 127.0.0.1 into dir; the cert is its own CA.
TlsFiles make_self_signed_cert(const std::string& dir);

class FakeUpstream {
 public:
  FakeUpstream();                             // plain HTTP
  // Plain HTTP on a given loopback port: a previous upstream's, to play it coming back.
  explicit FakeUpstream(std::uint16_t port);
  explicit FakeUpstream(const TlsFiles& tls);  // HTTPS
  ~FakeUpstream();
  FakeUpstream(const FakeUpstream&) = delete;
  FakeUpstream& operator=(const FakeUpstream&) = delete;

  std::uint16_t port() const;
  // The exporter endpoint to configure: "http(s)://127.0.0.1:PORT/otlp".
  std::string base_url() const;

  // Responses are consumed one per request, in arrival order; then the default applies.
  void script(std::vector<UpstreamResponse> responses);
  void set_default(UpstreamResponse response);

  // Bodies over max_body_bytes (on the wire) are refused `how`, whatever the script says
  // (the script is not consumed). 0: no limit (the default).
  void set_size_limit(std::size_t max_body_bytes, SizeRefusal how);
  std::size_t refused_for_size() const;

  // A kept-alive connection that stays idle this long after an answer is closed by the
  // upstream, as real servers do (0: never, the default).
  void set_idle_close(std::chrono::milliseconds idle);
  std::size_t idle_closes() const;
  bool wait_for_idle_closes(std::size_t n, std::chrono::milliseconds timeout) const;

  // While holding, requests are recorded but not answered until release().
  void hold();
  void release();
  std::size_t held_count() const;

  std::size_t request_count() const;
  std::vector<RecordedRequest> requests() const;
  // Spans of requests answered with 2xx, in order.
  std::vector<FlatSpan> delivered_spans() const;
  std::size_t delivered_span_count() const;

  bool wait_for_requests(std::size_t n, std::chrono::milliseconds timeout) const;
  bool wait_for_spans(std::size_t n, std::chrono::milliseconds timeout) const;

  struct State;

 private:
  std::unique_ptr<State> state_;
};

}  // namespace it
