// RESP2, the Redis wire protocol: commands encoded as arrays of bulk strings, replies parsed incrementally
// (https://redis.io/docs/latest/develop/reference/protocol-spec/). Pure functions, tested on their own.
// What must not go in here: sockets, what the commands mean.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace sluice::gateway::resp {

struct value {
  enum class kind { simple, error, integer, bulk, nil, array };
  kind type = kind::nil;
  std::string text;     // simple, error, bulk
  int64_t integer = 0;  // integer
  std::vector<value> elements;  // array
};

// Appends one command: *N\r\n then $len\r\narg\r\n per argument.
void append_command(std::string& out, std::initializer_list<std::string_view> args);
void append_command(std::string& out, const std::vector<std::string_view>& args);

enum class parse_status { complete, incomplete, invalid };

// Parses one reply from the front of `in`. complete: `out` is set and `consumed` says how many bytes it took;
// incomplete: more bytes are needed; invalid: not RESP2 (or nested deeper than 8, or a length over 512 MB).
parse_status parse(std::string_view in, value& out, size_t& consumed);

}  // namespace sluice::gateway::resp
