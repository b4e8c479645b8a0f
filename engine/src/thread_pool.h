// The engine's own compute threads. run() executes one function on all threads (the caller is thread 0)
// and returns when every thread is done; inside it, barrier() synchronises them (spin, then sleep), so a
// whole forward pass is one run() with a few barriers per layer instead of one task per operation.
// What must not go in here: model math, scheduling of sequences.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <thread>
#include <vector>

namespace sluice::engine {

class thread_pool {
 public:
  explicit thread_pool(int n_threads);  // n_threads >= 1; n_threads - 1 workers are started
  ~thread_pool();
  thread_pool(const thread_pool&) = delete;
  thread_pool& operator=(const thread_pool&) = delete;

  int size() const { return n_; }
  // Runs fn(thread_index, n_threads) on every thread; not reentrant; call from one thread at a time.
  void run(const std::function<void(int, int)>& fn);
  // All threads of the current run() must call it the same number of times.
  void barrier();

 private:
  void worker(int index);

  int n_;
  std::vector<std::thread> workers_;
  const std::function<void(int, int)>* job_ = nullptr;
  alignas(64) std::atomic<uint32_t> generation_{0};  // bumped to start a job
  alignas(64) std::atomic<int> done_{0};             // workers finished with the current job
  alignas(64) std::atomic<int> barrier_count_{0};
  alignas(64) std::atomic<uint32_t> barrier_phase_{0};
  alignas(64) std::atomic<int> sleepers_{0};  // threads blocked in a futex wait (notify only when > 0)
  std::atomic<bool> stop_{false};
};

// [begin, end) of n items for thread `index` of `count`, boundaries rounded to multiples of `align`.
inline std::pair<int, int> split_range(int n, int index, int count, int align = 1) {
  int units = (n + align - 1) / align;
  int b = int(int64_t(units) * index / count) * align, e = int(int64_t(units) * (index + 1) / count) * align;
  return {b < n ? b : n, e < n ? e : n};
}

}  // namespace sluice::engine
