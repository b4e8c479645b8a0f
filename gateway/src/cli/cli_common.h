// Pieces the offline subcommands share (train-router, eval-router, train-cascade, eval-cascade): the flag parser,
// number options, the error exit, numbers out of JSON. What must not go in here: any one command's options or data.
#pragma once

#include <boost/json.hpp>

#include <charconv>
#include <cstdio>
#include <map>
#include <set>
#include <string>
#include <vector>

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

}  // namespace sluice::gateway::cli
