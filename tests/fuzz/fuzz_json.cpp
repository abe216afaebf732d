// libFuzzer harness: the OTLP/JSON -> protobuf codec (agent/otlp/json.hpp), and back.
//
// Input: the JSON text. Properties:
// - json_to_protobuf appends to its output only on success, and says why on failure;
// - what it accepts parses with libprotobuf, and passes the receivers' wire scanner (the next
//   step of a JSON request);
// - protobuf_to_json converts that protobuf, json_to_protobuf takes the result back to the
//   same request, and converting that again gives the same JSON text (a fixed point).
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>

#include "otlp/json.hpp"
#include "otlp/wire.hpp"
#include "otlp_check.hpp"

using namespace spanrelay;
using namespace spanrelay::fuzz;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  static const std::string kPrefix = "prefix";
  std::string out = kPrefix;
  std::string error;
  if (!otlp::json_to_protobuf(text, out, error)) {
    FUZZ_CHECK(out == kPrefix);
    FUZZ_CHECK(!error.empty());
    return 0;
  }
  FUZZ_CHECK(out.compare(0, kPrefix.size(), kPrefix) == 0);
  const std::string_view protobuf = std::string_view(out).substr(kPrefix.size());
  ExportTraceServiceRequest parsed;
  FUZZ_CHECK(parse(protobuf, parsed));  // JSON accepted => libprotobuf parses its protobuf
  const otlp::ScanResult scan = otlp::scan_request(protobuf);
  if (!scan.ok) {
    std::fprintf(stderr, "scanner: %s\n", scan.error.c_str());
    FUZZ_CHECK(!"JSON accepted => the wire scanner accepts its protobuf");
  }

  std::string json;
  FUZZ_CHECK(otlp::protobuf_to_json(protobuf, json, error));
  ExportTraceServiceRequest back_parsed;
  const std::string back = json_back(json, back_parsed);
  FUZZ_CHECK(same(parsed, back_parsed));
  std::string json_again;
  FUZZ_CHECK(otlp::protobuf_to_json(back, json_again, error));
  FUZZ_CHECK(json_again == json);
  return 0;
}
