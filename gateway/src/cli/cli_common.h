// Pieces the offline subcommands share (train-router, eval-router, train-cascade, eval-cascade, distill): the flag
// parser, number options, the error exit, JSON lines files, numbers and ids out of JSON, percentages.
// What must not go in here: any one command's options or data.
#pragma once

#include <boost/json.hpp>

#include <charconv>
#include <cmath>
#include <cstdio>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "sluice/router/train.h"

namespace sluice::gateway::cli {

// Exit codes of the offline commands: bad usage or bad input (nothing was written), and a failure while working.
inline constexpr int exit_bad_input = 2;
inline constexpr int exit_failed = 1;

struct arg_parser {
  int argc;
  char** argv;
  std::map<std::string, std::vector<std::string>> values;
  std::string error;

  // Flags take exactly one value ("--name value" or "--name=value").
  bool help = false;  // --help or -h was given: print the usage and exit 0 (see parse_failed)

  bool parse(const std::set<std::string>& known) {
    for (int i = 0; i < argc; ++i) {
      std::string a = argv[i];
      if (a == "--help" || a == "-h") {
        help = true;
        return false;
      }
      if (a.rfind("--", 0) != 0) {
        error = "unexpected argument '" + a + "'";
        return false;
      }
      std::string name = a.substr(2), value;
      if (size_t eq = name.find('='); eq != std::string::npos) {
        value = name.substr(eq + 1);
        name.resize(eq);
      } else if (i + 1 < argc) {
        value = argv[++i];
      } else {
        error = "--" + name + " needs a value";
        return false;
      }
      if (!known.contains(name)) {
        error = "unknown option --" + name;
        return false;
      }
      values[name].push_back(value);
    }
    return true;
  }
  bool has(const std::string& name) const { return values.contains(name); }
  std::string get(const std::string& name, const std::string& def = "") const {
    auto it = values.find(name);
    return it == values.end() ? def : it->second.back();
  }
  std::vector<std::string> all(const std::string& name) const {
    auto it = values.find(name);
    return it == values.end() ? std::vector<std::string>{} : it->second;
  }
};

template <class T>
bool parse_number(const std::string& text, T& out) {
  const char* end = text.data() + text.size();
  auto [p, ec] = std::from_chars(text.data(), end, out);
  return ec == std::errc() && p == end;
}

bool number_option(const arg_parser& args, const std::string& name, auto& out, std::string& error) {
  if (!args.has(name)) return true;
  if (!parse_number(args.get(name), out)) {
    error = "--" + name + ": '" + args.get(name) + "' is not a valid number";
    return false;
  }
  return true;
}

// Prints "sluice COMMAND: MESSAGE" on stderr and returns the exit code.
inline int fail(const std::string& command, const std::string& message, int code = exit_bad_input) {
  std::fprintf(stderr, "sluice %s: %s\n", command.c_str(), message.c_str());
  return code;
}

// After parse() returned false: the usage on stdout and exit 0 for --help, else the error and the usage.
inline int parse_failed(const arg_parser& args, const std::string& command, const std::string& usage) {
  if (args.help) {
    std::printf("%s\n", usage.c_str());
    return 0;
  }
  return fail(command, args.error + "\n" + usage);
}

// A JSON number or boolean (true = 1) as a double.
inline bool json_number(const boost::json::value& v, double& out) {
  if (v.is_bool()) out = v.get_bool() ? 1.0 : 0.0;
  else if (v.is_int64()) out = static_cast<double>(v.get_int64());
  else if (v.is_uint64()) out = static_cast<double>(v.get_uint64());
  else if (v.is_double()) out = v.get_double();
  else return false;
  return true;
}

// Calls f(line_number, line) for each non-blank line of a (possibly gzipped) file; stops at the first false.
template <class F>
bool for_each_line(const std::string& path, std::string& error, F&& f) {
  router::result<std::string> text = router::read_file_maybe_gzip(path);
  if (!text) {
    error = text.error().message;
    return false;
  }
  std::string_view rest = *text;
  for (size_t line_no = 1; !rest.empty(); ++line_no) {
    const size_t nl = rest.find('\n');
    std::string_view line = rest.substr(0, nl);
    rest = nl == std::string_view::npos ? std::string_view{} : rest.substr(nl + 1);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.find_first_not_of(" \t") == std::string_view::npos) continue;
    if (!f(line_no, line)) return false;
  }
  return true;
}

// One JSON object from a line; `where` ("FILE:LINE: ") prefixes the error.
inline bool parse_object(std::string_view line, const std::string& where, boost::json::object& out,
                         std::string& error) {
  boost::system::error_code ec;
  boost::json::value v = boost::json::parse(line, ec);
  if (ec || !v.is_object()) {
    error = where + "not a JSON object" + (ec ? " (" + ec.message() + ")" : "");
    return false;
  }
  out = std::move(v.get_object());
  return true;
}

// A request id as text: JSON strings as they are, integers printed.
inline std::optional<std::string> json_id(const boost::json::object& o) {
  const boost::json::value* v = o.if_contains("id");
  if (v == nullptr) return std::nullopt;
  if (v->is_string()) return std::string(v->get_string());
  if (v->is_int64()) return std::to_string(v->get_int64());
  if (v->is_uint64()) return std::to_string(v->get_uint64());
  return std::nullopt;
}

// A fraction as a percentage with one decimal ("42.5%"), "n/a" for NaN (the reports' rates).
inline std::string pct(double fraction) {
  if (std::isnan(fraction)) return "n/a";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f%%", fraction * 100.0);
  return buf;
}

}  // namespace sluice::gateway::cli
