#include "processors/sql_redact.hpp"

#include <cstddef>

namespace spanrelay::processors {
namespace {

bool is_word_char(unsigned char c) noexcept {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
         c == '$' || c >= 0x80;
}

bool is_digit(unsigned char c) noexcept { return c >= '0' && c <= '9'; }

bool is_space(unsigned char c) noexcept {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

// The end of a quoted literal that starts at `open` (the quote), honouring doubled quotes and,
// for single quotes, backslash escapes (MySQL, PostgreSQL E''); npos if unterminated.
std::size_t quoted_end(std::string_view s, std::size_t open, bool backslash) noexcept {
  const char quote = s[open];
  for (std::size_t i = open + 1; i < s.size(); ++i) {
    if (backslash && s[i] == '\\') {
      ++i;
      continue;
    }
    if (s[i] == quote) {
      if (i + 1 < s.size() && s[i + 1] == quote) {
        ++i;  // a doubled quote stands for one
        continue;
      }
      return i + 1;
    }
  }
  return std::string_view::npos;
}

// A dollar-quote opening tag at `at` ($$ or $name$, name not starting with a digit): its
// length, or 0 when there is none ($1 is a parameter).
std::size_t dollar_tag(std::string_view s, std::size_t at) noexcept {
  std::size_t i = at + 1;
  if (i < s.size() && is_digit(static_cast<unsigned char>(s[i]))) {
    return 0;
  }
  while (i < s.size() && s[i] != '$' && is_word_char(static_cast<unsigned char>(s[i]))) {
    ++i;
  }
  return i < s.size() && s[i] == '$' ? i + 1 - at : 0;
}

// The end of a number starting at `at`: digits, letters (0x1F, 0b101, 1e9), '_', '.', and a
// sign right after an exponent 'e'.
std::size_t number_end(std::string_view s, std::size_t at) noexcept {
  std::size_t i = at;
  const bool hex = i + 1 < s.size() && s[i] == '0' && (s[i + 1] == 'x' || s[i + 1] == 'X');
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (is_digit(c) || c == '_' || c == '.' || (c < 0x80 && is_word_char(c) && c != '$')) {
      ++i;
      if (!hex && (c == 'e' || c == 'E') && i < s.size() && (s[i] == '+' || s[i] == '-')) {
        ++i;
      }
      continue;
    }
    break;
  }
  return i;
}

// "IN (?, ?, ?)" -> "IN (?)" in text whose literals are already `?`.
std::string collapse_in_lists(const std::string& s) {
  std::string out;
  out.reserve(s.size());
  std::size_t i = 0;
  while (i < s.size()) {
    const bool keyword = i + 2 <= s.size() && (s[i] == 'i' || s[i] == 'I') &&
                         (s[i + 1] == 'n' || s[i + 1] == 'N') &&
                         (i == 0 || !is_word_char(static_cast<unsigned char>(s[i - 1]))) &&
                         (i + 2 == s.size() || !is_word_char(static_cast<unsigned char>(s[i + 2])));
    if (!keyword) {
      out += s[i++];
      continue;
    }
    out.append(s, i, 2);
    i += 2;
    std::size_t j = i;
    while (j < s.size() && is_space(static_cast<unsigned char>(s[j]))) {
      ++j;
    }
    if (j >= s.size() || s[j] != '(') {
      continue;
    }
    // Only `?`, commas and spaces up to the closing parenthesis, and at least one `?`.
    std::size_t k = j + 1;
    bool any = false;
    while (k < s.size() && (s[k] == '?' || s[k] == ',' || is_space(static_cast<unsigned char>(s[k])))) {
      any = any || s[k] == '?';
      ++k;
    }
    if (!any || k >= s.size() || s[k] != ')') {
      continue;
    }
    out.append(s, i, j - i);  // the space before '('
    out += "(?)";
    i = k + 1;
  }
  return out;
}

}  // namespace

std::string redact_sql_literals(std::string_view sql) {
  std::string out;
  out.reserve(sql.size());
  const std::size_t n = sql.size();
  bool in_word = false;  // the last character copied belongs to a word (identifier, keyword)
  // A removed comment must not glue the tokens around it together.
  auto separate = [&](std::size_t next) {
    if (!out.empty() && !is_space(static_cast<unsigned char>(out.back())) && next < n &&
        !is_space(static_cast<unsigned char>(sql[next]))) {
      out += ' ';
    }
    in_word = false;
  };
  auto literal = [&](std::size_t end) -> std::size_t {
    out += '?';
    in_word = false;
    return end == std::string_view::npos ? n : end;
  };
  std::size_t i = 0;
  while (i < n) {
    const auto c = static_cast<unsigned char>(sql[i]);
    const unsigned char next = i + 1 < n ? static_cast<unsigned char>(sql[i + 1]) : 0;
    if (c == '-' && next == '-') {
      std::size_t end = sql.find('\n', i);
      end = end == std::string_view::npos ? n : end;
      separate(end);
      i = end;
      continue;
    }
    if (c == '/' && next == '*') {
      int depth = 0;
      std::size_t j = i;
      while (j < n) {
        if (sql[j] == '/' && j + 1 < n && sql[j + 1] == '*') {
          ++depth;
          j += 2;
        } else if (sql[j] == '*' && j + 1 < n && sql[j + 1] == '/') {
          j += 2;
          if (--depth == 0) {
            break;
          }
        } else {
          ++j;
        }
      }
      separate(j);
      i = j;
      continue;
    }
    if (c == '\'') {
      i = literal(quoted_end(sql, i, true));
      continue;
    }
    if (!in_word && next == '\'' &&
        (c == 'e' || c == 'E' || c == 'n' || c == 'N' || c == 'b' || c == 'B' || c == 'x' ||
         c == 'X')) {
      i = literal(quoted_end(sql, i + 1, true));
      continue;
    }
    if (!in_word && (c == 'u' || c == 'U') && next == '&' && i + 2 < n && sql[i + 2] == '\'') {
      i = literal(quoted_end(sql, i + 2, true));
      continue;
    }
    if (c == '"' || c == '`') {  // quoted identifiers are kept
      const std::size_t end = quoted_end(sql, i, false);
      const std::size_t stop = end == std::string_view::npos ? n : end;
      out.append(sql.substr(i, stop - i));
      in_word = true;
      i = stop;
      continue;
    }
    if (c == '$' && !in_word) {
      if (const std::size_t tag = dollar_tag(sql, i); tag > 0) {
        const std::size_t close = sql.find(sql.substr(i, tag), i + tag);
        i = literal(close == std::string_view::npos ? close : close + tag);
        continue;
      }
    }
    if (!in_word && (is_digit(c) || (c == '.' && is_digit(next)))) {
      i = literal(number_end(sql, i));
      continue;
    }
    out += static_cast<char>(c);
    in_word = is_word_char(c);
    ++i;
  }
  return collapse_in_lists(out);
}

}  // namespace spanrelay::processors
