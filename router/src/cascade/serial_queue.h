// Runs posted functions one at a time, in order, on whichever thread posted when the queue was idle: a strand
// without an executor. The cascade's state is touched only inside posted functions, so backend callbacks (an
// engine thread, an upstream strand) and timers never race, and a callback that re-enters (a backend that fails
// synchronously inside start()) is queued instead of deadlocking. What must not go in here: blocking work.
#pragma once

#include <deque>
#include <functional>
#include <mutex>

namespace sluice::router::detail {

class serial_queue {
 public:
  void post(std::function<void()> fn) {
    {
      std::lock_guard lock(mutex_);
      queue_.push_back(std::move(fn));
      if (running_) return;
      running_ = true;
    }
    for (;;) {
      std::function<void()> next;
      {
        std::lock_guard lock(mutex_);
        if (queue_.empty()) {
          running_ = false;
          return;
        }
        next = std::move(queue_.front());
        queue_.pop_front();
      }
      next();
    }
  }

 private:
  std::mutex mutex_;
  std::deque<std::function<void()>> queue_;
  bool running_ = false;
};

}  // namespace sluice::router::detail
