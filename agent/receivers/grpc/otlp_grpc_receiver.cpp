#include "receivers/grpc/otlp_grpc_receiver.hpp"

#include <grpc/byte_buffer.h>
#include <grpc/grpc.h>
#include <grpcpp/generic/async_generic_service.h>
#include <grpcpp/security/server_credentials.h>
#include <grpcpp/server.h>
#include <grpcpp/server_builder.h>
#include <grpcpp/support/byte_buffer.h>

#include <algorithm>
#include <climits>
#include <stdexcept>
#include <utility>

#include "common/log.hpp"
#include "common/unix_socket.hpp"
#include "google/rpc/status.pb.h"
#include "otlp/responses.hpp"
#include "receivers/grpc/grpc_message.hpp"

// Decompression is ours, not gRPC's (GRPC_ARG_ENABLE_PER_MESSAGE_DECOMPRESSION = 0): see
// grpc_message.hpp, which also has the GrpcByteBufferPeer that shows the core byte buffer.

// The flags of the last message gRPC core read on a call; GRPC_WRITE_INTERNAL_COMPRESS
// (0x80000000, core-internal) is the message's compressed flag as received. Exported by
// libgrpc 1.51 but declared only in a core-internal header (src/core/lib/surface/call.h); if an
// upgrade drops it, linking fails (it cannot silently go wrong). The C++ byte buffer loses the
// flag when the request names no grpc-encoding (or identity), see flagged_compressed_... below.
uint32_t grpc_call_test_only_get_message_flags(grpc_call* call);

namespace spanrelay {
namespace {

constexpr uint32_t kInternalCompressFlag = 0x80000000u;

constexpr const char* kFullMessage = "spanrelay buffer is full; retry later";
constexpr const char* kShuttingDownMessage = "spanrelay is shutting down";

// The grpc-status-details-bin of a "buffer full" answer: google.rpc.Status carrying a
// google.rpc.RetryInfo. OTLP clients retry RESOURCE_EXHAUSTED only when RetryInfo is present
// (otherwise it means "this request can never fit"), and wait retry_delay before they do.
const std::string& full_details() {
  static const std::string details = [] {
    google::rpc::RetryInfo retry;
    retry.mutable_retry_delay()->set_seconds(1);
    google::rpc::Status status;
    status.set_code(static_cast<std::int32_t>(otlp::Code::kResourceExhausted));
    status.set_message(kFullMessage);
    status.add_details()->PackFrom(retry);  // type.googleapis.com/google.rpc.RetryInfo
    return status.SerializeAsString();
  }();
  return details;
}

// "host:port", "[v6]:port" or "unix:/path", as grpc::ServerBuilder wants it.
std::string grpc_address(const config::ListenEndpoint& endpoint) {
  if (!endpoint.unix_path.empty()) {
    return "unix:" + endpoint.unix_path;
  }
  return config::host_port(endpoint.host, endpoint.port);
}

// gRPC channel arguments are ints (milliseconds); INT_MAX means "never" for keepalive.
int clamp_to_int(long long value) {
  return static_cast<int>(std::clamp<long long>(value, 0, INT_MAX));
}

}  // namespace

// Every method path arrives here as a bidi stream of raw messages. Export is unary: the
// reactor reads one message, reads again to see the request end there, answers, and finishes. Each reactor calls Finish exactly once
// on every path (gRPC's refcount needs it) and deletes itself in OnDone, which gRPC calls
// once everything about the call is over, including when the client disconnected or the
// server shut down mid-call: nothing leaks, nothing outlives the call.
class OtlpGrpcReceiver::Service final : public grpc::CallbackGenericService {
 public:
  Service(Intake& intake, std::size_t max_message_bytes)
      : intake_(intake), max_message_bytes_(max_message_bytes),
        too_large_("request message larger than " + std::to_string(max_message_bytes) +
                   " bytes (receivers.grpc.max_message_bytes)") {}

  grpc::ServerGenericBidiReactor* CreateReactor(grpc::GenericCallbackServerContext* ctx) override {
    add(intake_.stats().requests);
    if (ctx->method() != kOtlpTraceExportPath) {
      add(intake_.stats().bad_requests);
      return new Refusal(grpc::Status(grpc::StatusCode::UNIMPLEMENTED,
                                      "unknown method " + ctx->method() + ": spanrelay serves " +
                                          std::string(kOtlpTraceExportPath)));
    }
    return new ExportCall(*this, ctx);
  }

 private:
  class Refusal final : public grpc::ServerGenericBidiReactor {
   public:
    explicit Refusal(grpc::Status status) { Finish(std::move(status)); }
    void OnDone() override { delete this; }
  };

  class ExportCall final : public grpc::ServerGenericBidiReactor {
   public:
    ExportCall(Service& service, grpc::GenericCallbackServerContext* ctx)
        : service_(service), ctx_(ctx) {
      StartRead(&request_);
    }

    // Two reads: the message, then the end of the request stream. The answer waits for the
    // second, so a request carrying anything after its message is refused whole, never half
    // accepted. A unary client sends its message and END_STREAM together: the second read
    // completes at once.
    void OnReadDone(bool ok) override {
      if (!have_message_) {
        if (!ok) {
          // No message: the client went away (OnCancel), gRPC refused the message (more than
          // max_message_bytes on the wire) and already failed the call with its own status, or
          // the body held no complete gRPC message (empty, shorter than its 5-byte prefix, or
          // shorter than the length the prefix declares: gRPC core drops such bytes at the end
          // of the stream and reports no message). Only in the last case does this status
          // reach anyone, or count as a bad request.
          if (ctx_->IsCancelled()) {
            Finish(grpc::Status(grpc::StatusCode::CANCELLED, "cancelled"));
            return;
          }
          refuse(grpc::StatusCode::INVALID_ARGUMENT,
                 "expected one ExportTraceServiceRequest message (a gRPC length-prefixed "
                 "message: flag byte, 4-byte length, that many bytes)");
          return;
        }
        if (flagged_compressed_without_encoding()) {
          // The gRPC protocol: a compressed flag with no (or identity) grpc-encoding is INTERNAL.
          // gRPC core hands such a message over as plain bytes when decompression is ours.
          refuse(grpc::StatusCode::INTERNAL,
                 "message has the compressed flag set but the request has no grpc-encoding");
          return;
        }
        have_message_ = true;
        StartRead(&extra_);
        return;
      }
      if (ok) {
        // A second message (or a second gRPC prefix after the first message's bytes).
        extra_.Clear();
        request_.Clear();
        refuse(grpc::StatusCode::INVALID_ARGUMENT,
               "more than one message in an Export call: it takes exactly one "
               "ExportTraceServiceRequest");
        return;
      }
      if (ctx_->IsCancelled()) {  // nobody would hear the answer: accept nothing
        Finish(grpc::Status(grpc::StatusCode::CANCELLED, "cancelled"));
        return;
      }
      const auto started = std::chrono::steady_clock::now();
      grpc::Status status = service_.handle(request_, response_);
      service_.intake_.stats().grpc_duration.observe(std::chrono::steady_clock::now() - started);
      if (!status.ok()) {
        log_refusal(status);
      }
      if (status.ok()) {
        StartWriteAndFinish(&response_, grpc::WriteOptions(), status);
      } else {
        Finish(std::move(status));
      }
    }

    // Nothing to do on cancellation: a pending read completes with ok == false, and OnDone
    // follows the Finish.
    void OnCancel() override {}
    void OnDone() override { delete this; }

   private:
    // A framing refusal: counted as a bad request, logged at debug.
    void refuse(grpc::StatusCode code, const char* message) {
      add(service_.intake_.stats().bad_requests);
      grpc::Status status(code, message);
      log_refusal(status);
      Finish(std::move(status));
    }

    void log_refusal(const grpc::Status& status) {
      if (service_.log_->should_log(spdlog::level::debug)) {
        service_.log_->debug("refused a call from {}: {} {}", ctx_->peer(),
                             static_cast<int>(status.error_code()), status.error_message());
      }
    }

    // The message's compressed flag is set, yet gRPC did not mark the buffer with an algorithm:
    // the request named none (or identity). gRPC core keeps the flag of the last message read
    // on the call; the byte buffer does not carry it in that case.
    bool flagged_compressed_without_encoding() {
      const grpc_byte_buffer* raw = grpc::internal::GrpcByteBufferPeer(&request_).c_buffer();
      return raw != nullptr && raw->data.raw.compression == GRPC_COMPRESS_NONE &&
             (grpc_call_test_only_get_message_flags(ctx_->c_call()) & kInternalCompressFlag) != 0;
    }

    Service& service_;
    grpc::GenericCallbackServerContext* ctx_;
    bool have_message_ = false;
    grpc::ByteBuffer request_;
    grpc::ByteBuffer extra_;  // the second read: must find the end of the stream
    grpc::ByteBuffer response_;
  };

  // One ExportTraceServiceRequest message, as received (compressed or not) -> the call's
  // status, and the ExportTraceServiceResponse in `response` when OK. Never blocks.
  grpc::Status handle(grpc::ByteBuffer& request, grpc::ByteBuffer& response) {
    ReceiverStats& stats = intake_.stats();
    if (intake_.closed()) {  // spare the copy; submit() would say the same
      add(stats.unavailable);
      return grpc::Status(grpc::StatusCode::UNAVAILABLE, kShuttingDownMessage);
    }
    std::string bytes;
    const ReadStatus read = read_message(request, max_message_bytes_, bytes);
    request.Clear();
    if (read != ReadStatus::kOk) {
      add(stats.bad_requests);
    }
    switch (read) {
      case ReadStatus::kOk:
        break;
      case ReadStatus::kTooLarge:
        return grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED, too_large_);
      case ReadStatus::kCorrupt:
        return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                            "the request message is not valid compressed data");
      case ReadStatus::kUnsupported:
        return grpc::Status(grpc::StatusCode::UNIMPLEMENTED,
                            "unsupported message compression: use gzip, deflate or none");
    }
    IntakeResult result = intake_.submit(std::move(bytes));
    switch (result.status) {
      case IntakeStatus::kAccepted: {
        grpc::Slice body(otlp::export_response(otlp::Encoding::kProtobuf, result.rejected_spans,
                                               result.error));
        response = grpc::ByteBuffer(&body, 1);
        return grpc::Status::OK;
      }
      case IntakeStatus::kInvalid:
        return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                            "invalid OTLP protobuf: " + result.error);
      case IntakeStatus::kFull:
        return grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED, kFullMessage, full_details());
      case IntakeStatus::kTooLarge:  // no RetryInfo: not worth retrying
        return grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED, result.error);
      case IntakeStatus::kShuttingDown:
        return grpc::Status(grpc::StatusCode::UNAVAILABLE, kShuttingDownMessage);
    }
    return grpc::Status(grpc::StatusCode::INTERNAL, "unexpected state");
  }

  Intake& intake_;
  std::shared_ptr<spdlog::logger> log_ = logger("receiver.grpc");
  const std::size_t max_message_bytes_;
  const std::string too_large_;
};

OtlpGrpcReceiver::OtlpGrpcReceiver(const config::GrpcReceiver& options, Intake& intake)
    : options_(options), intake_(intake),
      service_(std::make_unique<Service>(intake, options.max_message_bytes)) {}

OtlpGrpcReceiver::~OtlpGrpcReceiver() { shutdown(std::chrono::steady_clock::now()); }

void OtlpGrpcReceiver::start() {
  auto log = logger("receiver.grpc");
  const config::ListenEndpoint& endpoint = options_.endpoint;
  const bool unix_socket = !endpoint.unix_path.empty();
  const std::string cannot = "receiver.grpc: cannot listen on " + endpoint.text;
  if (unix_socket) {
    try {
      clear_stale_unix_socket(endpoint.unix_path);
    } catch (const std::runtime_error& e) {
      throw std::runtime_error(cannot + ": " + e.what());
    }
  }

  grpc::ServerBuilder builder;
  int selected_port = 0;  // stays 0 when the address cannot be bound
  builder.AddListeningPort(grpc_address(endpoint), grpc::InsecureServerCredentials(),
                           &selected_port);
  builder.RegisterCallbackGenericService(service_.get());
  // gRPC checks the message as received (compressed or not); read_message checks what it
  // inflates to. Decompression is ours: see GrpcByteBufferPeer above.
  builder.SetMaxReceiveMessageSize(
      clamp_to_int(static_cast<long long>(options_.max_message_bytes)));
  builder.AddChannelArgument(GRPC_ARG_ENABLE_PER_MESSAGE_DECOMPRESSION, 0);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIME_MS,
                             clamp_to_int(options_.keepalive.time.count()));
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIMEOUT_MS,
                             clamp_to_int(options_.keepalive.timeout.count()));
  builder.AddChannelArgument(GRPC_ARG_MAX_CONCURRENT_STREAMS,
                             clamp_to_int(static_cast<long long>(options_.max_concurrent_streams)));
  // gRPC sets SO_REUSEPORT by default, which would let a second spanrelay bind the same port
  // and silently take half the connections. The port must be ours alone.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  server_ = builder.BuildAndStart();
  if (!server_ || selected_port == 0) {
    if (server_) {
      server_->Shutdown();
      server_.reset();
    }
    throw std::runtime_error(cannot +
                             " (address in use, not permitted, or not local; see gRPC's log)");
  }
  if (unix_socket) {
    try {
      open_unix_socket_permissions(endpoint.unix_path);
    } catch (const std::runtime_error& e) {
      shutdown(std::chrono::steady_clock::now());
      throw std::runtime_error(cannot + ": " + e.what());
    }
    log->info("listening on {}", endpoint.text);
  } else {
    port_ = static_cast<std::uint16_t>(selected_port);
    log->info("listening on {}", grpc_address({endpoint.host, port_, "", ""}));
  }
}

void OtlpGrpcReceiver::shutdown(std::chrono::steady_clock::time_point deadline) {
  if (!server_) {
    return;
  }
  // grpc::Server takes system_clock deadlines; keep the remaining time, not the clock.
  const auto remaining = std::max(deadline - std::chrono::steady_clock::now(),
                                  std::chrono::steady_clock::duration::zero());
  server_->Shutdown(std::chrono::system_clock::now() +
                    std::chrono::duration_cast<std::chrono::system_clock::duration>(remaining));
  server_->Wait();
  server_.reset();
  if (!options_.endpoint.unix_path.empty()) {
    remove_unix_socket(options_.endpoint.unix_path);
  }
}

}  // namespace spanrelay
