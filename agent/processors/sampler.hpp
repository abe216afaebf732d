#pragma once
// Consistent probability sampling of whole traces (the `probabilistic_sampler` processor),
// decided from the trace's randomness alone so that every spanrelay instance, and every
// OpenTelemetry Collector `probabilistic_sampler` in `proportional` (or `equalizing`) mode at the
// same percentage and precision, keeps and drops the same traces and writes the same `th`.
//
// Rules (sources; facts only, no code taken from them):
// - OpenTelemetry specification, trace/tracestate-probability-sampling.md: randomness R is
//   56 bits, either the explicit `rv` sub-key of the `ot` tracestate entry or the least
//   significant 56 bits (last 7 bytes) of the trace id; rejection threshold T is a 56-bit
//   number of rejected values out of 2^56; keep iff R >= T; `th` is T in hex with trailing
//   zeros removed ("0" for T = 0); proportional downstream sampler:
//   T_o = ProbabilityToThreshold(p * ThresholdToProbability(T_s)), not sampled when the product
//   is below the minimum probability 2^-56; downstream samplers may raise a threshold, never
//   lower it; an arriving threshold that contradicts R is erased.
// - Specification, trace/sdk.md "Presumption of TraceID randomness": samplers presume the trace
//   id meets the W3C Trace Context Level 2 randomness requirement unless `rv` is present. So a
//   span whose W3C `random` flag (0x02) is unset is sampled on its trace id all the same; the
//   decision reports it (randomness_presumed) for counting.
// - Collector-contrib processor/probabilisticsamplerprocessor + pkg/sampling (behaviour only):
//   percentage is a float32, ratio = float64(pct) / 100, > 100 means 100, 0 drops all;
//   default sampling_precision 4 (1..14); the probability-to-threshold rounding below; fail_closed
//   (default true) for an unparsable tracestate, missing randomness (all-zero trace id and no
//   rv) and an inconsistent arriving th; `sampling.priority` forces keep / drop; the rewritten
//   tracestate puts `ot` first, then the other members in order, and inside `ot` writes rv, th,
//   then the other sub-keys in order.
//
// Whole-trace property: decide() reads only the trace id, the `rv`/`th` of the span's
// tracestate (identical on every span of a trace when propagated) and the optional
// sampling.priority override. Span id, flags, name, attributes and the other tracestate members
// never change the decision (the flags only set randomness_presumed).

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace spanrelay::processors {

// 2^56: number of distinct randomness values; also the "never sample" threshold.
inline constexpr std::uint64_t max_adjusted_count = std::uint64_t{1} << 56;
inline constexpr int max_threshold_digits = 14;  // 56 bits in hex
inline constexpr int default_sampling_precision = 4;
// W3C trace flags live in the low 8 bits of OTLP Span.flags; bit 1 is the Level 2 random flag.
inline constexpr std::uint32_t w3c_random_flag = 0x02;

using TraceId = std::array<std::uint8_t, 16>;

// ---- thresholds and randomness (56-bit values held in uint64) ----

// Smallest representable probability, 2^-56.
inline constexpr double min_sampling_probability = 1.0 / static_cast<double>(max_adjusted_count);

// Collector rule (pkg/sampling ProbabilityToThresholdWithPrecision): nullopt when p is outside
// [2^-56, 1]; 0 for p == 1; else T = 2^56 - round_half_away(p * 2^56), then rounded half-up to
// `precision` significant hex digits, where precision (1..14) is first raised by one digit per
// four binary orders of magnitude of p and of 1 - p (frexp exponents / -4, truncated), capped
// at 14. The result may be 2^56 (never sample) when rounding carries over.
std::optional<std::uint64_t> probability_to_threshold(double probability, int precision);
// (2^56 - T) / 2^56 in double arithmetic.
double threshold_to_probability(std::uint64_t threshold) noexcept;
// `th` text: "0" for 0, "" for 2^56 (never), else 14 lowercase hex digits minus trailing zeros.
std::string encode_threshold(std::uint64_t threshold);
// `th` value: 1..14 hex digits (either case), extended with trailing zeros to 14.
std::optional<std::uint64_t> parse_threshold(std::string_view th) noexcept;
// `rv` value: exactly 14 hex digits (either case).
std::optional<std::uint64_t> parse_randomness(std::string_view rv) noexcept;
// Least-significant 56 bits of the trace id (bytes 9..15, big-endian).
std::uint64_t trace_id_randomness(const TraceId& id) noexcept;
inline bool should_sample(std::uint64_t threshold, std::uint64_t randomness) noexcept {
  return randomness >= threshold;
}

// ---- W3C tracestate with its OpenTelemetry `ot` entry ----

struct TraceStateMember {
  std::string key;
  std::string value;
  bool operator==(const TraceStateMember&) const = default;
};

struct TraceState {
  // False when the input breaks W3C Trace Context syntax or limits, or the `ot` entry breaks
  // the OpenTelemetry rules (syntax, 256 characters, rv not 14 hex digits, th not 1..14 hex
  // digits). An invalid tracestate carries no usable rv/th and is never rewritten.
  bool valid = true;
  std::vector<TraceStateMember> members;  // every member except `ot`, in order, OWS trimmed
  std::optional<std::string> rv;          // as received (case kept)
  std::uint64_t rv_value = 0;
  std::optional<std::string> th;  // as received until updated
  std::uint64_t th_value = 0;
  std::vector<TraceStateMember> ot_extra;  // other `ot` sub-keys, in order
  bool has_ot() const noexcept { return rv || th || !ot_extra.empty(); }
};

// W3C limits applied: at most 32 list members (empty ones count, as in the ABNF), key syntax
// (simple key <= 256 chars; multi-tenant tenant <= 241 and system <= 14), value 1..256 printable
// ASCII without ',' and '=' and not ending in a space; optional spaces/tabs around members;
// empty members allowed and dropped on output. Also the Collector's 1024-character total cap.
// A repeated `ot` key: the last one is used (as the Collector does).
TraceState parse_tracestate(std::string_view text);
// `ot=rv:..;th:..;<other sub-keys>` first (omitted when empty), then the other members.
std::string serialize_tracestate(const TraceState& ts);

// ---- the sampler ----

enum class SamplerMode { proportional, equalizing };

// What to do when a span cannot be sampled by the rules (unparsable tracestate, no randomness,
// arriving th contradicted by R).
enum class ErrorPolicy {
  fail_closed,  // drop it (Collector default, fail_closed: true)
  fail_open,    // keep it (Collector fail_closed: false; writes th:0 when it can)
  // Not Collector-compatible: an unparsable tracestate is ignored (decided on the trace id at
  // the configured percentage, tracestate left as it is); an inconsistent th is erased and the
  // span decided as if it had none (spec); missing randomness is dropped.
  ignore_tracestate,
};

// The legacy OpenTracing `sampling.priority` span attribute, as the Collector reads it
// (> 0 keep, == 0 drop, anything else or absent: defer). The caller extracts it.
enum class SamplingPriority { defer, keep, drop };

struct SamplerConfig {
  float percentage = 0;  // float32 like the Collector's sampling_percentage; > 100 means 100
  int precision = default_sampling_precision;  // 1..14
  SamplerMode mode = SamplerMode::proportional;
  ErrorPolicy on_error = ErrorPolicy::fail_closed;

  bool operator==(const SamplerConfig&) const = default;
};

enum class Reason {
  sampled,                 // kept by R >= T
  sampled_out,             // dropped by R < T (includes 0 %)
  invalid_tracestate,      // tracestate unparsable (kept or dropped per ErrorPolicy)
  missing_randomness,      // no rv and an all-zero trace id
  inconsistent_threshold,  // arriving th > R: the span should not have been sampled upstream
  priority,                // sampling.priority forced the outcome
};
// Stable label for metrics: "sampled", "sampled_out", "invalid_tracestate", ...
const char* reason_name(Reason r) noexcept;

enum class RandomnessSource { rv, trace_id, missing };

struct Decision {
  bool keep = false;
  Reason reason = Reason::sampled_out;
  RandomnessSource source = RandomnessSource::missing;
  bool randomness_presumed = false;  // trace id used while the W3C random flag was unset
  bool tracestate_invalid = false;   // the tracestate could not be parsed (see ErrorPolicy)
  std::uint64_t threshold = 0;       // threshold applied (2^56: never)
  // When keep: the tracestate to write on the span, and whether it differs from the input
  // (an unchanged or invalid tracestate need not be rewritten).
  bool tracestate_changed = false;
  std::string tracestate;
};

class Sampler {
 public:
  // Error text when the config is invalid (NaN/inf/negative percentage, non-zero percentage
  // below 2^-56 as a ratio, precision outside 1..14); empty when valid.
  static std::string validate(const SamplerConfig& config);
  explicit Sampler(const SamplerConfig& config);  // config must validate

  // One span. flags: OTLP Span.flags (W3C trace flags in the low 8 bits).
  Decision decide(const TraceId& trace_id, std::string_view tracestate, std::uint32_t flags,
                  SamplingPriority priority = SamplingPriority::defer) const;

  double ratio() const noexcept { return ratio_; }
  // Threshold used for spans arriving without th (proportional) / always (equalizing).
  std::uint64_t base_threshold() const noexcept { return base_threshold_; }

 private:
  std::uint64_t threshold_for(const TraceState* ts) const;

  SamplerConfig config_;
  bool never_ = false;  // percentage 0
  double ratio_ = 0;
  std::uint64_t base_threshold_ = max_adjusted_count;
};

}  // namespace spanrelay::processors
