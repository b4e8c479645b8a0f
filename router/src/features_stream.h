// The one feature extraction routine, written once as a template over a sink so that training (which stores
// the sparse vector) and serving (which folds each feature straight into the score, allocation-free) run the
// same code. What must not go in here: weights, model math, anything that allocates per request.
//
// Sink contract:  template <block B> void add(uint32_t index, float value);  // any number of times, any order
//                 void finish(const float (&scale)[block_count]);   // once, last: block b's values are scaled
// Each hashed block is scaled by 1/sqrt(its feature count) so long and short prompts have comparable norms.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif
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

// A word's hash before seeding: 8 bytes at a time, ASCII case folded by setting bit 5 (digits and lower case
// already have it; UTF-8 bytes are folded consistently). Bytes are packed little-endian whichever path reads them,
// so a word hashes the same wherever it sits. may_overread: 8 bytes past p + (len & ~7) are readable.
inline uint64_t fold_hash(const unsigned char* p, size_t len, bool may_overread) {
  uint64_t h = 0xcbf29ce484222325ULL;
  size_t k = 0;
  for (; k + 8 <= len; k += 8) {
    uint64_t x;
    std::memcpy(&x, p + k, 8);
    h = (h ^ (x | 0x2020202020202020ULL)) * 0x100000001b3ULL;
  }
  const size_t rest = len - k;
  uint64_t tail = 0;
  if (rest > 0 && may_overread) {  // one masked 8-byte load instead of a byte loop
    std::memcpy(&tail, p + k, 8);
    tail = (tail & (~uint64_t{0} >> (8 * (8 - rest)))) | (0x2020202020202020ULL >> (8 * (8 - rest)));
  } else {
    for (size_t j = 0; j < rest; ++j) tail |= static_cast<uint64_t>(p[k + j] | 0x20u) << (8 * j);
  }
  return (h ^ tail ^ (uint64_t{len} << 56)) * 0x100000001b3ULL;
}

// Cue words, recognised by their fold_hash through a small table (no per-word string compares).
enum cue : uint8_t { cue_none, cue_wh, cue_negation, cue_math, cue_code, cue_the, cue_following };

struct cue_table {
  static constexpr size_t size = 128;  // power of two, well above the number of cue words
  uint64_t key[size] = {};
  uint8_t kind[size] = {};
  static size_t slot(uint64_t h) { return static_cast<size_t>((h * 0x9e3779b97f4a7c15ULL) >> 57); }
  void insert(std::string_view word, cue c) {
    const uint64_t h = fold_hash(reinterpret_cast<const unsigned char*>(word.data()), word.size(), false);
    size_t i = slot(h);
    while (key[i] != 0 && key[i] != h) i = (i + 1) & (size - 1);
    key[i] = h;
    kind[i] = c;
  }
  cue find(uint64_t h) const {
    for (size_t i = slot(h);; i = (i + 1) & (size - 1)) {
      if (key[i] == h) return static_cast<cue>(kind[i]);
      if (key[i] == 0) return cue_none;
    }
  }
};

inline const cue_table& cues() {
  static const cue_table t = [] {
    cue_table x;
    for (std::string_view w : {"what", "which", "who", "whom", "whose", "when", "where", "why", "how"}) x.insert(w, cue_wh);
    for (std::string_view w : {"not", "never", "none", "except", "least", "false", "incorrect"}) x.insert(w, cue_negation);
    for (std::string_view w : {"equation", "evaluate", "solve", "sum", "sqrt", "calculate", "compute", "integral",
                               "integer", "probability", "prove", "derivative"})
      x.insert(w, cue_math);
    for (std::string_view w : {"lambda", "let", "function", "const", "class", "import", "include", "int", "print",
                               "printf", "def", "return", "void", "var"})
      x.insert(w, cue_code);
    x.insert("the", cue_the);
    x.insert("following", cue_following);
    return x;
  }();
  return t;
}

// Byte classes and normalisation, built once: the scanning loops look bytes up instead of branching on ranges.
enum : uint8_t { cls_word = 1, cls_upper = 2, cls_digit = 4, cls_lower = 8 };
enum : uint8_t {
  punct_none, punct_space, punct_newline, punct_question, punct_brace, punct_code, punct_json, punct_math_op,
  punct_math_sym
};
// Lanes of the packed byte-class counters (stat0 holds lanes 0..7, stat1 lanes 8..15).
enum : int {
  stat_digit, stat_upper, stat_question, stat_brace, stat_code, stat_json, stat_math_op, stat_math_sym,
  stat_punct = 8
};
struct char_tables {
  uint64_t stat0[256];  // per byte: 1 << (8 * lane) for each lane 0..7 the byte counts in
  uint64_t stat1[256];  // the same for lanes 8..15
  uint8_t cls[256];
  uint8_t norm[256];   // lowercase, digits as '0', whitespace as ' '
  uint8_t punct[256];  // for non-word bytes
};
inline const char_tables& tables() {
  static const char_tables t = [] {
    char_tables x{};
    for (int c = 0; c < 256; ++c) {
      const bool upper = c >= 'A' && c <= 'Z', lower = c >= 'a' && c <= 'z', digit = c >= '0' && c <= '9';
      x.cls[c] = static_cast<uint8_t>(((upper || lower || digit || c >= 0x80) ? cls_word : 0) | (upper ? cls_upper : 0) |
                                      (digit ? cls_digit : 0) | (lower ? cls_lower : 0));
      x.norm[c] = static_cast<uint8_t>(upper ? c + 32 : digit ? '0' : c);
      x.punct[c] = punct_none;
    }
    for (int c : {' ', '\t', '\r'}) x.norm[c] = ' ', x.punct[c] = punct_space;
    x.norm['\n'] = ' ';
    x.punct['\n'] = punct_newline;
    x.punct['?'] = punct_question;
    for (int c : {'{', '}'}) x.punct[c] = punct_brace;
    for (int c : {';', '`'}) x.punct[c] = punct_code;
    for (int c : {'"', ':', '[', ']'}) x.punct[c] = punct_json;
    for (int c : {'+', '=', '*', '/', '<', '>', '-'}) x.punct[c] = punct_math_op;
    for (int c : {'^', '\\', '$', '%', '|'}) x.punct[c] = punct_math_sym;
    auto lane = [&](int c, int l) {
      if (l < 8) x.stat0[c] |= uint64_t{1} << (8 * l);
      else x.stat1[c] |= uint64_t{1} << (8 * (l - 8));
    };
    for (int c = 0; c < 256; ++c) {
      if (c >= '0' && c <= '9') lane(c, stat_digit);
      if (c >= 'A' && c <= 'Z') lane(c, stat_upper);
      if (!(x.cls[c] & cls_word) && x.punct[c] != punct_space && x.punct[c] != punct_newline) lane(c, stat_punct);
      switch (x.punct[c]) {
        case punct_question: lane(c, stat_question); break;
        case punct_brace: lane(c, stat_brace); break;
        case punct_code: lane(c, stat_code); break;
        case punct_json: lane(c, stat_json); break;
        case punct_math_op: lane(c, stat_math_op); break;
        case punct_math_sym: lane(c, stat_math_sym); break;
        default: break;
      }
    }
    return x;
  }();
  return t;
}

// Bit j set when byte p[j] is a word byte (ASCII letter or digit, or any byte >= 0x80); p must have 64 bytes.
inline uint64_t word_mask64(const unsigned char* p) {
#if defined(__SSE2__)
  const __m128i flip = _mm_set1_epi8(static_cast<char>(0x80));
  const __m128i case_bit = _mm_set1_epi8(0x20);
  uint64_t m = 0;
  for (int k = 0; k < 4; ++k) {
    const __m128i x = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 16 * k));
    // Unsigned "v - base < width" as a signed compare after flipping the top bit.
    const __m128i alpha = _mm_cmplt_epi8(_mm_xor_si128(_mm_sub_epi8(_mm_or_si128(x, case_bit), _mm_set1_epi8('a')), flip),
                                         _mm_set1_epi8(static_cast<char>(-128 + 26)));
    const __m128i digit = _mm_cmplt_epi8(_mm_xor_si128(_mm_sub_epi8(x, _mm_set1_epi8('0')), flip),
                                         _mm_set1_epi8(static_cast<char>(-128 + 10)));
    const __m128i high = _mm_cmplt_epi8(x, _mm_setzero_si128());
    const int bits = _mm_movemask_epi8(_mm_or_si128(_mm_or_si128(alpha, digit), high));
    m |= static_cast<uint64_t>(static_cast<uint16_t>(bits)) << (16 * k);
  }
  return m;
#else
  uint64_t m = 0;
  const char_tables& t = tables();
  const cue_table& cue_words = cues();
  for (int j = 0; j < 64; ++j) m |= static_cast<uint64_t>(t.cls[p[j]] & cls_word) << j;
  return m;
#endif
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

// Calls emit(hash) for each character lo..hi-gram (2 <= lo <= hi <= 8) of the n bytes at s, normalised by
// tables().norm (ASCII lower case, digits as '0', whitespace as ' '), and returns how many it emitted. The hash's
// top bits are well mixed (Fibonacci hashing), so callers take a slot from them. Shared by the request features and
// the task model's features: changing it changes both extractors' output.
template <class F>
uint32_t for_each_char_ngram(const unsigned char* s, size_t n, uint32_t lo, uint32_t hi, uint64_t seed, F&& emit) {
  const char_tables& t = tables();
  uint64_t window = 0;
  const uint64_t lo_mask = lo == 8 ? ~uint64_t{0} : (uint64_t{1} << (8 * lo)) - 1;
  const uint64_t lo_salt = seed ^ (uint64_t{lo} << 58);
  const size_t warm = std::min<size_t>(n, lo - 1);
  for (size_t i = 0; i < warm; ++i) window = (window << 8) | t.norm[s[i]];
  for (size_t i = warm; i < n; ++i) {
    window = (window << 8) | t.norm[s[i]];
    // One multiply (Fibonacci hashing; the top bits are well mixed) instead of a full mix per byte.
    emit(((window & lo_mask) ^ lo_salt) * 0x9e3779b97f4a7c15ULL);
  }
  if (hi > lo) {  // longer n-grams: the general (slower) loop
    window = 0;
    for (size_t i = 0; i < n; ++i) {
      window = (window << 8) | t.norm[s[i]];
      for (uint32_t g = lo + 1; g <= hi && g <= i + 1; ++g) {
        const uint64_t key = g == 8 ? window : window & ((uint64_t{1} << (8 * g)) - 1);
        emit((key ^ seed ^ (uint64_t{g} << 58)) * 0x9e3779b97f4a7c15ULL);
      }
    }
  }
  uint32_t count = 0;
  for (uint32_t g = lo; g <= hi; ++g) count += n >= g ? static_cast<uint32_t>(n - g + 1) : 0;
  return count;
}

template <class Sink>
void stream_features(const feature_config& cfg, const chat_request& req, Sink& sink) {
  size_t focus_index = 0;
  const std::string_view text = focus_text(req, focus_index);
  const uint32_t base = static_cast<uint32_t>(dense_feature_count);
  const uint64_t format = cfg.format_cues ? (looks_multiple_choice(text) ? 2 : 1) : 0;
  const uint64_t seed = mix64(cfg.hash_seed + 0x9e3779b97f4a7c15ULL * (1 + format));

  // A hashed feature takes its slot from the top hash_bits bits and its sign from the bit below them.
  const int index_shift = 64 - static_cast<int>(cfg.hash_bits);
  auto slot_of = [&](uint64_t h) { return base + static_cast<uint32_t>(h >> index_shift); };
  // Arithmetic, not a select: the sign is a coin flip per feature, and a branch on it mispredicts half the time.
  auto sign_of = [&](uint64_t h) { return static_cast<float>(1 - 2 * static_cast<int>((h >> (index_shift - 1)) & 1)); };
  auto emit_word = [&](uint64_t h) { sink.template add<block_word>(slot_of(h), sign_of(h)); };
  auto emit_char = [&](uint64_t h) { sink.template add<block_char>(slot_of(h), sign_of(h)); };

  // Text statistics, filled by the passes below.
  uint32_t n_digit = 0, n_upper = 0, n_punct = 0, n_lines = 1, n_question = 0, n_option_lines = 0;
  uint32_t n_code = 0, n_math_ops = 0, n_math_sym = 0, n_json = 0;
  uint32_t n_words = 0, n_word_chars = 0, n_long_words = 0, n_numbers = 0;
  uint32_t n_wh = 0, n_neg = 0, n_emph = 0, n_math_words = 0, n_the_following = 0;
  uint32_t n_word_feats = 0, n_char_feats = 0;
  uint64_t distinct_bits[8] = {};  // 512-bit set of word hashes: an allocation-free distinct-word estimate
  uint64_t prev1 = 0, prev2 = 0;   // hashes of the previous two words (0 = none)
  bool prev_was_the = false;

  const unsigned char* s = reinterpret_cast<const unsigned char*>(text.data());
  const size_t n = text.size();
  const char_tables& t = tables();
  const cue_table& cue_words = cues();

  // Line starts: option markers ("A. ", "B) ", "(C)") and indented code, by looking ahead from the line start.
  auto line_start = [&](size_t i) {
    if (i + 2 < n) {
      const unsigned char a = s[i], b = s[i + 1], c = s[i + 2];
      if ((a >= 'A' && a <= 'J' && (b == '.' || b == ')') && c == ' ') || (a == '(' && b >= 'A' && b <= 'J' && c == ')'))
        ++n_option_lines;
      else if (i + 3 < n && a == ' ' && b == ' ' && c == ' ' && s[i + 3] == ' ')
        ++n_code;
    }
  };
  line_start(0);
  for (const void* p = n > 0 ? std::memchr(s, '\n', n) : nullptr; p != nullptr;) {  // (null s when n == 0)
    const size_t at = static_cast<size_t>(static_cast<const unsigned char*>(p) - s);
    ++n_lines;
    line_start(at + 1);
    p = at + 1 < n ? std::memchr(s + at + 1, '\n', n - at - 1) : nullptr;
  }

  // Byte classes counted in one pass: each byte adds its packed increments (eight 8-bit lanes) to an
  // accumulator, flushed before a lane can overflow. One load and one add per byte.
  {
    uint32_t lanes[16] = {};
    for (size_t i = 0; i < n;) {
      const size_t end = std::min(n, i + 255);
      uint64_t acc0 = 0, acc1 = 0;
      for (; i < end; ++i) {
        acc0 += t.stat0[s[i]];
        acc1 += t.stat1[s[i]];
      }
      for (int k = 0; k < 8; ++k) {
        lanes[k] += (acc0 >> (8 * k)) & 0xff;
        lanes[8 + k] += (acc1 >> (8 * k)) & 0xff;
      }
    }
    n_digit = lanes[stat_digit];
    n_upper = lanes[stat_upper];
    n_question = lanes[stat_question];
    n_json += lanes[stat_json] + lanes[stat_brace];
    n_code += lanes[stat_code] + lanes[stat_brace];
    n_math_ops = lanes[stat_math_op];
    n_math_sym = lanes[stat_math_sym];
    n_punct = lanes[stat_punct];
  }

  // Words, found with a bit mask of word bytes per 64-byte block (no branch per byte).
  auto word_mask = [&](size_t block_start) {  // bit j: byte block_start + j is a word byte (0 past the end)
    if (block_start + 64 <= n) return word_mask64(s + block_start);
    uint64_t m = 0;
    for (size_t j = block_start; j < n; ++j) m |= static_cast<uint64_t>(t.cls[s[j]] & cls_word) << (j - block_start);
    return m;
  };
  size_t mask_block = 0;
  uint64_t mask = n ? word_mask(0) : 0;
  // The first position >= from whose word-ness equals `word`, or n.
  auto next_pos = [&](size_t from, bool word) -> size_t {
    while (from < n) {
      const size_t blk = from & ~size_t{63};
      if (blk != mask_block) {
        mask_block = blk;
        mask = word_mask(blk);
      }
      uint64_t bits = (word ? mask : ~mask) >> (from - blk);
      if (bits != 0) return std::min(n, from + static_cast<size_t>(__builtin_ctzll(bits)));
      from = blk + 64;
    }
    return n;
  };
  for (size_t i = next_pos(0, true); i < n; i = next_pos(i, true)) {
    const size_t start = i;
    i = next_pos(i, false);
    const size_t len = i - start;
    const unsigned char c = s[start];
    // A number hashes as "a number of this many digits", so 17 and 42 are the same feature.
    const bool numeric = (t.cls[c] & cls_digit) != 0;
    uint64_t h;
    if (numeric) {
      size_t digits = 0;
      while (digits < len && (t.cls[s[start + digits]] & cls_digit)) ++digits;
      h = mix64(0x6e756d00ULL + std::min<size_t>(digits, 6) + (digits == len ? 0 : 0x100));
    } else {
      h = fold_hash(s + start, len, start + (len & ~size_t{7}) + 8 <= n);
    }

    ++n_words;
    n_word_chars += static_cast<uint32_t>(len);
    n_long_words += len >= 10;
    n_numbers += numeric;
    const uint64_t wh = mix64(h ^ seed);
    distinct_bits[(wh >> 20) & 7] |= uint64_t{1} << ((wh >> 23) & 63);
    const cue kind = numeric ? cue_none : cue_words.find(h);
    if (kind != cue_none) {
      switch (kind) {
        case cue_wh: ++n_wh; break;
        case cue_negation: {
          ++n_neg;
          bool all_upper = len >= 3;
          for (size_t k = 0; k < len; ++k) all_upper &= (t.cls[s[start + k]] & cls_lower) == 0;
          n_emph += all_upper;
          break;
        }
        case cue_math: ++n_math_words; break;
        case cue_code: ++n_code; break;
        case cue_following: n_the_following += prev_was_the; break;
        default: break;
      }
    }
    prev_was_the = kind == cue_the;
    if (cfg.word_ngram_max >= 1) {
      emit_word(wh);
      ++n_word_feats;
    }
    if (cfg.word_ngram_max >= 2 && prev1 != 0) {
      emit_word(mix64(prev1 * 0x9e3779b97f4a7c15ULL + wh + 2));
      ++n_word_feats;
    }
    if (cfg.word_ngram_max >= 3 && prev2 != 0) {
      emit_word(mix64((prev2 * 0x9e3779b97f4a7c15ULL + prev1) * 0xc2b2ae3d27d4eb4fULL + wh + 3));
      ++n_word_feats;
    }
    prev2 = prev1;
    prev1 = wh;
  }

  // Character n-grams: a separate branch-free pass over the normalised bytes (whitespace as ' ').
  if (cfg.char_ngram_min != 0)
    n_char_feats = for_each_char_ngram(s, n, cfg.char_ngram_min, cfg.char_ngram_max, seed, emit_char);

  // Dense block.
  const double chars = static_cast<double>(text.size());
  const double inv_chars = chars > 0 ? 1.0 / chars : 0.0;
  const double tokens_est = n_words + n_punct;  // one token per word or punctuation mark: a BPE-free estimate
  auto put = [&](uint32_t slot, double v) {
    if (v == 0.0) return;
    if (format == 0) sink.template add<block_dense>(slot, static_cast<float>(v));
    else  // the format-specific dense features live in the hashed block
      sink.template add<block_dense>(slot_of(mix64(seed ^ (0xd0000 + slot))), static_cast<float>(v));
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
