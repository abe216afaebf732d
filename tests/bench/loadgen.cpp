// bench_loadgen: the OTLP/HTTP client of spanrelay's benchmark (driven by tests/bench/run.sh).
//
// Posts pre-built ExportTraceServiceRequests, shaped like an SDK's BatchSpanProcessor output
// (one resource, a few instrumentation scopes, traces of one SERVER span with DB and HTTP
// CLIENT children, ~10 semantic-convention attributes per span), on keep-alive connections,
// one blocking client per thread so that the measured round trip is the agent's, not a
// scheduler's. Two modes:
//   closed loop (--rate 0): each of --connections sends its next request as soon as the
//     previous answer arrived: the agent's maximum throughput;
//   paced (--rate SPANS_PER_S): requests leave on a fixed schedule spread over the
//     connections (a late request leaves at once and is counted as late).
// After --warmup seconds it measures for --duration seconds: acknowledged spans/s, the HTTP
// round trip of each request (write of the request to end of the response; and, to leave the
// load generator's own scheduling out, write to the kernel's receive timestamp of the
// response's first packet: SO_TIMESTAMPNS), and, when given,
// the spans the sink upstream received (--sink, bench_sink's GET /stats) and the agent's CPU
// time and peak RSS (--pid, from /proc). It then waits for the agent to deliver everything it
// acknowledged and reports the difference as `lost`.
// The result is one line on stdout: "RESULT key=value ..."; a readable summary goes to stderr.

#include <dirent.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <map>
#include <optional>
#include <random>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "otlp/compression.hpp"
#include "otlp_gen.hpp"

namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using Clock = std::chrono::steady_clock;
using bench::Gen;

constexpr const char* kUsage = R"(Usage: bench_loadgen [options]
  --target HOST:PORT     agent's OTLP/HTTP receiver (default 127.0.0.1:4318)
  --spans N              spans per request (default 100)
  --variants N           distinct pre-built requests, sent in turn (default 16)
  --gzip                 gzip the request bodies (Content-Encoding: gzip), as SDKs do
  --connections N        keep-alive connections, one thread each (default 4)
  --rate SPANS_PER_S     paced total rate; 0 = closed loop, as fast as answers come (default 0)
  --warmup SECONDS       load before measuring (default 2)
  --duration SECONDS     measurement window (default 10)
  --idle                 send nothing; only measure the agent (CPU at rest)
  --sink HOST:PORT       bench_sink, for the spans actually delivered upstream
  --pid PID              the agent process, for CPU%, run-queue wait and peak RSS
  --agent-cpu N          the CPU the agent is pinned to, to report how busy other processes
                         kept it (the machine may be shared)
  --drain SECONDS        after the window, wait up to this long for the sink to have received
                         every acknowledged span (default 5)
  --seed N               seed of the generated data (default 1)
)";

struct Options {
  std::string target = "127.0.0.1:4318";
  std::size_t spans = 100;
  std::size_t variants = 16;
  bool gzip = false;
  unsigned connections = 4;
  double rate = 0;
  double warmup = 2;
  double duration = 10;
  bool idle = false;
  std::string sink;
  pid_t pid = 0;
  int agent_cpu = -1;
  double drain = 5;
  std::uint64_t seed = 1;
};

std::pair<std::string, std::string> split_host_port(const std::string& text) {
  const auto colon = text.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == text.size()) {
    throw std::invalid_argument("expected HOST:PORT, got \"" + text + "\"");
  }
  return {text.substr(0, colon), text.substr(colon + 1)};
}

Options parse_args(int argc, char** argv) {
  Options o;
  auto value = [&](int& i) -> std::string {
    if (i + 1 >= argc) {
      throw std::invalid_argument(std::string(argv[i]) + " needs a value");
    }
    return argv[++i];
  };
  for (int i = 1; i < argc; ++i) {
    const std::string_view a = argv[i];
    if (a == "--help" || a == "-h") {
      std::cout << kUsage;
      std::exit(0);
    } else if (a == "--target") {
      o.target = value(i);
    } else if (a == "--spans") {
      o.spans = std::stoul(value(i));
    } else if (a == "--variants") {
      o.variants = std::max<std::size_t>(1, std::stoul(value(i)));
    } else if (a == "--gzip") {
      o.gzip = true;
    } else if (a == "--connections") {
      o.connections = static_cast<unsigned>(std::max(1ul, std::stoul(value(i))));
    } else if (a == "--rate") {
      o.rate = std::stod(value(i));
    } else if (a == "--warmup") {
      o.warmup = std::stod(value(i));
    } else if (a == "--duration") {
      o.duration = std::stod(value(i));
    } else if (a == "--idle") {
      o.idle = true;
    } else if (a == "--sink") {
      o.sink = value(i);
    } else if (a == "--pid") {
      o.pid = static_cast<pid_t>(std::stol(value(i)));
    } else if (a == "--agent-cpu") {
      o.agent_cpu = std::stoi(value(i));
    } else if (a == "--drain") {
      o.drain = std::stod(value(i));
    } else if (a == "--seed") {
      o.seed = std::stoull(value(i));
    } else {
      throw std::invalid_argument("unknown argument \"" + std::string(a) + "\"");
    }
  }
  if (o.spans == 0) {
    throw std::invalid_argument("--spans must be at least 1");
  }
  return o;
}

struct Variant {
  std::string wire;  // the whole HTTP request, header and body
  std::size_t body_bytes = 0;
  std::size_t raw_bytes = 0;  // protobuf before gzip
};

std::vector<Variant> build_variants(const Options& o, const std::string& host_header) {
  std::vector<Variant> out;
  Gen g(o.seed);
  spanrelay::otlp::GzipCompressor gz(6);  // SDKs use their runtime's default gzip level (6)
  for (std::size_t i = 0; i < o.variants; ++i) {
    Variant v;
    std::string body = bench::make_request(g, o.spans).SerializeAsString();
    v.raw_bytes = body.size();
    if (o.gzip) {
      std::string z;
      gz.compress(body, z);
      body = std::move(z);
    }
    v.body_bytes = body.size();
    std::ostringstream head;
    head << "POST /v1/traces HTTP/1.1\r\nHost: " << host_header
         << "\r\nUser-Agent: OTel-OTLP-Exporter-Java/1.32.0\r\n"
            "Content-Type: application/x-protobuf\r\n"
         << (o.gzip ? "Content-Encoding: gzip\r\n" : "") << "Content-Length: " << body.size()
         << "\r\n\r\n";
    v.wire = head.str() + body;
    out.push_back(std::move(v));
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Observing the agent and the sink.

struct ProcSample {
  bool ok = false;
  double cpu_s = 0;          // utime + stime
  long vm_hwm_kb = 0;        // peak RSS
  long vm_rss_kb = 0;
  // From /proc/PID/task/*/schedstat (ns): time on a CPU and time runnable but waiting for one,
  // summed over the threads; and per thread (by thread id) the time on a CPU.
  double run_s = 0;
  double wait_s = 0;
  std::map<long, double> thread_run_s;
  double cpu_busy_s = -1;    // the agent's CPU, all processes (from /proc/stat), if known
};

// Seconds the given CPU spent busy (not idle or iowait), from /proc/stat.
double cpu_busy_seconds(int cpu) {
  if (cpu < 0) {
    return -1;
  }
  std::ifstream in("/proc/stat");
  const std::string want = "cpu" + std::to_string(cpu) + " ";
  for (std::string line; std::getline(in, line);) {
    if (line.starts_with(want)) {
      std::istringstream f(line.substr(want.size()));
      double user = 0, nice = 0, system = 0, idle = 0, iowait = 0, irq = 0, softirq = 0,
             steal = 0;
      f >> user >> nice >> system >> idle >> iowait >> irq >> softirq >> steal;
      return (user + nice + system + irq + softirq + steal) /
             static_cast<double>(sysconf(_SC_CLK_TCK));
    }
  }
  return -1;
}

ProcSample sample_process(pid_t pid) {
  ProcSample s;
  if (pid <= 0) {
    return s;
  }
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(stat, line)) {
    return s;
  }
  // Fields after the command name (which may contain spaces) start at field 3 (state);
  // utime and stime are fields 14 and 15.
  std::istringstream rest(line.substr(line.rfind(')') + 2));
  std::vector<std::string> f;
  for (std::string w; rest >> w;) {
    f.push_back(w);
  }
  if (f.size() < 13) {
    return s;
  }
  const double tick = static_cast<double>(sysconf(_SC_CLK_TCK));
  s.cpu_s = (std::stod(f[11]) + std::stod(f[12])) / tick;
  std::ifstream status("/proc/" + std::to_string(pid) + "/status");
  while (std::getline(status, line)) {
    if (line.starts_with("VmHWM:")) {
      s.vm_hwm_kb = std::stol(line.substr(6));
    } else if (line.starts_with("VmRSS:")) {
      s.vm_rss_kb = std::stol(line.substr(6));
    }
  }
  const std::string tasks = "/proc/" + std::to_string(pid) + "/task";
  if (DIR* dir = opendir(tasks.c_str())) {
    while (dirent* e = readdir(dir)) {
      if (e->d_name[0] == '.') {
        continue;
      }
      std::ifstream st(tasks + "/" + e->d_name + "/schedstat");
      double run_ns = 0, wait_ns = 0;
      if (st >> run_ns >> wait_ns) {
        s.run_s += run_ns / 1e9;
        s.wait_s += wait_ns / 1e9;
        s.thread_run_s[std::stol(e->d_name)] = run_ns / 1e9;
      }
    }
    closedir(dir);
  }
  s.ok = true;
  return s;
}

struct SinkStats {
  bool ok = false;
  std::uint64_t requests = 0, spans = 0, bytes = 0, raw_bytes = 0;
};

SinkStats query_sink(const std::string& sink) {
  SinkStats st;
  if (sink.empty()) {
    return st;
  }
  try {
    auto [host, port] = split_host_port(sink);
    asio::io_context ioc;
    tcp::resolver resolver(ioc);
    tcp::socket sock(ioc);
    asio::connect(sock, resolver.resolve(host, port));
    http::request<http::empty_body> req{http::verb::get, "/stats", 11};
    req.set(http::field::host, sink);
    req.keep_alive(false);
    http::write(sock, req);
    beast::flat_buffer buf;
    http::response<http::string_body> res;
    http::read(sock, buf, res);
    std::map<std::string, std::uint64_t> kv;
    std::istringstream in(res.body());
    for (std::string w; in >> w;) {
      const auto eq = w.find('=');
      if (eq != std::string::npos) {
        kv[w.substr(0, eq)] = std::stoull(w.substr(eq + 1));
      }
    }
    st.requests = kv["requests"];
    st.spans = kv["spans"];
    st.bytes = kv["bytes"];
    st.raw_bytes = kv["raw_bytes"];
    st.ok = true;
  } catch (const std::exception& e) {
    std::cerr << "bench_loadgen: cannot query sink " << sink << ": " << e.what() << '\n';
  }
  return st;
}

// ---------------------------------------------------------------------------------------------
// Clients.

struct alignas(64) Counters {
  std::atomic<std::uint64_t> ok_requests{0};
  std::atomic<std::uint64_t> ok_spans{0};
  std::atomic<std::uint64_t> status_429{0};
  std::atomic<std::uint64_t> status_other{0};
  std::atomic<std::uint64_t> errors{0};  // transport errors (each costs a reconnect)
  std::atomic<std::uint64_t> late{0};    // paced sends that left after their slot
  std::atomic<std::uint64_t> bytes{0};
};

struct Totals {
  std::uint64_t ok_requests = 0, ok_spans = 0, status_429 = 0, status_other = 0, errors = 0,
                late = 0, bytes = 0;
};

struct Shared {
  const Options& options;
  const std::vector<Variant>& variants;
  std::string host, port;
  std::atomic<bool> stop{false};
  std::atomic<bool> measuring{false};
  Clock::time_point start{};
  std::vector<Counters> counters{};
  std::vector<std::vector<std::uint32_t>> latencies_ns{};  // per thread, in the window only
  std::vector<std::vector<std::uint32_t>> kernel_latencies_ns{};  // to the rx timestamp
};

Totals totals(const Shared& sh) {
  Totals t;
  for (const auto& c : sh.counters) {
    t.ok_requests += c.ok_requests.load();
    t.ok_spans += c.ok_spans.load();
    t.status_429 += c.status_429.load();
    t.status_other += c.status_other.load();
    t.errors += c.errors.load();
    t.late += c.late.load();
    t.bytes += c.bytes.load();
  }
  return t;
}

void client(Shared& sh, unsigned index) {
  const Options& o = sh.options;
  Counters& count = sh.counters[index];
  auto& lat = sh.latencies_ns[index];
  auto& klat = sh.kernel_latencies_ns[index];
  asio::io_context ioc;
  tcp::resolver resolver(ioc);
  const auto endpoints = resolver.resolve(sh.host, sh.port);
  std::optional<tcp::socket> sock;
  beast::flat_buffer buffer;

  // Paced: this connection's share of the rate, its slots offset from the other connections'.
  const bool paced = o.rate > 0;
  const double interval_s =
      paced ? static_cast<double>(o.spans) * o.connections / o.rate : 0.0;
  const auto interval = std::chrono::duration_cast<Clock::duration>(
      std::chrono::duration<double>(interval_s));
  const auto first = sh.start + interval * index / o.connections;

  for (std::uint64_t k = index; !sh.stop.load(std::memory_order_relaxed);
       k += o.connections) {
    if (paced) {
      const auto slot = first + interval * static_cast<std::int64_t>(k / o.connections);
      const auto now = Clock::now();
      if (slot > now) {
        std::this_thread::sleep_until(slot);
        if (sh.stop.load(std::memory_order_relaxed)) {
          break;
        }
      } else if (now - slot > std::chrono::milliseconds(1)) {
        count.late.fetch_add(1, std::memory_order_relaxed);
      }
    }
    if (!sock) {
      boost::system::error_code ec;
      sock.emplace(ioc);
      asio::connect(*sock, endpoints, ec);
      if (ec) {
        count.errors.fetch_add(1, std::memory_order_relaxed);
        sock.reset();
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
        continue;
      }
      sock->set_option(tcp::no_delay(true));
      const int on = 1;
      ::setsockopt(sock->native_handle(), SOL_SOCKET, SO_TIMESTAMPNS, &on, sizeof on);
      buffer.clear();
    }
    const Variant& v = sh.variants[k % sh.variants.size()];
    const bool measuring = sh.measuring.load(std::memory_order_relaxed);
    timespec rt0{};
    ::clock_gettime(CLOCK_REALTIME, &rt0);  // the clock of the kernel's rx timestamps
    const auto t0 = Clock::now();
    boost::system::error_code ec;
    asio::write(*sock, asio::buffer(v.wire), ec);
    http::response<http::string_body> res;
    std::int64_t kernel_ns = -1;
    if (!ec && buffer.size() == 0) {
      // First bytes of the response by hand, for the SCM_TIMESTAMPNS of their arrival.
      auto space = buffer.prepare(16384);
      iovec iov{space.data(), space.size()};
      alignas(cmsghdr) char control[CMSG_SPACE(sizeof(timespec)) + 64];
      msghdr msg{};
      msg.msg_iov = &iov;
      msg.msg_iovlen = 1;
      msg.msg_control = control;
      msg.msg_controllen = sizeof control;
      const ssize_t n = ::recvmsg(sock->native_handle(), &msg, 0);
      if (n <= 0) {
        ec = n == 0 ? boost::system::error_code(asio::error::eof)
                    : boost::system::error_code(asio::error::connection_reset);
      } else {
        buffer.commit(static_cast<std::size_t>(n));
        for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
          if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_TIMESTAMPNS) {
            timespec ts{};
            std::memcpy(&ts, CMSG_DATA(c), sizeof ts);
            kernel_ns = (ts.tv_sec - rt0.tv_sec) * 1'000'000'000ll + (ts.tv_nsec - rt0.tv_nsec);
          }
        }
      }
    }
    if (!ec) {
      http::read(*sock, buffer, res, ec);
    }
    const auto t1 = Clock::now();
    if (ec) {
      count.errors.fetch_add(1, std::memory_order_relaxed);
      sock.reset();
      continue;
    }
    count.bytes.fetch_add(v.wire.size(), std::memory_order_relaxed);
    if (res.result_int() == 200) {
      count.ok_requests.fetch_add(1, std::memory_order_relaxed);
      count.ok_spans.fetch_add(o.spans, std::memory_order_relaxed);
      if (measuring) {
        lat.push_back(static_cast<std::uint32_t>(
            std::min<std::int64_t>(std::chrono::nanoseconds(t1 - t0).count(), UINT32_MAX)));
        if (kernel_ns >= 0) {
          klat.push_back(static_cast<std::uint32_t>(std::min<std::int64_t>(kernel_ns, UINT32_MAX)));
        }
      }
    } else if (res.result_int() == 429) {
      // Buffer full: back off a little, as an SDK would (it would wait longer).
      count.status_429.fetch_add(1, std::memory_order_relaxed);
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    } else {
      count.status_other.fetch_add(1, std::memory_order_relaxed);
    }
    if (!res.keep_alive()) {
      sock.reset();
    }
  }
}

double percentile_us(std::vector<std::uint32_t>& v, double p) {
  if (v.empty()) {
    return 0;
  }
  const std::size_t i = std::min(v.size() - 1, static_cast<std::size_t>(p * v.size()));
  std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(i), v.end());
  return v[i] / 1000.0;
}

void sleep_s(double s) {
  std::this_thread::sleep_for(std::chrono::duration<double>(s));
}

int run(const Options& o) {
  auto [host, port] = split_host_port(o.target);
  std::vector<Variant> variants;
  if (!o.idle) {
    variants = build_variants(o, o.target);
  }
  Shared sh{o, variants, host, port};
  sh.counters = std::vector<Counters>(o.connections);
  sh.latencies_ns.resize(o.connections);
  sh.kernel_latencies_ns.resize(o.connections);
  for (auto& l : sh.latencies_ns) {
    l.reserve(1 << 16);
  }
  const SinkStats sink_base = query_sink(o.sink);

  sh.start = Clock::now();
  std::vector<std::thread> threads;
  if (!o.idle) {
    for (unsigned i = 0; i < o.connections; ++i) {
      threads.emplace_back(client, std::ref(sh), i);
    }
  }
  sleep_s(o.warmup);

  // The window.
  const ProcSample p0 = sample_process(o.pid);
  const double busy0 = cpu_busy_seconds(o.agent_cpu);
  const SinkStats s0 = query_sink(o.sink);
  const Totals c0 = totals(sh);
  const auto w0 = Clock::now();
  sh.measuring.store(true);
  sleep_s(o.duration);
  sh.measuring.store(false);
  const auto w1 = Clock::now();
  const Totals c1 = totals(sh);
  const SinkStats s1 = query_sink(o.sink);
  const ProcSample p1 = sample_process(o.pid);
  const double busy1 = cpu_busy_seconds(o.agent_cpu);
  sh.stop.store(true);
  for (auto& t : threads) {
    t.join();
  }
  const double window = std::chrono::duration<double>(w1 - w0).count();

  // Let the agent deliver what it acknowledged (its batch timeout is 1 s by default).
  const Totals all = totals(sh);
  SinkStats s_end = s1;
  if (s1.ok) {
    const auto give_up = Clock::now() + std::chrono::duration<double>(o.drain);
    while (s_end.spans - sink_base.spans < all.ok_spans && Clock::now() < give_up) {
      sleep_s(0.05);
      s_end = query_sink(o.sink);
    }
  }
  const ProcSample p_end = sample_process(o.pid);

  std::vector<std::uint32_t> lat, klat;
  for (auto& l : sh.latencies_ns) {
    lat.insert(lat.end(), l.begin(), l.end());
  }
  for (auto& l : sh.kernel_latencies_ns) {
    klat.insert(klat.end(), l.begin(), l.end());
  }
  std::size_t body = 0, raw = 0;
  for (const auto& v : variants) {
    body += v.body_bytes;
    raw += v.raw_bytes;
  }
  const double n_var = variants.empty() ? 1.0 : static_cast<double>(variants.size());

  std::ostringstream r;
  r.setf(std::ios::fixed);
  r.precision(1);
  r << "RESULT mode=" << (o.idle ? "idle" : o.rate > 0 ? "paced" : "closed")
    << " connections=" << o.connections << " spans_per_req=" << o.spans
    << " gzip=" << (o.gzip ? 1 : 0) << " target_rate=" << o.rate
    << " req_body_bytes=" << static_cast<double>(body) / n_var
    << " req_raw_bytes=" << static_cast<double>(raw) / n_var << " window_s=" << window
    << " req_per_s=" << (c1.ok_requests - c0.ok_requests) / window
    << " acked_spans_per_s=" << (c1.ok_spans - c0.ok_spans) / window
    << " in_mb_per_s=" << (c1.bytes - c0.bytes) / window / 1e6;
  if (s0.ok && s1.ok) {
    r << " sink_spans_per_s=" << (s1.spans - s0.spans) / window
      << " sink_mb_per_s=" << (s1.bytes - s0.bytes) / window / 1e6
      << " sink_req_per_s=" << (s1.requests - s0.requests) / window;
    const double out_raw = static_cast<double>(s1.raw_bytes - s0.raw_bytes);
    r << " out_gzip_ratio=" << (s1.bytes > s0.bytes ? out_raw / (s1.bytes - s0.bytes) : 0.0);
    r << " lost=" << static_cast<std::int64_t>(all.ok_spans) -
                         static_cast<std::int64_t>(s_end.spans - sink_base.spans);
  }
  r.precision(0);
  r << " samples=" << lat.size();
  r.precision(1);
  r << " p50_us=" << percentile_us(lat, 0.50) << " p90_us=" << percentile_us(lat, 0.90)
    << " p99_us=" << percentile_us(lat, 0.99) << " p999_us=" << percentile_us(lat, 0.999)
    << " max_us=" << percentile_us(lat, 1.0) << " ksamples=" << klat.size()
    << " k_p50_us=" << percentile_us(klat, 0.50) << " k_p90_us=" << percentile_us(klat, 0.90)
    << " k_p99_us=" << percentile_us(klat, 0.99) << " k_p999_us=" << percentile_us(klat, 0.999)
    << " status_429=" << c1.status_429 - c0.status_429
    << " status_other=" << c1.status_other - c0.status_other
    << " errors=" << c1.errors - c0.errors << " late=" << c1.late - c0.late;
  if (p0.ok && p1.ok) {
    r.precision(2);
    r << " agent_cpu_pct=" << (p1.cpu_s - p0.cpu_s) / window * 100.0;
    r << " agent_vmhwm_kb=" << p_end.vm_hwm_kb << " agent_rss_kb=" << p_end.vm_rss_kb;
    // Same CPU time, with ns precision (schedstat), and the time its threads were runnable
    // but waiting for a CPU: how much the machine's other load held the agent back.
    const double run = p1.run_s - p0.run_s;
    r << " agent_sched_cpu_pct=" << run / window * 100.0
      << " agent_runq_wait_pct=" << (p1.wait_s - p0.wait_s) / window * 100.0;
    // Capacity: spans delivered upstream per second of agent CPU over the agent's whole life
    // (warm-up, window and drain, so batches still queued at the window's edges count on both
    // sides). Independent of how much CPU the agent could get on a shared machine, as long as
    // it is CPU-bound; it includes the work spent on refused (429) requests.
    r.precision(0);
    const double delivered = s_end.ok ? static_cast<double>(s_end.spans - sink_base.spans)
                                      : static_cast<double>(all.ok_spans);
    r << " spans_per_agent_cpu_s=" << (p_end.run_s > 0 ? delivered / p_end.run_s : 0.0);
    r.precision(2);
    r << " agent_total_cpu_s=" << p_end.run_s;
    r.precision(1);
    if (busy0 >= 0 && busy1 >= 0) {
      r << " others_on_agent_cpu_pct="
        << std::max(0.0, ((busy1 - busy0) - run) / window * 100.0);
    }
    // Per-thread CPU%, threads in creation (id) order.
    std::string threads;
    for (const auto& [tid, t1] : p1.thread_run_s) {
      const auto it = p0.thread_run_s.find(tid);
      const double t0 = it == p0.thread_run_s.end() ? 0.0 : it->second;
      std::ostringstream one;
      one.setf(std::ios::fixed);
      one.precision(1);
      one << (t1 - t0) / window * 100.0;
      threads += (threads.empty() ? "" : "/") + one.str();
    }
    r << " agent_threads_cpu_pct=" << threads;
  }
  std::cout << r.str() << std::endl;
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(parse_args(argc, argv));
  } catch (const std::exception& e) {
    std::cerr << "bench_loadgen: " << e.what() << "\n\n" << kUsage;
    return 2;
  }
}
