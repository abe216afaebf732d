#include "integration/grpc_client.hpp"

#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>
#include <grpcpp/support/byte_buffer.h>
#include <grpcpp/support/channel_arguments.h>

#include <future>
#include <vector>

#include <catch2/catch.hpp>

namespace it {

GrpcClient::GrpcClient(const std::string& target) {
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  args.SetMaxSendMessageSize(-1);
  channel_ = grpc::CreateCustomChannel(target, grpc::InsecureChannelCredentials(), args);
  stub_ = std::make_unique<grpc::GenericStub>(channel_);
}

GrpcReply GrpcClient::call(std::string_view message, grpc_compression_algorithm compression,
                           Millis timeout, std::string_view method) {
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + timeout);
  context.set_compression_algorithm(compression);
  grpc::Slice slice(message.data(), message.size());
  grpc::ByteBuffer request(&slice, 1);
  grpc::ByteBuffer response;
  std::promise<grpc::Status> done;
  auto status = done.get_future();
  stub_->UnaryCall(&context, std::string(method), grpc::StubOptions(), &request, &response,
                   [&done](grpc::Status s) { done.set_value(std::move(s)); });
  // gRPC ends every call by its deadline; the margin only guards against a hang inside gRPC.
  if (status.wait_for(timeout + 5s) != std::future_status::ready) {
    context.TryCancel();
  }
  GrpcReply reply;
  reply.status = status.get();
  std::vector<grpc::Slice> slices;
  if (reply.status.ok() && response.Dump(&slices).ok()) {
    for (const auto& s : slices) {
      reply.body.append(reinterpret_cast<const char*>(s.begin()), s.size());
    }
  }
  return reply;
}

void GrpcClient::require_exported(const ExportRequest& request,
                                  grpc_compression_algorithm compression) {
  const GrpcReply reply = call(request.SerializeAsString(), compression);
  INFO("gRPC status " << reply.status.error_code() << ": " << reply.status.error_message());
  REQUIRE(reply.status.ok());
  ExportResponse response;
  REQUIRE(response.ParseFromString(reply.body));
  CHECK(response.partial_success().rejected_spans() == 0);
}

}  // namespace it
