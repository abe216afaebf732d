#include "exporters/credentials.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <string_view>

#include "common/base64.hpp"
#include "common/log.hpp"

namespace spanrelay {
namespace {

constexpr std::size_t kMaxPasswordFileBytes = 64 * 1024;  // as at config load
constexpr auto kWarningInterval = std::chrono::minutes(1);

std::string basic(const std::string& username, const std::string& password) {
  return "Basic " + base64_encode(username + ":" + password);
}

// Closes a file descriptor on every path out of reload().
struct Fd {
  int fd;
  ~Fd() {
    if (fd >= 0) {
      ::close(fd);
    }
  }
};

}  // namespace

Credentials::Credentials(const config::Auth& auth, std::shared_ptr<spdlog::logger> log)
    : enabled_(auth.enabled), username_(auth.username), path_(auth.password_file),
      source_(auth.password_source), log_(log ? std::move(log) : logger("credentials")) {
  if (enabled_) {
    // The value read at config load; the file's identity is taken on the first call.
    password_ = auth.password;
    header_ = basic(username_, password_);
  } else {
    path_.clear();
  }
}

const std::string& Credentials::authorization() {
  if (path_.empty()) {
    return header_;
  }
  struct stat st {};
  if (::stat(path_.c_str(), &st) != 0) {
    warn("cannot stat password_file " + path_ + ": " + std::strerror(errno) +
         "; still using the token read before");
    return header_;
  }
  const Identity now{st.st_dev, st.st_ino, st.st_size, st.st_mtim};
  if (!seen_valid_ || !(now == seen_)) {
    reload();
  }
  return header_;
}

bool Credentials::refresh() { return path_.empty() ? false : reload(); }

bool Credentials::reload() {
  Fd file{::open(path_.c_str(), O_RDONLY | O_CLOEXEC)};
  struct stat before {};
  if (file.fd < 0 || ::fstat(file.fd, &before) != 0) {
    warn("cannot read password_file " + path_ + ": " + std::strerror(errno) +
         "; still using the token read before");
    return false;
  }
  std::string content;
  char chunk[4096];
  for (;;) {
    const ssize_t n = ::read(file.fd, chunk, sizeof chunk);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n < 0 || content.size() + static_cast<std::size_t>(n) > kMaxPasswordFileBytes) {
      const int error = n < 0 ? errno : EFBIG;
      warn("cannot read password_file " + path_ + ": " + std::strerror(error) +
           "; still using the token read before");
      return false;
    }
    if (n == 0) {
      break;
    }
    content.append(chunk, static_cast<std::size_t>(n));
  }
  struct stat after {};
  if (::fstat(file.fd, &after) != 0) {
    warn("cannot read password_file " + path_ + ": " + std::strerror(errno) +
         "; still using the token read before");
    return false;
  }
  const Identity first{before.st_dev, before.st_ino, before.st_size, before.st_mtim};
  const Identity second{after.st_dev, after.st_ino, after.st_size, after.st_mtim};
  if (!(first == second) ||
      (S_ISREG(after.st_mode) && static_cast<off_t>(content.size()) != after.st_size)) {
    // Written to while we read it: not recorded as seen, so the next call reads it again.
    log_->debug("password_file {} changed while being read; reading it again next time", path_);
    return false;
  }
  // Trailing whitespace (the newline an editor or `echo` adds) is not part of the token, as at
  // config load.
  while (!content.empty() && std::isspace(static_cast<unsigned char>(content.back()))) {
    content.pop_back();
  }
  if (content.empty()) {
    // Truncated for an in-place rewrite, most likely: keep the old token until it is written.
    warn("password_file " + path_ + " is empty; still using the token read before");
    return false;
  }
  seen_ = second;
  seen_valid_ = true;
  warned_ = false;
  std::string header = basic(username_, content);
  if (header == header_) {
    std::fill(content.begin(), content.end(), '\0');
    return false;
  }
  std::fill(password_.begin(), password_.end(), '\0');
  std::fill(header_.begin(), header_.end(), '\0');
  password_.swap(content);
  header_.swap(header);
  log_->info("password_file {} changed: using the new token", path_);
  return true;
}

void Credentials::redact(std::string& text) const {
  if (!enabled_) {
    return;
  }
  const std::string_view encoded = std::string_view(header_).substr(6);  // after "Basic "
  for (const std::string_view secret : {std::string_view(password_), encoded}) {
    if (secret.empty()) {
      continue;
    }
    for (auto at = text.find(secret); at != std::string::npos;
         at = text.find(secret, at + 10)) {
      text.replace(at, secret.size(), "<redacted>");
    }
  }
}

void Credentials::warn(const std::string& what) {
  const auto now = std::chrono::steady_clock::now();
  if (warned_ && now - last_warning_ < kWarningInterval) {
    return;
  }
  warned_ = true;
  last_warning_ = now;
  log_->warn("{}", what);
}

}  // namespace spanrelay
