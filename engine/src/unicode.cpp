// Unicode helpers: see unicode.h. What must not go in here: tokenizer logic.
#include "unicode.h"

#include <algorithm>
#include <array>
#include <vector>

namespace sluice::engine {

namespace {

constexpr uint8_t white_bit = 0x80;

// Flat (category | white_bit) table for the Basic Multilingual Plane, built once from the run table;
// code points above it use a binary search over the runs.
const std::vector<uint8_t>& bmp_table() {
  static const std::vector<uint8_t> table = [] {
    std::vector<uint8_t> t(0x10000, 0);
    using namespace unicode_detail;
    for (std::size_t i = 0; i < category_runs_count; ++i) {
      char32_t begin = category_runs[i].first;
      if (begin >= 0x10000) break;
      char32_t end = i + 1 < category_runs_count ? category_runs[i + 1].first : 0x110000;
      end = std::min<char32_t>(end, 0x10000);
      std::fill(t.begin() + begin, t.begin() + end, category_runs[i].cat);
    }
    for (std::size_t i = 0; i < white_space_count; ++i) {
      if (white_space[i] < 0x10000) t[white_space[i]] |= white_bit;
    }
    return t;
  }();
  return table;
}

}  // namespace

cpt_props props_of(char32_t cp) {
  if (cp < 0x10000) {
    uint8_t v = bmp_table()[cp];
    return {static_cast<ucat>(v & 0x7F), (v & white_bit) != 0};
  }
  using namespace unicode_detail;
  if (cp > 0x10FFFF) return {ucat::unassigned, false};
  const category_run* end = category_runs + category_runs_count;
  const category_run* it =
      std::upper_bound(category_runs, end, cp, [](char32_t c, const category_run& r) { return c < r.first; });
  // No White_Space code point lies above the BMP.
  return {static_cast<ucat>((it - 1)->cat), false};
}

char32_t decode_utf8(std::string_view s, std::size_t& pos) {
  const auto b = [&](std::size_t i) { return static_cast<unsigned char>(s[i]); };
  const auto cont = [&](std::size_t i) { return i < s.size() && (b(i) & 0xC0) == 0x80; };
  unsigned char c = b(pos);
  if (c < 0x80) {
    pos += 1;
    return c;
  }
  if ((c & 0x40) == 0) {  // stray continuation byte
    pos += 1;
    return replacement_char;
  }
  if ((c & 0x20) == 0) {
    if (!cont(pos + 1)) {
      pos += 1;
      return replacement_char;
    }
    char32_t cp = (char32_t(c & 0x1F) << 6) | (b(pos + 1) & 0x3F);
    pos += 2;
    return cp;
  }
  if ((c & 0x10) == 0) {
    if (!cont(pos + 1) || !cont(pos + 2)) {
      pos += 1;
      return replacement_char;
    }
    char32_t cp = (char32_t(c & 0x0F) << 12) | (char32_t(b(pos + 1) & 0x3F) << 6) | (b(pos + 2) & 0x3F);
    pos += 3;
    return cp;
  }
  if ((c & 0x08) == 0) {
    if (!cont(pos + 1) || !cont(pos + 2) || !cont(pos + 3)) {
      pos += 1;
      return replacement_char;
    }
    char32_t cp = (char32_t(c & 0x07) << 18) | (char32_t(b(pos + 1) & 0x3F) << 12) |
                  (char32_t(b(pos + 2) & 0x3F) << 6) | (b(pos + 3) & 0x3F);
    if (cp > 0x10FFFF) {
      pos += 1;
      return replacement_char;
    }
    pos += 4;
    return cp;
  }
  pos += 1;
  return replacement_char;
}

void append_utf8(std::string& out, char32_t cp) {
  if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp <= 0x10FFFF) {
    out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    append_utf8(out, replacement_char);
  }
}

int utf8_sequence_length(unsigned char lead) {
  if (lead < 0x80) return 1;
  if (lead < 0xC2) return 0;  // continuation byte or overlong 2-byte lead
  if (lead < 0xE0) return 2;
  if (lead < 0xF0) return 3;
  if (lead < 0xF5) return 4;
  return 0;
}

std::size_t incomplete_utf8_tail(std::string_view s) {
  // Walk back over at most 3 continuation bytes to the lead byte of the last sequence.
  std::size_t n = s.size();
  for (std::size_t back = 1; back <= std::min<std::size_t>(4, n); ++back) {
    unsigned char c = static_cast<unsigned char>(s[n - back]);
    if ((c & 0xC0) == 0x80) continue;  // continuation: keep looking for the lead
    int len = utf8_sequence_length(c);
    return (len > 0 && static_cast<std::size_t>(len) > back) ? back : 0;
  }
  return 0;
}

std::string sanitize_utf8(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  std::size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    const int len = utf8_sequence_length(c);
    // Count the continuation bytes that are valid here; a malformed sequence becomes one U+FFFD for its
    // longest valid prefix (the "maximal subpart" rule of Unicode, as Python's errors="replace").
    int good = len > 0 ? 1 : 0;
    while (good > 0 && good < len && i + good < s.size()) {
      const auto b = static_cast<unsigned char>(s[i + good]);
      unsigned char lo = 0x80, hi = 0xBF;
      if (good == 1) {
        if (c == 0xE0) lo = 0xA0;  // overlong
        if (c == 0xED) hi = 0x9F;  // surrogates
        if (c == 0xF0) lo = 0x90;  // overlong
        if (c == 0xF4) hi = 0x8F;  // above U+10FFFF
      }
      if (b < lo || b > hi) break;
      ++good;
    }
    if (len > 0 && good == len) {
      out.append(s.substr(i, len));
      i += len;
    } else {
      append_utf8(out, replacement_char);
      i += std::max(good, 1);
    }
  }
  return out;
}

}  // namespace sluice::engine
