// The prefix cache as a plain data structure: longest-prefix match, coverage, LRU eviction under a budget.
#include <catch2/catch.hpp>

#include "prefix_cache.h"

using namespace sluice::engine;

namespace {

// A cache of a given size that holds no data: the structure never reads keys or values.
class fake_kv final : public kv_cache {
 public:
  fake_kv(int capacity, size_t bytes) : capacity_(capacity), bytes_(bytes) {}
  int capacity_tokens() const override { return capacity_; }
  size_t bytes() const override { return bytes_; }

 private:
  int capacity_;
  size_t bytes_;
};

std::unique_ptr<kv_cache> kv(size_t bytes = 100, int capacity = 64) { return std::make_unique<fake_kv>(capacity, bytes); }

}  // namespace

TEST_CASE("prefix cache: the longest shared prefix wins, capped by the caller", "[prefix]") {
  prefix_cache c(1000);
  c.insert({1, 2, 3, 4, 5}, kv());
  c.insert({1, 2, 9, 9}, kv());
  const std::vector<token_id> q = {1, 2, 3, 4, 7, 8};
  auto m = c.find(q, 100);
  CHECK(m.tokens == 4);
  REQUIRE(m.kv != nullptr);
  CHECK(c.find(q, 3).tokens == 3);
  CHECK(c.find(std::vector<token_id>{7, 7}, 100).tokens == 0);
  CHECK(c.find(std::vector<token_id>{7, 7}, 100).kv == nullptr);
}

TEST_CASE("prefix cache: an entry covering another replaces it; a covered one is not kept", "[prefix]") {
  prefix_cache c(1000);
  c.insert({1, 2, 3}, kv());
  c.insert({1, 2, 3, 4, 5}, kv());  // covers the first
  CHECK(c.entries() == 1);
  CHECK(c.bytes() == 100);
  c.insert({1, 2}, kv());  // already covered
  CHECK(c.entries() == 1);
  c.insert({1, 2, 4}, kv());  // diverges mid-way: both kept
  CHECK(c.entries() == 2);
}

TEST_CASE("prefix cache: least recently used entries go first under the budget", "[prefix]") {
  prefix_cache c(300);
  c.insert({1, 1}, kv());
  c.insert({2, 2}, kv());
  c.insert({3, 3}, kv());
  CHECK(c.find(std::vector<token_id>{1, 1, 5}, 10).tokens == 2);  // 1 is now the most recently used
  c.insert({4, 4}, kv());                                          // evicts 2, the least recently used
  CHECK(c.entries() == 3);
  CHECK(c.bytes() == 300);
  CHECK(c.find(std::vector<token_id>{2, 2}, 10).tokens == 0);
  CHECK(c.find(std::vector<token_id>{1, 1}, 10).tokens == 2);
  c.insert({5, 5}, kv(1000));  // larger than the whole budget: not kept, nothing evicted
  CHECK(c.entries() == 3);
  c.insert({6, 6, 6}, kv(100, 2));  // more tokens than the cache holds: refused
  CHECK(c.find(std::vector<token_id>{6, 6, 6}, 10).tokens == 0);
}
