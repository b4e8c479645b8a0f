// See models_api.h.
#include "api/models_api.h"

#include <optional>
#include <string>

#include "access/access.h"
#include "api/api_handlers.h"
#include "api/json_util.h"
#include "http/http_session.h"
#include "serving.h"

namespace sluice::gateway {

namespace {

constexpr std::string_view json_type = "application/json";

// OpenAI model objects for /v1/models and /v1/models/{id}.
constexpr std::string_view route_owner = "sluice-route";
std::string_view owner(const policies::model_config& m) {
  switch (m.kind) {
    case policies::model_kind::local: return "sluice-local";
    case policies::model_kind::task: return "sluice-task";
    default: return "sluice";
  }
}
// An Anthropic SDK (it sends anthropic-version) gets Anthropic's model objects and list page instead.
bool anthropic_client(const http_session& s) { return !s.request().anthropic_version.empty(); }

void append_model_object(std::string& out, std::string_view id, std::string_view owned_by, bool anthropic) {
  if (anthropic) {
    out += "{\"type\":\"model\",\"id\":";
    append_json_string(out, id);
    out += ",\"display_name\":";
    append_json_string(out, id);
    out += ",\"created_at\":\"1970-01-01T00:00:00Z\"}";
    return;
  }
  out += "{\"id\":";
  append_json_string(out, id);
  out += ",\"object\":\"model\",\"created\":0,\"owned_by\":";
  append_json_string(out, owned_by);
  out += '}';
}

// "%2F" -> "/"; nullopt for a malformed escape.
std::optional<std::string> percent_decode(std::string_view s) {
  auto hex = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '%') {
      out += s[i];
      continue;
    }
    if (i + 2 >= s.size()) return std::nullopt;
    const int hi = hex(s[i + 1]), lo = hex(s[i + 2]);
    if (hi < 0 || lo < 0) return std::nullopt;
    out += static_cast<char>(hi * 16 + lo);
    i += 2;
  }
  return out;
}

constexpr std::string_view model_name_chars = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._:/-";

}  // namespace

task<bool> list_models(http_session& s, const policies::key_config* key) {
  const bool anthropic = anthropic_client(s);
  std::string out = anthropic ? "{\"data\":[" : "{\"object\":\"list\",\"data\":[";
  bool first = true;
  std::string_view first_id, last_id;
  for (const auto& m : s.config().policy->models) {
    if (key && !access_control::allows(*key, m.name)) continue;
    if (!first) out += ',';
    if (first) first_id = m.name;
    first = false;
    last_id = m.name;
    append_model_object(out, m.name, owner(m), anthropic);
  }
  for (const auto& r : s.config().policy->routes) {
    if (key && !access_control::allows(*key, r.name)) continue;
    if (!first) out += ',';
    if (first) first_id = r.name;
    first = false;
    last_id = r.name;
    append_model_object(out, r.name, route_owner, anthropic);
  }
  out += ']';
  if (anthropic) {  // one page holds them all
    out += ",\"has_more\":false,\"first_id\":";
    if (first) out += "null";
    else append_json_string(out, first_id);
    out += ",\"last_id\":";
    if (first) out += "null";
    else append_json_string(out, last_id);
  }
  out += '}';
  co_return co_await s.send(200, std::move(out), json_type);
}

// GET /v1/models/{id} (the SDKs' models.retrieve): a model or route of the policy, else 404 model_not_found.
task<bool> retrieve_model(http_session& s, std::string_view encoded_id, const policies::key_config* key) {
  const auto& policy = *s.config().policy;
  std::optional<std::string> id = percent_decode(encoded_id);
  if (id && key && !access_control::allows(*key, *id)) id.reset();  // (as if it did not exist)
  std::string out;
  const bool anthropic = anthropic_client(s);
  if (const auto* m = id ? policy.find_model(*id) : nullptr) {
    append_model_object(out, m->name, owner(*m), anthropic);
  } else if (const auto* r = id ? policy.find_route(*id) : nullptr) {
    append_model_object(out, r->name, route_owner, anthropic);
  }
  if (!out.empty()) co_return co_await s.send(200, std::move(out), json_type);
  // The id is echoed only when it could be a model name at all (policy.md: letters, digits and . _ : / -).
  router::error e{router::errc::unknown_model, "The model does not exist", "model"};
  if (id && id->size() <= 256 && id->find_first_not_of(model_name_chars) == std::string::npos) {
    e.message = "The model '" + *id + "' does not exist";
  }
  co_return co_await s.send(router::info(e.code).http_status, wire_error_body(s, e), json_type);
}

}  // namespace sluice::gateway
