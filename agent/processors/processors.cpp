#include "processors/processors.hpp"

#include <openssl/evp.h>
#include <re2/re2.h>

#include <algorithm>
#include <bit>
#include <charconv>
#include <stdexcept>
#include <unordered_map>

#include "otlp/wire.hpp"
#include "processors/sql_redact.hpp"

namespace spanrelay::processors {

// ---- DropCounts ----

void DropCounts::declare(std::string reason) {
  for (const auto& e : entries_) {
    if (e->reason == reason) {
      return;
    }
  }
  auto entry = std::make_unique<Entry>();
  entry->reason = std::move(reason);
  entries_.push_back(std::move(entry));
}

Counter& DropCounts::operator[](std::string_view reason) {
  for (const auto& e : entries_) {
    if (e->reason == reason) {
      return e->count;
    }
  }
  return entries_.back()->count;  // undeclared: counted with the last declared reason
}

namespace {

// ---- values ----

std::string any_value(const Value& value) {
  std::string any;
  std::visit(
      [&](const auto& v) {
        using T = std::decay_t<decltype(v)>;
        if constexpr (std::is_same_v<T, std::string>) {
          otlp::put_len_field(any, 1, v);
        } else if constexpr (std::is_same_v<T, bool>) {
          otlp::put_varint_field(any, 2, v ? 1 : 0);
        } else if constexpr (std::is_same_v<T, std::int64_t>) {
          otlp::put_varint_field(any, 3, static_cast<std::uint64_t>(v));
        } else {
          any += static_cast<char>((4 << 3) | 1);  // double_value, fixed64
          const auto bits = std::bit_cast<std::uint64_t>(v);
          for (int i = 0; i < 8; ++i) {
            any += static_cast<char>(bits >> (8 * i));
          }
        }
      },
      value);
  return any;
}

std::string key_value(std::string_view key, const Value& value) {
  std::string kv;
  otlp::put_len_field(kv, 1, key);
  otlp::put_len_field(kv, 2, any_value(value));
  return kv;
}

// An attribute's value as text, for rules that compare values; false for arrays, maps, bytes.
bool value_text(const AttributeRef& a, std::string& out) {
  char buf[32];
  switch (a.type) {
    case ValueType::kString:
      out.assign(a.string_value);
      return true;
    case ValueType::kInt: {
      const auto r = std::to_chars(buf, buf + sizeof buf, static_cast<std::int64_t>(a.number));
      out.assign(buf, r.ptr);
      return true;
    }
    case ValueType::kBool:
      out = a.number != 0 ? "true" : "false";
      return true;
    case ValueType::kDouble: {
      const auto r = std::to_chars(buf, buf + sizeof buf, std::bit_cast<double>(a.number));
      out.assign(buf, r.ptr);
      return true;
    }
    default:
      return false;
  }
}

Owner owner_of(Scope s) noexcept {
  switch (s) {
    case Scope::kResource: return Owner::kResource;
    case Scope::kEvent: return Owner::kEvent;
    case Scope::kSpan: break;
  }
  return Owner::kSpan;
}

std::uint32_t owner_count(const RequestView& view, Owner owner) noexcept {
  switch (owner) {
    case Owner::kResource: return static_cast<std::uint32_t>(view.resources.size());
    case Owner::kEvent: return static_cast<std::uint32_t>(view.events.size());
    case Owner::kSpan: break;
  }
  return static_cast<std::uint32_t>(view.spans.size());
}

// ---- attributes ----

class AttributesProcessor final : public Processor {
 public:
  AttributesProcessor(std::string name, AttributesOptions options)
      : Processor(std::move(name)), options_(std::move(options)) {
    for (const AttributeAction& a : options_.actions) {
      key_values_.push_back(key_value(a.key, a.value));
    }
  }

  void process(const RequestView& view, Edits& edits) const override {
    for (std::size_t i = 0; i < options_.actions.size(); ++i) {
      const AttributeAction& a = options_.actions[i];
      const Owner owner = owner_of(a.scope);
      const std::uint32_t n = owner_count(view, owner);
      for (std::uint32_t o = 0; o < n; ++o) {
        if (apply(a, key_values_[i], owner, o, edits)) {
          add(edited_);
        }
      }
    }
  }

 private:
  static bool apply(const AttributeAction& a, const std::string& kv, Owner owner, std::uint32_t o,
                    Edits& edits) {
    using Kind = AttributeAction::Kind;
    switch (a.action) {
      case Kind::kDelete:
        return edits.delete_key(owner, o, a.key);
      case Kind::kRename:
        return edits.rename_key(owner, o, a.key, a.to);
      case Kind::kInsert:
      case Kind::kUpdate:
      case Kind::kUpsert: {
        const std::uint32_t found = edits.find(owner, o, a.key);
        if (found == Edits::kNone) {
          if (a.action == Kind::kUpdate) {
            return false;
          }
          edits.append_attribute(owner, o, a.key, kv);
          return true;
        }
        if (a.action == Kind::kInsert) {
          return false;
        }
        if (found == Edits::kAppended) {
          edits.append_attribute(owner, o, a.key, kv);  // replaces the appended one
        } else {
          edits.replace_attribute(found, a.key, kv);
        }
        return true;
      }
    }
    return false;
  }

  AttributesOptions options_;
  std::vector<std::string> key_values_;  // by action: the KeyValue it writes
};

// ---- redact ----

std::string sha256_hex(std::string_view data) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int size = 0;
  if (EVP_Digest(data.data(), data.size(), digest, &size, EVP_sha256(), nullptr) != 1) {
    return "<redacted>";
  }
  static constexpr char hex[] = "0123456789abcdef";
  std::string out;
  out.reserve(size * 2);
  for (unsigned int i = 0; i < size; ++i) {
    out += hex[digest[i] >> 4];
    out += hex[digest[i] & 15];
  }
  return out;
}

// At most max_bytes, cut at a UTF-8 character boundary.
std::string_view truncate_utf8(std::string_view s, std::size_t max_bytes) {
  if (s.size() <= max_bytes) {
    return s;
  }
  std::size_t n = max_bytes;
  while (n > 0 && (static_cast<unsigned char>(s[n]) & 0xc0) == 0x80) {
    --n;
  }
  return s.substr(0, n);
}

std::unique_ptr<RE2> compile(const std::string& pattern, const char* what) {
  RE2::Options options;
  options.set_log_errors(false);
  auto re = std::make_unique<RE2>(pattern, options);
  if (!re->ok()) {
    throw std::invalid_argument(std::string(what) + ": invalid regular expression \"" + pattern +
                                "\": " + re->error());
  }
  return re;
}

class RedactProcessor final : public Processor {
 public:
  RedactProcessor(std::string name, RedactOptions options)
      : Processor(std::move(name)), options_(std::move(options)) {
    for (const auto& p : options_.delete_keys_matching) {
      key_patterns_.push_back(compile(p, "delete_keys_matching"));
    }
    for (const auto& p : options_.delete_values_matching) {
      value_patterns_.push_back(compile(p, "delete_values_matching"));
    }
  }

  void process(const RequestView& view, Edits& edits) const override {
    for (std::uint32_t i = 0; i < view.attributes.size(); ++i) {
      const AttributeRef& a = view.attributes[i];
      if (matches_delete(a)) {
        edits.delete_attribute(i);
        add(edited_);
        continue;
      }
      if (a.type != ValueType::kString ||
          std::find(options_.keys.begin(), options_.keys.end(), a.key) == options_.keys.end()) {
        continue;
      }
      std::string value = redacted(a.string_value);
      if (value != a.string_value) {
        edits.replace_attribute(i, std::string(a.key), key_value(a.key, Value(std::move(value))));
        add(edited_);
      }
    }
  }

 private:
  bool matches_delete(const AttributeRef& a) const {
    for (const auto& re : key_patterns_) {
      if (RE2::PartialMatch(re2::StringPiece(a.key.data(), a.key.size()), *re)) {
        return true;
      }
    }
    if (a.type == ValueType::kString) {
      for (const auto& re : value_patterns_) {
        if (RE2::PartialMatch(re2::StringPiece(a.string_value.data(), a.string_value.size()), *re)) {
          return true;
        }
      }
    }
    return false;
  }

  std::string redacted(std::string_view value) const {
    switch (options_.mode) {
      case RedactOptions::Mode::kSqlLiterals:
        return redact_sql_literals(value);
      case RedactOptions::Mode::kHash:
        return sha256_hex(value);
      case RedactOptions::Mode::kTruncate:
        return std::string(truncate_utf8(value, options_.max_bytes));
    }
    return std::string(value);
  }

  RedactOptions options_;
  std::vector<std::unique_ptr<RE2>> key_patterns_;
  std::vector<std::unique_ptr<RE2>> value_patterns_;
};

// ---- filter ----

constexpr std::string_view kParentDropped = "parent_dropped";

class FilterProcessor final : public Processor {
 public:
  FilterProcessor(std::string name, FilterOptions options)
      : Processor(std::move(name)), options_(std::move(options)) {
    for (std::size_t i = 0; i < options_.drop_spans.size(); ++i) {
      SpanRule& rule = options_.drop_spans[i];
      if (rule.name.empty()) {
        rule.name = "rule_" + std::to_string(i + 1);
      }
      drops_.declare(rule.name);
    }
    drops_.declare(std::string(kParentDropped));
  }

  void process(const RequestView& view, Edits& edits) const override {
    const auto n = static_cast<std::uint32_t>(view.spans.size());
    std::vector<std::uint32_t> dropped;
    std::string text;
    for (std::uint32_t s = 0; s < n; ++s) {
      if (edits.span_dropped(s)) {
        continue;
      }
      for (const SpanRule& rule : options_.drop_spans) {
        if (matches(view, s, rule, text)) {
          edits.drop_span(s);
          add(drops_[rule.name]);
          dropped.push_back(s);
          break;
        }
      }
    }
    if (dropped.empty()) {
      return;
    }
    // Their descendants in this request go too: no span is left pointing at a dropped parent.
    std::unordered_map<std::string_view, std::vector<std::uint32_t>> children;
    std::string key;
    std::vector<std::string> keys;
    keys.reserve(n);
    for (std::uint32_t s = 0; s < n; ++s) {
      const SpanRef& sp = view.spans[s];
      if (!sp.parent_span_id.empty() && !edits.span_dropped(s)) {
        keys.push_back(std::string(sp.trace_id).append(sp.parent_span_id));
        children[keys.back()].push_back(s);
      }
    }
    while (!dropped.empty()) {
      const SpanRef& parent = view.spans[dropped.back()];
      dropped.pop_back();
      key.assign(parent.trace_id).append(parent.span_id);
      const auto it = children.find(key);
      if (it == children.end()) {
        continue;
      }
      for (const std::uint32_t child : it->second) {
        if (!edits.span_dropped(child)) {
          edits.drop_span(child);
          add(drops_[kParentDropped]);
          dropped.push_back(child);
        }
      }
    }
  }

 private:
  static bool any_of_values(const RequestView& view, Slice attributes, const std::string& key,
                            const std::vector<std::string>& values, std::string& text) {
    // The last attribute with the key is the one that counts (duplicates are rare).
    for (std::uint32_t i = attributes.first + attributes.count; i-- > attributes.first;) {
      const AttributeRef& a = view.attributes[i];
      if (a.key == key) {
        return value_text(a, text) && std::find(values.begin(), values.end(), text) != values.end();
      }
    }
    return false;
  }

  static bool matches(const RequestView& view, std::uint32_t s, const SpanRule& rule,
                      std::string& text) {
    const SpanRef& sp = view.spans[s];
    if (!rule.span_names.empty() &&
        std::find(rule.span_names.begin(), rule.span_names.end(), sp.name) == rule.span_names.end()) {
      return false;
    }
    if (!rule.kinds.empty() &&
        std::find(rule.kinds.begin(), rule.kinds.end(), sp.kind) == rule.kinds.end()) {
      return false;
    }
    if (!rule.statuses.empty() &&
        std::find(rule.statuses.begin(), rule.statuses.end(), sp.status_code) == rule.statuses.end()) {
      return false;
    }
    for (const auto& [key, values] : rule.attributes) {
      if (!any_of_values(view, sp.attributes, key, values, text)) {
        return false;
      }
    }
    for (const auto& [key, values] : rule.resource) {
      if (!any_of_values(view, view.resources[sp.resource].attributes, key, values, text)) {
        return false;
      }
    }
    return true;
  }

  FilterOptions options_;
};

// ---- probabilistic_sampler ----

class SamplerProcessor final : public Processor {
 public:
  SamplerProcessor(std::string name, const SamplerConfig& config)
      : Processor(std::move(name)), sampler_(config) {
    for (const Reason r : {Reason::sampled_out, Reason::invalid_tracestate,
                           Reason::missing_randomness, Reason::inconsistent_threshold,
                           Reason::priority}) {
      drops_.declare(reason_name(r));
    }
  }

  void process(const RequestView& view, Edits& edits) const override {
    TraceId id{};
    for (std::uint32_t s = 0; s < view.spans.size(); ++s) {
      const SpanRef& sp = view.spans[s];
      if (edits.span_dropped(s)) {
        continue;
      }
      id.fill(0);
      std::copy_n(sp.trace_id.begin(), std::min<std::size_t>(sp.trace_id.size(), id.size()),
                  id.begin());
      Decision d = sampler_.decide(id, sp.trace_state, sp.flags);
      if (!d.keep) {
        edits.drop_span(s);
        add(drops_[reason_name(d.reason)]);
      } else if (d.tracestate_changed) {
        edits.set_trace_state(s, std::move(d.tracestate));
      }
    }
  }

 private:
  Sampler sampler_;
};

}  // namespace

std::unique_ptr<Processor> make_processor(const ProcessorOptions& o) {
  switch (o.type) {
    case ProcessorOptions::Type::kAttributes:
      return std::make_unique<AttributesProcessor>(o.name, o.attributes);
    case ProcessorOptions::Type::kRedact:
      return std::make_unique<RedactProcessor>(o.name, o.redact);
    case ProcessorOptions::Type::kFilter:
      return std::make_unique<FilterProcessor>(o.name, o.filter);
    case ProcessorOptions::Type::kSampler: {
      const std::string problem = Sampler::validate(o.sampler);
      if (!problem.empty()) {
        throw std::invalid_argument(problem);
      }
      return std::make_unique<SamplerProcessor>(o.name, o.sampler);
    }
  }
  throw std::invalid_argument("unknown processor type");
}

ProcessorChain::ProcessorChain(const std::vector<ProcessorOptions>& options) {
  for (const auto& o : options) {
    processors_.push_back(make_processor(o));
  }
}

std::uint32_t ProcessorChain::run(std::string& request, std::uint32_t spans) const {
  if (processors_.empty()) {
    return spans;
  }
  // One view and edit list per thread, reused: their vectors keep their capacity.
  thread_local RequestView view;
  thread_local Edits edits;
  bool indexed = false;
  for (const auto& p : processors_) {
    if (!indexed && !view.index(request)) {
      return spans;  // not a request the scanner would pass: left alone
    }
    indexed = true;
    edits.reset(view);
    p->process(view, edits);
    if (!edits.empty()) {
      std::string rewritten;  // the old bytes are freed when this returns, not kept per thread
      edits.apply(rewritten);
      request.swap(rewritten);
      indexed = false;
      if (!view.index(request)) {
        return 0;
      }
      indexed = true;
      spans = static_cast<std::uint32_t>(view.spans.size());
    }
  }
  return spans;
}

}  // namespace spanrelay::processors
