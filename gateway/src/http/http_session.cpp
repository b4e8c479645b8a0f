// See http_session.h.
#include "http/http_session.h"

#include <boost/asio/write.hpp>
#include <boost/beast/http/error.hpp>
#include <algorithm>
#include <array>
#include <charconv>
#include <random>

#include "api/api_handlers.h"
#include "api/event_queue.h"
#include "api/json_util.h"
#include "http/recycler.h"
#include "server_state.h"
#include "sluice/router/chat.h"

namespace sluice::gateway {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;

namespace {

constexpr std::chrono::seconds write_timeout{30};
constexpr size_t header_limit = 32 * 1024;  // bytes of a request head (431 above)
constexpr size_t read_size = 8192;          // bytes asked of the socket per read

// Where the request head in `bytes` ends and whether it folds a line, in one pass over its lines.
// `span`: the bytes through its blank line; 0 while it is incomplete. A bare LF (which Beast rejects) or more than
// header_limit bytes end the wait too, with the whole buffer: Beast answers.
// `fold`: obs-fold (RFC 9112 5.2), a header line that starts with a space or tab continuing the previous one.
// Beast 1.81 joins such lines before the gateway sees the fields (`Content-Length:\r\n 58` arrives as "58"), so
// only the raw head shows them. Refused, as nginx does: parsers that disagree on a fold disagree on the framing.
struct head_scan {
  size_t span = 0;
  bool fold = false;
};
head_scan scan_head(std::string_view b) {
  bool bare_lf = false, fold = false;
  for (size_t i = b.find('\n'); i != std::string_view::npos; i = b.find('\n', i + 1)) {
    const bool crlf = i > 0 && b[i - 1] == '\r';
    if (!crlf) bare_lf = true;
    if (crlf && i >= 3 && b[i - 2] == '\n' && b[i - 3] == '\r') return {i + 1, fold};  // "\r\n\r\n" ends here
    if (crlf && i + 1 < b.size() && (b[i + 1] == ' ' || b[i + 1] == '\t')) fold = true;
  }
  if (bare_lf || b.size() > header_limit) return {b.size(), false};
  return {};
}

// Writes what the socket takes now, without waiting (the socket is in non-blocking mode): a response usually fits
// the socket's buffer whole, and then no completion comes back through the scheduler (nginx writes the same
// way). Returns the bytes written; `pieces` is advanced past them. would_block is not an error.
template <size_t N>
size_t write_now(tcp_socket& socket, std::array<asio::const_buffer, N>& pieces, boost::system::error_code& ec) {
  size_t n = socket.write_some(pieces, ec);
  if (ec == asio::error::would_block || ec == asio::error::try_again) {
    ec = {};
    n = 0;
  }
  for (size_t left = n, i = 0; i < N && left > 0; ++i) {
    const size_t step = std::min(left, pieces[i].size());
    pieces[i] += step;
    left -= step;
  }
  return n;
}

template <size_t N>
size_t total_size(const std::array<asio::const_buffer, N>& pieces) {
  size_t n = 0;
  for (const auto& p : pieces) n += p.size();
  return n;
}

std::string body_limit_message(size_t limit) {
  return "Request body is larger than the limit of " + std::to_string(limit) + " bytes.";
}

}  // namespace

bool is_client_request_id(std::string_view id) {
  if (id.empty() || id.size() > 128) return false;
  return std::all_of(id.begin(), id.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_' ||
           c == '.' || c == ':';
  });
}

bool is_traceparent(std::string_view t) {
  // version "00": 2 hex - 32 hex trace id (not all zero) - 16 hex parent id (not all zero) - 2 hex flags
  if (t.size() != 55 || t[2] != '-' || t[35] != '-' || t[52] != '-') return false;
  auto hex = [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); };
  for (size_t i = 0; i < t.size(); ++i) {
    if (i == 2 || i == 35 || i == 52) continue;
    if (!hex(t[i])) return false;
  }
  if (t.substr(0, 2) == "ff") return false;
  return t.substr(3, 32) != std::string(32, '0') && t.substr(36, 16) != std::string(16, '0');
}

void make_request_id(std::string& out) {
  // splitmix64 (Steele, Lea, Flood 2014) over a per-thread random seed: ids need to be unique and hard to guess
  // in passing, not secret (no key is derived from them); it costs a few instructions where mt19937 cost ~100.
  thread_local uint64_t state = (uint64_t{std::random_device{}()} << 32) ^ std::random_device{}();
  auto next = [] {
    uint64_t z = (state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  };
  static const char hex[] = "0123456789abcdef";
  out.resize(24);
  const uint64_t a = next(), b = next();
  for (int i = 0; i < 16; ++i) out[i] = hex[(a >> (i * 4)) & 15];
  for (int i = 0; i < 8; ++i) out[16 + i] = hex[(b >> (i * 4)) & 15];
}

http_session::http_session(tcp_socket socket, std::shared_ptr<server_state> state)
    : deadline_entry(socket.get_executor().context()), socket_(std::move(socket)), state_(std::move(state)),
      watch_timer_(socket_.get_executor().context(), *this) {}

http_session::~http_session() = default;

void http_session::on_deadline() {
  timed_out_ = true;
  boost::system::error_code ec;
  socket_.cancel(ec);  // the pending read or write ends with operation_aborted
}

std::shared_ptr<router::chat_request>& http_session::reuse_chat_request() {
  if (!chat_ || chat_.use_count() > 1) chat_ = std::make_shared<router::chat_request>();
  return chat_;
}

std::shared_ptr<event_queue>& http_session::reuse_event_queue() {
  if (queue_ && queue_.use_count() == 1) queue_->reset();
  else queue_ = std::make_shared<event_queue>(executor());
  return queue_;
}

template <size_t N>
task<bool> http_session::write_all(std::array<asio::const_buffer, N> pieces) {
  boost::system::error_code ec;
  const size_t total = total_size(pieces);
  const size_t n = write_now(socket_, pieces, ec);
  if (!ec && n < total) {  // the rest when the socket can take it, within the write deadline
    expire_after(write_timeout);
    std::tie(ec, std::ignore) = co_await asio::async_write(socket_, pieces, use_task);
    expire_never();
  }
  co_return !ec;
}

task<bool> http_session::write_raw(std::string_view bytes) {
  co_return co_await write_all(std::array<asio::const_buffer, 1>{asio::buffer(bytes.data(), bytes.size())});
}

task<bool> http_session::send(int status, std::string body, std::string_view content_type,
                              const header_block& headers) {
  const int version = request_.version >= 11 ? 11 : 10;
  head_.clear();
  if (version == 11 && status == 200 && content_type == "application/json") {
    head_.append("HTTP/1.1 200 OK\r\nServer: sluice\r\nContent-Type: application/json\r\nx-request-id: ");  // (most answers)
  } else {
    append_status_line(head_, version, status);
    head_.append("Server: sluice\r\nContent-Type: ");
    head_.append(content_type);
    head_.append("\r\nx-request-id: ");
  }
  head_.append(request_id_);
  head_.append("\r\n");
  head_.append(headers.text());
  append_connection(head_, version, keep_alive_);
  head_.append("Content-Length: ");
  append_decimal(head_, body.size());
  head_.append("\r\n\r\n");
  // One gathered write, head and body. HEAD: GET's head, Content-Length included, and no body (RFC 9110 9.3.2).
  const size_t body_bytes = request_.method == http::verb::head ? 0 : body.size();
  std::array<asio::const_buffer, 2> pieces{asio::buffer(head_), asio::buffer(body.data(), body_bytes)};
  boost::system::error_code ec;
  if (write_now(socket_, pieces, ec) < head_.size() + body_bytes && !ec) {  // (inline: a frame less per answer)
    expire_after(write_timeout);
    std::tie(ec, std::ignore) = co_await asio::async_write(socket_, pieces, use_task);
    expire_never();
  }
  give_buffer(std::move(body));
  co_return !ec && keep_alive_;
}

task<bool> http_session::sse_begin(const header_block& headers, std::string_view trailer_names) {
  head_.assign("HTTP/1.1 200 OK\r\nServer: sluice\r\nContent-Type: text/event-stream\r\n"
               "Cache-Control: no-cache\r\nTransfer-Encoding: chunked\r\nx-request-id: ");
  head_ += request_id_;
  head_ += "\r\n";
  head_ += headers.text();
  if (!trailer_names.empty()) {
    head_ += "Trailer: ";
    head_ += trailer_names;
    head_ += "\r\n";
  }
  head_ += keep_alive_ ? "\r\n" : "Connection: close\r\n\r\n";
  co_return co_await write_raw(head_);
}

task<bool> http_session::sse_send(std::string_view data) {
  // One HTTP chunk per event, written from where the event is: "<hex size>\r\ndata: " <data> "\n\n\r\n".
  char prefix[32];
  char* p = std::to_chars(prefix, prefix + 16, data.size() + 8, 16).ptr;
  p = std::copy_n("\r\ndata: ", 8, p);
  static constexpr std::string_view suffix = "\n\n\r\n";
  co_return co_await write_all(std::array<asio::const_buffer, 3>{asio::buffer(prefix, static_cast<size_t>(p - prefix)),
                                                                 asio::buffer(data.data(), data.size()),
                                                                 asio::buffer(suffix.data(), suffix.size())});
}

task<bool> http_session::sse_send_event(std::string_view event, std::string_view data) {
  // "<hex size>\r\nevent: " <event> "\ndata: " <data> "\n\n\r\n" (Anthropic's streams name their events).
  char prefix[32];
  char* p = std::to_chars(prefix, prefix + 16, 7 + event.size() + 7 + data.size() + 2, 16).ptr;
  p = std::copy_n("\r\nevent: ", 9, p);
  static constexpr std::string_view middle = "\ndata: ";
  static constexpr std::string_view suffix = "\n\n\r\n";
  co_return co_await write_all(std::array<asio::const_buffer, 5>{
      asio::buffer(prefix, static_cast<size_t>(p - prefix)), asio::buffer(event.data(), event.size()),
      asio::buffer(middle.data(), middle.size()), asio::buffer(data.data(), data.size()),
      asio::buffer(suffix.data(), suffix.size())});
}

task<bool> http_session::sse_end(const header_block& trailers) {
  head_.assign("0\r\n");
  head_ += trailers.text();
  head_ += "\r\n";
  co_return co_await write_raw(head_) && keep_alive_;
}

void http_session::watch_client(std::weak_ptr<event_queue> q) {
  watching_ = true;
  watched_ = std::move(q);
  if (!peek_pending_) watch_timer_.expire_after(deadline_entry::tick);  // arm_watch, unless answered by then
}

void http_session::arm_watch() {
  if (!watching_ || peek_pending_) return;
  peek_pending_ = true;
  // A peeking read: it completes when bytes arrive (left in the socket for the next request) or the client
  // closes. It runs on the socket's io thread and keeps the session alive; it is not cancelled when the watch
  // stops (the next request's read queues behind it), only when the connection ends.
  auto on_peek = recycled([self = shared_from_this()](const boost::system::error_code& ec, size_t n) {
    self->peek_pending_ = false;
    if (!self->watching_ || ec == asio::error::operation_aborted) return;  // nothing watched, or cancelled
    if (!ec && n > 0) return;  // a pipelined request, not a close
    if (auto queue = self->watched_.lock()) queue->interrupt(event_queue::interruption::client_gone);
  });
  socket_.async_receive(asio::buffer(&peek_byte_, 1), asio::socket_base::message_peek, std::move(on_peek));
}

void http_session::stop_watching() {
  watching_ = false;
  watched_.reset();
  watch_timer_.expire_never();
}

task<void> http_session::reply_and_close(int status, std::string_view message) {
  keep_alive_ = false;
  if (state_->metrics) {  // refused before any endpoint saw it: no model
    request_record r;
    r.http_status = status;
    r.duration_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - received_at_).count();
    state_->metrics->record_request(r);
  }
  std::string body;
  if (std::string_view(request_.target).starts_with("/v1/messages")) {  // Anthropic's error shape there (api.md)
    body = status == 413 ? "{\"type\":\"error\",\"error\":{\"type\":\"request_too_large\",\"message\":"
                         : "{\"type\":\"error\",\"error\":{\"type\":\"invalid_request_error\",\"message\":";
    append_json_string(body, message);
    body += "}}";
  } else {
    body = "{\"error\":{\"message\":";
    append_json_string(body, message);
    body += ",\"type\":\"invalid_request_error\",\"param\":null,\"code\":null}}";
  }
  std::string res;
  append_status_line(res, 11, status);
  res += "Server: sluice\r\nContent-Type: application/json\r\nConnection: close\r\nContent-Length: ";
  append_decimal(res, body.size());
  res += "\r\n\r\n";
  res += body;
  co_await write_raw(res);
}

void http_session::close_if_idle() {
  boost::system::error_code ec;
  if (phase_ == phase::idle) socket_.cancel(ec);
}

void http_session::cut() {
  cut_ = true;
  if (phase_ != phase::serving) {
    boost::system::error_code ec;
    socket_.cancel(ec);  // waiting for or receiving a request: the read ends, serve() answers 503 if it began
  } else if (auto q = watched_.lock()) {
    q->interrupt(event_queue::interruption::server_stopping);
  }
}

void http_session::force_close() {
  boost::system::error_code ec;
  socket_.close(ec);  // every pending operation completes with an error
}

task<void> http_session::run() {
  boost::system::error_code nbec;
  socket_.non_blocking(true, nbec);  // writes go out at once when they can (write_now)
  const uint64_t registration = state_->sessions.add(weak_from_this());
  state_->connections_open.fetch_add(1, std::memory_order_relaxed);
  if (state_->metrics) state_->metrics->connection_opened();
  co_await serve();
  detach();  // from the io thread's deadline list
  watch_timer_.detach();
  boost::system::error_code ec;
  socket_.shutdown(tcp_socket::shutdown_send, ec);
  socket_.cancel(ec);  // a client watch still waiting lets go of the session
  state_->connections_open.fetch_sub(1, std::memory_order_relaxed);
  if (state_->metrics) state_->metrics->connection_closed();
  state_->sessions.remove(registration);
}

void http_session::parse_buffered(beast::error_code& ec) {
  ec = {};
  if (buffer_.size() == 0) return;
  const size_t used = reader_->put(buffer_.data(), ec);
  buffer_.consume(used);
  if (ec == http::error::need_more) ec = {};
}

task<void> http_session::serve() {
  const auto& cfg = state_->policy->server;
  for (int served = 0;; ++served) {
    // Wait for the first byte of the next request (idle keep-alive time), then give the whole head a
    // total deadline: a slowloris client cannot hold the connection by trickling bytes.
    if (buffer_.size() == 0) {
      if (state_->draining.load(std::memory_order_relaxed) || cut_) co_return;
      phase_ = phase::idle;
      expire_after(served == 0 ? cfg.header_timeout : cfg.idle_timeout);
      auto [ec, n] = co_await socket_.async_read_some(buffer_.prepare(read_size), use_task);
      if (ec) co_return;
      buffer_.commit(n);
    }
    phase_ = phase::receiving;
    received_at_ = coarse_now();  // (for the head's deadline and the duration of a refusal: milliseconds do)
    expire_at(received_at_ + cfg.header_timeout);
    // The whole head is buffered before Beast parses it, so that its raw bytes can be checked.
    for (;;) {
      const std::string_view bytes(static_cast<const char*>(buffer_.data().data()), buffer_.size());
      const head_scan scan = scan_head(bytes);
      if (scan.fold) {
        co_await reply_and_close(400, "Bad request framing: obsolete line folding (a header line starting with "
                                      "a space or tab) is not accepted.");
        co_return;
      }
      if (scan.span > 0) break;
      auto [ec, n] = co_await socket_.async_read_some(buffer_.prepare(read_size), use_task);
      if (ec) {
        if (cut_) co_await reply_and_close(503, "The server is shutting down; retry the request.");
        co_return;  // timed out, closed or reset: nobody to answer
      }
      buffer_.commit(n);
    }

    // The head, parsed from the buffer (reading more only for heads Beast rejects or needs more of).
    reader_.emplace(request_);
    reader_->header_limit(header_limit);
    reader_->body_limit(cfg.max_body_bytes);
    reader_->eager(false);
    beast::error_code hec;
    for (;;) {
      parse_buffered(hec);
      if (hec || reader_->is_header_done()) break;
      auto [ec, n] = co_await socket_.async_read_some(buffer_.prepare(read_size), use_task);
      if (ec == asio::error::eof) {
        hec = reader_->got_some() ? http::error::partial_message : http::error::end_of_stream;
        break;
      }
      if (ec) {
        hec = ec;
        break;
      }
      buffer_.commit(n);
    }
    if (hec) {
      if (cut_) co_await reply_and_close(503, "The server is shutting down; retry the request.");
      else if (timed_out_) co_return;
      else if (hec == http::error::header_limit) co_await reply_and_close(431, "Request header fields too large.");
      else if (hec == http::error::body_limit)  // Beast checks Content-Length against the limit with the head
        co_await reply_and_close(413, body_limit_message(cfg.max_body_bytes));
      else if (hec != http::error::end_of_stream && hec != http::error::partial_message && hec != asio::error::eof &&
               hec != asio::error::operation_aborted)
        co_await reply_and_close(400, "Malformed HTTP request.");
      co_return;
    }
    if (is_client_request_id(request_.client_request_id)) request_id_ = request_.client_request_id;
    else make_request_id(request_id_);
    if (!is_traceparent(request_.traceparent)) request_.traceparent.clear();
    if (const std::string_view problem = framing_problem(reader_->framing(), request_.version); !problem.empty()) {
      co_await reply_and_close(400, "Bad request framing: " + std::string(problem) + ".");
      co_return;
    }
    if (auto cl = reader_->content_length(); cl && *cl > cfg.max_body_bytes) {
      co_await reply_and_close(413, body_limit_message(cfg.max_body_bytes));
      co_return;
    }
    if (request_.expect_continue && !reader_->is_done()) {
      if (!co_await write_raw("HTTP/1.1 100 Continue\r\n\r\n")) co_return;
    }

    // The body, with its own total deadline.
    expire_after(cfg.body_timeout);
    reader_->eager(true);
    beast::error_code bec;
    while (!reader_->is_done()) {
      parse_buffered(bec);
      if (bec || reader_->is_done()) break;
      auto [ec, n] = co_await socket_.async_read_some(buffer_.prepare(read_size), use_task);
      if (ec == asio::error::eof) {
        bec = http::error::partial_message;
        break;
      }
      if (ec) {
        bec = ec;
        break;
      }
      buffer_.commit(n);
    }
    expire_never();
    if (bec) {
      if (cut_) co_await reply_and_close(503, "The server is shutting down; retry the request.");
      else if (timed_out_) co_return;
      else if (bec == http::error::body_limit) co_await reply_and_close(413, body_limit_message(cfg.max_body_bytes));
      else if (bec != http::error::partial_message && bec != asio::error::operation_aborted)
        co_await reply_and_close(400, "Malformed HTTP request body.");
      co_return;
    }
    keep_alive_ = request_.keep_alive && !state_->draining.load(std::memory_order_relaxed);
    phase_ = phase::serving;
    state_->requests_active.fetch_add(1, std::memory_order_relaxed);
    pinned_ = state_->config();
    const bool again = co_await handle_request(*this);
    pinned_.reset();  // an idle keep-alive connection does not hold a config a reload replaced (nor its engines)
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
