#include "processors/request_view.hpp"

#include <algorithm>

#include "otlp/wire.hpp"
#include "otlp/wire_reader.hpp"

namespace spanrelay::processors {
namespace {

using otlp::wire::Field;
using otlp::wire::kLen;
using otlp::wire::next_field;
using otlp::wire::Reader;
using otlp::wire::ReadStatus;

// Field numbers (opentelemetry-proto v1, see proto/).
namespace f {
constexpr std::uint32_t kResourceSpans = 1;                          // request
constexpr std::uint32_t kResource = 1, kScopeSpans = 2;              // ResourceSpans
constexpr std::uint32_t kResourceAttributes = 1;                     // Resource
constexpr std::uint32_t kSpans = 2;                                  // ScopeSpans
constexpr std::uint32_t kTraceId = 1, kSpanId = 2, kTraceState = 3, kParentSpanId = 4,
                        kName = 5, kKind = 6, kSpanAttributes = 9, kEvents = 11,
                        kStatus = 15, kFlags = 16;                   // Span
constexpr std::uint32_t kStatusCode = 3;                             // Status
constexpr std::uint32_t kEventName = 2, kEventAttributes = 3;        // Span.Event
constexpr std::uint32_t kKey = 1, kValue = 2;                        // KeyValue
}  // namespace f

// Calls fn(field) for each field of a message; false if malformed.
template <class Fn>
bool each_field(std::string_view payload, Fn&& fn) {
  Reader r(payload);
  Field field;
  for (;;) {
    switch (next_field(r, field)) {
      case ReadStatus::kEnd:
        return true;
      case ReadStatus::kMalformed:
        return false;
      case ReadStatus::kOk:
        if (!fn(field)) {
          return false;
        }
    }
  }
}

std::string_view raw(const Field& field) {
  return {reinterpret_cast<const char*>(field.begin), static_cast<std::size_t>(field.end - field.begin)};
}

// The tag and length of a LEN field, then the payload: the payload's offset within the field.
std::string_view payload_of(std::string_view field_bytes) {
  Reader r(field_bytes);
  std::uint64_t ignored = 0;
  std::string_view payload;
  r.varint(ignored);
  r.bytes(payload);
  return payload;
}

}  // namespace

// ---- RequestView ----

FieldRange RequestView::range_of(const void* begin, const void* end) const noexcept {
  const auto* base = reinterpret_cast<const std::uint8_t*>(bytes_.data());
  return {static_cast<std::uint32_t>(static_cast<const std::uint8_t*>(begin) - base),
          static_cast<std::uint32_t>(static_cast<const std::uint8_t*>(end) - base)};
}

Slice RequestView::attributes_of(Owner owner, std::uint32_t index) const noexcept {
  switch (owner) {
    case Owner::kResource: return resources[index].attributes;
    case Owner::kSpan: return spans[index].attributes;
    case Owner::kEvent: return events[index].attributes;
  }
  return {};
}

bool RequestView::index(std::string_view request) {
  bytes_ = request;
  resources.clear();
  scopes.clear();
  spans.clear();
  events.clear();
  attributes.clear();
  if (request.size() > 0xffffffffu) {
    return false;
  }
  return each_field(request, [&](const Field& field) {
    if (field.number == f::kResourceSpans && field.type == kLen) {
      return resource_spans(field.payload, range_of(field.begin, field.end));
    }
    return true;
  });
}

bool RequestView::resource_spans(std::string_view payload, FieldRange range) {
  const auto r = static_cast<std::uint32_t>(resources.size());
  resources.push_back({.field = range});
  // The Resource's attributes first, so that they are contiguous, then the scopes.
  bool ok = each_field(payload, [&](const Field& field) {
    if (field.number == f::kResource && field.type == kLen) {
      resources[r].has_resource = true;
      resources[r].attributes.first = static_cast<std::uint32_t>(attributes.size());
      const bool good = each_field(field.payload, [&](const Field& a) {
        return a.number != f::kResourceAttributes || a.type != kLen ||
               attribute(a.payload, range_of(a.begin, a.end), Owner::kResource, r);
      });
      resources[r].attributes.count =
          static_cast<std::uint32_t>(attributes.size()) - resources[r].attributes.first;
      return good;
    }
    return true;
  });
  resources[r].scopes.first = static_cast<std::uint32_t>(scopes.size());
  ok = ok && each_field(payload, [&](const Field& field) {
    return field.number != f::kScopeSpans || field.type != kLen ||
           scope_spans(field.payload, range_of(field.begin, field.end), r);
  });
  resources[r].scopes.count = static_cast<std::uint32_t>(scopes.size()) - resources[r].scopes.first;
  return ok;
}

bool RequestView::scope_spans(std::string_view payload, FieldRange range, std::uint32_t resource) {
  const auto s = static_cast<std::uint32_t>(scopes.size());
  scopes.push_back({.field = range, .resource = resource});
  scopes[s].spans.first = static_cast<std::uint32_t>(spans.size());
  const bool ok = each_field(payload, [&](const Field& field) {
    return field.number != f::kSpans || field.type != kLen ||
           span(field.payload, range_of(field.begin, field.end), resource, s);
  });
  scopes[s].spans.count = static_cast<std::uint32_t>(spans.size()) - scopes[s].spans.first;
  return ok;
}

bool RequestView::span(std::string_view payload, FieldRange range, std::uint32_t resource,
                       std::uint32_t scope) {
  const auto s = static_cast<std::uint32_t>(spans.size());
  spans.push_back({.field = range, .resource = resource, .scope = scope});
  SpanRef& ref = spans.back();
  ref.attributes.first = static_cast<std::uint32_t>(attributes.size());
  // Pass 1: the span's own fields and attributes; pass 2: its events (and theirs).
  bool ok = each_field(payload, [&](const Field& field) {
    SpanRef& sp = spans[s];
    switch (field.number) {
      case f::kTraceId: sp.trace_id = field.payload; break;
      case f::kSpanId: sp.span_id = field.payload; break;
      case f::kParentSpanId: sp.parent_span_id = field.payload; break;
      case f::kTraceState: sp.trace_state = field.payload; break;
      case f::kName: sp.name = field.payload; break;
      case f::kKind: sp.kind = static_cast<std::uint32_t>(field.value); break;
      case f::kFlags: sp.flags = static_cast<std::uint32_t>(field.value); break;
      case f::kStatus:
        if (field.type == kLen) {
          return each_field(field.payload, [&](const Field& st) {
            if (st.number == f::kStatusCode) {
              spans[s].status_code = static_cast<std::uint32_t>(st.value);
            }
            return true;
          });
        }
        break;
      case f::kSpanAttributes:
        if (field.type == kLen) {
          return attribute(field.payload, range_of(field.begin, field.end), Owner::kSpan, s);
        }
        break;
      default:
        break;
    }
    return true;
  });
  spans[s].attributes.count = static_cast<std::uint32_t>(attributes.size()) - spans[s].attributes.first;
  spans[s].events.first = static_cast<std::uint32_t>(events.size());
  ok = ok && each_field(payload, [&](const Field& field) {
    if (field.number != f::kEvents || field.type != kLen) {
      return true;
    }
    const auto e = static_cast<std::uint32_t>(events.size());
    events.push_back({.field = range_of(field.begin, field.end), .span = s});
    events[e].attributes.first = static_cast<std::uint32_t>(attributes.size());
    const bool good = each_field(field.payload, [&](const Field& ef) {
      if (ef.number == f::kEventName && ef.type == kLen) {
        events[e].name = ef.payload;
      } else if (ef.number == f::kEventAttributes && ef.type == kLen) {
        return attribute(ef.payload, range_of(ef.begin, ef.end), Owner::kEvent, e);
      }
      return true;
    });
    events[e].attributes.count =
        static_cast<std::uint32_t>(attributes.size()) - events[e].attributes.first;
    return good;
  });
  spans[s].events.count = static_cast<std::uint32_t>(events.size()) - spans[s].events.first;
  return ok;
}

bool RequestView::attribute(std::string_view payload, FieldRange range, Owner owner,
                            std::uint32_t index) {
  AttributeRef a{.field = range, .owner = owner, .owner_index = index};
  const bool ok = each_field(payload, [&](const Field& field) {
    if (field.number == f::kKey && field.type == kLen) {
      a.key = field.payload;
    } else if (field.number == f::kValue && field.type == kLen) {
      a.value_field = range_of(field.begin, field.end);
      a.type = ValueType::kNone;
      a.string_value = {};
      return each_field(field.payload, [&](const Field& v) {
        switch (v.number) {
          case 1: a.type = ValueType::kString; a.string_value = v.payload; break;
          case 2: a.type = ValueType::kBool; a.number = v.value != 0 ? 1 : 0; break;
          case 3: a.type = ValueType::kInt; a.number = v.value; break;
          case 4: a.type = ValueType::kDouble; a.number = v.value; break;
          case 5: a.type = ValueType::kArray; break;
          case 6: a.type = ValueType::kKvList; break;
          case 7: a.type = ValueType::kBytes; a.string_value = v.payload; break;
          default: break;
        }
        return true;
      });
    }
    return true;
  });
  attributes.push_back(a);
  return ok;
}

std::string key_value_string(std::string_view key, std::string_view value) {
  std::string any;
  otlp::put_len_field(any, 1, value);
  std::string kv;
  otlp::put_len_field(kv, f::kKey, key);
  otlp::put_len_field(kv, f::kValue, any);
  return kv;
}

std::string key_value_with(std::string_view key, std::string_view any_value_field) {
  std::string kv;
  otlp::put_len_field(kv, f::kKey, key);
  kv.append(any_value_field);
  return kv;
}

namespace {
// A KeyValue's content with its key field replaced by `key` (the value fields kept).
std::string with_key(std::string_view key_value, std::string_view key) {
  std::string kv;
  otlp::put_len_field(kv, f::kKey, key);
  Reader r(key_value);
  Field field;
  while (next_field(r, field) == ReadStatus::kOk) {
    if (field.number != f::kKey) {
      kv.append(raw(field));
    }
  }
  return kv;
}
}  // namespace

// ---- Edits ----

void Edits::reset(const RequestView& view) {
  view_ = &view;
  any_ = false;
  attribute_edits_.assign(view.attributes.size(), AttributeEdit{});
  appended_.clear();
  span_state_.assign(view.spans.size(), SpanState{});
  trace_states_.resize(view.spans.size());
  resource_dirty_.assign(view.resources.size(), 0);
  resource_attrs_dirty_.assign(view.resources.size(), 0);
  scope_dirty_.assign(view.scopes.size(), 0);
  event_dirty_.assign(view.events.size(), 0);
}

void Edits::touch(Owner owner, std::uint32_t index) {
  any_ = true;
  const RequestView& v = *view_;
  switch (owner) {
    case Owner::kResource:
      resource_attrs_dirty_[index] = 1;
      resource_dirty_[index] = 1;
      return;
    case Owner::kEvent:
      event_dirty_[index] = 1;
      index = v.events[index].span;
      [[fallthrough]];
    case Owner::kSpan:
      span_state_[index].dirty = true;
      scope_dirty_[v.spans[index].scope] = 1;
      resource_dirty_[v.spans[index].resource] = 1;
      return;
  }
}

void Edits::drop_span(std::uint32_t span) {
  if (!span_state_[span].dropped) {
    span_state_[span].dropped = true;
    touch(Owner::kSpan, span);
  }
}

void Edits::set_trace_state(std::uint32_t span, std::string trace_state) {
  span_state_[span].trace_state_set = true;
  trace_states_[span] = std::move(trace_state);
  touch(Owner::kSpan, span);
}

std::string_view Edits::effective_key(std::uint32_t attribute) const {
  const AttributeEdit& e = attribute_edits_[attribute];
  return e.state == AttributeEdit::kReplace ? std::string_view(e.key) : view_->attributes[attribute].key;
}

std::uint32_t Edits::find(Owner owner, std::uint32_t index, std::string_view key) const {
  for (const Appended& a : appended_) {
    if (!a.deleted && a.owner == owner && a.index == index && a.key == key) {
      return kAppended;
    }
  }
  const Slice s = view_->attributes_of(owner, index);
  // The last of duplicate keys wins, as in most readers of OTLP.
  for (std::uint32_t i = s.first + s.count; i-- > s.first;) {
    if (attribute_edits_[i].state != AttributeEdit::kDelete && effective_key(i) == key) {
      return i;
    }
  }
  return kNone;
}

void Edits::delete_attribute(std::uint32_t attribute) {
  attribute_edits_[attribute].state = AttributeEdit::kDelete;
  const AttributeRef& a = view_->attributes[attribute];
  touch(a.owner, a.owner_index);
}

bool Edits::delete_key(Owner owner, std::uint32_t index, std::string_view key) {
  bool any = false;
  for (Appended& a : appended_) {
    if (!a.deleted && a.owner == owner && a.index == index && a.key == key) {
      a.deleted = true;
      any = true;
    }
  }
  const Slice s = view_->attributes_of(owner, index);
  for (std::uint32_t i = s.first; i < s.first + s.count; ++i) {
    if (attribute_edits_[i].state != AttributeEdit::kDelete && effective_key(i) == key) {
      delete_attribute(i);
      any = true;
    }
  }
  return any;
}

void Edits::replace_attribute(std::uint32_t attribute, std::string key, std::string key_value) {
  AttributeEdit& e = attribute_edits_[attribute];
  e.state = AttributeEdit::kReplace;
  e.key = std::move(key);
  e.key_value = std::move(key_value);
  const AttributeRef& a = view_->attributes[attribute];
  touch(a.owner, a.owner_index);
}

Edits::Appended* Edits::find_appended(Owner owner, std::uint32_t index, std::string_view key) {
  for (Appended& a : appended_) {
    if (!a.deleted && a.owner == owner && a.index == index && a.key == key) {
      return &a;
    }
  }
  return nullptr;
}

void Edits::append_attribute(Owner owner, std::uint32_t index, std::string key,
                             std::string key_value) {
  if (Appended* a = find_appended(owner, index, key)) {
    a->key_value = std::move(key_value);
    return;
  }
  appended_.push_back({owner, index, std::move(key), std::move(key_value)});
  touch(owner, index);
}

bool Edits::rename_key(Owner owner, std::uint32_t index, std::string_view from,
                       std::string_view to) {
  const std::uint32_t found = find(owner, index, from);
  if (found == kNone) {
    return false;
  }
  if (from == to) {
    return true;
  }
  std::string value;  // the KeyValue content now
  if (found == kAppended) {
    value = find_appended(owner, index, from)->key_value;
  } else if (attribute_edits_[found].state == AttributeEdit::kReplace) {
    value = attribute_edits_[found].key_value;
  } else {
    value = std::string(payload_of(view_->text(view_->attributes[found].field)));
  }
  delete_key(owner, index, to);
  std::string renamed = with_key(value, to);
  if (found == kAppended) {
    Appended* a = find_appended(owner, index, from);
    a->key = std::string(to);
    a->key_value = std::move(renamed);
  } else {
    replace_attribute(found, std::string(to), std::move(renamed));
  }
  return true;
}

// An attribute field met while rewriting its owner: false to copy it as it is; true when it was
// deleted, or replaced (its new KeyValue written to `out` as field `field_number`).
bool Edits::write_edited(std::uint32_t attribute, std::uint32_t field_number,
                         std::string& out) const {
  const AttributeEdit& e = attribute_edits_[attribute];
  if (e.state == AttributeEdit::kReplace) {
    otlp::put_len_field(out, field_number, e.key_value);
  }
  return e.state != AttributeEdit::kKeep;
}

void Edits::write_appended(Owner owner, std::uint32_t index, std::uint32_t field_number,
                           std::string& out) const {
  for (const Appended& a : appended_) {
    if (!a.deleted && a.owner == owner && a.index == index) {
      otlp::put_len_field(out, field_number, a.key_value);
    }
  }
}

void Edits::apply(std::string& out) {
  const RequestView& v = *view_;
  std::string result;
  result.reserve(v.bytes().size() + 64);
  if (scratch_.size() < 4) {
    scratch_.resize(4);
  }
  for (std::uint32_t r = 0; r < v.resources.size(); ++r) {
    if (resource_dirty_[r] == 0) {
      result.append(v.text(v.resources[r].field));
    } else {
      resource_spans(r, result);
    }
  }
  out.swap(result);
}

// Rewrites one message: copies its fields, handing those `edit` claims to it.
namespace {
template <class Edit>
void rewrite_fields(std::string_view payload, std::string& out, Edit&& edit) {
  Reader r(payload);
  Field field;
  while (next_field(r, field) == ReadStatus::kOk) {
    if (!edit(field)) {
      out.append(raw(field));
    }
  }
}
}  // namespace

void Edits::resource_spans(std::uint32_t r, std::string& out) {
  const RequestView& v = *view_;
  const ResourceRef& ref = v.resources[r];
  std::string& content = scratch_[0];
  content.clear();
  std::uint32_t scope = ref.scopes.first;
  const auto write_resource = [&](std::string_view resource_payload) {
    std::string& res = scratch_[1];
    res.clear();
    std::uint32_t attribute = ref.attributes.first;
    rewrite_fields(resource_payload, res, [&](const Field& field) {
      if (field.number != f::kResourceAttributes || field.type != kLen) {
        return false;
      }
      return write_edited(attribute++, f::kResourceAttributes, res);
    });
    write_appended(Owner::kResource, r, f::kResourceAttributes, res);
    otlp::put_len_field(content, f::kResource, res);
  };
  rewrite_fields(payload_of(v.text(ref.field)), content, [&](const Field& field) {
    if (field.type != kLen) {
      return false;
    }
    if (field.number == f::kResource && resource_attrs_dirty_[r] != 0) {
      write_resource(field.payload);
      return true;
    }
    if (field.number == f::kScopeSpans) {
      const std::uint32_t s = scope++;
      if (scope_dirty_[s] != 0) {
        scope_spans(s, content);
        return true;
      }
    }
    return false;
  });
  if (!ref.has_resource && resource_attrs_dirty_[r] != 0) {
    write_resource({});
  }
  otlp::put_len_field(out, f::kResourceSpans, content);
}

void Edits::scope_spans(std::uint32_t s, std::string& out) {
  const RequestView& v = *view_;
  std::string& content = scratch_[1];
  content.clear();
  std::uint32_t span_index = v.scopes[s].spans.first;
  rewrite_fields(payload_of(v.text(v.scopes[s].field)), content, [&](const Field& field) {
    if (field.number != f::kSpans || field.type != kLen) {
      return false;
    }
    const std::uint32_t sp = span_index++;
    if (span_state_[sp].dropped) {
      return true;
    }
    if (span_state_[sp].dirty) {
      span(sp, content);
      return true;
    }
    return false;
  });
  otlp::put_len_field(out, f::kScopeSpans, content);
}

void Edits::span(std::uint32_t s, std::string& out) {
  const RequestView& v = *view_;
  const SpanRef& ref = v.spans[s];
  std::string& content = scratch_[2];
  content.clear();
  std::uint32_t attribute = ref.attributes.first;
  std::uint32_t event_index = ref.events.first;
  bool wrote_trace_state = false;
  rewrite_fields(payload_of(v.text(ref.field)), content, [&](const Field& field) {
    if (field.type != kLen) {
      return false;
    }
    switch (field.number) {
      case f::kSpanAttributes: {
        return write_edited(attribute++, f::kSpanAttributes, content);
      }
      case f::kEvents: {
        const std::uint32_t e = event_index++;
        if (event_dirty_[e] != 0) {
          event(e, content);
          return true;
        }
        return false;
      }
      case f::kTraceState:
        if (span_state_[s].trace_state_set) {
          if (!wrote_trace_state && !trace_states_[s].empty()) {
            otlp::put_len_field(content, f::kTraceState, trace_states_[s]);
          }
          wrote_trace_state = true;
          return true;
        }
        return false;
      default:
        return false;
    }
  });
  if (span_state_[s].trace_state_set && !wrote_trace_state && !trace_states_[s].empty()) {
    otlp::put_len_field(content, f::kTraceState, trace_states_[s]);
  }
  write_appended(Owner::kSpan, s, f::kSpanAttributes, content);
  otlp::put_len_field(out, f::kSpans, content);
}

void Edits::event(std::uint32_t e, std::string& out) {
  const RequestView& v = *view_;
  std::string& content = scratch_[3];
  content.clear();
  std::uint32_t attribute = v.events[e].attributes.first;
  rewrite_fields(payload_of(v.text(v.events[e].field)), content, [&](const Field& field) {
    if (field.number != f::kEventAttributes || field.type != kLen) {
      return false;
    }
    return write_edited(attribute++, f::kEventAttributes, content);
  });
  write_appended(Owner::kEvent, e, f::kEventAttributes, content);
  otlp::put_len_field(out, f::kEvents, content);
}

}  // namespace spanrelay::processors
