#include "otlp/wire.hpp"

#include "otlp/wire_reader.hpp"

#include <array>
#include <cstring>
#include <vector>

namespace spanrelay::otlp {
namespace {

using namespace wire;  // Reader, Field, next_field, wire types

// The messages of the trace schema the scanner descends into.
enum class Msg : std::uint8_t {
  kRequest, kResourceSpans, kResource, kScopeSpans, kScope, kSpan, kEvent, kLink, kStatus,
  kKeyValue, kAnyValue, kArrayValue, kKeyValueList, kEntityRef,
};

enum class Kind : std::uint8_t { kUnknown, kString, kBytes, kMessage, kVarint, kFixed64, kFixed32 };

struct FieldSpec {
  Kind kind = Kind::kUnknown;
  Msg msg = Msg::kRequest;  // for kMessage
};

// Field numbers from opentelemetry-proto v1 (see proto/). Anything not listed is unknown.
FieldSpec field_spec(Msg m, std::uint32_t f) noexcept {
  constexpr FieldSpec S{Kind::kString}, B{Kind::kBytes}, V{Kind::kVarint}, F64{Kind::kFixed64},
      F32{Kind::kFixed32};
  auto M = [](Msg x) { return FieldSpec{Kind::kMessage, x}; };
  switch (m) {
    case Msg::kRequest:
      return f == 1 ? M(Msg::kResourceSpans) : FieldSpec{};
    case Msg::kResourceSpans:
      return f == 1 ? M(Msg::kResource) : f == 2 ? M(Msg::kScopeSpans) : f == 3 ? S : FieldSpec{};
    case Msg::kResource:
      return f == 1 ? M(Msg::kKeyValue) : f == 2 ? V : f == 3 ? M(Msg::kEntityRef) : FieldSpec{};
    case Msg::kScopeSpans:
      return f == 1 ? M(Msg::kScope) : f == 2 ? M(Msg::kSpan) : f == 3 ? S : FieldSpec{};
    case Msg::kScope:
      return f <= 2 && f >= 1 ? S : f == 3 ? M(Msg::kKeyValue) : f == 4 ? V : FieldSpec{};
    case Msg::kSpan:
      switch (f) {
        case 1: case 2: case 4: return B;
        case 3: case 5: return S;
        case 6: case 10: case 12: case 14: return V;
        case 7: case 8: return F64;
        case 9: return M(Msg::kKeyValue);
        case 11: return M(Msg::kEvent);
        case 13: return M(Msg::kLink);
        case 15: return M(Msg::kStatus);
        case 16: return F32;
        default: return {};
      }
    case Msg::kEvent:
      return f == 1 ? F64 : f == 2 ? S : f == 3 ? M(Msg::kKeyValue) : f == 4 ? V : FieldSpec{};
    case Msg::kLink:
      switch (f) {
        case 1: case 2: return B;
        case 3: return S;
        case 4: return M(Msg::kKeyValue);
        case 5: return V;
        case 6: return F32;
        default: return {};
      }
    case Msg::kStatus:
      return f == 2 ? S : f == 3 ? V : FieldSpec{};
    case Msg::kKeyValue:
      return f == 1 ? S : f == 2 ? M(Msg::kAnyValue) : FieldSpec{};
    case Msg::kAnyValue:
      switch (f) {
        case 1: return S;
        case 2: case 3: return V;
        case 4: return F64;
        case 5: return M(Msg::kArrayValue);
        case 6: return M(Msg::kKeyValueList);
        case 7: return B;
        default: return {};
      }
    case Msg::kArrayValue:
      return f == 1 ? M(Msg::kAnyValue) : FieldSpec{};
    case Msg::kKeyValueList:
      return f == 1 ? M(Msg::kKeyValue) : FieldSpec{};
    case Msg::kEntityRef:
      return f >= 1 && f <= 4 ? S : FieldSpec{};
  }
  return {};
}

constexpr WireType wire_type_of(Kind k) noexcept {
  switch (k) {
    case Kind::kVarint: return kVarint;
    case Kind::kFixed64: return kFixed64;
    case Kind::kFixed32: return kFixed32;
    default: return kLen;
  }
}

bool valid_utf8(std::string_view s) noexcept {
  const auto* p = reinterpret_cast<const std::uint8_t*>(s.data());
  const auto* end = p + s.size();
  while (p < end) {
    // Fast path: 8 ASCII bytes at a time.
    if (end - p >= 8) {
      std::uint64_t w;
      std::memcpy(&w, p, 8);
      if ((w & 0x8080808080808080ull) == 0) {
        p += 8;
        continue;
      }
    }
    const std::uint8_t c = *p;
    if (c < 0x80) {
      ++p;
      continue;
    }
    int n = 0;
    std::uint32_t cp = 0;
    if (c >= 0xc2 && c <= 0xdf) {
      n = 1; cp = c & 0x1f;
    } else if (c >= 0xe0 && c <= 0xef) {
      n = 2; cp = c & 0x0f;
    } else if (c >= 0xf0 && c <= 0xf4) {
      n = 3; cp = c & 0x07;
    } else {
      return false;
    }
    if (end - p <= n) {
      return false;
    }
    for (int i = 1; i <= n; ++i) {
      if ((p[i] & 0xc0) != 0x80) {
        return false;
      }
      cp = (cp << 6) | (p[i] & 0x3f);
    }
    // Overlong forms, surrogates and values past U+10FFFF.
    if ((n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) || cp > 0x10ffff ||
        (cp >= 0xd800 && cp <= 0xdfff)) {
      return false;
    }
    p += n + 1;
  }
  return true;
}

bool all_zero(std::string_view s) noexcept {
  for (char c : s) {
    if (c != 0) {
      return false;
    }
  }
  return true;
}

const char* msg_name(Msg m) noexcept {
  static constexpr std::array<const char*, 14> names = {
      "ExportTraceServiceRequest", "ResourceSpans", "Resource", "ScopeSpans",
      "InstrumentationScope", "Span", "Span.Event", "Span.Link", "Status", "KeyValue", "AnyValue",
      "ArrayValue", "KeyValueList", "EntityRef"};
  return names[static_cast<std::size_t>(m)];
}

class Scanner {
 public:
  ScanResult result;

  bool message(Msg m, std::string_view bytes, int depth) noexcept {
    if (depth > max_message_depth) {
      return fail("message nesting deeper than " + std::to_string(max_message_depth));
    }
    Reader r(bytes);
    Field f;
    std::string_view trace_id, span_id;
    for (;;) {
      const ReadStatus st = next_field(r, f);
      if (st == ReadStatus::kEnd) {
        break;
      }
      if (st == ReadStatus::kMalformed) {
        return fail(std::string("malformed protobuf in ") + msg_name(m));
      }
      const FieldSpec spec = field_spec(m, f.number);
      if (spec.kind == Kind::kUnknown || wire_type_of(spec.kind) != f.type) {
        continue;  // unknown (or mismatched) fields are skipped and kept, as protobuf does
      }
      switch (spec.kind) {
        case Kind::kString:
          if (!valid_utf8(f.payload)) {
            return fail(std::string("invalid UTF-8 in a string of ") + msg_name(m));
          }
          break;
        case Kind::kBytes:
          if (m == Msg::kSpan && f.number == 1) {
            trace_id = f.payload;
          } else if (m == Msg::kSpan && f.number == 2) {
            span_id = f.payload;
          }
          break;
        case Kind::kMessage:
          if (!message(spec.msg, f.payload, depth + 1)) {
            return false;
          }
          break;
        default:
          break;
      }
    }
    if (m == Msg::kSpan) {
      ++result.spans;
      if (trace_id.size() != 16 || span_id.size() != 8 || all_zero(trace_id) ||
          all_zero(span_id)) {
        ++result.invalid_spans;
      }
    }
    return true;
  }

 private:
  bool fail(std::string msg) noexcept {
    if (result.error.empty()) {
      result.error = std::move(msg);
    }
    return false;
  }
};

// Calls fn(field) for each field of a message assumed valid. Stops on malformed input.
template <typename Fn>
void for_each_field(std::string_view bytes, Fn&& fn) {
  Reader r(bytes);
  Field f;
  while (next_field(r, f) == ReadStatus::kOk) {
    fn(f);
  }
}

std::string_view whole(const Field& f) noexcept {
  return {reinterpret_cast<const char*>(f.begin), static_cast<std::size_t>(f.end - f.begin)};
}

bool span_ids_valid(std::string_view span) {
  std::string_view trace_id, span_id;
  for_each_field(span, [&](const Field& f) {
    if (f.type == kLen && f.number == 1) {
      trace_id = f.payload;
    } else if (f.type == kLen && f.number == 2) {
      span_id = f.payload;
    }
  });
  return trace_id.size() == 16 && span_id.size() == 8 && !all_zero(trace_id) &&
         !all_zero(span_id);
}

// Rebuilds `msg` with every field `child` (a LEN field) passed through `transform`; other
// fields are copied as they are.
template <typename Transform>
std::string rebuild(std::string_view msg, std::uint32_t child, Transform&& transform) {
  std::string out;
  out.reserve(msg.size());
  for_each_field(msg, [&](const Field& f) {
    if (f.type == kLen && f.number == child) {
      transform(f, out);
    } else {
      out.append(whole(f));
    }
  });
  return out;
}

std::uint32_t spans_in_scope(std::string_view ss) {
  std::uint32_t n = 0;
  for_each_field(ss, [&](const Field& f) { n += (f.type == kLen && f.number == 2) ? 1 : 0; });
  return n;
}

std::uint32_t spans_in_resource(std::string_view rs) {
  std::uint32_t n = 0;
  for_each_field(rs, [&](const Field& f) {
    if (f.type == kLen && f.number == 2) {
      n += spans_in_scope(f.payload);
    }
  });
  return n;
}

std::size_t field_size(std::uint32_t number, std::size_t payload) noexcept {
  return varint_size(static_cast<std::uint64_t>(number) << 3) + varint_size(payload) + payload;
}

// Greedy packer: fills a container message (a fixed header plus LEN children of one field
// number) up to the limits, then emits it and starts the next.
class Packer {
 public:
  Packer(std::string header, std::uint32_t child_field, std::size_t max_bytes,
         std::size_t max_spans, std::function<void(std::string&&, std::uint32_t)> emit)
      : header_(std::move(header)), child_(child_field), max_bytes_(max_bytes),
        max_spans_(max_spans), emit_(std::move(emit)) {
    body_ = header_;
  }
  // Room left for one child's payload in an otherwise empty container.
  std::size_t room_for_child() const noexcept {
    const std::size_t fixed = header_.size() + varint_size(std::uint64_t{child_} << 3) + 5;
    return max_bytes_ > fixed ? max_bytes_ - fixed : 0;
  }
  bool fits_alone(std::size_t child_payload, std::uint32_t spans) const noexcept {
    return header_.size() + field_size(child_, child_payload) <= max_bytes_ &&
           spans <= max_spans_;
  }
  void add(std::string_view child_payload, std::uint32_t spans) {
    if (spans_ + children_ > 0 &&
        (body_.size() + field_size(child_, child_payload.size()) > max_bytes_ ||
         spans_ + spans > max_spans_)) {
      flush();
    }
    put_len_field(body_, child_, child_payload);
    spans_ += spans;
    ++children_;
  }
  void flush() {
    if (children_ > 0) {
      emit_(std::move(body_), spans_);
    }
    body_ = header_;
    spans_ = 0;
    children_ = 0;
  }

 private:
  std::string header_;
  std::uint32_t child_;
  std::size_t max_bytes_;
  std::size_t max_spans_;
  std::function<void(std::string&&, std::uint32_t)> emit_;
  std::string body_;
  std::uint32_t spans_ = 0;
  std::uint32_t children_ = 0;
};

std::string header_without(std::string_view msg, std::uint32_t child) {
  std::string h;
  for_each_field(msg, [&](const Field& f) {
    if (!(f.type == kLen && f.number == child)) {
      h.append(whole(f));
    }
  });
  return h;
}

}  // namespace

std::size_t varint_size(std::uint64_t v) noexcept {
  std::size_t n = 1;
  while (v >= 0x80) {
    v >>= 7;
    ++n;
  }
  return n;
}

void put_varint(std::string& out, std::uint64_t v) {
  while (v >= 0x80) {
    out.push_back(static_cast<char>((v & 0x7f) | 0x80));
    v >>= 7;
  }
  out.push_back(static_cast<char>(v));
}

void put_len_field(std::string& out, std::uint32_t field, std::string_view payload) {
  put_varint(out, (static_cast<std::uint64_t>(field) << 3) | kLen);
  put_varint(out, payload.size());
  out.append(payload);
}

void put_varint_field(std::string& out, std::uint32_t field, std::uint64_t v) {
  put_varint(out, static_cast<std::uint64_t>(field) << 3);
  put_varint(out, v);
}

ScanResult scan_request(std::string_view request) noexcept {
  Scanner s;
  try {
    s.result.ok = s.message(Msg::kRequest, request, 0);
  } catch (...) {  // only std::string allocation can throw here
    s.result.ok = false;
    s.result.error = "out of memory";
  }
  return std::move(s.result);
}

std::uint32_t count_spans(std::string_view request) noexcept {
  std::uint32_t n = 0;
  for_each_field(request, [&](const Field& f) {
    if (f.type == kLen && f.number == 1) {
      n += spans_in_resource(f.payload);
    }
  });
  return n;
}

std::string drop_invalid_spans(std::string_view request) {
  auto filter_scope = [](const Field& ss, std::string& out) {
    put_len_field(out, 2, rebuild(ss.payload, 2, [](const Field& span, std::string& o) {
      if (span_ids_valid(span.payload)) {
        o.append(whole(span));
      }
    }));
  };
  return rebuild(request, 1, [&](const Field& rs, std::string& out) {
    put_len_field(out, 1, rebuild(rs.payload, 2, filter_scope));
  });
}

void split_request(std::string_view request, std::size_t max_bytes, std::size_t max_spans,
                   const EmitFn& emit) {
  // Top level: ResourceSpans packed into requests.
  Packer top("", 1, max_bytes, max_spans, [&](std::string&& req, std::uint32_t spans) {
    emit(std::move(req), spans);
  });
  for_each_field(request, [&](const Field& rs) {
    if (!(rs.type == kLen && rs.number == 1)) {
      return;  // the request has no other fields; unknown ones cannot be placed, drop them
    }
    const std::uint32_t rs_spans = spans_in_resource(rs.payload);
    if (top.fits_alone(rs.payload.size(), rs_spans)) {
      top.add(rs.payload, rs_spans);
      return;
    }
    // Too big: split into ResourceSpans with the same resource and subsets of its scopes.
    Packer by_scope(header_without(rs.payload, 2), 2, top.room_for_child(), max_spans,
                    [&](std::string&& rs_piece, std::uint32_t spans) {
                      top.add(rs_piece, spans);
                    });
    for_each_field(rs.payload, [&](const Field& ss) {
      if (!(ss.type == kLen && ss.number == 2)) {
        return;
      }
      const std::uint32_t ss_spans = spans_in_scope(ss.payload);
      if (by_scope.fits_alone(ss.payload.size(), ss_spans)) {
        by_scope.add(ss.payload, ss_spans);
        return;
      }
      // Still too big: ScopeSpans with the same scope and subsets of its spans.
      by_scope.flush();
      Packer by_span(header_without(ss.payload, 2), 2, by_scope.room_for_child(), max_spans,
                     [&](std::string&& ss_piece, std::uint32_t spans) {
                       by_scope.add(ss_piece, spans);
                       by_scope.flush();
                     });
      for_each_field(ss.payload, [&](const Field& span) {
        if (span.type == kLen && span.number == 2) {
          by_span.add(span.payload, 1);
        }
      });
      by_span.flush();
    });
    by_scope.flush();
  });
  top.flush();
}

}  // namespace spanrelay::otlp
