#include "otlp/json.hpp"

#include <algorithm>
#include <array>
#include <bit>
#include <charconv>
#include <climits>
#include <cmath>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <limits>
#include <new>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include <boost/json.hpp>
#include <boost/json/basic_parser_impl.hpp>
#include <google/protobuf/arena.h>

#include "common/base64.hpp"
#include "otlp/wire.hpp"
#include "opentelemetry/proto/collector/trace/v1/trace_service.pb.h"
#include "opentelemetry/proto/trace/v1/trace.pb.h"

namespace spanrelay::otlp {
namespace {

namespace json = boost::json;
namespace pb = google::protobuf;
namespace common = opentelemetry::proto::common::v1;
namespace resource = opentelemetry::proto::resource::v1;
namespace trace = opentelemetry::proto::trace::v1;
using opentelemetry::proto::collector::trace::v1::ExportTraceServiceRequest;

constexpr std::array<std::string_view, 6> span_kind_names = {
    "SPAN_KIND_UNSPECIFIED", "SPAN_KIND_INTERNAL", "SPAN_KIND_SERVER",
    "SPAN_KIND_CLIENT",      "SPAN_KIND_PRODUCER", "SPAN_KIND_CONSUMER"};
constexpr std::array<std::string_view, 3> status_code_names = {
    "STATUS_CODE_UNSET", "STATUS_CODE_OK", "STATUS_CODE_ERROR"};

constexpr char hex_digits[] = "0123456789abcdef";

// Base64 digit values for both the standard and the URL-safe alphabet; -1 for anything else.
constexpr std::array<std::int8_t, 256> base64_values = [] {
  std::array<std::int8_t, 256> t{};
  t.fill(-1);
  for (int i = 0; i < 64; ++i) {
    t[static_cast<unsigned char>(base64_digits[i])] = static_cast<std::int8_t>(i);
  }
  t['-'] = 62;
  t['_'] = 63;
  return t;
}();

int hex_value(char c) noexcept {
  if (c >= '0' && c <= '9') {
    return c - '0';
  }
  c = static_cast<char>(c | 0x20);  // ASCII lower case
  return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

template <class T>
void append_number(std::string& s, T v) {
  char buf[32];
  const auto r = std::to_chars(buf, buf + sizeof buf, v);
  s.append(buf, r.ptr);
}

void append_piece(std::string& s, std::string_view v) { s += v; }
void append_piece(std::string& s, std::integral auto v) { append_number(s, v); }

// True if `key` is the lowerCamelCase `camel` or its snake_case spelling (traceId, trace_id).
bool key_is(std::string_view key, std::string_view camel) noexcept {
  if (key.size() == camel.size()) {
    return key == camel;  // the snake spelling of a name with capitals is longer
  }
  std::size_t i = 0;
  for (const char c : camel) {
    const bool upper = c >= 'A' && c <= 'Z';
    if (upper) {
      if (i + 1 >= key.size() || key[i] != '_') {
        return false;
      }
      ++i;
    }
    if (i >= key.size() || key[i] != (upper ? static_cast<char>(c | 0x20) : c)) {
      return false;
    }
    ++i;
  }
  return i == key.size();
}

std::string_view view(json::string_view s) noexcept { return {s.data(), s.size()}; }

// ---- OTLP/JSON -> protobuf wire bytes, in one pass ----
//
// The parser's events drive a small schema of the OTLP trace messages, and each field is
// written as protobuf wire bytes the moment its value is read: no JSON tree and no protobuf
// objects are built, so converting a request costs its JSON text plus the protobuf output.
// A nested message is written as its tag, a length placeholder sized by a guess, and its
// fields; when it closes, the length is written (the content moves only when the guess was
// wrong). The first semantic error is kept and parsing goes on without output, so a syntax
// error anywhere in the document is reported first, as a tree-building parser would.

enum class Msg : std::uint8_t {
  kRequest, kResourceSpans, kResource, kScopeSpans, kScope, kSpan, kEvent, kLink, kStatus,
  kKeyValue, kAnyValue, kArrayValue, kKeyValueList, kEntityRef, kNone
};

enum class Kind : std::uint8_t {
  kMessage, kString, kTraceId, kSpanId, kParentSpanId, kBytes, kUint32, kInt64, kFixed32,
  kFixed64, kDouble, kBool, kSpanKind, kStatusCode
};

struct Field {
  std::string_view name;  // lowerCamelCase; the snake_case spelling is accepted too
  std::uint32_t number;
  Kind kind;
  bool repeated = false;
  Msg message = Msg::kNone;  // for kMessage
  bool always = false;       // written even at its default value (a member of a oneof)
};

// Field numbers: opentelemetry/proto/{trace,common,resource}/v1 (proto/ in this repository).
constexpr Field request_fields[] = {
    {"resourceSpans", 1, Kind::kMessage, true, Msg::kResourceSpans}};
constexpr Field resource_spans_fields[] = {
    {"resource", 1, Kind::kMessage, false, Msg::kResource},
    {"scopeSpans", 2, Kind::kMessage, true, Msg::kScopeSpans},
    {"schemaUrl", 3, Kind::kString}};
constexpr Field resource_fields[] = {
    {"attributes", 1, Kind::kMessage, true, Msg::kKeyValue},
    {"droppedAttributesCount", 2, Kind::kUint32},
    {"entityRefs", 3, Kind::kMessage, true, Msg::kEntityRef}};
constexpr Field scope_spans_fields[] = {
    {"scope", 1, Kind::kMessage, false, Msg::kScope},
    {"spans", 2, Kind::kMessage, true, Msg::kSpan},
    {"schemaUrl", 3, Kind::kString}};
constexpr Field scope_fields[] = {
    {"name", 1, Kind::kString},
    {"version", 2, Kind::kString},
    {"attributes", 3, Kind::kMessage, true, Msg::kKeyValue},
    {"droppedAttributesCount", 4, Kind::kUint32}};
constexpr Field span_fields[] = {
    {"traceId", 1, Kind::kTraceId},
    {"spanId", 2, Kind::kSpanId},
    {"traceState", 3, Kind::kString},
    {"parentSpanId", 4, Kind::kParentSpanId},
    {"flags", 16, Kind::kFixed32},
    {"name", 5, Kind::kString},
    {"kind", 6, Kind::kSpanKind},
    {"startTimeUnixNano", 7, Kind::kFixed64},
    {"endTimeUnixNano", 8, Kind::kFixed64},
    {"attributes", 9, Kind::kMessage, true, Msg::kKeyValue},
    {"droppedAttributesCount", 10, Kind::kUint32},
    {"events", 11, Kind::kMessage, true, Msg::kEvent},
    {"droppedEventsCount", 12, Kind::kUint32},
    {"links", 13, Kind::kMessage, true, Msg::kLink},
    {"droppedLinksCount", 14, Kind::kUint32},
    {"status", 15, Kind::kMessage, false, Msg::kStatus}};
constexpr Field event_fields[] = {
    {"timeUnixNano", 1, Kind::kFixed64},
    {"name", 2, Kind::kString},
    {"attributes", 3, Kind::kMessage, true, Msg::kKeyValue},
    {"droppedAttributesCount", 4, Kind::kUint32}};
constexpr Field link_fields[] = {
    {"traceId", 1, Kind::kTraceId},
    {"spanId", 2, Kind::kSpanId},
    {"traceState", 3, Kind::kString},
    {"attributes", 4, Kind::kMessage, true, Msg::kKeyValue},
    {"droppedAttributesCount", 5, Kind::kUint32},
    {"flags", 6, Kind::kFixed32}};
constexpr Field status_fields[] = {
    {"message", 2, Kind::kString},
    {"code", 3, Kind::kStatusCode}};
constexpr Field key_value_fields[] = {
    {"key", 1, Kind::kString},
    {"value", 2, Kind::kMessage, false, Msg::kAnyValue}};
constexpr Field any_value_fields[] = {
    {"stringValue", 1, Kind::kString, false, Msg::kNone, true},
    {"boolValue", 2, Kind::kBool, false, Msg::kNone, true},
    {"intValue", 3, Kind::kInt64, false, Msg::kNone, true},
    {"doubleValue", 4, Kind::kDouble, false, Msg::kNone, true},
    {"arrayValue", 5, Kind::kMessage, false, Msg::kArrayValue},
    {"kvlistValue", 6, Kind::kMessage, false, Msg::kKeyValueList},
    {"bytesValue", 7, Kind::kBytes, false, Msg::kNone, true}};
constexpr Field array_value_fields[] = {
    {"values", 1, Kind::kMessage, true, Msg::kAnyValue}};
constexpr Field key_value_list_fields[] = {
    {"values", 1, Kind::kMessage, true, Msg::kKeyValue}};
constexpr Field entity_ref_fields[] = {
    {"schemaUrl", 1, Kind::kString},
    {"type", 2, Kind::kString},
    {"idKeys", 3, Kind::kString, true},
    {"descriptionKeys", 4, Kind::kString, true}};

std::span<const Field> fields_of(Msg m) noexcept {
  switch (m) {
    case Msg::kRequest: return request_fields;
    case Msg::kResourceSpans: return resource_spans_fields;
    case Msg::kResource: return resource_fields;
    case Msg::kScopeSpans: return scope_spans_fields;
    case Msg::kScope: return scope_fields;
    case Msg::kSpan: return span_fields;
    case Msg::kEvent: return event_fields;
    case Msg::kLink: return link_fields;
    case Msg::kStatus: return status_fields;
    case Msg::kKeyValue: return key_value_fields;
    case Msg::kAnyValue: return any_value_fields;
    case Msg::kArrayValue: return array_value_fields;
    case Msg::kKeyValueList: return key_value_list_fields;
    case Msg::kEntityRef: return entity_ref_fields;
    case Msg::kNone: break;
  }
  return {};
}

// Bytes reserved for a message's length before its size is known: the usual size class, so
// that the content rarely has to move.
std::uint8_t length_guess(Msg m) noexcept {
  switch (m) {
    case Msg::kResourceSpans:
    case Msg::kScopeSpans:
      return 3;  // up to 2 MiB
    case Msg::kSpan:
    case Msg::kResource:
      return 2;  // up to 16 KiB
    default:
      return 1;  // up to 127 bytes
  }
}

// ---- protobuf wire writing ----
enum WireType : std::uint32_t { kVarint = 0, kI64 = 1, kLen = 2, kI32 = 5 };

void put_varint_at(char* p, std::uint64_t v) noexcept {
  while (v >= 0x80) {
    *p++ = static_cast<char>((v & 0x7f) | 0x80);
    v >>= 7;
  }
  *p = static_cast<char>(v);
}
void put_tag(std::string& out, std::uint32_t number, WireType type) {
  put_varint(out, (std::uint64_t{number} << 3) | type);
}
template <std::unsigned_integral T>
void put_fixed(std::string& out, T v) {
  char buf[sizeof(T)];
  for (std::size_t i = 0; i < sizeof(T); ++i) {
    buf[i] = static_cast<char>(v >> (8 * i));  // little-endian
  }
  out.append(buf, sizeof(T));
}

// One JSON value as the parser reported it.
struct Scalar {
  enum Type { kInt64, kUint64, kDouble, kString, kBool, kObject, kArray } type = kObject;
  std::int64_t i = 0;
  std::uint64_t u = 0;
  double d = 0;
  std::string_view s{};
  bool b = false;
};

// The events of boost::json::basic_parser -> protobuf wire bytes appended to `out`.
class wire_builder {
 public:
  static constexpr std::size_t max_object_size = std::numeric_limits<std::size_t>::max();
  static constexpr std::size_t max_array_size = std::numeric_limits<std::size_t>::max();
  static constexpr std::size_t max_key_size = std::numeric_limits<std::size_t>::max();
  static constexpr std::size_t max_string_size = std::numeric_limits<std::size_t>::max();

  wire_builder(std::string& out, std::string& error) : out_(out), error_(error) {}

  bool failed() const noexcept { return failed_; }

  bool on_document_begin(json::error_code&) { return true; }
  bool on_document_end(json::error_code&) { return true; }

  bool on_object_begin(json::error_code&) {
    if (begin_skipped()) {
      return true;
    }
    if (depth_ == 0) {
      push_object(Msg::kRequest, nullptr);
      return true;
    }
    const Field* f = current_field();
    if (f == nullptr) {
      ++skip_depth_;  // an unknown key's value: read and ignored
      return true;
    }
    if (f->kind != Kind::kMessage || (f->repeated && !top().array)) {
      scalar(*f, Scalar{.type = Scalar::kObject});
      return true;
    }
    push_object(f->message, f);
    return true;
  }

  bool on_object_end(std::size_t, json::error_code&) {
    if (end_skipped()) {
      return true;
    }
    Frame& done = top();
    if (done.length_reserved > 0) {
      close_length(done);
    }
    --depth_;
    --messages_;
    value_done();
    return true;
  }

  bool on_array_begin(json::error_code&) {
    if (begin_skipped()) {
      return true;
    }
    if (depth_ == 0) {
      fail_here("must be an object");
      return true;
    }
    const Field* f = current_field();
    if (f == nullptr) {
      ++skip_depth_;
      return true;
    }
    if (!f->repeated || top().array) {
      scalar(*f, Scalar{.type = Scalar::kArray});
      return true;
    }
    Frame& frame = push();
    frame.array = true;
    frame.field = f;
    frame.index = 0;
    return true;
  }

  bool on_array_end(std::size_t, json::error_code&) {
    if (end_skipped()) {
      return true;
    }
    --depth_;
    value_done();
    return true;
  }

  bool on_key_part(json::string_view s, std::size_t, json::error_code&) {
    if (!skipping()) {
      part_.append(s.data(), s.size());
    }
    return true;
  }

  bool on_key(json::string_view s, std::size_t, json::error_code&) {
    if (skipping()) {
      return true;
    }
    Frame& frame = top();
    if (part_.empty()) {
      frame.key.assign(s.data(), s.size());
    } else {
      part_.append(s.data(), s.size());
      frame.key.swap(part_);
      part_.clear();
    }
    frame.field = nullptr;
    for (const Field& f : fields_of(frame.message)) {
      if (key_is(frame.key, f.name)) {
        frame.field = &f;
        break;
      }
    }
    return true;
  }

  bool on_string_part(json::string_view s, std::size_t, json::error_code&) {
    if (!skipping() && depth_ > 0 && current_field() != nullptr) {
      part_.append(s.data(), s.size());
    }
    return true;
  }

  bool on_string(json::string_view s, std::size_t, json::error_code&) {
    if (part_.empty()) {
      return value(Scalar{.type = Scalar::kString, .s = view(s)});
    }
    part_.append(s.data(), s.size());
    const bool ok = value(Scalar{.type = Scalar::kString, .s = part_});
    part_.clear();
    return ok;
  }

  bool on_number_part(json::string_view, json::error_code&) { return true; }
  bool on_int64(std::int64_t v, json::string_view, json::error_code&) {
    return value(Scalar{.type = Scalar::kInt64, .i = v});
  }
  bool on_uint64(std::uint64_t v, json::string_view, json::error_code&) {
    return value(Scalar{.type = Scalar::kUint64, .u = v});
  }
  // Boost 1.81's own conversion is not correctly rounded (about one double in five comes out
  // one ulp off), so the text is converted again with std::from_chars. `text` is the whole
  // number because the input is written in one piece (more=false). On overflow from_chars
  // leaves `v` alone, so Boost's value (infinity) stays.
  bool on_double(double v, json::string_view text, json::error_code&) {
    std::from_chars(text.data(), text.data() + text.size(), v);
    return value(Scalar{.type = Scalar::kDouble, .d = v});
  }
  bool on_bool(bool v, json::error_code&) { return value(Scalar{.type = Scalar::kBool, .b = v}); }
  bool on_null(json::error_code&) {
    if (skipping()) {
      return true;
    }
    if (depth_ == 0) {
      fail_here("must be an object");
      return true;
    }
    if (top().array) {
      fail_here("null in array");
    }
    return true;  // null means unset
  }
  bool on_comment_part(json::string_view, json::error_code&) { return true; }
  bool on_comment(json::string_view, json::error_code&) { return true; }

 private:
  // An object being filled (members of `message`) or an array being read (elements of
  // `field`).
  struct Frame {
    bool array = false;
    Msg message = Msg::kNone;
    const Field* field = nullptr;  // object: the current member's field (nullptr: unknown key)
    std::string key;               // object: the current member's key as written
    std::size_t index = 0;         // array: elements read so far
    std::size_t length_at = 0;     // nested object: where its length placeholder starts
    std::uint8_t length_reserved = 0;
  };

  std::string& out_;
  std::string& error_;
  std::vector<Frame> frames_;  // reused: keys keep their capacity
  std::size_t depth_ = 0;      // frames in use
  std::size_t messages_ = 0;   // object frames in use: protobuf message nesting + 1
  std::size_t skip_depth_ = 0;
  std::string part_;           // a key or string the parser delivered in pieces
  bool failed_ = false;

  bool skipping() const noexcept { return failed_ || skip_depth_ > 0; }
  Frame& top() noexcept { return frames_[depth_ - 1]; }

  Frame& push() {
    if (depth_ == frames_.size()) {
      frames_.emplace_back();
    }
    Frame& frame = frames_[depth_++];
    frame.field = nullptr;
    frame.length_reserved = 0;
    return frame;
  }

  // The field the next value belongs to: the current key's, or the array's element field.
  const Field* current_field() noexcept { return top().field; }

  void push_object(Msg message, const Field* field) {
    // The request is depth 0. Deeper than the wire scanner accepts would only be refused by
    // the Intake next (and past 100, libprotobuf refuses it too).
    if (messages_ > static_cast<std::size_t>(max_message_depth)) {
      fail_here("message nesting deeper than ", max_message_depth);
      return;
    }
    ++messages_;
    std::size_t length_at = 0;
    std::uint8_t reserved = 0;
    if (field != nullptr) {
      put_tag(out_, field->number, kLen);
      length_at = out_.size();
      reserved = length_guess(message);
      out_.append(reserved, '\0');
    }
    Frame& frame = push();
    frame.array = false;
    frame.message = message;
    frame.length_at = length_at;
    frame.length_reserved = reserved;
  }

  // Writes the finished message's length into its placeholder.
  void close_length(const Frame& frame) {
    const std::size_t content = frame.length_at + frame.length_reserved;
    const std::size_t length = out_.size() - content;
    const std::size_t needed = varint_size(length);
    if (needed > frame.length_reserved) {
      out_.insert(content, needed - frame.length_reserved, '\0');
    } else if (needed < frame.length_reserved) {
      out_.erase(frame.length_at + needed, frame.length_reserved - needed);
    }
    put_varint_at(out_.data() + frame.length_at, length);
  }

  // A container opens inside a value being skipped (or after an error): true if so.
  bool begin_skipped() noexcept {
    if (failed_) {
      return true;
    }
    if (skip_depth_ > 0) {
      ++skip_depth_;
      return true;
    }
    return false;
  }

  // A container closes inside a value being skipped (or after an error): true if so.
  bool end_skipped() noexcept {
    if (failed_) {
      return true;
    }
    if (skip_depth_ == 0) {
      return false;
    }
    if (--skip_depth_ == 0) {
      value_done();
    }
    return true;
  }

  // A value was read whole: an array moves on to its next element.
  void value_done() noexcept {
    if (depth_ > 0 && top().array) {
      ++top().index;
    }
  }

  bool value(const Scalar& v) {
    if (skipping()) {
      return true;
    }
    if (depth_ == 0) {
      return fail_here("must be an object");
    }
    const Field* f = current_field();
    if (f == nullptr) {
      return true;  // an unknown key's value
    }
    if (f->repeated && !top().array) {
      return fail_here("must be an array");
    }
    if (!scalar(*f, v)) {
      return true;  // failed: the error is kept, parsing goes on
    }
    value_done();
    return true;
  }

  // Checks and writes one value of field f (an object or array here is a type error).
  bool scalar(const Field& f, const Scalar& v) {
    const bool element = top().array;
    switch (f.kind) {
      case Kind::kMessage:
        return fail_here(f.repeated && !element ? "must be an array" : "must be an object");
      case Kind::kString:
        if (v.type != Scalar::kString) {
          return fail_here(f.repeated && !element ? "must be an array" : "must be a string");
        }
        if (!v.s.empty() || f.always || element) {
          put_tag(out_, f.number, kLen);
          put_varint(out_, v.s.size());
          out_.append(v.s);
        }
        return true;
      case Kind::kTraceId:
        return id(f, v, 16, false);
      case Kind::kSpanId:
        return id(f, v, 8, false);
      case Kind::kParentSpanId:
        return id(f, v, 8, true);
      case Kind::kBytes:
        return base64(f, v);
      case Kind::kUint32: {
        std::uint32_t x = 0;
        if (!integer(v, x)) {
          return false;
        }
        if (x != 0) {
          put_tag(out_, f.number, kVarint);
          put_varint(out_, x);
        }
        return true;
      }
      case Kind::kInt64: {
        std::int64_t x = 0;
        if (!integer(v, x)) {
          return false;
        }
        put_tag(out_, f.number, kVarint);
        put_varint(out_, static_cast<std::uint64_t>(x));
        return true;
      }
      case Kind::kFixed32: {
        std::uint32_t x = 0;
        if (!integer(v, x)) {
          return false;
        }
        if (x != 0) {
          put_tag(out_, f.number, kI32);
          put_fixed(out_, x);
        }
        return true;
      }
      case Kind::kFixed64: {
        std::uint64_t x = 0;
        if (!integer(v, x)) {
          return false;
        }
        if (x != 0) {
          put_tag(out_, f.number, kI64);
          put_fixed(out_, x);
        }
        return true;
      }
      case Kind::kDouble: {
        double x = 0;
        if (!number(v, x)) {
          return false;
        }
        put_tag(out_, f.number, kI64);
        put_fixed(out_, std::bit_cast<std::uint64_t>(x));
        return true;
      }
      case Kind::kBool:
        if (v.type != Scalar::kBool) {
          return fail_here("must be true or false");
        }
        put_tag(out_, f.number, kVarint);
        out_ += v.b ? '\1' : '\0';
        return true;
      case Kind::kSpanKind:
        return enumeration(f, v, span_kind_names);
      case Kind::kStatusCode:
        return enumeration(f, v, status_code_names);
    }
    return fail_here("unexpected field");
  }

  // Integers are JSON numbers (integral, in range) or decimal strings.
  template <std::integral T>
  bool integer(const Scalar& v, T& out) {
    switch (v.type) {
      case Scalar::kInt64:
        if (std::in_range<T>(v.i)) {
          out = static_cast<T>(v.i);
          return true;
        }
        return fail_here("out of range");
      case Scalar::kUint64:
        if (std::in_range<T>(v.u)) {
          out = static_cast<T>(v.u);
          return true;
        }
        return fail_here("out of range");
      case Scalar::kDouble: {
        if (std::trunc(v.d) != v.d) {
          return fail_here("must be an integer");
        }
        // 2^digits: the first value above the range of T.
        constexpr double limit =
            2.0 * static_cast<double>(std::uint64_t{1} << (std::numeric_limits<T>::digits - 1));
        if (v.d < (std::is_signed_v<T> ? -limit : 0.0) || v.d >= limit) {
          return fail_here("out of range");
        }
        out = static_cast<T>(v.d);
        return true;
      }
      case Scalar::kString: {
        const auto r = std::from_chars(v.s.data(), v.s.data() + v.s.size(), out);
        if (r.ec == std::errc::result_out_of_range) {
          return fail_here("out of range");
        }
        if (r.ec != std::errc{} || r.ptr != v.s.data() + v.s.size()) {
          return fail_here("must be an integer");
        }
        return true;
      }
      default:
        return fail_here("must be an integer (number or decimal string)");
    }
  }

  // A number, "NaN", "Infinity", "-Infinity" or a numeric string.
  bool number(const Scalar& v, double& out) {
    switch (v.type) {
      case Scalar::kInt64:
        out = static_cast<double>(v.i);
        return true;
      case Scalar::kUint64:
        out = static_cast<double>(v.u);
        return true;
      case Scalar::kDouble:
        out = v.d;
        return true;
      case Scalar::kString: {
        if (v.s == "NaN") {
          out = std::numeric_limits<double>::quiet_NaN();
          return true;
        }
        if (v.s == "Infinity" || v.s == "-Infinity") {
          out = v.s[0] == '-' ? -HUGE_VAL : HUGE_VAL;
          return true;
        }
        const auto r = std::from_chars(v.s.data(), v.s.data() + v.s.size(), out);
        if (r.ec == std::errc{} && r.ptr == v.s.data() + v.s.size()) {
          return true;
        }
        break;
      }
      default:
        break;
    }
    return fail_here("must be a number");
  }

  // Enums are integers (unknown values kept: proto3 enums are open) or value names.
  bool enumeration(const Field& f, const Scalar& v, std::span<const std::string_view> names) {
    std::int32_t x = 0;
    bool named = false;
    if (v.type == Scalar::kString) {
      for (std::size_t i = 0; i < names.size(); ++i) {
        if (v.s == names[i]) {
          x = static_cast<std::int32_t>(i);
          named = true;
          break;
        }
      }
    }
    if (!named && !integer(v, x)) {
      return fail_again("must be an integer or a name like ", names[1]);
    }
    if (x != 0) {
      put_tag(out_, f.number, kVarint);
      put_varint(out_, static_cast<std::uint64_t>(static_cast<std::int64_t>(x)));
    }
    return true;
  }

  // A hex trace id (16 bytes) or span id (8 bytes), not all zero. An optional id (the parent
  // span id) may be empty; all zeros there also means "no parent", as in the collector.
  bool id(const Field& f, const Scalar& v, std::size_t size, bool optional) {
    if (v.type != Scalar::kString) {
      return fail_here("must be a hex string");
    }
    const std::string_view s = v.s;
    if (optional && s.empty()) {
      return true;
    }
    if (s.size() != 2 * size) {
      return fail_here("must be ", 2 * size, " hex digits, got ", s.size());
    }
    char bytes[16];
    char any = 0;
    for (std::size_t i = 0; i < size; ++i) {
      const int hi = hex_value(s[2 * i]);
      const int lo = hex_value(s[2 * i + 1]);
      if (hi < 0 || lo < 0) {
        return fail_here("not a hex digit at offset ", 2 * i + (hi < 0 ? 0 : 1));
      }
      bytes[i] = static_cast<char>((hi << 4) | lo);
      any |= bytes[i];
    }
    if (any == 0) {
      return optional ? true : fail_here("must not be all zeros");
    }
    put_tag(out_, f.number, kLen);
    put_varint(out_, size);
    out_.append(bytes, size);
    return true;
  }

  // Standard or URL-safe base64, padded or not.
  bool base64(const Field& f, const Scalar& v) {
    if (v.type != Scalar::kString) {
      return fail_here("must be a base64 string");
    }
    std::string_view s = v.s;
    const bool padded = !s.empty() && s.back() == '=';
    while (!s.empty() && s.back() == '=' && v.s.size() - s.size() < 2) {
      s.remove_suffix(1);
    }
    if ((padded && v.s.size() % 4 != 0) || s.size() % 4 == 1) {
      return fail_here("invalid base64 length");
    }
    const std::size_t size = s.size() / 4 * 3 + (s.size() % 4 == 0 ? 0 : s.size() % 4 - 1);
    for (std::size_t i = 0; i < s.size(); ++i) {
      if (base64_values[static_cast<unsigned char>(s[i])] < 0) {
        return fail_here("invalid base64 character at offset ", i);
      }
    }
    put_tag(out_, f.number, kLen);
    put_varint(out_, size);
    std::uint32_t bits = 0;
    for (std::size_t i = 0; i < s.size(); ++i) {
      bits = (bits << 6) | static_cast<std::uint32_t>(base64_values[static_cast<unsigned char>(s[i])]);
      if (i % 4 == 3 || i + 1 == s.size()) {
        // A group of 2..4 digits holds 1..3 bytes, left-aligned in 24 bits.
        const std::size_t digits = i % 4 + 1;
        bits <<= 6 * (4 - digits);
        for (std::size_t b = 0; b + 1 < digits; ++b) {
          out_ += static_cast<char>(bits >> (16 - 8 * b));
        }
        bits = 0;
      }
    }
    return true;
  }

  // Keeps the first error, "<path of the value being read>: <pieces...>", and turns the rest
  // of the document into a syntax check. Returns false (the value was not written).
  template <class... Pieces>
  bool fail_here(const Pieces&... pieces) {
    if (failed_) {
      return false;
    }
    failed_ = true;
    error_.clear();
    write_path();
    error_ += ": ";
    (append_piece(error_, pieces), ...);
    return false;
  }

  // Replaces the error just written for the same value by a more helpful one.
  template <class... Pieces>
  bool fail_again(const Pieces&... pieces) {
    failed_ = false;
    return fail_here(pieces...);
  }

  void write_path() {
    if (depth_ == 0) {
      error_ += "request body";
      return;
    }
    bool first = true;
    for (std::size_t i = 0; i < depth_; ++i) {
      const Frame& frame = frames_[i];
      if (frame.array) {
        error_ += '[';
        append_number(error_, frame.index);
        error_ += ']';
      } else {
        if (!first) {
          error_ += '.';
        }
        error_ += frame.key;
      }
      first = false;
    }
  }
};

// Writes one line of OTLP/JSON. Fields at their default value are omitted (proto3 style);
// set sub-messages and the set member of an AnyValue are always written, so that the output
// reads back into an equal message.
class writer {
 public:
  explicit writer(std::string& out) : out_(out) {}

  void request(const ExportTraceServiceRequest& m) {
    open('{');
    array("resourceSpans", m.resource_spans(), &writer::resource_spans);
    close('}');
  }

 private:
  std::string& out_;
  bool first_ = true;  // no member or element written yet in the innermost object/array

  void open(char c) {
    out_ += c;
    first_ = true;
  }
  void close(char c) {
    out_ += c;
    first_ = false;
  }
  void separator() {
    if (!first_) {
      out_ += ',';
    }
    first_ = false;
  }
  void key(std::string_view k) {
    separator();
    out_ += '"';
    out_ += k;
    out_ += "\":";
  }

  void quoted(std::string_view s) {
    out_ += '"';
    std::size_t done = 0;
    for (std::size_t i = 0; i < s.size(); ++i) {
      const auto c = static_cast<unsigned char>(s[i]);
      if (c >= 0x20 && c != '"' && c != '\\') {
        continue;
      }
      out_.append(s.data() + done, i - done);
      done = i + 1;
      out_ += '\\';
      switch (c) {
        case '"':
        case '\\':
          out_ += static_cast<char>(c);
          break;
        case '\n':
          out_ += 'n';
          break;
        case '\r':
          out_ += 'r';
          break;
        case '\t':
          out_ += 't';
          break;
        default:
          out_ += "u00";
          out_ += hex_digits[c >> 4];
          out_ += hex_digits[c & 15];
      }
    }
    out_.append(s.data() + done, s.size() - done);
    out_ += '"';
  }
  // Element writer for repeated strings.
  void quoted_element(const std::string& s) { quoted(s); }

  void string(std::string_view k, std::string_view v) {
    if (!v.empty()) {
      key(k);
      quoted(v);
    }
  }
  void number(std::string_view k, std::integral auto v) {
    if (v != 0) {
      key(k);
      append_number(out_, v);
    }
  }
  // 64-bit integers are strings: JSON readers often keep numbers as doubles (53 bits).
  void string_number(std::string_view k, std::integral auto v) {
    key(k);
    out_ += '"';
    append_number(out_, v);
    out_ += '"';
  }
  void time(std::string_view k, std::uint64_t v) {
    if (v != 0) {
      string_number(k, v);
    }
  }
  void hex(std::string_view k, std::string_view bytes) {
    if (bytes.empty()) {
      return;
    }
    key(k);
    out_ += '"';
    for (const char b : bytes) {
      out_ += hex_digits[static_cast<unsigned char>(b) >> 4];
      out_ += hex_digits[b & 15];
    }
    out_ += '"';
  }
  void base64(std::string_view bytes) {
    out_ += '"';
    base64_append(out_, bytes);
    out_ += '"';
  }
  void double_value(double v) {
    if (std::isnan(v)) {
      out_ += "\"NaN\"";
    } else if (std::isinf(v)) {
      out_ += v < 0 ? "\"-Infinity\"" : "\"Infinity\"";
    } else if (v == 0 && std::signbit(v)) {
      out_ += "-0.0";  // "-0" would read back as the integer 0
    } else {
      append_number(out_, v);  // shortest text that reads back as the same double
    }
  }

  template <class T>
  void array(std::string_view k, const pb::RepeatedPtrField<T>& items,
             void (writer::*write)(const T&)) {
    if (items.empty()) {
      return;
    }
    key(k);
    open('[');
    for (const auto& item : items) {
      separator();
      (this->*write)(item);
    }
    close(']');
  }

  template <class M>
  void attributes(const M& m) {
    array("attributes", m.attributes(), &writer::key_value);
    number("droppedAttributesCount", m.dropped_attributes_count());
  }

  void any_value(const common::AnyValue& m) {
    open('{');
    switch (m.value_case()) {
      case common::AnyValue::kStringValue:
        key("stringValue");
        quoted(m.string_value());
        break;
      case common::AnyValue::kBoolValue:
        key("boolValue");
        out_ += m.bool_value() ? "true" : "false";
        break;
      case common::AnyValue::kIntValue:
        string_number("intValue", m.int_value());
        break;
      case common::AnyValue::kDoubleValue:
        key("doubleValue");
        double_value(m.double_value());
        break;
      case common::AnyValue::kArrayValue:
        key("arrayValue");
        open('{');
        array("values", m.array_value().values(), &writer::any_value);
        close('}');
        break;
      case common::AnyValue::kKvlistValue:
        key("kvlistValue");
        open('{');
        array("values", m.kvlist_value().values(), &writer::key_value);
        close('}');
        break;
      case common::AnyValue::kBytesValue:
        key("bytesValue");
        base64(m.bytes_value());
        break;
      case common::AnyValue::VALUE_NOT_SET:
        break;
    }
    close('}');
  }

  void key_value(const common::KeyValue& m) {
    open('{');
    string("key", m.key());
    if (m.has_value()) {
      key("value");
      any_value(m.value());
    }
    close('}');
  }

  void entity_ref(const common::EntityRef& m) {
    open('{');
    string("schemaUrl", m.schema_url());
    string("type", m.type());
    array("idKeys", m.id_keys(), &writer::quoted_element);
    array("descriptionKeys", m.description_keys(), &writer::quoted_element);
    close('}');
  }

  void resource(const resource::Resource& m) {
    open('{');
    attributes(m);
    array("entityRefs", m.entity_refs(), &writer::entity_ref);
    close('}');
  }

  void scope(const common::InstrumentationScope& m) {
    open('{');
    string("name", m.name());
    string("version", m.version());
    attributes(m);
    close('}');
  }

  void event(const trace::Span::Event& m) {
    open('{');
    time("timeUnixNano", m.time_unix_nano());
    string("name", m.name());
    attributes(m);
    close('}');
  }

  void link(const trace::Span::Link& m) {
    open('{');
    hex("traceId", m.trace_id());
    hex("spanId", m.span_id());
    string("traceState", m.trace_state());
    attributes(m);
    number("flags", m.flags());
    close('}');
  }

  void span(const trace::Span& m) {
    open('{');
    hex("traceId", m.trace_id());
    hex("spanId", m.span_id());
    string("traceState", m.trace_state());
    hex("parentSpanId", m.parent_span_id());
    number("flags", m.flags());
    string("name", m.name());
    number("kind", static_cast<int>(m.kind()));
    time("startTimeUnixNano", m.start_time_unix_nano());
    time("endTimeUnixNano", m.end_time_unix_nano());
    attributes(m);
    array("events", m.events(), &writer::event);
    number("droppedEventsCount", m.dropped_events_count());
    array("links", m.links(), &writer::link);
    number("droppedLinksCount", m.dropped_links_count());
    if (m.has_status()) {
      key("status");
      open('{');
      string("message", m.status().message());
      number("code", static_cast<int>(m.status().code()));
      close('}');
    }
    close('}');
  }

  void scope_spans(const trace::ScopeSpans& m) {
    open('{');
    if (m.has_scope()) {
      key("scope");
      scope(m.scope());
    }
    array("spans", m.spans(), &writer::span);
    string("schemaUrl", m.schema_url());
    close('}');
  }

  void resource_spans(const trace::ResourceSpans& m) {
    open('{');
    if (m.has_resource()) {
      key("resource");
      resource(m.resource());
    }
    array("scopeSpans", m.scope_spans(), &writer::scope_spans);
    string("schemaUrl", m.schema_url());
    close('}');
  }
};

// Reports an exception without throwing again (assigning a message may itself need memory).
void report(std::string& error, const char* what) noexcept {
  try {
    error = what;
  } catch (...) {
    error.clear();
  }
}

}  // namespace

bool json_to_protobuf(std::string_view text, std::string& out, std::string& error) noexcept {
  const std::size_t old_size = out.size();
  try {
    // The protobuf form is smaller than its JSON text: one reservation, and pages are only
    // touched as they are written.
    out.reserve(old_size + text.size());
    json::parse_options options;
    options.max_depth = max_json_depth;
    std::string semantic_error;
    json::basic_parser<wire_builder> parser(options, out, semantic_error);
    json::error_code ec;
    const std::size_t used = parser.write_some(false, text.data(), text.size(), ec);
    if (!ec && used < text.size()) {
      ec = json::error::extra_data;
    }
    if (ec) {
      error.clear();
      error += "invalid JSON at offset ";
      append_number(error, used);
      error += ": ";
      error += ec.message();
    } else if (parser.handler().failed()) {
      error = std::move(semantic_error);
    } else {
      return true;
    }
  } catch (const std::bad_alloc&) {
    report(error, "out of memory");
  } catch (const std::exception& e) {
    report(error, e.what());
  } catch (...) {
    report(error, "unknown error");
  }
  out.resize(std::min(out.size(), old_size));
  return false;
}

bool protobuf_to_json(std::string_view protobuf, std::string& out, std::string& error) noexcept {
  const std::size_t old_size = out.size();
  try {
    pb::Arena arena;
    auto* request = pb::Arena::CreateMessage<ExportTraceServiceRequest>(&arena);
    if (protobuf.size() > INT_MAX ||
        !request->ParseFromArray(protobuf.data(), static_cast<int>(protobuf.size()))) {
      report(error, "invalid protobuf ExportTraceServiceRequest");
      return false;
    }
    out.reserve(old_size + protobuf.size() * 2);
    writer(out).request(*request);
    return true;
  } catch (const std::bad_alloc&) {
    report(error, "out of memory");
  } catch (const std::exception& e) {
    report(error, e.what());
  } catch (...) {
    report(error, "unknown error");
  }
  out.resize(std::min(out.size(), old_size));
  return false;
}

}  // namespace spanrelay::otlp
