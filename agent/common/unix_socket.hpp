#pragma once
// Unix domain socket files for the listeners ("unix:/run/spanrelay/otlp.sock"): the file must
// be cleared before bind() and removed again at stop. Shared by the HTTP and gRPC receivers.

#include <string>

namespace spanrelay {

// Makes `path` free for bind(). A socket file nobody listens on (left by a crash) is removed.
// Throws std::runtime_error when another process is listening there, or when the path exists
// and is not a socket: spanrelay never deletes a file it did not create as a socket.
void clear_stale_unix_socket(const std::string& path);

// After bind(): lets any local user connect (mode 0666). Access is meant to be controlled by
// the permissions of the directory holding the socket. Throws std::runtime_error on failure.
void open_unix_socket_permissions(const std::string& path);

// At stop: removes the socket file if it is still a socket. Never throws.
void remove_unix_socket(const std::string& path) noexcept;

}  // namespace spanrelay
