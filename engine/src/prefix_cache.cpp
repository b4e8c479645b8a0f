// See prefix_cache.h.
#include "prefix_cache.h"

#include <algorithm>

namespace sluice::engine {

int common_prefix(std::span<const token_id> a, std::span<const token_id> b) {
  const size_t n = std::min(a.size(), b.size());
  size_t i = 0;
  while (i < n && a[i] == b[i]) ++i;
  return int(i);
}

prefix_cache::match prefix_cache::find(std::span<const token_id> prompt, int max_tokens) {
  auto best = entries_.end();
  int best_n = 0;
  for (auto it = entries_.begin(); it != entries_.end(); ++it) {
    const int n = std::min(common_prefix(prompt, it->tokens), max_tokens);
    if (n > best_n) {
      best_n = n;
      best = it;
    }
  }
  if (best == entries_.end()) return {};
  entries_.splice(entries_.begin(), entries_, best);  // most recently used first
  return {entries_.front().kv.get(), best_n};
}

void prefix_cache::insert(std::vector<token_id> tokens, std::unique_ptr<kv_cache> kv) {
  if (!kv || tokens.empty() || int(tokens.size()) > kv->capacity_tokens()) return;
  const size_t b = kv->bytes();
  if (b > budget_bytes_) return;
  for (auto it = entries_.begin(); it != entries_.end();) {
    const int n = common_prefix(tokens, it->tokens);
    if (n == int(tokens.size())) {  // an entry already holds all of these tokens (and maybe more)
      entries_.splice(entries_.begin(), entries_, it);
      return;
    }
    if (n == int(it->tokens.size())) {  // the new entry covers this one
      bytes_ -= it->kv->bytes();
      it = entries_.erase(it);
    } else {
      ++it;
    }
  }
  while (!entries_.empty() && bytes_ + b > budget_bytes_) {
    bytes_ -= entries_.back().kv->bytes();
    entries_.pop_back();
  }
  bytes_ += b;
  entries_.push_front(entry{std::move(tokens), std::move(kv)});
}

}  // namespace sluice::engine
