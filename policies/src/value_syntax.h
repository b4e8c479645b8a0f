// Pure parsers for the scalar syntaxes the policy accepts: byte sizes ("4MiB"), upstream base URLs, environment
// variable names, model names, and the edit distance behind "did you mean". No YAML here (see yaml_fields.h),
// so each rule can be read and tested on its own.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "sluice/policies/policy.h"

namespace sluice::policies::detail {

// "4194304", "4MiB", "512 KiB", "1GB", "100B". Binary units (KiB, MiB, GiB) are powers of 1024, decimal ones
// (KB, MB, GB) powers of 1000. nullopt for anything else, negative numbers and values over 2^63.
std::optional<uint64_t> parse_byte_size(std::string_view text);

// Splits an http:// or https:// URL into an endpoint. On failure returns nullopt and sets `why` to a message
// that never repeats the URL (it might hold a credential).
std::optional<endpoint> parse_base_url(std::string_view url, std::string& why);

bool is_env_var_name(std::string_view name);  // [A-Z_][A-Z0-9_]*
bool is_model_name(std::string_view name);    // [A-Za-z0-9._:/-]+, at most 256 characters

// Levenshtein distance, case-insensitive; used to suggest the key a typo meant.
std::size_t edit_distance(std::string_view a, std::string_view b);

// The candidate closest to `word` if it is close enough to be a plausible typo, else "".
std::string_view closest_match(std::string_view word, std::span<const std::string_view> candidates);

}  // namespace sluice::policies::detail
