// See response_reader.h.
#include "http/response_reader.h"

#include <boost/beast/http/error.hpp>

namespace sluice::gateway {

namespace http = boost::beast::http;
using boost::beast::error_code;

namespace {

constexpr size_t max_chunk_line = 4096;  // a chunk-size line, extensions included

// tchar (RFC 9110 5.6.2).
struct tchar_table {
  bool ok[256] = {};
  constexpr tchar_table() {
    for (int c = '0'; c <= '9'; ++c) ok[c] = true;
    for (int c = 'a'; c <= 'z'; ++c) ok[c] = true;
    for (int c = 'A'; c <= 'Z'; ++c) ok[c] = true;
    for (const char c : std::string_view("!#$%&'*+-.^_`|~")) ok[static_cast<unsigned char>(c)] = true;
  }
};
constexpr tchar_table tchar;

// Field values and reason phrases: visible characters, obs-text, spaces and tabs; no other controls.
bool is_field_text(std::string_view s) {
  for (const char c : s) {
    const auto u = static_cast<unsigned char>(c);
    if ((u < 0x20 && u != '\t') || u == 0x7f) return false;
  }
  return true;
}

// The same over a whole head, where a CR is allowed only before an LF (a line end): one branch-free pass the
// compiler vectorizes (a head is a few hundred bytes; per-field checks cost more than Beast's parser). `s` ends
// with LF.
bool is_head_text(std::string_view s) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  unsigned char bad = 0;
  for (size_t i = 0; i + 1 < s.size(); ++i) {
    const unsigned char u = p[i], next = p[i + 1];
    bad |= static_cast<unsigned char>(((u < 0x20) & (u != '\t') & (u != '\r') & (u != '\n')) | (u == 0x7f) |
                                      ((u == '\r') & (next != '\n')));
  }
  return bad == 0;
}

char lower(char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; }

// `s` equals the lower-case `want`, ignoring case.
bool iequals(std::string_view s, std::string_view want) {
  if (s.size() != want.size()) return false;
  for (size_t i = 0; i < s.size(); ++i) {
    if (lower(s[i]) != want[i]) return false;
  }
  return true;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// Calls f(token) for each element of a comma-separated list (empty elements skipped, as RFC 9110 5.6.1 allows).
template <class F>
void for_each_element(std::string_view list, F f) {
  while (!list.empty()) {
    const size_t comma = list.find(',');
    const std::string_view element = trim(list.substr(0, comma));
    if (!element.empty()) f(element);
    if (comma == std::string_view::npos) break;
    list.remove_prefix(comma + 1);
  }
}

}  // namespace

void response_reader::field(std::string_view name, std::string_view value, error_code& ec) {
  switch (name.size()) {
    case 14:
      if (iequals(name, "content-length")) {
        if (value.empty() || value.size() > 19 || value.find_first_not_of("0123456789") != std::string_view::npos) {
          ec = http::error::bad_content_length;
          return;
        }
        uint64_t n = 0;
        for (const char c : value) n = n * 10 + static_cast<uint64_t>(c - '0');
        if ((has_length_ && n != remaining_) || chunked_ || other_coding_) {  // conflicting, or with a coding
          ec = http::error::bad_content_length;
          return;
        }
        has_length_ = true;
        remaining_ = n;
      } else if (iequals(name, "retry-after-ms")) {
        if (value.size() <= 64) retry_after_ms_.assign(value);
      }
      return;
    case 17:
      if (iequals(name, "transfer-encoding")) {
        if (has_length_) {  // both: a framing two parsers may read differently (Beast refuses it too)
          ec = http::error::bad_transfer_encoding;
          return;
        }
        for_each_element(value, [&](std::string_view coding) {
          if (chunked_) ec = http::error::bad_transfer_encoding;  // chunked must be the last coding, once
          if (iequals(coding, "chunked")) {
            chunked_ = true;
            other_coding_ = false;
          } else {
            other_coding_ = true;
          }
        });
      }
      return;
    case 10:
      if (iequals(name, "connection")) {
        for_each_element(value, [&](std::string_view option) {
          if (iequals(option, "close")) close_ = true;
          else if (iequals(option, "keep-alive")) keep_alive_token_ = true;
        });
      }
      return;
    case 11:
      if (iequals(name, "retry-after") && value.size() <= 64) retry_after_.assign(value);
      return;
    default:
      return;
  }
}

size_t response_reader::parse_head(std::string_view bytes, error_code& ec) {
  // The lines, each ending in CRLF, up to the blank one (one memchr per line; a lone LF is an error).
  constexpr size_t max_lines = 128;
  size_t ends[max_lines];  // offset of each line's CR
  size_t lines = 0;
  size_t head_end = 0;
  for (size_t pos = 0;;) {
    const size_t lf = bytes.find('\n', pos);
    if (lf == std::string_view::npos) {  // incomplete
      if (bytes.size() > max_head_bytes) ec = http::error::header_limit;
      return 0;
    }
    if (lf == 0 || bytes[lf - 1] != '\r') {
      ec = http::error::bad_line_ending;
      return 0;
    }
    if (lf == pos + 1 && lines > 0) {  // the blank line
      head_end = lf + 1;
      break;
    }
    if (lines == max_lines) {
      ec = http::error::header_limit;
      return 0;
    }
    ends[lines++] = lf - 1;
    pos = lf + 1;
  }
  if (head_end > max_head_bytes) {
    ec = http::error::header_limit;
    return 0;
  }
  const std::string_view head = bytes.substr(0, head_end);
  // No control characters but HT and the line ends (every LF follows a CR: checked above; every CR precedes an
  // LF: checked here).
  if (!is_head_text(head)) {
    ec = http::error::bad_value;
    return 0;
  }

  // status-line = HTTP-version SP status-code SP [ reason-phrase ]
  const std::string_view line = head.substr(0, ends[0]);
  if (line.size() < 13 || line.substr(0, 5) != "HTTP/" || line[5] != '1' || line[6] != '.' ||
      (line[7] != '0' && line[7] != '1') || line[8] != ' ') {
    ec = http::error::bad_version;
    return 0;
  }
  version_ = line[7] == '1' ? 11 : 10;
  for (size_t i = 9; i < 12; ++i) {
    if (line[i] < '0' || line[i] > '9') {
      ec = http::error::bad_status;
      return 0;
    }
  }
  status_ = (line[9] - '0') * 100 + (line[10] - '0') * 10 + (line[11] - '0');
  if (status_ < 100 || line[12] != ' ') {  // (the space before the reason is required, reason or not)
    ec = http::error::bad_status;
    return 0;
  }
  // field-line = field-name ":" OWS field-value OWS
  for (size_t i = 1; i < lines; ++i) {
    const size_t begin = ends[i - 1] + 2;
    const std::string_view f = head.substr(begin, ends[i] - begin);
    if (f.front() == ' ' || f.front() == '\t') {  // obs-fold: refused (parsers disagree on it)
      ec = http::error::bad_field;
      return 0;
    }
    size_t colon = 0;  // the name, checked as it is scanned for its colon
    while (colon < f.size() && tchar.ok[static_cast<unsigned char>(f[colon])]) ++colon;
    if (colon == 0 || colon == f.size() || f[colon] != ':') {
      ec = http::error::bad_field;
      return 0;
    }
    field(f.substr(0, colon), trim(f.substr(colon + 1)), ec);
    if (ec) return 0;
  }
  // The body's framing (RFC 9112 6.3).
  if (status_ / 100 == 1 || status_ == 204 || status_ == 304) state_ = state::done;
  else if (chunked_) state_ = state::chunk_size;
  else if (other_coding_) state_ = state::body_to_eof;
  else if (has_length_) state_ = remaining_ > 0 ? state::body_length : state::done;
  else state_ = state::body_to_eof;
  return head_end;
}

bool response_reader::append(std::string_view bytes, error_code& ec) {
  if (!body_) return true;  // (nowhere to put it: counted as read, dropped)
  if (bytes.size() > limit_ - std::min(limit_, body_->size())) {
    ec = http::error::body_limit;
    return false;
  }
  body_->append(bytes);
  return true;
}

size_t response_reader::put(std::string_view bytes, error_code& ec) {
  ec = {};
  if (!bytes.empty()) got_some_ = true;
  size_t used = 0;
  while (state_ != state::done) {
    const std::string_view rest = bytes.substr(used);
    switch (state_) {
      case state::head: {
        const size_t n = parse_head(rest, ec);
        // The caller chooses where the body goes (set_body), then feeds the rest; 0: incomplete, or an error.
        return used + n;
      }
      case state::body_length:
      case state::chunk_data: {
        const size_t n = static_cast<size_t>(std::min<uint64_t>(remaining_, rest.size()));
        if (n == 0) return used;
        if (!append(rest.substr(0, n), ec)) return used;
        used += n;
        remaining_ -= n;
        if (remaining_ == 0) state_ = state_ == state::body_length ? state::done : state::chunk_data_end;
        continue;
      }
      case state::body_to_eof:
        if (rest.empty()) return used;
        if (!append(rest, ec)) return used;
        return used + rest.size();
      case state::chunk_size: {
        // chunk-size [ chunk-ext ] CRLF, chunk-size = 1*HEXDIG
        const size_t eol = rest.find("\r\n");
        if (eol == std::string_view::npos) {
          if (rest.size() > max_chunk_line) ec = http::error::bad_chunk;
          return used;
        }
        const std::string_view line = rest.substr(0, eol);
        uint64_t size = 0;
        size_t i = 0;
        for (; i < line.size() && i < 17; ++i) {
          const char c = line[i];
          int d = -1;
          if (c >= '0' && c <= '9') d = c - '0';
          else if (c >= 'a' && c <= 'f') d = c - 'a' + 10;
          else if (c >= 'A' && c <= 'F') d = c - 'A' + 10;
          if (d < 0) break;
          size = size * 16 + static_cast<uint64_t>(d);
        }
        if (i == 0 || i > 16) {
          ec = http::error::bad_chunk;
          return used;
        }
        const std::string_view ext = trim(line.substr(i));
        if ((!ext.empty() && ext.front() != ';') || !is_field_text(ext)) {
          ec = http::error::bad_chunk_extension;
          return used;
        }
        used += eol + 2;
        if (size == 0) {
          state_ = state::trailers;
        } else {
          remaining_ = size;
          state_ = state::chunk_data;
        }
        continue;
      }
      case state::chunk_data_end:
        if (rest.size() < 2) return used;
        if (rest[0] != '\r' || rest[1] != '\n') {
          ec = http::error::bad_chunk;
          return used;
        }
        used += 2;
        state_ = state::chunk_size;
        continue;
      case state::trailers: {
        // trailer-section: field lines (not used), then a blank line
        const size_t eol = rest.find("\r\n");
        if (eol == std::string_view::npos) {
          if (rest.size() > max_head_bytes) ec = http::error::header_limit;
          return used;
        }
        if (!is_field_text(rest.substr(0, eol))) {
          ec = http::error::bad_field;
          return used;
        }
        used += eol + 2;
        if (eol == 0) state_ = state::done;
        continue;
      }
      case state::done:
        break;
    }
  }
  return used;
}

void response_reader::put_eof(error_code& ec) {
  ec = {};
  if (state_ == state::body_to_eof) {
    eof_framed_ = true;
    state_ = state::done;
    return;
  }
  if (state_ == state::done) return;
  ec = got_some_ ? http::error::partial_message : http::error::end_of_stream;
}

bool response_reader::keep_alive() const {
  if (eof_framed_ || other_coding_ || (state_ == state::body_to_eof)) return false;
  if (version_ >= 11) return !close_;
  return keep_alive_token_ && !close_;
}

}  // namespace sluice::gateway
