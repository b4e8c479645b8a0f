// The one feature extraction routine, written once as a template over a sink so that training (which stores
// the sparse vector) and serving (which folds each feature straight into the score, allocation-free) run the
// same code. What must not go in here: weights, model math, anything that allocates per request.
//
// Sink contract:  void add(block b, uint32_t index, float value);   // any number of times, any order
//                 void finish(const float (&scale)[block_count]);   // once, last: block b's values are scaled
// Each hashed block is scaled by 1/sqrt(its feature count) so long and short prompts have comparable norms.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string_view>

#include "sluice/router/chat.h"
#include "sluice/router/features.h"

namespace sluice::router::detail {

enum block : int { block_dense = 0, block_word = 1, block_char = 2, block_count = 3 };

// splitmix64's finaliser: a cheap full-avalanche mix so that the low bits used as an index are well spread.
inline uint64_t mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

// Dense slots, in order. dense_feature_name() in features.cpp lists the same names.
enum dense_slot : uint32_t {
  d_log_chars,
  d_log_tokens_est,
  d_length_bin0,  // 12 half-octave bins of the character count, 32 .. 2048+
  d_turns = d_length_bin0 + 12,
  d_has_system,
  d_log_context_chars,
  d_assistant_turns,
  d_log_lines,
  d_digit_share,
  d_upper_share,
  d_punct_share,
  d_question_marks,
  d_wh_words,
  d_negations,
  d_emphasised_negation,
  d_the_following,
  d_option_lines,
  d_code_markers,
  d_math_operators,
  d_math_symbols,
  d_math_words,
  d_json_markers,
  d_starts_with_brace,
  d_numbers,
  d_avg_word_len,
  d_long_word_share,
  d_distinct_word_share,
  d_log_words,
  d_has_max_tokens,
  d_log_max_tokens,
  d_format_json_object,
  d_format_json_schema,
  d_has_tools,
  d_has_temperature,
  d_temperature,
  d_non_text_parts,
  d_has_stop,
  d_end
};
static_assert(d_end == dense_feature_count);

// The text that is featurised: the raw prompt for the completions API, else the last user message (falling
// back to the last message of any role).
inline std::string_view focus_text(const chat_request& r, size_t& focus_index) {
  focus_index = r.messages.size();
  if (r.format == wire_format::openai_completions && !r.prompt.empty()) return r.prompt;
  for (size_t i = r.messages.size(); i-- > 0;) {
    if (r.messages[i].role_ == role::user) {
      focus_index = i;
      return r.messages[i].content;
    }
  }
  if (!r.messages.empty()) {
    focus_index = r.messages.size() - 1;
    return r.messages.back().content;
  }
  return {};
}

inline bool word_is(const char* w, size_t n, std::string_view s) { return n == s.size() && std::string_view(w, n) == s; }

// Cue words, matched on the lowercased word. Kept short: they are compared for every word.
inline void count_cues(const char* w, size_t n, bool all_upper, uint32_t& wh, uint32_t& neg, uint32_t& emph,
                       uint32_t& math, uint32_t& code) {
  if (n < 2 || n > 11) return;
  switch (w[0]) {
    case 'w':
      if (word_is(w, n, "what") || word_is(w, n, "which") || word_is(w, n, "who") || word_is(w, n, "whom") ||
          word_is(w, n, "whose") || word_is(w, n, "when") || word_is(w, n, "where") || word_is(w, n, "why"))
        ++wh;
      break;
    case 'h':
      if (word_is(w, n, "how")) ++wh;
      break;
    case 'n':
      if (word_is(w, n, "not") || word_is(w, n, "never") || word_is(w, n, "none")) {
        ++neg;
        if (all_upper && n >= 3) ++emph;
      }
      break;
    case 'e':
      if (word_is(w, n, "except")) {
        ++neg;
        if (all_upper) ++emph;
      } else if (word_is(w, n, "equation") || word_is(w, n, "evaluate")) {
        ++math;
      }
      break;
    case 'l':
      if (word_is(w, n, "least")) {
        ++neg;
        if (all_upper) ++emph;
      } else if (word_is(w, n, "lambda") || word_is(w, n, "let")) {
        ++code;
      }
      break;
    case 'f':
      if (word_is(w, n, "false") || word_is(w, n, "incorrect")) ++neg;
      if (word_is(w, n, "function")) ++code;
      break;
    case 's':
      if (word_is(w, n, "solve") || word_is(w, n, "sum") || word_is(w, n, "sqrt")) ++math;
      break;
    case 'c':
      if (word_is(w, n, "calculate") || word_is(w, n, "compute")) ++math;
      if (word_is(w, n, "const") || word_is(w, n, "class")) ++code;
      break;
    case 'i':
      if (word_is(w, n, "integral") || word_is(w, n, "integer")) ++math;
      if (word_is(w, n, "import") || word_is(w, n, "include") || word_is(w, n, "int")) ++code;
      break;
    case 'p':
      if (word_is(w, n, "probability") || word_is(w, n, "prove")) ++math;
      if (word_is(w, n, "print") || word_is(w, n, "printf")) ++code;
      break;
    case 'd':
      if (word_is(w, n, "derivative")) ++math;
      if (word_is(w, n, "def")) ++code;
      break;
    case 'r':
      if (word_is(w, n, "return")) ++code;
      break;
    case 'v':
      if (word_is(w, n, "void") || word_is(w, n, "var")) ++code;
      break;
    default:
      break;
  }
}

// Multiple-choice when at least two lines start like an option ("A. ", "B) ", "(C)"): a quick scan of line starts.
inline bool looks_multiple_choice(std::string_view text) {
  int options = 0;
  for (size_t pos = 0; pos < text.size();) {
    if (pos + 2 < text.size()) {
      const char a = text[pos], b = text[pos + 1], c = text[pos + 2];
      if ((a >= 'A' && a <= 'J' && (b == '.' || b == ')') && c == ' ') || (a == '(' && b >= 'A' && b <= 'J' && c == ')'))
        if (++options == 2) return true;
    }
    const size_t nl = text.find('\n', pos);
    if (nl == std::string_view::npos) break;
    pos = nl + 1;
  }
  return false;
}

template <class Sink>
void stream_features(const feature_config& cfg, const chat_request& req, Sink& sink) {
  size_t focus_index = 0;
  const std::string_view text = focus_text(req, focus_index);
  const uint32_t mask = (uint32_t{1} << cfg.hash_bits) - 1;
  const uint32_t base = static_cast<uint32_t>(dense_feature_count);
  const uint64_t format = cfg.format_cues ? (looks_multiple_choice(text) ? 2 : 1) : 0;
  const uint64_t seed = mix64(cfg.hash_seed + 0x9e3779b97f4a7c15ULL * (1 + format));

  auto emit_hash = [&](block b, uint64_t h) {
    sink.add(b, base + static_cast<uint32_t>(h & mask), (h >> 63) ? -1.0f : 1.0f);
  };

  // Text statistics, gathered in the same pass as the n-grams.
  uint32_t n_digit = 0, n_upper = 0, n_punct = 0, n_lines = 1, n_question = 0, n_option_lines = 0;
  uint32_t n_code = 0, n_math_ops = 0, n_math_sym = 0, n_json = 0;
  uint32_t n_words = 0, n_word_chars = 0, n_long_words = 0, n_numbers = 0;
  uint32_t n_wh = 0, n_neg = 0, n_emph = 0, n_math_words = 0, n_the_following = 0;
  uint32_t n_word_feats = 0, n_char_feats = 0;
  uint64_t distinct_bits[8] = {};  // 512-bit set of word hashes: an allocation-free distinct-word estimate

  // Word state: FNV-1a over the normalised word (lowercase, digits as '0'), the first bytes kept for cue matching.
  uint64_t word_hash = 0xcbf29ce484222325ULL;
  uint32_t word_len = 0;
  bool word_all_upper = true, word_numeric = true;
  char word_buf[12];
  uint64_t prev1 = 0, prev2 = 0;  // hashes of the previous two words (0 = none)
  bool prev_was_the = false;

  // Character n-gram state: the last 8 normalised bytes, whitespace runs collapsed to one space.
  uint64_t window = 0;
  uint32_t window_fill = 0;
  bool last_space = true;
  const bool use_chars = cfg.char_ngram_min != 0;

  // Line-start state, for option lines ("A. ...", "B) ...", "(C) ...") and indented code.
  uint32_t line_pos = 0;
  char line_c0 = 0, line_c1 = 0, line_c2 = 0;

  auto end_word = [&]() {
    if (word_len == 0) return;
    ++n_words;
    n_word_chars += word_len;
    if (word_len >= 10) ++n_long_words;
    if (word_numeric) ++n_numbers;
    const uint64_t h = mix64(word_hash ^ seed);
    distinct_bits[(h >> 20) & 7] |= uint64_t{1} << ((h >> 23) & 63);
    const size_t kept = std::min<size_t>(word_len, sizeof word_buf);
    if (word_len <= sizeof word_buf)
      count_cues(word_buf, kept, word_all_upper && !word_numeric, n_wh, n_neg, n_emph, n_math_words, n_code);
    const bool is_the = word_is(word_buf, kept, "the");
    if (prev_was_the && word_is(word_buf, kept, "following")) ++n_the_following;
    prev_was_the = is_the;
    if (cfg.word_ngram_max >= 1) {
      emit_hash(block_word, h);
      ++n_word_feats;
    }
    if (cfg.word_ngram_max >= 2 && prev1 != 0) {
      emit_hash(block_word, mix64(prev1 * 0x9e3779b97f4a7c15ULL + h + 2));
      ++n_word_feats;
    }
    if (cfg.word_ngram_max >= 3 && prev2 != 0) {
      emit_hash(block_word, mix64((prev2 * 0x9e3779b97f4a7c15ULL + prev1) * 0xc2b2ae3d27d4eb4fULL + h + 3));
      ++n_word_feats;
    }
    prev2 = prev1;
    prev1 = h;
    word_hash = 0xcbf29ce484222325ULL;
    word_len = 0;
    word_all_upper = true;
    word_numeric = true;
  };

  for (size_t i = 0; i < text.size(); ++i) {
    const unsigned char c = static_cast<unsigned char>(text[i]);
    const bool is_upper = c >= 'A' && c <= 'Z';
    const bool is_lower = c >= 'a' && c <= 'z';
    const bool is_digit = c >= '0' && c <= '9';
    const bool is_word = is_upper || is_lower || is_digit || c >= 0x80;
    const bool is_space = c == ' ' || c == '\n' || c == '\t' || c == '\r';
    unsigned char norm = is_upper ? static_cast<unsigned char>(c + 32) : is_digit ? '0' : c;

    if (is_word) {
      if (word_len < sizeof word_buf) word_buf[word_len] = static_cast<char>(norm);
      ++word_len;
      word_hash = (word_hash ^ norm) * 0x100000001b3ULL;
      if (is_lower) word_all_upper = false;
      if (!is_digit) word_numeric = false;
      if (is_digit) ++n_digit;
      if (is_upper) ++n_upper;
    } else {
      end_word();
      if (!is_space) {
        ++n_punct;
        switch (c) {
          case '?': ++n_question; break;
          case '{': case '}': ++n_json; ++n_code; break;
          case ';': ++n_code; break;
          case '`': ++n_code; break;
          case '"': case ':': case '[': case ']': ++n_json; break;
          case '+': case '=': case '*': case '/': case '<': case '>': case '-': ++n_math_ops; break;
          case '^': case '\\': case '$': case '%': case '|': ++n_math_sym; break;
          default: break;
        }
      }
    }

    // Line starts: option markers and indentation.
    if (c == '\n') {
      ++n_lines;
      line_pos = 0;
      line_c0 = line_c1 = line_c2 = 0;
    } else {
      if (line_pos == 0) line_c0 = static_cast<char>(c);
      else if (line_pos == 1) line_c1 = static_cast<char>(c);
      else if (line_pos == 2) {
        line_c2 = static_cast<char>(c);
        const bool letter0 = line_c0 >= 'A' && line_c0 <= 'J';
        const bool letter1 = line_c1 >= 'A' && line_c1 <= 'J';
        if ((letter0 && (line_c1 == '.' || line_c1 == ')') && line_c2 == ' ') ||
            (line_c0 == '(' && letter1 && line_c2 == ')'))
          ++n_option_lines;
      } else if (line_pos == 3 && line_c0 == ' ' && line_c1 == ' ' && line_c2 == ' ' && c == ' ') {
        ++n_code;
      }
      ++line_pos;
    }

    // Character n-grams.
    if (use_chars) {
      if (is_space) {
        if (last_space) continue;
        norm = ' ';
        last_space = true;
      } else {
        last_space = false;
      }
      window = (window << 8) | norm;
      if (window_fill < 8) ++window_fill;
      for (uint32_t n = cfg.char_ngram_min; n <= cfg.char_ngram_max && n <= window_fill; ++n) {
        const uint64_t key = n == 8 ? window : window & ((uint64_t{1} << (8 * n)) - 1);
        emit_hash(block_char, mix64(key ^ seed ^ (uint64_t{n} << 58)));
        ++n_char_feats;
      }
    }
  }
  end_word();

  // Dense block.
  const double chars = static_cast<double>(text.size());
  const double inv_chars = chars > 0 ? 1.0 / chars : 0.0;
  const double tokens_est = n_words + n_punct;  // one token per word or punctuation mark: a BPE-free estimate
  auto put = [&](uint32_t slot, double v) {
    if (v == 0.0) return;
    if (format == 0) sink.add(block_dense, slot, static_cast<float>(v));
    else  // the format-specific dense features live in the hashed block
      sink.add(block_dense, base + static_cast<uint32_t>(mix64(seed ^ (0xd0000 + slot)) & mask), static_cast<float>(v));
  };
  put(d_log_chars, std::log1p(chars) / 8.0);
  put(d_log_tokens_est, std::log1p(tokens_est) / 8.0);
  const int bin = std::clamp(static_cast<int>(std::floor(2.0 * std::log2(chars + 1.0))) - 10, 0, 11);
  put(d_length_bin0 + static_cast<uint32_t>(bin), 1.0);

  size_t context_chars = 0;
  uint32_t assistant_turns = 0;
  bool has_system = false;
  for (size_t i = 0; i < req.messages.size(); ++i) {
    const message& m = req.messages[i];
    if (i != focus_index) context_chars += m.content.size();
    if (m.role_ == role::assistant) ++assistant_turns;
    if (m.role_ == role::system || m.role_ == role::developer) has_system = true;
  }
  put(d_turns, std::log1p(static_cast<double>(req.messages.size())) / 3.0);
  put(d_has_system, has_system ? 1.0 : 0.0);
  put(d_log_context_chars, std::log1p(static_cast<double>(context_chars)) / 8.0);
  put(d_assistant_turns, std::log1p(assistant_turns) / 3.0);
  put(d_log_lines, std::log1p(n_lines) / 5.0);
  put(d_digit_share, n_digit * inv_chars);
  put(d_upper_share, n_upper * inv_chars);
  put(d_punct_share, n_punct * inv_chars);
  put(d_question_marks, std::log1p(n_question) / 2.0);
  put(d_wh_words, std::log1p(n_wh) / 2.0);
  put(d_negations, std::log1p(n_neg) / 2.0);
  put(d_emphasised_negation, n_emph > 0 ? 1.0 : 0.0);
  put(d_the_following, n_the_following > 0 ? 1.0 : 0.0);
  put(d_option_lines, std::log1p(n_option_lines) / 2.0);
  put(d_code_markers, std::log1p(n_code) / 3.0);
  put(d_math_operators, std::log1p(n_math_ops) / 3.0);
  put(d_math_symbols, std::log1p(n_math_sym) / 3.0);
  put(d_math_words, std::log1p(n_math_words) / 2.0);
  put(d_json_markers, std::log1p(n_json) / 4.0);
  size_t first = 0;
  while (first < text.size() && (text[first] == ' ' || text[first] == '\n' || text[first] == '\t')) ++first;
  put(d_starts_with_brace, first < text.size() && (text[first] == '{' || text[first] == '[') ? 1.0 : 0.0);
  put(d_numbers, std::log1p(n_numbers) / 3.0);
  put(d_avg_word_len, n_words ? static_cast<double>(n_word_chars) / n_words / 10.0 : 0.0);
  put(d_long_word_share, n_words ? static_cast<double>(n_long_words) / n_words : 0.0);
  if (n_words) {
    int bits = 0;
    for (uint64_t w : distinct_bits) bits += __builtin_popcountll(w);
    // Linear counting: distinct ~= -m ln(1 - bits/m), m = 512; divided by the word count.
    const double m = 512.0;
    const double distinct = bits >= 512 ? m * std::log(m) : -m * std::log(1.0 - bits / m);
    put(d_distinct_word_share, std::min(1.0, distinct / n_words));
  }
  put(d_log_words, std::log1p(n_words) / 7.0);
  put(d_has_max_tokens, req.max_output_tokens ? 1.0 : 0.0);
  put(d_log_max_tokens, req.max_output_tokens ? std::log1p(std::max(0, *req.max_output_tokens)) / 8.0 : 0.0);
  put(d_format_json_object, req.response_format_ == response_format::json_object ? 1.0 : 0.0);
  put(d_format_json_schema, req.response_format_ == response_format::json_schema ? 1.0 : 0.0);
  put(d_has_tools, req.has_tools ? 1.0 : 0.0);
  put(d_has_temperature, req.sampling.temperature ? 1.0 : 0.0);
  put(d_temperature, req.sampling.temperature ? std::clamp(*req.sampling.temperature, 0.0, 2.0) / 2.0 : 0.0);
  int non_text = 0;
  for (const message& m : req.messages) non_text += m.parts_non_text;
  put(d_non_text_parts, non_text > 0 ? 1.0 : 0.0);
  put(d_has_stop, req.stop.empty() ? 0.0 : 1.0);

  const float scale[block_count] = {
      1.0f,
      n_word_feats ? static_cast<float>(1.0 / std::sqrt(static_cast<double>(n_word_feats))) : 0.0f,
      n_char_feats ? static_cast<float>(1.0 / std::sqrt(static_cast<double>(n_char_feats))) : 0.0f,
  };
  sink.finish(scale);
}

}  // namespace sluice::router::detail
