// libFuzzer harness: the YAML config loader (config::load_string, which load_file calls with a
// file's text; agent/config/config.hpp).
//
// Input: the YAML text. Properties:
// - loading either succeeds or throws config::ConfigError whose message starts with the source
//   name; any other exception escapes the harness and is a finding (as is a crash or a hang);
// - a loaded config has at least one exporter and describe() renders it;
// - secrets only add errors: a text that loads with secrets checked also loads without
//   (--validate --no-secrets), to the same description.
// Loading reads files named in it (auth.password_file) and environment variables; stdin is
// /dev/null so that a path like /dev/stdin cannot block.
#include <fcntl.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>

#include "common/log.hpp"
#include "config/config.hpp"
#include "fuzz_common.hpp"

using namespace spanrelay;

namespace {

const std::string kSource = "fuzz.yaml";

// The description of what `text` loads to, or nullopt after a ConfigError.
std::optional<std::string> load(std::string_view text, const config::LoadOptions& options) {
  try {
    const config::Config c = config::load_string(text, kSource, options);
    FUZZ_CHECK(!c.exporters.empty());
    FUZZ_CHECK(c.source == kSource);
    return config::describe(c);
  } catch (const config::ConfigError& e) {
    const std::string what = e.what();
    FUZZ_CHECK(what.compare(0, kSource.size(), kSource) == 0);
    return std::nullopt;
  }
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  init_logging("off", false);
  const int null = ::open("/dev/null", O_RDONLY);
  FUZZ_CHECK(null >= 0 && ::dup2(null, 0) == 0);
  ::close(null);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  const auto strict = load(text, {.check_secrets = true, .suggest_no_secrets = true});
  const auto lax = load(text, {.check_secrets = false});
  if (strict) {
    FUZZ_CHECK(lax.has_value());
    FUZZ_CHECK(*lax == *strict);
  }
  return 0;
}
