#pragma once
// Internal to the config loader: a value as it is shown in an error message, in quotes.

#include <string>
#include <string_view>

namespace spanrelay::config {

inline std::string quoted(std::string_view text) {
  // Built by appends: GCC 12 reports a false -Wrestrict inside operator+ at -O2/-O3.
  std::string out;
  out.reserve(text.size() + 2);
  out += '"';
  out += text;
  out += '"';
  return out;
}

}  // namespace spanrelay::config
