// The policy's small runtime helpers: lookups, error formatting and serve-time checks of the environment.
// Loading and validation live in policy_loader.cpp. What must not go in here: YAML.
#include "sluice/policies/policy.h"

#include <cstdlib>
#include <filesystem>
#include <stdexcept>

namespace sluice::policies {

const model_config* policy::find_model(std::string_view name) const {
  for (const model_config& m : models) {
    if (m.name == name) return &m;
  }
  return nullptr;
}

const route_config* policy::find_route(std::string_view name) const {
  for (const route_config& r : routes) {
    if (r.name == name) return &r;
  }
  return nullptr;
}

const team_config* policy::find_team(std::string_view name) const {
  for (const team_config& t : teams) {
    if (t.name == name) return &t;
  }
  return nullptr;
}

bool policy::has_admin_keys() const {
  for (const key_config& k : keys) {
    if (k.admin) return true;
  }
  return false;
}

std::vector<std::string> policy::route_names() const {
  std::vector<std::string> names;
  names.reserve(routes.size());
  for (const route_config& r : routes) names.push_back(r.name);
  return names;
}

std::vector<std::string> policy::model_names() const {
  std::vector<std::string> names;
  names.reserve(models.size());
  for (const model_config& m : models) names.push_back(m.name);
  return names;
}

std::string load_error::to_string() const {
  std::string out = file;
  if (line > 0) {
    out += ":" + std::to_string(line);
    if (column > 0) out += ":" + std::to_string(column);
  }
  return out + ": error: " + message;
}

const char* to_string(log_level l) {
  switch (l) {
    case log_level::debug: return "debug";
    case log_level::info: return "info";
    case log_level::warn: return "warn";
    case log_level::error: return "error";
  }
  return "info";
}

std::optional<log_level> parse_log_level(std::string_view s) {
  for (log_level l : {log_level::debug, log_level::info, log_level::warn, log_level::error})
    if (s == to_string(l)) return l;
  return std::nullopt;
}

const char* to_string(model_kind k) {
  switch (k) {
    case model_kind::openai: return "openai";
    case model_kind::anthropic: return "anthropic";
    case model_kind::local: return "local";
    case model_kind::task: return "task";
  }
  return "unknown";
}

std::vector<std::string> missing_api_keys(const policy& p) {
  std::vector<std::string> missing;
  for (const model_config& m : p.models) {
    if (m.api_key_env.empty()) continue;
    const char* value = std::getenv(m.api_key_env.c_str());
    if (value == nullptr || *value == '\0') missing.push_back(m.name);
  }
  return missing;
}

std::vector<std::string> missing_model_files(const policy& p) {
  std::vector<std::string> missing;
  for (const model_config& m : p.models) {
    if (m.kind != model_kind::local) continue;
    std::error_code ec;
    if (!std::filesystem::is_regular_file(m.local.gguf_path, ec)) missing.push_back(m.name);
  }
  return missing;
}

void throw_exception_from_error(const std::vector<load_error>& e, const boost::source_location&) {
  throw std::invalid_argument(e.empty() ? std::string("policy failed to load") : e.front().to_string());
}

}  // namespace sluice::policies
