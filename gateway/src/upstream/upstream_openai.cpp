// See upstream_openai.h. One coroutine per upstream call, on its own strand; connections are pooled per
// backend and reused when the upstream keeps them alive.
#include "upstream/upstream_openai.h"

#include <simdjson.h>

#include <atomic>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <cstdlib>
#include <mutex>

#include "api/openai_codec.h"
#include "ops/gateway_metrics.h"

namespace sluice::gateway {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = asio::ssl;
using asio::awaitable;
using router::errc;
using router::error;
using tcp = asio::ip::tcp;

namespace {

constexpr auto tok = asio::as_tuple(asio::use_awaitable);
using tls_stream = beast::ssl_stream<beast::tcp_stream>;
using clock = std::chrono::steady_clock;

// One upstream connection. Its streams (and so their timers) are bound to its own strand, and every call
// that uses the connection runs on that strand: with several io threads nothing else may touch it.
struct connection {
  asio::any_io_executor strand;
  std::unique_ptr<beast::tcp_stream> plain;
  std::unique_ptr<tls_stream> tls;
  beast::flat_buffer buffer;
  beast::tcp_stream& lowest() { return tls ? beast::get_lowest_layer(*tls) : *plain; }
};

// One HTTP operation on whichever stream the connection has. (Not a `?:` between two co_await-able calls:
// g++ 12 evaluates both operands of such a conditional inside coroutines.)
using io_result = std::tuple<beast::error_code, size_t>;

awaitable<io_result> write_on(connection& c, http::request<http::string_body>& r) {
  if (c.tls) co_return co_await http::async_write(*c.tls, r, tok);
  co_return co_await http::async_write(*c.plain, r, tok);
}

awaitable<io_result> read_header_on(connection& c, http::response_parser<http::buffer_body>& p) {
  if (c.tls) co_return co_await http::async_read_header(*c.tls, c.buffer, p, tok);
  co_return co_await http::async_read_header(*c.plain, c.buffer, p, tok);
}

// Reads whatever body bytes are available now (a stream must not wait for a full buffer).
awaitable<io_result> read_some_on(connection& c, http::response_parser<http::buffer_body>& p) {
  if (c.tls) co_return co_await http::async_read_some(*c.tls, c.buffer, p, tok);
  co_return co_await http::async_read_some(*c.plain, c.buffer, p, tok);
}

// Host header value: host[:port], with brackets for IPv6 and the port only when not the scheme's default.
std::string host_header(const policies::endpoint& e) {
  std::string h = e.host.find(':') != std::string::npos ? "[" + e.host + "]" : e.host;
  if (e.port != (e.tls ? 443 : 80)) h += ":" + std::to_string(e.port);
  return h;
}

// The upstream's error.message, if its body has one (used only for 4xx that are the request's fault).
std::string upstream_error_message(std::string_view body) {
  thread_local simdjson::dom::parser parser;
  simdjson::dom::element root;
  std::string_view msg;
  if (parser.parse(body.data(), body.size(), true).get(root) == simdjson::SUCCESS &&
      root["error"]["message"].get_string().get(msg) == simdjson::SUCCESS) {
    return std::string(msg.substr(0, 500));
  }
  return {};
}

// What a failed connection attempt (resolve, connect, TLS handshake) counts as.
upstream_error_reason connect_failure_reason(const beast::error_code& ec) {
  if (ec == beast::error::timeout) return upstream_error_reason::timeout;
  if (ec.category() == asio::error::get_ssl_category() || ec.category() == ssl::error::get_stream_category()) {
    return upstream_error_reason::tls;
  }
  return upstream_error_reason::connect;
}

bool is_http_error(const beast::error_code& ec) {
  return ec.category() == http::make_error_code(http::error::bad_version).category();
}

// What a failure before the response head counts as: a connection lost before any answer is as good as
// unreachable; a head Beast cannot parse is garbage.
upstream_error_reason head_failure_reason(const beast::error_code& ec, bool got_some) {
  if (ec == beast::error::timeout) return upstream_error_reason::timeout;
  if (ec == http::error::end_of_stream) return upstream_error_reason::connect;  // closed without a byte
  if (ec == http::error::partial_message) return upstream_error_reason::stream_cut;
  if (is_http_error(ec)) return upstream_error_reason::protocol;
  return got_some ? upstream_error_reason::stream_cut : upstream_error_reason::connect;
}

// ... and after the head: the connection dropped, or the body's framing (chunk sizes, limits) is garbage.
upstream_error_reason body_failure_reason(const beast::error_code& ec) {
  if (ec == beast::error::timeout) return upstream_error_reason::timeout;
  if (is_http_error(ec) && ec != http::error::partial_message) return upstream_error_reason::protocol;
  return upstream_error_reason::stream_cut;
}

upstream_error_reason status_reason(int status) {
  if (status == 401 || status == 403) return upstream_error_reason::auth;
  if (status == 429) return upstream_error_reason::rate_limited;
  return upstream_error_reason::http_status;
}

// An upstream header value relayed to our client only if it has the expected shape (never raw bytes from
// upstream in our head): Retry-After is delta-seconds or an HTTP-date, retry-after-ms a number.
std::string checked_header(std::string_view v, std::string_view allowed, size_t max_len) {
  if (v.empty() || v.size() > max_len || v.find_first_not_of(allowed) != std::string_view::npos) return {};
  return std::string(v);
}

error status_error(int status, std::string_view body, const std::string& model) {
  if (status == 401 || status == 403) {
    // Never relay an upstream auth error body: it can echo a fragment of the key (PITFALLS.md "Secrets").
    return {errc::upstream_auth, "The upstream for model '" + model + "' rejected the gateway's credentials (HTTP " +
                                     std::to_string(status) + "). Ask the operator to check the API key."};
  }
  if (status == 429) {
    return {errc::upstream_rate_limited, "The upstream for model '" + model + "' is rate limiting requests."};
  }
  if (status >= 400 && status < 500 && status != 404 && status != 408) {
    std::string msg = upstream_error_message(body);
    return {errc::upstream_rejected,
            "The upstream for model '" + model + "' rejected the request (HTTP " + std::to_string(status) + ")" +
                (msg.empty() ? std::string(".") : ": " + msg)};
  }
  return {errc::upstream_error,
          "The upstream for model '" + model + "' failed with HTTP " + std::to_string(status) + "."};
}

class openai_backend;

class upstream_call final : public router::generation, public std::enable_shared_from_this<upstream_call> {
 public:
  upstream_call(std::shared_ptr<openai_backend> backend, asio::any_io_executor strand,
                std::shared_ptr<const router::chat_request> req, const policies::model_config& model,
                std::shared_ptr<router::generation_sink> sink, std::unique_ptr<connection> pooled)
      : backend_(std::move(backend)), strand_(std::move(strand)), req_(std::move(req)), model_name_(model.name),
        upstream_model_(model.upstream_model.empty() ? model.name : model.upstream_model), sink_(std::move(sink)),
        conn_(std::move(pooled)) {}

  void cancel() override {
    cancelled_ = true;
    asio::post(strand_, [self = shared_from_this()] {
      if (self->conn_) self->conn_->lowest().cancel();
      self->room_bell_.cancel();
    });
  }

  awaitable<void> run();
  const asio::any_io_executor& strand() const { return strand_; }

 private:
  awaitable<beast::error_code> connect(clock::time_point deadline);
  awaitable<void> read_whole(http::response_parser<http::buffer_body>& parser, clock::time_point deadline);
  awaitable<void> read_stream(http::response_parser<http::buffer_body>& parser);
  awaitable<void> wait_for_room();
  void finish(router::result<router::completion> r);
  void fail(upstream_error_reason why, error e);  // counts the failure, then finish()
  bool handle_sse_event(std::string_view event, bool& saw_done);

  std::shared_ptr<openai_backend> backend_;
  asio::any_io_executor strand_;
  std::shared_ptr<const router::chat_request> req_;
  std::string model_name_;
  std::string upstream_model_;
  std::shared_ptr<router::generation_sink> sink_;
  std::unique_ptr<connection> conn_;
  std::atomic<bool> cancelled_{false};
  bool done_ = false;
  router::completion acc_;  // accumulated while streaming
  std::optional<error> stream_error_;
  upstream_error_reason stream_error_reason_ = upstream_error_reason::other;
  // Back-pressure: set when the sink has room again (see wait_for_room); the bell wakes the wait.
  bool room_ = true;
  asio::steady_timer room_bell_{strand_, asio::steady_timer::time_point::max()};
};

class openai_backend final : public router::backend, public std::enable_shared_from_this<openai_backend> {
 public:
  openai_backend(asio::io_context& ioc, policies::endpoint url, std::string api_key, upstream_options opts)
      : ioc_(ioc), url_(std::move(url)), api_key_(std::move(api_key)), opts_(opts),
        ssl_ctx_(ssl::context::tls_client) {
    ssl_ctx_.set_default_verify_paths();
    ssl_ctx_.set_verify_mode(ssl::verify_peer);
  }

  // Trusts the CA certificates in `pem_file` too (private CAs, test servers).
  router::result<void> add_ca_file(const std::string& pem_file) {
    boost::system::error_code ec;
    ssl_ctx_.load_verify_file(pem_file, ec);
    if (ec) return error{errc::internal, "cannot load tls_ca_file '" + pem_file + "': " + ec.message()};
    return {};
  }

  router::result<std::shared_ptr<router::generation>> start(std::shared_ptr<const router::chat_request> req,
                                                            const policies::model_config& model,
                                                            std::shared_ptr<router::generation_sink> sink) override {
    // A pooled connection brings its strand; a new one gets a fresh strand that it will keep.
    std::unique_ptr<connection> idle = take_idle();
    asio::any_io_executor strand = idle ? idle->strand : asio::any_io_executor(asio::make_strand(ioc_));
    auto call = std::make_shared<upstream_call>(shared_from_this(), std::move(strand), std::move(req), model,
                                                std::move(sink), std::move(idle));
    asio::co_spawn(call->strand(), call->run(), asio::detached);
    return std::shared_ptr<router::generation>(call);
  }

  std::unique_ptr<connection> take_idle() {
    std::lock_guard lock(mutex_);
    if (idle_.empty()) return nullptr;
    auto c = std::move(idle_.back());
    idle_.pop_back();
    return c;
  }

  void give_back(std::unique_ptr<connection> c) {
    std::lock_guard lock(mutex_);
    if (idle_.size() < opts_.max_idle_connections) idle_.push_back(std::move(c));
  }

  asio::io_context& ioc_;
  policies::endpoint url_;
  std::string api_key_;
  upstream_options opts_;
  ssl::context ssl_ctx_;

 private:
  std::mutex mutex_;
  std::vector<std::unique_ptr<connection>> idle_;
};

void upstream_call::finish(router::result<router::completion> r) {
  if (done_) return;
  done_ = true;
  if (cancelled_ && !r.has_value()) r = error{errc::cancelled, "The client cancelled the request."};
  sink_->on_done(std::move(r));
}

void upstream_call::fail(upstream_error_reason why, error e) {
  // A cancelled call did not fail: whoever cancelled it knows why.
  if (auto* m = backend_->opts_.metrics.get(); m && !done_ && !cancelled_) m->record_upstream_error(model_name_, why);
  finish(std::move(e));
}

awaitable<void> upstream_call::wait_for_room() {
  room_ = false;
  // The sink keeps `resume` while it is full: it must not keep this call alive (generation_sink::when_ready).
  std::weak_ptr<upstream_call> weak = weak_from_this();
  auto resume = [weak] {
    auto self = weak.lock();
    if (!self) return;
    asio::post(self->strand_, [self] {
      self->room_ = true;
      self->room_bell_.cancel();
    });
  };
  sink_->when_ready(std::move(resume));
  while (!room_ && !cancelled_) {
    room_bell_.expires_at(asio::steady_timer::time_point::max());
    co_await room_bell_.async_wait(tok);
  }
}

awaitable<beast::error_code> upstream_call::connect(clock::time_point deadline) {
  const policies::endpoint& url = backend_->url_;
  tcp::resolver resolver(strand_);
  auto [rec, endpoints] = co_await resolver.async_resolve(url.host, std::to_string(url.port), tok);
  if (rec) co_return rec;
  auto c = std::make_unique<connection>();
  c->strand = strand_;
  if (url.tls) {
    c->tls = std::make_unique<tls_stream>(strand_, backend_->ssl_ctx_);
    if (!SSL_set_tlsext_host_name(c->tls->native_handle(), url.host.c_str())) {
      co_return beast::error_code(static_cast<int>(::ERR_get_error()), asio::error::get_ssl_category());
    }
    c->tls->set_verify_callback(ssl::host_name_verification(url.host));
  } else {
    c->plain = std::make_unique<beast::tcp_stream>(strand_);
  }
  conn_ = std::move(c);
  conn_->lowest().expires_at(deadline);
  auto [cec, ep] = co_await conn_->lowest().async_connect(endpoints, tok);
  if (cec) co_return cec;
  conn_->lowest().socket().set_option(tcp::no_delay(true));
  if (url.tls) {
    auto [hec] = co_await conn_->tls->async_handshake(ssl::stream_base::client, tok);
    if (hec) co_return hec;
  }
  co_return beast::error_code{};
}

awaitable<void> upstream_call::run() {
  auto self = shared_from_this();  // keeps the call alive across suspensions
  const policies::endpoint& url = backend_->url_;
  const auto timeout = backend_->opts_.timeout;
  const auto deadline = clock::now() + timeout;

  http::request<http::string_body> hreq{http::verb::post, url.base_path + "/chat/completions", 11};
  hreq.set(http::field::host, host_header(url));
  hreq.set(http::field::user_agent, "sluice/" SLUICE_VERSION);
  hreq.set(http::field::content_type, "application/json");
  hreq.set(http::field::accept, req_->stream ? "text/event-stream" : "application/json");
  if (!backend_->api_key_.empty()) hreq.set(http::field::authorization, "Bearer " + backend_->api_key_);
  hreq.body() = make_openai_upstream_body(*req_, upstream_model_, true);
  hreq.prepare_payload();

  for (int attempt = 0;; ++attempt) {
    if (cancelled_) co_return finish(error{errc::cancelled, "cancelled"});
    if (attempt > 0) conn_.reset();  // the retry goes out on a fresh connection (on this same strand)
    const bool reused = conn_ != nullptr;
    if (!conn_) {
      auto ec = co_await connect(deadline);
      if (ec) {
        conn_.reset();
        if (ec == beast::error::timeout) {
          co_return fail(upstream_error_reason::timeout,
                         error{errc::upstream_timeout,
                               "Timed out connecting to the upstream for model '" + model_name_ + "'."});
        }
        co_return fail(connect_failure_reason(ec),
                       error{errc::upstream_error, "Could not connect to the upstream for model '" + model_name_ +
                                                       "': " + ec.message() + "."});
      }
    }
    conn_->lowest().expires_at(deadline);
    auto [wec, wn] = co_await write_on(*conn_, hreq);
    http::response_parser<http::buffer_body> parser;
    beast::error_code rec = wec;
    if (!wec) {
      parser.body_limit(boost::none);
      auto [hec, hn] = co_await read_header_on(*conn_, parser);
      rec = hec;
    }
    if (rec) {
      conn_.reset();
      // A pooled connection the upstream closed while idle fails before any answer: retry once, fresh.
      if (reused && !cancelled_ && rec != beast::error::timeout && !parser.got_some()) continue;
      if (cancelled_) co_return finish(error{errc::cancelled, "cancelled"});
      if (rec == beast::error::timeout) {
        co_return fail(upstream_error_reason::timeout,
                       error{errc::upstream_timeout, "The upstream for model '" + model_name_ +
                                                         "' did not answer within " + std::to_string(timeout.count()) +
                                                         " ms."});
      }
      co_return fail(head_failure_reason(rec, parser.got_some()),
                     error{errc::upstream_error, "The connection to the upstream for model '" + model_name_ +
                                                     "' failed: " + rec.message() + "."});
    }
    const int status = parser.get().result_int();
    if (status != 200 || !req_->stream) {
      parser.body_limit(backend_->opts_.max_response_bytes);
      co_await read_whole(parser, deadline);
      if (done_) co_return;
      if (status != 200) {
        error e = status_error(status, acc_.raw, model_name_);
        if (status == 429) {  // how long the upstream asks callers to wait: the client should know too
          e.retry_after = checked_header(parser.get()[http::field::retry_after],
                                         "0123456789 ,:ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz", 64);
          e.retry_after_ms = checked_header(parser.get()["retry-after-ms"], "0123456789.", 16);
        }
        co_return fail(status_reason(status), std::move(e));
      }
      router::completion c;
      if (!parse_openai_chat_response(acc_.raw, c)) {
        co_return fail(upstream_error_reason::protocol,
                       error{errc::upstream_error,
                             "The upstream for model '" + model_name_ + "' returned a malformed response."});
      }
      c.raw = std::move(acc_.raw);
      if (parser.keep_alive()) backend_->give_back(std::move(conn_));
      co_return finish(std::move(c));
    }
    co_await read_stream(parser);
    co_return;
  }
}

awaitable<void> upstream_call::read_whole(http::response_parser<http::buffer_body>& parser,
                                          clock::time_point deadline) {
  // Reads straight into acc_.raw (no buffer in the coroutine frame: frames are heap-allocated per call).
  constexpr size_t chunk_bytes = 16384;
  while (!parser.is_done()) {
    const size_t old = acc_.raw.size();
    acc_.raw.resize(old + chunk_bytes);
    parser.get().body().data = acc_.raw.data() + old;
    parser.get().body().size = chunk_bytes;
    conn_->lowest().expires_at(deadline);
    auto [ec, n] = co_await read_some_on(*conn_, parser);
    if (ec == http::error::need_buffer) ec = {};
    acc_.raw.resize(old + chunk_bytes - parser.get().body().size);
    if (ec) {
      conn_.reset();
      if (cancelled_) { finish(error{errc::cancelled, "cancelled"}); co_return; }
      if (ec == beast::error::timeout) {
        fail(upstream_error_reason::timeout,
             error{errc::upstream_timeout, "The upstream for model '" + model_name_ + "' timed out."});
      } else {
        fail(body_failure_reason(ec), error{errc::upstream_error, "The upstream for model '" + model_name_ +
                                                                      "' dropped the connection: " + ec.message() +
                                                                      "."});
      }
      co_return;
    }
  }
}

// One SSE event (lines up to a blank line). Returns false on a malformed or error event.
bool upstream_call::handle_sse_event(std::string_view event, bool& saw_done) {
  std::string data;
  size_t pos = 0;
  while (pos < event.size()) {
    size_t eol = event.find('\n', pos);
    if (eol == std::string_view::npos) eol = event.size();
    std::string_view line = event.substr(pos, eol - pos);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    pos = eol + 1;
    if (line.starts_with("data:")) {
      line.remove_prefix(5);
      if (!line.empty() && line.front() == ' ') line.remove_prefix(1);
      if (!data.empty()) data += '\n';
      data.append(line);
    }
  }
  if (data.empty()) return true;  // comments, keep-alives, "event:" lines
  if (data == "[DONE]") {
    saw_done = true;
    return true;
  }
  router::chunk c;
  bool usage_only = false;
  if (!parse_openai_chat_chunk(data, c, usage_only)) {
    stream_error_ = error{errc::upstream_error, "The upstream for model '" + model_name_ + "' sent a malformed stream event."};
    stream_error_reason_ = upstream_error_reason::protocol;
    return false;
  }
  if (data.find("\"error\"") != std::string::npos && data.find("\"choices\"") == std::string::npos) {
    stream_error_ = error{errc::upstream_error, "The upstream for model '" + model_name_ + "' reported an error mid-stream."};
    stream_error_reason_ = upstream_error_reason::stream_cut;
    return false;
  }
  c.usage_only = usage_only;
  acc_.text += c.text;
  if (c.finish) acc_.finish = *c.finish;
  if (c.usage_) acc_.usage_ = *c.usage_;
  c.raw = std::move(data);
  c.raw_format = router::wire_format::openai_chat;
  sink_->on_chunk(std::move(c));
  return true;
}

awaitable<void> upstream_call::read_stream(http::response_parser<http::buffer_body>& parser) {
  const auto timeout = backend_->opts_.timeout;
  std::string pending;  // bytes of an SSE event not yet complete
  bool saw_done = false;
  constexpr size_t chunk_bytes = 16384;  // read straight into `pending`, not into the coroutine frame
  while (!parser.is_done()) {
    if (!room_) {
      // The client reads slower than the upstream writes: stop reading until it catches up, so that the
      // upstream (and TCP) hold the difference, not this process. The stall timeout does not run meanwhile.
      co_await wait_for_room();
      if (cancelled_) {
        conn_.reset();
        finish(error{errc::cancelled, "cancelled"});
        co_return;
      }
    }
    const size_t old = pending.size();
    pending.resize(old + chunk_bytes);
    parser.get().body().data = pending.data() + old;
    parser.get().body().size = chunk_bytes;
    conn_->lowest().expires_after(timeout);  // a stall longer than the timeout ends the stream
    auto [ec, n] = co_await read_some_on(*conn_, parser);
    if (ec == http::error::need_buffer) ec = {};
    pending.resize(old + chunk_bytes - parser.get().body().size);
    // Events end at a blank line ("\n\n" or "\r\n\r\n").
    size_t start = 0;
    bool relayed = false;
    for (;;) {
      size_t end = pending.find("\n\n", start);
      size_t crlf = pending.find("\r\n\r\n", start);
      size_t sep = 2;
      if (crlf != std::string::npos && (end == std::string::npos || crlf < end)) { end = crlf; sep = 4; }
      if (end == std::string::npos) break;
      if (!handle_sse_event(std::string_view(pending).substr(start, end - start), saw_done)) {
        conn_.reset();
        fail(stream_error_reason_, *stream_error_);
        co_return;
      }
      relayed = true;
      start = end + sep;
    }
    pending.erase(0, start);
    if (ec) {
      conn_.reset();
      if (cancelled_) { finish(error{errc::cancelled, "cancelled"}); co_return; }
      const bool stalled = ec == beast::error::timeout;
      fail(body_failure_reason(ec),
           error{stalled ? errc::upstream_timeout : errc::upstream_error,
                 "The upstream for model '" + model_name_ + "' " +
                     (stalled ? "stalled mid-stream." : "dropped the connection mid-stream.")});
      co_return;
    }
    if (relayed) room_ = false;  // ask the sink before reading on (wait_for_room)
  }
  if (!pending.empty()) handle_sse_event(pending, saw_done);
  if (!saw_done) {
    conn_.reset();
    fail(upstream_error_reason::stream_cut,
         error{errc::upstream_error, "The upstream for model '" + model_name_ + "' ended the stream early."});
    co_return;
  }
  if (parser.keep_alive()) backend_->give_back(std::move(conn_));
  finish(std::move(acc_));
}

}  // namespace

router::result<std::shared_ptr<router::backend>> make_openai_backend(asio::io_context& ioc,
                                                                     const policies::model_config& model,
                                                                     const upstream_options& opts) {
  if (model.upstream.host.empty()) {
    return error{errc::internal, "model '" + model.name + "' has no upstream base_url"};
  }
  std::string key;
  if (!model.api_key_env.empty()) {
    if (const char* v = std::getenv(model.api_key_env.c_str())) key = v;
  }
  upstream_options o = opts;
  if (model.timeout.count() > 0) o.timeout = model.timeout;
  auto backend = std::make_shared<openai_backend>(ioc, model.upstream, std::move(key), o);
  if (!model.tls_ca_file.empty()) {
    if (auto r = backend->add_ca_file(model.tls_ca_file); !r) return r.error();
  }
  return std::shared_ptr<router::backend>(std::move(backend));
}

}  // namespace sluice::gateway
