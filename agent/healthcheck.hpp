#pragma once
// `spanrelay healthcheck [--url URL]`: one HTTP/1.1 GET against the admin endpoint, for a
// container HEALTHCHECK or a probe where no shell tools exist. Exit status 0 on a 2xx, 1
// otherwise; prints one line saying what it saw.

#include <chrono>
#include <string>
#include <string_view>

namespace spanrelay {

inline constexpr std::string_view kDefaultHealthcheckUrl = "http://127.0.0.1:13133/healthz";
inline constexpr std::chrono::milliseconds kHealthcheckTimeout{3000};

// url: http://host[:port][/path], host a name, an IPv4 address or a bracketed IPv6 address;
// port 80 when absent. The whole check (resolve, connect, request, response header) is bounded
// by timeout. Prints "spanrelay healthcheck: <url>: 200 OK" to stdout on success, the same with
// the status or the error ("connection refused", "timed out after 3s", ...) to stderr otherwise.
int run_healthcheck(const std::string& url,
                    std::chrono::milliseconds timeout = kHealthcheckTimeout);

}  // namespace spanrelay
