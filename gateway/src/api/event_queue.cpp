// See event_queue.h.
#include "api/event_queue.h"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>

namespace sluice::gateway {

namespace asio = boost::asio;
using clock = std::chrono::steady_clock;

namespace {

// What a queued chunk holds on to, roughly: its payload and a fixed overhead.
size_t chunk_bytes(const router::chunk& c) {
  return sizeof(router::chunk) + c.text.size() + c.raw.size() + c.logprobs.size() * sizeof(router::token_logprob);
}

}  // namespace

event_queue::event_queue(asio::any_io_executor strand)
    : strand_(strand), bell_(strand, asio::steady_timer::time_point::max()) {}

void event_queue::push(queued_event ev) {
  asio::post(strand_, [self = shared_from_this(), ev = std::move(ev)]() mutable {
    if (const auto* c = std::get_if<0>(&ev)) self->queued_bytes_ += chunk_bytes(*c);
    const bool done = ev.index() == 1;
    self->events_.push_back(std::move(ev));
    if (done) self->release_producer();  // it has finished: nothing may hold on to it
    self->bell_.cancel();
  });
}

void event_queue::on_chunk(router::chunk c) { push(std::move(c)); }
void event_queue::on_done(router::result<router::completion> r) { push(std::move(r)); }
void event_queue::on_decision(std::shared_ptr<const router::route_decision> d) { push(std::move(d)); }

void event_queue::when_ready(std::function<void()> resume) {
  // Posted like the chunks before it, so queued_bytes_ already counts them.
  asio::post(strand_, [self = shared_from_this(), resume = std::move(resume)]() mutable {
    if (self->queued_bytes_ < max_queued_bytes) {
      resume();
      return;
    }
    self->release_producer();  // (one producer at a time; never two waiting)
    self->paused_producer_ = std::move(resume);
  });
}

void event_queue::release_producer() {
  if (!paused_producer_) return;
  auto resume = std::move(paused_producer_);
  paused_producer_ = nullptr;
  resume();
}

void event_queue::interrupt(interruption why) {
  if (interrupted_ == interruption::none) interrupted_ = why;
  bell_.cancel();
}

asio::awaitable<std::optional<backend_event>> event_queue::next(bool ignore_gone) {
  for (;;) {
    if (interrupted_ == interruption::none && clock::now() >= deadline_) interrupted_ = interruption::deadline;
    if (interrupted_ == interruption::deadline && !ignore_gone) co_return std::nullopt;
    while (events_.empty()) {
      if (interrupted_ != interruption::none && !ignore_gone) co_return std::nullopt;
      // Rung by push() and interrupt(); the deadline rings it too, until some interruption is known.
      bell_.expires_at(interrupted_ == interruption::none ? deadline_ : clock::time_point::max());
      auto [ec] = co_await bell_.async_wait(asio::as_tuple(asio::use_awaitable));
      if (!ec && interrupted_ == interruption::none && clock::now() >= deadline_) {
        interrupted_ = interruption::deadline;
      }
    }
    queued_event ev = std::move(events_.front());
    events_.pop_front();
    if (auto* d = std::get_if<2>(&ev)) {
      decision_ = std::move(*d);
      continue;
    }
    if (auto* c = std::get_if<0>(&ev)) {
      queued_bytes_ -= chunk_bytes(*c);
      if (queued_bytes_ <= max_queued_bytes / 2) release_producer();
      co_return backend_event(std::move(*c));
    }
    co_return backend_event(std::move(std::get<1>(ev)));
  }
}

}  // namespace sluice::gateway
