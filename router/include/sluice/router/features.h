// Request features for the router's classifier: text statistics, signed hashed word and character n-grams, and
// request parameters, computed from the internal chat_request. The feature_config travels inside every model
// file, so the features a model was trained on are exactly the features it is served with.
// What must not go in here: model weights, training, file formats (classifier.h, train.h).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

#include "sluice/router/chat.h"

namespace sluice::router {

// Bumped whenever the extraction code changes what a given config produces; stored in model files and checked
// on load, so a model trained with older extraction code is refused instead of silently scoring garbage.
inline constexpr uint32_t feature_extractor_version = 1;

struct feature_config {
  uint32_t hash_bits = 16;      // the hashed block has 2^hash_bits slots (8..24); 2^16 floats stay in L2
  uint32_t word_ngram_max = 2;  // word n-grams 1..word_ngram_max; 0 = no word features (0..3)
  uint32_t char_ngram_min = 4;  // character n-grams char_ngram_min..char_ngram_max over lowercased text;
  uint32_t char_ngram_max = 4;  //   0 = no character features (min 2..8 when on, max >= min)
  uint32_t hash_seed = 0x5109cefu;
  // 1: n-grams are conjoined with the request's format (multiple-choice or free-form, detected from option
  // lines), and dense features get a format-specific copy too: two tasks share one weight table without
  // their cues fighting. 0: one shared set of features.
  uint32_t format_cues = 1;
  friend bool operator==(const feature_config&, const feature_config&) = default;
};

// Empty when the config is usable; otherwise says which field is out of range.
std::string_view validate(const feature_config& config);

// Dense features (text statistics and request parameters) occupy slots [0, dense_feature_count);
// hashed n-grams occupy [dense_feature_count, dense_feature_count + 2^hash_bits).
inline constexpr size_t dense_feature_count = 48;
size_t feature_count(const feature_config& config);
std::string_view dense_feature_name(size_t slot);  // "" past the dense block

// One request's features as a sparse vector. Indices may repeat (hash collisions, repeated n-grams); consumers add.
struct sparse_features {
  std::vector<uint32_t> index;
  std::vector<float> value;
};

// Allocating form, for training and tests. Serving uses the same code through classifier::score without
// materialising the vector. The text featurised is the last user message (or the raw prompt for
// openai_completions); the rest of the conversation contributes only counts and lengths.
void extract_features(const feature_config& config, const chat_request& request, sparse_features& out);

}  // namespace sluice::router
