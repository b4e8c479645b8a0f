// One client connection: read -> handle -> write -> loop, as a C++20 coroutine on its io thread (io_threads.h;
// everything the connection does runs there, so it needs no strand). Owns HTTP framing rules (request smuggling
// defences from PITFALLS.md, body limits, total deadlines) and the primitives handlers write with (whole
// responses, SSE streams). Everything a request needs is kept here and reused by the next request on the
// connection (the request, the response head, the chat request and its event queue), so a request in the
// steady state allocates nothing. What must not go in here: endpoint logic (api_handlers.cpp) or anything about
// models and costs.
#pragma once

#include <boost/asio/buffer.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <array>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "http/deadlines.h"
#include "http/executor.h"
#include "http/request_reader.h"
#include "http/response_head.h"

namespace sluice::router {
struct chat_request;
}

namespace sluice::gateway {

struct server_state;  // server_state.h
struct serving_config;  // serving.h

class event_queue;

class http_session final : public std::enable_shared_from_this<http_session>, private deadline_entry {
 public:
  http_session(tcp_socket socket, std::shared_ptr<server_state> state);
  ~http_session();

  task<void> run();

  // Shutdown, in three steps (each posted onto this session's io thread by the server; see shutdown.h):
  // close_if_idle: a connection waiting for its next request closes now; one receiving or serving a request
  //   finishes it (with Connection: close).
  // cut: the drain grace is over. A request being served is interrupted (a stream gets an in-band error
  //   event, a request not yet answered a 503); one still being received gets a 503.
  // force_close: the socket closes whatever is pending (a client that does not read its answer).
  void close_if_idle();
  void cut();
  void force_close();
  io_executor executor() { return socket_.get_executor(); }  // this connection's io thread

  // Whole response: head and body in one write. `body`'s memory is recycled afterwards (recycler.h). Returns
  // false when the connection must close.
  task<bool> send(int status, std::string body, std::string_view content_type, const header_block& headers = {});
  // Server-sent events over a chunked response. `trailer_names` announces fields that sse_end sends after the
  // last chunk (RFC 9112 trailers: values known only once the stream is over, such as its cost).
  task<bool> sse_begin(const header_block& headers, std::string_view trailer_names = {});
  task<bool> sse_send(std::string_view data);   // writes "data: <data>\n\n"
  task<bool> sse_send_event(std::string_view event, std::string_view data);  // "event: <event>\ndata: <data>\n\n"
  task<bool> sse_end(const header_block& trailers = {});

  // Until stop_watching(), tells `q` (client_gone) if the client closes its side or the socket fails while a
  // request is being served; more (pipelined) bytes are not a close. One peeking read, no extra coroutine,
  // armed only once the request has run for a deadline tick (50-100 ms): a request answered sooner costs no
  // system call for it, and a close is noticed at most that much later.
  void watch_client(std::weak_ptr<event_queue> q);
  void stop_watching();

  bool keep_alive() const { return keep_alive_; }
  void close_after_response() { keep_alive_ = false; }
  const incoming_request& request() const { return request_; }
  incoming_request& request() { return request_; }
  const std::string& request_id() const { return request_id_; }
  server_state& state() { return *state_; }
  // The policy, router and keys this request is served with: pinned when it starts, so that a policy reload
  // never changes a request half-way.
  const serving_config& config() const { return *pinned_; }
  bool has_config() const { return pinned_ != nullptr; }  // false while the gateway starts (models loading)

  // Reused by every request on this connection: the chat request (a fresh one when a backend still holds the
  // previous one) and the event queue its backend reports to (likewise), and a header block for the answer.
  std::shared_ptr<router::chat_request>& reuse_chat_request();
  std::shared_ptr<event_queue>& reuse_event_queue();
  header_block& response_headers() { return response_headers_; }

 private:
  // Writes everything: at once when the socket takes it, else the rest within the write deadline.
  template <size_t N>
  task<bool> write_all(std::array<boost::asio::const_buffer, N> pieces);
  task<bool> write_raw(std::string_view bytes);
  task<void> reply_and_close(int status, std::string_view message);
  task<void> serve();
  void on_deadline() override;
  void arm_watch();

  // Arms the client watch when its time comes (a second entry in the io thread's deadline list).
  struct watch_timer final : deadline_entry {
    watch_timer(boost::asio::io_context& ioc, http_session& s) : deadline_entry(ioc), session(s) {}
    void on_deadline() override { session.arm_watch(); }
    http_session& session;
  };
  // Feeds the buffered bytes to the parser (need_more is not an error: the caller reads more).
  void parse_buffered(boost::beast::error_code& ec);

  // Where the connection is, for shutdown: waiting for a request, receiving one, or serving one.
  enum class phase { idle, receiving, serving };

  tcp_socket socket_;
  boost::beast::flat_buffer buffer_;
  std::shared_ptr<server_state> state_;
  std::shared_ptr<const serving_config> pinned_;
  phase phase_ = phase::idle;
  std::chrono::steady_clock::time_point received_at_;  // the first byte of the request being received
  bool cut_ = false;                  // the server cut this connection (see cut())
  bool timed_out_ = false;            // a deadline passed: the pending operations were cancelled
  std::weak_ptr<event_queue> watched_;  // the request being served, while watch_client is on
  incoming_request request_;
  std::optional<request_reader> reader_;
  std::string request_id_;
  std::string head_;   // the response head being written (reused)
  header_block response_headers_;
  std::shared_ptr<router::chat_request> chat_;
  std::shared_ptr<event_queue> queue_;
  watch_timer watch_timer_;
  char peek_byte_ = 0;        // where the client watch's peeking read lands (it never consumes)
  bool peek_pending_ = false;  // that read is waiting on the socket
  bool watching_ = false;      // a request is being watched (watch_client .. stop_watching)
  bool keep_alive_ = true;
};

// A fresh random request id (24 hex digits), written into `out` (keeping its memory).
void make_request_id(std::string& out);
// A client's X-Request-Id is kept when it is 1-128 characters of [A-Za-z0-9._:-] (it goes into headers, logs
// and the upstream request); anything else is replaced by one of ours.
bool is_client_request_id(std::string_view id);
// A W3C trace context `traceparent` of version 00 (lower-case hex, ids not all zero).
bool is_traceparent(std::string_view t);

}  // namespace sluice::gateway
