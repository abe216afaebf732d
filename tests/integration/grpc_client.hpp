#pragma once
// A gRPC client for the agent's OTLP/gRPC receiver: unary calls carrying raw message bytes
// through grpc::GenericStub, each bounded by its deadline. Every client has a connection of
// its own (gRPC would otherwise share one between channels to the same target).

#include <grpc/compression.h>
#include <grpcpp/channel.h>
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/support/status.h>

#include <memory>
#include <string>
#include <string_view>

#include "integration/harness.hpp"

namespace it {

struct GrpcReply {
  grpc::Status status;
  std::string body;  // the response message when OK
};

class GrpcClient {
 public:
  // target: "127.0.0.1:PORT" or "unix:/path".
  explicit GrpcClient(const std::string& target);

  GrpcReply call(std::string_view message,
                 grpc_compression_algorithm compression = GRPC_COMPRESS_NONE, Millis timeout = 10s,
                 std::string_view method = otlp_export_method);

  // Exports the request; requires OK and an ExportTraceServiceResponse without rejections.
  void require_exported(const ExportRequest& request,
                        grpc_compression_algorithm compression = GRPC_COMPRESS_NONE);

 private:
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<grpc::GenericStub> stub_;
};

}  // namespace it
