// The deployment examples, checked without a cluster or a compose engine (neither exists here):
// every manifest under deploy/kubernetes and deploy/compose parses; ports, probe paths, the
// config path, the token file and its Secret mount agree with the agent's config; the configs
// they embed pass the real binary's --validate; the applications' SDK variables are the
// traces-specific ones and point at the agent's receiver; and every metric the Grafana
// dashboard, the alert rules and docs/operations.md name is one the real /metrics exports.

#include <algorithm>
#include <cctype>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <optional>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include <boost/json.hpp>
#include <catch2/catch.hpp>
#include <yaml-cpp/yaml.h>

#include "integration/fake_upstream.hpp"
#include "integration/grpc_client.hpp"
#include "integration/harness.hpp"

namespace it {
namespace {

namespace fs = std::filesystem;

// ---- files ----

// The source tree: this file is tests/integration/deploy_manifests_test.cpp.
fs::path repo_root() {
  const fs::path root = fs::path(__FILE__).parent_path().parent_path().parent_path();
  if (!fs::exists(root / "deploy") || !fs::exists(root / "CMakeLists.txt")) {
    FAIL("cannot find the source tree from " << __FILE__ << " (looked in " << root << ")");
  }
  return root;
}

struct Doc {
  std::string file;  // relative to the repository root
  YAML::Node node;
};

// Every YAML document of every .yaml/.yml file under dir (multi-document files included).
std::vector<Doc> load_yaml_dir(const fs::path& dir) {
  const fs::path root = repo_root();
  REQUIRE(fs::is_directory(dir));
  std::vector<fs::path> files;
  for (const auto& entry : fs::recursive_directory_iterator(dir)) {
    const auto ext = entry.path().extension();
    if (entry.is_regular_file() && (ext == ".yaml" || ext == ".yml")) {
      files.push_back(entry.path());
    }
  }
  std::sort(files.begin(), files.end());
  std::vector<Doc> docs;
  for (const auto& file : files) {
    const std::string rel = fs::relative(file, root).string();
    std::vector<YAML::Node> nodes;
    try {
      nodes = YAML::LoadAllFromFile(file.string());
    } catch (const YAML::Exception& e) {
      FAIL(rel << " does not parse: " << e.what());
    }
    INFO(rel);
    CHECK(!nodes.empty());
    for (const auto& node : nodes) {
      if (!node.IsNull()) {
        docs.push_back({rel, node});
      }
    }
  }
  return docs;
}

std::string s(const YAML::Node& node) {
  return node && node.IsScalar() ? node.as<std::string>() : std::string();
}

// ---- values ----

struct HostPort {
  std::string host;
  int port = 0;
};

// "host:port" or "[v6]:port" as the agent's config writes endpoints.
HostPort parse_endpoint(const std::string& endpoint) {
  const auto colon = endpoint.rfind(':');
  if (colon == std::string::npos) {
    return {endpoint, 0};
  }
  std::string host = endpoint.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  return {host, std::atoi(endpoint.c_str() + colon + 1)};
}

struct Url {
  std::string scheme, host, path;
  int port = 0;
};

Url parse_url(const std::string& url) {
  static const std::regex re(R"(^(\w+)://([^/:]+):(\d+)(/.*)?$)");
  std::smatch m;
  if (!std::regex_match(url, m, re)) {
    return {};
  }
  return {m[1], m[2], m[4], std::stoi(m[3])};
}

// A size in the agent's units (512MiB, 1GB, 4096) or a Kubernetes quantity (1Gi, 512Mi, 1G).
double parse_bytes(const std::string& text) {
  static const std::regex re(R"(^\s*([0-9.]+)\s*([A-Za-z]*)\s*$)");
  std::smatch m;
  if (!std::regex_match(text, m, re)) {
    return -1;
  }
  static const std::map<std::string, double> units = {
      {"", 1},        {"B", 1},          {"KB", 1e3},         {"MB", 1e6},
      {"GB", 1e9},    {"KiB", 1024.0},   {"MiB", 1048576.0},  {"GiB", 1073741824.0},
      {"k", 1e3},     {"K", 1e3},        {"M", 1e6},          {"G", 1e9},
      {"Ki", 1024.0}, {"Mi", 1048576.0}, {"Gi", 1073741824.0}};
  const auto unit = units.find(m[2]);
  return unit == units.end() ? -1 : std::stod(m[1]) * unit->second;
}

// A Go-style duration as the agent's config writes it: 10s, 1m30s, 250ms.
double parse_seconds(const std::string& text) {
  static const std::regex part(R"(([0-9.]+)(ms|s|m|h))");
  double total = 0;
  std::size_t consumed = 0;
  for (std::sregex_iterator i(text.begin(), text.end(), part), end; i != end; ++i) {
    const double v = std::stod((*i)[1]);
    const std::string u = (*i)[2];
    total += u == "ms" ? v / 1000 : u == "s" ? v : u == "m" ? v * 60 : v * 3600;
    consumed += static_cast<std::size_t>(i->length());
  }
  return consumed == text.size() && !text.empty() ? total : -1;
}

// ---- Kubernetes ----

const YAML::Node* find_doc(const std::vector<Doc>& docs, const std::string& kind,
                           const std::string& name) {
  for (const auto& d : docs) {
    if (s(d.node["kind"]) == kind && s(d.node["metadata"]["name"]) == name) {
      return &d.node;
    }
  }
  return nullptr;
}

struct Mounted {
  YAML::Node mount;
  std::string rest;  // path below the mount ("" when the mount is the file itself)
};

// The volume mount of the container that holds path (the deepest one).
std::optional<Mounted> mount_of(const YAML::Node& container, const std::string& path) {
  std::optional<Mounted> best;
  std::size_t best_len = 0;
  for (const auto& m : container["volumeMounts"]) {
    std::string at = s(m["mountPath"]);
    while (at.size() > 1 && at.back() == '/') {
      at.pop_back();
    }
    std::string rest;
    if (path == at) {
      rest = "";
    } else if (path.starts_with(at + "/")) {
      rest = path.substr(at.size() + 1);
    } else {
      continue;
    }
    if (at.size() >= best_len) {
      best_len = at.size();
      best = Mounted{m, rest};
    }
  }
  return best;
}

YAML::Node volume_named(const YAML::Node& pod, const std::string& name) {
  for (const auto& v : pod["volumes"]) {
    if (s(v["name"]) == name) {
      return v;
    }
  }
  return YAML::Node();
}

// The key of a configMap/secret volume source that appears at `rest` below its mount.
std::string key_at(const YAML::Node& source, const Mounted& m) {
  const std::string rel = s(m.mount["subPath"]).empty() ? m.rest : s(m.mount["subPath"]);
  if (source["items"]) {
    for (const auto& item : source["items"]) {
      if (s(item["path"]) == rel) {
        return s(item["key"]);
      }
    }
    return "";
  }
  return rel;
}

// A probe's httpGet port, named or numbered, as a number.
int probe_port(const YAML::Node& container, const YAML::Node& probe) {
  const YAML::Node port = probe["httpGet"]["port"];
  const std::string text = s(port);
  if (!text.empty() && std::all_of(text.begin(), text.end(), ::isdigit)) {
    return std::stoi(text);
  }
  for (const auto& p : container["ports"]) {
    if (s(p["name"]) == text) {
      return p["containerPort"].as<int>();
    }
  }
  return -1;
}

std::map<std::string, std::string> k8s_env(const YAML::Node& container) {
  std::map<std::string, std::string> env;
  for (const auto& e : container["env"]) {
    env[s(e["name"])] = s(e["value"]);
  }
  return env;
}

// true when the security context of the container or, failing that, of the pod says so.
YAML::Node sec(const YAML::Node& pod, const YAML::Node& container, const std::string& key) {
  if (container["securityContext"][key]) {
    return container["securityContext"][key];
  }
  return pod["securityContext"][key];
}

// The traces-only SDK settings of an application container or compose service.
void check_sdk_env(const std::map<std::string, std::string>& env, const std::string& host,
                   int port) {
  CHECK(env.count("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") == 1);
  const Url url = parse_url(env.count("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
                                ? env.at("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
                                : "");
  CHECK(url.scheme == "http");
  CHECK(url.host == host);
  CHECK(url.port == port);
  CHECK(url.path == "/v1/traces");
  CHECK((env.count("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") &&
         env.at("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") == "http/protobuf"));
  // The generic variables would send the SDK's metrics and logs to a traces-only agent.
  CHECK(env.count("OTEL_EXPORTER_OTLP_ENDPOINT") == 0);
  CHECK(env.count("OTEL_EXPORTER_OTLP_PROTOCOL") == 0);
  CHECK(env.count("OTEL_EXPORTER_OTLP_HEADERS") == 0);  // the agent holds the credentials
  CHECK(env.count("OTEL_EXPORTER_OTLP_TRACES_HEADERS") == 0);
  CHECK((env.count("OTEL_METRICS_EXPORTER") && env.at("OTEL_METRICS_EXPORTER") == "none"));
  CHECK((env.count("OTEL_LOGS_EXPORTER") && env.at("OTEL_LOGS_EXPORTER") == "none"));
  CHECK(env.count("OTEL_SERVICE_NAME") == 1);
}

void check_validates(const std::string& config_text, const Env& env,
                     const std::vector<std::string>& secrets) {
  TempDir dir;
  dir.write("spanrelay.yaml", config_text);
  const ProgramResult result =
      run_spanrelay({"--config", dir.file("spanrelay.yaml"), "--validate"}, env);
  INFO("spanrelay --validate said:\n" << result.output);
  REQUIRE(result.exit_code.has_value());
  CHECK(*result.exit_code == 0);
  CHECK(result.output.find("configuration OK") != std::string::npos);
  for (const auto& secret : secrets) {
    CHECK(result.output.find(secret) == std::string::npos);
  }
}

// ---- metric names ----

// Names of every sample and every `# TYPE` family in Prometheus text.
std::set<std::string> exported_names(const std::string& text) {
  std::set<std::string> names;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.starts_with("# TYPE ")) {
      std::istringstream words(line.substr(7));
      std::string name;
      words >> name;
      names.insert(name);
    } else if (!line.empty() && line[0] != '#') {
      names.insert(line.substr(0, line.find_first_of("{ ")));
    }
  }
  return names;
}

std::set<std::string> metric_tokens(const std::string& text) {
  static const std::regex re(R"(\b(?:spanrelay|process)_[A-Za-z0-9_]*[A-Za-z0-9])");
  std::set<std::string> out;
  for (std::sregex_iterator i(text.begin(), text.end(), re), end; i != end; ++i) {
    out.insert(i->str());
  }
  return out;
}

// A queried name is exported when /metrics has it, or, for a histogram's series, its family.
bool exported(const std::set<std::string>& names, const std::string& name) {
  if (names.count(name)) {
    return true;
  }
  for (const char* suffix : {"_bucket", "_sum", "_count"}) {
    if (name.ends_with(suffix)) {
      const std::string base = name.substr(0, name.size() - std::string(suffix).size());
      return names.count(base) && names.count(base + "_bucket") && names.count(base + "_count");
    }
  }
  return false;
}

void collect_json_queries(const boost::json::value& v, std::vector<std::string>& out) {
  if (v.is_object()) {
    for (const auto& [key, value] : v.as_object()) {
      if ((key == "expr" || key == "query" || key == "definition") && value.is_string()) {
        out.emplace_back(value.as_string());
      }
      collect_json_queries(value, out);
    }
  } else if (v.is_array()) {
    for (const auto& e : v.as_array()) {
      collect_json_queries(e, out);
    }
  }
}

void collect_panels(const boost::json::array& panels, std::vector<boost::json::object>& out) {
  for (const auto& p : panels) {
    REQUIRE(p.is_object());
    out.push_back(p.as_object());
    if (const auto* nested = p.as_object().if_contains("panels"); nested && nested->is_array()) {
      collect_panels(nested->as_array(), out);
    }
  }
}

boost::json::value load_dashboard() {
  const fs::path path = repo_root() / "deploy/grafana/spanrelay-dashboard.json";
  REQUIRE(fs::exists(path));
  boost::system::error_code ec;
  auto value = boost::json::parse(read_file(path.string()), ec);
  INFO("deploy/grafana/spanrelay-dashboard.json: " << ec.message());
  REQUIRE(!ec);
  REQUIRE(value.is_object());
  return value;
}

std::vector<std::string> alert_exprs() {
  const auto docs = load_yaml_dir(repo_root() / "deploy/grafana");
  std::vector<std::string> exprs;
  for (const auto& d : docs) {
    for (const auto& group : d.node["groups"]) {
      CHECK(!s(group["name"]).empty());
      for (const auto& rule : group["rules"]) {
        INFO(d.file << ": rule " << s(rule["alert"]));
        CHECK(!s(rule["alert"]).empty());
        CHECK(!s(rule["expr"]).empty());
        CHECK(!s(rule["labels"]["severity"]).empty());
        CHECK(!s(rule["annotations"]["summary"]).empty());
        if (rule["for"]) {
          CHECK(parse_seconds(s(rule["for"])) > 0);
        }
        exprs.push_back(s(rule["expr"]));
      }
    }
  }
  return exprs;
}

// ---- compose ----

std::map<std::string, std::string> compose_env(const YAML::Node& service) {
  std::map<std::string, std::string> env;
  const YAML::Node e = service["environment"];
  if (!e) {
    return env;
  }
  if (e.IsMap()) {
    for (const auto& kv : e) {
      env[kv.first.as<std::string>()] = s(kv.second);
    }
  } else if (e.IsSequence()) {
    for (const auto& item : e) {
      const std::string line = s(item);
      const auto eq = line.find('=');
      env[line.substr(0, eq)] = eq == std::string::npos ? "" : line.substr(eq + 1);
    }
  }
  return env;
}

std::map<std::string, std::string> read_dotenv(const fs::path& path) {
  std::map<std::string, std::string> vars;
  std::istringstream in(read_file(path.string()));
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') {
      continue;
    }
    const auto eq = line.find('=');
    if (eq != std::string::npos) {
      vars[line.substr(0, eq)] = line.substr(eq + 1);
    }
  }
  return vars;
}

// Compose's interpolation of one value (${VAR}, ${VAR:-default}, ${VAR:?message}) from .env.
std::string interpolate(const std::string& value, const std::map<std::string, std::string>& vars) {
  static const std::regex re(R"(\$\{(\w+)(?::([-?])([^}]*))?\})");
  std::string out;
  auto from = value.cbegin();
  for (std::sregex_iterator i(value.begin(), value.end(), re), end; i != end; ++i) {
    out.append(from, (*i)[0].first);
    const auto found = vars.find((*i)[1]);
    if (found != vars.end() && !found->second.empty()) {
      out += found->second;
    } else if ((*i)[2] == "-") {
      out += (*i)[3].str();
    } else {
      FAIL("compose variable " << (*i)[1] << " is required but not in .env.example");
    }
    from = (*i)[0].second;
  }
  out.append(from, value.cend());
  return out;
}

// ---- the tests ----

TEST_CASE("deploy: every YAML file under deploy/kubernetes, compose and grafana parses") {
  const fs::path root = repo_root();
  for (const char* dir : {"deploy/kubernetes", "deploy/compose", "deploy/grafana"}) {
    INFO(dir);
    const auto docs = load_yaml_dir(root / dir);
    CHECK(!docs.empty());
  }
  // Every Kubernetes document is an object with its identity, and the kustomization lists
  // files that exist.
  for (const auto& d : load_yaml_dir(root / "deploy/kubernetes")) {
    INFO(d.file);
    REQUIRE(d.node.IsMap());
    CHECK(!s(d.node["apiVersion"]).empty());
    CHECK(!s(d.node["kind"]).empty());
    if (s(d.node["kind"]) == "Kustomization") {
      CHECK(d.node["resources"].size() > 0);
      for (const auto& r : d.node["resources"]) {
        INFO("resource " << s(r));
        CHECK(fs::exists(root / fs::path(d.file).parent_path() / s(r)));
      }
    } else {
      CHECK(!s(d.node["metadata"]["name"]).empty());
    }
  }
}

TEST_CASE("kubernetes: the sidecar's config, probes, token mount and SDK env agree") {
  const auto docs = load_yaml_dir(repo_root() / "deploy/kubernetes");

  // The workload with spanrelay as a native sidecar.
  YAML::Node pod, sidecar, workload;
  std::size_t sidecars = 0;
  for (const auto& d : docs) {
    const std::string kind = s(d.node["kind"]);
    if (kind != "Deployment" && kind != "StatefulSet" && kind != "DaemonSet") {
      continue;
    }
    for (const auto& c : d.node["spec"]["template"]["spec"]["initContainers"]) {
      if (s(c["image"]).find("spanrelay") != std::string::npos && sidecars++ == 0) {
        workload = d.node;
        pod = d.node["spec"]["template"]["spec"];
        sidecar = static_cast<const YAML::Node&>(c);
      }
    }
  }
  REQUIRE(sidecars == 1);
  CHECK(s(sidecar["restartPolicy"]) == "Always");  // a native sidecar (Kubernetes >= 1.29)
  for (const auto& c : pod["containers"]) {
    CHECK(s(c["image"]).find("spanrelay:") == std::string::npos);  // not a plain container too
  }

  // --config /etc/spanrelay/spanrelay.yaml, from a mounted ConfigMap.
  const std::string config_path = "/etc/spanrelay/spanrelay.yaml";
  std::vector<std::string> args;
  for (const auto& a : sidecar["args"]) {
    args.push_back(s(a));
  }
  const auto config_arg = std::find(args.begin(), args.end(), "--config");
  REQUIRE(config_arg != args.end());
  REQUIRE(config_arg + 1 != args.end());
  CHECK(*(config_arg + 1) == config_path);
  const auto config_mount = mount_of(sidecar, config_path);
  REQUIRE(config_mount.has_value());
  CHECK(s(config_mount->mount["subPath"]).empty());  // a subPath mount never sees updates
  const YAML::Node config_volume = volume_named(pod, s(config_mount->mount["name"]));
  REQUIRE(config_volume["configMap"]);
  const std::string config_map_name = s(config_volume["configMap"]["name"]);
  const YAML::Node* config_map = find_doc(docs, "ConfigMap", config_map_name);
  INFO("ConfigMap " << config_map_name);
  REQUIRE(config_map != nullptr);
  const std::string key = key_at(config_volume["configMap"], *config_mount);
  REQUIRE(!key.empty());
  const std::string config_text = s((*config_map)["data"][key]);
  REQUIRE(!config_text.empty());
  const YAML::Node config = YAML::Load(config_text);

  // Receivers on the ports the SDK uses, admin on all interfaces for the kubelet's probes.
  const HostPort http = parse_endpoint(s(config["receivers"]["http"]["endpoint"]));
  CHECK(http.port == 4318);
  if (config["receivers"]["grpc"]) {
    CHECK(parse_endpoint(s(config["receivers"]["grpc"]["endpoint"])).port == 4317);
  }
  const HostPort admin = parse_endpoint(s(config["admin"]["endpoint"]));
  CHECK(admin.port == 13133);
  CHECK((admin.host == "0.0.0.0" || admin.host == "::"));
  std::set<int> config_ports = {http.port, admin.port};
  if (config["receivers"]["grpc"]) {
    config_ports.insert(parse_endpoint(s(config["receivers"]["grpc"]["endpoint"])).port);
  }
  for (const auto& p : sidecar["ports"]) {
    INFO("declared port " << s(p["name"]));
    CHECK(config_ports.count(p["containerPort"].as<int>()) == 1);
  }

  // Probes: liveness /healthz, readiness /readyz, both on the admin port.
  REQUIRE(sidecar["livenessProbe"]);
  REQUIRE(sidecar["readinessProbe"]);
  CHECK(s(sidecar["livenessProbe"]["httpGet"]["path"]) == "/healthz");
  CHECK(probe_port(sidecar, sidecar["livenessProbe"]) == admin.port);
  CHECK(s(sidecar["readinessProbe"]["httpGet"]["path"]) == "/readyz");
  CHECK(probe_port(sidecar, sidecar["readinessProbe"]) == admin.port);
  if (sidecar["startupProbe"]) {
    const std::string path = s(sidecar["startupProbe"]["httpGet"]["path"]);
    CHECK((path == "/readyz" || path == "/healthz"));
    CHECK(probe_port(sidecar, sidecar["startupProbe"]) == admin.port);
  }

  // The token: password_file inside the mount of a Secret that has that key.
  std::string token_path;
  for (const auto& exporter : config["exporters"]) {
    if (exporter.second["auth"]["password_file"]) {
      token_path = s(exporter.second["auth"]["password_file"]);
    }
    CHECK(!exporter.second["auth"]["password_env"]);  // the token comes from the Secret file
  }
  REQUIRE(!token_path.empty());
  const auto token_mount = mount_of(sidecar, token_path);
  INFO("password_file " << token_path);
  REQUIRE(token_mount.has_value());
  CHECK(s(token_mount->mount["subPath"]).empty());  // a subPath mount never sees rotation
  const YAML::Node token_volume = volume_named(pod, s(token_mount->mount["name"]));
  REQUIRE(token_volume["secret"]);
  const std::string secret_name = s(token_volume["secret"]["secretName"]);
  const std::string token_key = key_at(token_volume["secret"], *token_mount);
  REQUIRE(!token_key.empty());
  const YAML::Node* secret = find_doc(docs, "Secret", secret_name);
  INFO("Secret " << secret_name << " key " << token_key);
  REQUIRE(secret != nullptr);
  CHECK(((*secret)["stringData"][token_key] || (*secret)["data"][token_key]));
  for (const auto& c : pod["containers"]) {  // only the sidecar mounts the token
    for (const auto& m : c["volumeMounts"]) {
      CHECK(s(m["name"]) != s(token_mount->mount["name"]));
    }
  }

  // The spool on an emptyDir with room for spool.max_bytes.
  REQUIRE(config["spool"]);
  const std::string spool_path = s(config["spool"]["path"]);
  const auto spool_mount = mount_of(sidecar, spool_path);
  INFO("spool " << spool_path);
  REQUIRE(spool_mount.has_value());
  const YAML::Node spool_volume = volume_named(pod, s(spool_mount->mount["name"]));
  const bool claim = s(workload["kind"]) == "StatefulSet" || spool_volume["persistentVolumeClaim"];
  if (!claim) {
    REQUIRE(spool_volume["emptyDir"]);
    const double limit = parse_bytes(s(spool_volume["emptyDir"]["sizeLimit"]));
    const double spool_max = parse_bytes(s(config["spool"]["max_bytes"]));
    CHECK(spool_max > 0);
    CHECK(limit > spool_max);
  }
  CHECK(!s(spool_mount->mount["readOnly"]).starts_with("t"));

  // Hardening, resources, and time to drain.
  CHECK(s(sec(pod, sidecar, "runAsNonRoot")) == "true");
  CHECK(s(sec(pod, sidecar, "runAsUser")) == "65532");
  CHECK(s(sidecar["securityContext"]["readOnlyRootFilesystem"]) == "true");
  CHECK(s(sidecar["securityContext"]["allowPrivilegeEscalation"]) == "false");
  bool drops_all = false;
  for (const auto& cap : sidecar["securityContext"]["capabilities"]["drop"]) {
    drops_all = drops_all || s(cap) == "ALL";
  }
  CHECK(drops_all);
  CHECK(s(sec(pod, sidecar, "seccompProfile")["type"]) == "RuntimeDefault");
  CHECK(!s(sidecar["resources"]["requests"]["memory"]).empty());
  const double memory_limit = parse_bytes(s(sidecar["resources"]["limits"]["memory"]));
  const double buffer = parse_bytes(config["buffer"] ? s(config["buffer"]["max_bytes"]) : "64MiB");
  CHECK(memory_limit > buffer + 25 * 1048576.0);  // the buffer plus what the agent idles at
  const double shutdown =
      parse_seconds(config["shutdown_timeout"] ? s(config["shutdown_timeout"]) : "10s");
  REQUIRE(shutdown > 0);
  CHECK(pod["terminationGracePeriodSeconds"].as<double>(30) > shutdown);

  // The applications export traces, and only traces, to the sidecar on loopback.
  std::size_t apps = 0;
  for (const auto& c : pod["containers"]) {
    const auto env = k8s_env(c);
    if (std::none_of(env.begin(), env.end(),
                     [](const auto& kv) { return kv.first.starts_with("OTEL_"); })) {
      continue;
    }
    ++apps;
    INFO("container " << s(c["name"]));
    check_sdk_env(env, "127.0.0.1", http.port);
  }
  CHECK(apps >= 1);

  // The embedded config is one the real binary accepts (the token file made here).
  TempDir secrets;
  secrets.write("token", std::string(test_token) + "\n");
  std::string runnable = config_text;
  const auto at = runnable.find(token_path);
  REQUIRE(at != std::string::npos);
  runnable.replace(at, token_path.size(), secrets.file("token"));
  CHECK(runnable.find(token_path) == std::string::npos);  // named once
  check_validates(runnable, default_env(), {std::string(test_token)});
}

TEST_CASE("compose: the spanrelay service, its config and the applications' SDK env agree") {
  const fs::path root = repo_root();
  const fs::path dir = root / "deploy/compose";
  const fs::path compose_file =
      fs::exists(dir / "compose.yaml") ? dir / "compose.yaml" : dir / "docker-compose.yml";
  REQUIRE(fs::exists(compose_file));
  const YAML::Node compose = YAML::LoadFile(compose_file.string());
  const YAML::Node services = compose["services"];
  REQUIRE(services.IsMap());

  // spanrelay: built from the container Dockerfile at the repository root.
  std::string agent_name;
  for (const auto& kv : services) {
    if (s(kv.second["image"]).starts_with("spanrelay:")) {
      agent_name = kv.first.as<std::string>();
    }
  }
  REQUIRE(!agent_name.empty());
  const YAML::Node agent = services[agent_name];
  if (agent["build"]) {
    const fs::path context = dir / s(agent["build"]["context"]);
    CHECK(fs::equivalent(context, root));
    CHECK(s(agent["build"]["dockerfile"]) == "deploy/container/Dockerfile");
    CHECK(fs::exists(context / s(agent["build"]["dockerfile"])));
  }

  // Its config: a file next to compose.yaml mounted at /etc/spanrelay/spanrelay.yaml.
  std::string config_source;
  for (const auto& v : agent["volumes"]) {
    const std::string spec = s(v);
    std::vector<std::string> parts;
    std::stringstream in(spec);
    for (std::string part; std::getline(in, part, ':');) {
      parts.push_back(part);
    }
    if (parts.size() >= 2 && parts[1] == "/etc/spanrelay/spanrelay.yaml") {
      config_source = parts[0];
    }
  }
  REQUIRE(!config_source.empty());
  const fs::path config_file = dir / config_source;
  REQUIRE(fs::exists(config_file));
  const std::string config_text = read_file(config_file.string());
  const YAML::Node config = YAML::Load(config_text);
  const std::vector<std::string> command = [&] {
    std::vector<std::string> out;
    for (const auto& a : agent["command"]) {
      out.push_back(s(a));
    }
    return out;
  }();
  if (!command.empty()) {
    const auto flag = std::find(command.begin(), command.end(), "--config");
    REQUIRE(flag != command.end());
    REQUIRE(flag + 1 != command.end());
    CHECK(*(flag + 1) == "/etc/spanrelay/spanrelay.yaml");
  }

  // Receivers reachable from the other services, admin published on the host's loopback only.
  const HostPort http = parse_endpoint(s(config["receivers"]["http"]["endpoint"]));
  CHECK(http.host == "0.0.0.0");
  CHECK(http.port == 4318);
  if (config["receivers"]["grpc"]) {
    CHECK(parse_endpoint(s(config["receivers"]["grpc"]["endpoint"])).port == 4317);
  }
  const HostPort admin = parse_endpoint(s(config["admin"]["endpoint"]));
  CHECK(admin.port == 13133);
  for (const auto& p : agent["ports"]) {
    INFO("published " << s(p));
    CHECK(s(p).starts_with("127.0.0.1:"));
    CHECK(s(p).ends_with(":" + std::to_string(admin.port)));
  }
  // Health check: the binary's own healthcheck against the admin endpoint.
  std::vector<std::string> check;
  for (const auto& a : agent["healthcheck"]["test"]) {
    check.push_back(s(a));
  }
  REQUIRE(check.size() >= 3);
  CHECK(check[0] == "CMD");
  CHECK(check[1] == "spanrelay");
  CHECK(check[2] == "healthcheck");
  const auto url_arg = std::find(check.begin(), check.end(), "--url");
  if (url_arg != check.end()) {
    REQUIRE(url_arg + 1 != check.end());
    const Url url = parse_url(*(url_arg + 1));
    CHECK(url.host == "127.0.0.1");
    CHECK(url.port == admin.port);
    CHECK((url.path == "/readyz" || url.path == "/healthz"));
  }

  // The token reaches the agent only, from .env.
  const auto dotenv = read_dotenv(dir / ".env.example");
  const auto agent_env = compose_env(agent);
  std::string password_env;
  for (const auto& exporter : config["exporters"]) {
    password_env = s(exporter.second["auth"]["password_env"]);
  }
  REQUIRE(!password_env.empty());
  REQUIRE(agent_env.count(password_env) == 1);
  REQUIRE(dotenv.count(password_env) == 1);
  const std::string token = dotenv.at(password_env);
  CHECK(token.find("REPLACE") != std::string::npos);  // a placeholder, never a real token

  // Postgres and Redis are health-checked, and the services wait for what they need.
  for (const auto& kv : services) {
    const std::string name = kv.first.as<std::string>();
    const YAML::Node service = kv.second;
    INFO("service " << name);
    if (name == "postgres" || name == "redis") {
      CHECK(service["healthcheck"]["test"].size() > 0);
    }
    for (const auto& dep : service["depends_on"]) {
      const std::string target = dep.first.as<std::string>();
      CHECK(services[target]);
      const std::string condition = s(dep.second["condition"]);
      CHECK(!condition.empty());
      if (condition == "service_healthy") {
        CHECK(services[target]["healthcheck"]);
      }
    }
    const auto env = compose_env(service);
    if (name == agent_name) {
      continue;
    }
    CHECK(env.count(password_env) == 0);
    if (std::none_of(env.begin(), env.end(),
                     [](const auto& e) { return e.first.starts_with("OTEL_"); })) {
      continue;
    }
    check_sdk_env(env, agent_name, http.port);
    CHECK(s(service["depends_on"][agent_name]["condition"]) == "service_healthy");
  }
  CHECK(services["api"]);
  CHECK(services["worker"]);
  CHECK(services["postgres"]);
  CHECK(services["redis"]);

  // The application image: pinned requirements, and the files its Dockerfile copies.
  const fs::path app = dir / "app";
  REQUIRE(fs::exists(app / "Dockerfile"));
  std::istringstream reqs(read_file((app / "requirements.txt").string()));
  std::size_t pinned = 0;
  for (std::string line; std::getline(reqs, line);) {
    if (line.empty() || line[0] == '#') {
      continue;
    }
    INFO("requirement " << line);
    CHECK(line.find("==") != std::string::npos);
    ++pinned;
  }
  CHECK(pinned >= 5);
  for (const char* file : {"main.py", "tasks.py"}) {
    CHECK(fs::exists(app / file));
  }

  // The agent's config passes --validate with the environment compose would give it from
  // .env.example.
  Env env;
  for (const auto& [name, value] : agent_env) {
    env.emplace_back(name, interpolate(value, dotenv));
  }
  check_validates(config_text, env, {token});
}

TEST_CASE("grafana: every metric the dashboard, the alert rules and the docs name is exported") {
  const fs::path root = repo_root();

  // The dashboard's shape: Prometheus data source variable, an exporter variable, panels.
  const boost::json::value dashboard = load_dashboard();
  const auto& d = dashboard.as_object();
  REQUIRE(d.if_contains("schemaVersion"));
  CHECK(d.at("schemaVersion").to_number<int>() >= 36);
  std::set<std::string> variables;
  for (const auto& v : d.at("templating").at("list").as_array()) {
    const auto& var = v.as_object();
    const std::string name(var.at("name").as_string());
    variables.insert(name);
    if (name == "datasource") {
      CHECK(var.at("type").as_string() == "datasource");
      CHECK(var.at("query").as_string() == "prometheus");
    }
  }
  CHECK(variables.count("datasource") == 1);
  CHECK(variables.count("exporter") == 1);
  std::vector<boost::json::object> panels;
  collect_panels(d.at("panels").as_array(), panels);
  std::set<std::int64_t> ids;
  std::size_t queried = 0;
  for (const auto& p : panels) {
    INFO("panel " << p.at("title").as_string());
    CHECK(ids.insert(p.at("id").to_number<std::int64_t>()).second);
    if (p.at("type").as_string() == "row") {
      continue;
    }
    CHECK(p.at("datasource").at("uid").as_string() == "${datasource}");
    CHECK(!p.at("targets").as_array().empty());
    for (const auto& t : p.at("targets").as_array()) {
      CHECK(!t.at("expr").as_string().empty());
      ++queried;
    }
  }
  CHECK(queried >= 20);

  // Every name queried by the dashboard, the alert rules, and docs/operations.md's tables.
  std::map<std::string, std::set<std::string>> wanted;  // name -> where
  std::vector<std::string> queries;
  collect_json_queries(dashboard, queries);
  for (const auto& q : queries) {
    for (const auto& name : metric_tokens(q)) {
      wanted[name].insert("dashboard");
    }
  }
  const auto exprs = alert_exprs();
  CHECK(exprs.size() >= 6);
  for (const auto& e : exprs) {
    for (const auto& name : metric_tokens(e)) {
      wanted[name].insert("alerts.yaml");
    }
  }
  const fs::path ops = root / "docs/operations.md";
  REQUIRE(fs::exists(ops));
  std::istringstream doc(read_file(ops.string()));
  std::size_t documented = 0;
  for (std::string line; std::getline(doc, line);) {
    if (line.starts_with("| `spanrelay_") || line.starts_with("| `process_")) {
      const std::string cell = line.substr(0, line.find('|', 1));
      for (const auto& name : metric_tokens(cell)) {
        wanted[name].insert("docs/operations.md");
        ++documented;
      }
    }
  }
  CHECK(documented >= 40);

  // The real agent, with everything that has metrics: an otlp_http exporter, a spool and
  // both receivers, each of which has handled a request.
  FakeUpstream upstream;
  TempDir spool;
  AgentConfig config;
  config.exporters["grafana"].endpoint = upstream.base_url();
  config.grpc_receiver = true;
  config.spool = {{"path", spool.file("spool")}};
  Agent agent(config);
  REQUIRE(post_spans(agent.port(), make_request(5)).result_int() == 200);
  GrpcClient(agent.grpc_target()).require_exported(make_request(3));
  REQUIRE(
      agent.wait_metric_at_least(R"(spanrelay_exporter_sent_spans_total{exporter="grafana"})", 8));
  const std::string text = agent.metrics();
  const auto names = exported_names(text);

  std::string missing;
  for (const auto& [name, where] : wanted) {
    if (!exported(names, name)) {
      missing += "\n  " + name + " (";
      for (const auto& w : where) {
        missing += (w == *where.begin() ? "" : ", ") + w;
      }
      missing += ")";
    }
  }
  if (!missing.empty()) {
    INFO("/metrics:\n" << text);
    FAIL_CHECK("queried but not exported by /metrics:" << missing);
  }
  CHECK(wanted.size() >= 40);
}

}  // namespace
}  // namespace it
