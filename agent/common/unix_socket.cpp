#include "common/unix_socket.hpp"

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>

namespace spanrelay {
namespace {

std::string errno_text(int error) { return std::strerror(error); }

// True when something accepts connections on the socket at `path`.
bool someone_listens(const std::string& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof addr.sun_path) {
    return false;  // bind() will report the bad path
  }
  std::memcpy(addr.sun_path, path.data(), path.size());
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) {
    return false;
  }
  // Non-blocking: a listener accepts (or queues) at once, or says EAGAIN when its backlog is
  // full; a stale file gives ECONNREFUSED.
  const bool connected = ::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) == 0;
  const int error = errno;
  ::close(fd);
  return connected || error == EAGAIN;  // EAGAIN: a live listener with a full backlog
}

}  // namespace

void clear_stale_unix_socket(const std::string& path) {
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0) {
    return;  // nothing there (or bind() will report why not)
  }
  if (!S_ISSOCK(st.st_mode)) {
    throw std::runtime_error(path + " exists and is not a socket; not removing it");
  }
  if (someone_listens(path)) {
    throw std::runtime_error(path + " is in use by another process");
  }
  if (::unlink(path.c_str()) != 0 && errno != ENOENT) {
    throw std::runtime_error("cannot remove the stale socket " + path + ": " + errno_text(errno));
  }
}

void open_unix_socket_permissions(const std::string& path) {
  if (::chmod(path.c_str(), 0666) != 0) {
    throw std::runtime_error("cannot chmod " + path + ": " + errno_text(errno));
  }
}

void remove_unix_socket(const std::string& path) noexcept {
  struct stat st {};
  if (::lstat(path.c_str(), &st) == 0 && S_ISSOCK(st.st_mode)) {
    ::unlink(path.c_str());
  }
}

}  // namespace spanrelay
