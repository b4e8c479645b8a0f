// See http_session.h.
#include "http/http_session.h"

#include <boost/algorithm/string/predicate.hpp>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/http.hpp>
#include <cerrno>
#include <random>
#include <sys/socket.h>

#include "api/api_handlers.h"
#include "server_state.h"
#include "api/event_queue.h"
#include "api/json_util.h"

namespace sluice::gateway {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using asio::awaitable;

namespace {

constexpr auto tok = asio::as_tuple(asio::use_awaitable);
constexpr std::chrono::seconds write_timeout{30};
constexpr size_t header_limit = 32 * 1024;  // bytes of a request head (431 above)

const char* reason(int status) { return http::obsolete_reason(static_cast<http::status>(status)).data(); }

std::string trim_lower(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  std::string out(s);
  for (auto& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

// How many bytes of `bytes` the request head spans, through its blank line; 0 while it is incomplete. A bare LF
// (which Beast rejects) or more than header_limit bytes end the wait too, with the whole buffer: Beast answers.
size_t head_span(std::string_view bytes) {
  if (const size_t end = bytes.find("\r\n\r\n"); end != std::string_view::npos) return end + 4;
  for (size_t i = bytes.find('\n'); i != std::string_view::npos; i = bytes.find('\n', i + 1)) {
    if (i == 0 || bytes[i - 1] != '\r') return bytes.size();
  }
  return bytes.size() > header_limit ? bytes.size() : 0;
}

// obs-fold (RFC 9112 5.2): a header line that starts with a space or tab continues the previous one. Beast 1.81
// joins such lines before the gateway sees the fields (`Content-Length:\r\n 58` arrives as "58"), so only the
// raw head shows them. Rejected, as nginx does: parsers that disagree on a fold disagree on the framing.
bool has_obs_fold(std::string_view head) {
  return head.find("\r\n ") != std::string_view::npos || head.find("\r\n\t") != std::string_view::npos;
}

// Framing rules Beast 1.81 does not enforce (PITFALLS.md "Request smuggling"). Empty = acceptable.
std::string framing_problem(const http::request<http::string_body>& req) {
  size_t n_te = 0, n_cl = 0;
  std::string te;
  std::string_view cl;
  for (const auto& f : req) {
    if (f.name() == http::field::transfer_encoding) {
      ++n_te;
      te = trim_lower(f.value());
    } else if (f.name() == http::field::content_length) {
      ++n_cl;
      cl = f.value();
    }
  }
  if (n_te > 0 && n_cl > 0) return "both Content-Length and Transfer-Encoding are present";
  if (n_cl > 1) return "repeated Content-Length header";
  // Beast accepts a list of equal lengths ("58, 58"); a proxy in front may frame by another element of it.
  if (n_cl == 1 && (cl.empty() || cl.find_first_not_of("0123456789") != std::string_view::npos)) {
    return "Content-Length must be a single decimal number";
  }
  if (n_te > 1) return "repeated Transfer-Encoding header";
  if (n_te == 1 && te != "chunked") return "unsupported Transfer-Encoding (only 'chunked' is accepted)";
  if (n_te == 1 && req.version() < 11) return "Transfer-Encoding is not allowed in HTTP/1.0";
  if (req.version() == 11 && req.find(http::field::host) == req.end()) return "missing Host header";
  if (req.count(http::field::host) > 1) return "repeated Host header";
  return {};
}

}  // namespace

std::string make_request_id() {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  static const char hex[] = "0123456789abcdef";
  std::string id(24, '0');
  uint64_t a = rng(), b = rng();
  for (int i = 0; i < 16; ++i) id[i] = hex[(a >> (i * 4)) & 15];
  for (int i = 0; i < 8; ++i) id[16 + i] = hex[(b >> (i * 4)) & 15];
  return id;
}

http_session::http_session(beast::tcp_stream stream, std::shared_ptr<server_state> state)
    : stream_(std::move(stream)), state_(std::move(state)) {}

awaitable<bool> http_session::write_raw(std::string_view bytes) {
  stream_.expires_after(write_timeout);
  auto [ec, n] = co_await asio::async_write(stream_, asio::buffer(bytes.data(), bytes.size()), tok);
  stream_.expires_never();
  co_return !ec;
}

awaitable<bool> http_session::send(int status, std::string body, std::string_view content_type,
                                   const header_list& headers) {
  http::response<http::string_body> res{static_cast<http::status>(status), request_.version() >= 11 ? 11 : 10};
  res.set(http::field::server, "sluice");
  res.set(http::field::content_type, content_type);
  res.set("x-request-id", request_id_);
  for (const auto& [k, v] : headers) res.set(k, v);
  res.keep_alive(keep_alive_);
  res.body() = std::move(body);
  res.prepare_payload();
  stream_.expires_after(write_timeout);
  beast::error_code ec;
  if (request_.method() == http::verb::head) {
    // GET's head, Content-Length included, and no body (RFC 9110 9.3.2).
    http::response<http::empty_body> head_only{std::move(res.base())};
    std::tie(ec, std::ignore) = co_await http::async_write(stream_, head_only, tok);
  } else {
    std::tie(ec, std::ignore) = co_await http::async_write(stream_, res, tok);
  }
  stream_.expires_never();
  co_return !ec && keep_alive_;
}

awaitable<bool> http_session::sse_begin(const header_list& headers, std::string_view trailer_names) {
  std::string head = "HTTP/1.1 200 OK\r\nServer: sluice\r\nContent-Type: text/event-stream\r\n"
                     "Cache-Control: no-cache\r\nTransfer-Encoding: chunked\r\nx-request-id: " +
                     request_id_ + "\r\n";
  for (const auto& [k, v] : headers) head += k + ": " + v + "\r\n";
  if (!trailer_names.empty()) {
    head += "Trailer: ";
    head += trailer_names;
    head += "\r\n";
  }
  head += keep_alive_ ? "\r\n" : "Connection: close\r\n\r\n";
  co_return co_await write_raw(head);
}

awaitable<bool> http_session::sse_send(std::string_view data) {
  // One HTTP chunk per event: "<hex size>\r\ndata: <data>\n\n\r\n"
  const size_t n = data.size() + 8;
  char size_hex[20];
  const int len = std::snprintf(size_hex, sizeof size_hex, "%zx\r\n", n);
  std::string frame;
  frame.reserve(n + 32);
  frame.append(size_hex, static_cast<size_t>(len));
  frame += "data: ";
  frame += data;
  frame += "\n\n\r\n";
  co_return co_await write_raw(frame);
}

awaitable<bool> http_session::sse_end(const header_list& trailers) {
  std::string last = "0\r\n";
  for (const auto& [k, v] : trailers) last += k + ": " + v + "\r\n";
  last += "\r\n";
  co_return co_await write_raw(last) && keep_alive_;
}

void http_session::watch_client(std::weak_ptr<event_queue> q) {
  watching_ = ++watch_epoch_;
  watched_ = q;
  arm_watch(watching_, std::move(q));
}

void http_session::stop_watching() {
  if (watching_ == 0) return;
  watching_ = 0;
  watched_.reset();
  boost::system::error_code ec;
  stream_.socket().cancel(ec);  // the watch is the only operation pending on the socket now
}

void http_session::arm_watch(uint64_t epoch, std::weak_ptr<event_queue> q) {
  // The handler runs on the socket's executor (this connection's strand) and keeps the session alive.
  auto on_ready = [self = shared_from_this(), epoch, q = std::move(q)](const boost::system::error_code& ec) {
    if (self->watching_ != epoch || ec == asio::error::operation_aborted) return;  // stopped
    if (!ec) {
      // Readiness can be stale (an edge for bytes a speculative read already took, seen by another io
      // thread), so look: 0 = orderly close, EAGAIN = nothing after all, bytes = a pipelined request.
      char byte = 0;
      const ssize_t n = ::recv(self->stream_.socket().native_handle(), &byte, 1, MSG_PEEK | MSG_DONTWAIT);
      if (n > 0) return;  // a pipelined request, not a close
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
        self->arm_watch(epoch, q);
        return;
      }
    }
    if (auto queue = q.lock()) queue->interrupt(event_queue::interruption::client_gone);
  };
  stream_.socket().async_wait(asio::ip::tcp::socket::wait_read, std::move(on_ready));
}

awaitable<void> http_session::reply_and_close(int status, std::string_view message) {
  keep_alive_ = false;
  if (state_->metrics) {  // refused before any endpoint saw it: no model
    request_record r;
    r.http_status = status;
    r.duration_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - received_at_).count();
    state_->metrics->record_request(r);
  }
  std::string body = "{\"error\":{\"message\":";
  append_json_string(body, message);
  body += ",\"type\":\"invalid_request_error\",\"param\":null,\"code\":null}}";
  std::string res = "HTTP/1.1 " + std::to_string(status) + " " + reason(status) +
                    "\r\nServer: sluice\r\nContent-Type: application/json\r\nConnection: close\r\nContent-Length: " +
                    std::to_string(body.size()) + "\r\n\r\n" + body;
  co_await write_raw(res);
}

void http_session::close_if_idle() {
  if (phase_ == phase::idle) stream_.cancel();
}

void http_session::cut() {
  cut_ = true;
  if (phase_ != phase::serving) {
    stream_.cancel();  // waiting for or receiving a request: the read ends, serve() answers 503 if it began
  } else if (auto q = watched_.lock()) {
    q->interrupt(event_queue::interruption::server_stopping);
  }
}

void http_session::force_close() {
  beast::error_code ec;
  stream_.socket().close(ec);  // every pending operation completes with an error
}

awaitable<void> http_session::run() {
  const uint64_t registration = state_->sessions.add(weak_from_this());
  state_->connections_open.fetch_add(1, std::memory_order_relaxed);
  if (state_->metrics) state_->metrics->connection_opened();
  co_await serve();
  beast::error_code ec;
  stream_.socket().shutdown(asio::ip::tcp::socket::shutdown_send, ec);
  state_->connections_open.fetch_sub(1, std::memory_order_relaxed);
  if (state_->metrics) state_->metrics->connection_closed();
  state_->sessions.remove(registration);
}

awaitable<void> http_session::serve() {
  const auto& cfg = state_->policy->server;
  const std::string shutting_down = "The server is shutting down; retry the request.";
  for (int served = 0;; ++served) {
    // Wait for the first byte of the next request (idle keep-alive time), then give the whole head a
    // total deadline: a slowloris client cannot hold the connection by trickling bytes.
    if (buffer_.size() == 0) {
      if (state_->draining.load(std::memory_order_relaxed) || cut_) co_return;
      phase_ = phase::idle;
      stream_.expires_after(served == 0 ? cfg.header_timeout : cfg.idle_timeout);
      auto [ec, n] = co_await stream_.async_read_some(buffer_.prepare(8192), tok);
      if (ec) co_return;
      buffer_.commit(n);
    }
    phase_ = phase::receiving;
    received_at_ = std::chrono::steady_clock::now();
    http::request_parser<http::string_body> parser;
    parser.header_limit(header_limit);
    parser.body_limit(cfg.max_body_bytes);
    stream_.expires_after(cfg.header_timeout);
    // The whole head is buffered before Beast parses it, so that its raw bytes can be checked.
    for (;;) {
      const std::string_view bytes(static_cast<const char*>(buffer_.data().data()), buffer_.size());
      const size_t span = head_span(bytes);
      if (span > 0 && bytes.substr(0, span).ends_with("\r\n\r\n") && has_obs_fold(bytes.substr(0, span))) {
        co_await reply_and_close(400, "Bad request framing: obsolete line folding (a header line starting with "
                                      "a space or tab) is not accepted.");
        co_return;
      }
      if (span > 0) break;
      auto [ec, n] = co_await stream_.async_read_some(buffer_.prepare(8192), tok);
      if (ec) {
        if (cut_) co_await reply_and_close(503, shutting_down);
        co_return;  // timed out, closed or reset: nobody to answer
      }
      buffer_.commit(n);
    }
    auto [hec, hn] = co_await http::async_read_header(stream_, buffer_, parser, tok);
    if (hec) {
      if (cut_) co_await reply_and_close(503, shutting_down);
      else if (hec == http::error::header_limit) co_await reply_and_close(431, "Request header fields too large.");
      else if (hec == http::error::body_limit)  // Beast checks Content-Length against the limit with the head
        co_await reply_and_close(413, "Request body is larger than the limit of " +
                                          std::to_string(cfg.max_body_bytes) + " bytes.");
      else if (hec != beast::error::timeout && hec != http::error::end_of_stream && hec != asio::error::eof)
        co_await reply_and_close(400, "Malformed HTTP request.");
      co_return;
    }
    request_id_ = make_request_id();
    if (auto problem = framing_problem(parser.get()); !problem.empty()) {
      co_await reply_and_close(400, "Bad request framing: " + problem + ".");
      co_return;
    }
    if (auto cl = parser.content_length(); cl && *cl > cfg.max_body_bytes) {
      co_await reply_and_close(413, "Request body is larger than the limit of " + std::to_string(cfg.max_body_bytes) +
                                        " bytes.");
      co_return;
    }
    if (boost::iequals(parser.get()[http::field::expect], "100-continue")) {
      if (!co_await write_raw("HTTP/1.1 100 Continue\r\n\r\n")) co_return;
    }
    stream_.expires_after(cfg.body_timeout);
    auto [bec, bn] = co_await http::async_read(stream_, buffer_, parser, tok);
    stream_.expires_never();
    if (bec) {
      if (cut_) co_await reply_and_close(503, shutting_down);
      else if (bec == http::error::body_limit)
        co_await reply_and_close(413, "Request body is larger than the limit of " +
                                          std::to_string(cfg.max_body_bytes) + " bytes.");
      else if (bec != beast::error::timeout && bec != http::error::partial_message)
        co_await reply_and_close(400, "Malformed HTTP request body.");
      co_return;
    }
    request_ = parser.release();
    keep_alive_ = request_.keep_alive() && !state_->draining.load(std::memory_order_relaxed);
    phase_ = phase::serving;
    state_->requests_active.fetch_add(1, std::memory_order_relaxed);
    const bool again = co_await handle_request(*this);
    state_->requests_active.fetch_sub(1, std::memory_order_relaxed);
    if (!again || state_->draining.load(std::memory_order_relaxed)) co_return;
  }
}

uint64_t session_registry::add(std::weak_ptr<http_session> s) {
  std::lock_guard lock(mutex_);
  const uint64_t id = next_id_++;
  sessions_.emplace(id, std::move(s));
  return id;
}

void session_registry::remove(uint64_t id) {
  std::lock_guard lock(mutex_);
  sessions_.erase(id);
}

void session_registry::for_each(const std::function<void(const std::shared_ptr<http_session>&)>& f) const {
  std::vector<std::shared_ptr<http_session>> alive;
  {
    std::lock_guard lock(mutex_);
    alive.reserve(sessions_.size());
    for (const auto& [id, w] : sessions_) {
      if (auto s = w.lock()) alive.push_back(std::move(s));
    }
  }
  for (const auto& s : alive) f(s);
}

}  // namespace sluice::gateway
