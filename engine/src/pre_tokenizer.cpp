// Pre-tokenizer scanners: see pre_tokenizer.h. Each scanner walks one segment of code points and emits the
// word the regex alternation would match at that position (leftmost alternative first, greedy).
// What must not go in here: BPE merging, special tokens.
#include "pre_tokenizer.h"

#include "unicode.h"

namespace sluice::engine {

std::optional<pre_kind> pre_kind_from_name(std::string_view name) {
  if (name.empty() || name == "default") return pre_kind::legacy_default;
  if (name == "gpt2" || name == "gpt-2" || name == "mpt" || name == "olmo" || name == "phi-2") return pre_kind::gpt2;
  if (name == "smollm" || name == "starcoder" || name == "refact" || name == "command-r" || name == "codeshell") {
    return pre_kind::smollm;
  }
  if (name == "llama-bpe" || name == "llama3" || name == "llama-v3" || name == "dbrx" || name == "smaug-bpe") {
    return pre_kind::llama3;
  }
  if (name == "qwen2" || name == "stablelm2") return pre_kind::qwen2;
  return std::nullopt;
}

namespace {

// Segment view with out-of-range guards: positions outside [begin, end) read as "no character".
struct segment {
  std::span<const char32_t> cpts;
  uint32_t begin, end;
  bool in(uint32_t i) const { return i >= begin && i < end; }
  char32_t at(uint32_t i) const { return in(i) ? cpts[i] : 0xFFFFFFFFu; }
  bool letter(uint32_t i) const { return in(i) && props_of(cpts[i]).is_letter(); }
  bool number(uint32_t i) const { return in(i) && props_of(cpts[i]).is_number(); }
  bool space(uint32_t i) const { return in(i) && props_of(cpts[i]).white_space; }
  // [^\s\p{L}\p{N}] and in range
  bool other(uint32_t i) const {
    if (!in(i)) return false;
    cpt_props p = props_of(cpts[i]);
    return !p.white_space && !p.is_letter() && !p.is_number();
  }
};

char32_t ascii_lower(char32_t c) { return (c >= 'A' && c <= 'Z') ? c + 32 : c; }

// Length of a contraction ('s 't 're 've 'm 'll 'd) at pos, or 0.
uint32_t contraction_length(const segment& s, uint32_t pos, bool case_insensitive) {
  if (s.at(pos) != U'\'' || !s.in(pos + 1)) return 0;
  auto fold = [&](char32_t c) { return case_insensitive ? ascii_lower(c) : c; };
  char32_t a = fold(s.at(pos + 1));
  if (a == U's' || a == U't' || a == U'm' || a == U'd') return 2;
  if (!s.in(pos + 2)) return 0;
  char32_t b = fold(s.at(pos + 2));
  if ((a == U'r' && b == U'e') || (a == U'v' && b == U'e') || (a == U'l' && b == U'l')) return 3;
  return 0;
}

// Trailing white-space handling shared by both families: \s+(?!\S) then \s+ (n = run length at pos).
uint32_t white_space_word(const segment& s, uint32_t pos) {
  uint32_t n = 0;
  while (s.space(pos + n)) ++n;
  if (n > 1 && s.in(pos + n)) return n - 1;  // leave the last space to prefix the next word
  return n;
}

void split_gpt2(const segment& s, std::vector<word_span>& out) {
  uint32_t pos = s.begin;
  while (pos < s.end) {
    uint32_t start = pos;
    uint32_t len = contraction_length(s, pos, false);
    if (len == 0) {
      uint32_t p = pos + (s.at(pos) == U' ' ? 1 : 0);  // optional leading space
      if (s.letter(p)) {
        while (s.letter(p)) ++p;
        len = p - pos;
      } else if (s.number(p)) {
        while (s.number(p)) ++p;
        len = p - pos;
      } else if (s.other(p)) {
        while (s.other(p)) ++p;
        len = p - pos;
      } else {
        len = white_space_word(s, pos);
        if (len == 0) len = 1;
      }
    }
    pos += len;
    out.push_back({start, pos});
  }
}

void split_llama3(const segment& s, uint32_t max_digits, std::vector<word_span>& out) {
  uint32_t pos = s.begin;
  while (pos < s.end) {
    uint32_t start = pos;
    char32_t c = s.at(pos);
    uint32_t len = contraction_length(s, pos, true);
    if (len > 0) {
      pos += len;
      out.push_back({start, pos});
      continue;
    }
    // [^\r\n\p{L}\p{N}]?\p{L}+
    if (c != U'\r' && c != U'\n' && !s.number(pos) && (s.letter(pos) || s.letter(pos + 1))) {
      uint32_t p = pos + 1;
      while (s.letter(p)) ++p;
      pos = p;
      out.push_back({start, pos});
      continue;
    }
    // \p{N}{1,max_digits}
    if (s.number(pos)) {
      uint32_t p = pos;
      while (s.number(p) && p - pos < max_digits) ++p;
      pos = p;
      out.push_back({start, pos});
      continue;
    }
    // ' ?[^\s\p{L}\p{N}]+[\r\n]*'
    uint32_t p = pos + (c == U' ' ? 1 : 0);
    if (s.other(p)) {
      while (s.other(p)) ++p;
      while (s.at(p) == U'\r' || s.at(p) == U'\n') ++p;
      pos = p;
      out.push_back({start, pos});
      continue;
    }
    // \s*[\r\n]+ : the white-space run up to and including its last \r or \n
    uint32_t n = 0, last_newline_end = 0;
    while (s.space(pos + n)) {
      char32_t w = s.at(pos + n);
      ++n;
      if (w == U'\r' || w == U'\n') last_newline_end = n;
    }
    if (last_newline_end > 0) {
      len = last_newline_end;
    } else {
      len = white_space_word(s, pos);
      if (len == 0) len = 1;
    }
    pos += len;
    out.push_back({start, pos});
  }
}

// Pieces of each input span: maximal runs of code points satisfying `in_run`, and the gaps between them.
template <class Pred>
void isolate_runs(std::span<const char32_t> cpts, const std::vector<word_span>& in, Pred in_run,
                  std::vector<word_span>& out) {
  for (const word_span& w : in) {
    uint32_t gap = w.begin, i = w.begin;
    while (i < w.end) {
      if (!in_run(cpts[i])) {
        ++i;
        continue;
      }
      uint32_t j = i;
      while (j < w.end && in_run(cpts[j])) ++j;
      if (gap < i) out.push_back({gap, i});
      out.push_back({i, j});
      gap = i = j;
    }
    if (gap < w.end) out.push_back({gap, w.end});
  }
}

// Pieces of each input span: every group of three ASCII digits (scanning left to right), and the gaps.
void isolate_digit_triples(std::span<const char32_t> cpts, const std::vector<word_span>& in,
                           std::vector<word_span>& out) {
  auto digit = [&](uint32_t i) { return cpts[i] >= U'0' && cpts[i] <= U'9'; };
  for (const word_span& w : in) {
    uint32_t gap = w.begin, i = w.begin;
    while (i + 2 < w.end) {
      if (digit(i) && digit(i + 1) && digit(i + 2)) {
        if (gap < i) out.push_back({gap, i});
        out.push_back({i, i + 3});
        gap = i = i + 3;
      } else {
        ++i;
      }
    }
    if (gap < w.end) out.push_back({gap, w.end});
  }
}

void split_legacy_default(std::span<const char32_t> cpts, std::vector<word_span>& out) {
  const auto n = static_cast<uint32_t>(cpts.size());
  std::vector<word_span> a{{0, n}}, b;
  isolate_runs(
      cpts, a,
      [](char32_t c) {
        return props_of(c).cat == ucat::punctuation || c == U'$' || c == U'+' || c == U'<' || c == U'=' || c == U'>' ||
               c == U'^' || c == U'~' || c == U'|';
      },
      b);
  a.clear();
  for (const word_span& w : b) split_gpt2(segment{cpts, w.begin, w.end}, a);
  b.clear();
  isolate_runs(
      cpts, a, [](char32_t c) { return props_of(c).is_number(); }, b);
  isolate_digit_triples(cpts, b, out);
}

}  // namespace

void split_words(pre_kind kind, std::span<const char32_t> cpts, std::vector<word_span>& out) {
  const auto n = static_cast<uint32_t>(cpts.size());
  switch (kind) {
    case pre_kind::gpt2:
      split_gpt2(segment{cpts, 0, n}, out);
      break;
    case pre_kind::smollm: {
      // First pass isolates each number code point; the gpt2 pass then runs inside the gaps between them.
      uint32_t gap = 0;
      for (uint32_t i = 0; i < n; ++i) {
        if (!props_of(cpts[i]).is_number()) continue;
        if (gap < i) split_gpt2(segment{cpts, gap, i}, out);
        out.push_back({i, i + 1});
        gap = i + 1;
      }
      if (gap < n) split_gpt2(segment{cpts, gap, n}, out);
      break;
    }
    case pre_kind::llama3:
      split_llama3(segment{cpts, 0, n}, 3, out);
      break;
    case pre_kind::qwen2:
      split_llama3(segment{cpts, 0, n}, 1, out);
      break;
    case pre_kind::legacy_default:
      split_legacy_default(cpts, out);
      break;
  }
}

}  // namespace sluice::engine
