// Small JSON helpers for the wire codecs: string escaping for the hand-written serialisers (the hot path
// writes a few fixed shapes, faster and simpler than building a DOM) and a scanner that finds the byte span
// of each top-level member of an already-validated object, so a body can be forwarded with one field
// rewritten and every other byte kept as the client sent it.
#pragma once

#include <cstddef>
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

}  // namespace sluice::gateway
