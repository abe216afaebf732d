#include "processors/sampler.hpp"

#include <algorithm>
#include <cmath>
#include <string>

namespace spanrelay::processors {

namespace {

constexpr std::size_t max_tracestate_members = 32;   // W3C Trace Context, tracestate list
constexpr std::size_t max_tracestate_length = 1024;  // Collector pkg/sampling cap
constexpr std::size_t max_key_length = 256;          // simple-key: lcalpha 0*255(...)
constexpr std::size_t max_tenant_length = 241;       // tenant-id: 1 + 0*240
constexpr std::size_t max_system_length = 14;        // system-id: lcalpha 0*13
constexpr std::size_t max_value_length = 256;        // value: 0*255(chr) nblk-chr
constexpr std::size_t max_ot_length = 256;           // OpenTelemetry tracestate-handling.md

// Never sampled: compares greater than every 56-bit randomness value.
constexpr std::uint64_t never_threshold = max_adjusted_count;
// Used when there is no randomness: sampled at every threshold below "never".
constexpr std::uint64_t all_probabilities_randomness = max_adjusted_count - 1;

bool is_lc_alpha(char c) { return c >= 'a' && c <= 'z'; }
bool is_digit(char c) { return c >= '0' && c <= '9'; }
bool is_key_char(char c) {
  return is_lc_alpha(c) || is_digit(c) || c == '_' || c == '-' || c == '*' || c == '/';
}
bool is_nonblank_value_char(char c) {
  const auto u = static_cast<unsigned char>(c);
  return u >= 0x21 && u <= 0x7e && c != ',' && c != '=';
}
bool is_value_char(char c) { return c == ' ' || is_nonblank_value_char(c); }
bool is_ot_value_char(char c) {
  return is_lc_alpha(c) || (c >= 'A' && c <= 'Z') || is_digit(c) || c == '.' || c == '_' ||
         c == '-';
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

std::optional<std::uint64_t> parse_hex(std::string_view s) {
  std::uint64_t v = 0;
  for (char c : s) {
    const int d = hex_value(c);
    if (d < 0) return std::nullopt;
    v = (v << 4) | static_cast<std::uint64_t>(d);
  }
  return v;
}

std::string_view trim_ows(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

bool valid_key_rest(std::string_view s) { return std::all_of(s.begin(), s.end(), is_key_char); }

// key = simple-key / multi-tenant-key (W3C Trace Context, tracestate key).
bool valid_w3c_key(std::string_view key) {
  if (key.empty() || key.size() > max_key_length) return false;
  const auto at = key.find('@');
  if (at == std::string_view::npos) return is_lc_alpha(key[0]) && valid_key_rest(key.substr(1));
  const auto tenant = key.substr(0, at);
  const auto system = key.substr(at + 1);
  if (tenant.empty() || system.empty()) return false;
  if (tenant.size() > max_tenant_length || system.size() > max_system_length) return false;
  if (!(is_lc_alpha(tenant[0]) || is_digit(tenant[0])) || !is_lc_alpha(system[0])) return false;
  return valid_key_rest(tenant.substr(1)) && valid_key_rest(system.substr(1));
}

bool valid_w3c_value(std::string_view value) {
  if (value.empty() || value.size() > max_value_length) return false;
  if (!is_nonblank_value_char(value.back())) return false;
  return std::all_of(value.begin(), value.end() - 1, is_value_char);
}

// The value of the `ot` entry: list = member *(";" member), member = key ":" value,
// key = lcalpha *(lcalpha / DIGIT), value = *(ALPHA / DIGIT / "." / "_" / "-").
bool parse_ot_value(std::string_view text, TraceState& ts) {
  ts.rv.reset();
  ts.rv_value = 0;
  ts.th.reset();
  ts.th_value = 0;
  ts.ot_extra.clear();
  if (text.empty() || text.size() > max_ot_length || text.back() == ';') return false;
  bool ok = true;
  while (!text.empty()) {
    const auto semi = text.find(';');
    const auto member = text.substr(0, semi);
    text = semi == std::string_view::npos ? std::string_view{} : text.substr(semi + 1);
    const auto colon = member.find(':');
    if (member.empty() || colon == std::string_view::npos || colon == 0) return false;
    const auto key = member.substr(0, colon);
    const auto value = member.substr(colon + 1);
    if (!is_lc_alpha(key[0])) return false;
    if (!std::all_of(key.begin() + 1, key.end(),
                     [](char c) { return is_lc_alpha(c) || is_digit(c); }))
      return false;
    if (!std::all_of(value.begin(), value.end(), is_ot_value_char)) return false;
    if (key == "rv") {
      if (auto r = parse_randomness(value)) {
        ts.rv = std::string(value);
        ts.rv_value = *r;
      } else {
        ts.rv.reset();
        ok = false;
      }
    } else if (key == "th") {
      if (auto t = parse_threshold(value)) {
        ts.th = std::string(value);
        ts.th_value = *t;
      } else {
        ts.th.reset();
        ok = false;
      }
    } else {
      ts.ot_extra.push_back({std::string(key), std::string(value)});
    }
  }
  return ok;
}

bool trace_id_empty(const TraceId& id) {
  return std::all_of(id.begin(), id.end(), [](std::uint8_t b) { return b == 0; });
}

}  // namespace

// ---- thresholds and randomness ----

std::optional<std::uint64_t> probability_to_threshold(double probability, int precision) {
  if (precision <= 0 || precision > max_threshold_digits) precision = max_threshold_digits;
  if (!(probability >= min_sampling_probability && probability <= 1.0)) return std::nullopt;
  if (probability == 1.0) return 0;
  // More digits near the extremes: a leading hex 0 or f appears for every factor of 16 by
  // which p (leading f's) or 1 - p (leading 0's) falls below 1.
  int exp_p = 0;
  int exp_q = 0;
  std::frexp(probability, &exp_p);
  std::frexp(1.0 - probability, &exp_q);
  precision =
      std::min(max_threshold_digits, std::max(precision + exp_p / -4, precision + exp_q / -4));
  const auto accepted =
      static_cast<std::uint64_t>(std::round(probability * static_cast<double>(max_adjusted_count)));
  std::uint64_t threshold = max_adjusted_count - accepted;
  if (const int shift = 4 * (max_threshold_digits - precision); shift != 0) {
    threshold += std::uint64_t{1} << (shift - 1);  // half-up at the last kept digit
    threshold >>= shift;
    threshold <<= shift;
  }
  return threshold;
}

double threshold_to_probability(std::uint64_t threshold) noexcept {
  return static_cast<double>(max_adjusted_count - threshold) /
         static_cast<double>(max_adjusted_count);
}

std::string encode_threshold(std::uint64_t threshold) {
  if (threshold == 0) return "0";
  if (threshold >= max_adjusted_count) return "";
  static constexpr char digits[] = "0123456789abcdef";
  std::string out(max_threshold_digits, '0');
  for (int i = max_threshold_digits - 1; i >= 0; --i) {
    out[static_cast<std::size_t>(i)] = digits[threshold & 0xf];
    threshold >>= 4;
  }
  out.erase(out.find_last_not_of('0') + 1);
  return out;
}

std::optional<std::uint64_t> parse_threshold(std::string_view th) noexcept {
  if (th.empty() || th.size() > static_cast<std::size_t>(max_threshold_digits)) return std::nullopt;
  const auto v = parse_hex(th);
  if (!v) return std::nullopt;
  return *v << (4 * (static_cast<std::size_t>(max_threshold_digits) - th.size()));
}

std::optional<std::uint64_t> parse_randomness(std::string_view rv) noexcept {
  if (rv.size() != static_cast<std::size_t>(max_threshold_digits)) return std::nullopt;
  return parse_hex(rv);
}

std::uint64_t trace_id_randomness(const TraceId& id) noexcept {
  std::uint64_t v = 0;
  for (std::size_t i = 9; i < 16; ++i) v = (v << 8) | id[i];
  return v;
}

// ---- tracestate ----

TraceState parse_tracestate(std::string_view text) {
  TraceState ts;
  if (text.empty()) return ts;
  const auto invalid = [] {
    TraceState bad;
    bad.valid = false;
    return bad;
  };
  if (text.size() > max_tracestate_length) return invalid();
  std::size_t elements = 0;
  std::string_view rest = text;
  bool more = true;
  while (more) {
    const auto comma = rest.find(',');
    more = comma != std::string_view::npos;
    const auto member = trim_ows(rest.substr(0, comma));
    rest = more ? rest.substr(comma + 1) : std::string_view{};
    if (++elements > max_tracestate_members) return invalid();
    if (member.empty()) continue;  // W3C allows empty list members
    const auto eq = member.find('=');
    if (eq == std::string_view::npos || eq == 0) return invalid();
    const auto key = member.substr(0, eq);
    const auto value = member.substr(eq + 1);
    if (!valid_w3c_key(key) || !valid_w3c_value(value)) return invalid();
    if (key == "ot") {
      if (!parse_ot_value(value, ts)) return invalid();
    } else {
      ts.members.push_back({std::string(key), std::string(value)});
    }
  }
  return ts;
}

std::string serialize_tracestate(const TraceState& ts) {
  std::string out;
  if (ts.has_ot()) {
    out += "ot=";
    bool first = true;
    const auto sub = [&](std::string_view k, std::string_view v) {
      if (!first) out += ';';
      first = false;
      out += k;
      out += ':';
      out += v;
    };
    if (ts.rv) sub("rv", *ts.rv);
    if (ts.th) sub("th", *ts.th);
    for (const auto& kv : ts.ot_extra) sub(kv.key, kv.value);
  }
  for (const auto& m : ts.members) {
    if (!out.empty()) out += ',';
    out += m.key;
    out += '=';
    out += m.value;
  }
  return out;
}

// ---- sampler ----

const char* reason_name(Reason r) noexcept {
  switch (r) {
    case Reason::sampled:
      return "sampled";
    case Reason::sampled_out:
      return "sampled_out";
    case Reason::invalid_tracestate:
      return "invalid_tracestate";
    case Reason::missing_randomness:
      return "missing_randomness";
    case Reason::inconsistent_threshold:
      return "inconsistent_threshold";
    case Reason::priority:
      return "priority";
  }
  return "unknown";
}

std::string Sampler::validate(const SamplerConfig& config) {
  const double pct = static_cast<double>(config.percentage);
  if (std::isnan(pct) || std::isinf(pct))
    return "probabilistic_sampler: percentage is not a number";
  if (pct < 0) return "probabilistic_sampler: percentage is negative";
  if (pct != 0 && pct / 100 < min_sampling_probability)
    return "probabilistic_sampler: percentage is below the smallest probability, 2^-56";
  if (config.precision < 1 || config.precision > max_threshold_digits)
    return "probabilistic_sampler: sampling_precision must be 1..14";
  return {};
}

Sampler::Sampler(const SamplerConfig& config) : config_(config) {
  // As the Collector: the float32 percentage widened to double before dividing by 100.
  double pct = static_cast<double>(config.percentage);
  if (pct > 100) pct = 100;
  never_ = !(pct > 0);
  ratio_ = std::max(pct / 100, min_sampling_probability);
  base_threshold_ =
      never_ ? never_threshold
             : probability_to_threshold(ratio_, config_.precision).value_or(never_threshold);
}

std::uint64_t Sampler::threshold_for(const TraceState* ts) const {
  if (never_) return never_threshold;
  const bool has_th = ts != nullptr && ts->th.has_value();
  if (config_.mode == SamplerMode::equalizing)
    return has_th ? std::max(base_threshold_, ts->th_value) : base_threshold_;
  if (!has_th) return base_threshold_;
  // Proportional: multiply the arriving probability; below 2^-56 the span is not sampled.
  const double product = threshold_to_probability(ts->th_value) * ratio_;
  return probability_to_threshold(product, config_.precision).value_or(never_threshold);
}

Decision Sampler::decide(const TraceId& trace_id, std::string_view tracestate, std::uint32_t flags,
                         SamplingPriority priority) const {
  Decision d;
  TraceState ts = parse_tracestate(tracestate);
  const bool usable = ts.valid;  // a tracestate that can be read and rewritten
  const bool ignore = config_.on_error == ErrorPolicy::ignore_tracestate;

  // Randomness: rv, else the trace id (presumed random whatever the flag says), else none.
  std::uint64_t randomness = all_probabilities_randomness;
  if (usable && ts.rv) {
    randomness = ts.rv_value;
    d.source = RandomnessSource::rv;
  } else if ((usable || ignore) && !trace_id_empty(trace_id)) {
    randomness = trace_id_randomness(trace_id);
    d.source = RandomnessSource::trace_id;
    d.randomness_presumed = (flags & w3c_random_flag) == 0;
  }
  // At 0 % nothing is sampled by probability: no randomness is needed (so none is missing and
  // no arriving th is inconsistent), as in the Collector.
  if (never_) randomness = all_probabilities_randomness;
  d.tracestate_invalid = !usable;

  // Errors, in the Collector's order: unparsable tracestate; then (not for 0 %, which needs no
  // randomness) missing randomness; then an arriving th that R contradicts, which is erased.
  std::optional<Reason> error;
  if (!usable && !ignore) error = Reason::invalid_tracestate;
  if (!error && !never_ && d.source == RandomnessSource::missing)
    error = Reason::missing_randomness;
  if (!error && usable && ts.th && !should_sample(ts.th_value, randomness)) {
    ts.th.reset();
    ts.th_value = 0;
    if (!ignore) error = Reason::inconsistent_threshold;
  }

  std::uint64_t threshold = 0;
  if (error) {
    // ignore_tracestate only reaches here for missing randomness, which it drops.
    threshold = config_.on_error == ErrorPolicy::fail_open ? 0 : never_threshold;
  } else {
    threshold = threshold_for(usable ? &ts : nullptr);
  }
  if (priority == SamplingPriority::drop) threshold = never_threshold;
  if (priority == SamplingPriority::keep) threshold = 0;

  d.threshold = threshold;
  d.keep = should_sample(threshold, randomness);
  if (priority != SamplingPriority::defer) {
    d.reason = Reason::priority;
  } else if (error) {
    d.reason = *error;
  } else {
    d.reason = d.keep ? Reason::sampled : Reason::sampled_out;
  }
  if (!d.keep) return d;

  if (!usable) {  // left exactly as received
    d.tracestate = std::string(tracestate);
    return d;
  }
  // A downstream sampler may raise the recorded threshold, never lower it.
  if (!ts.th || ts.th_value <= threshold) {
    ts.th = encode_threshold(threshold);
    ts.th_value = threshold;
  }
  d.tracestate = serialize_tracestate(ts);
  d.tracestate_changed = d.tracestate != tracestate;
  return d;
}

}  // namespace spanrelay::processors
