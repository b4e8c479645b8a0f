// Unicode helpers for the tokenizer and text stream: lenient UTF-8 decoding, encoding, and the general
// category class of a code point (from the generated table in unicode_categories.cpp).
// Hand-written rather than std::regex/ICU: std::regex has no \p{L}/\p{N} classes and is slow, and ICU is a
// heavy dependency for three predicates; the pre-tokenizer needs only letter/number/white-space tests.
// What must not go in here: tokenizer logic, regex emulation (see pre_tokenizer.h).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace sluice::engine {

// General-category class (the first letter of Unicode's two-letter category; Cn separate).
enum class ucat : uint8_t { unassigned, letter, mark, number, punctuation, symbol, separator, other };

namespace unicode_detail {
struct category_run {
  char32_t first;  // first code point of the run
  uint8_t cat;     // ucat value
};
extern const category_run category_runs[];
extern const std::size_t category_runs_count;
extern const char32_t white_space[];
extern const std::size_t white_space_count;
}  // namespace unicode_detail

// Property bits of one code point, packed for the pre-tokenizer's inner loops.
struct cpt_props {
  ucat cat = ucat::unassigned;
  bool white_space = false;  // Unicode White_Space (what regex \s matches)
  bool is_letter() const { return cat == ucat::letter; }
  bool is_number() const { return cat == ucat::number; }
};

cpt_props props_of(char32_t cp);

inline constexpr char32_t replacement_char = 0xFFFD;

// Decodes one code point at s[pos] and advances pos. Lenient in the same way as llama.cpp (needed for
// token parity): only the lead/continuation bit patterns are checked (no overlong or surrogate checks); a
// malformed sequence yields U+FFFD and consumes one byte; values above U+10FFFF yield U+FFFD.
char32_t decode_utf8(std::string_view s, std::size_t& pos);

void append_utf8(std::string& out, char32_t cp);

// Length of the UTF-8 sequence a lead byte starts (1..4), or 0 for a continuation / invalid lead byte.
int utf8_sequence_length(unsigned char lead);

// Number of trailing bytes of s that form an incomplete (but so far well-formed) UTF-8 sequence, 0..3.
std::size_t incomplete_utf8_tail(std::string_view s);

// s with every malformed UTF-8 sequence replaced by U+FFFD (strict decoding: no overlongs, no surrogates).
std::string sanitize_utf8(std::string_view s);

}  // namespace sluice::engine
