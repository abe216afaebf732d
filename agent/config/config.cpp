// YAML -> Config. A Reader walks one mapping: typed getters hand out values (after ${VAR}
// substitution) and register the key as known; finish() rejects every key nobody asked for.
// Error messages start with "FILE:LINE:COLUMN: key.path: " and never contain a secret.
#include "config/config.hpp"
#include "config/quoted.hpp"
#include "processors/processors.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <charconv>
#include <cctype>
#include <cerrno>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <initializer_list>
#include <map>
#include <optional>
#include <utility>
#include <vector>

#include <yaml-cpp/yaml.h>

namespace spanrelay::config {
namespace {

struct Context {
  std::string source;
  std::map<std::string, YAML::Mark> marks;  // dotted path -> value position, for cross-checks
  bool check_secrets = true;                // LoadOptions::check_secrets
  bool secrets_unchecked = false;           // a secret was not present (check_secrets false)
  std::size_t merged_entries = 0;           // entries copied by merge keys, bounded
};

// A secret that is not present in this environment (with check_secrets): the only kind of
// error that --validate --no-secrets turns into "not checked".
class MissingSecret : public ConfigError {
 public:
  using ConfigError::ConfigError;
};


std::string position(const Context& ctx, const YAML::Mark& mark) {
  if (mark.is_null()) {
    return ctx.source + ": ";
  }
  return ctx.source + ":" + std::to_string(mark.line + 1) + ":" + std::to_string(mark.column + 1) +
         ": ";
}

std::string message_at(const Context& ctx, const YAML::Mark& mark, std::string_view path,
                       std::string_view what) {
  std::string message = position(ctx, mark);
  if (!path.empty()) {
    message += std::string(path) + ": ";
  }
  return message + std::string(what);
}

[[noreturn]] void fail(const Context& ctx, const YAML::Mark& mark, std::string_view path,
                       std::string_view what) {
  throw ConfigError(message_at(ctx, mark, path, what));
}

// A secret is not present. With check_secrets this is an error (a MissingSecret); without, it is
// noted and the caller carries on with an empty secret.
void missing_secret(Context& ctx, const YAML::Mark& mark, std::string_view path,
                    std::string_view what) {
  if (ctx.check_secrets) {
    throw MissingSecret(message_at(ctx, mark, path, what));
  }
  ctx.secrets_unchecked = true;
}

std::string_view kind_name(const YAML::Node& node) {
  switch (node.Type()) {
    case YAML::NodeType::Map:
      return "a map";
    case YAML::NodeType::Sequence:
      return "a list";
    case YAML::NodeType::Scalar:
      return "a single value";
    default:
      return "nothing";
  }
}

// ASCII only: std::isalnum depends on the locale.
bool is_digit(char c) { return c >= '0' && c <= '9'; }
bool is_alnum(char c) { return is_digit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }

bool is_env_name(std::string_view name) {
  const auto ok = [](char c) { return is_alnum(c) || c == '_'; };
  return !name.empty() && !is_digit(name.front()) && std::all_of(name.begin(), name.end(), ok);
}

// The '}' that closes the "${" whose inner text starts at `from`: the first '}' not matching a
// '{' opened after it. npos when there is none.
std::size_t closing_brace(std::string_view text, std::size_t from) {
  std::size_t depth = 0;
  for (std::size_t j = from; j < text.size(); ++j) {
    if (text[j] == '{') {
      ++depth;
    } else if (text[j] == '}') {
      if (depth == 0) {
        return j;
      }
      --depth;
    }
  }
  return std::string_view::npos;
}

// ${VAR} -> value (unset: error), ${VAR:-default} -> default when unset or empty, $$ -> $.
// ${env:VAR} and ${env:VAR:-default} (the OpenTelemetry Collector's spelling) are the same.
// A default is config text: it may hold "$$", "${...}" (expanded only when the default is used)
// and balanced { } pairs, and ends at the '}' matching its "${" (`${A:-{"k":1}}` defaults to
// `{"k":1}`). A variable's value is inserted as it is: a '$' in it is never expanded again.
// A '$' before anything else is kept. Errors name the variable, never a value. With `unset`,
// an unset variable without a default is recorded there and expands to nothing.
std::string expand_env(std::string_view text, std::vector<std::string>* unset = nullptr) {
  std::string out;
  for (std::size_t i = 0; i < text.size(); ++i) {
    if (text[i] != '$' || i + 1 == text.size() || (text[i + 1] != '$' && text[i + 1] != '{')) {
      out += text[i];
      continue;
    }
    if (text[i + 1] == '$') {
      out += '$';
      ++i;
      continue;
    }
    const auto close = closing_brace(text, i + 2);
    if (close == std::string_view::npos) {
      throw std::invalid_argument("unterminated ${ (write $$ for a literal $)");
    }
    std::string_view inner = text.substr(i + 2, close - i - 2);
    if (inner.starts_with("env:")) {
      inner.remove_prefix(4);
    }
    const auto fallback = inner.find(":-");
    const std::string name(inner.substr(0, fallback));
    if (!is_env_name(name)) {
      const auto colon = name.find(':');
      if (colon != std::string::npos && colon > 0 && is_env_name(name.substr(0, colon))) {
        // ${file:...}, ${http:...}: other Collector config providers.
        throw std::invalid_argument("${" + name.substr(0, colon + 1) +
                                    "...} is not supported (only ${VAR} and ${env:VAR})");
      }
      throw std::invalid_argument(quoted(name) +
                                  " is not an environment variable name (letters, digits, _)");
    }
    const char* value = std::getenv(name.c_str());
    if (fallback != std::string_view::npos) {
      if (value != nullptr && *value != '\0') {
        out += value;
      } else {
        out += expand_env(inner.substr(fallback + 2), unset);
      }
    } else if (value == nullptr && unset != nullptr) {
      unset->push_back(name);
    } else if (value == nullptr) {
      throw std::invalid_argument("environment variable " + name + " is not set (use ${" + name +
                                  ":-default} for a fallback)");
    } else {
      out += value;
    }
    i = close;
  }
  return out;
}

// The whole file, or nullopt with errno set. `limit` guards against pointing at /dev/zero.
std::optional<std::string> read_file(const std::string& path, std::size_t limit) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return std::nullopt;
  }
  std::string content;
  char chunk[8192];
  for (;;) {
    const ssize_t n = ::read(fd, chunk, sizeof chunk);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n < 0 || content.size() + std::size_t(n) > limit) {
      const int error = n < 0 ? errno : EFBIG;
      ::close(fd);
      errno = error;
      return std::nullopt;
    }
    if (n == 0) {
      break;
    }
    content.append(chunk, std::size_t(n));
  }
  ::close(fd);
  return content;
}

// A position for "this value": the value's own mark, or the key's when the value has none.
YAML::Mark mark_of(const YAML::Node& value, const YAML::Mark& key_mark) {
  return value.IsDefined() && !value.Mark().is_null() ? value.Mark() : key_mark;
}

// The text of a scalar after ${VAR} substitution. Errors never echo the value: it may be secret.
std::string scalar_text(const Context& ctx, const YAML::Node& value, const std::string& path,
                        const YAML::Mark& key_mark) {
  const YAML::Mark mark = mark_of(value, key_mark);
  if (value.IsNull()) {
    fail(ctx, mark, path, "needs a value");
  }
  if (!value.IsScalar()) {
    fail(ctx, mark, path, "expected a single value, got " + std::string(kind_name(value)));
  }
  try {
    return expand_env(value.Scalar());
  } catch (const std::invalid_argument& e) {
    fail(ctx, mark, path, e.what());
  }
}

// The text of a scalar that is or leads to a secret (a header value, the password_file path):
// an unset ${VAR} in it is a missing secret. `missing` tells the caller the text is unusable.
std::string secret_text(Context& ctx, const YAML::Node& value, const std::string& path,
                        const YAML::Mark& key_mark, bool& missing) {
  const YAML::Mark mark = mark_of(value, key_mark);
  missing = false;
  if (value.IsNull()) {
    fail(ctx, mark, path, "needs a value");
  }
  if (!value.IsScalar()) {
    fail(ctx, mark, path, "expected a single value, got " + std::string(kind_name(value)));
  }
  std::vector<std::string> unset;
  std::string text;
  try {
    text = expand_env(value.Scalar(), &unset);
  } catch (const std::invalid_argument& e) {
    fail(ctx, mark, path, e.what());
  }
  if (!unset.empty()) {
    missing_secret(ctx, mark, path,
                   "environment variable " + unset.front() + " is not set (use ${" +
                       unset.front() + ":-default} for a fallback)");
    missing = true;
    return {};
  }
  return text;
}

// YAML merge keys ("<<: *anchor", "<<: [*a, *b]", "<<: {k: v}"). yaml-cpp 0.7 reads "<<" as an
// ordinary key, so the loader merges: keys written in the mapping win, then the merged maps in
// order (an earlier one wins), each with its own merges. A quoted "<<" is an ordinary key.
bool is_merge_key(const YAML::Node& key) {
  return key.IsScalar() && key.Scalar() == "<<" &&
         (key.Tag() == "?" || key.Tag() == "tag:yaml.org,2002:merge");
}

class Reader {
 public:
  // `node` is a map, or null for an empty one ("http:" with no value). `anchor` is where errors
  // about the map as a whole point: the key holding it.
  Reader(Context& ctx, const YAML::Node& node, std::string path, const YAML::Mark& anchor)
      : ctx_(&ctx), path_(std::move(path)), anchor_(anchor) {
    if (node.IsNull()) {
      return;
    }
    if (!node.IsMap()) {
      fail(ctx, mark_of(node, anchor), path_,
           "expected a map, got " + std::string(kind_name(node)));
    }
    add_entries(node, 0);
  }

  const std::string& path() const { return path_; }
  const YAML::Mark& anchor() const { return anchor_; }
  std::string path_of(std::string_view key) const {
    return path_.empty() ? std::string(key) : path_ + "." + std::string(key);
  }

  bool has(std::string_view key) { return find(key) != nullptr; }

  [[noreturn]] void fail_at(std::string_view key, std::string_view what) {
    const Entry* entry = find(key);
    fail(*ctx_, entry != nullptr ? mark_of(entry->value, entry->key_mark) : anchor_, path_of(key),
         what);
  }

  void require(std::string_view key, std::string_view expected) {
    if (!has(key)) {
      fail(*ctx_, anchor_, path_of(key), "is required (" + std::string(expected) + ")");
    }
  }

  // Keys that are valid elsewhere but not here (e.g. `path` on an otlp_http exporter).
  void reject(std::initializer_list<std::string_view> keys, std::string_view why) {
    for (const Entry& entry : entries_) {
      if (std::find(keys.begin(), keys.end(), entry.key) != keys.end()) {
        fail(*ctx_, entry.key_mark, path_of(entry.key), why);
      }
    }
  }

  // The typed getters leave `out` (holding the default) alone when the key is absent, and return
  // whether it was present. `parse` maps the substituted text to a value or throws
  // std::invalid_argument, whose message follows "FILE:LINE:COL: key.path: ".
  template <typename T, typename Parse>
  bool get(std::string_view key, T& out, Parse&& parse) {
    Entry* entry = find(key);
    if (entry == nullptr) {
      return false;
    }
    const std::string path = path_of(key);
    const YAML::Mark mark = mark_of(entry->value, entry->key_mark);
    const std::string text = scalar_text(*ctx_, entry->value, path, entry->key_mark);
    try {
      out = parse(text);
    } catch (const std::invalid_argument& e) {
      fail(*ctx_, mark, path, e.what());
    }
    ctx_->marks[path] = mark;
    return true;
  }

  // A string that leads to a secret (see secret_text). `missing`: an unset ${VAR} in it, which
  // without check_secrets leaves `out` empty.
  bool get_secret_string(std::string_view key, std::string& out, bool& missing) {
    missing = false;
    Entry* entry = find(key);
    if (entry == nullptr) {
      return false;
    }
    const std::string path = path_of(key);
    out = secret_text(*ctx_, entry->value, path, entry->key_mark, missing);
    if (!missing && out.empty()) {
      fail(*ctx_, mark_of(entry->value, entry->key_mark), path, "must not be empty");
    }
    ctx_->marks[path] = mark_of(entry->value, entry->key_mark);
    return true;
  }

  // The position of a key's value (the map's anchor when the key is absent).
  YAML::Mark mark_at(std::string_view key) {
    const Entry* entry = find(key);
    return entry != nullptr ? mark_of(entry->value, entry->key_mark) : anchor_;
  }

  // A scalar as written, before ${VAR} substitution (for messages about non-secret values).
  std::string raw_text(std::string_view key) {
    const Entry* entry = find(key);
    return entry != nullptr && entry->value.IsScalar() ? entry->value.Scalar() : std::string();
  }

  bool get_string(std::string_view key, std::string& out, bool allow_empty = true) {
    return get(key, out, [&](const std::string& text) {
      if (text.empty() && !allow_empty) {
        throw std::invalid_argument("must not be empty");
      }
      return text;
    });
  }

  bool get_size(std::string_view key, std::size_t& out, std::size_t min) {
    return get(key, out, [&](const std::string& text) {
      const std::size_t size = parse_size(text);
      if (size < min) {
        throw std::invalid_argument(format_size(size) + " is too small (minimum " +
                                    format_size(min) + ")");
      }
      return size;
    });
  }

  bool get_count(std::string_view key, std::size_t& out, std::size_t min, std::size_t max) {
    return get(key, out, [&](const std::string& text) {
      const std::string range =
          "a whole number from " + std::to_string(min) + " to " + std::to_string(max);
      if (text.empty() || text.size() > 19 || !std::all_of(text.begin(), text.end(), is_digit)) {
        throw std::invalid_argument(quoted(text) + " is not " + range);
      }
      const std::size_t count = std::stoull(text);
      if (count < min || count > max) {
        throw std::invalid_argument(text + " is out of range (" + range + ")");
      }
      return count;
    });
  }

  // Every duration in the config is a timeout or interval: zero makes no sense.
  bool get_duration(std::string_view key, Duration& out) {
    return get(key, out, [](const std::string& text) {
      const Duration duration = parse_duration(text);
      if (duration <= Duration::zero()) {
        throw std::invalid_argument(quoted(text) + " must be greater than 0 (at least 1ms)");
      }
      return duration;
    });
  }

  bool get_bool(std::string_view key, bool& out) {
    return get(key, out, [](const std::string& text) {
      if (text != "true" && text != "false") {
        throw std::invalid_argument(quoted(text) + " is not a boolean (use true or false)");
      }
      return text == "true";
    });
  }

  template <typename T>
  bool get_enum(std::string_view key, T& out,
                std::initializer_list<std::pair<std::string_view, T>> choices) {
    return get(key, out, [&](const std::string& text) {
      std::string names;
      for (const auto& [name, value] : choices) {
        if (name == text) {
          return value;
        }
        names += (names.empty() ? "" : ", ") + std::string(name);
      }
      throw std::invalid_argument(quoted(text) + " is not one of: " + names);
    });
  }

  bool get_listen(std::string_view key, ListenEndpoint& out) {
    return get(key, out, [](const std::string& text) { return parse_listen_endpoint(text); });
  }

  // A nested map; nullopt when the key is absent.
  std::optional<Reader> child(std::string_view key) {
    Entry* entry = find(key);
    if (entry == nullptr) {
      return std::nullopt;
    }
    ctx_->marks[path_of(key)] = entry->key_mark;
    return Reader(*ctx_, entry->value, path_of(key), entry->key_mark);
  }

  // For maps keyed by user-chosen names (exporters, headers): f(key, key_mark, value, path) for
  // every entry, in file order.
  void each(const std::function<void(const std::string&, const YAML::Mark&, const YAML::Node&,
                                     const std::string&)>& f) {
    for (Entry& entry : entries_) {
      entry.used = true;
      f(entry.key, entry.key_mark, entry.value, path_of(entry.key));
    }
  }

  // A list of maps under `key` (the processors, a filter's rules): f(item, index) for each, in
  // order. Returns whether the key is present; "key:" with no value is an empty list.
  bool each_item(std::string_view key, const std::function<void(Reader&, std::size_t)>& f) {
    Entry* entry = find(key);
    if (entry == nullptr) {
      return false;
    }
    const std::string path = path_of(key);
    ctx_->marks[path] = entry->key_mark;
    if (entry->value.IsNull()) {
      return true;
    }
    if (!entry->value.IsSequence()) {
      fail(*ctx_, mark_of(entry->value, entry->key_mark), path,
           "expected a list, got " + std::string(kind_name(entry->value)));
    }
    std::size_t i = 0;
    for (const YAML::Node& item : entry->value) {
      Reader reader(*ctx_, item, path + "[" + std::to_string(i) + "]",
                    mark_of(item, entry->key_mark));
      f(reader, i++);
    }
    return true;
  }

  // One value or a list of values under `key` ("kind: server", "keys: [a, b]"), each with
  // ${VAR} substituted. Returns whether the key is present.
  bool get_strings(std::string_view key, std::vector<std::string>& out) {
    Entry* entry = find(key);
    if (entry == nullptr) {
      return false;
    }
    out = strings_of(entry->value, path_of(key), entry->key_mark);
    ctx_->marks[path_of(key)] = mark_of(entry->value, entry->key_mark);
    return true;
  }

  // A map from names the user chooses to one value or a list ("attributes: {url.path: [/a]}").
  bool get_string_lists(std::string_view key,
                        std::vector<std::pair<std::string, std::vector<std::string>>>& out) {
    auto map = child(key);
    if (!map) {
      return false;
    }
    out.clear();
    map->each([&](const std::string& name, const YAML::Mark& name_mark, const YAML::Node& value,
                  const std::string& path) {
      out.emplace_back(name, strings_of(value, path, name_mark));
    });
    return true;
  }

  // A value typed as YAML writes it: quoted, a string; plain, an integer, a float, true/false,
  // or else a string. ${VAR} is substituted first (a plain ${PORT} set to 8080 is an integer).
  bool get_value(std::string_view key, processors::Value& out) {
    Entry* entry = find(key);
    if (entry == nullptr) {
      return false;
    }
    const std::string path = path_of(key);
    const std::string text = scalar_text(*ctx_, entry->value, path, entry->key_mark);
    ctx_->marks[path] = mark_of(entry->value, entry->key_mark);
    out = text;
    if (entry->value.Tag() != "?") {  // quoted ("!"), or an explicit tag: a string
      return true;
    }
    if (text == "true" || text == "false") {
      out = text == "true";
      return true;
    }
    std::int64_t i = 0;
    const char* end = text.data() + text.size();
    if (auto r = std::from_chars(text.data(), end, i); r.ec == std::errc{} && r.ptr == end &&
                                                       !text.empty()) {
      out = i;
      return true;
    }
    double d = 0;
    if (auto r = std::from_chars(text.data(), end, d); r.ec == std::errc{} && r.ptr == end &&
                                                       !text.empty()) {
      out = d;
    }
    return true;
  }

  bool empty() const { return entries_.empty(); }

  void finish() {
    for (const Entry& entry : entries_) {
      if (!entry.used) {
        std::string known;
        for (const std::string& name : known_) {
          known += (known.empty() ? "" : ", ") + name;
        }
        fail(*ctx_, entry.key_mark, path_of(entry.key), "unknown key (known: " + known + ")");
      }
    }
  }

 private:
  struct Entry {
    std::string key;
    YAML::Mark key_mark;
    YAML::Node value;
    bool used = false;
  };

  // The keys of `node` (a map), then those its merge keys bring that are not there yet.
  // `depth` > 0: `node` is being merged into this map (duplicates are not errors there).
  void add_entries(const YAML::Node& node, int depth) {
    // Bounds: an anchor merged into itself (yaml-cpp builds the cycle), and aliases that
    // multiply (each map merging the previous one twice).
    constexpr int kMaxDepth = 16;
    constexpr std::size_t kMaxMerged = 10'000;
    std::vector<std::pair<YAML::Mark, YAML::Node>> merges;
    const std::size_t first = entries_.size();
    for (const auto& kv : node) {
      const YAML::Mark key_mark = kv.first.Mark();
      if (depth > 0 && ++ctx_->merged_entries > kMaxMerged) {
        fail(*ctx_, key_mark, path_, "YAML merge keys (<<) bring in too many keys");
      }
      if (!kv.first.IsScalar()) {
        fail(*ctx_, key_mark, path_,
             "keys must be plain strings, got " + std::string(kind_name(kv.first)));
      }
      if (is_merge_key(kv.first)) {
        merges.emplace_back(key_mark, kv.second);
        continue;
      }
      const std::string key = kv.first.Scalar();
      const auto seen = std::find_if(entries_.begin(), entries_.end(),
                                     [&](const Entry& e) { return e.key == key; });
      if (seen != entries_.end() && seen - entries_.begin() >= std::ptrdiff_t(first)) {
        fail(*ctx_, key_mark, path_of(key),
             "duplicate key (first at line " + std::to_string(seen->key_mark.line + 1) + ")");
      }
      if (seen != entries_.end()) {
        continue;  // merged in, and the mapping (or an earlier merged map) has it already
      }
      entries_.push_back({key, key_mark, kv.second, false});
    }
    for (const auto& [merge_mark, value] : merges) {
      const std::string what =
          "the value of a YAML merge key (<<) must be a map, an alias of one (*name) or a list "
          "of them";
      if (depth >= kMaxDepth) {
        fail(*ctx_, merge_mark, path_, "YAML merge keys (<<) nested too deeply (an anchor "
                                       "merged into itself?)");
      }
      if (value.IsMap()) {
        add_entries(value, depth + 1);
      } else if (value.IsSequence()) {
        for (const YAML::Node& item : value) {
          if (!item.IsMap()) {
            fail(*ctx_, mark_of(item, merge_mark), path_of("<<"), what);
          }
          add_entries(item, depth + 1);
        }
      } else {
        fail(*ctx_, value.IsNull() ? merge_mark : mark_of(value, merge_mark), path_of("<<"), what);
      }
    }
  }

  std::vector<std::string> strings_of(const YAML::Node& value, const std::string& path,
                                      const YAML::Mark& key_mark) {
    std::vector<std::string> out;
    if (!value.IsSequence()) {
      out.push_back(scalar_text(*ctx_, value, path, key_mark));
      return out;
    }
    std::size_t i = 0;
    for (const YAML::Node& item : value) {
      out.push_back(scalar_text(*ctx_, item, path + "[" + std::to_string(i++) + "]",
                                mark_of(value, key_mark)));
    }
    return out;
  }

  // Registers `key` as known (for the finish() message) and marks its entry used.
  Entry* find(std::string_view key) {
    if (std::find(known_.begin(), known_.end(), key) == known_.end()) {
      known_.emplace_back(key);
    }
    for (Entry& entry : entries_) {
      if (entry.key == key) {
        entry.used = true;
        return &entry;
      }
    }
    return nullptr;
  }

  Context* ctx_;
  std::string path_;
  YAML::Mark anchor_;
  std::vector<Entry> entries_;
  std::vector<std::string> known_;
};

bool is_exporter_name(std::string_view name) {
  const auto ok = [](char c) { return is_alnum(c) || c == '_' || c == '-'; };
  return !name.empty() && std::all_of(name.begin(), name.end(), ok);
}

// RFC 9110 token.
bool is_http_token(std::string_view name) {
  static constexpr std::string_view extra = "!#$%&'*+-.^_`|~";
  const auto ok = [](char c) { return is_alnum(c) || extra.find(c) != std::string_view::npos; };
  return !name.empty() && std::all_of(name.begin(), name.end(), ok);
}

std::string lower(std::string_view text) {
  std::string out(text);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

void read_http_receiver(Reader& r, HttpReceiver& http) {
  http.enabled = true;
  r.get_listen("endpoint", http.endpoint);
  r.get_size("max_request_bytes", http.max_request_bytes, KiB);
  r.get_count("max_connections", http.max_connections, 1, 1'000'000);
  r.get_size("max_header_bytes", http.max_header_bytes, KiB);
  r.get_duration("read_timeout", http.read_timeout);
  r.get_duration("idle_timeout", http.idle_timeout);
  r.finish();
}

void read_grpc_receiver(Reader& r, GrpcReceiver& grpc) {
  grpc.enabled = true;
  r.get_listen("endpoint", grpc.endpoint);
  r.get("max_message_bytes", grpc.max_message_bytes, [](const std::string& text) {
    // gRPC takes the limit as an int; a single OTLP request of a gigabyte is already absurd.
    const std::size_t size = parse_size(text);
    if (size < KiB) {
      throw std::invalid_argument(format_size(size) + " is too small (minimum 1KiB)");
    }
    if (size > GiB) {
      throw std::invalid_argument(format_size(size) + " is too large (maximum 1GiB)");
    }
    return size;
  });
  r.get_count("max_concurrent_streams", grpc.max_concurrent_streams, 1, 1'000'000);
  if (auto keepalive = r.child("keepalive")) {
    keepalive->get_duration("time", grpc.keepalive.time);
    keepalive->get_duration("timeout", grpc.keepalive.timeout);
    keepalive->finish();
  }
  r.finish();
}

void read_auth(Context& ctx, Reader& r, Auth& auth) {
  auth.enabled = true;
  r.require("username", "the user or instance ID, e.g. \"123456\"");
  r.get("username", auth.username, [](const std::string& text) {
    if (text.empty() || text.find(':') != std::string::npos) {
      throw std::invalid_argument("must be non-empty and must not contain ':'");
    }
    return text;
  });
  const bool from_env = r.has("password_env");
  const bool from_file = r.has("password_file");
  if (from_env && from_file) {
    r.fail_at("password_file", "set only one of password_env and password_file");
  }
  if (!from_env && !from_file) {
    fail(ctx, r.anchor(), r.path(),
         "needs password_env (an environment variable name) or password_file (a path)");
  }
  if (from_env) {
    std::string name;
    r.get("password_env", name, [](const std::string& text) {
      if (!is_env_name(text)) {
        throw std::invalid_argument(quoted(text) +
                                    " is not an environment variable name (letters, digits, _)");
      }
      return text;
    });
    auth.password_source = "env " + name;
    const char* value = std::getenv(name.c_str());
    if (value == nullptr || *value == '\0') {
      missing_secret(ctx, r.mark_at("password_env"), r.path_of("password_env"),
                     "environment variable " + name + " is not set or is empty");
      auth.password_unchecked = true;
    } else {
      auth.password = value;
    }
  } else {
    std::string path;
    bool unset = false;
    r.get_secret_string("password_file", path, unset);
    const YAML::Mark mark = r.mark_at("password_file");
    const std::string key_path = r.path_of("password_file");
    std::optional<std::string> content;
    if (unset) {
      auth.password_unchecked = true;
    } else if (content = read_file(path, 64 * KiB); !content) {
      missing_secret(ctx, mark, key_path, "cannot read " + path + ": " + std::strerror(errno));
      auth.password_unchecked = true;
    } else {
      auth.password = *content;
      while (!auth.password.empty() &&
             std::isspace(static_cast<unsigned char>(auth.password.back()))) {
        auth.password.pop_back();
      }
      if (auth.password.empty()) {
        missing_secret(ctx, mark, key_path, path + " is empty");
        auth.password_unchecked = true;
      }
    }
    // The path as written when a ${VAR} in it is not set here: it is not a secret.
    auth.password_source = "file " + (unset ? r.raw_text("password_file") : path);
    auth.password_file = path;
  }
  r.finish();
}

void read_headers(Context& ctx, Reader& r, Exporter& exporter) {
  r.each([&](const std::string& name, const YAML::Mark& key_mark, const YAML::Node& value,
             const std::string& path) {
    if (!is_http_token(name)) {
      fail(ctx, key_mark, path, "is not a valid HTTP header name");
    }
    const std::string lowered = lower(name);
    // spanrelay writes these itself; a second copy would corrupt the request framing.
    static constexpr std::string_view reserved[] = {
        "host",      "content-length", "content-type", "content-encoding", "transfer-encoding",
        "connection"};
    if (std::find(std::begin(reserved), std::end(reserved), lowered) != std::end(reserved)) {
      fail(ctx, key_mark, path, "is set by spanrelay and cannot be configured");
    }
    if (lowered == "authorization" && exporter.auth.enabled) {
      fail(ctx, key_mark, path, "conflicts with auth: (use one or the other)");
    }
    for (const auto& [seen, unused] : exporter.headers) {
      if (lower(seen) == lowered) {
        fail(ctx, key_mark, path, "duplicate header (names are case-insensitive)");
      }
    }
    bool unset = false;
    std::string text = secret_text(ctx, value, path, key_mark, unset);
    if (unset) {
      exporter.unchecked_headers.push_back(name);
    }
    if (text.find_first_of(std::string_view("\r\n\0", 3)) != std::string::npos) {
      fail(ctx, mark_of(value, key_mark), path,
           "the value must not contain CR, LF or NUL characters");
    }
    exporter.headers.emplace_back(name, std::move(text));
  });
}

void read_retry(Context& ctx, Reader& r, Retry& retry) {
  const bool initial_set = r.get_duration("initial_interval", retry.initial_interval);
  r.get_duration("max_interval", retry.max_interval);
  r.get_duration("max_elapsed", retry.max_elapsed);
  r.get_bool("enabled", retry.enabled);
  r.finish();
  if (retry.initial_interval > retry.max_interval) {
    const std::string which = initial_set ? "initial_interval" : "max_interval";
    const std::string path = r.path_of(which);
    fail(ctx, ctx.marks[path], path,
         "retry.initial_interval (" + format_duration(retry.initial_interval) +
             ") must not exceed retry.max_interval (" + format_duration(retry.max_interval) + ")");
  }
}

void read_tls(Reader& r, Tls& tls) {
  if (r.get_string("ca_file", tls.ca_file) && !tls.ca_file.empty() &&
      ::access(tls.ca_file.c_str(), R_OK) != 0) {
    r.fail_at("ca_file", "cannot read " + tls.ca_file + ": " + std::strerror(errno));
  }
  r.get_bool("insecure_skip_verify", tls.insecure_skip_verify);
  r.get_string("server_name", tls.server_name);
  r.finish();
}

Exporter read_exporter(Context& ctx, Reader& r, const std::string& name) {
  Exporter exporter;
  exporter.name = name;
  r.require("type", "otlp_http, otlp_grpc or file");
  r.get_enum("type", exporter.type,
             {{"otlp_http", ExporterType::otlp_http},
              {"otlp_grpc", ExporterType::otlp_grpc},
              {"file", ExporterType::file}});
  if (exporter.type == ExporterType::file) {
    r.require("path", "where to write the spans, e.g. ./spans.jsonl");
    r.get_string("path", exporter.path, false);
    r.get_size("max_queue_bytes", exporter.max_queue_bytes, 0);
    r.reject(
        {"endpoint", "compression", "auth", "headers", "timeout", "retry", "tls", "max_in_flight"},
        "only valid for type: otlp_http and otlp_grpc");
    r.finish();
    return exporter;
  }
  r.reject({"path"}, "only valid for type: file");
  const bool grpc = exporter.type == ExporterType::otlp_grpc;
  r.require("endpoint", grpc ? "the OTLP/gRPC URL, e.g. https://tempo.example.com:4317"
                             : "the OTLP/HTTP base URL, e.g. https://host/otlp");
  r.get("endpoint", exporter.endpoint, [grpc](const std::string& text) {
    UpstreamUrl url = parse_upstream_url(text);
    if (grpc && url.traces_target != "/v1/traces") {
      throw std::invalid_argument(quoted(text) +
                                  ": an otlp_grpc endpoint has no path (use scheme://host:port)");
    }
    return url;
  });
  r.get_enum("compression", exporter.gzip, {{"gzip", true}, {"none", false}});
  if (auto auth = r.child("auth")) {
    read_auth(ctx, *auth, exporter.auth);
  }
  if (auto headers = r.child("headers")) {
    read_headers(ctx, *headers, exporter);
  }
  r.get_duration("timeout", exporter.timeout);
  if (auto retry = r.child("retry")) {
    read_retry(ctx, *retry, exporter.retry);
  }
  if (auto tls = r.child("tls")) {
    read_tls(*tls, exporter.tls);
    // gRPC 1.51's SslCredentials always verify; skipping needs its experimental TLS API.
    if (grpc && exporter.tls.insecure_skip_verify) {
      tls->fail_at("insecure_skip_verify",
                   "tls.insecure_skip_verify is not supported by otlp_grpc: use tls.ca_file with "
                   "the upstream's CA, or otlp_http");
    }
  }
  r.get_count("max_in_flight", exporter.max_in_flight, 1, 64);
  r.get_size("max_queue_bytes", exporter.max_queue_bytes, 0);
  r.finish();
  return exporter;
}

void read_exporters(Context& ctx, Reader& r, std::vector<Exporter>& exporters) {
  if (r.empty()) {
    fail(ctx, r.anchor(), r.path(),
         "at least one exporter is required (see config/examples/grafana-cloud.yaml)");
  }
  r.each([&](const std::string& name, const YAML::Mark& key_mark, const YAML::Node& value,
             const std::string& path) {
    if (!is_exporter_name(name)) {
      fail(ctx, key_mark, r.path(),
           "exporter name " + quoted(name) + " must be letters, digits, _ or - (not empty)");
    }
    Reader exporter(ctx, value, path, key_mark);
    exporters.push_back(read_exporter(ctx, exporter, name));
  });
}

void read_spool(Reader& r, Spool& spool) {
  spool.enabled = true;
  r.require("path", "a directory for the exporters' queues, e.g. /var/lib/spanrelay/spool");
  r.get_string("path", spool.path, false);
  r.get_size("max_bytes", spool.max_bytes, MiB);
  r.get_enum("fsync", spool.fsync,
             {{"always", SpoolFsync::always},
              {"interval", SpoolFsync::interval},
              {"never", SpoolFsync::never}});
  r.get_duration("fsync_interval", spool.fsync_interval);
  r.get_enum("on_full", spool.on_full,
             {{"drop_oldest", SpoolOnFull::drop_oldest}, {"reject", SpoolOnFull::reject}});
  r.get_enum("replay", spool.replay,
             {{"oldest_first", SpoolReplay::oldest_first},
              {"newest_first", SpoolReplay::newest_first}});
  r.get_duration("max_age", spool.max_age);
  r.finish();
}

bool same_address(const ListenEndpoint& a, const ListenEndpoint& b) {
  if (!a.unix_path.empty() || !b.unix_path.empty()) {
    return a.unix_path == b.unix_path;
  }
  return a.port != 0 && a.port == b.port && a.host == b.host;
}

// ---- processors ----

void read_attribute_action(Reader& r, processors::AttributeAction& a) {
  using Kind = processors::AttributeAction::Kind;
  r.require("key", "the attribute's name");
  r.require("action", "insert, update, upsert, delete or rename");
  r.get_enum("scope", a.scope,
             {{"resource", processors::Scope::kResource},
              {"span", processors::Scope::kSpan},
              {"event", processors::Scope::kEvent}});
  r.get_string("key", a.key, false);
  r.get_enum("action", a.action,
             {{"insert", Kind::kInsert},
              {"update", Kind::kUpdate},
              {"upsert", Kind::kUpsert},
              {"delete", Kind::kDelete},
              {"rename", Kind::kRename}});
  const bool writes = a.action == Kind::kInsert || a.action == Kind::kUpdate ||
                      a.action == Kind::kUpsert;
  if (writes) {
    r.require("value", "what " + std::string(r.raw_text("action")) + " writes");
    r.get_value("value", a.value);
  } else {
    r.reject({"value"}, "only insert, update and upsert write a value");
  }
  if (a.action == Kind::kRename) {
    r.require("to", "the new name");
    r.get_string("to", a.to, false);
  } else {
    r.reject({"to"}, "only rename takes a new name (to)");
  }
  r.finish();
}

void read_span_rule(Context& ctx, Reader& r, processors::SpanRule& rule) {
  r.get_string("reason", rule.name, false);
  r.get_strings("name", rule.span_names);
  std::vector<std::string> names;
  if (r.get_strings("kind", names)) {
    static constexpr std::array<std::string_view, 6> kinds = {
        "unspecified", "internal", "server", "client", "producer", "consumer"};
    for (const std::string& n : names) {
      const auto it = std::find(kinds.begin(), kinds.end(), lower(n));
      if (it == kinds.end()) {
        r.fail_at("kind", quoted(n) + " is not one of: internal, server, client, producer, "
                                      "consumer, unspecified");
      }
      rule.kinds.push_back(static_cast<std::uint32_t>(it - kinds.begin()));
    }
  }
  if (r.get_strings("status", names)) {
    static constexpr std::array<std::string_view, 3> codes = {"unset", "ok", "error"};
    for (const std::string& n : names) {
      const auto it = std::find(codes.begin(), codes.end(), lower(n));
      if (it == codes.end()) {
        r.fail_at("status", quoted(n) + " is not one of: unset, ok, error");
      }
      rule.statuses.push_back(static_cast<std::uint32_t>(it - codes.begin()));
    }
  }
  r.get_string_lists("attributes", rule.attributes);
  r.get_string_lists("resource", rule.resource);
  r.finish();
  if (rule.span_names.empty() && rule.kinds.empty() && rule.statuses.empty() &&
      rule.attributes.empty() && rule.resource.empty()) {
    fail(ctx, r.anchor(), r.path(),
         "a rule needs at least one condition (name, kind, status, attributes, resource): an "
         "empty rule would drop every span");
  }
}

void read_processors(Context& ctx, Reader& root, std::vector<processors::ProcessorOptions>& out) {
  using Type = processors::ProcessorOptions::Type;
  root.each_item("processors", [&](Reader& r, std::size_t index) {
    processors::ProcessorOptions o;
    r.require("type", "attributes, redact, filter or probabilistic_sampler");
    r.get_enum("type", o.type,
               {{"attributes", Type::kAttributes},
                {"redact", Type::kRedact},
                {"filter", Type::kFilter},
                {"probabilistic_sampler", Type::kSampler}});
    const std::string type = r.raw_text("type");
    std::string name = type;
    for (const auto& other : out) {
      if (other.name == name || other.name.starts_with(type + "/")) {
        name = type + "/" + std::to_string(index);
      }
    }
    r.get_string("name", name, false);
    o.name = name;
    switch (o.type) {
      case Type::kAttributes:
        r.require("actions", "a list of {scope, key, action, value}");
        r.each_item("actions", [&](Reader& a, std::size_t) {
          o.attributes.actions.emplace_back();
          read_attribute_action(a, o.attributes.actions.back());
        });
        break;
      case Type::kRedact:
        r.get_strings("keys", o.redact.keys);
        r.get_enum("mode", o.redact.mode,
                   {{"sql_literals", processors::RedactOptions::Mode::kSqlLiterals},
                    {"hash", processors::RedactOptions::Mode::kHash},
                    {"truncate", processors::RedactOptions::Mode::kTruncate}});
        if (o.redact.mode == processors::RedactOptions::Mode::kTruncate) {
          r.require("max_bytes", "how many bytes of each value to keep");
          r.get_count("max_bytes", o.redact.max_bytes, 0, std::size_t(1) << 30);
        } else {
          r.reject({"max_bytes"}, "only mode: truncate takes max_bytes");
        }
        r.get_strings("delete_keys_matching", o.redact.delete_keys_matching);
        r.get_strings("delete_values_matching", o.redact.delete_values_matching);
        break;
      case Type::kFilter:
        r.require("drop_spans", "a list of rules");
        r.each_item("drop_spans", [&](Reader& rule, std::size_t) {
          o.filter.drop_spans.emplace_back();
          read_span_rule(ctx, rule, o.filter.drop_spans.back());
        });
        break;
      case Type::kSampler: {
        r.require("percentage", "the share of traces to keep, 0 to 100");
        r.get("percentage", o.sampler.percentage, [](const std::string& text) {
          float p = 0;
          const char* end = text.data() + text.size();
          const auto res = std::from_chars(text.data(), end, p);
          if (res.ec != std::errc{} || res.ptr != end || !(p >= 0 && p <= 100)) {
            throw std::invalid_argument(quoted(text) + " is not a number from 0 to 100");
          }
          return p;
        });
        std::size_t precision = static_cast<std::size_t>(o.sampler.precision);
        if (r.get_count("precision", precision, 1, 14)) {
          o.sampler.precision = static_cast<int>(precision);
        }
        r.get_enum("mode", o.sampler.mode,
                   {{"proportional", processors::SamplerMode::proportional},
                    {"equalizing", processors::SamplerMode::equalizing}});
        bool fail_closed = true;
        if (r.get_bool("fail_closed", fail_closed)) {
          o.sampler.on_error = fail_closed ? processors::ErrorPolicy::fail_closed
                                           : processors::ErrorPolicy::fail_open;
        }
        break;
      }
    }
    r.finish();
    try {
      processors::make_processor(o);  // what only building it can check (regular expressions)
    } catch (const std::invalid_argument& e) {
      fail(ctx, r.anchor(), r.path(), e.what());
    }
    out.push_back(std::move(o));
  });
}

Config read_config(Context& ctx, const YAML::Node& root) {
  if (root.IsNull()) {
    fail(ctx, YAML::Mark::null_mark(), "",
         "the config is empty (see config/examples/grafana-cloud.yaml)");
  }
  Config config;
  config.source = ctx.source;
  Reader r(ctx, root, "", root.Mark());

  if (auto receivers = r.child("receivers")) {
    if (auto http = receivers->child("http")) {
      read_http_receiver(*http, config.receivers.http);
    }
    if (auto grpc = receivers->child("grpc")) {
      read_grpc_receiver(*grpc, config.receivers.grpc);
      if (config.receivers.http.enabled &&
          same_address(config.receivers.grpc.endpoint, config.receivers.http.endpoint)) {
        grpc->fail_at("endpoint", "the same address as receivers.http.endpoint");
      }
    }
    receivers->finish();
    if (!config.receivers.http.enabled && !config.receivers.grpc.enabled) {
      fail(ctx, receivers->anchor(), "receivers",
           "no receiver is enabled (add http: {} or remove receivers: for the default)");
    }
  } else {
    config.receivers.http.enabled = true;
  }

  if (auto buffer = r.child("buffer")) {
    buffer->get_size("max_bytes", config.buffer.max_bytes, KiB);
    buffer->get_count("max_chunks", config.buffer.max_chunks, 1, std::size_t(1) << 32);
    buffer->finish();
  }
  if (auto batch = r.child("batch")) {
    batch->get_count("max_spans", config.batch.max_spans, 1, std::size_t(1) << 32);
    batch->get_size("max_bytes", config.batch.max_bytes, KiB);
    batch->get_duration("timeout", config.batch.timeout);
    batch->finish();
  }
  if (config.buffer.max_bytes < config.batch.max_bytes) {
    const std::string why = "buffer.max_bytes (" + format_size(config.buffer.max_bytes) +
                            ") must be at least batch.max_bytes (" +
                            format_size(config.batch.max_bytes) +
                            "): a full batch must fit in the buffer";
    const std::string path =
        ctx.marks.contains("buffer.max_bytes") ? "buffer.max_bytes" : "batch.max_bytes";
    fail(ctx, ctx.marks[path], path, why);
  }

  if (auto exporters = r.child("exporters")) {
    read_exporters(ctx, *exporters, config.exporters);
  } else {
    fail(ctx, r.anchor(), "exporters",
         "at least one exporter is required (see config/examples/grafana-cloud.yaml)");
  }

  if (auto log = r.child("log")) {
    log->get_enum("level", config.log.level,
                  {{"trace", std::string("trace")},
                   {"debug", std::string("debug")},
                   {"info", std::string("info")},
                   {"warn", std::string("warn")},
                   {"error", std::string("error")},
                   {"off", std::string("off")}});
    log->get_enum("format", config.log.json, {{"text", false}, {"json", true}});
    log->finish();
  }

  if (auto admin = r.child("admin")) {
    config.admin.enabled = true;
    admin->get_listen("endpoint", config.admin.endpoint);
    admin->finish();
    if (config.receivers.http.enabled &&
        same_address(config.admin.endpoint, config.receivers.http.endpoint)) {
      admin->fail_at("endpoint", "the same address as receivers.http.endpoint");
    }
    if (config.receivers.grpc.enabled &&
        same_address(config.admin.endpoint, config.receivers.grpc.endpoint)) {
      admin->fail_at("endpoint", "the same address as receivers.grpc.endpoint");
    }
  }

  if (auto spool = r.child("spool")) {
    read_spool(*spool, config.spool);
  }

  read_processors(ctx, r, config.processors);

  r.get_duration("shutdown_timeout", config.shutdown_timeout);
  r.finish();
  return config;
}

}  // namespace

Config load_string(std::string_view yaml, const std::string& source_name,
                   const LoadOptions& options) {
  Context ctx;
  ctx.source = source_name;
  ctx.check_secrets = options.check_secrets;
  try {
    Config config = read_config(ctx, YAML::Load(std::string(yaml)));
    config.secrets_unchecked = ctx.secrets_unchecked;
    return config;
  } catch (const YAML::Exception& e) {
    throw ConfigError(position(ctx, e.mark) + "invalid YAML: " + e.msg);
  } catch (const MissingSecret& e) {
    if (!options.suggest_no_secrets || !options.check_secrets) {
      throw;
    }
    // Is the missing secret the only problem? Then say so, and how to check the rest.
    try {
      load_string(yaml, source_name, {.check_secrets = false});
    } catch (const ConfigError&) {
      throw e;
    }
    throw ConfigError(std::string(e.what()) +
                      " (everything else is valid; to validate a file whose secrets are set "
                      "only where it runs, use --validate --no-secrets)");
  }
}

Config load_file(const std::string& path, const LoadOptions& options) {
  const auto content = read_file(path, 16 * MiB);
  if (!content) {
    throw ConfigError("cannot read config file " + path + ": " + std::strerror(errno));
  }
  return load_string(*content, path, options);
}

std::string describe(const Config& config) {
  std::string out;
  const auto line = [&](int indent, std::string_view key, std::string_view value) {
    out += std::string(std::size_t(indent) * 2, ' ') + std::string(key) + ":";
    out += value.empty() ? "\n" : " " + std::string(value) + "\n";
  };
  const auto flag = [](bool value) { return value ? "true" : "false"; };

  line(0, "source", config.source);
  if (config.secrets_unchecked) {
    line(0, "secrets", "some not present here, not checked (--no-secrets)");
  }
  line(0, "receivers", "");
  const HttpReceiver& http = config.receivers.http;
  if (http.enabled) {
    line(1, "http", "");
    line(2, "endpoint", http.endpoint.text);
    line(2, "max_request_bytes", format_size(http.max_request_bytes));
    line(2, "max_connections", std::to_string(http.max_connections));
    line(2, "max_header_bytes", format_size(http.max_header_bytes));
    line(2, "read_timeout", format_duration(http.read_timeout));
    line(2, "idle_timeout", format_duration(http.idle_timeout));
  } else {
    line(1, "http", "disabled");
  }
  const GrpcReceiver& grpc = config.receivers.grpc;
  if (grpc.enabled) {
    line(1, "grpc", "");
    line(2, "endpoint", grpc.endpoint.text);
    line(2, "max_message_bytes", format_size(grpc.max_message_bytes));
    line(2, "max_concurrent_streams", std::to_string(grpc.max_concurrent_streams));
    line(2, "keepalive", "");
    line(3, "time", format_duration(grpc.keepalive.time));
    line(3, "timeout", format_duration(grpc.keepalive.timeout));
  } else {
    line(1, "grpc", "disabled");
  }
  line(0, "buffer", "");
  line(1, "max_bytes", format_size(config.buffer.max_bytes));
  line(1, "max_chunks", std::to_string(config.buffer.max_chunks));
  line(0, "batch", "");
  line(1, "max_spans", std::to_string(config.batch.max_spans));
  line(1, "max_bytes", format_size(config.batch.max_bytes));
  line(1, "timeout", format_duration(config.batch.timeout));

  line(0, "exporters", "");
  for (const Exporter& e : config.exporters) {
    line(1, e.name, "");
    if (e.type == ExporterType::file) {
      line(2, "type", "file");
      line(2, "path", e.path);
      continue;
    }
    const bool grpc = e.type == ExporterType::otlp_grpc;
    line(2, "type", grpc ? "otlp_grpc" : "otlp_http");
    line(2, "endpoint",
         grpc ? e.endpoint.text + " (" + (e.endpoint.tls ? "TLS" : "plaintext") + ")"
              : e.endpoint.text + " (POST " + (e.endpoint.tls ? "https://" : "http://") +
                    host_port(e.endpoint.host, e.endpoint.port) + e.endpoint.traces_target +
                    ")");
    line(2, "compression", e.gzip ? "gzip" : "none");
    line(2, "auth",
         !e.auth.enabled ? "none"
         : e.auth.password_unchecked
             ? "username: " + e.auth.username + ", password: <not checked (--no-secrets), from " +
                   e.auth.password_source + ">"
             : "username: " + e.auth.username + ", password: <redacted, from " +
                   e.auth.password_source + ">");
    if (e.headers.empty()) {
      line(2, "headers", "none");
    } else {
      line(2, "headers", "");
      for (const auto& [name, value] : e.headers) {
        const bool unchecked = std::find(e.unchecked_headers.begin(), e.unchecked_headers.end(),
                                         name) != e.unchecked_headers.end();
        line(3, name, unchecked ? "<not checked (--no-secrets)>" : "<redacted>");
      }
    }
    line(2, "timeout", format_duration(e.timeout));
    line(2, "retry", "");
    line(3, "enabled", flag(e.retry.enabled));
    line(3, "initial_interval", format_duration(e.retry.initial_interval));
    line(3, "max_interval", format_duration(e.retry.max_interval));
    line(3, "max_elapsed", format_duration(e.retry.max_elapsed));
    line(2, "tls", e.endpoint.tls ? "" : "not used (http://)");
    if (e.endpoint.tls) {
      line(3, "ca_file", e.tls.ca_file.empty() ? "<system trust store>" : e.tls.ca_file);
      line(3, "insecure_skip_verify", flag(e.tls.insecure_skip_verify));
      line(3, "server_name", e.tls.server_name.empty() ? "<endpoint host>" : e.tls.server_name);
    }
    line(2, "max_in_flight", std::to_string(e.max_in_flight));
    line(2, "max_queue_bytes",
         e.max_queue_bytes == 0 ? "auto" : format_size(e.max_queue_bytes));
  }

  if (config.spool.enabled) {
    const Spool& s = config.spool;
    line(0, "spool", "");
    line(1, "path", s.path);
    line(1, "max_bytes", format_size(s.max_bytes) + " (shared by the network exporters)");
    line(1, "fsync", s.fsync == SpoolFsync::always     ? "always"
                     : s.fsync == SpoolFsync::interval ? "interval"
                                                       : "never");
    line(1, "fsync_interval", format_duration(s.fsync_interval));
    line(1, "on_full", s.on_full == SpoolOnFull::reject ? "reject" : "drop_oldest");
    line(1, "replay", s.replay == SpoolReplay::newest_first ? "newest_first" : "oldest_first");
    line(1, "max_age", s.max_age.count() == 0 ? "none" : format_duration(s.max_age));
  } else {
    line(0, "spool", "disabled (memory only)");
  }

  if (config.processors.empty()) {
    line(0, "processors", "none");
  } else {
    line(0, "processors", "");
    for (const auto& p : config.processors) {
      using Type = processors::ProcessorOptions::Type;
      std::string what;
      switch (p.type) {
        case Type::kAttributes:
          what = std::to_string(p.attributes.actions.size()) + " action(s)";
          break;
        case Type::kRedact:
          what = std::string(p.redact.mode == processors::RedactOptions::Mode::kHash ? "hash"
                             : p.redact.mode == processors::RedactOptions::Mode::kTruncate
                                 ? "truncate to " + std::to_string(p.redact.max_bytes) + " bytes"
                                 : "sql_literals") +
                 " on " + std::to_string(p.redact.keys.size()) + " key(s), " +
                 std::to_string(p.redact.delete_keys_matching.size() +
                                p.redact.delete_values_matching.size()) +
                 " deletion pattern(s)";
          break;
        case Type::kFilter:
          what = std::to_string(p.filter.drop_spans.size()) + " drop rule(s)";
          break;
        case Type::kSampler: {
          char pct[32];
          std::snprintf(pct, sizeof pct, "%g", static_cast<double>(p.sampler.percentage));
          what = std::string(pct) + "% of traces, " +
                 (p.sampler.mode == processors::SamplerMode::equalizing ? "equalizing"
                                                                        : "proportional");
          break;
        }
      }
      line(1, "- " + p.name, what);
    }
  }
  line(0, "log", "");
  line(1, "level", config.log.level);
  line(1, "format", config.log.json ? "json" : "text");
  if (config.admin.enabled) {
    line(0, "admin", "");
    line(1, "endpoint", config.admin.endpoint.text);
  } else {
    line(0, "admin", "disabled");
  }
  line(0, "shutdown_timeout", format_duration(config.shutdown_timeout));
  return out;
}

}  // namespace spanrelay::config
