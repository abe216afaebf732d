#include "integration/otlp_data.hpp"

#include <zlib.h>

#include <array>
#include <cstdint>
#include <cstdio>
#include <map>
#include <mutex>
#include <random>
#include <sstream>
#include <stdexcept>

#include <google/protobuf/util/message_differencer.h>

namespace it {

// ---- codecs ----

std::string gzip(std::string_view data) {
  z_stream zs{};
  if (deflateInit2(&zs, Z_BEST_SPEED, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK) {
    throw std::runtime_error("deflateInit2 failed");
  }
  std::string out(deflateBound(&zs, static_cast<uLong>(data.size())) + 32, '\0');
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data()));
  zs.avail_in = static_cast<uInt>(data.size());
  zs.next_out = reinterpret_cast<Bytef*>(out.data());
  zs.avail_out = static_cast<uInt>(out.size());
  const int rc = deflate(&zs, Z_FINISH);
  const auto produced = zs.total_out;
  deflateEnd(&zs);
  if (rc != Z_STREAM_END) {
    throw std::runtime_error("deflate did not finish");
  }
  out.resize(produced);
  return out;
}

std::optional<std::string> gunzip(std::string_view data, std::size_t max_bytes) {
  z_stream zs{};
  if (inflateInit2(&zs, 15 + 32) != Z_OK) {
    return std::nullopt;
  }
  std::string out;
  std::array<char, 64 * 1024> chunk{};
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data()));
  zs.avail_in = static_cast<uInt>(data.size());
  int rc = Z_OK;
  while (rc != Z_STREAM_END) {
    zs.next_out = reinterpret_cast<Bytef*>(chunk.data());
    zs.avail_out = static_cast<uInt>(chunk.size());
    rc = inflate(&zs, Z_NO_FLUSH);
    if (rc != Z_OK && rc != Z_STREAM_END) {
      break;
    }
    out.append(chunk.data(), chunk.size() - zs.avail_out);
    if (out.size() > max_bytes || (rc == Z_OK && zs.avail_in == 0 && zs.avail_out != 0)) {
      break;  // too large, or input ended before the stream did
    }
  }
  inflateEnd(&zs);
  if (rc != Z_STREAM_END || out.size() > max_bytes) {
    return std::nullopt;
  }
  return out;
}

std::string base64(std::string_view data) {
  static constexpr char alphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((data.size() + 2) / 3 * 4);
  std::size_t i = 0;
  for (; i + 2 < data.size(); i += 3) {
    const std::uint32_t v = (std::uint8_t(data[i]) << 16) | (std::uint8_t(data[i + 1]) << 8) |
                            std::uint8_t(data[i + 2]);
    out += alphabet[(v >> 18) & 63];
    out += alphabet[(v >> 12) & 63];
    out += alphabet[(v >> 6) & 63];
    out += alphabet[v & 63];
  }
  if (i + 1 == data.size()) {
    const std::uint32_t v = std::uint8_t(data[i]) << 16;
    out += alphabet[(v >> 18) & 63];
    out += alphabet[(v >> 12) & 63];
    out += "==";
  } else if (i + 2 == data.size()) {
    const std::uint32_t v = (std::uint8_t(data[i]) << 16) | (std::uint8_t(data[i + 1]) << 8);
    out += alphabet[(v >> 18) & 63];
    out += alphabet[(v >> 12) & 63];
    out += alphabet[(v >> 6) & 63];
    out += '=';
  }
  return out;
}

std::string hex(std::string_view bytes) {
  static constexpr char digits[] = "0123456789abcdef";
  std::string out;
  out.reserve(bytes.size() * 2);
  for (const char c : bytes) {
    out += digits[(std::uint8_t(c) >> 4) & 15];
    out += digits[std::uint8_t(c) & 15];
  }
  return out;
}

// ---- builders ----

namespace {

std::mt19937_64& rng() {
  static std::mt19937_64 engine{std::random_device{}()};
  return engine;
}
std::mutex rng_mutex;

std::string random_bytes(std::size_t n) {
  const std::lock_guard lock(rng_mutex);
  std::string out(n, '\0');
  do {
    for (auto& c : out) {
      c = static_cast<char>(rng()() & 0xff);
    }
  } while (out.find_first_not_of('\0') == std::string::npos);
  return out;
}

std::uint64_t random_u64() {
  const std::lock_guard lock(rng_mutex);
  return rng()();
}

void set_attribute(otlp_common::KeyValue& kv, std::string key, const std::string& value) {
  kv.set_key(std::move(key));
  kv.mutable_value()->set_string_value(value);
}

// One attribute of each AnyValue type, nested types included.
void add_attributes_of_every_type(
    google::protobuf::RepeatedPtrField<otlp_common::KeyValue>& attributes, std::size_t index) {
  set_attribute(*attributes.Add(), "http.route", "/api/orders/{id}");
  auto* b = attributes.Add();
  b->set_key("cache.hit");
  b->mutable_value()->set_bool_value(index % 2 == 0);
  auto* i = attributes.Add();
  i->set_key("http.status_code");
  i->mutable_value()->set_int_value(200 + static_cast<std::int64_t>(index % 5));
  auto* big = attributes.Add();
  big->set_key("db.rows");
  big->mutable_value()->set_int_value(-9'007'199'254'740'993LL - static_cast<long long>(index));
  auto* d = attributes.Add();
  d->set_key("sample.ratio");
  d->mutable_value()->set_double_value(0.25 + static_cast<double>(index % 7));
  auto* array = attributes.Add();
  array->set_key("tags");
  auto* values = array->mutable_value()->mutable_array_value();
  values->add_values()->set_string_value("blue");
  values->add_values()->set_int_value(42);
  values->add_values()->set_bool_value(false);
  auto* kvlist = attributes.Add();
  kvlist->set_key("peer");
  auto* list = kvlist->mutable_value()->mutable_kvlist_value();
  set_attribute(*list->add_values(), "host", "db-" + std::to_string(index % 3) + ".internal");
  auto* port = list->add_values();
  port->set_key("port");
  port->mutable_value()->set_int_value(5432);
  auto* bytes = attributes.Add();
  bytes->set_key("payload.digest");
  bytes->mutable_value()->set_bytes_value(random_bytes(12));
  set_attribute(*attributes.Add(), "unicode",
                "caf\xc3\xa9 \"quoted\" \\ tab\t newline\n \xe2\x9c\x93");
}

void fill_span(Span& span, const std::string& trace_id, const std::string& parent_id,
               std::size_t index, const RequestShape& shape) {
  span.set_trace_id(trace_id);
  span.set_span_id(random_span_id());
  if (!parent_id.empty()) {
    span.set_parent_span_id(parent_id);
  }
  span.set_trace_state(index % 3 == 0 ? "vendor=abc,other=1" : "");
  span.set_flags(0x101);
  span.set_name(shape.name_prefix + "-" + std::to_string(index));
  span.set_kind(static_cast<Span::SpanKind>(index % 6));
  const std::uint64_t start = 1'700'000'000'000'000'000ULL + (random_u64() % 1'000'000'000'000ULL);
  span.set_start_time_unix_nano(start);
  span.set_end_time_unix_nano(start + 1'500'000 + index);
  add_attributes_of_every_type(*span.mutable_attributes(), index);
  if (shape.attribute_padding > 0) {
    set_attribute(*span.add_attributes(), "padding",
                  shape.random_padding
                      ? hex(random_bytes((shape.attribute_padding + 1) / 2))
                            .substr(0, shape.attribute_padding)
                      : std::string(shape.attribute_padding, 'p'));
  }
  span.set_dropped_attributes_count(static_cast<std::uint32_t>(index % 2));
  auto* event = span.add_events();
  event->set_time_unix_nano(start + 1000);
  event->set_name("exception");
  set_attribute(*event->add_attributes(), "exception.type", "TimeoutError");
  event->set_dropped_attributes_count(1);
  span.set_dropped_events_count(static_cast<std::uint32_t>(index % 3));
  auto* link = span.add_links();
  link->set_trace_id(random_trace_id());
  link->set_span_id(random_span_id());
  link->set_trace_state("linked=1");
  set_attribute(*link->add_attributes(), "link.reason", "retry-of");
  link->set_flags(1);
  span.set_dropped_links_count(0);
  span.mutable_status()->set_code(static_cast<otlp_trace::Status::StatusCode>(index % 3));
  if (index % 3 == 2) {
    span.mutable_status()->set_message("deadline exceeded");
  }
}

}  // namespace

std::string random_trace_id() { return random_bytes(16); }
std::string random_span_id() { return random_bytes(8); }

ExportRequest make_request(std::size_t n_spans, const RequestShape& shape) {
  ExportRequest request;
  std::vector<otlp_trace::ScopeSpans*> scopes;
  for (std::size_t r = 0; r < std::max<std::size_t>(shape.resources, 1); ++r) {
    auto* rs = request.add_resource_spans();
    rs->set_schema_url("https://opentelemetry.io/schemas/1.24.0");
    auto* resource = rs->mutable_resource();
    set_attribute(*resource->add_attributes(), "service.name", "checkout-" + std::to_string(r));
    set_attribute(*resource->add_attributes(), "service.version", "2.3." + std::to_string(r));
    auto* pid = resource->add_attributes();
    pid->set_key("process.pid");
    pid->mutable_value()->set_int_value(4000 + static_cast<std::int64_t>(r));
    for (std::size_t s = 0; s < std::max<std::size_t>(shape.scopes_per_resource, 1); ++s) {
      auto* ss = rs->add_scope_spans();
      ss->set_schema_url(s % 2 == 0 ? "" : "https://opentelemetry.io/schemas/1.21.0");
      auto* scope = ss->mutable_scope();
      scope->set_name("io.opentelemetry.lib-" + std::to_string(s));
      scope->set_version("1." + std::to_string(s) + ".0");
      set_attribute(*scope->add_attributes(), "scope.flavour", "vanilla");
      scopes.push_back(ss);
    }
  }
  // Spans come in small traces: a root and up to three children sharing its trace id.
  std::string trace_id;
  std::string root_id;
  for (std::size_t i = 0; i < n_spans; ++i) {
    Span& span = *scopes[i % scopes.size()]->add_spans();
    const bool root = i % 4 == 0;
    if (root) {
      trace_id = random_trace_id();
    }
    fill_span(span, trace_id, root ? std::string() : root_id, i, shape);
    if (root) {
      root_id = span.span_id();
    }
  }
  return request;
}

// ---- OTLP/JSON ----

namespace {

class JsonWriter {
 public:
  std::string take() { return std::move(out_); }

  JsonWriter& open_object() { return value_prefix().raw('{').push(); }
  JsonWriter& close_object() { return pop().raw('}'); }
  JsonWriter& open_array() { return value_prefix().raw('[').push(); }
  JsonWriter& close_array() { return pop().raw(']'); }
  JsonWriter& key(std::string_view k) {
    comma();
    string_literal(k);
    out_ += ':';
    after_key_ = true;
    return *this;
  }
  JsonWriter& string(std::string_view s) {
    value_prefix();
    string_literal(s);
    return *this;
  }
  JsonWriter& number(std::string_view literal) {
    value_prefix();
    out_ += literal;
    return *this;
  }
  JsonWriter& number(std::uint64_t v) { return number(std::to_string(v)); }
  JsonWriter& boolean(bool v) { return number(v ? "true" : "false"); }
  JsonWriter& real(double v) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.17g", v);
    return number(buf);
  }

 private:
  JsonWriter& raw(char c) {
    out_ += c;
    return *this;
  }
  JsonWriter& push() {
    first_.push_back(true);
    return *this;
  }
  JsonWriter& pop() {
    first_.pop_back();
    return *this;
  }
  void comma() {
    if (!first_.empty()) {
      if (!first_.back()) {
        out_ += ',';
      }
      first_.back() = false;
    }
  }
  JsonWriter& value_prefix() {
    if (after_key_) {
      after_key_ = false;
    } else {
      comma();
    }
    return *this;
  }
  void string_literal(std::string_view s) {
    out_ += '"';
    for (const char c : s) {
      switch (c) {
        case '"': out_ += "\\\""; break;
        case '\\': out_ += "\\\\"; break;
        case '\n': out_ += "\\n"; break;
        case '\t': out_ += "\\t"; break;
        default:
          if (std::uint8_t(c) < 0x20) {
            char buf[8];
            std::snprintf(buf, sizeof buf, "\\u%04x", unsigned(std::uint8_t(c)));
            out_ += buf;
          } else {
            out_ += c;
          }
      }
    }
    out_ += '"';
  }

  std::string out_;
  std::vector<bool> first_;
  bool after_key_ = false;
};

void write_attributes(JsonWriter& w,
                      const google::protobuf::RepeatedPtrField<otlp_common::KeyValue>& attrs);

void write_any_value(JsonWriter& w, const otlp_common::AnyValue& v) {
  w.open_object();
  switch (v.value_case()) {
    case otlp_common::AnyValue::kStringValue: w.key("stringValue").string(v.string_value()); break;
    case otlp_common::AnyValue::kBoolValue: w.key("boolValue").boolean(v.bool_value()); break;
    case otlp_common::AnyValue::kIntValue:
      w.key("intValue").string(std::to_string(v.int_value()));
      break;
    case otlp_common::AnyValue::kDoubleValue: w.key("doubleValue").real(v.double_value()); break;
    case otlp_common::AnyValue::kBytesValue:
      w.key("bytesValue").string(base64(v.bytes_value()));
      break;
    case otlp_common::AnyValue::kArrayValue:
      w.key("arrayValue").open_object().key("values").open_array();
      for (const auto& item : v.array_value().values()) {
        write_any_value(w, item);
      }
      w.close_array().close_object();
      break;
    case otlp_common::AnyValue::kKvlistValue:
      w.key("kvlistValue").open_object();
      write_attributes(w, v.kvlist_value().values());
      w.close_object();
      break;
    case otlp_common::AnyValue::VALUE_NOT_SET: break;
  }
  w.close_object();
}

// Writes "attributes"/"values" style arrays of KeyValue under the key the caller has chosen.
void write_key_values(JsonWriter& w, std::string_view key,
                      const google::protobuf::RepeatedPtrField<otlp_common::KeyValue>& attrs) {
  w.key(key).open_array();
  for (const auto& kv : attrs) {
    w.open_object().key("key").string(kv.key()).key("value");
    write_any_value(w, kv.value());
    w.close_object();
  }
  w.close_array();
}

void write_attributes(JsonWriter& w,
                      const google::protobuf::RepeatedPtrField<otlp_common::KeyValue>& attrs) {
  write_key_values(w, "values", attrs);
}

void write_span(JsonWriter& w, const Span& span) {
  w.open_object();
  w.key("traceId").string(hex(span.trace_id()));
  w.key("spanId").string(hex(span.span_id()));
  if (!span.trace_state().empty()) {
    w.key("traceState").string(span.trace_state());
  }
  if (!span.parent_span_id().empty()) {
    w.key("parentSpanId").string(hex(span.parent_span_id()));
  }
  w.key("flags").number(span.flags());
  w.key("name").string(span.name());
  w.key("kind").number(static_cast<std::uint64_t>(span.kind()));
  w.key("startTimeUnixNano").string(std::to_string(span.start_time_unix_nano()));
  w.key("endTimeUnixNano").string(std::to_string(span.end_time_unix_nano()));
  write_key_values(w, "attributes", span.attributes());
  w.key("droppedAttributesCount").number(span.dropped_attributes_count());
  w.key("events").open_array();
  for (const auto& event : span.events()) {
    w.open_object();
    w.key("timeUnixNano").string(std::to_string(event.time_unix_nano()));
    w.key("name").string(event.name());
    write_key_values(w, "attributes", event.attributes());
    w.key("droppedAttributesCount").number(event.dropped_attributes_count());
    w.close_object();
  }
  w.close_array();
  w.key("droppedEventsCount").number(span.dropped_events_count());
  w.key("links").open_array();
  for (const auto& link : span.links()) {
    w.open_object();
    w.key("traceId").string(hex(link.trace_id()));
    w.key("spanId").string(hex(link.span_id()));
    w.key("traceState").string(link.trace_state());
    write_key_values(w, "attributes", link.attributes());
    w.key("droppedAttributesCount").number(link.dropped_attributes_count());
    w.key("flags").number(link.flags());
    w.close_object();
  }
  w.close_array();
  w.key("droppedLinksCount").number(span.dropped_links_count());
  w.key("status").open_object();
  if (!span.status().message().empty()) {
    w.key("message").string(span.status().message());
  }
  w.key("code").number(static_cast<std::uint64_t>(span.status().code()));
  w.close_object();
  w.close_object();
}

}  // namespace

std::string to_otlp_json(const ExportRequest& request) {
  JsonWriter w;
  w.open_object().key("resourceSpans").open_array();
  for (const auto& rs : request.resource_spans()) {
    w.open_object().key("resource").open_object();
    write_key_values(w, "attributes", rs.resource().attributes());
    w.key("droppedAttributesCount").number(rs.resource().dropped_attributes_count());
    w.close_object();
    w.key("scopeSpans").open_array();
    for (const auto& ss : rs.scope_spans()) {
      w.open_object().key("scope").open_object();
      w.key("name").string(ss.scope().name());
      w.key("version").string(ss.scope().version());
      write_key_values(w, "attributes", ss.scope().attributes());
      w.close_object();
      w.key("spans").open_array();
      for (const auto& span : ss.spans()) {
        write_span(w, span);
      }
      w.close_array();
      w.key("schemaUrl").string(ss.schema_url());
      w.close_object();
    }
    w.close_array();
    w.key("schemaUrl").string(rs.schema_url());
    w.close_object();
  }
  w.close_array().close_object();
  return w.take();
}

// ---- comparison ----

std::vector<FlatSpan> flatten(const ExportRequest& request) {
  std::vector<FlatSpan> out;
  for (const auto& rs : request.resource_spans()) {
    for (const auto& ss : rs.scope_spans()) {
      for (const auto& span : ss.spans()) {
        out.push_back(FlatSpan{rs.resource(), rs.schema_url(), ss.scope(), ss.schema_url(), span});
      }
    }
  }
  return out;
}

std::size_t span_count(const ExportRequest& request) {
  std::size_t n = 0;
  for (const auto& rs : request.resource_spans()) {
    for (const auto& ss : rs.scope_spans()) {
      n += static_cast<std::size_t>(ss.spans_size());
    }
  }
  return n;
}

std::string span_key(const Span& span) { return span.trace_id() + span.span_id(); }

std::string compare_delivery(const std::vector<FlatSpan>& sent,
                             const std::vector<FlatSpan>& received) {
  using google::protobuf::util::MessageDifferencer;
  std::map<std::string, std::vector<const FlatSpan*>> by_key;
  for (const auto& flat : received) {
    by_key[span_key(flat.span)].push_back(&flat);
  }
  std::ostringstream problems;
  std::size_t missing = 0;
  std::size_t duplicated = 0;
  std::size_t changed = 0;
  for (const auto& want : sent) {
    const auto it = by_key.find(span_key(want.span));
    if (it == by_key.end()) {
      ++missing;
      continue;
    }
    if (it->second.size() != 1) {
      ++duplicated;
    }
    const FlatSpan& got = *it->second.front();
    std::string diff;
    MessageDifferencer differ;
    differ.ReportDifferencesToString(&diff);
    if (!differ.Compare(want.span, got.span)) {
      problems << "span " << want.span.name() << " changed: " << diff << "\n";
      ++changed;
    } else if (!MessageDifferencer::Equals(want.resource, got.resource) ||
               want.resource_schema_url != got.resource_schema_url) {
      problems << "span " << want.span.name() << ": resource changed: "
               << got.resource.ShortDebugString() << " schema " << got.resource_schema_url
               << "\n";
      ++changed;
    } else if (!MessageDifferencer::Equals(want.scope, got.scope) ||
               want.scope_schema_url != got.scope_schema_url) {
      problems << "span " << want.span.name() << ": scope changed: "
               << got.scope.ShortDebugString() << " schema " << got.scope_schema_url << "\n";
      ++changed;
    }
    by_key.erase(it);
  }
  if (missing + duplicated + changed + by_key.size() == 0) {
    return {};
  }
  std::ostringstream summary;
  summary << "sent " << sent.size() << " spans, received " << received.size() << ": " << missing
          << " missing, " << duplicated << " duplicated, " << changed << " changed, "
          << by_key.size() << " unexpected\n"
          << problems.str().substr(0, 4000);
  return summary.str();
}

}  // namespace it
