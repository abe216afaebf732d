#include "integration/fake_upstream.hpp"

#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <algorithm>
#include <cctype>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <thread>

#include <boost/asio.hpp>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include "google/rpc/status.pb.h"

namespace it {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

namespace {
constexpr auto nothrow_awaitable = asio::as_tuple(asio::use_awaitable);
}

UpstreamResponse UpstreamResponse::with_status(unsigned status) {
  google::rpc::Status body;
  body.set_code(status == 400 ? 3 : 14);  // INVALID_ARGUMENT / UNAVAILABLE
  body.set_message("fake upstream answers " + std::to_string(status));
  UpstreamResponse response;
  response.status = status;
  response.body = body.SerializeAsString();
  return response;
}

UpstreamResponse UpstreamResponse::partial_success(std::int64_t rejected_spans,
                                                   std::string message) {
  ExportResponse body;
  body.mutable_partial_success()->set_rejected_spans(rejected_spans);
  body.mutable_partial_success()->set_error_message(std::move(message));
  UpstreamResponse response;
  response.body = body.SerializeAsString();
  return response;
}

std::string RecordedRequest::header(const std::string& lower_case_name) const {
  const auto it = headers.find(lower_case_name);
  return it == headers.end() ? std::string() : it->second;
}

struct FakeUpstream::State {
  asio::io_context ioc;  // first member: destroyed last, after everything that refers to it
  std::optional<asio::ssl::context> ssl;
  tcp::acceptor acceptor{ioc};
  asio::steady_timer release_timer{ioc, asio::steady_timer::time_point::max()};
  std::thread thread;

  mutable std::mutex mutex;
  mutable std::condition_variable changed;
  std::deque<UpstreamResponse> script;
  UpstreamResponse fallback;
  bool holding = false;
  std::size_t held = 0;
  std::vector<RecordedRequest> requests;
  std::size_t delivered = 0;
  std::size_t size_limit = 0;
  SizeRefusal size_refusal = SizeRefusal::k413;
  std::size_t refused_size = 0;
  std::chrono::milliseconds idle_close{0};
  std::size_t idle_closed = 0;

  // The answer of an upstream whose limit a body of `bytes` exceeds.
  static UpstreamResponse too_large(SizeRefusal how, std::uint64_t bytes, std::size_t limit) {
    const std::string what = "request body of " + std::to_string(bytes) + " bytes is larger "
                             "than max " + std::to_string(limit);
    if (how == SizeRefusal::kGrafana429) {
      UpstreamResponse r;
      r.status = 429;
      r.content_type = "text/plain; charset=utf-8";
      r.body = what + "\n";
      return r;
    }
    UpstreamResponse r = UpstreamResponse::with_status(413);
    google::rpc::Status status;
    status.set_code(8);  // RESOURCE_EXHAUSTED
    status.set_message(what);
    r.body = status.SerializeAsString();
    return r;
  }

  // Records the request; returns its index and the response planned for it.
  // `forced`: the answer the size limit gives, which leaves the script alone.
  std::pair<std::size_t, UpstreamResponse> record(const http::request<http::string_body>& req,
                                                  std::optional<UpstreamResponse> forced = {},
                                                  std::uint64_t content_length = 0) {
    RecordedRequest rec;
    rec.content_length = content_length;
    rec.refused_for_size = forced.has_value();
    rec.received_at = std::chrono::steady_clock::now();
    rec.method = std::string(req.method_string());
    rec.target = std::string(req.target());
    for (const auto& field : req) {
      std::string name(field.name_string());
      std::transform(name.begin(), name.end(), name.begin(),
                     [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
      rec.headers[name] = std::string(field.value());
    }
    rec.raw_body = req.body();
    if (rec.header("content-encoding") == "gzip") {
      rec.body = gunzip(rec.raw_body).value_or(std::string());
    } else {
      rec.body = rec.raw_body;
    }
    rec.decoded = rec.request.ParseFromString(rec.body);

    const std::lock_guard lock(mutex);
    UpstreamResponse response = fallback;
    if (forced) {
      response = std::move(*forced);
      ++refused_size;
    } else if (!script.empty()) {
      response = std::move(script.front());
      script.pop_front();
    }
    requests.push_back(std::move(rec));
    changed.notify_all();
    return {requests.size() - 1, std::move(response)};
  }

  void answered(std::size_t index, unsigned status) {
    const std::lock_guard lock(mutex);
    RecordedRequest& rec = requests[index];
    rec.response_status = status;
    if (status >= 200 && status < 300 && rec.decoded) {
      delivered += span_count(rec.request);
    }
    changed.notify_all();
  }

  asio::awaitable<void> wait_while_held() {
    bool counted = false;
    for (;;) {
      {
        const std::lock_guard lock(mutex);
        if (!holding) {
          if (counted) {
            --held;
          }
          co_return;
        }
        if (!counted) {
          ++held;
          counted = true;
          changed.notify_all();
        }
      }
      // release() cancels this wait; the timer itself never expires.
      co_await release_timer.async_wait(nothrow_awaitable);
    }
  }

  template <class Stream>
  static void close_transport(Stream& stream) {
    boost::system::error_code ignored;
    beast::get_lowest_layer(stream).close(ignored);
  }

  template <class Stream>
  asio::awaitable<void> serve(Stream& stream) {
    beast::flat_buffer buffer;
    for (bool first = true;; first = false) {
      http::request_parser<http::string_body> parser;
      parser.body_limit(512u << 20);
      parser.header_limit(64u << 10);
      std::chrono::milliseconds idle;
      {
        const std::lock_guard lock(mutex);
        idle = idle_close;
      }
      // An idle kept-alive connection is closed after `idle`: a timer closes the socket unless
      // the next request's headers arrived first.
      struct IdleWatch {
        bool over = false;    // the headers arrived (or failed): the watch no longer applies
        bool closed = false;  // the watch closed the connection
      };
      auto watch = std::make_shared<IdleWatch>();
      std::optional<asio::steady_timer> idle_timer;
      if (!first && idle.count() > 0 && buffer.size() == 0) {
        idle_timer.emplace(ioc, idle);
        idle_timer->async_wait([this, &stream, watch](boost::system::error_code ec) {
          if (ec || watch->over) {
            return;
          }
          watch->closed = true;
          close_transport(stream);
          const std::lock_guard lock(mutex);
          ++idle_closed;
          changed.notify_all();
        });
      }
      auto [hec, hn] = co_await http::async_read_header(stream, buffer, parser, nothrow_awaitable);
      watch->over = true;
      if (idle_timer) {
        idle_timer->cancel();
      }
      if (hec || watch->closed) {
        co_return;
      }
      std::size_t limit;
      SizeRefusal how;
      {
        const std::lock_guard lock(mutex);
        limit = size_limit;
        how = size_refusal;
      }
      const std::uint64_t announced = parser.content_length().value_or(0);
      if (limit > 0 && how == SizeRefusal::kEarly413 && announced > limit) {
        // Refused from the headers: answer, then close with the body unread.
        http::request<http::string_body> head = parser.release();
        auto [index, planned] = record(head, too_large(how, announced, limit), announced);
        http::response<http::string_body> res{static_cast<http::status>(planned.status),
                                              head.version()};
        res.set(http::field::content_type, planned.content_type);
        res.body() = planned.body;
        res.keep_alive(false);
        res.prepare_payload();
        auto [wec, written] = co_await http::async_write(stream, res, nothrow_awaitable);
        if (!wec) {
          answered(index, planned.status);
        }
        close_transport(stream);
        co_return;
      }
      auto [ec, n] = co_await http::async_read(stream, buffer, parser, nothrow_awaitable);
      if (ec) {
        co_return;
      }
      http::request<http::string_body> req = parser.release();
      std::optional<UpstreamResponse> forced;
      if (limit > 0 && req.body().size() > limit) {
        forced = too_large(how, req.body().size(), limit);
      }
      auto [index, planned] = record(req, std::move(forced), announced);
      co_await wait_while_held();

      http::response<http::string_body> res{static_cast<http::status>(planned.status),
                                            req.version()};
      res.set(http::field::content_type, planned.content_type);
      for (const auto& [name, value] : planned.headers) {
        res.set(name, value);
      }
      res.body() = planned.body;
      res.keep_alive(req.keep_alive());
      res.prepare_payload();
      auto [wec, written] = co_await http::async_write(stream, res, nothrow_awaitable);
      if (wec) {
        co_return;
      }
      answered(index, planned.status);
      if (!req.keep_alive()) {
        co_return;
      }
    }
  }

  asio::awaitable<void> serve_plain(tcp::socket socket) {
    co_await serve(socket);
    boost::system::error_code ignored;
    socket.shutdown(tcp::socket::shutdown_both, ignored);
  }

  asio::awaitable<void> serve_tls(tcp::socket socket) {
    asio::ssl::stream<tcp::socket> stream(std::move(socket), *ssl);
    auto [ec] = co_await stream.async_handshake(asio::ssl::stream_base::server, nothrow_awaitable);
    if (!ec) {
      co_await serve(stream);
    }
  }

  asio::awaitable<void> accept_loop() {
    for (;;) {
      auto [ec, socket] = co_await acceptor.async_accept(nothrow_awaitable);
      if (ec) {
        if (!acceptor.is_open()) {
          co_return;
        }
        continue;
      }
      if (ssl) {
        asio::co_spawn(ioc, serve_tls(std::move(socket)), asio::detached);
      } else {
        asio::co_spawn(ioc, serve_plain(std::move(socket)), asio::detached);
      }
    }
  }

  void start(std::uint16_t port = 0) {
    const tcp::endpoint endpoint(asio::ip::address_v4::loopback(), port);
    acceptor.open(endpoint.protocol());
    acceptor.set_option(tcp::acceptor::reuse_address(true));
    acceptor.bind(endpoint);
    acceptor.listen();
    asio::co_spawn(ioc, accept_loop(), asio::detached);
    thread = std::thread([this] { ioc.run(); });
  }
};

FakeUpstream::FakeUpstream() : state_(std::make_unique<State>()) { state_->start(); }

FakeUpstream::FakeUpstream(std::uint16_t port) : state_(std::make_unique<State>()) {
  state_->start(port);
}

FakeUpstream::FakeUpstream(const TlsFiles& tls) : state_(std::make_unique<State>()) {
  state_->ssl.emplace(asio::ssl::context::tls_server);
  state_->ssl->use_certificate_chain_file(tls.cert_file);
  state_->ssl->use_private_key_file(tls.key_file, asio::ssl::context::pem);
  state_->start();
}

FakeUpstream::~FakeUpstream() {
  asio::post(state_->ioc, [s = state_.get()] {
    boost::system::error_code ignored;
    s->acceptor.close(ignored);
  });
  state_->ioc.stop();
  state_->thread.join();
}

std::uint16_t FakeUpstream::port() const { return state_->acceptor.local_endpoint().port(); }

std::string FakeUpstream::base_url() const {
  return std::string(state_->ssl ? "https" : "http") + "://127.0.0.1:" + std::to_string(port()) +
         "/otlp";
}

void FakeUpstream::script(std::vector<UpstreamResponse> responses) {
  const std::lock_guard lock(state_->mutex);
  for (auto& r : responses) {
    state_->script.push_back(std::move(r));
  }
}

void FakeUpstream::set_default(UpstreamResponse response) {
  const std::lock_guard lock(state_->mutex);
  state_->fallback = std::move(response);
}

void FakeUpstream::hold() {
  const std::lock_guard lock(state_->mutex);
  state_->holding = true;
}

void FakeUpstream::release() {
  {
    const std::lock_guard lock(state_->mutex);
    state_->holding = false;
  }
  asio::post(state_->ioc, [s = state_.get()] { s->release_timer.cancel(); });
}

void FakeUpstream::set_size_limit(std::size_t max_body_bytes, SizeRefusal how) {
  const std::lock_guard lock(state_->mutex);
  state_->size_limit = max_body_bytes;
  state_->size_refusal = how;
}

std::size_t FakeUpstream::refused_for_size() const {
  const std::lock_guard lock(state_->mutex);
  return state_->refused_size;
}

void FakeUpstream::set_idle_close(std::chrono::milliseconds idle) {
  const std::lock_guard lock(state_->mutex);
  state_->idle_close = idle;
}

std::size_t FakeUpstream::idle_closes() const {
  const std::lock_guard lock(state_->mutex);
  return state_->idle_closed;
}

bool FakeUpstream::wait_for_idle_closes(std::size_t n, std::chrono::milliseconds timeout) const {
  std::unique_lock lock(state_->mutex);
  return state_->changed.wait_for(lock, timeout, [&] { return state_->idle_closed >= n; });
}

std::size_t FakeUpstream::held_count() const {
  const std::lock_guard lock(state_->mutex);
  return state_->held;
}

std::size_t FakeUpstream::request_count() const {
  const std::lock_guard lock(state_->mutex);
  return state_->requests.size();
}

std::vector<RecordedRequest> FakeUpstream::requests() const {
  const std::lock_guard lock(state_->mutex);
  return state_->requests;
}

std::vector<FlatSpan> FakeUpstream::delivered_spans() const {
  const std::lock_guard lock(state_->mutex);
  std::vector<FlatSpan> out;
  for (const auto& rec : state_->requests) {
    if (rec.response_status >= 200 && rec.response_status < 300 && rec.decoded) {
      auto flat = flatten(rec.request);
      out.insert(out.end(), std::make_move_iterator(flat.begin()),
                 std::make_move_iterator(flat.end()));
    }
  }
  return out;
}

std::size_t FakeUpstream::delivered_span_count() const {
  const std::lock_guard lock(state_->mutex);
  return state_->delivered;
}

bool FakeUpstream::wait_for_requests(std::size_t n, std::chrono::milliseconds timeout) const {
  std::unique_lock lock(state_->mutex);
  return state_->changed.wait_for(lock, timeout, [&] { return state_->requests.size() >= n; });
}

bool FakeUpstream::wait_for_spans(std::size_t n, std::chrono::milliseconds timeout) const {
  std::unique_lock lock(state_->mutex);
  return state_->changed.wait_for(lock, timeout, [&] { return state_->delivered >= n; });
}

// ---- self-signed certificate ----

namespace {

template <class T, void (*Free)(T*)>
struct OpensslDeleter {
  void operator()(T* p) const { Free(p); }
};
using PkeyPtr = std::unique_ptr<EVP_PKEY, OpensslDeleter<EVP_PKEY, EVP_PKEY_free>>;
using X509Ptr = std::unique_ptr<X509, OpensslDeleter<X509, X509_free>>;
using BioPtr = std::unique_ptr<BIO, OpensslDeleter<BIO, BIO_free_all>>;

void check(bool ok, const char* what) {
  if (!ok) {
    throw std::runtime_error(std::string("openssl: ") + what + " failed");
  }
}

void add_extension(X509* cert, int nid, const char* value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, cert, cert, nullptr, nullptr, 0);
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value);
  check(ext != nullptr, value);
  X509_add_ext(cert, ext, -1);
  X509_EXTENSION_free(ext);
}

}  // namespace

TlsFiles make_self_signed_cert(const std::string& dir) {
  PkeyPtr key(EVP_EC_gen("P-256"));
  check(key != nullptr, "EVP_EC_gen");
  X509Ptr cert(X509_new());
  check(cert != nullptr, "X509_new");
  X509_set_version(cert.get(), 2);
  ASN1_INTEGER_set(X509_get_serialNumber(cert.get()),
                   static_cast<long>(std::chrono::steady_clock::now().time_since_epoch().count() &
                                     0x7fffffff));
  X509_gmtime_adj(X509_getm_notBefore(cert.get()), -3600);
  X509_gmtime_adj(X509_getm_notAfter(cert.get()), 24 * 3600);
  check(X509_set_pubkey(cert.get(), key.get()) == 1, "X509_set_pubkey");
  X509_NAME* name = X509_get_subject_name(cert.get());
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>("127.0.0.1"), -1, -1, 0);
  X509_set_issuer_name(cert.get(), name);
  add_extension(cert.get(), NID_basic_constraints, "critical,CA:TRUE");
  add_extension(cert.get(), NID_key_usage, "critical,digitalSignature,keyCertSign");
  add_extension(cert.get(), NID_ext_key_usage, "serverAuth");
  add_extension(cert.get(), NID_subject_key_identifier, "hash");
  add_extension(cert.get(), NID_authority_key_identifier, "keyid:always");
  add_extension(cert.get(), NID_subject_alt_name, "IP:127.0.0.1,DNS:localhost");
  check(X509_sign(cert.get(), key.get(), EVP_sha256()) > 0, "X509_sign");

  TlsFiles files{dir + "/upstream-cert.pem", dir + "/upstream-key.pem"};
  BioPtr cert_out(BIO_new_file(files.cert_file.c_str(), "w"));
  check(cert_out && PEM_write_bio_X509(cert_out.get(), cert.get()) == 1, "write cert");
  BioPtr key_out(BIO_new_file(files.key_file.c_str(), "w"));
  check(key_out && PEM_write_bio_PrivateKey(key_out.get(), key.get(), nullptr, nullptr, 0,
                                            nullptr, nullptr) == 1,
        "write key");
  return files;
}

}  // namespace it
