// Anthropic Messages requests: parsing /v1/messages into chat_request, and writing the request bodies for
// upstreams (a Messages body for kind anthropic; an OpenAI chat body for a request that came in as Messages).
// Not a hot path like the OpenAI pass-through: it builds strings freely.
#include <simdjson.h>

#include <algorithm>
#include <string>

#include "api/anthropic_codec.h"
#include "api/json_util.h"
#include "api/request_errors.h"

namespace sluice::gateway {

namespace {

using router::errc;
using router::error;
using simdjson::dom::element;
using simdjson::dom::element_type;
using simdjson::dom::object;

// Tool use and the other features the gateway does not translate: 501 naming the field (issue 11, docs/api.md).
error unsupported(const std::string& param, std::string_view what) {
  return error{errc::not_implemented,
               std::string("'") + param + "': " + std::string(what) +
                   " is not supported by Sluice's Anthropic Messages translation (text only, no tool use).",
               param};
}

const char* type_name(element_type t) {
  switch (t) {
    case element_type::ARRAY: return "array";
    case element_type::OBJECT: return "object";
    case element_type::INT64:
    case element_type::UINT64: return "integer";
    case element_type::DOUBLE: return "number";
    case element_type::STRING: return "string";
    case element_type::BOOL: return "boolean";
    case element_type::NULL_VALUE: return "null";
  }
  return "value";
}

error wrong_type(const std::string& param, const char* want, element e) {
  return bad_request(param + ": Input should be " + want + " (got " + type_name(e.type()) + ")", param);
}

bool is_number(element e) {
  const auto t = e.type();
  return t == element_type::INT64 || t == element_type::UINT64 || t == element_type::DOUBLE;
}

// Text blocks (or a plain string) appended to `out`; anything but text refused naming the block. `marked` is set
// when a block carries cache_control.
std::optional<error> read_text_blocks(element v, const std::string& param, std::string& out, bool system,
                                      bool* marked = nullptr) {
  if (v.type() == element_type::STRING) {
    out.append(std::string_view(v));
    return std::nullopt;
  }
  if (v.type() != element_type::ARRAY) return wrong_type(param, "a valid string or list of content blocks", v);
  size_t k = 0;
  for (element block : simdjson::dom::array(v)) {
    const std::string bp = param + "." + std::to_string(k++);
    if (block.type() != element_type::OBJECT) return wrong_type(bp, "a valid dictionary", block);
    std::string_view type;
    if (block["type"].get_string().get(type) != simdjson::SUCCESS) return bad_request(bp + ".type: Field required", bp + ".type");
    if (type == "text") {
      std::string_view text;
      element t;
      if (block["text"].get(t) != simdjson::SUCCESS) return bad_request(bp + ".text: Field required", bp + ".text");
      if (t.get_string().get(text) != simdjson::SUCCESS) return wrong_type(bp + ".text", "a valid string", t);
      if (system && !out.empty()) out += "\n\n";  // system blocks are separate paragraphs
      out.append(text);
      element cc;
      if (marked && block["cache_control"].get(cc) == simdjson::SUCCESS && !cc.is_null()) *marked = true;
    } else if (type == "tool_use" || type == "tool_result" || type == "server_tool_use") {
      return unsupported(bp + ".type", "a '" + std::string(type) + "' block");
    } else if (type == "image" || type == "document") {
      return unsupported(bp + ".type", "a '" + std::string(type) + "' block");
    } else if (type == "thinking" || type == "redacted_thinking") {
      continue;  // earlier thinking of an assistant turn: not part of the conversation text
    } else {
      return bad_request(bp + ".type: Input tag '" + std::string(type) + "' is not a supported content block type",
                 bp + ".type");
    }
  }
  return std::nullopt;
}

}  // namespace

std::optional<router::error> check_anthropic_version(std::string_view v) {
  // Any dated version (YYYY-MM-DD) is served: SDKs send the version they were built for, which is newer than
  // 2023-06-01 as they move on, and the text Messages subset the gateway speaks has not changed across them.
  auto dated = [](std::string_view s) {
    if (s.size() != 10 || s[4] != '-' || s[7] != '-') return false;
    for (size_t i = 0; i < s.size(); ++i) {
      if (i != 4 && i != 7 && (s[i] < '0' || s[i] > '9')) return false;
    }
    return true;
  };
  if (v.empty() || dated(v)) return std::nullopt;
  return error{errc::bad_request,
               "anthropic-version: '" + std::string(v.substr(0, 64)) +
                   "' is not a valid version (a date such as 2023-06-01).",
               "anthropic-version"};
}

std::optional<router::error> parse_anthropic_messages_request(std::string& body, router::chat_request& req) {
  {
    router::chat_request fresh;
    fresh.raw_body = std::move(req.raw_body);
    fresh.raw_body.clear();
    req = std::move(fresh);
  }
  req.format = router::wire_format::anthropic_messages;
  thread_local simdjson::dom::parser parser;
  const size_t len = body.size();
  body.reserve(len + simdjson::SIMDJSON_PADDING);
  element root;
  if (auto err = parser.parse(body.data(), len, false).get(root); err != simdjson::SUCCESS) {
    return bad_request(std::string("There was an error parsing the body of your request: ") + simdjson::error_message(err));
  }
  if (root.type() != element_type::OBJECT) return bad_request("The request body must be a JSON object.");
  if (auto e = reject_duplicate_keys(root)) return e;

  element model, messages, max_tokens, system, v;
  bool has_model = false, has_messages = false, has_max = false, has_system = false;
  for (auto field : object(root)) {
    const std::string_view k = field.key;
    if (k == "model") has_model = (model = field.value, true);
    else if (k == "messages") has_messages = (messages = field.value, true);
    else if (k == "max_tokens") has_max = (max_tokens = field.value, true);
    else if (k == "system") has_system = (system = field.value, true);
    else if (k == "tools" || k == "tool_choice" || k == "mcp_servers" || k == "container") {
      if (!field.value.is_null()) return unsupported(std::string(k), "'" + std::string(k) + "'");
    } else if (k == "thinking") {
      if (!field.value.is_null()) return unsupported("thinking", "extended thinking");
    } else if (k == "output_config" && field.value.is_object()) {
      element format;
      if (field.value["format"].get(format) == simdjson::SUCCESS && !format.is_null()) {
        return unsupported("output_config.format", "a structured output format");
      }
    }
  }
  if (!has_model) return bad_request("model: Field required", "model");
  if (model.type() != element_type::STRING) return wrong_type("model", "a valid string", model);
  req.model.assign(std::string_view(model));
  if (!has_max) return bad_request("max_tokens: Field required", "max_tokens");
  int64_t mt = 0;
  if (max_tokens.get_int64().get(mt) != simdjson::SUCCESS) return wrong_type("max_tokens", "a valid integer", max_tokens);
  if (mt < 1 || mt > 100'000'000) return bad_request("max_tokens: Input should be greater than or equal to 1", "max_tokens");
  req.max_output_tokens = static_cast<int>(mt);
  if (!has_messages) return bad_request("messages: Field required", "messages");
  if (messages.type() != element_type::ARRAY) return wrong_type("messages", "a valid list", messages);

  if (has_system && !system.is_null()) {
    router::message sys;
    sys.role_ = router::role::system;
    if (auto e = read_text_blocks(system, "system", sys.content, true, &req.cache_system)) return e;
    req.messages.push_back(std::move(sys));
  }
  size_t i = 0;
  for (element m : simdjson::dom::array(messages)) {
    const std::string mp = "messages." + std::to_string(i++);
    if (m.type() != element_type::OBJECT) return wrong_type(mp, "a valid dictionary", m);
    element role, content;
    if (m["role"].get(role) != simdjson::SUCCESS) return bad_request(mp + ".role: Field required", mp + ".role");
    if (m["content"].get(content) != simdjson::SUCCESS) return bad_request(mp + ".content: Field required", mp + ".content");
    std::string_view r;
    if (role.get_string().get(r) != simdjson::SUCCESS) return wrong_type(mp + ".role", "a valid string", role);
    router::message msg;
    if (r == "user") msg.role_ = router::role::user;
    else if (r == "assistant") msg.role_ = router::role::assistant;
    else return bad_request(mp + ".role: Input should be 'user' or 'assistant'", mp + ".role");
    if (auto e = read_text_blocks(content, mp + ".content", msg.content, false)) return e;
    req.messages.push_back(std::move(msg));
  }
  if (i == 0) return bad_request("messages: at least one message is required", "messages");

  const object doc(root);
  if (doc["temperature"].get(v) == simdjson::SUCCESS && !v.is_null()) {
    if (!is_number(v)) return wrong_type("temperature", "a valid number", v);
    const double t = double(v);
    if (!(t >= 0.0 && t <= 1.0)) return bad_request("temperature: Input should be between 0 and 1", "temperature");
    req.sampling.temperature = t;
  }
  if (doc["top_p"].get(v) == simdjson::SUCCESS && !v.is_null()) {
    if (!is_number(v)) return wrong_type("top_p", "a valid number", v);
    const double t = double(v);
    if (!(t >= 0.0 && t <= 1.0)) return bad_request("top_p: Input should be between 0 and 1", "top_p");
    req.sampling.top_p = t;
  }
  if (doc["top_k"].get(v) == simdjson::SUCCESS && !v.is_null()) {
    int64_t k = 0;
    if (v.get_int64().get(k) != simdjson::SUCCESS) return wrong_type("top_k", "a valid integer", v);
    if (k < 0 || k > 1'000'000) return bad_request("top_k: Input should be greater than or equal to 0", "top_k");
    req.sampling.top_k = static_cast<int>(k);
  }
  if (doc["stop_sequences"].get(v) == simdjson::SUCCESS && !v.is_null()) {
    if (v.type() != element_type::ARRAY) return wrong_type("stop_sequences", "a valid list", v);
    for (element s : simdjson::dom::array(v)) {
      std::string_view sv;
      if (s.get_string().get(sv) != simdjson::SUCCESS) return wrong_type("stop_sequences", "a list of strings", s);
      if (sv.empty()) return bad_request("stop_sequences: each stop sequence must contain non-whitespace", "stop_sequences");
      req.stop.emplace_back(sv);
    }
  }
  if (doc["stream"].get(v) == simdjson::SUCCESS && !v.is_null()) {
    if (v.type() != element_type::BOOL) return wrong_type("stream", "a valid boolean", v);
    req.stream = bool(v);
  }
  if (doc["cache_control"].get(v) == simdjson::SUCCESS && !v.is_null()) {
    if (v.type() != element_type::OBJECT) return wrong_type("cache_control", "a valid dictionary", v);
    req.cache_auto = true;
  }
  if (doc["metadata"].get(v) == simdjson::SUCCESS && !v.is_null() && v.type() != element_type::OBJECT) {
    return wrong_type("metadata", "a valid dictionary", v);
  }
  std::swap(req.raw_body, body);
  return std::nullopt;
}

router::result<std::string> make_anthropic_upstream_body(const router::chat_request& req,
                                                         std::string_view upstream_model,
                                                         const anthropic_upstream_options& opts) {
  if (req.has_tools) return unsupported("tools", "tool definitions");
  if (req.n != 1) return unsupported("n", "more than one choice");
  if (req.logprobs) return unsupported("logprobs", "log-probabilities");
  if (req.response_format_ != router::response_format::text) return unsupported("response_format", "a JSON response format");
  std::string system;
  std::string messages;
  size_t count = 0;
  for (size_t i = 0; i < req.messages.size(); ++i) {
    const router::message& m = req.messages[i];
    const std::string param = "messages[" + std::to_string(i) + "]";
    if (m.role_ == router::role::tool) return unsupported(param + ".role", "a tool message");
    if (!m.tool_calls.empty()) return unsupported(param + ".tool_calls", "tool calls");
    if (m.parts_non_text > 0) return unsupported(param + ".content", "a non-text content part");
    if (m.role_ == router::role::system || m.role_ == router::role::developer) {
      if (!system.empty()) system += "\n\n";
      system += m.content;
      continue;
    }
    if (count++) messages += ',';
    messages += m.role_ == router::role::assistant ? "{\"role\":\"assistant\",\"content\":"
                                                    : "{\"role\":\"user\",\"content\":";
    append_json_string(messages, m.content);
    messages += '}';
  }
  if (count == 0) return error{errc::bad_request, "Anthropic models need at least one user or assistant message.", "messages"};
  std::string out = "{\"model\":";
  append_json_string(out, upstream_model);
  out += ",\"max_tokens\":";
  out += std::to_string(req.max_output_tokens.value_or(opts.default_max_tokens));
  if (!system.empty()) {
    out += ",\"system\":";
    if (req.cache_system || (opts.cache_system_min_chars > 0 && system.size() >= opts.cache_system_min_chars)) {
      // A long system prompt is the stable prefix worth caching (or the client marked it): marked for Anthropic's
      // prompt cache.
      out += "[{\"type\":\"text\",\"text\":";
      append_json_string(out, system);
      out += ",\"cache_control\":{\"type\":\"ephemeral\"}}]";
    } else {
      append_json_string(out, system);
    }
  }
  out += ",\"messages\":[";
  out += messages;
  out += ']';
  if (req.sampling.temperature) {
    // OpenAI's range is 0..2, Anthropic's 0..1: clamped.
    out += ",\"temperature\":";
    append_json_number(out, std::min(*req.sampling.temperature, 1.0));
  }
  if (req.sampling.top_p) {
    out += ",\"top_p\":";
    append_json_number(out, *req.sampling.top_p);
  }
  if (req.sampling.top_k) {
    out += ",\"top_k\":";
    out += std::to_string(*req.sampling.top_k);
  }
  if (!req.stop.empty()) {
    out += ",\"stop_sequences\":[";
    for (size_t i = 0; i < req.stop.size(); ++i) {
      if (i) out += ',';
      append_json_string(out, req.stop[i]);
    }
    out += ']';
  }
  if (req.stream) out += ",\"stream\":true";
  if (req.cache_auto) out += ",\"cache_control\":{\"type\":\"ephemeral\"}";
  out += '}';
  return out;
}

std::string openai_chat_body_from_request(const router::chat_request& req, std::string_view upstream_model,
                                          bool force_stream_usage) {
  std::string out = "{\"model\":";
  append_json_string(out, upstream_model);
  out += ",\"messages\":[";
  for (size_t i = 0; i < req.messages.size(); ++i) {
    const router::message& m = req.messages[i];
    if (i) out += ',';
    out += "{\"role\":\"";
    out += router::to_string(m.role_);
    out += "\",\"content\":";
    append_json_string(out, m.content);
    out += '}';
  }
  out += ']';
  if (req.max_output_tokens) out += ",\"max_tokens\":" + std::to_string(*req.max_output_tokens);
  if (req.sampling.temperature) {
    out += ",\"temperature\":";
    append_json_number(out, *req.sampling.temperature);
  }
  if (req.sampling.top_p) {
    out += ",\"top_p\":";
    append_json_number(out, *req.sampling.top_p);
  }
  if (!req.stop.empty()) {
    out += ",\"stop\":[";
    for (size_t i = 0; i < req.stop.size() && i < 4; ++i) {
      if (i) out += ',';
      append_json_string(out, req.stop[i]);
    }
    out += ']';
  }
  if (req.stream) {
    out += ",\"stream\":true";
    if (force_stream_usage || req.include_usage) out += ",\"stream_options\":{\"include_usage\":true}";
  }
  out += '}';
  return out;
}

}  // namespace sluice::gateway
