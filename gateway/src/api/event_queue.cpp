// See event_queue.h.
#include "api/event_queue.h"

#include <boost/asio/post.hpp>

#include "http/deadlines.h"

namespace sluice::gateway {

namespace asio = boost::asio;
using clock = std::chrono::steady_clock;

namespace {

// What a queued chunk holds on to, roughly: its payload and a fixed overhead.
size_t chunk_bytes(const router::chunk& c) {
  return sizeof(router::chunk) + c.text.size() + c.raw.size() + c.logprobs.size() * sizeof(router::token_logprob);
}

}  // namespace

event_queue::event_queue(io_executor ex) : ex_(ex), bell_(ex, clock::time_point::max()) {}

void event_queue::reset() {
  events_.clear();
  head_ = 0;
  queued_bytes_ = 0;
  paused_producer_ = nullptr;
  deadline_ = clock::time_point::max();
  decision_.reset();
  interrupted_ = interruption::none;
}

void event_queue::deliver(queued_event&& ev) {
  if (const auto* c = std::get_if<0>(&ev)) queued_bytes_ += chunk_bytes(*c);
  const bool done = ev.index() == 1;
  events_.push_back(std::move(ev));
  if (done) release_producer();  // it has finished: nothing may hold on to it
  bell_.cancel();
}

void event_queue::push(queued_event ev) {
  // On the io thread with nothing posted from elsewhere still on its way: queue now (no hop through the
  // scheduler). Otherwise post, so that events keep the order their producer gave them.
  if (ex_.running_in_this_thread() && posts_in_flight_.load(std::memory_order_acquire) == 0) {
    deliver(std::move(ev));
    return;
  }
  posts_in_flight_.fetch_add(1, std::memory_order_acq_rel);
  asio::post(ex_, recycled([self = shared_from_this(), ev = std::move(ev)]() mutable {
    self->deliver(std::move(ev));
    self->posts_in_flight_.fetch_sub(1, std::memory_order_acq_rel);
  }));
}

void event_queue::on_chunk(router::chunk c) { push(std::move(c)); }
void event_queue::on_done(router::result<router::completion> r) { push(std::move(r)); }
void event_queue::on_decision(std::shared_ptr<const router::route_decision> d) { push(std::move(d)); }

void event_queue::when_ready(std::function<void()> resume) {
  // Posted like the chunks before it, so queued_bytes_ already counts them.
  posts_in_flight_.fetch_add(1, std::memory_order_acq_rel);
  asio::post(ex_, recycled([self = shared_from_this(), resume = std::move(resume)]() mutable {
    self->posts_in_flight_.fetch_sub(1, std::memory_order_acq_rel);
    if (self->queued_bytes_ < max_queued_bytes) {
      resume();
      return;
    }
    self->release_producer();  // (one producer at a time; never two waiting)
    self->paused_producer_ = std::move(resume);
  }));
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

task<std::optional<backend_event>> event_queue::next(bool ignore_gone) {
  for (;;) {
    // (The coarse clock can lag by a few milliseconds; a deadline just passed is then caught by the bell, which
    // rings at once.)
    if (interrupted_ == interruption::none && deadline_entry::coarse_now() >= deadline_) {
      interrupted_ = interruption::deadline;
    }
    if (interrupted_ == interruption::deadline && !ignore_gone) co_return std::nullopt;
    while (head_ == events_.size()) {
      if (interrupted_ != interruption::none && !ignore_gone) co_return std::nullopt;
      // Rung by push() and interrupt(); the deadline rings it too, until some interruption is known.
      bell_.expires_at(interrupted_ == interruption::none ? deadline_ : clock::time_point::max());
      auto [ec] = co_await bell_.async_wait(use_task);
      // Not cancelled: the bell rang by itself, at the deadline (a timer fires only once its time has come).
      if (!ec && interrupted_ == interruption::none) interrupted_ = interruption::deadline;
    }
    queued_event ev = std::move(events_[head_++]);
    if (head_ == events_.size()) {
      events_.clear();  // (keeps the memory)
      head_ = 0;
    }
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
