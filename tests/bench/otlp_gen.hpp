#pragma once
// Realistic OTLP trace requests for the benchmark tools, shaped like an SDK's
// BatchSpanProcessor output: one resource (service, host, process and SDK attributes), three
// instrumentation scopes, traces of one SERVER span with DB and HTTP CLIENT children, ~10
// semantic-convention attributes per span (http.*, url.*, db.statement, thread.*), 2% of
// traces failing with an exception event. ~520 bytes of protobuf per span.

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "opentelemetry/proto/collector/trace/v1/trace_service.pb.h"

namespace bench {

using ExportRequest = opentelemetry::proto::collector::trace::v1::ExportTraceServiceRequest;
namespace v1 = opentelemetry::proto::trace::v1;
namespace common = opentelemetry::proto::common::v1;

class Gen {
 public:
  explicit Gen(std::uint64_t seed) : rng_(seed) {}

  std::string bytes(std::size_t n) {
    std::string s(n, '\0');
    for (auto& c : s) {
      c = static_cast<char>(rng_() & 0xff);
    }
    s[0] = static_cast<char>(s[0] | 1);  // never all zero
    return s;
  }
  std::uint64_t uniform(std::uint64_t lo, std::uint64_t hi) {
    return std::uniform_int_distribution<std::uint64_t>(lo, hi)(rng_);
  }
  template <typename T>
  const T& pick(const std::vector<T>& v) {
    return v[uniform(0, v.size() - 1)];
  }
  bool chance(double p) { return std::bernoulli_distribution(p)(rng_); }

 private:
  std::mt19937_64 rng_;
};

inline void attr(google::protobuf::RepeatedPtrField<common::KeyValue>* attrs,
                 const std::string& key, const std::string& value) {
  auto* kv = attrs->Add();
  kv->set_key(key);
  kv->mutable_value()->set_string_value(value);
}

inline void attr(google::protobuf::RepeatedPtrField<common::KeyValue>* attrs,
                 const std::string& key, std::int64_t value) {
  auto* kv = attrs->Add();
  kv->set_key(key);
  kv->mutable_value()->set_int_value(value);
}

inline const std::vector<std::string> kRoutes = {
    "/api/v1/orders/{orderId}", "/api/v1/orders", "/api/v1/cart/{cartId}/items",
    "/api/v1/customers/{customerId}", "/api/v1/products/search", "/healthz",
    "/api/v1/checkout/{sessionId}/confirm", "/api/v1/inventory/{sku}"};
inline const std::vector<std::string> kMethods = {"GET", "GET", "GET", "POST", "PUT", "DELETE"};
inline const std::vector<std::string> kAgents = {
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/120.0.0.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like "
    "Gecko) Version/17.1 Mobile/15E148 Safari/604.1",
    "okhttp/4.12.0", "Go-http-client/1.1", "python-requests/2.31.0"};
inline const std::vector<std::string> kStatements = {
    "SELECT o.id, o.customer_id, o.status, o.total_cents, o.currency, o.created_at, "
    "o.updated_at FROM orders o WHERE o.id = ? AND o.tenant_id = ?",
    "SELECT i.id, i.order_id, i.sku, i.quantity, i.unit_price_cents FROM order_items i "
    "WHERE i.order_id = ? ORDER BY i.id",
    "UPDATE inventory SET reserved = reserved + ?, updated_at = now() WHERE sku = ? AND "
    "warehouse_id = ? AND reserved + ? <= on_hand",
    "INSERT INTO orders (id, customer_id, status, total_cents, currency, created_at) VALUES "
    "(?, ?, ?, ?, ?, ?)",
    "SELECT c.id, c.email, c.name, c.loyalty_tier, a.line1, a.city, a.postcode, a.country FROM "
    "customers c LEFT JOIN addresses a ON a.customer_id = c.id AND a.is_default WHERE c.id = ?",
    "SELECT p.sku, p.title, p.price_cents, p.rating FROM products p WHERE to_tsvector(p.title) "
    "@@ plainto_tsquery(?) AND p.active ORDER BY p.rating DESC LIMIT ?"};
inline const std::vector<std::string> kTables = {"orders", "order_items", "inventory", "orders",
                                          "customers", "products"};
inline const std::vector<std::string> kOps = {"SELECT", "SELECT", "UPDATE", "INSERT", "SELECT",
                                       "SELECT"};
inline const std::vector<std::string> kPeers = {"payments.internal", "inventory.internal",
                                         "pricing.internal", "fraud-check.internal"};

inline std::string route_to_path(Gen& g, const std::string& route) {
  std::string path;
  for (std::size_t i = 0; i < route.size(); ++i) {
    if (route[i] == '{') {
      i = route.find('}', i);
      path += std::to_string(g.uniform(10000, 99999999));
    } else {
      path += route[i];
    }
  }
  return path;
}

// One request of n spans, as one SDK process would batch them.
inline ExportRequest make_request(Gen& g, std::size_t n) {
  ExportRequest req;
  auto* rs = req.add_resource_spans();
  rs->set_schema_url("https://opentelemetry.io/schemas/1.21.0");
  auto* ra = rs->mutable_resource()->mutable_attributes();
  attr(ra, "service.name", "checkout");
  attr(ra, "service.namespace", "shop");
  attr(ra, "service.version", "1.14.2");
  attr(ra, "service.instance.id", "0f6c2a9e-4b7d-4e35-9a51-7c3d2b8e1f04");
  attr(ra, "deployment.environment", "production");
  attr(ra, "host.name", "ip-10-0-3-17.eu-west-1.compute.internal");
  attr(ra, "host.arch", "amd64");
  attr(ra, "os.type", "linux");
  attr(ra, "process.pid", 4711);
  attr(ra, "process.runtime.name", "OpenJDK Runtime Environment");
  attr(ra, "process.runtime.version", "17.0.9+9");
  attr(ra, "telemetry.sdk.name", "opentelemetry");
  attr(ra, "telemetry.sdk.language", "java");
  attr(ra, "telemetry.sdk.version", "1.32.0");

  auto scope = [&](const char* name, const char* version) {
    auto* ss = rs->add_scope_spans();
    ss->mutable_scope()->set_name(name);
    ss->mutable_scope()->set_version(version);
    return ss;
  };
  auto* server_scope = scope("io.opentelemetry.tomcat-10.0", "1.32.0-alpha");
  auto* db_scope = scope("io.opentelemetry.jdbc", "1.32.0-alpha");
  auto* client_scope = scope("io.opentelemetry.okhttp-3.0", "1.32.0-alpha");

  const std::uint64_t base_ns = 1'700'000'000'000'000'000ull + g.uniform(0, 1'000'000'000'000ull);
  std::size_t made = 0;
  std::uint64_t t = base_ns;
  while (made < n) {
    // One trace: a SERVER span and 1..6 CLIENT children.
    const std::string trace_id = g.bytes(16);
    const std::string root_id = g.bytes(8);
    const std::string thread = "http-nio-8080-exec-" + std::to_string(g.uniform(1, 200));
    const std::int64_t thread_id = static_cast<std::int64_t>(g.uniform(20, 400));
    const std::uint64_t root_start = t;
    const std::uint64_t root_dur = g.uniform(2'000'000, 80'000'000);
    t += g.uniform(100'000, 5'000'000);
    const std::string route = g.pick(kRoutes);
    const std::string method = g.pick(kMethods);
    const bool failed = g.chance(0.02);

    auto* s = server_scope->add_spans();
    ++made;
    s->set_trace_id(trace_id);
    s->set_span_id(root_id);
    s->set_name(method + " " + route);
    s->set_kind(v1::Span::SPAN_KIND_SERVER);
    s->set_start_time_unix_nano(root_start);
    s->set_end_time_unix_nano(root_start + root_dur);
    auto* a = s->mutable_attributes();
    attr(a, "http.request.method", method);
    attr(a, "url.scheme", "https");
    attr(a, "url.path", route_to_path(g, route));
    attr(a, "http.route", route);
    attr(a, "http.response.status_code", failed ? 500 : 200);
    attr(a, "server.address", "shop.example.com");
    attr(a, "server.port", 443);
    attr(a, "client.address", "10.0." + std::to_string(g.uniform(0, 255)) + "." +
                                  std::to_string(g.uniform(1, 254)));
    attr(a, "user_agent.original", g.pick(kAgents));
    attr(a, "network.protocol.version", "1.1");
    attr(a, "thread.name", thread);
    s->mutable_status()->set_code(failed ? v1::Status::STATUS_CODE_ERROR
                                         : v1::Status::STATUS_CODE_UNSET);
    if (failed) {
      auto* ev = s->add_events();
      ev->set_name("exception");
      ev->set_time_unix_nano(root_start + root_dur - 1000);
      attr(ev->mutable_attributes(), "exception.type", "java.sql.SQLTransientConnectionException");
      attr(ev->mutable_attributes(), "exception.message",
           "HikariPool-1 - Connection is not available, request timed out after 30000ms.");
      attr(ev->mutable_attributes(), "exception.stacktrace",
           "java.sql.SQLTransientConnectionException: HikariPool-1 - Connection is not "
           "available\n\tat com.zaxxer.hikari.pool.HikariPool.createTimeoutException("
           "HikariPool.java:696)\n\tat com.zaxxer.hikari.pool.HikariPool.getConnection("
           "HikariPool.java:197)\n\tat shop.checkout.OrderRepository.find(OrderRepository."
           "java:88)\n\tat shop.checkout.OrderController.get(OrderController.java:41)\n");
    }

    const std::uint64_t children = g.uniform(1, 6);
    std::uint64_t ct = root_start + 200'000;
    for (std::uint64_t c = 0; c < children && made < n; ++c) {
      const std::uint64_t dur = g.uniform(100'000, root_dur / (children + 1));
      if (g.chance(0.75)) {
        const std::size_t k = g.uniform(0, kStatements.size() - 1);
        auto* d = db_scope->add_spans();
        ++made;
        d->set_trace_id(trace_id);
        d->set_span_id(g.bytes(8));
        d->set_parent_span_id(root_id);
        d->set_name(kOps[k] + " shop." + kTables[k]);
        d->set_kind(v1::Span::SPAN_KIND_CLIENT);
        d->set_start_time_unix_nano(ct);
        d->set_end_time_unix_nano(ct + dur);
        auto* da = d->mutable_attributes();
        attr(da, "db.system", "postgresql");
        attr(da, "db.name", "shop");
        attr(da, "db.user", "checkout_rw");
        attr(da, "db.statement", kStatements[k]);
        attr(da, "db.operation", kOps[k]);
        attr(da, "db.sql.table", kTables[k]);
        attr(da, "db.connection_string", "postgresql://orders-db.internal:5432");
        attr(da, "server.address", "orders-db.internal");
        attr(da, "server.port", 5432);
        attr(da, "thread.name", thread);
        attr(da, "thread.id", thread_id);
      } else {
        const std::string peer = g.pick(kPeers);
        auto* h = client_scope->add_spans();
        ++made;
        h->set_trace_id(trace_id);
        h->set_span_id(g.bytes(8));
        h->set_parent_span_id(root_id);
        h->set_name("POST");
        h->set_kind(v1::Span::SPAN_KIND_CLIENT);
        h->set_start_time_unix_nano(ct);
        h->set_end_time_unix_nano(ct + dur);
        auto* ha = h->mutable_attributes();
        attr(ha, "http.request.method", "POST");
        attr(ha, "url.full", "http://" + peer + "/v2/check?order=" +
                                 std::to_string(g.uniform(10000, 99999999)));
        attr(ha, "server.address", peer);
        attr(ha, "server.port", 80);
        attr(ha, "http.response.status_code", 200);
        attr(ha, "network.protocol.name", "http");
        attr(ha, "network.protocol.version", "1.1");
        attr(ha, "http.request.body.size", static_cast<std::int64_t>(g.uniform(64, 4096)));
        attr(ha, "http.response.body.size", static_cast<std::int64_t>(g.uniform(64, 4096)));
        attr(ha, "thread.name", thread);
        attr(ha, "thread.id", thread_id);
      }
      ct += dur + g.uniform(10'000, 500'000);
    }
  }
  return req;
}

}  // namespace bench
