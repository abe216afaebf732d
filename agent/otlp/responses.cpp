#include "otlp/responses.hpp"

#include <boost/json/serialize.hpp>
#include <boost/json/string.hpp>

#include "opentelemetry/proto/collector/trace/v1/trace_service.pb.h"
#include "otlp/wire.hpp"

namespace spanrelay::otlp {

std::string export_response(Encoding enc, std::int64_t rejected_spans, std::string_view message) {
  if (enc == Encoding::kJson) {
    if (rejected_spans <= 0) {
      return "{}";
    }
    return "{\"partialSuccess\":{\"rejectedSpans\":\"" + std::to_string(rejected_spans) +
           "\",\"errorMessage\":" + boost::json::serialize(boost::json::string(message)) + "}}";
  }
  if (rejected_spans <= 0) {
    return {};
  }
  std::string partial;
  put_varint_field(partial, 1, static_cast<std::uint64_t>(rejected_spans));
  put_len_field(partial, 2, message);
  std::string out;
  put_len_field(out, 1, partial);
  return out;
}

std::string status_body(Encoding enc, Code code, std::string_view message) {
  if (enc == Encoding::kJson) {
    return "{\"code\":" + std::to_string(static_cast<int>(code)) +
           ",\"message\":" + boost::json::serialize(boost::json::string(message)) + "}";
  }
  std::string out;
  put_varint_field(out, 1, static_cast<std::uint64_t>(static_cast<std::int32_t>(code)));
  put_len_field(out, 2, message);
  return out;
}

bool parse_export_response(std::string_view body, std::int64_t& rejected, std::string& message) {
  opentelemetry::proto::collector::trace::v1::ExportTraceServiceResponse resp;
  if (!resp.ParseFromArray(body.data(), static_cast<int>(body.size()))) {
    return false;
  }
  rejected = resp.partial_success().rejected_spans();
  message = resp.partial_success().error_message();
  return true;
}

}  // namespace spanrelay::otlp
