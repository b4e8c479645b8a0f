// Which blocks of the backend's KV pool are free. The pool itself (the memory) belongs to the backend; this
// is only the bookkeeping the scheduler and the radix cache share: a block is either free here, owned by one
// sequence (its private blocks), or owned by the radix cache (shared, reference-counted by sequences that
// lock it). What must not go in here: memory, model math, any policy about who gets blocks.
#pragma once

#include <cstdint>
#include <span>
#include <stdexcept>
#include <vector>

namespace sluice::engine {

using kv_block_id = int32_t;

class block_allocator {
 public:
  explicit block_allocator(int n_blocks) : total_(n_blocks), is_free_(size_t(n_blocks), true) {
    free_.reserve(size_t(n_blocks));
    for (int b = n_blocks - 1; b >= 0; --b) free_.push_back(b);  // hands out low ids first
  }

  int total_blocks() const { return total_; }
  int free_blocks() const { return int(free_.size()); }

  // Appends n free blocks to out, or nothing (returns false) when fewer than n are free.
  bool alloc(int n, std::vector<kv_block_id>& out) {
    if (n < 0 || n > free_blocks()) return n == 0;
    for (int i = 0; i < n; ++i) {
      kv_block_id b = free_.back();
      free_.pop_back();
      is_free_[size_t(b)] = false;
      out.push_back(b);
    }
    return true;
  }

  // A double free or a foreign id is a broken invariant of the caller, not bad input.
  void release(std::span<const kv_block_id> blocks) {
    for (kv_block_id b : blocks) {
      if (b < 0 || b >= total_ || is_free_[size_t(b)]) throw std::logic_error("block_allocator: bad release");
      is_free_[size_t(b)] = true;
      free_.push_back(b);
    }
  }

 private:
  int total_;
  std::vector<kv_block_id> free_;
  std::vector<bool> is_free_;
};

}  // namespace sluice::engine
