// The prefix cache: KV caches of finished sequences, kept (within a byte budget, least recently used evicted
// first) so that a new sequence whose prompt starts with the same tokens copies those positions instead of
// recomputing them. A plain data structure with its own tests; the scheduler decides when to look and keep.
// This is the copy-on-admission form: each sequence still owns a contiguous cache. What must not go in here:
// model math (backend), scheduling.
#pragma once

#include <cstdint>
#include <list>
#include <memory>
#include <span>
#include <vector>

#include "backend.h"

namespace sluice::engine {

// Length of the common prefix of two token sequences.
int common_prefix(std::span<const token_id> a, std::span<const token_id> b);

class prefix_cache {
 public:
  explicit prefix_cache(size_t budget_bytes) : budget_bytes_(budget_bytes) {}

  struct match {
    const kv_cache* kv = nullptr;  // valid until the next insert()
    int tokens = 0;                // positions [0, tokens) of kv hold the prompt's prefix
  };
  // The entry sharing the longest prefix with `prompt`, at most `max_tokens` long; marks it recently used.
  match find(std::span<const token_id> prompt, int max_tokens);

  // Keeps `kv`, whose positions [0, tokens.size()) hold `tokens`. Entries it covers (their tokens are a prefix
  // of these) are dropped; it is not kept when an entry already covers it or it exceeds the budget alone.
  void insert(std::vector<token_id> tokens, std::unique_ptr<kv_cache> kv);

  size_t bytes() const { return bytes_; }
  size_t entries() const { return entries_.size(); }

 private:
  struct entry {
    std::vector<token_id> tokens;
    std::unique_ptr<kv_cache> kv;
  };
  size_t budget_bytes_;
  size_t bytes_ = 0;
  std::list<entry> entries_;  // most recently used first
};

}  // namespace sluice::engine
