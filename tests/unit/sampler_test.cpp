// The probabilistic_sampler's consistent-probability rules, checked against the OpenTelemetry
// specification's own vectors, the OpenTelemetry Collector's documented and tested values, the
// W3C tracestate rules, and a fixed-seed statistical check.
#include "processors/sampler.hpp"

#include <catch2/catch.hpp>
#include <cmath>
#include <random>
#include <string>
#include <vector>

using namespace spanrelay::processors;

namespace {

TraceId tid(std::string_view hex) {
  REQUIRE(hex.size() == 32);
  TraceId id{};
  for (std::size_t i = 0; i < 16; ++i) {
    id[i] = static_cast<std::uint8_t>(std::stoul(std::string(hex.substr(2 * i, 2)), nullptr, 16));
  }
  return id;
}

// Trace id whose last 7 bytes are `r` (the randomness), first 9 bytes 0xa0.
TraceId tid_with_randomness(std::uint64_t r) {
  TraceId id{};
  for (std::size_t i = 0; i < 9; ++i) id[i] = 0xa0;
  for (std::size_t i = 15; i >= 9; --i) {
    id[i] = static_cast<std::uint8_t>(r & 0xff);
    r >>= 8;
  }
  return id;
}

std::string th_of(double probability, int precision) {
  const auto t = probability_to_threshold(probability, precision);
  REQUIRE(t.has_value());
  return encode_threshold(*t);
}

SamplerConfig cfg(float pct, int precision, SamplerMode mode,
                  ErrorPolicy on_error = ErrorPolicy::fail_closed) {
  SamplerConfig c;
  c.percentage = pct;
  c.precision = precision;
  c.mode = mode;
  c.on_error = on_error;
  REQUIRE(Sampler::validate(c).empty());
  return c;
}

constexpr std::uint32_t random_flags = 0x03;  // sampled + random

}  // namespace

// ---------------------------------------------------------------------------------------------
// Specification: trace/tracestate-probability-sampling.md
// ---------------------------------------------------------------------------------------------

TEST_CASE("spec table: 1-in-N thresholds at precision 3, 4 and 5", "[sampler][spec]") {
  // Section "Algorithms / Converting floating-point probability to threshold value", the table
  // of 1-in-N probabilities with their thresholds for precision 3, 4, 5.
  struct Row {
    double p;
    const char* p3;
    const char* p4;
    const char* p5;
  };
  const std::vector<Row> rows = {
      {1, "0", "0", "0"},
      {0.5, "8", "8", "8"},
      {0.3333333333333333, "aab", "aaab", "aaaab"},
      {0.25, "c", "c", "c"},
      {0.2, "ccd", "cccd", "ccccd"},
      {0.125, "e", "e", "e"},
      {0.1, "e66", "e666", "e6666"},
      {0.0625, "f", "f", "f"},
      {0.01, "fd71", "fd70a", "fd70a4"},
      {0.001, "ffbe7", "ffbe77", "ffbe76d"},
      {0.0001, "fff972", "fff9724", "fff97247"},
      {0.00001, "ffff584", "ffff583a", "ffff583a5"},
      {0.000001, "ffffef4", "ffffef39", "ffffef391"},
  };
  for (const auto& r : rows) {
    CAPTURE(r.p);
    CHECK(th_of(r.p, 3) == r.p3);
    CHECK(th_of(r.p, 4) == r.p4);
    CHECK(th_of(r.p, 5) == r.p5);
  }
}

TEST_CASE("spec definitions: th for 100 % and 1 %, trailing zeros removed", "[sampler][spec]") {
  // Section "Definitions / Rejection Threshold (th)": 100 % -> threshold 0; 1 % with 5 digits of
  // precision -> 0xfd70a400000000, written `fd70a4`.
  CHECK(probability_to_threshold(1.0, 4) == std::optional<std::uint64_t>(0));
  CHECK(probability_to_threshold(0.01, 5) == std::optional<std::uint64_t>(0xfd70a400000000));
  CHECK(encode_threshold(0xfd70a400000000) == "fd70a4");
  // Section "Converting integer threshold to a th-value": 0 -> "0", otherwise hex minus trailing
  // zeros; trace/tracestate-handling.md: `ot=th:0` is 100 % sampling; th is 1..14 hex digits
  // extended with trailing zeros.
  CHECK(encode_threshold(0) == "0");
  CHECK(encode_threshold(0x80000000000000) == "8");
  CHECK(encode_threshold(0x00000000000001) == "00000000000001");
  CHECK(encode_threshold(max_adjusted_count) == "");
  CHECK(parse_threshold("0") == std::optional<std::uint64_t>(0));
  CHECK(parse_threshold("8") == std::optional<std::uint64_t>(0x80000000000000));
  CHECK(parse_threshold("fd70a4") == std::optional<std::uint64_t>(0xfd70a400000000));
  CHECK(parse_threshold("FD70A4") == std::optional<std::uint64_t>(0xfd70a400000000));
  CHECK(parse_threshold("80000000000000") == std::optional<std::uint64_t>(0x80000000000000));
  CHECK_FALSE(parse_threshold(""));
  CHECK_FALSE(parse_threshold("800000000000000"));  // 15 digits
  CHECK_FALSE(parse_threshold("-1"));
  CHECK_FALSE(parse_threshold("0x8"));
  // Section "Converting threshold to a sampling probability".
  CHECK(threshold_to_probability(0) == 1.0);
  CHECK(threshold_to_probability(0xc0000000000000) == 0.25);
}

TEST_CASE("spec: keep iff R >= T, R being the last 56 bits of the trace id", "[sampler][spec]") {
  // Sections "Decision algorithm" and "Testing randomness vs threshold"; W3C Trace Context
  // Level 2 "Randomness of trace-id": the right-most 7 bytes.
  CHECK(trace_id_randomness(tid("0102030405060708090a0b0c0d0e0f10")) == 0x0a0b0c0d0e0f10);
  CHECK(trace_id_randomness(tid("ffffffffffffffffff00000000000000")) == 0);
  CHECK(should_sample(0, 0));
  CHECK(should_sample(0x80000000000000, 0x80000000000000));
  CHECK_FALSE(should_sample(0x80000000000000, 0x7fffffffffffff));
  CHECK_FALSE(should_sample(max_adjusted_count, max_adjusted_count - 1));
  CHECK(parse_randomness("7479cfb506891d") == std::optional<std::uint64_t>(0x7479cfb506891d));
  CHECK(parse_randomness("FD70A3D70A3D71") == std::optional<std::uint64_t>(0xfd70a3d70a3d71));
  CHECK_FALSE(parse_randomness("7479cfb506891"));    // 13 digits
  CHECK_FALSE(parse_randomness("7479cfb506891d0"));  // 15 digits
  CHECK_FALSE(parse_randomness("7479cfb506891g"));
}

// ---------------------------------------------------------------------------------------------
// Collector-contrib pkg/sampling: probability_test.go examples and table
// ---------------------------------------------------------------------------------------------

TEST_CASE("collector pkg/sampling: threshold rounding examples", "[sampler][collector]") {
  // ExampleProbabilityToThresholdWithPrecision: 1/3, 2/3, 3/3 at precision 3.
  CHECK(th_of(1.0 / 3.0, 3) == "aab");
  CHECK(th_of(2.0 / 3.0, 3) == "555");
  CHECK(th_of(3.0 / 3.0, 3) == "0");
  // ExampleProbabilityToThreshold_rounding: full precision of 1/3 ends in c (52-bit float).
  CHECK(th_of(1.0 / 3.0, 14) == "aaaaaaaaaaaaac");
  // ExampleProbabilityToThreshold_verysmall: precision 3, raised for leading f's.
  CHECK(th_of(min_sampling_probability, 3) == "ffffffffffffff");
  CHECK(th_of(0x2p-56, 3) == "fffffffffffffe");
  CHECK(th_of(0x3p-56, 3) == "fffffffffffffd");
  CHECK(th_of(0x4p-56, 3) == "fffffffffffffc");
  CHECK(th_of(0x8p-56, 3) == "fffffffffffff8");
  CHECK(th_of(0x10p-56, 3) == "fffffffffffff");
  // ExampleProbabilityToThreshold_limitedprecision (full precision).
  CHECK(th_of(15.0 / 16, 14) == "1");
  CHECK(th_of(std::nextafter(15.0 / 16, 0.0), 14) == "10000000000008");
  CHECK(th_of(0.5, 14) == "8");
  CHECK(th_of(std::nextafter(0.5, 0.0), 14) == "80000000000004");
  CHECK(th_of(std::nextafter(0.125, 0.0), 14) == "e0000000000001");
  CHECK(th_of(std::nextafter(0.0625, 0.0), 14) == "f");
  // Out of range.
  CHECK_FALSE(probability_to_threshold(0.0, 4));
  CHECK_FALSE(probability_to_threshold(0x1p-57, 4));
  CHECK_FALSE(probability_to_threshold(1.0000001, 4));
  CHECK_FALSE(probability_to_threshold(std::nan(""), 4));
}

TEST_CASE("collector pkg/sampling: precision counts digits after leading 0s and fs",
          "[sampler][collector]") {
  // TestProbabilityToThresholdWithPrecision: exact value, then each precision (the number of
  // digits after leading zeros) rounds half-up.
  struct Case {
    double p;
    const char* exact;
    std::vector<const char*> rounded;
  };
  const std::vector<Case> cases = {
      {1 - 0x456789ap-28, "456789a", {"45678a", "45679", "4568", "456", "45", "4"}},
      {1 - 0x456789ap-40,
       "000456789a",
       {"00045678a", "00045679", "0004568", "000456", "00045", "0004"}},
      {1 - 0x789abcdefp-40,
       "0789abcdef",
       {"0789abcdef", "0789abcdf", "0789abce", "0789abd", "0789ac", "0789b", "078a", "079", "08"}},
      {1 - 0x12345678p-32, "12345678", {"1234568", "123456", "12345", "1234", "123", "12", "1"}},
      {1 - 0x80801p-28, "0080801", {"00808", "008"}},
      {1, "0", {"0"}},
  };
  for (const auto& c : cases) {
    CAPTURE(c.exact);
    CHECK(th_of(c.p, 14) == c.exact);
    for (const std::string round : c.rounded) {
      CAPTURE(round);
      const auto digits = static_cast<int>(round.size() - round.find_first_not_of('0'));
      CHECK(th_of(c.p, round == "0" ? 1 : digits) == round);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Collector-contrib processor/probabilisticsamplerprocessor: tracesprocessor_test.go
// Test_tracesamplerprocessor_TraceState (fail_closed false, precision 0 = 14 unless given).
// ---------------------------------------------------------------------------------------------

namespace {

struct CollectorCase {
  const char* name;
  const char* trace_id;  // nullptr: fefefefefefefefefe80000000000000 (R = 0x80000000000000)
  float pct;
  int precision;
  const char* tracestate;
  bool proportional_keep;
  const char* proportional_ts;
  bool equalizing_keep;
  const char* equalizing_ts;
};

const std::vector<CollectorCase>& collector_cases() {
  static const std::vector<CollectorCase> cases = {
      {"100 percent", nullptr, 100, 14, "", true, "ot=th:0", true, "ot=th:0"},
      {"50 percent sampled", nullptr, 50, 14, "", true, "ot=th:8", true, "ot=th:8"},
      {"25 percent sampled", "ddddddddddddddddddc0000000000000", 25, 14, "", true, "ot=th:c", true,
       "ot=th:c"},
      {"25 percent unsampled", "ddddddddddddddddddb0000000000000", 25, 14, "", false, "", false,
       ""},
      {"1 percent sampled", nullptr, 1, 14, "ot=rv:FD70A3D70A3D71", true,
       "ot=rv:FD70A3D70A3D71;th:fd70a3d70a3d71", true, "ot=rv:FD70A3D70A3D71;th:fd70a3d70a3d71"},
      {"1 percent sampled with rvalue and precision 4", nullptr, 1, 4, "ot=rv:FD70A3D70A3D71", true,
       "ot=rv:FD70A3D70A3D71;th:fd70a", true, "ot=rv:FD70A3D70A3D71;th:fd70a"},
      {"1 percent sampled with rvalue and precision 3", nullptr, 1, 3, "ot=rv:FD70A3D70A3D71",
       false, "", false, ""},
      {"1 percent not sampled with rvalue", nullptr, 1, 14, "ot=rv:FD70A3D70A3D70", false, "",
       false, ""},
      {"49 percent not sampled with default tid", nullptr, 49, 14, "", false, "", false, ""},
      {"1 percent sampled with rvalue", nullptr, 1, 14, "ot=rv:fd70B000000000", true,
       "ot=rv:fd70B000000000;th:fd70a3d70a3d71", true, "ot=rv:fd70B000000000;th:fd70a3d70a3d71"},
      {"1 percent sampled with tid", "a0a0a0a0a0a0a0a0a0fe000000000000", 1, 4, "", true,
       "ot=th:fd70a", true, "ot=th:fd70a"},
      {"incoming 50 percent with rvalue", nullptr, 50, 14, "ot=rv:90000000000000;th:80000000000000",
       false, "", true, "ot=rv:90000000000000;th:8"},
      {"incoming 50 percent at 25 percent not sampled", nullptr, 25, 14, "ot=th:8", false, "",
       false, ""},
      {"incoming 50 percent at 25 percent sampled", "ffffffffffffffffffffffffffffffff", 25, 14,
       "ot=th:8", true, "ot=th:e", true, "ot=th:c"},
      {"equalizing vs proportional", nullptr, 50, 14, "ot=rv:c0000000000000;th:8", true,
       "ot=rv:c0000000000000;th:c", true, "ot=rv:c0000000000000;th:8"},
      {"inconsistent arriving threshold", nullptr, 100, 14, "ot=rv:40000000000000;th:8", true,
       "ot=rv:40000000000000;th:0", true, "ot=rv:40000000000000;th:0"},
      {"40 percent precision 3 with rvalue", nullptr, 40, 3, "ot=rv:a0000000000000", true,
       "ot=rv:a0000000000000;th:99a", true, "ot=rv:a0000000000000;th:99a"},
      {"arriving 50 percent sampled at 40 percent precision 6 with tid",
       "a0a0a0a0a0a0a0a0a0d0000000000000", 40, 6, "ot=th:8", true, "ot=th:cccccd", true,
       "ot=th:99999a"},
      {"arriving 50 percent sampled at 40 percent partly sampled",
       "a0a0a0a0a0a0a0a0a0b0000000000000", 40, 3, "ot=th:8", false, "", true, "ot=th:99a"},
      {"arriving 50 percent sampled at 40 percent not sampled", "a0a0a0a0a0a0a0a0a080000000000000",
       40, 3, "ot=th:8", false, "", false, ""},
      {"200 percent equals 100 percent", nullptr, 200, 14, "", true, "ot=th:0", true, "ot=th:0"},
      {"tiny probability rounding", "111111111111111111ffffffffffffff", 100 * 0x1p-14f, 14,
       "ot=th:fffc", true, "ot=th:fffffff", true, "ot=th:fffc"},
      {"almost 100pct sampling", "111111111111111111ffffffffffffff", (1 - 8e-7f) * 100, 10, "",
       true, "ot=th:00000cccccccd", true, "ot=th:00000cccccccd"},
      {"probability underflow", "111111111111111111ffffffffffffff", 0x1p-4f, 14,
       "ot=th:fffffffffffff8", false, "", true, "ot=th:fffffffffffff8"},
  };
  return cases;
}

}  // namespace

TEST_CASE("collector processor vectors: proportional and equalizing", "[sampler][collector]") {
  for (const auto& c : collector_cases()) {
    CAPTURE(c.name);
    const TraceId id = tid(c.trace_id ? c.trace_id : "fefefefefefefefefe80000000000000");
    {
      const Sampler s(cfg(c.pct, c.precision, SamplerMode::proportional, ErrorPolicy::fail_open));
      const auto d = s.decide(id, c.tracestate, random_flags);
      CHECK(d.keep == c.proportional_keep);
      if (d.keep) CHECK(d.tracestate == c.proportional_ts);
    }
    {
      const Sampler s(cfg(c.pct, c.precision, SamplerMode::equalizing, ErrorPolicy::fail_open));
      const auto d = s.decide(id, c.tracestate, random_flags);
      CHECK(d.keep == c.equalizing_keep);
      if (d.keep) CHECK(d.tracestate == c.equalizing_ts);
    }
  }
}

TEST_CASE("collector processor vectors: fail_closed drops what it cannot sample",
          "[sampler][collector]") {
  // Test_tracesamplerprocessor_TraceStateErrors, 100 %, fail_closed: true.
  struct Case {
    const char* trace_id;
    const char* tracestate;
    Reason reason;
  };
  const std::vector<Case> cases = {
      {"00000000000000000000000000000000", "", Reason::missing_randomness},
      {"fefefefefefefefefe80000000000000", "ot=rv:abababababababab", Reason::invalid_tracestate},
      {"fefefefefefefefefe80000000000000", "ot=th:abababababababab", Reason::invalid_tracestate},
      {"fefefefefefefefefe80000000000000", "ot=th:-1", Reason::invalid_tracestate},
      {"ffffffffffffffffff70000000000000", "ot=th:8", Reason::inconsistent_threshold},
      {"fefefefefefefefefe80000000000000", "ot=th:8;rv:70000000000000",
       Reason::inconsistent_threshold},
  };
  for (const auto mode : {SamplerMode::proportional, SamplerMode::equalizing}) {
    const Sampler s(cfg(100, 4, mode, ErrorPolicy::fail_closed));
    for (const auto& c : cases) {
      CAPTURE(c.trace_id, c.tracestate);
      const auto d = s.decide(tid(c.trace_id), c.tracestate, random_flags);
      CHECK_FALSE(d.keep);
      CHECK(d.reason == c.reason);
    }
  }
  // "inconsistent arriving threshold not sampled": 1 %, fail_closed.
  const Sampler one(cfg(1, 4, SamplerMode::proportional));
  CHECK_FALSE(
      one.decide(tid("fefefefefefefefefe80000000000000"), "ot=rv:40000000000000;th:8", random_flags)
          .keep);
}

TEST_CASE("collector defaults: precision 4, common percentages in proportional mode",
          "[sampler][collector]") {
  // Collector createDefaultConfig: sampling_precision 4, fail_closed true. The thresholds a
  // span without th gets at common percentages (agree with the spec table's precision 4 column).
  SamplerConfig c;
  c.percentage = 20;
  CHECK(c.precision == 4);
  CHECK(c.on_error == ErrorPolicy::fail_closed);
  CHECK(c.mode == SamplerMode::proportional);
  struct Row {
    float pct;
    const char* th;
  };
  for (const Row r :
       {Row{100, "0"}, Row{50, "8"}, Row{25, "c"}, Row{20, "cccd"}, Row{10, "e666"},
        Row{5, "f3333"}, Row{1, "fd70a"}, Row{0.1f, "ffbe77"}, Row{75, "4"}, Row{99, "028f6"}}) {
    CAPTURE(r.pct);
    c.percentage = r.pct;
    const Sampler s(c);
    CHECK(encode_threshold(s.base_threshold()) == r.th);
    const auto d = s.decide(tid("ffffffffffffffffffffffffffffffff"), "", random_flags);
    REQUIRE(d.keep);
    CHECK(d.tracestate == std::string("ot=th:") + r.th);
  }
  // The percentage is a float32 widened to double, then divided by 100.
  c.percentage = 33.3f;
  CHECK(Sampler(c).ratio() == static_cast<double>(33.3f) / 100);
}

// ---------------------------------------------------------------------------------------------
// Decisions
// ---------------------------------------------------------------------------------------------

TEST_CASE("boundary: R = T is kept, R = T - 1 is dropped", "[sampler]") {
  const Sampler s(cfg(20, 4, SamplerMode::proportional));
  const std::uint64_t t = s.base_threshold();
  REQUIRE(t == 0xcccd0000000000);
  const auto at = s.decide(tid_with_randomness(t), "", random_flags);
  CHECK(at.keep);
  CHECK(at.reason == Reason::sampled);
  CHECK(at.threshold == t);
  CHECK(at.tracestate == "ot=th:cccd");
  CHECK(at.tracestate_changed);
  const auto below = s.decide(tid_with_randomness(t - 1), "", random_flags);
  CHECK_FALSE(below.keep);
  CHECK(below.reason == Reason::sampled_out);
  CHECK(std::string(reason_name(below.reason)) == "sampled_out");
  CHECK(s.decide(tid_with_randomness(max_adjusted_count - 1), "", random_flags).keep);
  CHECK_FALSE(s.decide(tid_with_randomness(0), "", random_flags).keep);
  // The first 9 bytes of the trace id play no part.
  TraceId other = tid_with_randomness(t);
  other[0] = 0x01;
  other[8] = 0xff;
  CHECK(s.decide(other, "", random_flags).keep);
}

TEST_CASE("rv overrides the trace id's randomness", "[sampler]") {
  const Sampler s(cfg(50, 4, SamplerMode::proportional));
  // Trace id says keep (R = 2^56-1), rv says drop.
  const auto high = tid("ffffffffffffffffffffffffffffffff");
  auto d = s.decide(high, "ot=rv:7fffffffffffff", random_flags);
  CHECK_FALSE(d.keep);
  CHECK(d.source == RandomnessSource::rv);
  // Trace id says drop (R = 0), rv says keep; rv is written back unchanged.
  const auto low = tid("ffffffffffffffffff00000000000000");
  d = s.decide(low, "ot=rv:80000000000000", random_flags);
  CHECK(d.keep);
  CHECK(d.tracestate == "ot=rv:80000000000000;th:8");
  // An invalid rv makes the tracestate unusable; it does not fall back to the trace id.
  d = s.decide(high, "ot=rv:8000000000000", random_flags);
  CHECK_FALSE(d.keep);
  CHECK(d.reason == Reason::invalid_tracestate);
}

TEST_CASE("non-random trace ids: presumed random, as the specification says", "[sampler][spec]") {
  // trace/sdk.md "Presumption of TraceID randomness": samplers presume W3C Level 2 randomness
  // unless rv is present, whatever the random flag. The decision is identical with and without
  // the flag; the decision reports the presumption.
  const Sampler s(cfg(20, 4, SamplerMode::proportional));
  std::mt19937_64 rng(12);
  for (int i = 0; i < 2000; ++i) {
    TraceId id{};
    for (auto& b : id) b = static_cast<std::uint8_t>(rng());
    const auto with = s.decide(id, "", 0x03);
    const auto without = s.decide(id, "", 0x01);
    REQUIRE(with.keep == without.keep);
    REQUIRE(with.tracestate == without.tracestate);
    REQUIRE_FALSE(with.randomness_presumed);
    REQUIRE(without.randomness_presumed);
    REQUIRE(without.source == RandomnessSource::trace_id);
  }
  // trace/sdk.md "Root samplers set explicit randomness for non-random TraceIDs" example:
  // traceparent 00-ffffffffffffffffffffffffffffffff-ffffffffffffffff-00, tracestate
  // ot=rv:7479cfb506891d. rv decides (0x7479.. < 0x8 at 50 %, >= 0x6666.. at 60 %).
  const auto all_f = tid("ffffffffffffffffffffffffffffffff");
  auto d = Sampler(cfg(50, 4, SamplerMode::proportional)).decide(all_f, "ot=rv:7479cfb506891d", 0);
  CHECK_FALSE(d.keep);
  CHECK_FALSE(d.randomness_presumed);
  d = Sampler(cfg(60, 4, SamplerMode::proportional)).decide(all_f, "ot=rv:7479cfb506891d", 0);
  CHECK(d.keep);
  CHECK(d.tracestate == "ot=rv:7479cfb506891d;th:6666");
  // All-zero trace id and no rv: no randomness at all.
  const TraceId zero{};
  d = s.decide(zero, "", 0);
  CHECK_FALSE(d.keep);
  CHECK(d.reason == Reason::missing_randomness);
  CHECK(d.source == RandomnessSource::missing);
  d = Sampler(cfg(20, 4, SamplerMode::proportional, ErrorPolicy::fail_open)).decide(zero, "", 0);
  CHECK(d.keep);
  CHECK(d.reason == Reason::missing_randomness);
  CHECK(d.tracestate == "ot=th:0");
  d = Sampler(cfg(20, 4, SamplerMode::proportional, ErrorPolicy::ignore_tracestate))
          .decide(zero, "", 0);
  CHECK_FALSE(d.keep);
  // ... but an rv supplies it.
  d = s.decide(zero, "ot=rv:ffffffffffffff", 0);
  CHECK(d.keep);
  CHECK(d.source == RandomnessSource::rv);
}

TEST_CASE("proportional composition with an arriving th", "[sampler]") {
  const auto keep_all = tid("ffffffffffffffffffffffffffffffff");
  // 50 % upstream x 20 % here = 10 %: e666 at precision 4 (spec table, 1-in-10 row).
  const Sampler twenty(cfg(20, 4, SamplerMode::proportional));
  auto d = twenty.decide(keep_all, "ot=th:8", random_flags);
  REQUIRE(d.keep);
  CHECK(d.tracestate == "ot=th:e666");
  CHECK(d.threshold == 0xe6660000000000);
  // 25 % x 50 % = 12.5 %: e.
  d = Sampler(cfg(50, 4, SamplerMode::proportional)).decide(keep_all, "ot=th:c", random_flags);
  CHECK(d.tracestate == "ot=th:e");
  // th:0 (100 % upstream) composes like no th.
  d = twenty.decide(keep_all, "ot=th:0", random_flags);
  CHECK(d.tracestate == "ot=th:cccd");
  // Two spanrelay tiers at 20 % each equal one at the product (~4 %), to the precision.
  d = twenty.decide(keep_all, "ot=th:cccd", random_flags);
  CHECK(d.tracestate == "ot=th:f5c2a");  // 4 % needs a fifth digit (leading f)
  CHECK(d.threshold ==
        *probability_to_threshold(threshold_to_probability(0xcccd0000000000) * 0.2, 4));
  // A span the upstream kept must pass the arriving threshold; between it and the product
  // threshold it is dropped here.
  CHECK_FALSE(twenty.decide(tid_with_randomness(0xe6650000000000), "ot=th:8", random_flags).keep);
  CHECK(twenty.decide(tid_with_randomness(0xe6660000000000), "ot=th:8", random_flags).keep);
  // The recorded threshold is never lowered: at 100 % with precision 4 the product rounds to
  // fd70a, below the arriving full-precision fd70a3d70a3d71, which stays.
  d = Sampler(cfg(100, 4, SamplerMode::proportional))
          .decide(tid("ffffffffffffffffffffffffffffffff"), "ot=th:fd70a3d70a3d71", random_flags);
  CHECK(d.keep);
  CHECK(d.tracestate == "ot=th:fd70a3d70a3d71");
  CHECK_FALSE(d.tracestate_changed);
}

TEST_CASE("0 percent drops everything without needing randomness", "[sampler]") {
  const Sampler s(cfg(0, 4, SamplerMode::proportional, ErrorPolicy::fail_open));
  auto d = s.decide(tid("ffffffffffffffffffffffffffffffff"), "", random_flags);
  CHECK_FALSE(d.keep);
  CHECK(d.reason == Reason::sampled_out);
  d = s.decide(TraceId{}, "ot=th:8", random_flags);  // no randomness, arriving th: still just out
  CHECK_FALSE(d.keep);
  CHECK(d.reason == Reason::sampled_out);
  // As the Collector: fail_open keeps an unparsable tracestate even at 0 %.
  d = s.decide(tid("ffffffffffffffffffffffffffffffff"), "ot=th:", random_flags);
  CHECK(d.keep);
  CHECK(d.reason == Reason::invalid_tracestate);
}

TEST_CASE("sampling.priority forces the outcome", "[sampler][collector]") {
  // Collector tests "sampled by priority" (1 %, priority 2 -> kept with th:0) and "not sampled
  // by priority" (99 %, priority 0 -> dropped).
  const auto id = tid("fefefefefefefefefe80000000000000");
  auto d = Sampler(cfg(1, 4, SamplerMode::proportional))
               .decide(id, "", random_flags, SamplingPriority::keep);
  CHECK(d.keep);
  CHECK(d.reason == Reason::priority);
  CHECK(d.tracestate == "ot=th:0");
  d = Sampler(cfg(99, 4, SamplerMode::proportional))
          .decide(id, "", random_flags, SamplingPriority::drop);
  CHECK_FALSE(d.keep);
  CHECK(d.reason == Reason::priority);
}

TEST_CASE("error policies on an unparsable tracestate", "[sampler]") {
  const auto keep_all = tid("ffffffffffffffffffffffffffffffff");
  const auto drop_20 = tid_with_randomness(0x10000000000000);
  const std::string bad = "ot=th:8;,vendor=1";  // trailing ';' in the ot value
  auto d = Sampler(cfg(20, 4, SamplerMode::proportional)).decide(keep_all, bad, random_flags);
  CHECK_FALSE(d.keep);
  CHECK(d.reason == Reason::invalid_tracestate);
  CHECK(d.tracestate_invalid);
  d = Sampler(cfg(20, 4, SamplerMode::proportional, ErrorPolicy::fail_open))
          .decide(drop_20, bad, random_flags);
  CHECK(d.keep);
  CHECK(d.tracestate == bad);  // left exactly as it is
  CHECK_FALSE(d.tracestate_changed);
  const Sampler ignore(cfg(20, 4, SamplerMode::proportional, ErrorPolicy::ignore_tracestate));
  d = ignore.decide(keep_all, bad, random_flags);
  CHECK(d.keep);
  CHECK(d.reason == Reason::sampled);
  CHECK(d.tracestate_invalid);
  CHECK(d.tracestate == bad);
  CHECK_FALSE(d.tracestate_changed);
  d = ignore.decide(drop_20, bad, random_flags);
  CHECK_FALSE(d.keep);
  CHECK(d.reason == Reason::sampled_out);
  // ignore_tracestate erases an inconsistent th (spec) and decides as if it were absent.
  d = ignore.decide(keep_all, "ot=rv:40000000000000;th:8", random_flags);
  CHECK_FALSE(d.keep);  // rv 0x4.. < cccd
  d = ignore.decide(keep_all, "ot=rv:e0000000000000;th:f", random_flags);
  CHECK(d.keep);
  CHECK(d.tracestate == "ot=rv:e0000000000000;th:cccd");
}

TEST_CASE("whole traces: every span of a trace gets the same decision", "[sampler]") {
  // Spans of one trace share the trace id and the propagated ot entry; span ids, flags and other
  // vendors' members differ between services. None of those change the decision.
  const Sampler s(cfg(20, 4, SamplerMode::proportional));
  std::mt19937_64 rng(20261202);
  int kept = 0;
  for (int trace = 0; trace < 500; ++trace) {
    TraceId id{};
    for (auto& b : id) b = static_cast<std::uint8_t>(rng());
    const std::string ot = trace % 3 == 0 ? "" : trace % 3 == 1 ? "ot=th:8" : "ot=th:8;x:1";
    const std::vector<std::string> states = {
        ot, ot.empty() ? "congo=t61rcWkgMzE" : ot + ",congo=t61rcWkgMzE",
        ot.empty() ? "rojo=00f067aa0ba902b7, x@y=z" : "rojo=00f067aa0ba902b7," + ot};
    const auto first = s.decide(id, states[0], 0x03);
    kept += first.keep ? 1 : 0;
    for (const auto& st : states) {
      for (const std::uint32_t flags : {0x00u, 0x01u, 0x02u, 0x03u, 0x103u}) {
        const auto d = s.decide(id, st, flags);
        REQUIRE(d.keep == first.keep);
        REQUIRE(d.threshold == first.threshold);
      }
    }
  }
  CHECK(kept > 0);
  CHECK(kept < 500);
}

TEST_CASE("statistics: 100000 random trace ids at 20 % within 5 sigma", "[sampler]") {
  const Sampler s(cfg(20, 4, SamplerMode::proportional));
  const double p = threshold_to_probability(s.base_threshold());  // 0.19999694...
  std::mt19937_64 rng(4318);  // fixed seed: the outcome is the same on every run
  const int n = 100000;
  int kept = 0;
  for (int i = 0; i < n; ++i) {
    TraceId id{};
    const std::uint64_t hi = rng();
    const std::uint64_t lo = rng();
    for (int b = 0; b < 8; ++b) {
      id[static_cast<std::size_t>(b)] = static_cast<std::uint8_t>(hi >> (56 - 8 * b));
      id[static_cast<std::size_t>(8 + b)] = static_cast<std::uint8_t>(lo >> (56 - 8 * b));
    }
    const auto d = s.decide(id, "", random_flags);
    REQUIRE(d.keep == ((lo & (max_adjusted_count - 1)) >= s.base_threshold()));
    kept += d.keep ? 1 : 0;
  }
  const double expected = n * p;
  const double sigma = std::sqrt(n * p * (1 - p));
  CAPTURE(kept, expected, sigma);
  CHECK(std::abs(kept - expected) <= 5 * sigma);
}

// ---------------------------------------------------------------------------------------------
// W3C tracestate and the ot entry
// ---------------------------------------------------------------------------------------------

TEST_CASE("tracestate: parse and serialize", "[sampler][tracestate]") {
  SECTION("empty") {
    const auto ts = parse_tracestate("");
    CHECK(ts.valid);
    CHECK_FALSE(ts.has_ot());
    CHECK(serialize_tracestate(ts).empty());
  }
  SECTION("other vendors kept in order; ot moved first when rewritten") {
    const auto ts =
        parse_tracestate("rojo=00f067aa0ba902b7,ot=th:8;rv:c0000000000000,congo=t61rcWkgMzE");
    REQUIRE(ts.valid);
    REQUIRE(ts.members.size() == 2);
    CHECK(ts.members[0] == TraceStateMember{"rojo", "00f067aa0ba902b7"});
    CHECK(ts.members[1] == TraceStateMember{"congo", "t61rcWkgMzE"});
    CHECK(serialize_tracestate(ts) ==
          "ot=rv:c0000000000000;th:8,rojo=00f067aa0ba902b7,congo=t61rcWkgMzE");
    const Sampler s(cfg(50, 4, SamplerMode::proportional));
    const auto d =
        s.decide(tid("ffffffffffffffffffffffffffffffff"),
                 "rojo=00f067aa0ba902b7,ot=th:8;rv:c0000000000000,congo=t61rcWkgMzE", random_flags);
    CHECK(d.keep);
    CHECK(d.tracestate == "ot=rv:c0000000000000;th:c,rojo=00f067aa0ba902b7,congo=t61rcWkgMzE");
  }
  SECTION("ot with other sub-keys: kept, in order, after rv and th") {
    const auto ts = parse_tracestate("ot=p:8;th:8;k1:13;zz:A.b_c-d");
    REQUIRE(ts.valid);
    REQUIRE(ts.ot_extra.size() == 3);
    CHECK(ts.ot_extra[0] == TraceStateMember{"p", "8"});
    CHECK(ts.ot_extra[2] == TraceStateMember{"zz", "A.b_c-d"});
    CHECK(serialize_tracestate(ts) == "ot=th:8;p:8;k1:13;zz:A.b_c-d");
    const auto d =
        Sampler(cfg(50, 4, SamplerMode::proportional))
            .decide(tid("ffffffffffffffffffffffffffffffff"), "ot=p:8;th:8;k1:13", random_flags);
    CHECK(d.tracestate == "ot=th:c;p:8;k1:13");
    // An ot entry with only other sub-keys gains th.
    CHECK(Sampler(cfg(50, 4, SamplerMode::proportional))
              .decide(tid("ffffffffffffffffffffffffffffffff"), "ot=k1:13", random_flags)
              .tracestate == "ot=th:8;k1:13");
  }
  SECTION("whitespace and empty members") {
    const auto ts = parse_tracestate(" a=1 ,\t,, ot=th:c\t, b=x y ,");
    REQUIRE(ts.valid);
    REQUIRE(ts.members.size() == 2);
    CHECK(ts.members[1] == TraceStateMember{"b", "x y"});
    CHECK(ts.th == std::optional<std::string>("c"));
    CHECK(serialize_tracestate(ts) == "ot=th:c,a=1,b=x y");
  }
  SECTION("multi-tenant keys and key characters") {
    CHECK(parse_tracestate("t1@sys=v,a_b-c*d/e=1,0t@s=1").valid);
    CHECK(parse_tracestate(std::string(241, 't') + "@" + std::string(14, 's') + "=1").valid);
    CHECK_FALSE(parse_tracestate(std::string(242, 't') + "@s=1").valid);
    CHECK_FALSE(parse_tracestate("t@" + std::string(15, 's') + "=1").valid);
    CHECK_FALSE(parse_tracestate("t@1s=1").valid);
    CHECK_FALSE(parse_tracestate("@s=1").valid);
    CHECK_FALSE(parse_tracestate("t@=1").valid);
    CHECK_FALSE(parse_tracestate("a@b@c=1").valid);
    CHECK(parse_tracestate(std::string(256, 'k') + "=1").valid);
    CHECK_FALSE(parse_tracestate(std::string(257, 'k') + "=1").valid);
  }
  SECTION("malformed W3C lists are invalid") {
    for (const char* bad : {"Foo=bar", "1a=b", "foo", "=x", "a=", "a=b,c", "a=b=c", "a=b\x7f",
                            "a=\xc3\xa9", "a=b\tc", "a =b", "a=b;c=d,e"}) {
      CAPTURE(bad);
      CHECK_FALSE(parse_tracestate(bad).valid);
    }
    CHECK(parse_tracestate("a=b;c:d").valid);  // ';' and ':' are fine in other vendors' values
    CHECK(parse_tracestate("a=" + std::string(256, 'v')).valid);
    CHECK_FALSE(parse_tracestate("a=" + std::string(257, 'v')).valid);
  }
  SECTION("32 list members at most") {
    std::string ts;
    for (int i = 0; i < 32; ++i) ts += (i ? ",k" : "k") + std::to_string(i) + "=v";
    CHECK(parse_tracestate(ts).valid);
    CHECK(parse_tracestate(ts).members.size() == 32);
    CHECK_FALSE(parse_tracestate(ts + ",k32=v").valid);
  }
  SECTION("malformed ot entries are invalid") {
    for (const char* bad :
         {"ot=", "ot=th:8;", "ot=;th:8", "ot=th:8;;rv:c0000000000000", "ot=TH:8", "ot=th", "ot=:8",
          "ot=1k:8", "ot=th:", "ot=th:123456789012345", "ot=th:-1", "ot=th:8 ;k:1",
          "ot=rv:", "ot=rv:c000000000000", "ot=rv:c00000000000000", "ot=rv:g0000000000000",
          "ot=k:a+b", "ot=th:0x8"}) {
      CAPTURE(bad);
      const auto ts = parse_tracestate(bad);
      CHECK_FALSE(ts.valid);
      CHECK_FALSE(ts.th);
      CHECK_FALSE(ts.rv);
    }
    std::string long_ot = "ot=th:8;k:" + std::string(249, 'a');  // 256 characters of value
    CHECK(parse_tracestate(long_ot).valid);
    CHECK_FALSE(parse_tracestate(long_ot + "a").valid);
  }
  SECTION("a repeated ot entry: the last is used, as the Collector does") {
    const auto ts = parse_tracestate("ot=th:8,a=1,ot=th:c;k:1");
    REQUIRE(ts.valid);
    CHECK(ts.th == std::optional<std::string>("c"));
    CHECK(serialize_tracestate(ts) == "ot=th:c;k:1,a=1");
  }
  SECTION("the Collector's 1024-character cap") {
    std::string ts = "a=" + std::string(250, 'v');
    for (char k = 'b'; ts.size() + 253 <= 1024; ++k)
      ts += std::string(",") + k + "=" + std::string(250, 'v');
    CHECK(parse_tracestate(ts).valid);
    CHECK_FALSE(parse_tracestate(ts + ",z=" + std::string(1024 - ts.size(), 'v')).valid);
  }
}

TEST_CASE("config validation", "[sampler]") {
  SamplerConfig c;
  c.percentage = 20;
  CHECK(Sampler::validate(c).empty());
  c.percentage = 0;
  CHECK(Sampler::validate(c).empty());
  c.percentage = 250;
  CHECK(Sampler::validate(c).empty());  // > 100 means 100
  c.percentage = -1;
  CHECK_FALSE(Sampler::validate(c).empty());
  c.percentage = std::nanf("");
  CHECK_FALSE(Sampler::validate(c).empty());
  c.percentage = INFINITY;
  CHECK_FALSE(Sampler::validate(c).empty());
  c.percentage = 1e-20f;
  CHECK_FALSE(Sampler::validate(c).empty());
  c.percentage = 20;
  c.precision = 0;
  CHECK_FALSE(Sampler::validate(c).empty());
  c.precision = 15;
  CHECK_FALSE(Sampler::validate(c).empty());
  c.precision = 14;
  CHECK(Sampler::validate(c).empty());
}
