// Token rotation with the real binary: a password_file replaced by a rename or by a Kubernetes
// Secret volume's symlink swap is used by the next upstream request, without a reload or a
// restart; a 401 re-reads the file once and retries before anything counts as failed.

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "integration/checks.hpp"
#include "integration/fake_upstream.hpp"
#include "integration/harness.hpp"

namespace it {
namespace {

namespace fs = std::filesystem;

// Same length on purpose: the in-place rewrite below must leave the file's size unchanged.
const std::string kTokenA = "glc_rotation-token-AAAAAAAAAAAA";
const std::string kTokenB = "glc_rotation-token-BBBBBBBBBBBB";
const std::string kTokenC = "glc_rotation-token-CCCCCCCCCCCC";

std::string basic(const std::string& token) {
  return "Basic " + base64(std::string(test_username) + ":" + token);
}

void write_file(const fs::path& path, const std::string& content) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << content;
  out.close();
  REQUIRE(out.good());
}

// A new file renamed over the old one: how people and most tools replace a secret.
void replace_by_rename(const fs::path& path, const std::string& content) {
  const fs::path tmp = path.string() + ".tmp";
  write_file(tmp, content);
  fs::rename(tmp, path);
}

AgentConfig rotation_config(const FakeUpstream& upstream, const fs::path& token_file) {
  AgentConfig config;
  config.exporters["up"].endpoint = upstream.base_url();
  config.exporters["up"].auth = "{username: \"" + std::string(test_username) +
                                "\", password_file: " + token_file.string() + "}";
  return config;
}

// Posts n spans and waits until the upstream holds `total` delivered spans.
void send_and_await(Agent& agent, const FakeUpstream& upstream, std::size_t n,
                    std::size_t total) {
  post_and_expect_ok(agent.port(), n);
  INFO("delivered " << upstream.delivered_span_count() << " of " << total);
  REQUIRE(upstream.wait_for_spans(total, 10s));
}

// The Authorization of every upstream request from index `from` on.
std::vector<std::string> authorizations(const FakeUpstream& upstream, std::size_t from = 0) {
  std::vector<std::string> out;
  const auto requests = upstream.requests();
  for (std::size_t i = from; i < requests.size(); ++i) {
    out.push_back(requests[i].header("authorization"));
  }
  return out;
}

void check_tokens_not_logged(const std::string& log) {
  for (const auto& token : {kTokenA, kTokenB, kTokenC}) {
    CHECK(log.find(token) == std::string::npos);
    CHECK(log.find(basic(token).substr(6)) == std::string::npos);
  }
}

}  // namespace

TEST_CASE("a password_file replaced by a rename is used by the next request",
          "[integration][rotation]") {
  TempDir dir;
  const fs::path token = dir.file("token");
  write_file(token, kTokenA + "\n");
  FakeUpstream upstream;
  Agent agent(rotation_config(upstream, token));

  send_and_await(agent, upstream, 3, 3);
  for (const auto& auth : authorizations(upstream)) {
    CHECK(auth == basic(kTokenA));
  }

  replace_by_rename(token, kTokenB + "\n");
  const std::size_t before = upstream.request_count();
  send_and_await(agent, upstream, 4, 7);
  const auto after = authorizations(upstream, before);
  REQUIRE(!after.empty());
  for (const auto& auth : after) {
    CHECK(auth == basic(kTokenB));
  }

  CHECK(agent.running());
  CHECK(agent.metric(exporter_series("spanrelay_exporter_failed_spans_total")) == 0);
  const std::string log = agent.log();
  CHECK(log.find("password_file " + token.string() + " changed: using the new token") !=
        std::string::npos);
  check_tokens_not_logged(log);
}

TEST_CASE("a Kubernetes Secret volume update (..data symlink swap) is used by the next request",
          "[integration][rotation]") {
  TempDir dir;
  const fs::path d = dir.path();
  fs::create_directory(d / "..2026_01_01_00_00_00.1");
  write_file(d / "..2026_01_01_00_00_00.1" / "token", kTokenA);
  fs::create_directory_symlink("..2026_01_01_00_00_00.1", d / "..data");
  fs::create_symlink("..data/token", d / "token");
  FakeUpstream upstream;
  Agent agent(rotation_config(upstream, d / "token"));

  send_and_await(agent, upstream, 2, 2);
  CHECK(upstream.requests().back().header("authorization") == basic(kTokenA));

  // What the kubelet does: a new timestamped directory, a new ..data link renamed over the old
  // one, the old directory removed.
  fs::create_directory(d / "..2026_01_02_00_00_00.2");
  write_file(d / "..2026_01_02_00_00_00.2" / "token", kTokenB);
  fs::create_directory_symlink("..2026_01_02_00_00_00.2", d / "..data_tmp");
  REQUIRE(std::rename((d / "..data_tmp").c_str(), (d / "..data").c_str()) == 0);
  fs::remove_all(d / "..2026_01_01_00_00_00.1");

  const std::size_t before = upstream.request_count();
  send_and_await(agent, upstream, 2, 4);
  const auto after = authorizations(upstream, before);
  REQUIRE(!after.empty());
  for (const auto& auth : after) {
    CHECK(auth == basic(kTokenB));
  }
  CHECK(agent.metric(exporter_series("spanrelay_exporter_failed_spans_total")) == 0);
  check_tokens_not_logged(agent.log());
}

TEST_CASE("a 401 re-reads the password_file once and retries with the new token",
          "[integration][rotation]") {
  TempDir dir;
  const fs::path token = dir.file("token");
  write_file(token, kTokenA);
  FakeUpstream upstream;
  Agent agent(rotation_config(upstream, token));
  send_and_await(agent, upstream, 2, 2);

  SECTION("the file changed in a way its metadata does not show: the 401 finds it") {
    // Rewritten in place with the same size and its old mtime put back (as when the rewrite
    // lands within one tick of the file system's clock): only a forced re-read sees it. The
    // upstream has moved to the new token and refuses the next request.
    struct stat old {};
    REQUIRE(::stat(token.c_str(), &old) == 0);
    write_file(token, kTokenB);
    const timespec times[2] = {old.st_atim, old.st_mtim};
    REQUIRE(::utimensat(AT_FDCWD, token.c_str(), times, 0) == 0);
    upstream.script({UpstreamResponse::with_status(401)});
    const std::size_t before = upstream.request_count();

    send_and_await(agent, upstream, 5, 7);
    const auto after = authorizations(upstream, before);
    REQUIRE(after.size() >= 2);
    CHECK(after[0] == basic(kTokenA));  // refused
    for (std::size_t i = 1; i < after.size(); ++i) {
      CHECK(after[i] == basic(kTokenB));
    }
    CHECK(upstream.requests()[before].response_status == 401);
    CHECK(agent.metric(exporter_series("spanrelay_exporter_failed_spans_total")) == 0);
    CHECK(agent.metric(exporter_series("spanrelay_exporter_sent_spans_total")) == 7);

    // And the spans after it carry the new token too.
    replace_by_rename(token, kTokenC);
    const std::size_t later = upstream.request_count();
    send_and_await(agent, upstream, 1, 8);
    for (const auto& auth : authorizations(upstream, later)) {
      CHECK(auth == basic(kTokenC));
    }
  }

  SECTION("the file did not change: the 401 counts as a failure, without a second attempt") {
    upstream.script({UpstreamResponse::with_status(401)});
    const std::size_t before = upstream.request_count();
    post_and_expect_ok(agent.port(), 3);
    CHECK(agent.wait_metric_at_least(exporter_series("spanrelay_exporter_failed_spans_total"),
                                     3));
    CHECK(upstream.request_count() == before + 1);
    // The next batch goes through: the 401 did not stop the exporter.
    send_and_await(agent, upstream, 1, 3);
    CHECK(upstream.request_count() == before + 2);
  }
  check_tokens_not_logged(agent.log());
}

}  // namespace it
