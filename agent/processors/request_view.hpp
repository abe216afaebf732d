#pragma once
// The processors' view of one ExportTraceServiceRequest in wire form: an index of its
// resources, scopes, spans, events and attributes (offsets and views into the request bytes,
// nothing decoded into message objects), and an edit list that rewrites only the messages it
// touches and copies every other byte as it is.
//
// Both are reused from request to request (clear() keeps their capacity); neither is
// thread-safe.

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace spanrelay::processors {

// A field of the request, tag included: [begin, end) offsets into the request bytes.
struct FieldRange {
  std::uint32_t begin = 0;
  std::uint32_t end = 0;
};

enum class ValueType : std::uint8_t { kNone, kString, kBool, kInt, kDouble, kArray, kKvList, kBytes };

// What owns an attribute: resources, spans and span events carry the attributes processors edit.
enum class Owner : std::uint8_t { kResource, kSpan, kEvent };

struct AttributeRef {
  FieldRange field{};        // the KeyValue field
  FieldRange value_field{};  // its AnyValue field (empty range when absent)
  std::string_view key{};
  ValueType type = ValueType::kNone;
  std::string_view string_value{};  // kString and kBytes
  std::uint64_t number = 0;  // kInt (two's complement), kDouble (IEEE bits), kBool (0 or 1)
  Owner owner = Owner::kSpan;
  std::uint32_t owner_index = 0;  // into resources, spans or events
};

// [first, first + count) of another list.
struct Slice {
  std::uint32_t first = 0;
  std::uint32_t count = 0;
};

struct ResourceRef {
  FieldRange field{};          // the ResourceSpans field
  bool has_resource = false;
  Slice attributes{};          // the Resource's
  Slice scopes{};
};

struct ScopeRef {
  FieldRange field{};  // the ScopeSpans field
  std::uint32_t resource = 0;
  Slice spans{};
};

struct SpanRef {
  FieldRange field{};
  std::uint32_t resource = 0;
  std::uint32_t scope = 0;
  std::string_view trace_id{};
  std::string_view span_id{};
  std::string_view parent_span_id{};
  std::string_view trace_state{};
  std::string_view name{};
  std::uint32_t kind = 0;        // Span.SpanKind
  std::uint32_t status_code = 0; // Status.StatusCode
  std::uint32_t flags = 0;       // W3C trace flags in the low 8 bits
  Slice attributes{};
  Slice events{};
};

struct EventRef {
  FieldRange field{};
  std::uint32_t span = 0;
  std::string_view name{};
  Slice attributes{};
};

class RequestView {
 public:
  // Indexes `request`, which must stay alive and unchanged while the view is used. False when
  // it is not a well-formed request (the intake's scanner refuses such bytes before).
  bool index(std::string_view request);

  std::string_view bytes() const noexcept { return bytes_; }
  std::string_view text(FieldRange f) const noexcept { return bytes_.substr(f.begin, f.end - f.begin); }
  Slice attributes_of(Owner owner, std::uint32_t index) const noexcept;

  std::vector<ResourceRef> resources;
  std::vector<ScopeRef> scopes;
  std::vector<SpanRef> spans;
  std::vector<EventRef> events;
  std::vector<AttributeRef> attributes;

 private:
  bool resource_spans(std::string_view payload, FieldRange field);
  bool scope_spans(std::string_view payload, FieldRange field, std::uint32_t resource);
  bool span(std::string_view payload, FieldRange field, std::uint32_t resource, std::uint32_t scope);
  bool attribute(std::string_view payload, FieldRange field, Owner owner, std::uint32_t index);
  FieldRange range_of(const void* begin, const void* end) const noexcept;

  std::string_view bytes_;
};

// The serialized content of a KeyValue (key + AnyValue string).
std::string key_value_string(std::string_view key, std::string_view value);
// A KeyValue with `key` and the AnyValue field copied from another attribute.
std::string key_value_with(std::string_view key, std::string_view any_value_field);

// Edits to one indexed request, applied in one pass. Lookups see the edits made so far, so a
// sequence of actions (rename, then set the new name) behaves as if applied one by one.
class Edits {
 public:
  void reset(const RequestView& view);
  bool empty() const noexcept { return !any_; }

  void drop_span(std::uint32_t span);
  bool span_dropped(std::uint32_t span) const noexcept { return span_state_[span].dropped; }
  void set_trace_state(std::uint32_t span, std::string trace_state);

  // The attribute `key` of an owner as edited so far: an index into view.attributes, an
  // appended one (kAppended), or kNone.
  static constexpr std::uint32_t kNone = 0xffffffffu;
  static constexpr std::uint32_t kAppended = 0xfffffffeu;
  std::uint32_t find(Owner owner, std::uint32_t index, std::string_view key) const;
  void delete_attribute(std::uint32_t attribute);
  // Deletes every attribute `key` of the owner, appended ones included; true if there was one.
  bool delete_key(Owner owner, std::uint32_t index, std::string_view key);
  // Replaces an attribute with a serialized KeyValue (content, without its tag and length).
  void replace_attribute(std::uint32_t attribute, std::string key, std::string key_value);
  // Adds an attribute at the end of the owner's list; replaces one appended before with the
  // same key.
  void append_attribute(Owner owner, std::uint32_t index, std::string key, std::string key_value);
  // Gives the owner's attribute `from` the key `to` (any attribute `to` goes first); false when
  // there is no `from`.
  bool rename_key(Owner owner, std::uint32_t index, std::string_view from, std::string_view to);

  // Writes the edited request to `out` (replaced). Untouched resources, scopes and spans are
  // copied byte for byte.
  void apply(std::string& out);

 private:
  struct AttributeEdit {
    enum State : std::uint8_t { kKeep, kDelete, kReplace } state = kKeep;
    std::string key;        // kReplace: the key now
    std::string key_value;  // kReplace: the new KeyValue content
  };
  struct Appended {
    Owner owner;
    std::uint32_t index;
    std::string key;
    std::string key_value;
    bool deleted = false;
  };
  struct SpanState {
    bool dropped = false;
    bool dirty = false;  // something inside changes
    bool trace_state_set = false;
  };

  void touch(Owner owner, std::uint32_t index);
  Appended* find_appended(Owner owner, std::uint32_t index, std::string_view key);
  std::string_view effective_key(std::uint32_t attribute) const;
  bool write_edited(std::uint32_t attribute, std::uint32_t field_number, std::string& out) const;
  void write_appended(Owner owner, std::uint32_t index, std::uint32_t field_number,
                      std::string& out) const;
  void resource_spans(std::uint32_t r, std::string& out);
  void scope_spans(std::uint32_t s, std::string& out);
  void span(std::uint32_t s, std::string& out);
  void event(std::uint32_t e, std::string& out);

  const RequestView* view_ = nullptr;
  bool any_ = false;
  std::vector<AttributeEdit> attribute_edits_;
  std::vector<Appended> appended_;
  std::vector<SpanState> span_state_;
  std::vector<std::string> trace_states_;  // by span, when trace_state_set
  std::vector<std::uint8_t> resource_dirty_;
  std::vector<std::uint8_t> resource_attrs_dirty_;
  std::vector<std::uint8_t> scope_dirty_;
  std::vector<std::uint8_t> event_dirty_;
  std::vector<std::string> scratch_;  // one buffer per nesting level, reused
};

}  // namespace spanrelay::processors
