#include "integration/fake_grpc_upstream.hpp"

#include <grpc/compression.h>
#include <grpcpp/generic/async_generic_service.h>
#include <grpcpp/security/server_credentials.h>
#include <grpcpp/server.h>
#include <grpcpp/server_builder.h>
#include <grpcpp/support/byte_buffer.h>

#include <condition_variable>
#include <deque>
#include <mutex>
#include <optional>
#include <string_view>
#include <stdexcept>
#include <utility>

#include "google/rpc/status.pb.h"
#include "integration/harness.hpp"  // read_file

// gRPC core's test hook (declared in its src/core/lib/surface/call_test_only.h, which is not
// installed): the compression algorithm named by the call's grpc-encoding header. gRPC keeps
// that header out of client_metadata().
grpc_compression_algorithm grpc_call_test_only_get_compression_algorithm(grpc_call* call);

namespace it {

std::vector<std::string> RecordedCall::metadata_values(const std::string& key) const {
  std::vector<std::string> values;
  const auto [first, last] = metadata.equal_range(key);
  for (auto it = first; it != last; ++it) {
    values.push_back(it->second);
  }
  return values;
}

namespace {

std::string to_string(grpc::string_ref s) { return std::string(s.data(), s.size()); }

std::string encoding_name(grpc_compression_algorithm algorithm) {
  const char* name = nullptr;
  return grpc_compression_algorithm_name(algorithm, &name) != 0 ? name : "unknown";
}

}  // namespace

struct FakeGrpcUpstream::State {
  // One unary call: reads the request message, records it, answers the planned status.
  class Call final : public grpc::ServerGenericBidiReactor {
   public:
    Call(State& state, grpc::GenericCallbackServerContext* context)
        : state_(state), context_(context) {
      StartRead(&request_);
    }

    void OnReadDone(bool ok) override {
      if (!ok) {
        Finish(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "fake upstream: no message"));
        return;
      }
      grpc::Status status = state_.record(describe());
      if (!status.ok()) {
        Finish(status);
        return;
      }
      grpc::Slice body(state_.ok_response());
      response_ = grpc::ByteBuffer(&body, 1);
      StartWriteAndFinish(&response_, grpc::WriteOptions(), status);
    }

    void OnDone() override { delete this; }

   private:
    RecordedCall describe() {
      RecordedCall call;
      call.received_at = std::chrono::steady_clock::now();
      call.method = context_->method();
      for (const auto& [key, value] : context_->client_metadata()) {
        call.metadata.emplace(to_string(key), to_string(value));
      }
      call.encoding =
          encoding_name(grpc_call_test_only_get_compression_algorithm(context_->c_call()));
      // Decompression is off (see start()): these are the bytes as they came over the wire.
      std::vector<grpc::Slice> slices;
      if (request_.Dump(&slices).ok()) {
        for (const auto& slice : slices) {
          call.wire_message.append(reinterpret_cast<const char*>(slice.begin()), slice.size());
        }
      }
      // A protobuf message never starts like a gzip or zlib stream.
      if (auto inflated = gunzip(call.wire_message)) {
        call.compressed = true;
        call.message = std::move(*inflated);
      } else {
        call.message = call.wire_message;
      }
      call.decoded = call.request.ParseFromString(call.message);
      return call;
    }

    State& state_;
    grpc::GenericCallbackServerContext* context_;
    grpc::ByteBuffer request_;
    grpc::ByteBuffer response_;
  };

  class Service final : public grpc::CallbackGenericService {
   public:
    explicit Service(State& state) : state_(state) {}
    grpc::ServerGenericBidiReactor* CreateReactor(
        grpc::GenericCallbackServerContext* context) override {
      return new Call(state_, context);
    }

   private:
    State& state_;
  };

  mutable std::mutex mutex;
  mutable std::condition_variable changed;
  std::deque<grpc::Status> script;
  grpc::Status fallback = grpc::Status::OK;
  std::size_t max_message_bytes = 0;  // 0: none
  ExportResponse ok_answer;
  std::vector<RecordedCall> calls;
  std::size_t delivered = 0;

  Service service{*this};  // before server: it must outlive it
  std::unique_ptr<grpc::Server> server;
  int port = 0;
  bool tls = false;

  // Records the call; returns the status planned for it.
  grpc::Status record(RecordedCall call) {
    const std::lock_guard lock(mutex);
    grpc::Status status = fallback;
    if (const auto over = too_large(call)) {
      status = *over;
    } else if (!script.empty()) {
      status = std::move(script.front());
      script.pop_front();
    }
    call.answered = status.error_code();
    if (status.ok() && call.decoded) {
      delivered += span_count(call.request);
    }
    calls.push_back(std::move(call));
    changed.notify_all();
    return status;
  }

  // grpc-go's answers at its receive limit (checked on the wire size, then on the inflated one).
  std::optional<grpc::Status> too_large(const RecordedCall& call) const {
    if (max_message_bytes == 0) {
      return std::nullopt;
    }
    const auto refuse = [&](std::string_view what, std::size_t size) {
      return grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                          "grpc: received message " + std::string(what) + "larger than max (" +
                              std::to_string(size) + " vs. " +
                              std::to_string(max_message_bytes) + ")");
    };
    if (call.wire_message.size() > max_message_bytes) {
      return refuse("", call.wire_message.size());
    }
    if (call.message.size() > max_message_bytes) {
      return refuse("after decompression ", call.message.size());
    }
    return std::nullopt;
  }

  std::string ok_response() const {
    const std::lock_guard lock(mutex);
    return ok_answer.SerializeAsString();
  }

  void start(const std::shared_ptr<grpc::ServerCredentials>& credentials) {
    grpc::ServerBuilder builder;
    builder.AddListeningPort("127.0.0.1:0", credentials, &port);
    builder.RegisterCallbackGenericService(&service);
    builder.SetMaxReceiveMessageSize(-1);
    // Messages arrive as sent: describe() sees whether the client compressed them.
    builder.AddChannelArgument(GRPC_ARG_ENABLE_PER_MESSAGE_DECOMPRESSION, 0);
    server = builder.BuildAndStart();
    if (!server || port == 0) {
      throw std::runtime_error("fake gRPC upstream: cannot listen on 127.0.0.1");
    }
  }
};

FakeGrpcUpstream::FakeGrpcUpstream() : state_(std::make_unique<State>()) {
  state_->start(grpc::InsecureServerCredentials());
}

FakeGrpcUpstream::FakeGrpcUpstream(const TlsFiles& tls) : state_(std::make_unique<State>()) {
  grpc::SslServerCredentialsOptions options;
  options.pem_key_cert_pairs.push_back({read_file(tls.key_file), read_file(tls.cert_file)});
  state_->tls = true;
  state_->start(grpc::SslServerCredentials(options));
}

FakeGrpcUpstream::~FakeGrpcUpstream() {
  // Calls still open are cancelled at once; Wait returns when every reactor is done.
  state_->server->Shutdown(std::chrono::system_clock::now());
  state_->server->Wait();
}

std::uint16_t FakeGrpcUpstream::port() const { return static_cast<std::uint16_t>(state_->port); }

std::string FakeGrpcUpstream::endpoint() const {
  return std::string(state_->tls ? "https" : "http") + "://127.0.0.1:" + std::to_string(port());
}

void FakeGrpcUpstream::script(std::vector<grpc::Status> statuses) {
  const std::lock_guard lock(state_->mutex);
  for (auto& status : statuses) {
    state_->script.push_back(std::move(status));
  }
}

void FakeGrpcUpstream::set_default(grpc::Status status) {
  const std::lock_guard lock(state_->mutex);
  state_->fallback = std::move(status);
}

void FakeGrpcUpstream::set_max_message_bytes(std::size_t limit) {
  const std::lock_guard lock(state_->mutex);
  state_->max_message_bytes = limit;
}

void FakeGrpcUpstream::set_partial_success(std::int64_t rejected_spans,
                                           std::string error_message) {
  const std::lock_guard lock(state_->mutex);
  state_->ok_answer.Clear();
  if (rejected_spans != 0 || !error_message.empty()) {
    state_->ok_answer.mutable_partial_success()->set_rejected_spans(rejected_spans);
    state_->ok_answer.mutable_partial_success()->set_error_message(std::move(error_message));
  }
}

grpc::Status FakeGrpcUpstream::throttled(std::chrono::milliseconds retry_delay) {
  google::rpc::RetryInfo retry;
  const auto seconds = std::chrono::duration_cast<std::chrono::seconds>(retry_delay);
  retry.mutable_retry_delay()->set_seconds(seconds.count());
  retry.mutable_retry_delay()->set_nanos(
      static_cast<std::int32_t>((retry_delay - seconds).count() * 1000000));
  google::rpc::Status details;
  details.set_code(static_cast<std::int32_t>(grpc::StatusCode::RESOURCE_EXHAUSTED));
  details.set_message("fake upstream: slow down");
  auto* any = details.add_details();
  any->set_type_url("type.googleapis.com/google.rpc.RetryInfo");
  any->set_value(retry.SerializeAsString());
  return grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED, details.message(),
                      details.SerializeAsString());
}

std::size_t FakeGrpcUpstream::request_count() const {
  const std::lock_guard lock(state_->mutex);
  return state_->calls.size();
}

std::vector<RecordedCall> FakeGrpcUpstream::requests() const {
  const std::lock_guard lock(state_->mutex);
  return state_->calls;
}

std::vector<FlatSpan> FakeGrpcUpstream::delivered_spans() const {
  const std::lock_guard lock(state_->mutex);
  std::vector<FlatSpan> out;
  for (const auto& call : state_->calls) {
    if (call.answered == grpc::StatusCode::OK && call.decoded) {
      auto flat = flatten(call.request);
      out.insert(out.end(), std::make_move_iterator(flat.begin()),
                 std::make_move_iterator(flat.end()));
    }
  }
  return out;
}

std::size_t FakeGrpcUpstream::delivered_span_count() const {
  const std::lock_guard lock(state_->mutex);
  return state_->delivered;
}

bool FakeGrpcUpstream::wait_for_requests(std::size_t n, std::chrono::milliseconds timeout) const {
  std::unique_lock lock(state_->mutex);
  return state_->changed.wait_for(lock, timeout, [&] { return state_->calls.size() >= n; });
}

bool FakeGrpcUpstream::wait_for_spans(std::size_t n, std::chrono::milliseconds timeout) const {
  std::unique_lock lock(state_->mutex);
  return state_->changed.wait_for(lock, timeout, [&] { return state_->delivered >= n; });
}

}  // namespace it
