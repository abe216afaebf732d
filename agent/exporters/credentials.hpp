#pragma once
// An exporter's Basic credentials, kept current with a rotated password_file.
//
// authorization() stat()s the file (following symlinks) on every call and re-reads it when its
// identity (device, inode, size, mtime) differs from the version last read. That sees both ways
// a secret is replaced: a new file renamed over the old one, and Kubernetes' swap of the
// `..data` symlink of a Secret volume. A read is accepted only when the file did not change
// while it was read (fstat before and after agree) and its content, less trailing whitespace,
// is not empty: a file truncated for an in-place rewrite is never used, the old token stays and
// the file is checked again on the next call. With password_env the value never changes.
//
// Thread-compatible: one instance is used from one exporter io thread. The secret never
// appears in a log line.

#include <sys/types.h>

#include <chrono>
#include <ctime>
#include <memory>
#include <string>

#include "config/config.hpp"

namespace spdlog {
class logger;
}

namespace spanrelay {

class Credentials {
 public:
  // `log` receives the rotation and read-error lines; null: the "credentials" logger.
  explicit Credentials(const config::Auth& auth, std::shared_ptr<spdlog::logger> log = nullptr);

  bool enabled() const noexcept { return enabled_; }

  // "Basic base64(username:password)", re-read first if the password_file changed; "" when
  // auth is off. The reference is valid until the next call.
  const std::string& authorization();

  // Re-reads the password_file even if it looks unchanged (the upstream refused the token).
  // True when the header value changed.
  bool refresh();

  // Replaces every occurrence of the password or of the encoded header in `text` (an upstream's
  // error body that echoes the request) with "<redacted>".
  void redact(std::string& text) const;

  // Where the password comes from ("file /path", "env NAME"): safe to print.
  const std::string& source() const noexcept { return source_; }

 private:
  struct Identity {
    dev_t dev = 0;
    ino_t ino = 0;
    off_t size = -1;
    timespec mtime{0, 0};
    bool operator==(const Identity& o) const noexcept {
      return dev == o.dev && ino == o.ino && size == o.size && mtime.tv_sec == o.mtime.tv_sec &&
             mtime.tv_nsec == o.mtime.tv_nsec;
    }
  };

  // Reads the file; adopts its content when usable. True when the header value changed.
  bool reload();
  void warn(const std::string& what);

  bool enabled_ = false;
  std::string username_;
  std::string path_;  // empty: the password does not come from a file
  std::string source_;
  std::string password_;
  std::string header_;
  Identity seen_;        // the version header_ was built from (size -1: none yet)
  bool seen_valid_ = false;
  std::shared_ptr<spdlog::logger> log_;
  std::chrono::steady_clock::time_point last_warning_{};
  bool warned_ = false;
};

}  // namespace spanrelay
