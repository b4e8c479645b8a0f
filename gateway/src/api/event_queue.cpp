// See event_queue.h.
#include "api/event_queue.h"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>

namespace sluice::gateway {

namespace asio = boost::asio;

event_queue::event_queue(asio::any_io_executor strand)
    : strand_(strand), bell_(strand, asio::steady_timer::time_point::max()) {}

void event_queue::push(backend_event ev) {
  asio::post(strand_, [self = shared_from_this(), ev = std::move(ev)]() mutable {
    self->events_.push_back(std::move(ev));
    self->bell_.cancel();
  });
}

void event_queue::on_chunk(router::chunk c) { push(std::move(c)); }
void event_queue::on_done(router::result<router::completion> r) { push(std::move(r)); }

void event_queue::interrupt(interruption why) {
  if (interrupted_ == interruption::none) interrupted_ = why;
  bell_.cancel();
}

asio::awaitable<std::optional<backend_event>> event_queue::next(bool ignore_gone) {
  while (events_.empty()) {
    if (interrupted_ != interruption::none && !ignore_gone) co_return std::nullopt;
    bell_.expires_at(asio::steady_timer::time_point::max());
    co_await bell_.async_wait(asio::as_tuple(asio::use_awaitable));
  }
  backend_event ev = std::move(events_.front());
  events_.pop_front();
  co_return ev;
}

}  // namespace sluice::gateway
