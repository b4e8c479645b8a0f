// The task model's feature extraction, written once as a template over a sink so that training (which stores the
// sparse vector) and serving (which folds each feature straight into the labels' scores) run the same code.
// Sink contract (features_stream.h's, with this file's blocks):
//   template <task_block B> void add(uint32_t index, float value);   // any number of times, any order
//   void finish(const float (&scale)[tb_count]);                     // once, last
// Features: signed hashed word 1..word_ngram_max-grams and character 3..char_ngram_max-grams of the query tail
// (text_stream.h), each block scaled by 1/sqrt(its feature count). There is no dense block: a label task is
// decided by what the text says. What must not go in here: weights, anything that allocates.
#pragma once

#include <cmath>
#include <cstdint>
#include <string_view>

#include "sluice/router/task_model.h"
#include "text_stream.h"

namespace sluice::router::detail {

enum task_block : int { tb_word = 0, tb_char = 1, tb_count = 2 };

inline constexpr uint32_t task_char_ngram_min = 3;

// `tail` is the query tail (task_query_tail); the config must be valid (validate() empty).
template <class Sink>
void stream_task_features(const task_config& cfg, std::string_view tail, Sink& sink) {
  // A hashed feature takes its slot from the top hash_bits bits and its sign from the bit below them.
  const int index_shift = 64 - static_cast<int>(cfg.hash_bits);
  auto slot_of = [&](uint64_t h) { return static_cast<uint32_t>(h >> index_shift); };
  auto sign_of = [&](uint64_t h) { return static_cast<float>(1 - 2 * static_cast<int>((h >> (index_shift - 1)) & 1)); };
  // One namespace per kind, so that a word and a character n-gram spelling the same bytes do not share a slot.
  const uint64_t seed = mix64(cfg.hash_seed + 0x9e3779b97f4a7c15ULL);
  const uint64_t seed_word = mix64(seed ^ 0x776f7264ULL);  // "word"
  const uint64_t seed_char = mix64(seed ^ 0x63686172ULL);  // "char"

  uint32_t n_word = 0, n_char = 0;
  for_each_word_ngram(tail, seed_word, cfg.word_ngram_max, [&](uint64_t h, uint32_t) {
    sink.template add<tb_word>(slot_of(h), sign_of(h));
    ++n_word;
  });
  if (cfg.char_ngram_max >= task_char_ngram_min) {
    n_char = for_each_char_ngram(reinterpret_cast<const unsigned char*>(tail.data()), tail.size(),
                                 task_char_ngram_min, cfg.char_ngram_max, seed_char,
                                 [&](uint64_t h) { sink.template add<tb_char>(slot_of(h), sign_of(h)); });
  }
  auto inv_sqrt = [](uint32_t count) {
    return count ? static_cast<float>(1.0 / std::sqrt(static_cast<double>(count))) : 0.0f;
  };
  const float scale[tb_count] = {inv_sqrt(n_word), inv_sqrt(n_char)};
  sink.finish(scale);
}

}  // namespace sluice::router::detail
