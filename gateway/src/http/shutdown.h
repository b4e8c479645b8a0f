// Graceful shutdown of a running server, driven by SIGTERM/SIGINT:
//   1. first signal: the listener closes, idle keep-alive connections close, requests in flight (and requests
//      still being received) go on; their connections close after the response.
//   2. when the drain grace (server.shutdown_grace_ms or --shutdown-grace) ends, or at a second signal: every
//      request still running is cut with a proper answer (an in-band error event on a stream, a 503 when
//      nothing was sent yet) and its backend is cancelled.
//   3. a connection whose client does not take that answer within a short write grace is closed.
// The io_context is stopped only once no connection is left. What must not go in here: request handling.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <memory>

#include "http/executor.h"
#include "server_state.h"

namespace sluice::gateway {

class io_threads;

// Runs on io thread 0 (its signal set and timer); stops every io thread at the end.
class graceful_shutdown : public std::enable_shared_from_this<graceful_shutdown> {
 public:
  graceful_shutdown(io_threads& threads, std::shared_ptr<server_state> state, std::shared_ptr<tcp_acceptor> acceptor);

  // Starts waiting for SIGTERM/SIGINT.
  void arm();

 private:
  enum class stage { serving, draining, cut, forced, done };

  void on_signal(int sig);
  void begin_drain();
  void cut_all();
  void poll();

  io_threads& threads_;
  std::shared_ptr<server_state> state_;
  std::shared_ptr<tcp_acceptor> acceptor_;
  boost::asio::signal_set signals_;
  boost::asio::steady_timer timer_;
  stage stage_ = stage::serving;
  std::chrono::steady_clock::time_point next_stage_at_;
};

}  // namespace sluice::gateway
