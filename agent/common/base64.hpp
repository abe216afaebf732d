#pragma once
// Standard base64 encoding (RFC 4648, with padding).

#include <algorithm>
#include <cstdint>
#include <string>
#include <string_view>

namespace spanrelay {

inline constexpr char base64_digits[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

// Appends the encoding of `in` to `out`.
inline void base64_append(std::string& out, std::string_view in) {
  const auto byte = [&](std::size_t i) {
    return i < in.size() ? static_cast<std::uint32_t>(static_cast<unsigned char>(in[i])) : 0u;
  };
  out.reserve(out.size() + (in.size() + 2) / 3 * 4);
  for (std::size_t i = 0; i < in.size(); i += 3) {
    const std::uint32_t bits = (byte(i) << 16) | (byte(i + 1) << 8) | byte(i + 2);
    const std::size_t digits = std::min<std::size_t>(in.size() - i, 3) + 1;
    for (std::size_t d = 0; d < 4; ++d) {
      out += d < digits ? base64_digits[(bits >> (18 - 6 * d)) & 63] : '=';
    }
  }
}

inline std::string base64_encode(std::string_view in) {
  std::string out;
  base64_append(out, in);
  return out;
}

}  // namespace spanrelay
