#include "receivers/http/otlp_http_receiver.hpp"

#include <algorithm>
#include <cctype>

#include <boost/algorithm/string/predicate.hpp>
#include <boost/algorithm/string/trim.hpp>

#include "otlp/compression.hpp"
#include "otlp/json.hpp"
#include "otlp/responses.hpp"

namespace spanrelay::http {
namespace {

using otlp::Code;
using otlp::Encoding;
using beast_http::status;

constexpr std::string_view kProtobufType = "application/x-protobuf";
constexpr std::string_view kJsonType = "application/json";

// The media type without parameters, lower-cased ("Application/JSON; charset=utf-8" -> json).
std::string media_type(std::string_view content_type) {
  std::string t(content_type.substr(0, content_type.find(';')));
  boost::algorithm::trim(t);
  for (char& c : t) {
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  }
  return t;
}

Response reply(status st, Encoding enc, std::string body) {
  Response res{st, 11};
  res.set(beast_http::field::content_type, enc == Encoding::kJson ? kJsonType : kProtobufType);
  res.body() = std::move(body);
  return res;
}

Response error(status st, Encoding enc, Code code, std::string_view message) {
  return reply(st, enc, otlp::status_body(enc, code, message));
}

// The Host header as the client wrote it ("spanrelay:4318"), for a hint the user can paste; a
// placeholder when it is missing or has characters no host:port has.
std::string host_for_hint(std::string_view host) {
  const bool plausible =
      !host.empty() && host.size() <= 255 && std::all_of(host.begin(), host.end(), [](char c) {
        return std::isalnum(static_cast<unsigned char>(c)) != 0 || c == '.' || c == '-' ||
               c == '_' || c == ':' || c == '[' || c == ']';
      });
  return plausible ? std::string(host) : std::string("<host>:<port>");
}

// The 404 for another OTLP signal: SDKs configured with OTEL_EXPORTER_OTLP_ENDPOINT send all
// three signals to the same base URL, and only traces belong here.
std::string other_signal_message(std::string_view target, std::string_view host) {
  return std::string(target) +
         ": spanrelay forwards traces only (POST /v1/traces); point just the traces exporter "
         "here: OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=http://" +
         host_for_hint(host) +
         "/v1/traces, and send metrics and logs elsewhere (or turn them off: "
         "OTEL_METRICS_EXPORTER=none OTEL_LOGS_EXPORTER=none)";
}

}  // namespace

OtlpHttpReceiver::OtlpHttpReceiver(boost::asio::io_context& ioc,
                                   const config::HttpReceiver& options, Intake& intake)
    : options_(options), intake_(intake),
      server_(ioc, "receiver.http", options.endpoint,
              ServerLimits{
                  .max_connections = options.max_connections,
                  .max_header_bytes = options.max_header_bytes,
                  // A compressed body is checked again after decompression; allow the small
                  // growth that incompressible data gets from gzip framing.
                  .max_body_bytes = options.max_request_bytes + options.max_request_bytes / 64 + 1024,
                  .read_timeout = options.read_timeout,
                  .idle_timeout = options.idle_timeout,
              },
              [this](Request& req, RequestProblem problem, const std::string& peer) {
                return timed(req, problem, peer);
              }),
      log_(logger("receiver.http")) {}

// handle(), timed for the histogram; refusals are logged at debug level with their reason.
Response OtlpHttpReceiver::timed(Request& req, RequestProblem problem,
                                 const std::string& peer) {
  const auto started = std::chrono::steady_clock::now();
  Response res = handle(req, problem);
  intake_.stats().http_duration.observe(std::chrono::steady_clock::now() - started);
  if (res.result() != status::ok && log_->should_log(spdlog::level::debug)) {
    std::string reason = res[beast_http::field::content_type] == kJsonType
                             ? res.body().substr(0, 200)
                             : std::string(res.reason());
    log_->debug("refused {} {} from {}: {} {}", std::string(req.method_string()),
                std::string(req.target().substr(0, 100)), peer, res.result_int(), reason);
  }
  return res;
}

Response OtlpHttpReceiver::handle(Request& req, RequestProblem problem) {
  ReceiverStats& stats = intake_.stats();
  add(stats.requests);
  const std::string type = media_type(req[beast_http::field::content_type]);
  // Protobuf answers only a protobuf request. JSON, a missing or an unknown Content-Type (curl,
  // a browser, a person) gets its errors as JSON google.rpc.Status, readable as it is.
  const Encoding enc = type == kProtobufType ? Encoding::kProtobuf : Encoding::kJson;
  auto bad = [&](status st, Code code, std::string_view message) {
    add(stats.bad_requests);
    return error(st, enc, code, message);
  };

  std::string_view target = req.target();
  target = target.substr(0, target.find('?'));
  if (target == "/v1/metrics" || target == "/v1/logs") {
    return bad(status::not_found, Code::kNotFound,
               other_signal_message(target, req[beast_http::field::host]));
  }
  if (target != "/v1/traces") {
    return bad(status::not_found, Code::kNotFound,
               "unknown path " + std::string(target) + ": traces are accepted at /v1/traces");
  }
  if (req.method() != beast_http::verb::post) {
    Response res = bad(status::method_not_allowed, Code::kUnimplemented,
                       "method " + std::string(req.method_string()) + " not allowed: use POST");
    res.set(beast_http::field::allow, "POST");
    return res;
  }
  if (type != kJsonType && type != kProtobufType) {
    return bad(status::unsupported_media_type, Code::kInvalidArgument,
               "unsupported content type \"" + std::string(req[beast_http::field::content_type]) +
                   "\": use application/x-protobuf or application/json");
  }
  if (intake_.closed()) {
    add(stats.unavailable);
    Response res = error(status::service_unavailable, enc, Code::kUnavailable,
                         "spanrelay is shutting down");
    res.set(beast_http::field::retry_after, "1");
    return res;
  }
  const std::string too_large = "request body larger than " +
                                std::to_string(options_.max_request_bytes) +
                                " bytes (receivers.http.max_request_bytes)";
  if (problem == RequestProblem::kBodyTooLarge) {
    return bad(status::payload_too_large, Code::kResourceExhausted, too_large);
  }

  std::string body = std::move(req.body());
  std::string encoding = media_type(req[beast_http::field::content_encoding]);
  if (encoding == "gzip" || encoding == "x-gzip" || encoding == "deflate") {
    std::string plain;
    switch (otlp::inflate_limited(body, encoding == "deflate", options_.max_request_bytes,
                                  plain)) {
      case otlp::InflateStatus::kOk:
        body = std::move(plain);
        break;
      case otlp::InflateStatus::kTooLarge:
        return bad(status::payload_too_large, Code::kResourceExhausted,
                   too_large + " after decompression");
      case otlp::InflateStatus::kCorrupt:
        return bad(status::bad_request, Code::kInvalidArgument,
                   "body is not valid " + encoding + " data");
    }
  } else if (!encoding.empty() && encoding != "identity") {
    return bad(status::unsupported_media_type, Code::kInvalidArgument,
               "unsupported content encoding \"" + encoding + "\": use gzip, deflate or identity");
  }
  if (body.size() > options_.max_request_bytes) {
    return bad(status::payload_too_large, Code::kResourceExhausted, too_large);
  }

  if (enc == Encoding::kJson) {
    std::string protobuf, why;
    if (!otlp::json_to_protobuf(body, protobuf, why)) {
      return bad(status::bad_request, Code::kInvalidArgument, "invalid OTLP/JSON: " + why);
    }
    body = std::move(protobuf);
  }

  IntakeResult result = intake_.submit(std::move(body));
  switch (result.status) {
    case IntakeStatus::kAccepted:
      return reply(status::ok, enc,
                   otlp::export_response(enc, result.rejected_spans, result.error));
    case IntakeStatus::kInvalid:
      return error(status::bad_request, enc, Code::kInvalidArgument,
                   "invalid OTLP protobuf: " + result.error);
    case IntakeStatus::kFull: {
      Response res = error(status::too_many_requests, enc, Code::kResourceExhausted,
                           "spanrelay buffer is full; retry later");
      res.set(beast_http::field::retry_after, "1");
      return res;
    }
    case IntakeStatus::kTooLarge:
      return error(status::payload_too_large, enc, Code::kResourceExhausted, result.error);
    case IntakeStatus::kShuttingDown: {
      Response res = error(status::service_unavailable, enc, Code::kUnavailable,
                           "spanrelay is shutting down");
      res.set(beast_http::field::retry_after, "1");
      return res;
    }
  }
  return error(status::internal_server_error, enc, Code::kInternal, "unexpected state");
}

}  // namespace spanrelay::http
