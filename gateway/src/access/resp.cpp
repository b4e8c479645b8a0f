// See resp.h.
#include "access/resp.h"

#include <charconv>

namespace sluice::gateway::resp {

namespace {

constexpr int64_t max_bulk = 512LL << 20;
constexpr int max_depth = 8;

template <class Args>
void append_args(std::string& out, const Args& args) {
  out += '*';
  out += std::to_string(args.size());
  out += "\r\n";
  for (std::string_view a : args) {
    out += '$';
    out += std::to_string(a.size());
    out += "\r\n";
    out.append(a);
    out += "\r\n";
  }
}

// The line at `pos` (without its CRLF); npos-sized result when no CRLF yet.
bool read_line(std::string_view in, size_t& pos, std::string_view& line) {
  const size_t end = in.find("\r\n", pos);
  if (end == std::string_view::npos) return false;
  line = in.substr(pos, end - pos);
  pos = end + 2;
  return true;
}

bool to_int(std::string_view s, int64_t& v) {
  if (s.empty()) return false;
  const auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  return ec == std::errc() && p == s.data() + s.size();
}

parse_status parse_at(std::string_view in, size_t& pos, value& out, int depth) {
  if (depth > max_depth) return parse_status::invalid;
  if (pos >= in.size()) return parse_status::incomplete;
  const char type = in[pos++];
  std::string_view line;
  if (!read_line(in, pos, line)) {
    // A line that can never end (no CR within a sane length) is garbage, not a slow reply.
    return in.size() - pos > 64 * 1024 ? parse_status::invalid : parse_status::incomplete;
  }
  switch (type) {
    case '+':
      out.type = value::kind::simple;
      out.text.assign(line);
      return parse_status::complete;
    case '-':
      out.type = value::kind::error;
      out.text.assign(line);
      return parse_status::complete;
    case ':':
      out.type = value::kind::integer;
      return to_int(line, out.integer) ? parse_status::complete : parse_status::invalid;
    case '$': {
      int64_t len = 0;
      if (!to_int(line, len) || len < -1 || len > max_bulk) return parse_status::invalid;
      if (len == -1) {
        out.type = value::kind::nil;
        return parse_status::complete;
      }
      const auto n = static_cast<size_t>(len);
      if (in.size() - pos < n + 2) return parse_status::incomplete;
      if (in.substr(pos + n, 2) != "\r\n") return parse_status::invalid;
      out.type = value::kind::bulk;
      out.text.assign(in.substr(pos, n));
      pos += n + 2;
      return parse_status::complete;
    }
    case '*': {
      int64_t count = 0;
      if (!to_int(line, count) || count < -1 || count > 1 << 20) return parse_status::invalid;
      if (count == -1) {
        out.type = value::kind::nil;
        return parse_status::complete;
      }
      out.type = value::kind::array;
      out.elements.clear();
      out.elements.resize(static_cast<size_t>(count));
      for (auto& e : out.elements) {
        const parse_status s = parse_at(in, pos, e, depth + 1);
        if (s != parse_status::complete) return s;
      }
      return parse_status::complete;
    }
    default:
      return parse_status::invalid;
  }
}

}  // namespace

void append_command(std::string& out, std::initializer_list<std::string_view> args) { append_args(out, args); }
void append_command(std::string& out, const std::vector<std::string_view>& args) { append_args(out, args); }

parse_status parse(std::string_view in, value& out, size_t& consumed) {
  size_t pos = 0;
  const parse_status s = parse_at(in, pos, out, 0);
  if (s == parse_status::complete) consumed = pos;
  return s;
}

}  // namespace sluice::gateway::resp
