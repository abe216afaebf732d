#include "common/log.hpp"

#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/stdout_sinks.h>

#include <mutex>
#include <string_view>

namespace spanrelay {
namespace {

std::mutex g_mutex;
spdlog::sink_ptr g_sink;
spdlog::level::level_enum g_level = spdlog::level::info;
bool g_json = false;

// %j: the message as a JSON string body (escaped), so JSON lines stay valid whatever the
// message contains (upstream error bodies, paths, ...).
class JsonEscapedMessage : public spdlog::custom_flag_formatter {
 public:
  void format(const spdlog::details::log_msg& msg, const std::tm&,
              spdlog::memory_buf_t& dest) override {
    static constexpr char hex[] = "0123456789abcdef";
    for (char c : msg.payload) {
      const auto u = static_cast<unsigned char>(c);
      if (c == '"' || c == '\\') {
        dest.push_back('\\');
        dest.push_back(c);
      } else if (u < 0x20) {
        const char esc[] = {'\\', 'u', '0', '0', hex[u >> 4], hex[u & 15]};
        dest.append(esc, esc + sizeof esc);
      } else {
        dest.push_back(c);
      }
    }
  }
  std::unique_ptr<custom_flag_formatter> clone() const override {
    return std::make_unique<JsonEscapedMessage>();
  }
};

// %q: the level as the config names it (trace, debug, info, warn, error, critical), so that
// `log.level: warn` and the lines it lets through say the same word.
class ConfigLevelName : public spdlog::custom_flag_formatter {
 public:
  void format(const spdlog::details::log_msg& msg, const std::tm&,
              spdlog::memory_buf_t& dest) override {
    std::string_view name;
    switch (msg.level) {
      case spdlog::level::trace:
        name = "trace";
        break;
      case spdlog::level::debug:
        name = "debug";
        break;
      case spdlog::level::info:
        name = "info";
        break;
      case spdlog::level::warn:
        name = "warn";
        break;
      case spdlog::level::err:
        name = "error";
        break;
      case spdlog::level::critical:
        name = "critical";
        break;
      default:
        name = "off";
    }
    dest.append(name.data(), name.data() + name.size());
  }
  std::unique_ptr<custom_flag_formatter> clone() const override {
    return std::make_unique<ConfigLevelName>();
  }
};

std::unique_ptr<spdlog::formatter> make_formatter(bool json) {
  if (json) {
    auto f = std::make_unique<spdlog::pattern_formatter>(spdlog::pattern_time_type::utc);
    f->add_flag<JsonEscapedMessage>('j');
    f->add_flag<ConfigLevelName>('q').set_pattern(
        R"({"time":"%Y-%m-%dT%H:%M:%S.%fZ","level":"%q","component":"%n","msg":"%j"})");
    return f;
  }
  auto f = std::make_unique<spdlog::pattern_formatter>();
  f->add_flag<ConfigLevelName>('q').set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%q%$ [%n] %v");
  return f;
}

spdlog::sink_ptr sink_locked() {
  if (!g_sink) {
    g_sink = std::make_shared<spdlog::sinks::stderr_sink_mt>();
    g_sink->set_formatter(make_formatter(g_json));
  }
  return g_sink;
}

}  // namespace

void init_logging(const std::string& level, bool json) {
  std::lock_guard lock(g_mutex);
  g_level = spdlog::level::from_str(level);
  g_json = json;
  auto sink = sink_locked();
  sink->set_formatter(make_formatter(json));
  spdlog::apply_all([&](const std::shared_ptr<spdlog::logger>& l) { l->set_level(g_level); });
  auto def = std::make_shared<spdlog::logger>("spanrelay", sink);
  def->set_level(g_level);
  spdlog::set_default_logger(def);
}

std::shared_ptr<spdlog::logger> logger(const std::string& name) {
  std::lock_guard lock(g_mutex);
  if (auto existing = spdlog::get(name)) {
    return existing;
  }
  auto l = std::make_shared<spdlog::logger>(name, sink_locked());
  l->set_level(g_level);
  l->flush_on(spdlog::level::warn);
  spdlog::register_logger(l);
  return l;
}

}  // namespace spanrelay
