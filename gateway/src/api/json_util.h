// Small JSON helpers for the wire codecs: string escaping for the hand-written serialisers (the hot path
// writes a few fixed shapes, faster and simpler than building a DOM) and two ways to find the byte span of each
// top-level member of an already-validated object, so a body can be forwarded with one field rewritten and
// every other byte kept as the client sent it: from the structure simdjson found while parsing it (no second
// pass over the bytes), or by scanning the bytes.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace sluice::gateway {

// Appends `s` as a JSON string literal (with quotes). Invalid UTF-8 is replaced by U+FFFD.
void append_json_string(std::string& out, std::string_view s);

// Appends a double the way JSON needs it (no inf/nan: those become 0), shortest round-trip form.
void append_json_number(std::string& out, double v);

struct json_member_span {
  std::string key;       // unescaped
  size_t key_begin = 0;  // offset of the key's opening quote
  size_t value_begin = 0;
  size_t value_end = 0;  // one past the value's last byte
};

// Top-level members of `json`, in order. `json` must already be a valid JSON object (validate first);
// returns false if the text does not look like one.
bool scan_top_level_members(std::string_view json, std::vector<json_member_span>& out);

// Offset of the top-level object's closing brace, or npos.
size_t find_top_level_close(std::string_view json);

// Where a top-level member is: its key's opening quote, and its value [value_begin, value_end).
struct json_member_pos {
  size_t key_begin = 0;
  size_t value_begin = 0;
  size_t value_end = 0;
};

// The top-level members of `json`, in order, read off the positions of its structural characters as the
// parser's first stage found them (`structurals[0..count)`: every { } [ ] : , and the first byte of every string
// and scalar, ascending). A long string or a large nested value costs one or a few steps, not one per byte.
// `json` must have been validated by that same parse; returns false when the positions do not describe an
// object (the caller then scans with scan_top_level_members). `object_end` gets the closing brace's offset.
bool member_positions_from_structurals(std::string_view json, const uint32_t* structurals, size_t count,
                                       std::vector<json_member_pos>& out, size_t& object_end);

}  // namespace sluice::gateway
