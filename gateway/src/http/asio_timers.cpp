// See asio_timers.h.
#include "http/asio_timers.h"

#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>

namespace sluice::gateway {

namespace asio = boost::asio;

namespace {

class asio_timer final : public router::timer_handle, public std::enable_shared_from_this<asio_timer> {
 public:
  explicit asio_timer(asio::io_context& ioc) : timer_(asio::make_strand(ioc)) {}

  void arm(std::chrono::milliseconds delay, std::function<void()> fn) {
    timer_.expires_after(delay);
    // The handler holds the timer alive until it has run or been cancelled.
    timer_.async_wait([self = shared_from_this(), fn = std::move(fn)](const boost::system::error_code& ec) {
      if (!ec) fn();
    });
  }

  void cancel() override {
    asio::post(timer_.get_executor(), [self = shared_from_this()] { self->timer_.cancel(); });
  }

 private:
  asio::steady_timer timer_;
};

class asio_timer_service final : public router::timer_service {
 public:
  explicit asio_timer_service(asio::io_context& ioc) : ioc_(ioc) {}
  std::shared_ptr<router::timer_handle> after(std::chrono::milliseconds delay, std::function<void()> fn) override {
    auto t = std::make_shared<asio_timer>(ioc_);
    t->arm(delay, std::move(fn));
    return t;
  }

 private:
  asio::io_context& ioc_;
};

}  // namespace

std::shared_ptr<router::timer_service> make_asio_timers(asio::io_context& ioc) {
  return std::make_shared<asio_timer_service>(ioc);
}

}  // namespace sluice::gateway
