#pragma once
// OTLP/gRPC: unary TraceService/Export calls on one HTTP/2 channel (calls multiplex), sent as
// raw bytes (no decode). Basic auth and headers go as metadata; gzip is gRPC's own message
// compression. Retryable: UNAVAILABLE, DEADLINE_EXCEEDED, ABORTED, OUT_OF_RANGE, DATA_LOSS,
// CANCELLED, and RESOURCE_EXHAUSTED only when the status carries RetryInfo (whose delay is
// honoured). Everything else is permanent.
//
// Failure classes (Attempt::status is the gRPC code): UNAUTHENTICATED, PERMISSION_DENIED auth;
// INVALID_ARGUMENT, NOT_FOUND, ALREADY_EXISTS, RESOURCE_EXHAUSTED, FAILED_PRECONDITION,
// ABORTED, OUT_OF_RANGE, UNIMPLEMENTED 4xx; DEADLINE_EXCEEDED timeout; INTERNAL, UNKNOWN,
// DATA_LOSS, CANCELLED 5xx. UNAVAILABLE comes both from gRPC's own transport (the call never
// reached a server, or lost its connection) and from a server that is overloaded or going
// away; they are told apart by gRPC's message: a transport failure names itself ("failed to
// connect to all addresses", "Connection refused", "Socket closed", ...) and is connection, or
// tls when the handshake or the certificate failed; any other UNAVAILABLE is 5xx.

#include <grpcpp/channel.h>
#include <grpcpp/generic/generic_stub.h>

#include <boost/asio/io_context.hpp>

#include <memory>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "config/config.hpp"
#include "exporters/credentials.hpp"
#include "exporters/sender.hpp"

namespace spanrelay {

// Classification of a finished call (exposed for tests).
Attempt classify_grpc_status(const grpc::Status& status);

class GrpcSender final : public Sender {
 public:
  // Throws std::runtime_error when the TLS set-up fails.
  GrpcSender(boost::asio::io_context& ioc, const config::Exporter& options);
  ~GrpcSender() override;

  std::string prepare(const Batch& batch) override { return batch.bytes; }
  boost::asio::awaitable<Attempt> send(std::size_t slot, std::string& payload) override;
  void cancel_all() override;
  void close(std::size_t) override {}
  bool refresh_credentials(std::size_t slot) override;
  std::string describe() const override;

 private:
  struct Call;

  boost::asio::io_context& ioc_;
  const config::Exporter& options_;
  // Headers (lower-cased): values may be secret, never logged.
  std::vector<std::pair<std::string, std::string>> metadata_;
  Credentials credentials_;  // the Basic authorization, added to each call
  std::vector<std::string> sent_authorization_;  // per slot, what its last call carried
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<grpc::GenericStub> stub_;
  std::set<std::shared_ptr<Call>> in_flight_;
};

}  // namespace spanrelay
