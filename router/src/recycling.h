// An allocator for the router's small per-request objects (the accounting sink, a resilient call): blocks are
// kept on a per-thread free list by size class and reused, so a request does not go to the heap for them once
// the process is warm (gateway_alloc_tests counts the heap calls of the pass-through path). A block freed on
// another thread than the one that allocated it simply joins that thread's list.
// What must not go in here: anything but memory.
#pragma once

#include <array>
#include <cstddef>
#include <memory>
#include <utility>
#include <new>
#include <vector>

namespace sluice::router::detail {

inline constexpr std::size_t recycle_granule = 64;
inline constexpr std::size_t recycle_classes = 16;  // up to 1 KiB
inline constexpr std::size_t recycle_keep = 256;    // blocks kept per class and thread

struct recycle_lists {
  std::array<std::vector<void*>, recycle_classes> free;
  ~recycle_lists() {
    for (auto& list : free) {
      for (void* p : list) ::operator delete(p);
    }
  }
};

inline recycle_lists& recycle_lists_here() {
  thread_local recycle_lists lists;
  return lists;
}

template <class T>
struct recycling_allocator {
  using value_type = T;
  recycling_allocator() = default;
  template <class U>
  recycling_allocator(const recycling_allocator<U>&) {}  // NOLINT: rebinding

  T* allocate(std::size_t n) {
    const std::size_t bytes = n * sizeof(T);
    const std::size_t cls = (bytes + recycle_granule - 1) / recycle_granule;
    if (cls == 0 || cls > recycle_classes || alignof(T) > alignof(std::max_align_t)) {
      return static_cast<T*>(::operator new(bytes));
    }
    auto& list = recycle_lists_here().free[cls - 1];
    if (!list.empty()) {
      void* p = list.back();
      list.pop_back();
      return static_cast<T*>(p);
    }
    return static_cast<T*>(::operator new(cls * recycle_granule));
  }

  void deallocate(T* p, std::size_t n) {
    const std::size_t bytes = n * sizeof(T);
    const std::size_t cls = (bytes + recycle_granule - 1) / recycle_granule;
    if (cls == 0 || cls > recycle_classes || alignof(T) > alignof(std::max_align_t)) {
      ::operator delete(p);
      return;
    }
    auto& list = recycle_lists_here().free[cls - 1];
    if (list.size() < recycle_keep) {
      if (list.capacity() == 0) list.reserve(recycle_keep);
      list.push_back(p);
    } else {
      ::operator delete(p);
    }
  }

  template <class U>
  bool operator==(const recycling_allocator<U>&) const { return true; }
};

// std::make_shared with the recycling allocator.
template <class T, class... Args>
std::shared_ptr<T> make_recycled(Args&&... args) {
  return std::allocate_shared<T>(recycling_allocator<T>(), std::forward<Args>(args)...);
}

}  // namespace sluice::router::detail
