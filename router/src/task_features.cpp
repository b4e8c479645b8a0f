// Task model features: config checks, the query tail, and the allocating extraction used by training and tests.
// What must not go in here: the extraction logic itself (task_stream.h, shared with serving), weights or files.
//
// Layout: 2^hash_bits signed slots, no dense block. Word 1..word_ngram_max-grams of the query tail (after the last
// "\n\n", at most its last 1000 bytes; words are runs of ASCII letters, digits and bytes >= 0x80, ASCII case folded,
// numbers hashed by their digit count) and, when char_ngram_max >= 3, character 3..char_ngram_max-grams of the same
// tail (lower-cased, digits as '0', whitespace as ' '). Each kind is hashed in its own namespace and scaled by
// 1/sqrt(its count).
#include <vector>

#include "sluice/router/task_model.h"
#include "task_stream.h"

namespace sluice::router {

std::string validate(const task_config& c) {
  if (c.hash_bits < 8 || c.hash_bits > 24) return "hash_bits must be in 8..24";
  if (c.word_ngram_max < 1 || c.word_ngram_max > 3) return "word_ngram_max must be in 1..3";
  if (c.char_ngram_max != 0 && (c.char_ngram_max < detail::task_char_ngram_min || c.char_ngram_max > 5))
    return "char_ngram_max must be 0 (no character n-grams) or in 3..5";
  return {};
}

size_t task_feature_count(const task_config& c) { return size_t{1} << c.hash_bits; }

std::string_view task_query_tail(std::string_view query) { return detail::query_tail(query); }

namespace {

// Stores every feature, then applies each block's scale at the end.
struct collecting_sink {
  sparse_features& out;
  std::vector<uint8_t> blocks;
  template <detail::task_block B>
  void add(uint32_t index, float value) {
    out.index.push_back(index);
    out.value.push_back(value);
    blocks.push_back(static_cast<uint8_t>(B));
  }
  void finish(const float (&scale)[detail::tb_count]) {
    for (size_t i = 0; i < out.value.size(); ++i) out.value[i] *= scale[blocks[i]];
  }
};

}  // namespace

void extract_task_features(const task_config& config, std::string_view query, sparse_features& out) {
  out.index.clear();
  out.value.clear();
  if (!validate(config).empty()) return;  // an unusable config has no features (hash_bits out of range would be UB)
  collecting_sink sink{out, {}};
  detail::stream_task_features(config, detail::query_tail(query), sink);
}

}  // namespace sluice::router
