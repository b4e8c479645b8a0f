// Spin-then-sleep synchronisation: spinning keeps barrier latency near a microsecond while a forward pass
// runs; sleeping on the atomic (futex) keeps idle workers off the CPU between steps.
#include "thread_pool.h"

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace sluice::engine {
namespace {
inline void cpu_relax() {
#if defined(__x86_64__)
  _mm_pause();
#endif
}
constexpr int spin_iterations = 20000;  // ~ tens of microseconds before sleeping
}  // namespace

thread_pool::thread_pool(int n_threads) : n_(n_threads < 1 ? 1 : n_threads) {
  workers_.reserve(size_t(n_ - 1));
  for (int i = 1; i < n_; ++i) workers_.emplace_back([this, i] { worker(i); });
}

thread_pool::~thread_pool() {
  stop_.store(true);
  generation_.fetch_add(1);
  generation_.notify_all();
  for (auto& t : workers_) t.join();
}

void thread_pool::run(const std::function<void(int, int)>& fn) {
  if (n_ == 1) {
    fn(0, 1);
    return;
  }
  job_ = &fn;
  done_.store(0, std::memory_order_relaxed);
  generation_.fetch_add(1, std::memory_order_release);
  generation_.notify_all();
  fn(0, n_);
  int spins = 0;
  while (done_.load(std::memory_order_acquire) != n_ - 1) {
    if (++spins < spin_iterations) {
      cpu_relax();
    } else {
      int d = done_.load(std::memory_order_acquire);
      if (d != n_ - 1) done_.wait(d);
    }
  }
  job_ = nullptr;
}

void thread_pool::worker(int index) {
  uint32_t seen = 0;  // the value before any run(): a worker starting late must not skip the first job
  for (;;) {
    int spins = 0;
    uint32_t g;
    while ((g = generation_.load(std::memory_order_acquire)) == seen) {
      if (++spins < spin_iterations) cpu_relax();
      else generation_.wait(seen);
    }
    seen = g;
    if (stop_.load()) return;
    (*job_)(index, n_);
    done_.fetch_add(1, std::memory_order_acq_rel);
    done_.notify_one();
  }
}

void thread_pool::barrier() {
  if (n_ == 1) return;
  uint32_t phase = barrier_phase_.load(std::memory_order_acquire);
  if (barrier_count_.fetch_add(1, std::memory_order_acq_rel) == n_ - 1) {
    barrier_count_.store(0, std::memory_order_relaxed);
    barrier_phase_.fetch_add(1, std::memory_order_release);
    barrier_phase_.notify_all();
    return;
  }
  int spins = 0;
  while (barrier_phase_.load(std::memory_order_acquire) == phase) {
    if (++spins < spin_iterations) cpu_relax();
    else barrier_phase_.wait(phase);
  }
}

}  // namespace sluice::engine
