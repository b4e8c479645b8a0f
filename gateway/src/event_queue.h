// Bridges a backend's callbacks (any thread) to a session coroutine (its strand): callbacks post into the
// strand, the coroutine awaits the next event. No lost wake-ups: both sides touch the queue on the strand.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/steady_timer.hpp>
#include <deque>
#include <memory>
#include <optional>
#include <variant>

#include "sluice/router/backend.h"

namespace sluice::gateway {

using backend_event = std::variant<router::chunk, router::result<router::completion>>;

class event_queue final : public router::generation_sink, public std::enable_shared_from_this<event_queue> {
 public:
  explicit event_queue(boost::asio::any_io_executor strand);

  void on_chunk(router::chunk c) override;
  void on_done(router::result<router::completion> r) override;

  // The next event; nullopt when the client went away first (see client_gone), unless `ignore_gone`.
  boost::asio::awaitable<std::optional<backend_event>> next(bool ignore_gone = false);

  // The client closed its connection: wakes next(). Call on the strand.
  void client_gone();

 private:
  void push(backend_event ev);

  boost::asio::any_io_executor strand_;
  boost::asio::steady_timer bell_;
  std::deque<backend_event> events_;
  bool gone_ = false;
};

}  // namespace sluice::gateway
