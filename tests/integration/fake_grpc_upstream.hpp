#pragma once
// A real gRPC server on 127.0.0.1:<ephemeral> standing in for an OTLP/gRPC upstream (Tempo, a
// collector). It serves every method through the generic callback API, records each call —
// method, client metadata, the grpc-encoding, the message as it came over the wire and
// decoded — and answers from a programmable script of grpc::Status values. Like a real
// upstream it may serve over TLS, refuse a message above a size limit, and accept a call while
// rejecting some of its spans (partial_success).

#include <grpcpp/support/status.h>

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "integration/fake_upstream.hpp"  // TlsFiles
#include "integration/otlp_data.hpp"

namespace it {

struct RecordedCall {
  std::string method;
  std::multimap<std::string, std::string> metadata;  // client metadata (keys as sent: lower case)
  std::string encoding;      // the grpc-encoding of the call: "identity", "gzip", "deflate"
  std::string wire_message;  // the message as received, compressed if the client compressed it
  bool compressed = false;   // wire_message was a gzip or zlib stream
  std::string message;       // the message, inflated
  bool decoded = false;      // message parsed as an ExportTraceServiceRequest
  ExportRequest request;
  std::chrono::steady_clock::time_point received_at;
  grpc::StatusCode answered = grpc::StatusCode::OK;

  // Every value of a metadata key, in order.
  std::vector<std::string> metadata_values(const std::string& key) const;
};

class FakeGrpcUpstream {
 public:
  FakeGrpcUpstream();
  // TLS (grpc::SslServerCredentials) with this certificate chain and key.
  explicit FakeGrpcUpstream(const TlsFiles& tls);
  ~FakeGrpcUpstream();
  FakeGrpcUpstream(const FakeGrpcUpstream&) = delete;
  FakeGrpcUpstream& operator=(const FakeGrpcUpstream&) = delete;

  std::uint16_t port() const;
  // The otlp_grpc exporter endpoint to configure: "http(s)://127.0.0.1:PORT".
  std::string endpoint() const;

  // Statuses are consumed one per call, in arrival order; then the default (OK) applies.
  void script(std::vector<grpc::Status> statuses);
  void set_default(grpc::Status status);

  // RESOURCE_EXHAUSTED whose details (grpc-status-details-bin) are a google.rpc.Status carrying
  // a google.rpc.RetryInfo with this retry_delay.
  static grpc::Status throttled(std::chrono::milliseconds retry_delay);

  // Refuses, before any script, a message larger than this (compressed on the wire, or once
  // inflated) as grpc-go does at its max receive message size (Tempo, the Collector):
  // RESOURCE_EXHAUSTED "grpc: received message larger than max (N vs. LIMIT)", no RetryInfo.
  // 0: no limit (the default).
  void set_max_message_bytes(std::size_t limit);

  // Calls answered OK carry an ExportTraceServiceResponse whose partial_success rejects this
  // many spans with this message (0: an empty response, the default).
  void set_partial_success(std::int64_t rejected_spans, std::string error_message);

  std::size_t request_count() const;
  std::vector<RecordedCall> requests() const;
  // Spans of calls answered OK, in order.
  std::vector<FlatSpan> delivered_spans() const;
  std::size_t delivered_span_count() const;

  bool wait_for_requests(std::size_t n, std::chrono::milliseconds timeout) const;
  bool wait_for_spans(std::size_t n, std::chrono::milliseconds timeout) const;

  struct State;

 private:
  std::unique_ptr<State> state_;
};

}  // namespace it
