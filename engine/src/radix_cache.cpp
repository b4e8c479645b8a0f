// See radix_cache.h.
#include "radix_cache.h"

#include <algorithm>
#include <queue>
#include <stdexcept>

namespace sluice::engine {

struct radix_cache::node {
  node* parent = nullptr;
  std::vector<token_id> key;          // (blocks.size() * block_tokens) tokens on the edge into this node
  std::vector<kv_block_id> blocks;    // their KV
  // Children keyed by the tokens of their first block: two children never share a first block.
  std::map<std::vector<token_id>, std::unique_ptr<node>> children;
  int lock_ref = 0;                   // sequences reading through this node
  uint64_t last_access = 0;
};

namespace {
// Whole blocks in which a and b agree.
int common_blocks(std::span<const token_id> a, std::span<const token_id> b, int bt) {
  const size_t n = std::min(a.size(), b.size()) / size_t(bt);
  size_t i = 0;
  while (i < n && std::equal(a.begin() + long(i * bt), a.begin() + long((i + 1) * bt), b.begin() + long(i * bt))) ++i;
  return int(i);
}
}  // namespace

radix_cache::radix_cache(int block_tokens, block_allocator& blocks)
    : block_tokens_(block_tokens), alloc_(blocks), root_(std::make_unique<node>()) {
  if (block_tokens < 1) throw std::invalid_argument("radix_cache: block_tokens must be >= 1");
  root_->lock_ref = 1;  // never evicted
}

radix_cache::~radix_cache() = default;  // blocks return with the allocator (both die with the scheduler)

void radix_cache::touch(node* n) {
  ++clock_;
  for (; n; n = n->parent) n->last_access = clock_;
}

radix_cache::node* radix_cache::split(node* c, int keep) {
  // c's first `keep` blocks move to a new node between c and its parent; c keeps the rest (so pointers to c,
  // held as lock points by sequences, stay valid and still mean "the end of this path").
  const size_t kt = size_t(keep) * size_t(block_tokens_);
  auto head = std::make_unique<node>();
  head->parent = c->parent;
  head->key.assign(c->key.begin(), c->key.begin() + long(kt));
  head->blocks.assign(c->blocks.begin(), c->blocks.begin() + keep);
  head->lock_ref = c->lock_ref;
  head->last_access = c->last_access;
  std::vector<token_id> first_old(c->key.begin(), c->key.begin() + block_tokens_);
  c->key.erase(c->key.begin(), c->key.begin() + long(kt));
  c->blocks.erase(c->blocks.begin(), c->blocks.begin() + keep);
  node* parent = c->parent;
  std::unique_ptr<node> owned = std::move(parent->children[first_old]);
  parent->children.erase(first_old);
  node* h = head.get();
  c->parent = h;
  std::vector<token_id> first_tail(c->key.begin(), c->key.begin() + block_tokens_);
  h->children.emplace(std::move(first_tail), std::move(owned));
  parent->children.emplace(std::move(first_old), std::move(head));
  return h;
}

radix_cache::match radix_cache::match_prefix(std::span<const token_id> tokens, int max_tokens) {
  match m;
  const int bt = block_tokens_;
  const size_t usable = size_t(std::clamp(max_tokens, 0, int(tokens.size())) / bt) * size_t(bt);
  tokens = tokens.first(usable);
  node* n = root_.get();
  size_t at = 0;
  while (at < tokens.size()) {
    std::vector<token_id> first(tokens.begin() + long(at), tokens.begin() + long(at + size_t(bt)));
    auto it = n->children.find(first);
    if (it == n->children.end()) break;
    node* c = it->second.get();
    const int k = common_blocks(c->key, tokens.subspan(at), bt);  // >= 1: the first block matched
    if (k < int(c->blocks.size())) c = split(c, k);
    m.blocks.insert(m.blocks.end(), c->blocks.begin(), c->blocks.end());
    at += c->key.size();
    n = c;
  }
  m.last = n;
  touch(n);
  return m;
}

radix_cache::partial radix_cache::match_partial(node* at, std::span<const token_id> rest, int max_tokens) {
  partial best;
  const int limit = std::min({max_tokens, int(rest.size()), block_tokens_ - 1});
  if (!at || limit <= 0) return best;
  for (auto& [first, child] : at->children) {
    int k = 0;
    while (k < limit && first[size_t(k)] == rest[size_t(k)]) ++k;
    if (k > best.tokens) {
      best.tokens = k;
      best.block = child->blocks.front();
    }
  }
  return best;
}

int radix_cache::insert(std::span<const token_id> tokens, std::span<const kv_block_id> blocks) {
  const int bt = block_tokens_;
  if (tokens.size() % size_t(bt) != 0 || tokens.size() / size_t(bt) != blocks.size())
    throw std::logic_error("radix_cache::insert: tokens and blocks do not match");
  node* n = root_.get();
  size_t at = 0;  // tokens consumed
  int present = 0;
  while (at < tokens.size()) {
    std::vector<token_id> first(tokens.begin() + long(at), tokens.begin() + long(at) + bt);
    auto it = n->children.find(first);
    if (it == n->children.end()) {
      auto leaf = std::make_unique<node>();
      leaf->parent = n;
      leaf->key.assign(tokens.begin() + long(at), tokens.end());
      leaf->blocks.assign(blocks.begin() + long(at / size_t(bt)), blocks.end());
      cached_blocks_ += int(leaf->blocks.size());
      node* l = leaf.get();
      n->children.emplace(std::move(first), std::move(leaf));
      n = l;
      break;
    }
    node* c = it->second.get();
    const int k = common_blocks(c->key, tokens.subspan(at), bt);
    if (k < int(c->blocks.size())) c = split(c, k);
    present += k;
    at += c->key.size();
    n = c;
  }
  touch(n);
  return present;
}

void radix_cache::lock(node* n) {
  for (; n && n != root_.get(); n = n->parent) {
    if (n->lock_ref++ == 0) pinned_blocks_ += int(n->blocks.size());
  }
}

void radix_cache::unlock(node* n) {
  for (; n && n != root_.get(); n = n->parent) {
    if (n->lock_ref <= 0) throw std::logic_error("radix_cache::unlock without lock");
    if (--n->lock_ref == 0) pinned_blocks_ -= int(n->blocks.size());
  }
}

int radix_cache::evict(int n_blocks) {
  using item = std::pair<uint64_t, node*>;  // (last access, leaf): oldest first
  std::priority_queue<item, std::vector<item>, std::greater<>> leaves;
  std::vector<node*> stack{root_.get()};
  while (!stack.empty()) {
    node* n = stack.back();
    stack.pop_back();
    for (auto& [k, c] : n->children) stack.push_back(c.get());
    if (n->children.empty() && n->lock_ref == 0) leaves.emplace(n->last_access, n);
  }
  int freed = 0;
  while (freed < n_blocks && !leaves.empty()) {
    node* n = leaves.top().second;
    leaves.pop();
    alloc_.release(n->blocks);
    freed += int(n->blocks.size());
    cached_blocks_ -= int(n->blocks.size());
    evicted_blocks_ += n->blocks.size();
    node* parent = n->parent;
    std::vector<token_id> first(n->key.begin(), n->key.begin() + block_tokens_);
    parent->children.erase(first);  // destroys n
    if (parent != root_.get() && parent->children.empty() && parent->lock_ref == 0)
      leaves.emplace(parent->last_access, parent);
  }
  return freed;
}

}  // namespace sluice::engine
