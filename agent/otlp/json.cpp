#include "otlp/json.hpp"

#include <algorithm>
#include <array>
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

#include <boost/json.hpp>
#include <boost/json/basic_parser_impl.hpp>
#include <google/protobuf/arena.h>

#include "common/base64.hpp"
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

// Builds the value tree exactly like boost::json::parser, except that floating-point numbers
// are converted with std::from_chars: Boost 1.81's own conversion is not correctly rounded
// (about one double in five comes out one ulp off), which would alter doubleValue attributes.
struct tree_builder {
  static constexpr std::size_t max_object_size = json::object::max_size();
  static constexpr std::size_t max_array_size = json::array::max_size();
  static constexpr std::size_t max_key_size = json::string::max_size();
  static constexpr std::size_t max_string_size = json::string::max_size();

  json::value_stack st;

  template <class... Args>
  explicit tree_builder(Args&&... args) : st(std::forward<Args>(args)...) {}

  bool on_document_begin(json::error_code&) { return true; }
  bool on_document_end(json::error_code&) { return true; }
  bool on_object_begin(json::error_code&) { return true; }
  bool on_object_end(std::size_t n, json::error_code&) {
    st.push_object(n);
    return true;
  }
  bool on_array_begin(json::error_code&) { return true; }
  bool on_array_end(std::size_t n, json::error_code&) {
    st.push_array(n);
    return true;
  }
  bool on_key_part(json::string_view s, std::size_t, json::error_code&) {
    st.push_chars(s);
    return true;
  }
  bool on_key(json::string_view s, std::size_t, json::error_code&) {
    st.push_key(s);
    return true;
  }
  bool on_string_part(json::string_view s, std::size_t, json::error_code&) {
    st.push_chars(s);
    return true;
  }
  bool on_string(json::string_view s, std::size_t, json::error_code&) {
    st.push_string(s);
    return true;
  }
  bool on_number_part(json::string_view, json::error_code&) { return true; }
  bool on_int64(std::int64_t v, json::string_view, json::error_code&) {
    st.push_int64(v);
    return true;
  }
  bool on_uint64(std::uint64_t v, json::string_view, json::error_code&) {
    st.push_uint64(v);
    return true;
  }
  // `text` is the whole number because the input is always written in one piece (more=false).
  // On overflow from_chars leaves `v` alone, so Boost's value (infinity) stays.
  bool on_double(double v, json::string_view text, json::error_code&) {
    std::from_chars(text.data(), text.data() + text.size(), v);
    st.push_double(v);
    return true;
  }
  bool on_bool(bool v, json::error_code&) {
    st.push_bool(v);
    return true;
  }
  bool on_null(json::error_code&) {
    st.push_null();
    return true;
  }
  bool on_comment_part(json::string_view, json::error_code&) { return true; }
  bool on_comment(json::string_view, json::error_code&) { return true; }
};

// One step of the path to the value being read, linked to its parent on the stack, so that
// paths cost nothing unless an error message is written.
struct path {
  const path* parent;
  std::string_view key;  // empty for an array element
  std::size_t index;
};

void append_path(std::string& s, const path* p) {
  if (p->parent != nullptr) {
    append_path(s, p->parent);
  }
  if (p->key.empty()) {
    s += '[';
    append_number(s, p->index);
    s += ']';
  } else {
    if (p->parent != nullptr) {
      s += '.';
    }
    s += p->key;
  }
}

// Fills protobuf messages from a parsed OTLP/JSON tree; stops at the first error.
class reader {
 public:
  explicit reader(std::string& error) : error_(error) {}

  bool request(const json::value& v, ExportTraceServiceRequest& m) {
    return members(v, nullptr, [&](std::string_view k, const json::value& f, const path* fp) {
      if (key_is(k, "resourceSpans")) {
        return elements(f, fp, *m.mutable_resource_spans(), &reader::resource_spans);
      }
      return true;
    });
  }

 private:
  std::string& error_;

  // Writes "<path>: <pieces...>" to the error and returns false.
  template <class... Pieces>
  bool fail(const path* p, const Pieces&... pieces) {
    error_.clear();
    if (p == nullptr) {
      error_ += "request body";
    } else {
      append_path(error_, p);
    }
    error_ += ": ";
    (append_piece(error_, pieces), ...);
    return false;
  }

  // Calls on_member(key, value, path) for each member that is not null (null means unset).
  template <class F>
  bool members(const json::value& v, const path* p, F&& on_member) {
    const auto* object = v.if_object();
    if (object == nullptr) {
      return fail(p, "must be an object");
    }
    for (const auto& member : *object) {
      if (member.value().is_null()) {
        continue;
      }
      const std::string_view key = view(member.key());
      const path member_path{p, key, 0};
      if (!on_member(key, member.value(), &member_path)) {
        return false;
      }
    }
    return true;
  }

  // Appends one element to `field` per array element, read by `read`.
  template <class Field, class T>
  bool elements(const json::value& v, const path* p, Field& field,
                bool (reader::*read)(const json::value&, const path*, T&)) {
    const auto* array = v.if_array();
    if (array == nullptr) {
      return fail(p, "must be an array");
    }
    field.Reserve(field.size() + static_cast<int>(array->size()));
    for (std::size_t i = 0; i < array->size(); ++i) {
      const path element_path{p, {}, i};
      if ((*array)[i].is_null()) {
        return fail(&element_path, "null in array");
      }
      if (!(this->*read)((*array)[i], &element_path, *field.Add())) {
        return false;
      }
    }
    return true;
  }

  // Reads a scalar with read_scalar and stores it with a generated setter.
  template <class M, class T, class... Extra>
  bool set(const json::value& v, const path* p, M& m, void (M::*setter)(T), Extra... extra) {
    T x{};
    if (!read_scalar(v, p, x, extra...)) {
      return false;
    }
    (m.*setter)(x);
    return true;
  }

  bool string(const json::value& v, const path* p, std::string& out) {
    const auto* s = v.if_string();
    if (s == nullptr) {
      return fail(p, "must be a string");
    }
    out.assign(s->data(), s->size());
    return true;
  }

  // Integers are JSON numbers (integral, in range) or decimal strings.
  template <std::integral T>
  bool read_scalar(const json::value& v, const path* p, T& out) {
    switch (v.kind()) {
      case json::kind::int64:
        if (std::in_range<T>(v.get_int64())) {
          out = static_cast<T>(v.get_int64());
          return true;
        }
        return fail(p, "out of range");
      case json::kind::uint64:
        if (std::in_range<T>(v.get_uint64())) {
          out = static_cast<T>(v.get_uint64());
          return true;
        }
        return fail(p, "out of range");
      case json::kind::double_: {
        const double d = v.get_double();
        if (std::trunc(d) != d) {
          return fail(p, "must be an integer");
        }
        // 2^digits: the first value above the range of T.
        constexpr double limit =
            2.0 * static_cast<double>(std::uint64_t{1} << (std::numeric_limits<T>::digits - 1));
        if (d < (std::is_signed_v<T> ? -limit : 0.0) || d >= limit) {
          return fail(p, "out of range");
        }
        out = static_cast<T>(d);
        return true;
      }
      case json::kind::string: {
        const auto& s = v.get_string();
        const auto r = std::from_chars(s.data(), s.data() + s.size(), out);
        if (r.ec == std::errc::result_out_of_range) {
          return fail(p, "out of range");
        }
        if (r.ec != std::errc{} || r.ptr != s.data() + s.size()) {
          return fail(p, "must be an integer");
        }
        return true;
      }
      default:
        return fail(p, "must be an integer (number or decimal string)");
    }
  }

  bool read_scalar(const json::value& v, const path* p, bool& out) {
    if (const auto* b = v.if_bool()) {
      out = *b;
      return true;
    }
    return fail(p, "must be true or false");
  }

  // A number, "NaN", "Infinity", "-Infinity" or a numeric string.
  bool read_scalar(const json::value& v, const path* p, double& out) {
    switch (v.kind()) {
      case json::kind::int64:
        out = static_cast<double>(v.get_int64());
        return true;
      case json::kind::uint64:
        out = static_cast<double>(v.get_uint64());
        return true;
      case json::kind::double_:
        out = v.get_double();
        return true;
      case json::kind::string: {
        const std::string_view s = view(v.get_string());
        if (s == "NaN") {
          out = std::numeric_limits<double>::quiet_NaN();
          return true;
        }
        if (s == "Infinity" || s == "-Infinity") {
          out = s[0] == '-' ? -HUGE_VAL : HUGE_VAL;
          return true;
        }
        const auto r = std::from_chars(s.data(), s.data() + s.size(), out);
        if (r.ec == std::errc{} && r.ptr == s.data() + s.size()) {
          return true;
        }
        break;
      }
      default:
        break;
    }
    return fail(p, "must be a number");
  }

  // Enums are integers (unknown values kept: proto3 enums are open) or value names.
  template <class E>
  requires std::is_enum_v<E>
  bool read_scalar(const json::value& v, const path* p, E& out,
                   std::span<const std::string_view> names) {
    if (const auto* s = v.if_string()) {
      for (std::size_t i = 0; i < names.size(); ++i) {
        if (view(*s) == names[i]) {
          out = static_cast<E>(i);
          return true;
        }
      }
    }
    std::int32_t x = 0;
    if (!read_scalar(v, p, x)) {
      return fail(p, "must be an integer or a name like ", names[1]);
    }
    out = static_cast<E>(x);
    return true;
  }

  // A hex trace id (16 bytes) or span id (8 bytes), not all zero. An optional id (the parent
  // span id) may be empty; all zeros there also means "no parent", as in the collector.
  bool id(const json::value& v, const path* p, std::size_t size, bool optional, std::string& out) {
    const auto* s = v.if_string();
    if (s == nullptr) {
      return fail(p, "must be a hex string");
    }
    if (optional && s->empty()) {
      out.clear();
      return true;
    }
    if (s->size() != 2 * size) {
      return fail(p, "must be ", 2 * size, " hex digits, got ", s->size());
    }
    char bytes[16];
    char any = 0;
    for (std::size_t i = 0; i < size; ++i) {
      const int hi = hex_value((*s)[2 * i]);
      const int lo = hex_value((*s)[2 * i + 1]);
      if (hi < 0 || lo < 0) {
        return fail(p, "not a hex digit at offset ", 2 * i + (hi < 0 ? 0 : 1));
      }
      bytes[i] = static_cast<char>((hi << 4) | lo);
      any |= bytes[i];
    }
    if (any == 0) {
      if (!optional) {
        return fail(p, "must not be all zeros");
      }
      out.clear();
      return true;
    }
    out.assign(bytes, size);
    return true;
  }

  // Standard or URL-safe base64, padded or not.
  bool base64(const json::value& v, const path* p, std::string& out) {
    const auto* str = v.if_string();
    if (str == nullptr) {
      return fail(p, "must be a base64 string");
    }
    std::string_view s = view(*str);
    const bool padded = !s.empty() && s.back() == '=';
    while (!s.empty() && s.back() == '=' && str->size() - s.size() < 2) {
      s.remove_suffix(1);
    }
    if ((padded && str->size() % 4 != 0) || s.size() % 4 == 1) {
      return fail(p, "invalid base64 length");
    }
    out.resize(s.size() / 4 * 3 + (s.size() % 4 == 0 ? 0 : s.size() % 4 - 1));
    std::uint32_t bits = 0;
    std::size_t n = 0;
    for (std::size_t i = 0; i < s.size(); ++i) {
      const int d = base64_values[static_cast<unsigned char>(s[i])];
      if (d < 0) {
        return fail(p, "invalid base64 character at offset ", i);
      }
      bits = (bits << 6) | static_cast<std::uint32_t>(d);
      if (i % 4 == 3 || i + 1 == s.size()) {
        // A group of 2..4 digits holds 1..3 bytes, left-aligned in 24 bits.
        const std::size_t digits = i % 4 + 1;
        bits <<= 6 * (4 - digits);
        for (std::size_t b = 0; b + 1 < digits; ++b) {
          out[n++] = static_cast<char>(bits >> (16 - 8 * b));
        }
        bits = 0;
      }
    }
    return true;
  }

  bool key_value(const json::value& v, const path* p, common::KeyValue& m) {
    return members(v, p, [&](std::string_view k, const json::value& f, const path* fp) {
      if (key_is(k, "key")) {
        return string(f, fp, *m.mutable_key());
      }
      if (key_is(k, "value")) {
        return any_value(f, fp, *m.mutable_value());
      }
      return true;
    });
  }

  // An object whose "values" array is read by `read` (ArrayValue, KeyValueList).
  template <class M, class T>
  bool values(const json::value& v, const path* p, M& m,
              bool (reader::*read)(const json::value&, const path*, T&)) {
    return members(v, p, [&](std::string_view k, const json::value& f, const path* fp) {
      return !key_is(k, "values") || elements(f, fp, *m.mutable_values(), read);
    });
  }

  bool any_value(const json::value& v, const path* p, common::AnyValue& m) {
    return members(v, p, [&](std::string_view k, const json::value& f, const path* fp) {
      if (key_is(k, "stringValue")) {
        return string(f, fp, *m.mutable_string_value());
      }
      if (key_is(k, "intValue")) {
        return set(f, fp, m, &common::AnyValue::set_int_value);
      }
      if (key_is(k, "boolValue")) {
        return set(f, fp, m, &common::AnyValue::set_bool_value);
      }
      if (key_is(k, "doubleValue")) {
        return set(f, fp, m, &common::AnyValue::set_double_value);
      }
      if (key_is(k, "arrayValue")) {
        return values(f, fp, *m.mutable_array_value(), &reader::any_value);
      }
      if (key_is(k, "kvlistValue")) {
        return values(f, fp, *m.mutable_kvlist_value(), &reader::key_value);
      }
      if (key_is(k, "bytesValue")) {
        return base64(f, fp, *m.mutable_bytes_value());
      }
      return true;
    });
  }

  // attributes and droppedAttributesCount, shared by resource, scope, span, event and link.
  // Returns nullopt for any other key.
  template <class M>
  std::optional<bool> attributes(std::string_view k, const json::value& f, const path* fp, M& m) {
    if (key_is(k, "attributes")) {
      return elements(f, fp, *m.mutable_attributes(), &reader::key_value);
    }
    if (key_is(k, "droppedAttributesCount")) {
      return set(f, fp, m, &M::set_dropped_attributes_count);
    }
    return std::nullopt;
  }

  bool entity_ref(const json::value& v, const path* p, common::EntityRef& m) {
    return members(v, p, [&](std::string_view k, const json::value& f, const path* fp) {
      if (key_is(k, "schemaUrl")) {
        return string(f, fp, *m.mutable_schema_url());
      }
      if (key_is(k, "type")) {
        return string(f, fp, *m.mutable_type());
      }
      if (key_is(k, "idKeys")) {
        return elements(f, fp, *m.mutable_id_keys(), &reader::string);
      }
      if (key_is(k, "descriptionKeys")) {
        return elements(f, fp, *m.mutable_description_keys(), &reader::string);
      }
      return true;
    });
  }

  bool resource(const json::value& v, const path* p, resource::Resource& m) {
    return members(v, p, [&](std::string_view k, const json::value& f, const path* fp) {
      if (const auto done = attributes(k, f, fp, m)) {
        return *done;
      }
      return !key_is(k, "entityRefs") ||
             elements(f, fp, *m.mutable_entity_refs(), &reader::entity_ref);
    });
  }

  bool scope(const json::value& v, const path* p, common::InstrumentationScope& m) {
    return members(v, p, [&](std::string_view k, const json::value& f, const path* fp) {
      if (const auto done = attributes(k, f, fp, m)) {
        return *done;
      }
      if (key_is(k, "name")) {
        return string(f, fp, *m.mutable_name());
      }
      if (key_is(k, "version")) {
        return string(f, fp, *m.mutable_version());
      }
      return true;
    });
  }

  bool status(const json::value& v, const path* p, trace::Status& m) {
    return members(v, p, [&](std::string_view k, const json::value& f, const path* fp) {
      if (key_is(k, "message")) {
        return string(f, fp, *m.mutable_message());
      }
      if (key_is(k, "code")) {
        return set(f, fp, m, &trace::Status::set_code,
                   std::span<const std::string_view>(status_code_names));
      }
      return true;
    });
  }

  bool event(const json::value& v, const path* p, trace::Span::Event& m) {
    return members(v, p, [&](std::string_view k, const json::value& f, const path* fp) {
      if (const auto done = attributes(k, f, fp, m)) {
        return *done;
      }
      if (key_is(k, "timeUnixNano")) {
        return set(f, fp, m, &trace::Span::Event::set_time_unix_nano);
      }
      if (key_is(k, "name")) {
        return string(f, fp, *m.mutable_name());
      }
      return true;
    });
  }

  bool link(const json::value& v, const path* p, trace::Span::Link& m) {
    return members(v, p, [&](std::string_view k, const json::value& f, const path* fp) {
      if (const auto done = attributes(k, f, fp, m)) {
        return *done;
      }
      if (key_is(k, "traceId")) {
        return id(f, fp, 16, false, *m.mutable_trace_id());
      }
      if (key_is(k, "spanId")) {
        return id(f, fp, 8, false, *m.mutable_span_id());
      }
      if (key_is(k, "traceState")) {
        return string(f, fp, *m.mutable_trace_state());
      }
      if (key_is(k, "flags")) {
        return set(f, fp, m, &trace::Span::Link::set_flags);
      }
      return true;
    });
  }

  bool span(const json::value& v, const path* p, trace::Span& m) {
    return members(v, p, [&](std::string_view k, const json::value& f, const path* fp) {
      if (const auto done = attributes(k, f, fp, m)) {
        return *done;
      }
      if (key_is(k, "traceId")) {
        return id(f, fp, 16, false, *m.mutable_trace_id());
      }
      if (key_is(k, "spanId")) {
        return id(f, fp, 8, false, *m.mutable_span_id());
      }
      if (key_is(k, "parentSpanId")) {
        return id(f, fp, 8, true, *m.mutable_parent_span_id());
      }
      if (key_is(k, "traceState")) {
        return string(f, fp, *m.mutable_trace_state());
      }
      if (key_is(k, "flags")) {
        return set(f, fp, m, &trace::Span::set_flags);
      }
      if (key_is(k, "name")) {
        return string(f, fp, *m.mutable_name());
      }
      if (key_is(k, "kind")) {
        return set(f, fp, m, &trace::Span::set_kind,
                   std::span<const std::string_view>(span_kind_names));
      }
      if (key_is(k, "startTimeUnixNano")) {
        return set(f, fp, m, &trace::Span::set_start_time_unix_nano);
      }
      if (key_is(k, "endTimeUnixNano")) {
        return set(f, fp, m, &trace::Span::set_end_time_unix_nano);
      }
      if (key_is(k, "events")) {
        return elements(f, fp, *m.mutable_events(), &reader::event);
      }
      if (key_is(k, "droppedEventsCount")) {
        return set(f, fp, m, &trace::Span::set_dropped_events_count);
      }
      if (key_is(k, "links")) {
        return elements(f, fp, *m.mutable_links(), &reader::link);
      }
      if (key_is(k, "droppedLinksCount")) {
        return set(f, fp, m, &trace::Span::set_dropped_links_count);
      }
      if (key_is(k, "status")) {
        return status(f, fp, *m.mutable_status());
      }
      return true;
    });
  }

  bool scope_spans(const json::value& v, const path* p, trace::ScopeSpans& m) {
    return members(v, p, [&](std::string_view k, const json::value& f, const path* fp) {
      if (key_is(k, "scope")) {
        return scope(f, fp, *m.mutable_scope());
      }
      if (key_is(k, "spans")) {
        return elements(f, fp, *m.mutable_spans(), &reader::span);
      }
      if (key_is(k, "schemaUrl")) {
        return string(f, fp, *m.mutable_schema_url());
      }
      return true;
    });
  }

  bool resource_spans(const json::value& v, const path* p, trace::ResourceSpans& m) {
    return members(v, p, [&](std::string_view k, const json::value& f, const path* fp) {
      if (key_is(k, "resource")) {
        return resource(f, fp, *m.mutable_resource());
      }
      if (key_is(k, "scopeSpans")) {
        return elements(f, fp, *m.mutable_scope_spans(), &reader::scope_spans);
      }
      if (key_is(k, "schemaUrl")) {
        return string(f, fp, *m.mutable_schema_url());
      }
      return true;
    });
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
    // Small documents are parsed without touching the heap.
    unsigned char tree_buffer[4096];
    unsigned char stack_buffer[1024];
    json::monotonic_resource memory(tree_buffer, sizeof tree_buffer);
    json::parse_options options;
    options.max_depth = max_json_depth;
    json::basic_parser<tree_builder> parser(options, json::storage_ptr(), stack_buffer,
                                            sizeof stack_buffer);
    parser.handler().st.reset(&memory);
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
      return false;
    }
    const json::value tree = parser.handler().st.release();

    pb::Arena arena;
    auto* request = pb::Arena::CreateMessage<ExportTraceServiceRequest>(&arena);
    if (!reader(error).request(tree, *request)) {
      return false;
    }
    if (!request->AppendToString(&out)) {
      out.resize(old_size);
      report(error, "request too large to serialize");
      return false;
    }
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
