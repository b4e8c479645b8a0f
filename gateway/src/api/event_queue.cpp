// See event_queue.h.
#include "api/event_queue.h"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>

namespace sluice::gateway {

namespace asio = boost::asio;

event_queue::event_queue(asio::any_io_executor strand)
    : strand_(strand), bell_(strand, asio::steady_timer::time_point::max()) {}

void event_queue::push(queued_event ev) {
  asio::post(strand_, [self = shared_from_this(), ev = std::move(ev)]() mutable {
    self->events_.push_back(std::move(ev));
    self->bell_.cancel();
  });
}

void event_queue::on_chunk(router::chunk c) { push(std::move(c)); }
void event_queue::on_done(router::result<router::completion> r) { push(std::move(r)); }
void event_queue::on_decision(std::shared_ptr<const router::route_decision> d) { push(std::move(d)); }

void event_queue::interrupt(interruption why) {
  if (interrupted_ == interruption::none) interrupted_ = why;
  bell_.cancel();
}

asio::awaitable<std::optional<backend_event>> event_queue::next(bool ignore_gone) {
  for (;;) {
    while (events_.empty()) {
      if (interrupted_ != interruption::none && !ignore_gone) co_return std::nullopt;
      bell_.expires_at(asio::steady_timer::time_point::max());
      co_await bell_.async_wait(asio::as_tuple(asio::use_awaitable));
    }
    queued_event ev = std::move(events_.front());
    events_.pop_front();
    if (auto* d = std::get_if<2>(&ev)) {
      decision_ = std::move(*d);
      continue;
    }
    if (auto* c = std::get_if<0>(&ev)) co_return backend_event(std::move(*c));
    co_return backend_event(std::move(std::get<1>(ev)));
  }
}

}  // namespace sluice::gateway
