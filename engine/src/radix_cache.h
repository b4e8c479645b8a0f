// The prefix cache: a radix tree over token sequences whose nodes own KV blocks, shared by every sequence of a
// model (SGLang's RadixAttention, at block granularity). An edge holds whole blocks: its key is
// block_tokens * blocks.size() tokens, and block i holds the keys and values of that edge's i-th run of
// block_tokens positions. Since a position's keys and values depend only on the tokens up to it, any sequence
// whose prompt starts with a path's tokens can read that path's blocks instead of computing them.
//
// Sequences pin the path they read (lock/unlock, a reference count per node); eviction frees the least
// recently used unpinned leaves, whole nodes at a time, back to the block allocator. A partial last block is
// never in the tree (the sequence keeps it private), so matches are whole blocks; two prompts that diverge
// inside a block share the blocks before it only.
//
// A plain data structure with its own tests: no threads (the scheduler thread owns it), no model math.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <vector>

#include "block_allocator.h"
#include "sluice/engine/engine.h"

namespace sluice::engine {

class radix_cache {
 public:
  struct node;

  // Evicted blocks go back to `blocks`; block_tokens > 0.
  radix_cache(int block_tokens, block_allocator& blocks);
  ~radix_cache();
  radix_cache(const radix_cache&) = delete;
  radix_cache& operator=(const radix_cache&) = delete;

  int block_tokens() const { return block_tokens_; }

  struct match {
    std::vector<kv_block_id> blocks;  // the KV of tokens [0, blocks.size() * block_tokens)
    node* last = nullptr;             // the node ending exactly there (the root when nothing matched): lock it
    int tokens(int block_tokens) const { return int(blocks.size()) * block_tokens; }
  };
  // The longest cached prefix of `tokens` in whole blocks, at most max_tokens long. Marks the path recently
  // used; may split a node so that `last` ends exactly at the match.
  match match_prefix(std::span<const token_id> tokens, int max_tokens);

  // After a match ending at `at` (its `last`): the cached block under `at` whose tokens share the longest run
  // with the start of `rest` (fewer than block_tokens, at most max_tokens), for copying that many positions
  // instead of computing them. Blocks = -1 when none shares a token. The block is not pinned: copy it before
  // anything can evict.
  struct partial {
    kv_block_id block = -1;
    int tokens = 0;
  };
  partial match_partial(node* at, std::span<const token_id> rest, int max_tokens);

  // Caches `tokens` (a whole number of blocks) whose KV is in `blocks` (one per block_tokens tokens). Returns
  // how many leading blocks were already cached: the tree keeps its own for those and does not take the
  // caller's (which stay the caller's to free unless they are the very same blocks); it takes the rest.
  int insert(std::span<const token_id> tokens, std::span<const kv_block_id> blocks);

  // Pins (unpins) every node from `n` up to the root: pinned blocks are never evicted.
  void lock(node* n);
  void unlock(node* n);

  // Frees at least n_blocks blocks if that many are unpinned, least recently used leaves first; returns the
  // number freed (whole nodes, so it may be more than asked).
  int evict(int n_blocks);

  int cached_blocks() const { return cached_blocks_; }      // blocks the tree owns
  int pinned_blocks() const { return pinned_blocks_; }      // of those, in use by some sequence
  uint64_t evicted_blocks() const { return evicted_blocks_; }  // since construction

 private:
  node* split(node* n, int keep_blocks);  // n keeps its tail; returns the new parent holding the head
  void touch(node* n);

  int block_tokens_;
  block_allocator& alloc_;
  std::unique_ptr<node> root_;
  uint64_t clock_ = 0;  // logical time for LRU: deterministic, unlike a wall clock
  int cached_blocks_ = 0;
  int pinned_blocks_ = 0;
  uint64_t evicted_blocks_ = 0;
};

}  // namespace sluice::engine
