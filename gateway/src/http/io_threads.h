// The io threads: one io_context per thread, each run by exactly one thread (nginx's worker model inside one
// process). A connection lives on one of them for its whole life, and so does every upstream call it starts:
// per-thread state (connection pools, deadline lists, recycled buffers) needs no lock, and a request never
// hops between threads. One instance per process (current_index() is per thread, not per instance).
// What must not go in here: request handling; anything that blocks.
#pragma once

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <atomic>
#include <memory>
#include <vector>

namespace sluice::gateway {

class io_threads {
 public:
  explicit io_threads(int count);  // count >= 1
  io_threads(const io_threads&) = delete;
  io_threads& operator=(const io_threads&) = delete;
  ~io_threads();

  size_t size() const { return contexts_.size(); }
  boost::asio::io_context& context(size_t i) { return *contexts_[i]; }
  // The context for the next new connection (round robin).
  boost::asio::io_context& next();

  // The index of the io thread calling, or -1 on any other thread (engine threads, main before run()).
  static int current_index();

  // Runs context 0 on the calling thread and the others on threads of their own; returns once stop() was
  // called and every thread has returned.
  void run();
  // Stops every context (callable from any thread, also from inside a handler).
  void stop();

 private:
  using guard = boost::asio::executor_work_guard<boost::asio::io_context::executor_type>;
  std::vector<std::unique_ptr<boost::asio::io_context>> contexts_;
  std::vector<guard> guards_;  // keep a context without connections running until stop()
  std::atomic<size_t> next_{0};
};

}  // namespace sluice::gateway
