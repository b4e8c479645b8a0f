// Spin-then-sleep synchronisation: spinning keeps barrier latency near a microsecond while a forward pass
// runs; after a bounded spin (with a yield now and then, so an oversubscribed machine can run the thread
// we wait for) a thread sleeps on the atomic (futex). Wake-ups are only issued when someone sleeps.
#include "thread_pool.h"

#include <sched.h>

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
constexpr int barrier_spins = 4000;  // roughly 50-100 us
constexpr int job_spins = 20000;     // between steps the scheduler samples; stay awake a little longer

// Spins until `a` differs from `old`, then sleeps on it. Returns the new value.
template <class T>
T await_change(std::atomic<T>& a, T old, int spins, std::atomic<int>& sleepers) {
  T v;
  for (int i = 0; i < spins; ++i) {
    if ((v = a.load(std::memory_order_acquire)) != old) return v;
    cpu_relax();
    if ((i & 255) == 255) sched_yield();
  }
  sleepers.fetch_add(1);
  while ((v = a.load()) == old) a.wait(old);
  sleepers.fetch_sub(1);
  return v;
}
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
  generation_.fetch_add(1);
  if (sleepers_.load() > 0) generation_.notify_all();
  fn(0, n_);
  int d;
  for (int i = 0; (d = done_.load(std::memory_order_acquire)) != n_ - 1; ++i) {
    if (i < barrier_spins) {
      cpu_relax();
      if ((i & 255) == 255) sched_yield();
    } else {
      sleepers_.fetch_add(1);
      if ((d = done_.load()) != n_ - 1) done_.wait(d);
      sleepers_.fetch_sub(1);
    }
  }
  job_ = nullptr;
}

void thread_pool::worker(int index) {
  uint32_t seen = 0;  // the value before any run(): a worker starting late must not skip the first job
  for (;;) {
    seen = await_change(generation_, seen, job_spins, sleepers_);
    if (stop_.load()) return;
    (*job_)(index, n_);
    done_.fetch_add(1);
    if (sleepers_.load() > 0) done_.notify_all();
  }
}

void thread_pool::barrier() {
  if (n_ == 1) return;
  uint32_t phase = barrier_phase_.load(std::memory_order_acquire);
  if (barrier_count_.fetch_add(1, std::memory_order_acq_rel) == n_ - 1) {
    barrier_count_.store(0, std::memory_order_relaxed);
    barrier_phase_.fetch_add(1);
    if (sleepers_.load() > 0) barrier_phase_.notify_all();
    return;
  }
  await_change(barrier_phase_, phase, barrier_spins, sleepers_);
}

}  // namespace sluice::engine
