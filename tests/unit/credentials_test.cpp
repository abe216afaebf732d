// Credentials: a rotated password_file is picked up by the next authorization() (rename over
// the old file, Kubernetes' ..data symlink swap), a truncated or unreadable file never replaces
// a good token, refresh() reports a change, and the token never reaches the log.
#include "exporters/credentials.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "common/base64.hpp"
#include "config/config.hpp"
#include "unit/temp_dir.hpp"

using namespace spanrelay;
namespace fs = std::filesystem;

namespace {

const std::string kUser = "123456";

std::string basic(const std::string& token) {
  return "Basic " + base64_encode(kUser + ":" + token);
}

// Writes `content` at `path` in place (the file keeps its inode).
void write_in_place(const fs::path& path, const std::string& content) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << content;
  out.close();
  REQUIRE(out.good());
}

// Writes a new file next to `path` and renames it over `path`: the way users replace secrets.
void replace_by_rename(const fs::path& path, const std::string& content) {
  const fs::path tmp = path.string() + ".new";
  write_in_place(tmp, content);
  fs::rename(tmp, path);
}

// The Auth the config loader makes for `password_file: <path>`.
config::Auth file_auth(const fs::path& path) {
  const std::string yaml =
      "exporters:\n  up:\n    type: otlp_http\n    endpoint: http://127.0.0.1:1/otlp\n"
      "    auth: {username: \"" + kUser + "\", password_file: " + path.string() + "}\n";
  const config::Config c = config::load_string(yaml, "t.yaml");
  REQUIRE(c.exporters.size() == 1);
  return c.exporters[0].auth;
}

// A logger whose output the test can read.
struct CapturedLog {
  std::ostringstream text;
  std::shared_ptr<spdlog::logger> logger;
  CapturedLog() {
    auto sink = std::make_shared<spdlog::sinks::ostream_sink_mt>(text);
    logger = std::make_shared<spdlog::logger>("credentials-test", sink);
    logger->set_level(spdlog::level::trace);
  }
  std::string str() {
    logger->flush();
    return text.str();
  }
};

}  // namespace

TEST_CASE("the loader records the password_file path", "[credentials]") {
  testing::TempDir dir;
  const fs::path token = dir.path() / "token";
  write_in_place(token, "tokenA\n");
  const config::Auth auth = file_auth(token);
  CHECK(auth.password_file == token.string());
  CHECK(auth.password == "tokenA");
}

TEST_CASE("password_file: initial read and a file renamed over it", "[credentials]") {
  testing::TempDir dir;
  const fs::path token = dir.path() / "token";
  write_in_place(token, "tokenA\n");
  CapturedLog log;
  Credentials creds(file_auth(token), log.logger);
  REQUIRE(creds.enabled());
  CHECK(creds.authorization() == basic("tokenA"));
  CHECK(creds.authorization() == basic("tokenA"));
  CHECK(log.str().find("changed") == std::string::npos);  // the same token is no change

  replace_by_rename(token, "tokenB\n");
  CHECK(creds.authorization() == basic("tokenB"));

  replace_by_rename(token, "  tokenC \r\n\n");  // trailing whitespace is not part of it
  CHECK(creds.authorization() == basic("  tokenC"));

  const std::string text = log.str();
  CHECK(text.find("password_file " + token.string() + " changed: using the new token") !=
        std::string::npos);
  for (const char* secret : {"tokenA", "tokenB", "tokenC"}) {
    CHECK(text.find(secret) == std::string::npos);
  }
  CHECK(text.find(base64_encode(kUser + ":tokenB")) == std::string::npos);
}

TEST_CASE("password_file: a Kubernetes Secret volume's ..data symlink swap", "[credentials]") {
  testing::TempDir dir;
  const fs::path d = dir.path();
  // The layout the kubelet makes: token -> ..data/token, ..data -> ..<timestamp>/.
  fs::create_directory(d / "..2026_01_01_00_00_00.1");
  write_in_place(d / "..2026_01_01_00_00_00.1" / "token", "tokenA");
  fs::create_directory_symlink("..2026_01_01_00_00_00.1", d / "..data");
  fs::create_symlink("..data/token", d / "token");

  Credentials creds(file_auth(d / "token"));
  CHECK(creds.authorization() == basic("tokenA"));

  // An update: a new timestamped directory, a new ..data link renamed over the old one, then
  // the old directory removed.
  fs::create_directory(d / "..2026_01_02_00_00_00.2");
  write_in_place(d / "..2026_01_02_00_00_00.2" / "token", "tokenB");
  fs::create_directory_symlink("..2026_01_02_00_00_00.2", d / "..data_tmp");
  REQUIRE(::rename((d / "..data_tmp").c_str(), (d / "..data").c_str()) == 0);
  fs::remove_all(d / "..2026_01_01_00_00_00.1");

  CHECK(creds.authorization() == basic("tokenB"));
  CHECK(creds.authorization() == basic("tokenB"));
}

TEST_CASE("password_file: a truncated file is never used", "[credentials]") {
  testing::TempDir dir;
  const fs::path token = dir.path() / "token";
  write_in_place(token, "tokenA\n");
  CapturedLog log;
  Credentials creds(file_auth(token), log.logger);
  CHECK(creds.authorization() == basic("tokenA"));

  // An in-place rewrite, caught between the truncation and the write.
  write_in_place(token, "");
  CHECK(creds.authorization() == basic("tokenA"));
  CHECK_FALSE(creds.refresh());
  write_in_place(token, "\n \n");  // whitespace only: as empty
  CHECK(creds.authorization() == basic("tokenA"));
  CHECK(log.str().find("is empty; still using the token read before") != std::string::npos);

  write_in_place(token, "tokenB\n");
  CHECK(creds.authorization() == basic("tokenB"));
  CHECK(log.str().find("tokenA") == std::string::npos);
}

TEST_CASE("password_file: refresh() re-reads and reports only a change", "[credentials]") {
  testing::TempDir dir;
  const fs::path token = dir.path() / "token";
  write_in_place(token, "tokenA");
  Credentials creds(file_auth(token));
  CHECK(creds.authorization() == basic("tokenA"));
  CHECK_FALSE(creds.refresh());  // unchanged

  // A rewrite that stat() cannot see: same inode, same size, and the old mtime put back (as
  // when it happens within one tick of the file system's clock). Only refresh() finds it.
  struct stat before {};
  REQUIRE(::stat(token.c_str(), &before) == 0);
  write_in_place(token, "tokenB");
  const timespec times[2] = {before.st_atim, before.st_mtim};
  REQUIRE(::utimensat(AT_FDCWD, token.c_str(), times, 0) == 0);
  CHECK(creds.authorization() == basic("tokenA"));
  CHECK(creds.refresh());
  CHECK(creds.authorization() == basic("tokenB"));
  CHECK_FALSE(creds.refresh());

  replace_by_rename(token, "tokenC");
  CHECK(creds.refresh());  // refresh() itself takes the new file (before any authorization())
  CHECK(creds.authorization() == basic("tokenC"));
  CHECK_FALSE(creds.refresh());
}

TEST_CASE("password_file: an unreadable or missing file keeps the old token", "[credentials]") {
  testing::TempDir dir;
  const fs::path token = dir.path() / "token";
  write_in_place(token, "tokenA");
  CapturedLog log;
  Credentials creds(file_auth(token), log.logger);
  CHECK(creds.authorization() == basic("tokenA"));

  fs::remove(token);  // missing
  CHECK(creds.authorization() == basic("tokenA"));
  CHECK_FALSE(creds.refresh());
  CHECK(log.str().find("cannot stat password_file " + token.string()) != std::string::npos);

  fs::create_directory(token);  // read() fails: EISDIR (a mode change does not stop root)
  CHECK(creds.authorization() == basic("tokenA"));
  CHECK_FALSE(creds.refresh());

  fs::remove(token);
  write_in_place(token, std::string(65 * 1024, 'x'));  // over the 64 KiB bound
  CHECK(creds.authorization() == basic("tokenA"));

  const std::string text = log.str();
  // At most one warning a minute, however many calls failed.
  std::size_t warnings = 0;
  for (auto at = text.find("[warning]"); at != std::string::npos;
       at = text.find("[warning]", at + 1)) {
    ++warnings;
  }
  CHECK(warnings == 1);

  replace_by_rename(token, "tokenB");
  CHECK(creds.authorization() == basic("tokenB"));
  // Recovered: the next failure is reported at once.
  fs::remove(token);
  CHECK(creds.authorization() == basic("tokenB"));
  CHECK(log.str().find("[warning]", text.size()) != std::string::npos);
  CHECK(log.str().find("tokenA") == std::string::npos);
  CHECK(log.str().find("tokenB") == std::string::npos);
}

TEST_CASE("password_env credentials never change, and auth off gives no header", "[credentials]") {
  config::Auth env;
  env.enabled = true;
  env.username = kUser;
  env.password = "tokenE";
  env.password_source = "env TOKEN";
  Credentials creds(env);
  CHECK(creds.authorization() == basic("tokenE"));
  CHECK_FALSE(creds.refresh());
  CHECK(creds.source() == "env TOKEN");

  Credentials none{config::Auth{}};
  CHECK_FALSE(none.enabled());
  CHECK(none.authorization().empty());
  CHECK_FALSE(none.refresh());
}

TEST_CASE("redact() removes the password and the encoded header from a text", "[credentials]") {
  config::Auth env;
  env.enabled = true;
  env.username = kUser;
  env.password = "tokenE";
  Credentials creds(env);
  std::string text = "echo: Authorization: " + basic("tokenE") + " pw=tokenE tokenEtokenE";
  creds.redact(text);
  CHECK(text.find("tokenE") == std::string::npos);
  CHECK(text.find(base64_encode(kUser + ":tokenE")) == std::string::npos);
  CHECK(text.find("<redacted>") != std::string::npos);
}
