// See recycler.h.
#include "http/recycler.h"

#include <array>
#include <vector>

namespace sluice::gateway {

namespace {

constexpr size_t max_buffers = 64;                   // per thread
constexpr size_t max_buffer_capacity = 1024 * 1024;  // a larger buffer goes back to the heap

constexpr size_t block_align = 64;
constexpr size_t max_block_bytes = 4096;
constexpr size_t size_classes = max_block_bytes / block_align;
constexpr size_t max_blocks_per_class = 64;

struct free_block {
  free_block* next;
};

// Set once this thread's cache is destroyed (thread exit): later calls (from other thread_local or static
// destructors) go straight to the heap.
thread_local bool cache_gone = false;

// One thread's free items. Its destructor (thread exit) returns everything to the heap.
struct thread_cache {
  std::vector<std::string> buffers;
  std::array<free_block*, size_classes> blocks{};
  std::array<size_t, size_classes> counts{};

  ~thread_cache() {
    for (size_t c = 0; c < size_classes; ++c) {
      for (free_block* b = blocks[c]; b;) {
        free_block* next = b->next;
        ::operator delete(b, std::align_val_t(block_align));
        b = next;
      }
    }
    cache_gone = true;
  }
};

thread_cache& cache() {
  thread_local thread_cache c;
  return c;
}

size_t size_class(size_t bytes) { return (bytes + block_align - 1) / block_align - 1; }

}  // namespace

std::string take_buffer() {
  if (cache_gone) return {};
  auto& c = cache();
  if (c.buffers.empty()) return {};
  std::string s = std::move(c.buffers.back());
  c.buffers.pop_back();
  return s;
}

void give_buffer(std::string&& s) {
  if (cache_gone) {
    std::string().swap(s);
    return;
  }
  if (s.capacity() <= std::string().capacity()) return;  // no memory of its own (short-string storage)
  auto& c = cache();
  if (s.capacity() > max_buffer_capacity || c.buffers.size() >= max_buffers) {
    std::string().swap(s);
    return;
  }
  if (c.buffers.capacity() == 0) c.buffers.reserve(max_buffers);
  s.clear();
  c.buffers.push_back(std::move(s));
}

namespace detail {

void* take_block(size_t bytes) {
  if (bytes == 0 || bytes > max_block_bytes || cache_gone) {
    return ::operator new(bytes, std::align_val_t(block_align));
  }
  auto& c = cache();
  const size_t k = size_class(bytes);
  if (free_block* b = c.blocks[k]) {
    c.blocks[k] = b->next;
    --c.counts[k];
    return b;
  }
  return ::operator new((k + 1) * block_align, std::align_val_t(block_align));
}

void give_block(void* p, size_t bytes) noexcept {
  if (bytes == 0 || bytes > max_block_bytes || cache_gone) {
    ::operator delete(p, std::align_val_t(block_align));
    return;
  }
  auto& c = cache();
  const size_t k = size_class(bytes);
  if (c.counts[k] >= max_blocks_per_class) {
    ::operator delete(p, std::align_val_t(block_align));
    return;
  }
  auto* b = static_cast<free_block*>(p);
  b->next = c.blocks[k];
  c.blocks[k] = b;
  ++c.counts[k];
}

}  // namespace detail

}  // namespace sluice::gateway
