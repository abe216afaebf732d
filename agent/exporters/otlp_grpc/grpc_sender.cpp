#include "exporters/otlp_grpc/grpc_sender.hpp"

#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>
#include <grpcpp/support/byte_buffer.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <fstream>
#include <sstream>

#include <algorithm>
#include <cctype>
#include <initializer_list>
#include <string_view>

#include "common/log.hpp"
#include "google/rpc/status.pb.h"
#include "otlp/responses.hpp"

namespace spanrelay {

namespace asio = boost::asio;
constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);
constexpr const char* kExportMethod = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";

// One call's state, shared between the coroutine and gRPC's completion callback.
struct GrpcSender::Call {
  explicit Call(asio::io_context& ioc) : done_signal(ioc) {}
  grpc::ClientContext context;
  grpc::ByteBuffer request;
  grpc::ByteBuffer response;
  grpc::Status status;
  bool done = false;
  asio::steady_timer done_signal;  // cancelled when the call completes
};

namespace {

const char* code_name(grpc::StatusCode code) {
  switch (code) {
    case grpc::StatusCode::OK: return "OK";
    case grpc::StatusCode::CANCELLED: return "CANCELLED";
    case grpc::StatusCode::UNKNOWN: return "UNKNOWN";
    case grpc::StatusCode::INVALID_ARGUMENT: return "INVALID_ARGUMENT";
    case grpc::StatusCode::DEADLINE_EXCEEDED: return "DEADLINE_EXCEEDED";
    case grpc::StatusCode::NOT_FOUND: return "NOT_FOUND";
    case grpc::StatusCode::ALREADY_EXISTS: return "ALREADY_EXISTS";
    case grpc::StatusCode::PERMISSION_DENIED: return "PERMISSION_DENIED";
    case grpc::StatusCode::RESOURCE_EXHAUSTED: return "RESOURCE_EXHAUSTED";
    case grpc::StatusCode::FAILED_PRECONDITION: return "FAILED_PRECONDITION";
    case grpc::StatusCode::ABORTED: return "ABORTED";
    case grpc::StatusCode::OUT_OF_RANGE: return "OUT_OF_RANGE";
    case grpc::StatusCode::UNIMPLEMENTED: return "UNIMPLEMENTED";
    case grpc::StatusCode::INTERNAL: return "INTERNAL";
    case grpc::StatusCode::UNAVAILABLE: return "UNAVAILABLE";
    case grpc::StatusCode::DATA_LOSS: return "DATA_LOSS";
    case grpc::StatusCode::UNAUTHENTICATED: return "UNAUTHENTICATED";
    default: return "status";
  }
}

bool contains_any(const std::string& text, std::initializer_list<std::string_view> needles) {
  std::string lower = text;
  std::transform(lower.begin(), lower.end(), lower.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return std::any_of(needles.begin(), needles.end(), [&](std::string_view n) {
    return lower.find(n) != std::string::npos;
  });
}

// UNAVAILABLE: gRPC's own transport failures name themselves in the message (core's wording);
// a server's UNAVAILABLE (overloaded, draining) says something else.
FailureClass class_of_unavailable(const grpc::Status& status) {
  const std::string& m = status.error_message();
  if (contains_any(m, {"handshake", "ssl", "certificate"})) {
    return FailureClass::kTls;
  }
  if (contains_any(m, {"failed to connect", "connection refused", "connect failed",
                       "dns resolution failed", "name resolution", "socket closed",
                       "connection reset", "broken pipe", "endpoint read failed",
                       "endpoint closing", "empty address list", "connection attempt timed out",
                       "failed to pick subchannel", "goaway", "keepalive watchdog"})) {
    return FailureClass::kConnection;
  }
  return FailureClass::kServer;
}

FailureClass class_of_code(const grpc::Status& status) {
  switch (status.error_code()) {
    case grpc::StatusCode::UNAUTHENTICATED:
    case grpc::StatusCode::PERMISSION_DENIED:
      return FailureClass::kAuth;
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      return FailureClass::kTimeout;
    case grpc::StatusCode::UNAVAILABLE:
      return class_of_unavailable(status);
    case grpc::StatusCode::INVALID_ARGUMENT:
    case grpc::StatusCode::NOT_FOUND:
    case grpc::StatusCode::ALREADY_EXISTS:
    case grpc::StatusCode::RESOURCE_EXHAUSTED:
    case grpc::StatusCode::FAILED_PRECONDITION:
    case grpc::StatusCode::ABORTED:
    case grpc::StatusCode::OUT_OF_RANGE:
    case grpc::StatusCode::UNIMPLEMENTED:
      return FailureClass::kClient;
    default:  // INTERNAL, UNKNOWN, DATA_LOSS, CANCELLED
      return FailureClass::kServer;
  }
}

}  // namespace

Attempt classify_grpc_status(const grpc::Status& status) {
  Attempt a;
  a.status = static_cast<int>(status.error_code());
  if (status.ok()) {
    a.outcome = Attempt::kDelivered;
    return a;
  }
  a.failure = class_of_code(status);
  std::string message = status.error_message().substr(0, 256);
  for (char& c : message) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) {
      c = '.';
    }
  }
  a.detail = std::string("gRPC ") + code_name(status.error_code()) + ": " + message;
  std::optional<std::chrono::milliseconds> delay;
  if (!status.error_details().empty()) {
    google::rpc::Status details;
    if (details.ParseFromString(status.error_details())) {
      for (const auto& any : details.details()) {
        google::rpc::RetryInfo info;
        if (any.type_url().ends_with("/google.rpc.RetryInfo") &&
            info.ParseFromString(any.value())) {
          delay = std::chrono::milliseconds(info.retry_delay().seconds() * 1000 +
                                            info.retry_delay().nanos() / 1000000);
        }
      }
    }
  }
  switch (status.error_code()) {
    case grpc::StatusCode::CANCELLED:
    case grpc::StatusCode::DEADLINE_EXCEEDED:
    case grpc::StatusCode::ABORTED:
    case grpc::StatusCode::OUT_OF_RANGE:
    case grpc::StatusCode::UNAVAILABLE:
    case grpc::StatusCode::DATA_LOSS:
      a.outcome = Attempt::kRetryable;
      a.retry_after = delay;
      break;
    case grpc::StatusCode::RESOURCE_EXHAUSTED:
      // Only a server that says when to come back is throttling; otherwise the request itself
      // is too large or the quota is gone for good.
      a.outcome = delay ? Attempt::kRetryable : Attempt::kPermanent;
      a.retry_after = delay;
      a.too_large = !delay && status.error_message().find("larger than max") != std::string::npos;
      break;
    default:
      a.outcome = Attempt::kPermanent;
  }
  return a;
}

namespace {

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    throw std::runtime_error("cannot read " + path);
  }
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

}  // namespace

GrpcSender::GrpcSender(asio::io_context& ioc, const config::Exporter& options)
    : ioc_(ioc), options_(options),
      credentials_(options.auth, logger("exporter." + options.name)),
      sent_authorization_(std::max<std::size_t>(options.max_in_flight, 1)) {
  // Metadata is the same for every call: gRPC wants lower-case keys.
  for (const auto& [name, value] : options_.headers) {
    std::string key = name;
    for (char& ch : key) {
      ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    }
    metadata_.emplace_back(std::move(key), value);
  }
  const auto& url = options_.endpoint;
  const std::string target = config::host_port(url.host, url.port);
  grpc::ChannelArguments args;
  args.SetString(GRPC_ARG_PRIMARY_USER_AGENT_STRING, "spanrelay/" SPANRELAY_VERSION);
  args.SetMaxSendMessageSize(-1);
  std::shared_ptr<grpc::ChannelCredentials> creds;
  if (url.tls) {
    if (options_.tls.insecure_skip_verify) {
      throw std::runtime_error("exporter " + options_.name +
                               ": tls.insecure_skip_verify is not supported by otlp_grpc; "
                               "give the upstream's CA in tls.ca_file instead");
    }
    grpc::SslCredentialsOptions ssl;
    if (!options_.tls.ca_file.empty()) {
      ssl.pem_root_certs = read_file(options_.tls.ca_file);
    }
    creds = grpc::SslCredentials(ssl);
    if (!options_.tls.server_name.empty()) {
      args.SetSslTargetNameOverride(options_.tls.server_name);
    }
  } else {
    creds = grpc::InsecureChannelCredentials();
  }
  channel_ = grpc::CreateCustomChannel(target, creds, args);
  stub_ = std::make_unique<grpc::GenericStub>(channel_);
}

GrpcSender::~GrpcSender() { cancel_all(); }

std::string GrpcSender::describe() const {
  return "gRPC " + options_.endpoint.text + " TraceService/Export (" +
         (options_.gzip ? "gzip" : "no compression") +
         (options_.auth.enabled ? ", basic auth from " + options_.auth.password_source : "") +
         ")";
}

bool GrpcSender::refresh_credentials(std::size_t slot) {
  credentials_.refresh();
  return credentials_.authorization() != sent_authorization_.at(slot);
}

void GrpcSender::cancel_all() {
  for (const auto& call : in_flight_) {
    call->context.TryCancel();
  }
}

asio::awaitable<Attempt> GrpcSender::send(std::size_t slot, std::string& payload) {
  auto call = std::make_shared<Call>(ioc_);
  call->context.set_deadline(std::chrono::system_clock::now() + options_.timeout);
  if (options_.gzip) {
    call->context.set_compression_algorithm(GRPC_COMPRESS_GZIP);
  }
  for (const auto& [key, value] : metadata_) {
    call->context.AddMetadata(key, value);
  }
  if (credentials_.enabled()) {
    sent_authorization_.at(slot) = credentials_.authorization();
    call->context.AddMetadata("authorization", sent_authorization_[slot]);
  }
  grpc::Slice slice(payload.data(), payload.size());
  call->request = grpc::ByteBuffer(&slice, 1);
  in_flight_.insert(call);
  call->done_signal.expires_at(std::chrono::steady_clock::time_point::max());
  stub_->UnaryCall(&call->context, kExportMethod, grpc::StubOptions(), &call->request,
                   &call->response, [ioc = &ioc_, call](grpc::Status status) mutable {
                     // On a gRPC thread: hand the result, and this callback's reference to
                     // the call, to the exporter's io thread. The call's ClientContext holds
                     // the channel: were its last reference dropped here, after the sender
                     // had let go of the channel, the channel would be destroyed on gRPC's own
                     // callback thread, which then joins itself and frees the completion
                     // queue it is still polling (an abort in grpc_cq_internal_unref).
                     asio::post(*ioc, [call = std::move(call), status = std::move(status)]()
                                          mutable {
                       call->status = std::move(status);
                       call->done = true;
                       call->done_signal.cancel();
                     });
                   });
  while (!call->done) {
    co_await call->done_signal.async_wait(use_tuple);
  }
  in_flight_.erase(call);
  std::string message = call->status.error_message();
  credentials_.redact(message);  // a server's message may echo the request's metadata
  Attempt a = classify_grpc_status(
      grpc::Status(call->status.error_code(), message, call->status.error_details()));
  if (a.outcome == Attempt::kDelivered) {
    std::vector<grpc::Slice> slices;
    std::string body;
    if (call->response.Dump(&slices).ok()) {
      for (const auto& s : slices) {
        body.append(reinterpret_cast<const char*>(s.begin()), s.size());
      }
    }
    std::string message;
    if (!body.empty() && otlp::parse_export_response(body, a.rejected, message)) {
      a.detail = message;
    }
  }
  co_return a;
}

}  // namespace spanrelay
