// The command line on configuration edges (issue 9, item 5): what --validate says, and the exit
// status (0 valid, 2 invalid or a usage error), for the real binary.
#include <cstdlib>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "integration/harness.hpp"

namespace it {
namespace {

// Names no environment sets: the tests need them unset (the binary inherits our environment).
constexpr const char* kUnsetToken = "SPANRELAY_CLI_TEST_UNSET_TOKEN";
constexpr const char* kUnsetKey = "SPANRELAY_CLI_TEST_UNSET_KEY";

const std::string kFileExporter = "exporters:\n  local: {type: file, path: ./spans.jsonl}\n";

struct Cli {
  TempDir dir;
  std::string path = dir.file("config.yaml");

  ProgramResult run(const std::string& yaml, const std::vector<std::string>& flags,
                    const Env& env = default_env()) {
    dir.write("config.yaml", yaml);
    std::vector<std::string> args = flags;
    args.insert(args.end(), {"--config", path});
    return run_spanrelay(args, env);
  }
};

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

}  // namespace

TEST_CASE("cli: otlp_grpc with tls.insecure_skip_verify is refused by --validate and at start",
          "[integration][cli][config]") {
  REQUIRE(spanrelay_binary_exists());
  Cli cli;
  const std::string yaml =
      "exporters:\n"
      "  tempo:\n"
      "    type: otlp_grpc\n"
      "    endpoint: https://127.0.0.1:4317\n"
      "    tls:\n"
      "      insecure_skip_verify: true\n";
  const std::string expected =
      cli.path +
      ":6:29: exporters.tempo.tls.insecure_skip_verify: tls.insecure_skip_verify is not "
      "supported by otlp_grpc: use tls.ca_file with the upstream's CA, or otlp_http";
  for (const std::vector<std::string>& flags :
       {std::vector<std::string>{"--validate"}, std::vector<std::string>{}}) {
    const ProgramResult result = cli.run(yaml, flags);
    INFO("flags: " << (flags.empty() ? "(start)" : flags[0]) << "\noutput:\n" << result.output);
    CHECK(result.exit_code == std::optional<int>(2));  // a configuration error, not "cannot start"
    CHECK(contains(result.output, expected));
  }
}

TEST_CASE("cli: a receiver endpoint with a scheme says to write host:port",
          "[integration][cli][config]") {
  REQUIRE(spanrelay_binary_exists());
  Cli cli;
  const ProgramResult result =
      cli.run("receivers:\n  http:\n    endpoint: \"http://127.0.0.1:4318\"\n" + kFileExporter,
              {"--validate"});
  INFO("output:\n" << result.output);
  CHECK(result.exit_code == std::optional<int>(2));
  CHECK(contains(result.output, cli.path +
                                    ":3:15: receivers.http.endpoint: \"http://127.0.0.1:4318\": "
                                    "write host:port without a scheme, e.g. 127.0.0.1:4318 (or "
                                    "unix:/path)"));
  CHECK_FALSE(contains(result.output, "IPv6"));
}

TEST_CASE("cli: ${env:VAR} and ${env:VAR:-default} are substituted",
          "[integration][cli][config]") {
  REQUIRE(spanrelay_binary_exists());
  REQUIRE(std::getenv(kUnsetKey) == nullptr);
  Cli cli;
  Env env = default_env();
  env.emplace_back("SPANRELAY_CLI_TEST_TIMEOUT", "750ms");
  const ProgramResult result =
      cli.run(std::string("batch: {timeout: \"${env:SPANRELAY_CLI_TEST_TIMEOUT}\"}\n") +
                  "shutdown_timeout: \"${env:" + kUnsetKey + ":-4s}\"\n" + kFileExporter,
              {"--validate"}, env);
  INFO("output:\n" << result.output);
  CHECK(result.exit_code == std::optional<int>(0));
  CHECK(contains(result.output, "  timeout: 750ms\n"));
  CHECK(contains(result.output, "shutdown_timeout: 4s\n"));
}

TEST_CASE("cli: --validate --no-secrets checks a file whose secrets are not set here",
          "[integration][cli][config]") {
  REQUIRE(spanrelay_binary_exists());
  REQUIRE(std::getenv(kUnsetToken) == nullptr);
  REQUIRE(std::getenv(kUnsetKey) == nullptr);
  Cli cli;
  const std::string yaml =
      std::string("exporters:\n"
                  "  grafana:\n"
                  "    type: otlp_http\n"
                  "    endpoint: https://otlp-gateway-prod-eu-west-2.grafana.net/otlp\n"
                  "    auth: {username: \"123456\", password_env: ") +
      kUnsetToken + "}\n    headers: {X-Api-Key: \"${" + kUnsetKey + "}\"}\n";

  SECTION("--validate fails on the missing secret and suggests --no-secrets") {
    const ProgramResult result = cli.run(yaml, {"--validate"});
    INFO("output:\n" << result.output);
    CHECK(result.exit_code == std::optional<int>(2));
    CHECK(contains(result.output, cli.path + ":5:46: exporters.grafana.auth.password_env: "
                                             "environment variable " +
                                      kUnsetToken + " is not set or is empty"));
    CHECK(contains(result.output, "use --validate --no-secrets"));
  }
  SECTION("--validate --no-secrets passes and says what was not checked") {
    const ProgramResult result = cli.run(yaml, {"--validate", "--no-secrets"});
    INFO("output:\n" << result.output);
    CHECK(result.exit_code == std::optional<int>(0));
    CHECK(contains(result.output, "configuration OK"));
    CHECK(contains(result.output, "password: <not checked (--no-secrets), from env " +
                                      std::string(kUnsetToken) + ">"));
    CHECK(contains(result.output, "X-Api-Key: <not checked (--no-secrets)>"));
  }
  SECTION("--no-secrets still reports every other error") {
    const ProgramResult result =
        cli.run(yaml + "    max_in_flight: 0\n", {"--no-secrets", "--validate"});
    INFO("output:\n" << result.output);
    CHECK(result.exit_code == std::optional<int>(2));
    CHECK(contains(result.output, cli.path + ":7:20: exporters.grafana.max_in_flight: "));
  }
  SECTION("with another error, plain --validate does not suggest --no-secrets") {
    const ProgramResult result = cli.run(yaml + "    max_in_flight: 0\n", {"--validate"});
    INFO("output:\n" << result.output);
    CHECK(result.exit_code == std::optional<int>(2));
    CHECK(contains(result.output, "password_env"));
    CHECK_FALSE(contains(result.output, "--no-secrets"));
  }
  SECTION("--no-secrets without --validate is a usage error") {
    const ProgramResult result = cli.run(kFileExporter, {"--no-secrets"});
    INFO("output:\n" << result.output);
    CHECK(result.exit_code == std::optional<int>(2));
    CHECK(contains(result.output, "--no-secrets is only valid with --validate"));
  }
}

TEST_CASE("cli: --help describes --no-secrets", "[integration][cli][config]") {
  REQUIRE(spanrelay_binary_exists());
  const ProgramResult help = run_spanrelay({"--help"});
  INFO("output:\n" << help.output);
  CHECK(help.exit_code == std::optional<int>(0));
  CHECK(contains(help.output, "[--validate [--no-secrets]]"));
  CHECK(contains(help.output, "  --no-secrets    With --validate"));
}

TEST_CASE("cli: YAML merge keys are applied, nested and at the top level",
          "[integration][cli][config]") {
  REQUIRE(spanrelay_binary_exists());
  Cli cli;
  SECTION("merged") {
    const ProgramResult result = cli.run(
        "exporters:\n"
        "  a: &common {type: file, path: ./a.jsonl, max_queue_bytes: 2MiB}\n"
        "  b:\n"
        "    <<: *common\n"
        "    path: ./b.jsonl\n"
        "<<: {shutdown_timeout: 3s}\n",
        {"--validate"});
    INFO("output:\n" << result.output);
    CHECK(result.exit_code == std::optional<int>(0));
    CHECK(contains(result.output, "  b:\n    type: file\n    path: ./b.jsonl\n"));
    CHECK(contains(result.output, "shutdown_timeout: 3s\n"));
  }
  SECTION("a merged key that is not valid there is an error at its position") {
    const ProgramResult result = cli.run(
        "receivers: &r\n"
        "  http: {}\n"
        "<<: *r\n" +
            kFileExporter,
        {"--validate"});
    INFO("output:\n" << result.output);
    CHECK(result.exit_code == std::optional<int>(2));
    CHECK(contains(result.output, cli.path + ":2:3: http: unknown key"));
  }
  SECTION("a merge value that is not a map is an error") {
    const ProgramResult result = cli.run("<<: 5\n" + kFileExporter, {"--validate"});
    INFO("output:\n" << result.output);
    CHECK(result.exit_code == std::optional<int>(2));
    CHECK(contains(result.output, cli.path + ":1:5: <<: the value of a YAML merge key (<<) must "
                                             "be a map"));
  }
}

}  // namespace it
