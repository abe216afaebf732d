// Parsers and formatters for the scalar value kinds of the config: sizes, durations, listen
// endpoints and upstream URLs. They know nothing about YAML; the loader adds the position.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/un.h>

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>

#include <boost/url/parse.hpp>

#include "config/config.hpp"
#include "config/quoted.hpp"

namespace spanrelay::config {
namespace {

using u128 = unsigned __int128;


bool is_digit(char c) { return c >= '0' && c <= '9'; }
bool is_alpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }

// "12" or "1.5". The whole part saturates at 2^80 so that multiplying by any unit (< 2^42) stays
// within 128 bits and still compares as "too large"; fraction digits beyond 18 cannot change a
// byte or nanosecond count that fits in 64 bits, so they are dropped.
struct Decimal {
  u128 whole = 0;
  std::uint64_t fraction = 0;
  std::uint64_t fraction_scale = 1;

  // The value times `unit`, rounded down.
  u128 times(std::uint64_t unit) const {
    return whole * unit + u128(fraction) * unit / fraction_scale;
  }
  bool whole_times(std::uint64_t unit) const {
    return (u128(fraction) * unit) % fraction_scale == 0;
  }
};

// Reads a decimal at text[pos...], advancing pos. nullopt (pos unchanged) if there is none.
std::optional<Decimal> take_decimal(std::string_view text, std::size_t& pos) {
  constexpr u128 saturated = u128(1) << 80;
  std::size_t i = pos;
  Decimal d;
  if (i >= text.size() || !is_digit(text[i])) {
    return std::nullopt;
  }
  for (; i < text.size() && is_digit(text[i]); ++i) {
    d.whole = std::min(d.whole * 10 + unsigned(text[i] - '0'), saturated);
  }
  if (i < text.size() && text[i] == '.') {
    if (i + 1 >= text.size() || !is_digit(text[i + 1])) {
      return std::nullopt;
    }
    int kept = 0;
    for (++i; i < text.size() && is_digit(text[i]); ++i) {
      if (kept < 18) {
        d.fraction = d.fraction * 10 + unsigned(text[i] - '0');
        d.fraction_scale *= 10;
        ++kept;
      }
    }
  }
  pos = i;
  return d;
}

std::uint16_t parse_port(std::string_view port, std::string_view text, bool allow_zero) {
  const std::string range = allow_zero ? "0..65535" : "1..65535";
  if (port.empty() || port.size() > 5 || !std::all_of(port.begin(), port.end(), is_digit)) {
    throw std::invalid_argument(quoted(text) + ": the port must be a number " + range);
  }
  unsigned value = 0;
  for (char c : port) {
    value = value * 10 + unsigned(c - '0');
  }
  if (value > 65535 || (value == 0 && !allow_zero)) {
    throw std::invalid_argument(quoted(text) + ": the port must be a number " + range);
  }
  return static_cast<std::uint16_t>(value);
}

}  // namespace

std::size_t parse_size(std::string_view text) {
  static constexpr std::array<std::pair<std::string_view, std::uint64_t>, 8> units{{
      {"", 1},
      {"B", 1},
      {"KB", 1000},
      {"MB", 1000 * 1000},
      {"GB", 1000 * 1000 * 1000},
      {"KiB", KiB},
      {"MiB", MiB},
      {"GiB", GiB},
  }};
  const std::string hint = " (use a byte count or e.g. 512KiB, 16MiB, 1GB)";
  if (text.empty()) {
    throw std::invalid_argument("an empty value is not a size" + hint);
  }
  if (text.front() == '-') {
    throw std::invalid_argument(quoted(text) + " is not a size: it must not be negative");
  }
  std::size_t pos = 0;
  const auto number = take_decimal(text, pos);
  if (!number) {
    throw std::invalid_argument(quoted(text) + " is not a size" + hint);
  }
  const std::string_view unit = text.substr(pos);
  const auto found =
      std::find_if(units.begin(), units.end(), [&](const auto& u) { return u.first == unit; });
  if (found == units.end()) {
    throw std::invalid_argument(quoted(text) + " is not a size: unknown unit " + quoted(unit) +
                                " (units: B, KB, MB, GB, KiB, MiB, GiB; case matters)");
  }
  if (found->second == 1 && number->fraction != 0) {
    throw std::invalid_argument(quoted(text) + " is not a size: a byte count must be whole");
  }
  const u128 bytes = number->times(found->second);
  if (bytes > std::numeric_limits<std::size_t>::max()) {
    throw std::invalid_argument(quoted(text) + " is too large for a size");
  }
  return static_cast<std::size_t>(bytes);
}

Duration parse_duration(std::string_view text) {
  static constexpr std::array<std::pair<std::string_view, std::uint64_t>, 4> units{{
      {"ms", 1'000'000},
      {"s", 1'000'000'000},
      {"m", 60'000'000'000},
      {"h", 3'600'000'000'000},
  }};
  const std::string generic = quoted(text) + " is not a duration (use e.g. 5s, 250ms, 1m)";
  if (text.empty()) {
    throw std::invalid_argument("an empty value is not a duration (use e.g. 5s, 250ms, 1m)");
  }
  if (text.front() == '-') {
    throw std::invalid_argument(quoted(text) + " is not a duration: it must not be negative");
  }
  if (std::size_t end = 0; take_decimal(text, end) && end == text.size()) {
    throw std::invalid_argument(quoted(text) +
                                " is not a duration: a duration needs a unit, e.g. 5s or 250ms");
  }
  const u128 max_ns = u128(std::numeric_limits<Duration::rep>::max()) * 1'000'000;
  u128 ns = 0;
  std::size_t pos = 0;
  while (pos < text.size()) {
    const auto number = take_decimal(text, pos);
    if (!number) {
      throw std::invalid_argument(generic);
    }
    const std::size_t unit_start = pos;
    while (pos < text.size() && is_alpha(text[pos])) {
      ++pos;
    }
    const std::string_view unit = text.substr(unit_start, pos - unit_start);
    const auto found =
        std::find_if(units.begin(), units.end(), [&](const auto& u) { return u.first == unit; });
    if (found == units.end()) {
      throw std::invalid_argument(generic);
    }
    ns += number->times(found->second);
    if (ns > max_ns) {
      throw std::invalid_argument(quoted(text) + " is too large for a duration");
    }
  }
  return Duration(static_cast<Duration::rep>(ns / 1'000'000));
}

ListenEndpoint parse_listen_endpoint(std::string_view text) {
  const std::string hint = " (use host:port, [::1]:port or unix:/path/to.sock)";
  ListenEndpoint endpoint;
  endpoint.text = std::string(text);
  // A URL copied from an SDK's exporter setting ("http://127.0.0.1:4318"): a listening address
  // has no scheme. Suggest the host:port inside it when that is one.
  const auto scheme_char = [](char c) {
    return is_alpha(c) || is_digit(c) || c == '+' || c == '-' || c == '.';
  };
  if (const auto scheme_end = text.find("://");
      scheme_end != std::string_view::npos && scheme_end > 0 && !text.starts_with("unix:") &&
      std::all_of(text.begin(), text.begin() + std::ptrdiff_t(scheme_end), scheme_char)) {
    std::string_view inside = text.substr(scheme_end + 3);
    inside = inside.substr(0, inside.find('/'));
    std::string example = "127.0.0.1:4318";
    try {
      if (!inside.empty()) {
        example = parse_listen_endpoint(inside).text;
      }
    } catch (const std::invalid_argument&) {
      // keep the generic example
    }
    throw std::invalid_argument(quoted(text) + ": write host:port without a scheme, e.g. " +
                                example + " (or unix:/path)");
  }
  if (text.starts_with("unix:")) {
    endpoint.unix_path = std::string(text.substr(5));
    if (endpoint.unix_path.empty()) {
      throw std::invalid_argument(quoted(text) + ": the unix socket path is empty" + hint);
    }
    if (endpoint.unix_path.size() >= sizeof(sockaddr_un::sun_path)) {
      throw std::invalid_argument(quoted(text) + ": a unix socket path can have at most " +
                                  std::to_string(sizeof(sockaddr_un::sun_path) - 1) + " bytes");
    }
    return endpoint;
  }
  std::string_view host;
  std::string_view port;
  if (text.starts_with("[")) {
    const auto close = text.find(']');
    if (close == std::string_view::npos) {
      throw std::invalid_argument(quoted(text) + ": missing ] after the IPv6 address" + hint);
    }
    host = text.substr(1, close - 1);
    const std::string_view rest = text.substr(close + 1);
    if (!rest.starts_with(":")) {
      throw std::invalid_argument(quoted(text) + " has no port" + hint);
    }
    port = rest.substr(1);
    in6_addr address{};
    if (inet_pton(AF_INET6, std::string(host).c_str(), &address) != 1) {
      throw std::invalid_argument(quoted(text) + ": " + quoted(host) + " is not an IPv6 address");
    }
  } else {
    const auto colon = text.rfind(':');
    if (colon == std::string_view::npos) {
      throw std::invalid_argument(quoted(text) + " has no port" + hint);
    }
    host = text.substr(0, colon);
    port = text.substr(colon + 1);
    if (host.find(':') != std::string_view::npos) {
      throw std::invalid_argument(quoted(text) +
                                  ": an IPv6 address needs brackets, e.g. [::1]:4318");
    }
    if (host.empty()) {
      throw std::invalid_argument(quoted(text) +
                                  " has no host (use 0.0.0.0:PORT to listen on all interfaces)");
    }
    const auto host_char = [](char c) {
      return is_alpha(c) || is_digit(c) || c == '.' || c == '-' || c == '_';
    };
    if (!std::all_of(host.begin(), host.end(), host_char)) {
      throw std::invalid_argument(quoted(text) + ": " + quoted(host) +
                                  " is not a host name or address" + hint);
    }
  }
  endpoint.host = std::string(host);
  endpoint.port = parse_port(port, text, true);
  return endpoint;
}

UpstreamUrl parse_upstream_url(std::string_view text) {
  const std::string hint = " (use e.g. https://otlp-gateway-prod-eu-west-2.grafana.net/otlp)";
  // user:password@ would be a secret in every log line and error, so it is refused before the
  // text is echoed anywhere.
  const auto scheme_end = text.find("://");
  std::string_view authority =
      scheme_end == std::string_view::npos ? text : text.substr(scheme_end + 3);
  authority = authority.substr(0, authority.find_first_of("/?#"));
  if (authority.find('@') != std::string_view::npos) {
    throw std::invalid_argument(
        "the URL must not contain credentials (user:password@); use auth: instead");
  }
  if (text.empty()) {
    throw std::invalid_argument("an empty value is not a URL" + hint);
  }
  const auto parsed = boost::urls::parse_uri(boost::core::string_view(text.data(), text.size()));
  if (!parsed) {
    throw std::invalid_argument(quoted(text) + " is not a valid URL" + hint);
  }
  const boost::urls::url_view& url = *parsed;
  UpstreamUrl result;
  result.text = std::string(text);
  if (url.scheme_id() == boost::urls::scheme::https) {
    result.tls = true;
  } else if (url.scheme_id() != boost::urls::scheme::http) {
    throw std::invalid_argument(quoted(text) + " must start with http:// or https://");
  }
  if (!url.has_authority() || url.encoded_host().empty()) {
    throw std::invalid_argument(quoted(text) + " has no host" + hint);
  }
  if (url.host_type() == boost::urls::host_type::ipvfuture) {
    throw std::invalid_argument(quoted(text) + ": IPvFuture hosts are not supported");
  }
  if (url.has_query()) {
    throw std::invalid_argument(quoted(text) +
                                ": a query string is not allowed (/v1/traces is appended to "
                                "the path)");
  }
  if (url.has_fragment()) {
    throw std::invalid_argument(quoted(text) + ": a #fragment is not allowed");
  }
  result.host = url.host_address();
  const auto port = url.port();
  result.port = url.has_port() && !port.empty()
                    ? parse_port(std::string_view(port.data(), port.size()), text, false)
                    : (result.tls ? 443 : 80);
  const auto path = url.encoded_path();
  result.traces_target = std::string(path.data(), path.size());
  while (!result.traces_target.empty() && result.traces_target.back() == '/') {
    result.traces_target.pop_back();
  }
  result.traces_target += "/v1/traces";
  return result;
}

std::string format_size(std::size_t bytes) {
  static constexpr std::array<std::pair<std::string_view, std::size_t>, 6> units{{
      {"GiB", GiB},
      {"MiB", MiB},
      {"KiB", KiB},
      {"GB", 1000 * 1000 * 1000},
      {"MB", 1000 * 1000},
      {"KB", 1000},
  }};
  for (const auto& [name, size] : units) {
    if (bytes != 0 && bytes % size == 0) {
      return std::to_string(bytes / size) + std::string(name);
    }
  }
  return std::to_string(bytes) + "B";
}

std::string format_duration(Duration duration) {
  static constexpr std::array<std::pair<std::string_view, Duration::rep>, 4> units{{
      {"h", 3'600'000},
      {"m", 60'000},
      {"s", 1'000},
      {"ms", 1},
  }};
  auto left = duration.count();
  if (left == 0) {
    return "0s";
  }
  std::string out = left < 0 ? "-" : "";
  for (const auto& [name, ms] : units) {
    const auto count = left / ms;
    if (count != 0) {
      out += std::to_string(count < 0 ? -count : count) + std::string(name);
      left -= count * ms;
    }
  }
  return out;
}

}  // namespace spanrelay::config
