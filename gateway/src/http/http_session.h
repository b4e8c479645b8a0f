// One client connection: read -> handle -> write -> loop, as a C++20 coroutine on its own strand.
// Owns HTTP framing rules (request smuggling defences from PITFALLS.md, body limits, total deadlines) and
// the primitives handlers write with (whole responses, SSE streams). What must not go in here: endpoint
// logic (api_handlers.cpp) or anything about models and costs.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/strand.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/message.hpp>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace sluice::gateway {

struct server_state;  // server_state.h

using header_list = std::vector<std::pair<std::string, std::string>>;

class event_queue;

class http_session : public std::enable_shared_from_this<http_session> {
 public:
  http_session(boost::beast::tcp_stream stream, std::shared_ptr<server_state> state);

  boost::asio::awaitable<void> run();

  // Shutdown, in three steps (each posted onto this session's strand by the server; see shutdown.h):
  // close_if_idle: a connection waiting for its next request closes now; one receiving or serving a request
  //   finishes it (with Connection: close).
  // cut: the drain grace is over. A request being served is interrupted (a stream gets an in-band error
  //   event, a request not yet answered a 503); one still being received gets a 503.
  // force_close: the socket closes whatever is pending (a client that does not read its answer).
  void close_if_idle();
  void cut();
  void force_close();
  boost::asio::any_io_executor executor() { return stream_.get_executor(); }  // this connection's strand

  // Whole response. Returns false when the connection must close.
  boost::asio::awaitable<bool> send(int status, std::string body, std::string_view content_type,
                                    const header_list& headers = {});
  // Server-sent events over a chunked response. `trailer_names` announces fields that sse_end sends after the
  // last chunk (RFC 9112 trailers: values known only once the stream is over, such as its cost).
  boost::asio::awaitable<bool> sse_begin(const header_list& headers, std::string_view trailer_names = {});
  boost::asio::awaitable<bool> sse_send(std::string_view data);   // writes "data: <data>\n\n"
  boost::asio::awaitable<bool> sse_end(const header_list& trailers = {});

  // Until stop_watching(), tells `q` (client_gone) if the client closes its side or the socket fails while a
  // request is being served; more (pipelined) bytes are not a close. One socket wait, no extra coroutine.
  void watch_client(std::weak_ptr<event_queue> q);
  void stop_watching();

  bool keep_alive() const { return keep_alive_; }
  void close_after_response() { keep_alive_ = false; }
  const boost::beast::http::request<boost::beast::http::string_body>& request() const { return request_; }
  boost::beast::http::request<boost::beast::http::string_body>& request() { return request_; }
  const std::string& request_id() const { return request_id_; }
  server_state& state() { return *state_; }

 private:
  boost::asio::awaitable<bool> write_raw(std::string_view bytes);
  boost::asio::awaitable<void> reply_and_close(int status, std::string_view message);
  void arm_watch(uint64_t epoch, std::weak_ptr<event_queue> q);
  boost::asio::awaitable<void> serve();

  // Where the connection is, for shutdown: waiting for a request, receiving one, or serving one.
  enum class phase { idle, receiving, serving };

  boost::beast::tcp_stream stream_;
  boost::beast::flat_buffer buffer_;
  std::shared_ptr<server_state> state_;
  phase phase_ = phase::idle;
  std::chrono::steady_clock::time_point received_at_;  // the first byte of the request being received
  bool cut_ = false;                  // the server cut this connection (see cut())
  std::weak_ptr<event_queue> watched_;  // the request being served, while watch_client is on
  boost::beast::http::request<boost::beast::http::string_body> request_;
  std::string request_id_;
  bool keep_alive_ = true;
  uint64_t watch_epoch_ = 0;  // bumped by each watch_client()
  uint64_t watching_ = 0;     // the epoch being watched; 0 = none
};

// A fresh random request id (hex).
std::string make_request_id();

}  // namespace sluice::gateway
