// See deadlines.h. The list is an io_context service: one per context, reached through use_service.
#include "http/deadlines.h"

#include <boost/asio/execution_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <ctime>
#include <type_traits>

#include "http/executor.h"

namespace sluice::gateway {

namespace asio = boost::asio;

// The entries of one io_context that have joined (an intrusive list), and the timer that checks them while
// there are any.
class deadline_list final : public asio::execution_context::service {
 public:
  using key_type = deadline_list;
  static asio::execution_context::id id;

  explicit deadline_list(asio::io_context& ioc) : service(ioc), timer_(ioc) {}

  void link(deadline_entry& e) {
    e.list_ = this;
    e.prev_ = nullptr;
    e.next_ = head_;
    if (head_) head_->prev_ = &e;
    head_ = &e;
    if (!ticking_ && !shut_down_) arm();
  }

  void unlink(deadline_entry& e) {
    if (e.prev_) e.prev_->next_ = e.next_;
    else head_ = e.next_;
    if (e.next_) e.next_->prev_ = e.prev_;
    if (cursor_ == &e) cursor_ = e.next_;  // the sweep is walking past it
    e.prev_ = e.next_ = nullptr;
    e.list_ = nullptr;
  }

 private:
  void arm() {
    ticking_ = true;
    timer_.expires_after(deadline_entry::tick);
    timer_.async_wait(recycled([this](const boost::system::error_code& ec) {
      ticking_ = false;
      if (ec || shut_down_) return;
      sweep();
      if (head_) arm();  // nothing joined: stop ticking until something does
    }));
  }

  void sweep() {
    const auto now = deadline_entry::coarse_now();
    for (deadline_entry* e = head_; e;) {
      cursor_ = e->next_;  // on_deadline may detach entries, this one or others
      if (e->at_ <= now) {
        e->at_ = deadline_entry::clock::time_point::max();
        e->on_deadline();
      }
      e = cursor_;
    }
    cursor_ = nullptr;
  }

  void shutdown() override {
    shut_down_ = true;
    while (head_) unlink(*head_);  // entries destroyed after this do not touch the list
    timer_.cancel();
  }

  asio::steady_timer timer_;
  deadline_entry* head_ = nullptr;
  deadline_entry* cursor_ = nullptr;
  bool ticking_ = false;
  bool shut_down_ = false;
};

asio::execution_context::id deadline_list::id;

deadline_entry::clock::time_point deadline_entry::coarse_now() {
  static_assert(std::is_same_v<clock, std::chrono::steady_clock>);
  timespec ts{};
  ::clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);  // (libstdc++'s steady_clock is CLOCK_MONOTONIC)
  return clock::time_point(std::chrono::duration_cast<clock::duration>(std::chrono::seconds(ts.tv_sec) +
                                                                       std::chrono::nanoseconds(ts.tv_nsec)));
}

void deadline_entry::expire_at(clock::time_point t) {
  at_ = t;
  if (!list_) {
    auto& list = asio::use_service<deadline_list>(*ioc_);
    list.link(*this);
  }
}

void deadline_entry::detach() {
  if (list_) list_->unlink(*this);
}

deadline_entry::~deadline_entry() { detach(); }

}  // namespace sluice::gateway
