// spanrelay: an OTLP trace forwarding agent. Command line, configuration and start-up errors;
// the pipeline itself is composed in app.cpp.

#include <csignal>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <string>
#include <string_view>
#include <utility>

#include "app.hpp"
#include "healthcheck.hpp"
#include "common/log.hpp"
#include "config/config.hpp"

namespace {

constexpr const char* kUsage = R"(Usage: spanrelay [--config FILE] [--validate [--no-secrets]]
       spanrelay healthcheck [--url URL]
       spanrelay --version | --help

Accepts OpenTelemetry traces over OTLP/HTTP and forwards them, batched and compressed, to the
exporters in the configuration (Grafana Cloud, any OTLP/HTTP endpoint, a file).

  --config FILE   YAML configuration. Without it, the embedded default is used: receive on
                  127.0.0.1:4318 and append spans as OTLP/JSON lines to ./spans.jsonl.
  --validate      Check the configuration, print it with secrets redacted, and exit.
  --no-secrets    With --validate: a secret that is not set here (auth.password_env,
                  auth.password_file, a ${VAR} in a header value) is shown as "not checked"
                  instead of failing, e.g. to validate a production file in CI.
  --version       Print the version and exit.
  --help          Print this help and exit.

  healthcheck     Ask a running agent's admin endpoint whether it is live (for container
                  HEALTHCHECKs with no shell or curl): exit 0 on a 2xx answer, 1 otherwise.
    --url URL     Default http://127.0.0.1:13133/healthz.

Signals: SIGTERM/SIGINT drain and stop; SIGHUP re-reads the configuration file (a bad one is
refused and the running configuration stays).

Exit status: 0 after a clean shutdown (SIGTERM/SIGINT), 2 for a configuration or usage
error, 1 when the agent cannot start.
)";

}  // namespace

int main(int argc, char** argv) {
  // A SIGHUP before the agent listens for it (a config reloader racing the start, a spool
  // replay that takes a while) must not kill it: the file being loaded is the latest anyway.
  std::signal(SIGHUP, SIG_IGN);
  if (argc >= 2 && std::string_view(argv[1]) == "healthcheck") {
    std::string url = "http://127.0.0.1:13133/healthz";
    for (int i = 2; i < argc; ++i) {
      const std::string_view arg = argv[i];
      if (arg == "--url" && i + 1 < argc) {
        url = argv[++i];
      } else if (arg.starts_with("--url=")) {
        url = std::string(arg.substr(std::strlen("--url=")));
      } else {
        std::cerr << "spanrelay healthcheck: unknown or incomplete argument \"" << arg
                  << "\"\n\n" << kUsage;
        return 2;
      }
    }
    return spanrelay::run_healthcheck(url);
  }
  std::string config_path;
  bool validate = false;
  bool no_secrets = false;
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      std::cout << kUsage;
      return 0;
    }
    if (arg == "--version") {
      std::cout << "spanrelay " << SPANRELAY_VERSION << '\n';
      return 0;
    }
    if (arg == "--validate") {
      validate = true;
    } else if (arg == "--no-secrets") {
      no_secrets = true;
    } else if (arg == "--config" && i + 1 < argc) {
      config_path = argv[++i];
    } else if (arg.starts_with("--config=")) {
      config_path = std::string(arg.substr(std::strlen("--config=")));
    } else {
      std::cerr << "spanrelay: unknown or incomplete argument \"" << arg << "\"\n\n" << kUsage;
      return 2;
    }
  }

  if (no_secrets && !validate) {
    std::cerr << "spanrelay: --no-secrets is only valid with --validate\n\n" << kUsage;
    return 2;
  }

  spanrelay::config::Config config;
  const spanrelay::config::LoadOptions options{.check_secrets = !no_secrets,
                                               .suggest_no_secrets = validate};
  try {
    config = config_path.empty()
                 ? spanrelay::config::load_string(spanrelay::config::embedded_default(),
                                                  "<embedded default>", options)
                 : spanrelay::config::load_file(config_path, options);
  } catch (const std::exception& e) {
    std::cerr << "spanrelay: invalid configuration: " << e.what() << '\n';
    return 2;
  }
  if (validate) {
    std::cout << "configuration OK: " << config.source << '\n'
              << spanrelay::config::describe(config);
    return 0;
  }

  spanrelay::init_logging(config.log.level, config.log.json);
  try {
    return spanrelay::run_agent(std::move(config), config_path);
  } catch (const std::exception& e) {
    spanrelay::logger("agent")->critical("cannot start: {}", e.what());
    return 1;
  }
}
