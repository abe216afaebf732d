#pragma once
// OTLP/gRPC receiver: /opentelemetry.proto.collector.trace.v1.TraceService/Export on a gRPC
// server (HTTP/2, TCP or a Unix socket). Requests are never decoded here: gRPC's callback
// generic API hands over the raw message bytes (already decompressed), which go to the Intake
// as they are, like the HTTP receiver's protobuf bodies.
//
// Threads: calls run on gRPC's own callback threads. Intake::submit never waits for the
// pipeline; with a disk spool it writes to disk (and fdatasyncs under fsync: always) before
// answering, on this thread.

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "config/config.hpp"
#include "receivers/intake.hpp"

namespace grpc {
class Server;
}  // namespace grpc

namespace spanrelay {

// The gRPC method path of OTLP trace export (a public contract).
inline constexpr std::string_view kOtlpTraceExportPath =
    "/opentelemetry.proto.collector.trace.v1.TraceService/Export";

class OtlpGrpcReceiver {
 public:
  OtlpGrpcReceiver(const config::GrpcReceiver& options, Intake& intake);
  ~OtlpGrpcReceiver();
  OtlpGrpcReceiver(const OtlpGrpcReceiver&) = delete;
  OtlpGrpcReceiver& operator=(const OtlpGrpcReceiver&) = delete;

  // Binds and starts serving. Throws std::runtime_error naming the endpoint when the address
  // cannot be bound (in use, no permission, bad host).
  void start();

  // Stops listening, lets calls in progress finish until `deadline`, then cancels the rest.
  // Call it after Intake::close(), so calls that arrive meanwhile are answered UNAVAILABLE.
  // Blocks until every call is done; idempotent.
  void shutdown(std::chrono::steady_clock::time_point deadline);

  // The bound TCP port (useful with port 0); 0 for a Unix socket or before start().
  std::uint16_t port() const noexcept { return port_; }

 private:
  class Service;  // the generic callback service and its per-call reactor (in the .cpp)

  config::GrpcReceiver options_;
  Intake& intake_;
  std::unique_ptr<Service> service_;
  std::unique_ptr<grpc::Server> server_;
  std::uint16_t port_ = 0;
};

}  // namespace spanrelay
