// Reading YAML maps into typed fields while collecting every problem with its file:line:column. The schema
// itself (which keys exist and what they mean) lives in policy_loader.cpp; this file only knows how to walk a
// map, reject duplicate and unknown keys, and turn scalars into checked numbers and strings.
// What must not go in here: policy semantics, defaults, secrets rules.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <yaml-cpp/yaml.h>

#include "sluice/policies/policy.h"

namespace sluice::policies::detail {

// Collects load errors for one source; YAML marks are 0-based, load_error positions 1-based.
class error_sink {
 public:
  explicit error_sink(std::string file) : file_(std::move(file)) {}
  void add(const YAML::Mark& at, std::string message);
  void add_unplaced(std::string message);  // no position (e.g. a missing top-level section)
  const std::string& file() const { return file_; }
  std::vector<load_error>& errors() { return errors_; }

 private:
  std::string file_;
  std::vector<load_error> errors_;
};

// One key: value pair of a map, with the key's own position for messages.
struct field {
  std::string key;
  YAML::Mark key_mark;
  YAML::Node value;

  // Where to point at a problem with the value: the value itself, or the key when the value is empty.
  YAML::Mark value_mark() const;
};

// The fields of `map` whose keys are in `known_keys`, in document order. Reports (and drops) duplicate keys and
// unknown keys; an unknown key's message names `where` ("in model 'x'"), suggests the closest of `suggest_keys`
// and lists them. Reports a non-map `map` as "`what` must be a map" and returns nothing.
std::vector<field> read_map(error_sink& sink, const YAML::Node& map, const YAML::Mark& fallback_mark,
                            std::string_view what, std::span<const std::string_view> known_keys,
                            std::span<const std::string_view> suggest_keys);

// "valid keys: a, b, c"
std::string list_keys(std::span<const std::string_view> keys);

// Scalar readers: each reports a type or range error naming the key and returns nullopt.
std::optional<std::string> read_string(error_sink& sink, const field& f);
std::optional<int64_t> read_int(error_sink& sink, const field& f, int64_t min, int64_t max);
std::optional<double> read_non_negative_number(error_sink& sink, const field& f);
std::optional<double> read_number(error_sink& sink, const field& f, double min, double max);
std::optional<bool> read_bool(error_sink& sink, const field& f);
// A sequence of strings (flow [a, b] or block style); each element must be a non-empty scalar.
std::optional<std::vector<std::string>> read_string_list(error_sink& sink, const field& f);

// A path from the policy, made absolute against the policy file's folder (kept as is when base_dir is empty).
std::string resolve_path(const std::string& path, const std::filesystem::path& base_dir);

}  // namespace sluice::policies::detail
