// See io_threads.h.
#include "http/io_threads.h"

#include <thread>

namespace sluice::gateway {

namespace {
thread_local int current_thread_index = -1;
}  // namespace

io_threads::io_threads(int count) {
  const int n = count > 0 ? count : 1;
  for (int i = 0; i < n; ++i) {
    // Concurrency hint 1: each context is run by one thread (the scheduler skips waking other threads).
    contexts_.push_back(std::make_unique<boost::asio::io_context>(1));
    guards_.emplace_back(contexts_.back()->get_executor());
  }
}

io_threads::~io_threads() = default;

boost::asio::io_context& io_threads::next() {
  return *contexts_[next_.fetch_add(1, std::memory_order_relaxed) % contexts_.size()];
}

int io_threads::current_index() { return current_thread_index; }

void io_threads::run() {
  std::vector<std::thread> threads;
  for (size_t i = 1; i < contexts_.size(); ++i) {
    threads.emplace_back([this, i] {
      current_thread_index = static_cast<int>(i);
      contexts_[i]->run();
      current_thread_index = -1;
    });
  }
  current_thread_index = 0;
  contexts_[0]->run();
  current_thread_index = -1;
  for (auto& t : threads) t.join();
}

void io_threads::stop() {
  for (auto& c : contexts_) c->stop();
}

}  // namespace sluice::gateway
