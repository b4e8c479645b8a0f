// Deadlines for the I/O of one io thread (a client connection's head, body and writes; an upstream call's
// answer), checked by one periodic timer per io_context instead of a timer per operation. A per-operation timer
// (beast::tcp_stream's) costs a timer-queue insert, a cancel and one more completion handler on every read and
// write; setting a deadline here is a store. The timeouts it enforces are hundreds of milliseconds or more, so a
// tick of `tick` is precise enough: a deadline fires between 0 and `tick` late.
// Contract: an entry is used on the thread that runs its io_context (io_threads.h) and detached there before it
// is destroyed elsewhere. What must not go in here: what a timed-out owner does (it decides in on_deadline).
#pragma once

#include <boost/asio/io_context.hpp>
#include <chrono>

namespace sluice::gateway {

class deadline_list;

class deadline_entry {
 public:
  using clock = std::chrono::steady_clock;
  static constexpr std::chrono::milliseconds tick{50};

  explicit deadline_entry(boost::asio::io_context& ioc) : ioc_(&ioc) {}
  deadline_entry(const deadline_entry&) = delete;
  deadline_entry& operator=(const deadline_entry&) = delete;

  // The monotonic clock read cheaply (CLOCK_MONOTONIC_COARSE: the same clock as steady_clock, to a few
  // milliseconds): deadlines are set several times per request and checked at `tick` granularity.
  static clock::time_point coarse_now();

  void expire_at(clock::time_point t);
  void expire_after(clock::duration d) { expire_at(coarse_now() + d); }
  void expire_never() { at_ = clock::time_point::max(); }
  clock::time_point expiry() const { return at_; }

  // Leaves the list (on the io thread); a later expire_at joins it again.
  void detach();

 protected:
  ~deadline_entry();
  // Called on the io thread once the deadline has passed; the deadline is cleared first.
  virtual void on_deadline() = 0;

 private:
  friend class deadline_list;
  boost::asio::io_context* ioc_;
  deadline_list* list_ = nullptr;
  deadline_entry* prev_ = nullptr;
  deadline_entry* next_ = nullptr;
  clock::time_point at_ = clock::time_point::max();
};

}  // namespace sluice::gateway
