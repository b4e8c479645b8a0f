// Per-thread recycling of the memory a request uses, so that an io thread serving requests in the steady state
// does not call the heap. Two kinds:
//  - string buffers (take_buffer/give_buffer): the answer a backend reads comes from here and the session hands
//    it back once written, so the bytes move upstream socket -> client socket in buffers that are reused;
//  - fixed-size blocks (recycling_allocator): for objects made per request with std::allocate_shared (an
//    upstream call and its control block).
// Both keep a bounded number of free items per thread; memory freed on another thread stays with that thread
// (or goes back to the heap past the bound), so no lock is ever taken. What must not go in here: anything that
// knows what the memory holds.
#pragma once

#include <cstddef>
#include <new>
#include <string>

namespace sluice::gateway {

// An empty string, with the capacity of a recycled one when this thread has one.
std::string take_buffer();
// Keeps `s`'s memory for a later take_buffer on this thread (up to a few dozen buffers of at most 1 MiB each;
// others are freed). `s` is left empty.
void give_buffer(std::string&& s);

namespace detail {
// A free list of blocks of one size class (multiples of 64 bytes up to 4 KiB), per thread.
void* take_block(size_t bytes);
void give_block(void* p, size_t bytes) noexcept;
}  // namespace detail

// For std::allocate_shared: single objects come from the block recycler; anything else from the heap.
template <class T>
struct recycling_allocator {
  using value_type = T;
  recycling_allocator() = default;
  template <class U>
  recycling_allocator(const recycling_allocator<U>&) noexcept {}
  T* allocate(size_t n) {
    if (n == 1) return static_cast<T*>(detail::take_block(sizeof(T)));
    return static_cast<T*>(::operator new(n * sizeof(T)));
  }
  void deallocate(T* p, size_t n) noexcept {
    if (n == 1) detail::give_block(p, sizeof(T));
    else ::operator delete(p);
  }
  template <class U>
  bool operator==(const recycling_allocator<U>&) const noexcept { return true; }
};

}  // namespace sluice::gateway
