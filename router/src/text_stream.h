// The query-text pieces the acceptance model (acceptance_stream.h) and the task model (task_stream.h) share: the
// query's tail, its words, and their hashed n-grams. Header-only so both serve without allocating.
// Changing anything here changes both models' features: bump acceptance_extractor_version and
// task_extractor_version. What must not go in here: any one model's blocks, seeds or weights.
#pragma once

#include <algorithm>
#include <cstdint>
#include <string_view>

#include "features_stream.h"

namespace sluice::router::detail {

inline constexpr size_t query_tail_max_bytes = 1000;

inline bool is_word_byte(unsigned char c) { return (tables().cls[c] & cls_word) != 0; }

// The query's tail: after the last blank line ("\n\n"), at most its last query_tail_max_bytes bytes; a word cut by
// that limit is dropped rather than hashed as a different, shorter word.
inline std::string_view query_tail(std::string_view q) {
  if (const size_t blank = q.rfind("\n\n"); blank != std::string_view::npos) q.remove_prefix(blank + 2);
  if (q.size() > query_tail_max_bytes) {
    const size_t cut = q.size() - query_tail_max_bytes;
    const bool mid_word = is_word_byte(static_cast<unsigned char>(q[cut - 1])) &&
                          is_word_byte(static_cast<unsigned char>(q[cut]));
    q.remove_prefix(cut);
    if (mid_word)
      while (!q.empty() && is_word_byte(static_cast<unsigned char>(q.front()))) q.remove_prefix(1);
  }
  return q;
}

// Calls f(hash) for each word of text: a run of ASCII letters and digits (bytes >= 0x80 count as letters), case
// folded. A word starting with a digit hashes as "a number of this many digits", as the request features do.
template <class F>
void for_each_word(std::string_view text, F&& f) {
  const unsigned char* s = reinterpret_cast<const unsigned char*>(text.data());
  const size_t n = text.size();
  const char_tables& t = tables();
  for (size_t i = 0; i < n;) {
    while (i < n && !(t.cls[s[i]] & cls_word)) ++i;
    if (i == n) break;
    const size_t start = i;
    while (i < n && (t.cls[s[i]] & cls_word)) ++i;
    const size_t len = i - start;
    if (t.cls[s[start]] & cls_digit) {
      size_t digits = 0;
      while (digits < len && (t.cls[s[start + digits]] & cls_digit)) ++digits;
      f(mix64(0x6e756d00ULL + std::min<size_t>(digits, 6) + (digits == len ? 0 : 0x100)));
    } else {
      f(fold_hash(s + start, len, start + (len & ~size_t{7}) + 8 <= n));
    }
  }
}

// Calls f(hash, order) for each word 1..max_order-gram of text (max_order 1..3), in text order and, at each word,
// the unigram first: order 1 is the word's hash mixed with `seed`, longer grams mix the grams' word hashes in order.
template <class F>
void for_each_word_ngram(std::string_view text, uint64_t seed, uint32_t max_order, F&& f) {
  constexpr uint64_t k_mul = 0x9e3779b97f4a7c15ULL;
  uint64_t prev1 = 0, prev2 = 0;  // hashes of the previous two words
  uint32_t words = 0;
  for_each_word(text, [&](uint64_t h) {
    const uint64_t wh = mix64(h ^ seed);
    f(wh, 1u);
    if (max_order >= 2 && words >= 1) f(mix64(prev1 * k_mul + wh + 2), 2u);
    if (max_order >= 3 && words >= 2) f(mix64((prev2 * k_mul + prev1) * 0xc2b2ae3d27d4eb4fULL + wh + 3), 3u);
    prev2 = prev1;
    prev1 = wh;
    ++words;
  });
}

}  // namespace sluice::router::detail
