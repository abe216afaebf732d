// The wire-format scanner, invalid-span filter and splitter, on valid, malformed, truncated
// and mutated input.
#include <catch2/catch.hpp>

#include <google/protobuf/util/message_differencer.h>

#include <map>
#include <random>
#include <set>

#include "google/rpc/status.pb.h"
#include "otlp/responses.hpp"
#include "otlp/wire.hpp"
#include "unit/otlp_builders.hpp"

using namespace spanrelay::otlp;
using spanrelay::testing::ExportTraceServiceRequest;
using spanrelay::testing::make_request;
using spanrelay::testing::span_ids;

namespace {

// A KeyValue nested `depth` times through kvlist values. Every level is a prefix of the
// one inside it (key, then the value's tags and lengths), so lengths are computed inside-out
// and the prefixes written outside-in: linear in depth, even for 100000 levels.
std::string nested_kvlist(int depth) {
  std::string inner;
  put_len_field(inner, 1, "k");
  std::vector<std::string> prefixes;  // prefixes[i] wraps everything after it
  std::size_t size = inner.size();
  for (int i = 0; i < depth; ++i) {
    std::string p;
    // KeyValue { key = "k" (1), value = AnyValue { kvlist_value = KeyValueList { values } } }
    const std::size_t list = varint_size(0x0a) + varint_size(size) + size;  // values = 1
    const std::size_t any = varint_size(0x32) + varint_size(list) + list;   // kvlist = 6
    put_len_field(p, 1, "k");
    put_varint(p, (2 << 3) | 2);
    put_varint(p, any);
    put_varint(p, (6 << 3) | 2);
    put_varint(p, list);
    put_varint(p, (1 << 3) | 2);
    put_varint(p, size);
    size += p.size();
    prefixes.push_back(std::move(p));
  }
  std::string out;
  out.reserve(size);
  for (auto it = prefixes.rbegin(); it != prefixes.rend(); ++it) {
    out += *it;
  }
  return out + inner;
}

std::string request_with_span_attribute(const std::string& key_value) {
  auto req = make_request(1, 1, 1);
  std::string bytes = req.SerializeAsString();
  // Append an attribute to the one span by rebuilding from the proto with a raw extra field.
  auto* span = req.mutable_resource_spans(0)->mutable_scope_spans(0)->mutable_spans(0);
  std::string span_bytes = span->SerializeAsString();
  put_len_field(span_bytes, 9, key_value);
  std::string ss, rs, out;
  put_len_field(ss, 2, span_bytes);
  put_len_field(rs, 2, ss);
  put_len_field(out, 1, rs);
  return out;
}

}  // namespace

TEST_CASE("scanner accepts valid requests and counts spans", "[wire]") {
  auto req = make_request(3, 2, 5);
  const std::string bytes = req.SerializeAsString();
  auto r = scan_request(bytes);
  REQUIRE(r.ok);
  REQUIRE(r.spans == 30);
  REQUIRE(r.invalid_spans == 0);
  REQUIRE(count_spans(bytes) == 30);
  REQUIRE(scan_request("").ok);  // an empty request is valid
  REQUIRE(scan_request("").spans == 0);
}

TEST_CASE("concatenated requests are one valid merged request", "[wire]") {
  const std::string a = make_request(1, 1, 3, 1).SerializeAsString();
  const std::string b = make_request(2, 1, 2, 2).SerializeAsString();
  ExportTraceServiceRequest merged;
  REQUIRE(merged.ParseFromString(a + b));
  REQUIRE(merged.resource_spans_size() == 3);
  REQUIRE(scan_request(a + b).spans == 7);
}

TEST_CASE("scanner rejects malformed protobuf with a message", "[wire]") {
  SECTION("bad varint length") {
    auto r = scan_request(std::string("\x0a\xff\xff\xff\xff\x0f", 6));
    REQUIRE_FALSE(r.ok);
    REQUIRE(r.error.find("malformed") != std::string::npos);
  }
  SECTION("length past the end") {
    REQUIRE_FALSE(scan_request(std::string("\x0a\x05\x01", 3)).ok);
  }
  SECTION("varint longer than 10 bytes") {
    REQUIRE_FALSE(scan_request(std::string("\x08\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", 12)).ok);
  }
  SECTION("field number zero") {
    REQUIRE_FALSE(scan_request(std::string("\x02\x00", 2)).ok);
  }
  SECTION("group wire types") {
    REQUIRE_FALSE(scan_request(std::string("\x0b\x0c", 2)).ok);
  }
  SECTION("truncated fixed64") {
    REQUIRE_FALSE(scan_request(std::string("\x09\x01\x02", 3)).ok);
  }
  SECTION("invalid UTF-8 in a span name") {
    auto req = make_request(1, 1, 1);
    req.mutable_resource_spans(0)->mutable_scope_spans(0)->mutable_spans(0)->set_name("ok");
    std::string bytes = req.SerializeAsString();
    const auto pos = bytes.find("ok");
    bytes[pos] = '\xff';
    auto r = scan_request(bytes);
    REQUIRE_FALSE(r.ok);
    REQUIRE(r.error.find("UTF-8") != std::string::npos);
  }
  SECTION("overlong UTF-8 and surrogates are invalid") {
    for (std::string bad : {std::string("\xc0\xaf"), std::string("\xed\xa0\x80"),
                            std::string("\xf4\x90\x80\x80"), std::string("\xe2\x82")}) {
      std::string kv;
      put_len_field(kv, 1, bad);
      REQUIRE_FALSE(scan_request(request_with_span_attribute(kv)).ok);
    }
    std::string kv;
    put_len_field(kv, 1, "\xe2\x82\xac \xf0\x9f\x98\x80 \xc3\xa9");  // valid multi-byte
    REQUIRE(scan_request(request_with_span_attribute(kv)).ok);
  }
}

TEST_CASE("scanner refuses deep nesting without recursing past its limit", "[wire]") {
  const std::string shallow = request_with_span_attribute(nested_kvlist(20));
  REQUIRE(scan_request(shallow).ok);
  ExportTraceServiceRequest parsed;  // the builder makes what protobuf itself reads back
  REQUIRE(parsed.ParseFromString(shallow));
  auto r = scan_request(request_with_span_attribute(nested_kvlist(100000)));
  REQUIRE_FALSE(r.ok);
  REQUIRE(r.error.find("nesting") != std::string::npos);
}

TEST_CASE("whatever the scanner accepts, libprotobuf parses", "[wire][fuzz]") {
  const std::string valid = make_request(2, 2, 3).SerializeAsString();
  SECTION("every truncation") {
    for (std::size_t n = 0; n < valid.size(); ++n) {
      const std::string prefix = valid.substr(0, n);
      auto r = scan_request(prefix);
      if (r.ok) {
        ExportTraceServiceRequest parsed;
        REQUIRE(parsed.ParseFromString(prefix));
      }
    }
  }
  SECTION("random mutations") {
    std::mt19937_64 rng(42);
    int accepted = 0;
    for (int i = 0; i < 20000; ++i) {
      std::string m = valid;
      const int flips = 1 + static_cast<int>(rng() % 4);
      for (int f = 0; f < flips; ++f) {
        m[rng() % m.size()] = static_cast<char>(rng() & 0xff);
      }
      auto r = scan_request(m);
      if (r.ok) {
        ++accepted;
        ExportTraceServiceRequest parsed;
        REQUIRE(parsed.ParseFromString(m));
        REQUIRE(r.spans == count_spans(m));
      }
    }
    REQUIRE(accepted > 0);  // the property was exercised
  }
}

// Found by fuzzing (tests/fuzz): libprotobuf reads a tag or a length in at most 5 bytes and
// refuses longer encodings of small values, which the scanner used to accept (a 7-byte unknown
// field behind a 6-byte tag answered OK over gRPC, then failed to parse in the file exporter).
TEST_CASE("tags and lengths longer than 5 bytes are refused, as libprotobuf does", "[wire]") {
  const auto libprotobuf_parses = [](const std::string& bytes) {
    ExportTraceServiceRequest parsed;
    return parsed.ParseFromString(bytes);
  };
  // Unknown field 11, LEN, empty: its tag (0x5a) padded with continuation bytes.
  const std::string tag5("\xda\x80\x80\x80\x00\x00", 6);      // 5-byte tag, length 0
  const std::string tag6("\xda\x80\x80\x80\x80\x00\x00", 7);  // 6-byte tag
  CHECK(scan_request(tag5).ok);
  CHECK(libprotobuf_parses(tag5));
  CHECK_FALSE(scan_request(tag6).ok);
  CHECK_FALSE(libprotobuf_parses(tag6));
  // The same field with its length (0) padded.
  const std::string len5("\x5a\x80\x80\x80\x80\x00", 6);
  const std::string len6("\x5a\x80\x80\x80\x80\x80\x00", 7);
  CHECK(scan_request(len5).ok);
  CHECK(libprotobuf_parses(len5));
  CHECK_FALSE(scan_request(len6).ok);
  CHECK_FALSE(libprotobuf_parses(len6));
  // A value may still take 10 bytes (a 10-byte varint of field 12).
  const std::string value10("\x60\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", 11);
  CHECK(scan_request(value10).ok);
  CHECK(libprotobuf_parses(value10));
}

TEST_CASE("unknown fields are skipped and kept", "[wire]") {
  auto req = make_request(1, 1, 2);
  std::string span_bytes = req.resource_spans(0).scope_spans(0).spans(0).SerializeAsString();
  put_len_field(span_bytes, 99, "future field");
  put_varint_field(span_bytes, 100, 7);
  std::string ss, rs, bytes;
  put_len_field(ss, 2, span_bytes);
  put_len_field(rs, 2, ss);
  put_len_field(bytes, 1, rs);
  auto r = scan_request(bytes);
  REQUIRE(r.ok);
  REQUIRE(r.spans == 1);
  std::vector<std::string> pieces;
  split_request(bytes, 1 << 20, 100, [&](std::string&& p, std::uint32_t) { pieces.push_back(p); });
  REQUIRE(pieces.size() == 1);
  REQUIRE(pieces[0] == bytes);  // byte for byte
}

TEST_CASE("spans with invalid ids are counted and dropped", "[wire]") {
  auto req = make_request(1, 1, 4);
  auto* spans = req.mutable_resource_spans(0)->mutable_scope_spans(0)->mutable_spans();
  spans->Mutable(0)->set_trace_id(std::string(16, '\0'));  // all zero
  spans->Mutable(1)->set_span_id("short");                 // wrong length
  spans->Mutable(2)->clear_trace_id();                     // missing
  const std::string good_id = spans->Get(3).span_id();
  const std::string bytes = req.SerializeAsString();
  auto r = scan_request(bytes);
  REQUIRE(r.ok);
  REQUIRE(r.spans == 4);
  REQUIRE(r.invalid_spans == 3);
  const std::string kept = drop_invalid_spans(bytes);
  ExportTraceServiceRequest out;
  REQUIRE(out.ParseFromString(kept));
  REQUIRE(span_ids(out) == std::multiset<std::string>{good_id});
  REQUIRE(out.resource_spans(0).resource().attributes(0).key() == "service.name");
  REQUIRE(scan_request(kept).invalid_spans == 0);
}

TEST_CASE("splitter respects limits and keeps every span exactly once", "[wire]") {
  struct Shape {
    int resources, scopes, spans;
    std::size_t attr;
  };
  for (Shape shape : {Shape{1, 1, 200, 64}, Shape{5, 3, 20, 16}, Shape{1, 10, 1, 4000},
                      Shape{20, 1, 1, 10}}) {
    auto req = make_request(shape.resources, shape.scopes, shape.spans, 7, shape.attr);
    const std::string bytes = req.SerializeAsString();
    for (std::size_t max_bytes : {std::size_t{1024}, std::size_t{4096}, std::size_t{1} << 20}) {
      for (std::size_t max_spans : {std::size_t{1}, std::size_t{7}, std::size_t{10000}}) {
        std::multiset<std::string> ids;
        std::size_t pieces = 0;
        split_request(bytes, max_bytes, max_spans, [&](std::string&& p, std::uint32_t n) {
          ++pieces;
          ExportTraceServiceRequest piece;
          REQUIRE(piece.ParseFromString(p));
          const auto piece_ids = span_ids(piece);
          REQUIRE(piece_ids.size() == n);
          REQUIRE(n <= max_spans);
          if (n > 1) {
            REQUIRE(p.size() <= max_bytes);
          }
          // Every piece keeps its resource and scope.
          for (const auto& rs : piece.resource_spans()) {
            REQUIRE(rs.resource().attributes(0).key() == "service.name");
            for (const auto& ss : rs.scope_spans()) {
              REQUIRE(ss.scope().name().rfind("scope-", 0) == 0);
            }
          }
          ids.insert(piece_ids.begin(), piece_ids.end());
        });
        REQUIRE(ids == span_ids(req));
        REQUIRE(pieces >= 1);
      }
    }
  }
}

TEST_CASE("a single span larger than max_bytes travels alone", "[wire]") {
  auto req = make_request(1, 1, 3, 9, 5000);
  std::vector<std::size_t> sizes;
  split_request(req.SerializeAsString(), 1024, 100,
                [&](std::string&& p, std::uint32_t n) {
                  REQUIRE(n == 1);
                  sizes.push_back(p.size());
                });
  REQUIRE(sizes.size() == 3);
}

TEST_CASE("response bodies decode as the OTLP messages", "[wire]") {
  google::rpc::Status st;
  REQUIRE(st.ParseFromString(status_body(Encoding::kProtobuf, Code::kInvalidArgument, "bad")));
  REQUIRE(st.code() == 3);
  REQUIRE(st.message() == "bad");
  REQUIRE(status_body(Encoding::kJson, Code::kUnavailable, "a \"q\"") ==
          R"({"code":14,"message":"a \"q\""})");
  REQUIRE(export_response(Encoding::kProtobuf, 0, "").empty());
  REQUIRE(export_response(Encoding::kJson, 0, "") == "{}");
  REQUIRE(export_response(Encoding::kJson, 2, "x") ==
          R"({"partialSuccess":{"rejectedSpans":"2","errorMessage":"x"}})");
  std::int64_t rejected = 0;
  std::string message;
  REQUIRE(parse_export_response(export_response(Encoding::kProtobuf, 5, "ids"), rejected,
                                message));
  REQUIRE(rejected == 5);
  REQUIRE(message == "ids");
}
