// See response_head.h.
#include "http/response_head.h"

#include <boost/beast/http/status.hpp>
#include <algorithm>
#include <cassert>
#include <charconv>

namespace sluice::gateway {

bool is_safe_value(std::string_view v) {
  unsigned char bad = 0;  // (branch-free: the compiler vectorizes it)
  for (const char c : v) bad |= static_cast<unsigned char>((c == '\r') | (c == '\n') | (c == '\0'));
  return bad == 0;
}

bool header_block::add(header_name header, std::string_view value) {
  if (!is_safe_value(value)) {
    assert(!"a header value the gateway writes must not hold CR, LF or NUL");
    return false;
  }
  const std::string_view name = header.text();
  const size_t at = text_.size();
  text_.resize(at + name.size() + value.size() + 4);  // (keeps its memory between requests: no allocation)
  char* p = text_.data() + at;
  p = std::copy(name.begin(), name.end(), p);
  *p++ = ':';
  *p++ = ' ';
  p = std::copy(value.begin(), value.end(), p);
  *p++ = '\r';
  *p = '\n';
  return true;
}

void append_decimal(std::string& out, uint64_t n) {
  char digits[24];
  const auto [end, ec] = std::to_chars(digits, digits + sizeof digits, n);
  out.append(digits, end);
}

void append_status_line(std::string& out, int version, int status) {
  out += version >= 11 ? "HTTP/1.1 " : "HTTP/1.0 ";
  append_decimal(out, static_cast<uint64_t>(status));
  out += ' ';
  out += boost::beast::http::obsolete_reason(static_cast<boost::beast::http::status>(status));
  out += "\r\n";
}

void append_connection(std::string& out, int version, bool keep_alive) {
  if (version >= 11 && !keep_alive) out += "Connection: close\r\n";
  else if (version < 11 && keep_alive) out += "Connection: keep-alive\r\n";
}

}  // namespace sluice::gateway
