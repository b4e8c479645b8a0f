// HTTP/1.1 response heads written straight into a reusable string, so that a response goes out as one gathered
// write (head + body) without Beast's serializer: its buffer-sequence machinery and per-field allocations cost
// more than the rest of the response path (callgrind, docs/benchmarks.md "Proxy"). Every header line is
// checked on the way in: a name must be a token (checked at compile time: names are literals) and a value must
// not hold CR, LF or NUL, so nothing a value carries can end the head early (a line that fails is left out;
// debug builds assert).
// What must not go in here: what the headers mean (api/ decides which ones a response has).
#pragma once

#include <cstdint>
#include <initializer_list>
#include <string>
#include <string_view>
#include <utility>

namespace sluice::gateway {

// True for an RFC 9110 token (header names).
constexpr bool is_token(std::string_view s) {
  if (s.empty()) return false;
  for (const char c : s) {
    const bool ok = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                    std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
    if (!ok) return false;
  }
  return true;
}

// A header name the gateway writes: a literal, checked to be a token when the program is compiled.
class header_name {
 public:
  consteval header_name(const char* name) : text_(name) {  // NOLINT: implicit from a literal, on purpose
    if (!is_token(text_)) throw "a header name must be a token";  // (a compile error: consteval)
  }
  std::string_view text() const { return text_; }

 private:
  std::string_view text_;
};

// Header lines for a response or a trailer: "Name: value\r\n" each, in the order added. Reused between
// requests (clear() keeps the memory).
class header_block {
 public:
  header_block() = default;
  // Returns false (and adds nothing) when the value holds CR, LF or NUL.
  bool add(header_name name, std::string_view value);
  void clear() { text_.clear(); }
  bool empty() const { return text_.empty(); }
  const std::string& text() const { return text_; }

 private:
  std::string text_;
};

// "HTTP/1.x <status> <reason>\r\n". `version` is 10 or 11.
void append_status_line(std::string& out, int version, int status);
// "Connection: close" for an HTTP/1.1 answer that closes, "Connection: keep-alive" for an HTTP/1.0 one that
// stays open, nothing otherwise (what Beast's message::keep_alive() writes).
void append_connection(std::string& out, int version, bool keep_alive);
// Appends the decimal digits of `n`.
void append_decimal(std::string& out, uint64_t n);

// True when `v` can be a header value as is (no CR, LF or NUL).
bool is_safe_value(std::string_view v);

}  // namespace sluice::gateway
