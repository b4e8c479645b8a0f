// Walking YAML maps and reading checked scalars; see yaml_fields.h.
#include "yaml_fields.h"

#include <sstream>

#include <charconv>
#include <cmath>

#include "value_syntax.h"

namespace sluice::policies::detail {
namespace {

int one_based(int zero_based) { return zero_based < 0 ? 0 : zero_based + 1; }

const char* describe(const YAML::Node& n) {
  switch (n.Type()) {
    case YAML::NodeType::Null: return "nothing";
    case YAML::NodeType::Scalar: return "a scalar";
    case YAML::NodeType::Sequence: return "a list";
    case YAML::NodeType::Map: return "a map";
    case YAML::NodeType::Undefined: break;
  }
  return "nothing";
}

// Shows a scalar in a message, shortened so a pasted blob cannot flood the terminal.
std::string quote(std::string_view s) {
  constexpr std::size_t max_chars = 40;
  if (s.size() > max_chars) return "'" + std::string(s.substr(0, max_chars)) + "...'";
  return "'" + std::string(s) + "'";
}

}  // namespace

void error_sink::add(const YAML::Mark& at, std::string message) {
  errors_.push_back(load_error{file_, one_based(at.line), one_based(at.column), std::move(message)});
}

void error_sink::add_unplaced(std::string message) {
  errors_.push_back(load_error{file_, 0, 0, std::move(message)});
}

YAML::Mark field::value_mark() const {
  if (!value.IsDefined() || value.IsNull()) return key_mark;
  return value.Mark();
}

std::string list_keys(std::span<const std::string_view> keys) {
  std::string out = "valid keys: ";
  for (std::size_t i = 0; i < keys.size(); ++i) {
    if (i) out += ", ";
    out += keys[i];
  }
  return out;
}

std::vector<field> read_map(error_sink& sink, const YAML::Node& map, const YAML::Mark& fallback_mark,
                            std::string_view what, std::span<const std::string_view> known_keys,
                            std::span<const std::string_view> suggest_keys) {
  std::vector<field> out;
  if (!map.IsMap()) {
    const YAML::Mark at = map.IsDefined() && !map.IsNull() ? map.Mark() : fallback_mark;
    sink.add(at, std::string(what) + " must be a map, got " + describe(map));
    return out;
  }
  std::vector<std::pair<std::string, YAML::Mark>> seen;
  for (auto it = map.begin(); it != map.end(); ++it) {
    // Copies: yaml-cpp's iterator hands out a temporary proxy, so a reference to it->first would dangle.
    const YAML::Node key = it->first;
    const YAML::Node value = it->second;
    if (!key.IsScalar()) {
      sink.add(key.Mark(), "keys in " + std::string(what) + " must be plain names, got " + describe(key));
      continue;
    }
    const std::string name = key.Scalar();
    bool duplicate = false;
    for (const auto& [seen_name, seen_mark] : seen) {
      if (seen_name != name) continue;
      sink.add(key.Mark(), "duplicate key " + quote(name) + " in " + std::string(what) + " (first defined at line " +
                               std::to_string(one_based(seen_mark.line)) + ")");
      duplicate = true;
      break;
    }
    if (duplicate) continue;
    seen.emplace_back(name, key.Mark());
    bool known = false;
    for (std::string_view k : known_keys) known = known || k == name;
    if (!known) {
      std::string message = "unknown key " + quote(name) + " in " + std::string(what) + "; ";
      if (std::string_view guess = closest_match(name, suggest_keys); !guess.empty()) {
        message += "did you mean '" + std::string(guess) + "'? ";
      }
      sink.add(key.Mark(), message + list_keys(suggest_keys));
      continue;
    }
    out.push_back(field{name, key.Mark(), value});
  }
  return out;
}

std::optional<std::string> read_string(error_sink& sink, const field& f) {
  if (!f.value.IsScalar()) {
    sink.add(f.value_mark(), "'" + f.key + "' must be a string, got " + describe(f.value));
    return std::nullopt;
  }
  return f.value.Scalar();
}

std::optional<int64_t> read_int(error_sink& sink, const field& f, int64_t min, int64_t max) {
  const std::string range = " between " + std::to_string(min) + " and " + std::to_string(max);
  if (!f.value.IsScalar()) {
    sink.add(f.value_mark(), "'" + f.key + "' must be an integer" + range + ", got " + describe(f.value));
    return std::nullopt;
  }
  const std::string& text = f.value.Scalar();
  int64_t value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (text.empty() || ec == std::errc::invalid_argument || end != text.data() + text.size()) {
    sink.add(f.value_mark(), "'" + f.key + "' must be an integer" + range + ", got " + quote(text));
    return std::nullopt;
  }
  if (ec == std::errc::result_out_of_range || value < min || value > max) {
    sink.add(f.value_mark(), "'" + f.key + "' must be" + range + ", got " + quote(text));
    return std::nullopt;
  }
  return value;
}

std::optional<double> read_non_negative_number(error_sink& sink, const field& f) {
  if (!f.value.IsScalar()) {
    sink.add(f.value_mark(), "'" + f.key + "' must be a non-negative number, got " + describe(f.value));
    return std::nullopt;
  }
  const std::string& text = f.value.Scalar();
  double value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (text.empty() || ec != std::errc{} || end != text.data() + text.size() || !std::isfinite(value) || value < 0) {
    sink.add(f.value_mark(), "'" + f.key + "' must be a non-negative number, got " + quote(text));
    return std::nullopt;
  }
  return value;
}

std::optional<double> read_number(error_sink& sink, const field& f, double min, double max) {
  auto range = [&] {
    std::ostringstream r;
    r << " between " << min << " and " << max;
    return r.str();
  };
  if (!f.value.IsScalar()) {
    sink.add(f.value_mark(), "'" + f.key + "' must be a number" + range() + ", got " + describe(f.value));
    return std::nullopt;
  }
  const std::string& text = f.value.Scalar();
  double value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (text.empty() || ec != std::errc{} || end != text.data() + text.size() || !std::isfinite(value) ||
      value < min || value > max) {
    sink.add(f.value_mark(), "'" + f.key + "' must be a number" + range() + ", got " + quote(text));
    return std::nullopt;
  }
  return value;
}

std::optional<bool> read_bool(error_sink& sink, const field& f) {
  if (f.value.IsScalar()) {
    const std::string& t = f.value.Scalar();
    if (t == "true") return true;
    if (t == "false") return false;
  }
  sink.add(f.value_mark(), "'" + f.key + "' must be true or false, got " +
                               (f.value.IsScalar() ? quote(f.value.Scalar()) : describe(f.value)));
  return std::nullopt;
}

std::optional<std::vector<std::string>> read_string_list(error_sink& sink, const field& f) {
  if (!f.value.IsSequence()) {
    sink.add(f.value_mark(), "'" + f.key + "' must be a list such as [a, b], got " + describe(f.value));
    return std::nullopt;
  }
  std::vector<std::string> out;
  for (const YAML::Node& item : f.value) {
    if (!item.IsScalar() || item.Scalar().empty()) {
      sink.add(item.Mark(), "every element of '" + f.key + "' must be a non-empty string, got " + describe(item));
      return std::nullopt;
    }
    out.push_back(item.Scalar());
  }
  return out;
}

std::string resolve_path(const std::string& path, const std::filesystem::path& base_dir) {
  std::filesystem::path p(path);
  if (p.is_absolute() || base_dir.empty()) return p.lexically_normal().string();
  return (base_dir / p).lexically_normal().string();
}

}  // namespace sluice::policies::detail
