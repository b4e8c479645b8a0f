// Bridges a backend's callbacks (any thread) to a session coroutine (its io thread): callbacks from other
// threads post into the io thread; callbacks already on it (an upstream call of the same connection) queue
// directly, unless posts from elsewhere are still on their way (so the order is kept). The coroutine awaits the
// next event. No lost wake-ups: both sides touch the queue on the io thread.
// Bounded for producers that can pause (when_ready): a client that reads slowly slows the upstream down
// instead of growing this queue. The local engine cannot pause; its output is capped by max_tokens, so its
// queue is bounded by that and nothing is ever dropped. A connection reuses its queue for its next request
// (reset) once nothing else holds it.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <variant>
#include <vector>

#include "http/executor.h"
#include "sluice/router/backend.h"
#include "sluice/router/cascade.h"

namespace sluice::gateway {

using backend_event = std::variant<router::chunk, router::result<router::completion>>;

class event_queue final : public router::generation_sink, public std::enable_shared_from_this<event_queue> {
 public:
  explicit event_queue(io_executor ex);

  // Bytes of chunks queued before a producer that asks (when_ready) is made to wait; it resumes when the
  // queue has drained to half of this.
  static constexpr size_t max_queued_bytes = 256 * 1024;

  void on_chunk(router::chunk c) override;
  void on_done(router::result<router::completion> r) override;
  void on_decision(std::shared_ptr<const router::route_decision> d) override;
  void when_ready(std::function<void()> resume) override;

  // The request's deadline: once it has passed, next() returns nullopt with interrupted() == deadline, even
  // while events keep coming (a stream that never stalls is bounded too). Call on the io thread, before next().
  void set_deadline(std::chrono::steady_clock::time_point t) { deadline_ = t; }

  // A routed request's latest decision among the events next() has returned so far (null for plain models):
  // the one in force when the next chunk is written.
  const std::shared_ptr<const router::route_decision>& decision() const { return decision_; }

  // Why next() returned nullopt: the request must stop before its backend finished.
  enum class interruption { none, client_gone, server_stopping, deadline };

  // The next event; nullopt when the request was interrupted first (see interrupted()), unless `ignore_gone`
  // (which drains every event up to on_done whatever happened).
  task<std::optional<backend_event>> next(bool ignore_gone = false);

  // The client closed its connection, or the server cut the request at the end of its drain grace: wakes
  // next(). The first reason sticks. Call on the io thread.
  void interrupt(interruption why);
  interruption interrupted() const { return interrupted_; }

  // Makes the queue ready for another request (its memory kept). Only when nothing else holds it (the owner's
  // shared_ptr is the only one), on the io thread.
  void reset();

 private:
  // Decisions travel in order with the other events and are absorbed by next().
  using queued_event = std::variant<router::chunk, router::result<router::completion>,
                                    std::shared_ptr<const router::route_decision>>;
  void push(queued_event ev);
  void deliver(queued_event&& ev);
  void release_producer();

  io_executor ex_;
  io_timer bell_;
  std::vector<queued_event> events_;  // events_[head_..] are waiting; cleared once all are taken
  size_t head_ = 0;
  std::atomic<int> posts_in_flight_{0};  // callbacks from other threads posted and not yet run
  size_t queued_bytes_ = 0;                // of the chunks in events_ (approximate: their text and raw payload)
  std::function<void()> paused_producer_;  // the resume of a producer waiting for room
  std::chrono::steady_clock::time_point deadline_ = std::chrono::steady_clock::time_point::max();
  std::shared_ptr<const router::route_decision> decision_;
  interruption interrupted_ = interruption::none;
};

}  // namespace sluice::gateway
