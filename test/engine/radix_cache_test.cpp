// The radix prefix cache as a plain data structure: insert, match, split, evict, pinning, and prompts that
// share or diverge inside a block. No model, no threads.
#include <catch2/catch.hpp>

#include <numeric>

#include "radix_cache.h"

using namespace sluice::engine;

namespace {
constexpr int bt = 4;  // tokens per block in these tests

std::vector<token_id> seq(int n, int start = 0) {
  std::vector<token_id> t(static_cast<size_t>(n));
  std::iota(t.begin(), t.end(), start);
  return t;
}

// Takes n blocks from the allocator (the caller's KV for n * bt tokens).
std::vector<kv_block_id> take(block_allocator& a, int n) {
  std::vector<kv_block_id> b;
  REQUIRE(a.alloc(n, b));
  return b;
}
}  // namespace

TEST_CASE("radix cache: insert then match returns the same blocks, whole blocks only", "[radix]") {
  block_allocator a(16);
  radix_cache c(bt, a);
  auto t = seq(12);
  auto b = take(a, 3);
  CHECK(c.insert(t, b) == 0);
  CHECK(c.cached_blocks() == 3);
  auto m = c.match_prefix(t, 12);
  CHECK(m.blocks == b);
  // A longer prompt with the same start matches the cached 12 tokens.
  auto longer = seq(20);
  CHECK(c.match_prefix(longer, 20).blocks == b);
  // max_tokens rounds down to whole blocks: 11 -> 2 blocks, 3 -> none.
  CHECK(c.match_prefix(t, 11).blocks == std::vector<kv_block_id>(b.begin(), b.begin() + 2));
  CHECK(c.match_prefix(t, 3).blocks.empty());
  // A prompt that differs in the first block matches nothing.
  auto other = t;
  other[1] = 99;
  CHECK(c.match_prefix(other, 12).blocks.empty());
}

TEST_CASE("radix cache: prompts diverging mid-block share the blocks before it and split the node", "[radix]") {
  block_allocator a(16);
  radix_cache c(bt, a);
  auto t1 = seq(12);  // blocks [0..3][4..7][8..11]
  auto b1 = take(a, 3);
  c.insert(t1, b1);
  auto t2 = t1;
  t2[6] = 1000;  // diverges inside the second block
  auto m = c.match_prefix(t2, 12);
  REQUIRE(m.blocks.size() == 1);  // only the first block is shared
  CHECK(m.blocks[0] == b1[0]);
  // Inserting t2 with its own blocks: the first block is already there (returned as present, not taken).
  auto b2 = take(a, 3);
  CHECK(c.insert(t2, b2) == 1);
  CHECK(c.cached_blocks() == 5);  // 3 of t1 + 2 new of t2
  CHECK(c.match_prefix(t2, 12).blocks == std::vector<kv_block_id>{b1[0], b2[1], b2[2]});
  CHECK(c.match_prefix(t1, 12).blocks == b1);
  // The caller frees its duplicate of the shared block; the tree kept its own.
  a.release(std::span<const kv_block_id>(&b2[0], 1));
  CHECK(a.free_blocks() == 16 - 5);
}

TEST_CASE("radix cache: the partial match finds the cached block a prompt diverges in, for copying", "[radix]") {
  block_allocator a(16);
  radix_cache c(bt, a);
  auto t = seq(12);
  auto b = take(a, 3);
  c.insert(t, b);
  auto p = t;
  p[6] = 500;  // diverges at position 6: block 1 ([4..7]) shares positions 4 and 5
  auto m = c.match_prefix(p, 12);
  REQUIRE(m.blocks.size() == 1);
  auto pm = c.match_partial(m.last, std::span(p).subspan(4), 8);
  CHECK(pm.block == b[1]);
  CHECK(pm.tokens == 2);
  CHECK(c.match_partial(m.last, std::span(p).subspan(4), 1).tokens == 1);  // the limit holds
  auto q = t;
  q[4] = 600;  // diverges at the block boundary: nothing to copy
  auto mq = c.match_prefix(q, 12);
  CHECK(c.match_partial(mq.last, std::span(q).subspan(4), 8).block == -1);
  // Never a whole block (that is match_prefix's job): at most block_tokens - 1.
  auto whole = c.match_prefix(seq(4), 4);
  CHECK(c.match_partial(whole.last, std::span(t).subspan(4), 8).tokens == bt - 1);
}

TEST_CASE("radix cache: a successive longer insert extends the path; a shorter one adds nothing", "[radix]") {
  block_allocator a(16);
  radix_cache c(bt, a);
  auto t = seq(16);
  auto b = take(a, 4);
  CHECK(c.insert(std::span(t).first(8), std::span(b).first(2)) == 0);
  CHECK(c.insert(t, b) == 2);  // the first two were there (the same blocks), two more taken
  CHECK(c.cached_blocks() == 4);
  CHECK(c.match_prefix(t, 16).blocks == b);
  CHECK(c.insert(std::span(t).first(4), std::span(b).first(1)) == 1);
  CHECK(c.cached_blocks() == 4);
}

TEST_CASE("radix cache: eviction frees least recently used unpinned leaves, never pinned ones", "[radix]") {
  block_allocator a(8);
  radix_cache c(bt, a);
  auto x = seq(8, 0), y = seq(8, 100), z = seq(8, 200);
  c.insert(x, take(a, 2));
  c.insert(y, take(a, 2));
  c.insert(z, take(a, 2));
  CHECK(a.free_blocks() == 2);
  c.match_prefix(x, 8);  // x is now the most recently used; y the least
  auto mz = c.match_prefix(z, 8);
  c.lock(mz.last);  // z is pinned
  CHECK(c.pinned_blocks() == 2);
  CHECK(c.evict(1) == 2);  // whole node: y
  CHECK(c.match_prefix(y, 8).blocks.empty());
  CHECK(c.match_prefix(x, 8).blocks.size() == 2);
  CHECK(c.evict(100) == 2);  // x goes; z is pinned
  CHECK(c.match_prefix(z, 8).blocks.size() == 2);
  CHECK(c.cached_blocks() == 2);
  CHECK(a.free_blocks() == 6);
  CHECK(c.evicted_blocks() == 4);
  c.unlock(mz.last);
  CHECK(c.pinned_blocks() == 0);
  CHECK(c.evict(1) == 2);
  CHECK(a.free_blocks() == 8);
  CHECK(c.cached_blocks() == 0);
}

TEST_CASE("radix cache: a pinned inner node survives; its unpinned branch is evicted, then the parent", "[radix]") {
  block_allocator a(8);
  radix_cache c(bt, a);
  auto t1 = seq(12);
  auto t2 = seq(12);
  t2[9] = 77;  // shares 2 blocks
  c.insert(t1, take(a, 3));
  auto b2 = take(a, 3);
  CHECK(c.insert(t2, b2) == 2);
  a.release(std::span(b2).first(2));
  // Pin the shared prefix only (a sequence whose prompt is those 8 tokens).
  auto m = c.match_prefix(t1, 8);
  REQUIRE(m.blocks.size() == 2);
  c.lock(m.last);
  CHECK(c.evict(10) == 2);  // the two one-block leaves
  CHECK(c.cached_blocks() == 2);
  CHECK(c.match_prefix(t1, 12).blocks.size() == 2);
  c.unlock(m.last);
  CHECK(c.evict(1) == 2);  // now the prefix node is an unpinned leaf
  CHECK(c.cached_blocks() == 0);
  CHECK(a.free_blocks() == 8);
}

TEST_CASE("radix cache: a lock taken before a split still pins the whole path", "[radix]") {
  block_allocator a(8);
  radix_cache c(bt, a);
  auto t = seq(12);
  c.insert(t, take(a, 3));
  auto m = c.match_prefix(t, 12);
  c.lock(m.last);
  auto t2 = t;
  t2[5] = 55;
  CHECK(c.match_prefix(t2, 12).blocks.size() == 1);  // splits the node after block 0
  CHECK(c.evict(10) == 0);  // everything is on the pinned path
  c.unlock(m.last);
  CHECK(c.evict(10) == 3);
}

TEST_CASE("radix cache: misuse is a logic error, not silent corruption", "[radix]") {
  block_allocator a(4);
  radix_cache c(bt, a);
  auto t = seq(6);
  std::vector<kv_block_id> b{0};
  CHECK_THROWS_AS(c.insert(t, b), std::logic_error);  // not a whole number of blocks
  auto m = c.match_prefix(seq(4), 4);
  c.unlock(m.last);  // the root: a no-op
  CHECK_THROWS_AS(a.release(std::vector<kv_block_id>{3}), std::logic_error);  // never allocated
}
