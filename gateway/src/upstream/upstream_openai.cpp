// See upstream_openai.h. An upstream call runs on the io thread it was started from (or, for a call started
// elsewhere, e.g. from an engine thread, on one picked round robin). Idle connections are pooled per io thread
// and used only there. A request goes out as one write: a head prefix built once per backend, the per-call
// Accept and Content-Length lines, and the client's body in pieces around the rewritten model
// (openai_upstream_body_pieces; a small request is joined into one buffer), written at once when the socket
// takes it. The answer is read by http/response_reader straight into a recycled buffer. A non-streaming call on a
// pooled connection is a chain of completion handlers; connecting and relaying a stream are coroutines.
#include "upstream/upstream_openai.h"

#include <simdjson.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <charconv>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ip/basic_resolver.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/field.hpp>
#include <cctype>
#include <cstdlib>
#include <optional>

#include "api/json_util.h"
#include "api/openai_codec.h"
#include "http/deadlines.h"
#include "http/executor.h"
#include "http/io_threads.h"
#include "http/recycler.h"
#include "http/response_reader.h"
#include "ops/gateway_metrics.h"
#include "upstream/upstream_failures.h"
#include "upstream/upstream_protocol.h"

namespace sluice::gateway {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = asio::ssl;
using router::errc;
using router::error;

namespace {

using tls_stream = ssl::stream<tcp_socket>;
using clock = std::chrono::steady_clock;
constexpr size_t read_size = 16384;  // bytes asked of the socket per read: a typical answer in one read
constexpr size_t small_request_bytes = 4096;  // a request up to this size goes out from one buffer

// One upstream connection, owned by one io thread (its socket is bound to that thread's io_context).
struct connection {
  std::optional<tcp_socket> plain;
  std::unique_ptr<tls_stream> tls;
  beast::flat_buffer buffer;  // read and not yet parsed (kept between the answers of a kept-alive connection)
  tcp_socket& lowest() { return tls ? tls->next_layer() : *plain; }
};

// Up to 8 buffers written as one.
struct buffer_list {
  std::array<asio::const_buffer, 8> items;
  size_t count = 0;
  void add(std::string_view s) { items[count++] = asio::const_buffer(s.data(), s.size()); }
  size_t size() const {
    size_t n = 0;
    for (size_t i = 0; i < count; ++i) n += items[i].size();
    return n;
  }
  void consume(size_t n) {
    for (size_t i = 0; i < count && n > 0; ++i) {
      const size_t step = std::min(n, items[i].size());
      items[i] += step;
      n -= step;
    }
  }
  const asio::const_buffer* begin() const { return items.data(); }
  const asio::const_buffer* end() const { return items.data() + count; }
};

// Host header value: host[:port], with brackets for IPv6 and the port only when not the scheme's default.
std::string host_header(const policies::endpoint& e) {
  std::string h = e.host.find(':') != std::string::npos ? "[" + e.host + "]" : e.host;
  if (e.port != (e.tls ? 443 : 80)) h += ":" + std::to_string(e.port);
  return h;
}

// (The operations on a connection branch on plain/TLS with if/else where they are started, not in helper
// coroutines: each coroutine call costs a frame. Not a `?:` between two co_await-able calls: g++ 12 evaluates
// both operands of such a conditional inside coroutines.)

class openai_backend;

class upstream_call final : public router::generation,
                            public std::enable_shared_from_this<upstream_call>,
                            private deadline_entry {
 public:
  upstream_call(std::shared_ptr<openai_backend> backend, asio::io_context& ioc, size_t thread,
                std::shared_ptr<const router::chat_request> req, const policies::model_config& model,
                std::shared_ptr<router::generation_sink> sink);
  ~upstream_call() override;

  void cancel() override {
    cancelled_ = true;
    asio::post(ex_, recycled([self = shared_from_this()] {
      boost::system::error_code ec;
      if (self->conn_) self->conn_->lowest().cancel(ec);
      if (self->room_bell_) self->room_bell_->cancel();
    }));
  }

  // On the io thread: prepares the request; with a pooled connection, sends it at once.
  void start();
  // Another protocol's request body (upstream_protocol.h), made before the call starts.
  void set_protocol_body(std::string body) { joined_ = std::move(body); }
  io_executor executor() const { return ex_; }

 private:
  // The exchange on a connection is a chain of completion handlers, not a coroutine: a non-streaming answer on
  // a pooled connection then costs no coroutine frame and no co_spawn (measured: the largest part of what
  // Asio cost per request). Connecting and streaming, which wait many times, are coroutines.
  void prepare_request();
  task<void> connect_then_send();
  void send();
  void on_sent(const beast::error_code& ec);
  void feed(beast::error_code& ec);  // the buffered bytes to the reader; at the head's end, picks the body's place
  void read_more();  // parses what is buffered; reads when the answer needs more
  void on_read(const beast::error_code& ec, size_t n);
  void on_answer_error(beast::error_code ec);  // retries once on a stale pooled connection, else fails
  void answer_done();                          // the head (and a whole answer) is in
  task<void> stream_then_end();
  void end();                                  // the call is over: a cancellation reported, the deadline left
  void begin_answer();
  void connect_failed(const beast::error_code& ec);
  void answer_failed(const beast::error_code& ec);
  void whole_answer();
  task<beast::error_code> connect(clock::time_point deadline);
  task<void> read_stream();
  task<void> wait_for_room();
  void on_deadline() override;
  void finish(router::result<router::completion> r);
  void fail(upstream_error_reason why, error e);  // counts the failure, then finish()
  bool handle_sse_event(std::string_view event, bool& saw_done);
  bool handle_protocol_event(std::string data, bool& saw_done);
  // A read that ended with an error because a deadline passed reads as beast::error::timeout.
  beast::error_code as_timeout(beast::error_code ec) const {
    return timed_out_ && ec == asio::error::operation_aborted ? beast::error::timeout : ec;
  }

  std::shared_ptr<openai_backend> backend_;
  io_executor ex_;
  size_t thread_;  // the io thread whose connection pool this call uses
  std::shared_ptr<const router::chat_request> req_;
  const policies::model_config& model_;  // owned by the policy the router keeps alive
  std::shared_ptr<router::generation_sink> sink_;
  std::unique_ptr<connection> conn_;
  std::atomic<bool> cancelled_{false};
  bool done_ = false;
  bool timed_out_ = false;
  bool reused_ = false;   // the connection came from the pool
  bool retried_ = false;  // a stale pooled connection was already replaced once
  clock::time_point deadline_;
  router::completion acc_;  // acc_.raw: a whole answer; the rest accumulated while streaming
  std::string pending_;     // bytes of an SSE event not yet complete
  std::string scratch_;     // new bytes of the request body (stream_options)
  std::string joined_;      // the whole body, for requests without recorded spans
  std::string wire_;        // a small request whole
  std::string other_model_json_;
  body_pieces body_;
  buffer_list request_;     // what goes out: head prefix, tail, body pieces
  char request_tail_[320];  // "X-Request-Id: ..\r\n[traceparent: ..\r\n]Accept: ...\r\nContent-Length: N\r\n\r\n"
  std::optional<response_reader> parser_;
  bool streams_ = false;  // the answer is a 200 to a streaming request: its body goes to the SSE splitter
  std::unique_ptr<upstream_stream_decoder> decoder_;  // another protocol's stream (null for OpenAI)
  std::optional<error> stream_error_;
  upstream_error_reason stream_error_reason_ = upstream_error_reason::other;
  // Back-pressure: set when the sink has room again (see wait_for_room); the bell wakes the wait (made for
  // streams only: a timer's construction looks up its service under a lock).
  bool room_ = true;
  std::optional<io_timer> room_bell_;
};

class openai_backend final : public router::backend, public std::enable_shared_from_this<openai_backend> {
 public:
  openai_backend(io_threads& threads, const policies::model_config& model, std::string api_key,
                 upstream_options opts, std::shared_ptr<const upstream_protocol> protocol)
      : threads_(threads), url_(model.upstream), opts_(std::move(opts)), ssl_ctx_(ssl::context::tls_client),
        protocol_(std::move(protocol)), pools_(threads.size()) {
    ssl_ctx_.set_default_verify_paths();
    ssl_ctx_.set_verify_mode(ssl::verify_peer);
    // Everything of the request head that is the same for every call, built once.
    const std::string path = protocol_ ? std::string(protocol_->path()) : std::string("/chat/completions");
    head_prefix_ = "POST " + url_.base_path + path + " HTTP/1.1\r\nHost: " + host_header(url_) +
                   "\r\nUser-Agent: sluice/" SLUICE_VERSION "\r\nContent-Type: application/json\r\n";
    if (protocol_) head_prefix_ += protocol_->auth_headers(api_key);
    else if (!api_key.empty()) head_prefix_ += "Authorization: Bearer " + api_key + "\r\n";
    model_name_ = model.name;
    append_json_string(model_json_, model.upstream_model.empty() ? model.name : model.upstream_model);
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
    // On an io thread, the call stays there (it is that thread's connection asking); from elsewhere (an engine
    // thread finishing a cascade tier) it goes to the next io thread.
    const int current = io_threads::current_index();
    asio::io_context* ioc = nullptr;
    size_t thread = 0;
    if (current >= 0 && static_cast<size_t>(current) < pools_.size()) {
      thread = static_cast<size_t>(current);
      ioc = &threads_.context(thread);
    } else {
      thread = next_.fetch_add(1, std::memory_order_relaxed) % pools_.size();
      ioc = &threads_.context(thread);
    }
    std::string protocol_body;
    if (protocol_) {  // refused here, before anything is sent, when the protocol cannot express the request
      auto body = protocol_->request_body(*req, model);
      if (!body) return body.error();
      protocol_body = std::move(*body);
    }
    auto call = std::allocate_shared<upstream_call>(recycling_allocator<upstream_call>(), shared_from_this(), *ioc,
                                                    thread, std::move(req), model, std::move(sink));
    if (protocol_) call->set_protocol_body(std::move(protocol_body));
    if (current >= 0 && static_cast<size_t>(current) == thread) call->start();
    else asio::post(call->executor(), recycled([call] { call->start(); }));
    return std::shared_ptr<router::generation>(std::move(call));
  }

  // The idle connections of io thread `t`, used only on that thread.
  std::unique_ptr<connection> take_idle(size_t t) {
    auto& idle = pools_[t].idle;
    if (idle.empty()) return nullptr;
    auto c = std::move(idle.back());
    idle.pop_back();
    return c;
  }

  void give_back(size_t t, std::unique_ptr<connection> c) {
    auto& idle = pools_[t].idle;
    if (idle.size() < opts_.max_idle_connections) idle.push_back(std::move(c));
  }

  io_threads& threads_;
  policies::endpoint url_;
  upstream_options opts_;
  ssl::context ssl_ctx_;
  std::string head_prefix_;  // "POST ... HTTP/1.1" through Authorization
  std::string model_name_;   // the policy model this backend serves
  std::string model_json_;   // its upstream name as a JSON string literal
  std::shared_ptr<const upstream_protocol> protocol_;  // null: OpenAI

 private:
  struct pool {
    std::vector<std::unique_ptr<connection>> idle;
  };
  std::vector<pool> pools_;  // one per io thread
  std::atomic<size_t> next_{0};
};

upstream_call::upstream_call(std::shared_ptr<openai_backend> backend, asio::io_context& ioc, size_t thread,
                             std::shared_ptr<const router::chat_request> req, const policies::model_config& model,
                             std::shared_ptr<router::generation_sink> sink)
    : deadline_entry(ioc), backend_(std::move(backend)), ex_(ioc.get_executor()), thread_(thread),
      req_(std::move(req)), model_(model), sink_(std::move(sink)) {}

upstream_call::~upstream_call() {
  give_buffer(std::move(wire_));
  give_buffer(std::move(acc_.raw));
  give_buffer(std::move(pending_));
  give_buffer(std::move(scratch_));
}

void upstream_call::on_deadline() {
  timed_out_ = true;
  boost::system::error_code ec;
  if (conn_) conn_->lowest().cancel(ec);
}

void upstream_call::finish(router::result<router::completion> r) {
  if (done_) return;
  done_ = true;
  if (cancelled_ && !r.has_value()) r = error{errc::cancelled, "The client cancelled the request."};
  sink_->on_done(std::move(r));
}

void upstream_call::fail(upstream_error_reason why, error e) {
  // A cancelled call did not fail: whoever cancelled it knows why.
  if (auto* m = backend_->opts_.metrics.get(); m && !done_ && !cancelled_) m->record_upstream_error(model_.name, why);
  finish(std::move(e));
}

task<void> upstream_call::wait_for_room() {
  room_ = false;
  // The sink keeps `resume` while it is full: it must not keep this call alive (generation_sink::when_ready).
  std::weak_ptr<upstream_call> weak = weak_from_this();
  auto resume = [weak] {
    auto self = weak.lock();
    if (!self) return;
    asio::post(self->ex_, recycled([self] {
      self->room_ = true;
      if (self->room_bell_) self->room_bell_->cancel();
    }));
  };
  if (!room_bell_) room_bell_.emplace(ex_, asio::steady_timer::time_point::max());
  sink_->when_ready(std::move(resume));
  while (!room_ && !cancelled_) {
    room_bell_->expires_at(asio::steady_timer::time_point::max());
    co_await room_bell_->async_wait(use_task);
  }
}

task<beast::error_code> upstream_call::connect(clock::time_point deadline) {
  const policies::endpoint& url = backend_->url_;
  asio::ip::basic_resolver<asio::ip::tcp, io_executor> resolver(ex_);
  auto [rec, endpoints] = co_await resolver.async_resolve(url.host, std::to_string(url.port), use_task);
  if (rec) co_return rec;
  auto c = std::make_unique<connection>();
  if (url.tls) {
    c->tls = std::make_unique<tls_stream>(tcp_socket(ex_), backend_->ssl_ctx_);
    if (!SSL_set_tlsext_host_name(c->tls->native_handle(), url.host.c_str())) {
      co_return beast::error_code(static_cast<int>(::ERR_get_error()), asio::error::get_ssl_category());
    }
    c->tls->set_verify_callback(ssl::host_name_verification(url.host));
  } else {
    c->plain.emplace(ex_);
  }
  conn_ = std::move(c);
  expire_at(deadline);
  auto [cec, ep] = co_await asio::async_connect(conn_->lowest(), endpoints, use_task);
  if (cec) co_return as_timeout(cec);
  boost::system::error_code ignored;
  conn_->lowest().set_option(asio::ip::tcp::no_delay(true), ignored);
  if (conn_->plain) conn_->plain->non_blocking(true, ignored);  // for the writes of send()
  if (url.tls) {
    auto [hec] = co_await conn_->tls->async_handshake(ssl::stream_base::client, use_task);
    if (hec) co_return as_timeout(hec);
  }
  co_return beast::error_code{};
}

void upstream_call::prepare_request() {
  // The backend's head prefix, this call's Accept and Content-Length lines, the body in pieces.
  std::string_view model_json = backend_->model_json_;
  if (model_.name != backend_->model_name_) {  // (a backend serves one model; kept general)
    append_json_string(other_model_json_, model_.upstream_model.empty() ? model_.name : model_.upstream_model);
    model_json = other_model_json_;
  }
  if (backend_->protocol_) {  // (the body was made in start())
    body_.count = 0;
    body_.piece[body_.count++] = joined_;
  } else if (!openai_upstream_body_pieces(*req_, model_json, true, scratch_, body_)) {  // (legacy completions)
    joined_ = make_openai_upstream_body(*req_, model_.upstream_model.empty() ? model_.name : model_.upstream_model,
                                        true);
    body_.count = 0;
    body_.piece[body_.count++] = joined_;
  }
  // "Accept: ...\r\nContent-Length: N\r\n\r\n"
  const std::string_view accept = req_->stream ? "Accept: text/event-stream\r\nContent-Length: "
                                               : "Accept: application/json\r\nContent-Length: ";
  // The request id (ours, or the client's when well-formed: at most 128 safe characters) and the client's trace
  // context go upstream, so the provider's logs can be matched with ours.
  char* p = request_tail_;
  if (!req_->request_id.empty() && req_->request_id.size() <= 128) {
    p = std::copy_n("X-Request-Id: ", 14, p);
    p = std::copy(req_->request_id.begin(), req_->request_id.end(), p);
    p = std::copy_n("\r\n", 2, p);
  }
  if (req_->traceparent.size() == 55) {
    p = std::copy_n("traceparent: ", 13, p);
    p = std::copy(req_->traceparent.begin(), req_->traceparent.end(), p);
    p = std::copy_n("\r\n", 2, p);
  }
  p = std::copy(accept.begin(), accept.end(), p);
  p = std::to_chars(p, request_tail_ + sizeof request_tail_ - 4, body_.size()).ptr;
  p = std::copy_n("\r\n\r\n", 4, p);
  request_.count = 0;
  const std::string_view tail(request_tail_, static_cast<size_t>(p - request_tail_));
  const size_t total = backend_->head_prefix_.size() + tail.size() + body_.size();
  if (total <= small_request_bytes) {
    // A small request is copied into one buffer: cheaper than a gathered write's descriptors, for a few
    // hundred bytes. A large one goes out in pieces, the client's bytes not copied.
    wire_ = take_buffer();
    wire_.reserve(total);
    wire_.append(backend_->head_prefix_).append(tail);
    for (size_t i = 0; i < body_.count; ++i) wire_.append(body_.piece[i]);
    request_.add(wire_);
    return;
  }
  request_.add(backend_->head_prefix_);
  request_.add(tail);
  for (size_t i = 0; i < body_.count; ++i) request_.add(body_.piece[i]);
}

void upstream_call::begin_answer() {
  expire_at(deadline_);
  if (acc_.raw.capacity() == std::string().capacity()) acc_.raw = take_buffer();
  acc_.raw.clear();
  if (req_->stream && pending_.capacity() == std::string().capacity()) pending_ = take_buffer();
  pending_.clear();
  parser_.emplace();
  streams_ = false;
  if (backend_->protocol_ && req_->stream) decoder_ = backend_->protocol_->stream_decoder(model_);
}

void upstream_call::connect_failed(const beast::error_code& ec) {
  conn_.reset();
  if (cancelled_) return;
  if (ec == beast::error::timeout) {
    fail(upstream_error_reason::timeout,
         error{errc::upstream_timeout, "Timed out connecting to the upstream for model '" + model_.name + "'."});
  } else {
    fail(connect_failure_reason(ec), error{errc::upstream_error, "Could not connect to the upstream for model '" +
                                                                     model_.name + "': " + ec.message() + "."});
  }
}

void upstream_call::answer_failed(const beast::error_code& ec) {
  const bool head = parser_->head_done();
  conn_.reset();
  if (cancelled_) return;
  if (!head) {
    if (ec == beast::error::timeout) {
      fail(upstream_error_reason::timeout,
           error{errc::upstream_timeout, "The upstream for model '" + model_.name + "' did not answer within " +
                                             std::to_string(backend_->opts_.timeout.count()) + " ms."});
    } else {
      fail(head_failure_reason(ec, parser_->got_some()),
           error{errc::upstream_error,
                 "The connection to the upstream for model '" + model_.name + "' failed: " + ec.message() + "."});
    }
  } else if (ec == beast::error::timeout) {  // the body of a whole answer broke off
    fail(upstream_error_reason::timeout,
         error{errc::upstream_timeout, "The upstream for model '" + model_.name + "' timed out."});
  } else {
    fail(body_failure_reason(ec), error{errc::upstream_error, "The upstream for model '" + model_.name +
                                                                  "' dropped the connection: " + ec.message() + "."});
  }
}

void upstream_call::whole_answer() {
  expire_never();
  const int status = parser_->status();
  if (status != 200) {
    error e = status_error(status, acc_.raw, model_.name);
    if (status == 429) {  // how long the upstream asks callers to wait: the client should know too
      e.retry_after = checked_header(parser_->retry_after(),
                                     "0123456789 ,:ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz", 64);
      e.retry_after_ms = checked_header(parser_->retry_after_ms(), "0123456789.", 16);
    }
    if (parser_->keep_alive()) backend_->give_back(thread_, std::move(conn_));
    fail(status_reason(status), std::move(e));
    return;
  }
  router::completion c;
  const auto* protocol = backend_->protocol_.get();
  if (protocol ? !protocol->parse_answer(acc_.raw, c) : !parse_openai_chat_response(acc_.raw, c)) {
    conn_.reset();
    fail(upstream_error_reason::protocol,
         error{errc::upstream_error, "The upstream for model '" + model_.name + "' returned a malformed response."});
    return;
  }
  if (!protocol) c.raw = std::move(acc_.raw);  // (a recycled buffer: the session hands it back once written)
  if (parser_->keep_alive()) backend_->give_back(thread_, std::move(conn_));
  conn_.reset();
  finish(std::move(c));
}

void upstream_call::start() {
  deadline_ = coarse_now() + backend_->opts_.timeout;
  prepare_request();
  conn_ = backend_->take_idle(thread_);
  reused_ = conn_ != nullptr;
  if (reused_) send();
  else asio::co_spawn(ex_, connect_then_send(), asio::detached);
}

task<void> upstream_call::connect_then_send() {
  auto self = shared_from_this();  // keeps the call alive across suspensions
  conn_.reset();
  reused_ = false;
  const beast::error_code ec = cancelled_ ? beast::error_code(asio::error::operation_aborted) : co_await connect(deadline_);
  if (ec || cancelled_) {
    connect_failed(ec);
    end();
    co_return;
  }
  send();
}

void upstream_call::send() {
  if (cancelled_) return end();
  begin_answer();
  if (conn_->plain) {
    // Written at once when the socket takes it (it is non-blocking): then no completion comes back through the
    // scheduler (nginx writes the same way). What does not fit goes out asynchronously.
    beast::error_code ec;
    const size_t total = request_.size();
    size_t n = conn_->plain->write_some(request_, ec);
    if (ec == asio::error::would_block || ec == asio::error::try_again) {
      ec = {};
      n = 0;
    }
    if (ec) return on_answer_error(ec);
    if (n == total) return read_more();
    request_.consume(n);
  }
  auto on_sent = recycled([self = shared_from_this()](const beast::error_code& ec, size_t) { self->on_sent(ec); });
  // (One buffer takes Asio's single-buffer path: no descriptor array to walk.)
  if (request_.count == 1) {
    const asio::const_buffer whole = request_.items[0];
    if (conn_->tls) asio::async_write(*conn_->tls, whole, std::move(on_sent));
    else asio::async_write(*conn_->plain, whole, std::move(on_sent));
  } else if (conn_->tls) {
    asio::async_write(*conn_->tls, request_, std::move(on_sent));
  } else {
    asio::async_write(*conn_->plain, request_, std::move(on_sent));
  }
}

void upstream_call::on_sent(const beast::error_code& ec) {
  if (ec) return on_answer_error(as_timeout(ec));
  read_more();
}

void upstream_call::feed(beast::error_code& ec) {
  response_reader& p = *parser_;
  while (conn_->buffer.size() > 0 && !p.done()) {
    const bool had_head = p.head_done();
    const auto data = conn_->buffer.data();
    const size_t used = p.put(std::string_view(static_cast<const char*>(data.data()), data.size()), ec);
    conn_->buffer.consume(used);
    if (ec) return;
    if (!had_head && p.head_done()) {
      // A whole answer (an error status, or any answer to a non-streaming request) is read into acc_.raw, up to
      // the limit; a 200 to a streaming request goes to the SSE splitter, unlimited (PITFALLS.md).
      streams_ = p.status() == 200 && req_->stream;
      if (streams_) p.set_body(&pending_);
      else p.set_body(&acc_.raw, backend_->opts_.max_response_bytes);
      continue;
    }
    if (used == 0) return;  // the rest needs more bytes
  }
}

void upstream_call::read_more() {
  beast::error_code ec;
  feed(ec);
  if (ec) return on_answer_error(ec);
  if (parser_->done() || (parser_->head_done() && streams_)) return answer_done();
  auto on_read = recycled([self = shared_from_this()](const beast::error_code& ec, size_t n) { self->on_read(ec, n); });
  if (conn_->tls) conn_->tls->async_read_some(conn_->buffer.prepare(read_size), std::move(on_read));
  else conn_->plain->async_read_some(conn_->buffer.prepare(read_size), std::move(on_read));
}

void upstream_call::on_read(const beast::error_code& ec, size_t n) {
  conn_->buffer.commit(n);
  if (ec == asio::error::eof) {
    if (!parser_->got_some()) return on_answer_error(http::error::end_of_stream);
    beast::error_code eec;
    parser_->put_eof(eec);  // an answer framed by the end of the connection completes here; others are cut
    if (eec) return on_answer_error(eec);
    return answer_done();
  }
  if (ec) return on_answer_error(as_timeout(ec));
  read_more();
}

void upstream_call::on_answer_error(beast::error_code ec) {
  // A pooled connection the upstream closed while idle fails before any answer: retry once, fresh (on this
  // same io thread).
  if (reused_ && !retried_ && !cancelled_ && ec != beast::error::timeout && !parser_->got_some()) {
    retried_ = true;
    asio::co_spawn(ex_, connect_then_send(), asio::detached);
    return;
  }
  answer_failed(ec);
  end();
}

void upstream_call::answer_done() {
  if (streams_) {
    asio::co_spawn(ex_, stream_then_end(), asio::detached);
    return;
  }
  whole_answer();
  end();
}

task<void> upstream_call::stream_then_end() {
  auto self = shared_from_this();  // keeps the call alive across suspensions
  co_await read_stream();
  end();
}

void upstream_call::end() {
  if (cancelled_) finish(error{errc::cancelled, "cancelled"});
  conn_.reset();
  parser_.reset();
  detach();  // from the io thread's deadline list
}

// One SSE event (lines up to a blank line). Returns false on a malformed or error event.
bool upstream_call::handle_sse_event(std::string_view event, bool& saw_done) {
  std::string data = take_buffer();
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
  if (data.empty()) {  // comments, keep-alives, "event:" lines
    give_buffer(std::move(data));
    return true;
  }
  if (decoder_) return handle_protocol_event(std::move(data), saw_done);
  if (data == "[DONE]") {
    give_buffer(std::move(data));
    saw_done = true;
    return true;
  }
  router::chunk c;
  bool usage_only = false;
  if (!parse_openai_chat_chunk(data, c, usage_only)) {
    stream_error_ = error{errc::upstream_error, "The upstream for model '" + model_.name + "' sent a malformed stream event."};
    stream_error_reason_ = upstream_error_reason::protocol;
    return false;
  }
  if (data.find("\"error\"") != std::string::npos && data.find("\"choices\"") == std::string::npos) {
    stream_error_ = error{errc::upstream_error, "The upstream for model '" + model_.name + "' reported an error mid-stream."};
    stream_error_reason_ = upstream_error_reason::stream_cut;
    return false;
  }
  c.usage_only = usage_only;
  acc_.text += c.text;
  if (c.finish) acc_.finish = *c.finish;
  if (c.usage_) acc_.usage_ = *c.usage_;
  c.raw = std::move(data);  // (a recycled buffer: the session hands it back once written)
  c.raw_format = router::wire_format::openai_chat;
  sink_->on_chunk(std::move(c));
  return true;
}

// One event of another protocol's stream (decoder_), in the same contract as handle_sse_event.
bool upstream_call::handle_protocol_event(std::string data, bool& saw_done) {
  router::chunk c;
  error e;
  bool malformed = false;
  const auto step = decoder_->on_event(data, c, acc_, e, malformed);
  give_buffer(std::move(data));
  switch (step) {
    case upstream_stream_decoder::step::none: return true;
    case upstream_stream_decoder::step::done: saw_done = true; return true;
    case upstream_stream_decoder::step::failed:
      stream_error_ = std::move(e);
      stream_error_reason_ = malformed ? upstream_error_reason::protocol : upstream_error_reason::stream_cut;
      return false;
    case upstream_stream_decoder::step::chunk: break;
  }
  sink_->on_chunk(std::move(c));
  return true;
}

task<void> upstream_call::read_stream() {
  const auto timeout = backend_->opts_.timeout;
  response_reader& p = *parser_;
  bool saw_done = false;
  bool need_more = false;  // the reader left a partial chunk line in the buffer: read before parsing again
  for (bool first = true;; first = false) {
    beast::error_code ec;
    if (!first) {  // (the first round relays what came in with the head)
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
      if (conn_->buffer.size() == 0 || need_more) {
        expire_after(timeout);  // a stall longer than the timeout ends the stream
        beast::error_code rec;
        size_t n = 0;
        if (conn_->tls) {
          std::tie(rec, n) = co_await conn_->tls->async_read_some(conn_->buffer.prepare(read_size), use_task);
        } else {
          std::tie(rec, n) = co_await conn_->plain->async_read_some(conn_->buffer.prepare(read_size), use_task);
        }
        expire_never();
        conn_->buffer.commit(n);
        if (rec == asio::error::eof) {
          p.put_eof(ec);  // (partial_message unless the stream was framed by the connection's end)
        } else if (rec) {
          ec = as_timeout(rec);
        }
      }
      if (!ec) {
        feed(ec);
        need_more = conn_->buffer.size() > 0 && !p.done();
      }
    }
    // Events end at a blank line ("\n\n" or "\r\n\r\n"); the complete ones go out, also before a failure.
    size_t start = 0;
    bool relayed = false;
    for (;;) {
      size_t end = pending_.find("\n\n", start);
      size_t crlf = pending_.find("\r\n\r\n", start);
      size_t sep = 2;
      if (crlf != std::string::npos && (end == std::string::npos || crlf < end)) {
        end = crlf;
        sep = 4;
      }
      if (end == std::string::npos) break;
      if (!handle_sse_event(std::string_view(pending_).substr(start, end - start), saw_done)) {
        conn_.reset();
        fail(stream_error_reason_, *stream_error_);
        co_return;
      }
      relayed = true;
      start = end + sep;
    }
    pending_.erase(0, start);
    if (ec) {
      conn_.reset();
      if (cancelled_) {
        finish(error{errc::cancelled, "cancelled"});
        co_return;
      }
      const bool stalled = ec == beast::error::timeout;
      fail(body_failure_reason(ec),
           error{stalled ? errc::upstream_timeout : errc::upstream_error,
                 "The upstream for model '" + model_.name + "' " +
                     (stalled ? "stalled mid-stream." : "dropped the connection mid-stream.")});
      co_return;
    }
    if (p.done()) break;
    if (relayed) room_ = false;  // ask the sink before reading on (wait_for_room)
  }
  if (!pending_.empty()) handle_sse_event(pending_, saw_done);
  pending_.clear();
  if (!saw_done) {
    conn_.reset();
    fail(upstream_error_reason::stream_cut,
         error{errc::upstream_error, "The upstream for model '" + model_.name + "' ended the stream early."});
    co_return;
  }
  if (p.keep_alive()) backend_->give_back(thread_, std::move(conn_));
  conn_.reset();
  finish(std::move(acc_));
}

}  // namespace

router::result<std::shared_ptr<router::backend>> make_openai_backend(io_threads& threads,
                                                                     const policies::model_config& model,
                                                                     const upstream_options& opts) {
  return make_upstream_backend(threads, model, opts, nullptr);
}

router::result<std::shared_ptr<router::backend>> make_upstream_backend(io_threads& threads,
                                                                       const policies::model_config& model,
                                                                       const upstream_options& opts,
                                                                       std::shared_ptr<const upstream_protocol> protocol) {
  if (model.upstream.host.empty()) {
    return error{errc::internal, "model '" + model.name + "' has no upstream base_url"};
  }
  std::string key;
  if (!model.api_key_env.empty()) {
    if (const char* v = std::getenv(model.api_key_env.c_str())) key = v;
  }
  upstream_options o = opts;
  if (model.timeout.count() > 0) o.timeout = model.timeout;
  auto backend = std::make_shared<openai_backend>(threads, model, std::move(key), o, std::move(protocol));
  if (!model.tls_ca_file.empty()) {
    if (auto r = backend->add_ca_file(model.tls_ca_file); !r) return r.error();
  }
  return std::shared_ptr<router::backend>(std::move(backend));
}

}  // namespace sluice::gateway
