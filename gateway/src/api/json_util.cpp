// See json_util.h. The scanner assumes validated input: it tracks strings (with escapes) and nesting only.
#include "api/json_util.h"

#include <charconv>
#include <cmath>
#include <cstdint>

namespace sluice::gateway {

namespace {

// Length of the valid UTF-8 sequence starting at s[i], or 0 when invalid.
size_t utf8_sequence_length(std::string_view s, size_t i) {
  const auto b0 = static_cast<unsigned char>(s[i]);
  size_t n = 0;
  uint32_t min = 0;
  if (b0 < 0x80) return 1;
  if ((b0 & 0xE0) == 0xC0) { n = 2; min = 0x80; }
  else if ((b0 & 0xF0) == 0xE0) { n = 3; min = 0x800; }
  else if ((b0 & 0xF8) == 0xF0) { n = 4; min = 0x10000; }
  else return 0;
  if (i + n > s.size()) return 0;
  uint32_t cp = b0 & (0x7F >> n);
  for (size_t k = 1; k < n; ++k) {
    const auto b = static_cast<unsigned char>(s[i + k]);
    if ((b & 0xC0) != 0x80) return 0;
    cp = (cp << 6) | (b & 0x3F);
  }
  if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
  return n;
}

size_t skip_ws(std::string_view s, size_t i) {
  while (i < s.size() && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r')) ++i;
  return i;
}

// i at an opening quote; returns one past the closing quote, or npos.
size_t skip_string(std::string_view s, size_t i) {
  for (++i; i < s.size(); ++i) {
    if (s[i] == '\\') ++i;
    else if (s[i] == '"') return i + 1;
  }
  return std::string_view::npos;
}

// Returns one past the end of the value starting at i, or npos.
size_t skip_value(std::string_view s, size_t i) {
  if (i >= s.size()) return std::string_view::npos;
  if (s[i] == '"') return skip_string(s, i);
  if (s[i] == '{' || s[i] == '[') {
    int depth = 0;
    while (i < s.size()) {
      const char c = s[i];
      if (c == '"') {
        i = skip_string(s, i);
        if (i == std::string_view::npos) return i;
        continue;
      }
      if (c == '{' || c == '[') ++depth;
      else if (c == '}' || c == ']') {
        if (--depth == 0) return i + 1;
      }
      ++i;
    }
    return std::string_view::npos;
  }
  while (i < s.size() && s[i] != ',' && s[i] != '}' && s[i] != ']' && s[i] != ' ' && s[i] != '\t' &&
         s[i] != '\n' && s[i] != '\r') {
    ++i;
  }
  return i;
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

void append_utf8(std::string& out, uint32_t cp) {
  if (cp < 0x80) out += static_cast<char>(cp);
  else if (cp < 0x800) { out += static_cast<char>(0xC0 | (cp >> 6)); out += static_cast<char>(0x80 | (cp & 0x3F)); }
  else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12)); out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18)); out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F)); out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

// Unescapes a key's literal (without quotes). Keys in validated JSON are well-formed.
std::string unescape(std::string_view lit) {
  std::string out;
  out.reserve(lit.size());
  for (size_t i = 0; i < lit.size(); ++i) {
    if (lit[i] != '\\' || i + 1 >= lit.size()) { out += lit[i]; continue; }
    const char e = lit[++i];
    switch (e) {
      case 'n': out += '\n'; break;
      case 't': out += '\t'; break;
      case 'r': out += '\r'; break;
      case 'b': out += '\b'; break;
      case 'f': out += '\f'; break;
      case 'u': {
        uint32_t cp = 0;
        for (int k = 0; k < 4 && i + 1 < lit.size(); ++k) cp = cp * 16 + static_cast<uint32_t>(hex_value(lit[++i]));
        if (cp >= 0xD800 && cp <= 0xDBFF && i + 6 < lit.size() + 0 && lit[i + 1] == '\\' && lit[i + 2] == 'u') {
          uint32_t lo = 0;
          for (int k = 0; k < 4; ++k) lo = lo * 16 + static_cast<uint32_t>(hex_value(lit[i + 3 + k]));
          if (lo >= 0xDC00 && lo <= 0xDFFF) { cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00); i += 6; }
        }
        append_utf8(out, cp);
        break;
      }
      default: out += e;
    }
  }
  return out;
}

}  // namespace

void append_json_string(std::string& out, std::string_view s) {
  static const char hex[] = "0123456789abcdef";
  out += '"';
  size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c >= 0x20 && c != '"' && c != '\\' && c < 0x80) {
      size_t j = i + 1;  // copy a run of plain ASCII at once
      while (j < s.size()) {
        const auto d = static_cast<unsigned char>(s[j]);
        if (d < 0x20 || d == '"' || d == '\\' || d >= 0x80) break;
        ++j;
      }
      out.append(s.data() + i, j - i);
      i = j;
      continue;
    }
    switch (c) {
      case '"': out += "\\\""; ++i; continue;
      case '\\': out += "\\\\"; ++i; continue;
      case '\n': out += "\\n"; ++i; continue;
      case '\r': out += "\\r"; ++i; continue;
      case '\t': out += "\\t"; ++i; continue;
      default: break;
    }
    if (c < 0x20) {
      out += "\\u00";
      out += hex[c >> 4];
      out += hex[c & 15];
      ++i;
      continue;
    }
    const size_t n = utf8_sequence_length(s, i);
    if (n == 0) {
      out += "\xEF\xBF\xBD";
      ++i;
    } else {
      out.append(s.data() + i, n);
      i += n;
    }
  }
  out += '"';
}

void append_json_number(std::string& out, double v) {
  if (!std::isfinite(v)) v = 0.0;
  char buf[32];
  auto [p, ec] = std::to_chars(buf, buf + sizeof(buf), v);
  out.append(buf, ec == std::errc() ? p : buf);
}

bool scan_top_level_members(std::string_view s, std::vector<json_member_span>& out) {
  out.clear();
  size_t i = skip_ws(s, 0);
  if (i >= s.size() || s[i] != '{') return false;
  i = skip_ws(s, i + 1);
  if (i < s.size() && s[i] == '}') return true;
  while (i < s.size()) {
    if (s[i] != '"') return false;
    json_member_span m;
    m.key_begin = i;
    const size_t key_end = skip_string(s, i);
    if (key_end == std::string_view::npos) return false;
    m.key = unescape(s.substr(i + 1, key_end - i - 2));
    i = skip_ws(s, key_end);
    if (i >= s.size() || s[i] != ':') return false;
    i = skip_ws(s, i + 1);
    m.value_begin = i;
    m.value_end = skip_value(s, i);
    if (m.value_end == std::string_view::npos) return false;
    out.push_back(std::move(m));
    i = skip_ws(s, out.back().value_end);
    if (i < s.size() && s[i] == ',') { i = skip_ws(s, i + 1); continue; }
    return i < s.size() && s[i] == '}';
  }
  return false;
}

size_t find_top_level_close(std::string_view s) {
  size_t i = skip_ws(s, 0);
  const size_t end = skip_value(s, i);
  if (end == std::string_view::npos || end == 0 || s[end - 1] != '}') return std::string_view::npos;
  return end - 1;
}

bool member_positions_from_structurals(std::string_view s, const uint32_t* idx, size_t n,
                                       std::vector<json_member_pos>& out, size_t& object_end) {
  out.clear();
  auto at = [&](size_t k) -> char { return idx[k] < s.size() ? s[idx[k]] : '\0'; };
  if (n < 2 || at(0) != '{' || at(n - 1) != '}') return false;
  for (size_t k = 1; k < n; ++k) {
    if (idx[k] <= idx[k - 1]) return false;  // positions ascend
  }
  object_end = idx[n - 1];
  if (n == 2) return true;  // {}
  size_t k = 1;
  for (;;) {
    // key ':' value (',' | '}')
    if (k + 2 >= n || at(k) != '"' || at(k + 1) != ':') return false;
    json_member_pos m;
    m.key_begin = idx[k];
    m.value_begin = idx[k + 2];
    size_t next = 0;
    const char first = at(k + 2);
    if (first == '{' || first == '[') {
      int depth = 0;  // the matching close: strings and scalars inside are single entries, never brackets
      size_t j = k + 2;
      for (; j < n; ++j) {
        const char c = at(j);
        if (c == '{' || c == '[') ++depth;
        else if ((c == '}' || c == ']') && --depth == 0) break;
      }
      if (j >= n - 1) return false;
      m.value_end = idx[j] + 1;
      next = j + 1;
    } else {
      // A string or scalar ends before the ',' or '}' that follows it, less any whitespace.
      next = k + 3;
      if (next >= n) return false;
      size_t end = idx[next];
      while (end > m.value_begin && (s[end - 1] == ' ' || s[end - 1] == '\t' || s[end - 1] == '\n' || s[end - 1] == '\r')) {
        --end;
      }
      m.value_end = end;
    }
    out.push_back(m);
    if (at(next) == '}') return next == n - 1;
    if (at(next) != ',') return false;
    k = next + 1;
  }
}

}  // namespace sluice::gateway
