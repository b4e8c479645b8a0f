// Feature configuration checks, slot names, and the allocating extraction used by training and tests.
// What must not go in here: the extraction logic itself (features_stream.h, shared with serving).
#include "sluice/router/features.h"

#include <array>

#include "features_stream.h"

namespace sluice::router {

std::string_view validate(const feature_config& c) {
  if (c.hash_bits < 8 || c.hash_bits > 24) return "hash_bits must be in 8..24";
  if (c.word_ngram_max > 3) return "word_ngram_max must be in 0..3";
  if (c.char_ngram_min != 0) {
    if (c.char_ngram_min < 2 || c.char_ngram_min > 8) return "char_ngram_min must be 0 or in 2..8";
    if (c.char_ngram_max < c.char_ngram_min || c.char_ngram_max > 8)
      return "char_ngram_max must be in char_ngram_min..8";
  } else if (c.char_ngram_max != 0) {
    return "char_ngram_max must be 0 when char_ngram_min is 0";
  }
  if (c.format_cues > 1) return "format_cues must be 0 or 1";
  return {};
}

size_t feature_count(const feature_config& c) { return dense_feature_count + (size_t{1} << c.hash_bits); }

std::string_view dense_feature_name(size_t slot) {
  static constexpr std::array<std::string_view, dense_feature_count> names = {
      "log_chars", "log_tokens_est",
      "length_bin_32", "length_bin_45", "length_bin_64", "length_bin_91", "length_bin_128", "length_bin_181",
      "length_bin_256", "length_bin_362", "length_bin_512", "length_bin_724", "length_bin_1024", "length_bin_1448+",
      "turns", "has_system", "log_context_chars", "assistant_turns", "log_lines", "digit_share", "upper_share",
      "punct_share", "question_marks", "wh_words", "negations", "emphasised_negation", "the_following",
      "option_lines", "code_markers", "math_operators", "math_symbols", "math_words", "json_markers",
      "starts_with_brace", "numbers", "avg_word_len", "long_word_share", "distinct_word_share", "log_words",
      "has_max_tokens", "log_max_tokens", "format_json_object", "format_json_schema", "has_tools",
      "has_temperature", "temperature", "non_text_parts", "has_stop"};
  return slot < names.size() ? names[slot] : std::string_view{};
}

namespace {

// Stores every feature, then applies each block's scale at the end.
struct collecting_sink {
  sparse_features& out;
  std::vector<uint8_t> blocks;
  template <detail::block B>
  void add(uint32_t index, float value) {
    out.index.push_back(index);
    out.value.push_back(value);
    blocks.push_back(static_cast<uint8_t>(B));
  }
  void finish(const float (&scale)[detail::block_count]) {
    for (size_t i = 0; i < out.value.size(); ++i) out.value[i] *= scale[blocks[i]];
  }
};

}  // namespace

void extract_features(const feature_config& config, const chat_request& request, sparse_features& out) {
  out.index.clear();
  out.value.clear();
  collecting_sink sink{out, {}};
  detail::stream_features(config, request, sink);
}

}  // namespace sluice::router
