#pragma once
// What each processor is configured with (the `processors:` list of the config file). Plain
// data: the config loader fills it, processors/processors.hpp builds the processors from it.

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "processors/sampler.hpp"

namespace spanrelay::processors {

enum class Scope : std::uint8_t { kResource, kSpan, kEvent };

// An attribute value written by a processor: string, integer, double or boolean.
using Value = std::variant<std::string, std::int64_t, double, bool>;

struct AttributeAction {
  enum class Kind : std::uint8_t { kInsert, kUpdate, kUpsert, kDelete, kRename };
  Scope scope = Scope::kSpan;
  std::string key;
  Kind action = Kind::kUpsert;
  Value value{};   // insert, update, upsert
  std::string to{};  // rename: the new key

  bool operator==(const AttributeAction&) const = default;
};

struct AttributesOptions {
  std::vector<AttributeAction> actions;

  bool operator==(const AttributesOptions&) const = default;
};

struct RedactOptions {
  enum class Mode : std::uint8_t { kSqlLiterals, kHash, kTruncate };
  std::vector<std::string> keys = {"db.statement", "db.query.text", "url.query",
                                   "http.request.header.authorization",
                                   "http.request.header.cookie"};
  Mode mode = Mode::kSqlLiterals;
  std::size_t max_bytes = 0;  // kTruncate
  // Attributes deleted outright when a pattern (RE2 syntax) matches anywhere in the key, or
  // in a string value.
  std::vector<std::string> delete_keys_matching;
  std::vector<std::string> delete_values_matching;

  bool operator==(const RedactOptions&) const = default;
};

// One drop rule: every condition given must hold; a list holds when any of its items does.
struct SpanRule {
  std::string name;  // the reason label of what it drops; "rule_<n>" when not given
  std::vector<std::string> span_names;
  std::vector<std::uint32_t> kinds;     // Span.SpanKind values
  std::vector<std::uint32_t> statuses;  // Status.StatusCode values
  // attribute key -> accepted values, compared as text (42, true, 1.5, "x")
  std::vector<std::pair<std::string, std::vector<std::string>>> attributes;
  std::vector<std::pair<std::string, std::vector<std::string>>> resource;

  bool operator==(const SpanRule&) const = default;
};

struct FilterOptions {
  std::vector<SpanRule> drop_spans;

  bool operator==(const FilterOptions&) const = default;
};

struct ProcessorOptions {
  enum class Type : std::uint8_t { kAttributes, kRedact, kFilter, kSampler };
  Type type = Type::kAttributes;
  std::string name;  // for metrics: "<type>" or "<type>/<n>" when a type appears twice
  AttributesOptions attributes;
  RedactOptions redact;
  FilterOptions filter;
  SamplerConfig sampler;

  bool operator==(const ProcessorOptions&) const = default;
};

}  // namespace spanrelay::processors
