// Anthropic Messages answers: the gateway's own (message, stream events, errors) for /v1/messages, and reading
// an Anthropic upstream's answer and event stream into the internal completion and chunks.
#include <simdjson.h>

#include <algorithm>
#include <string>

#include "api/anthropic_codec.h"
#include "api/json_util.h"

namespace sluice::gateway {

namespace {

using router::errc;
using router::error;
using simdjson::dom::element;

// Anthropic counts input_tokens without the cached parts; the internal usage counts them in (PITFALLS.md).
void append_anthropic_usage(std::string& out, const router::usage& u) {
  const int64_t uncached = std::max<int64_t>(0, u.tokens_input - u.tokens_cache_read - u.tokens_cache_write);
  out += "{\"input_tokens\":";
  out += std::to_string(uncached);
  out += ",\"cache_creation_input_tokens\":";
  out += std::to_string(u.tokens_cache_write);
  out += ",\"cache_read_input_tokens\":";
  out += std::to_string(u.tokens_cache_read);
  out += ",\"output_tokens\":";
  out += std::to_string(u.tokens_output);
  out += '}';
}

// Reads an Anthropic usage object into `out`, normalised: tokens_input = input + cache read + cache write. Fields
// absent from `u` leave `out` as it is (message_delta repeats only some of them).
void read_anthropic_usage(element u, router::usage& out) {
  if (!u.is_object()) return;
  int64_t v = 0;
  int64_t uncached = out.tokens_input - out.tokens_cache_read - out.tokens_cache_write;
  for (auto field : simdjson::dom::object(u)) {
    if (field.value.get_int64().get(v) != simdjson::SUCCESS) continue;
    if (field.key == "input_tokens") uncached = v;
    else if (field.key == "cache_read_input_tokens") out.tokens_cache_read = v;
    else if (field.key == "cache_creation_input_tokens") out.tokens_cache_write = v;
    else if (field.key == "output_tokens") out.tokens_output = v;
  }
  out.tokens_input = std::max<int64_t>(0, uncached) + out.tokens_cache_read + out.tokens_cache_write;
}

router::finish_reason finish_from_stop_reason(std::string_view s) {
  if (s == "max_tokens" || s == "model_context_window_exceeded") return router::finish_reason::length;
  if (s == "tool_use") return router::finish_reason::tool_calls;
  if (s == "refusal") return router::finish_reason::content_filter;
  return router::finish_reason::stop;  // end_turn, stop_sequence, pause_turn
}

// The error a client gets for an error event in an upstream's stream (its type kept, its text bounded).
error stream_error(std::string_view type, std::string_view message, const std::string& model) {
  std::string msg = "The upstream for model '" + model + "' reported an error mid-stream";
  if (!type.empty()) msg += " (" + std::string(type.substr(0, 64)) + ")";
  if (!message.empty() && type != "authentication_error" && type != "permission_error") {
    msg += ": " + std::string(message.substr(0, 300));
  }
  return error{errc::upstream_error, msg};
}

}  // namespace

std::string anthropic_error_body(const router::error& e) {
  std::string out = "{\"type\":\"error\",\"error\":{\"type\":";
  append_json_string(out, router::info(e.code).anthropic_type);
  out += ",\"message\":";
  append_json_string(out, e.message);
  out += "}}";
  return out;
}

std::string_view anthropic_stop_reason(router::finish_reason f, std::string_view stop_sequence) {
  switch (f) {
    case router::finish_reason::length: return "max_tokens";
    case router::finish_reason::tool_calls: return "tool_use";
    case router::finish_reason::content_filter: return "refusal";
    default: return stop_sequence.empty() ? "end_turn" : "stop_sequence";
  }
}

std::string anthropic_message_json(const router::completion& c, const response_ids& ids) {
  std::string out;
  out.reserve(256 + c.text.size() * 11 / 10);
  out += "{\"id\":";
  append_json_string(out, ids.id);
  out += ",\"type\":\"message\",\"role\":\"assistant\",\"model\":";
  append_json_string(out, ids.model);
  out += ",\"content\":[";
  if (!c.text.empty()) {
    out += "{\"type\":\"text\",\"text\":";
    append_json_string(out, c.text);
    out += '}';
  }
  out += "],\"stop_reason\":\"";
  out += anthropic_stop_reason(c.finish, c.stop_sequence);
  out += "\",\"stop_sequence\":";
  if (c.stop_sequence.empty()) out += "null";
  else append_json_string(out, c.stop_sequence);
  out += ",\"usage\":";
  append_anthropic_usage(out, c.usage_);
  out += '}';
  return out;
}

std::string anthropic_message_start_json(const response_ids& ids, const router::usage& known) {
  std::string out = "{\"type\":\"message_start\",\"message\":{\"id\":";
  append_json_string(out, ids.id);
  out += ",\"type\":\"message\",\"role\":\"assistant\",\"model\":";
  append_json_string(out, ids.model);
  out += ",\"content\":[],\"stop_reason\":null,\"stop_sequence\":null,\"usage\":";
  append_anthropic_usage(out, known);
  out += "}}";
  return out;
}

std::string_view anthropic_content_block_start_json() {
  return R"({"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}})";
}

std::string anthropic_text_delta_json(std::string_view text) {
  std::string out = R"({"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":)";
  append_json_string(out, text);
  out += "}}";
  return out;
}

std::string_view anthropic_content_block_stop_json() { return R"({"type":"content_block_stop","index":0})"; }

std::string anthropic_message_delta_json(router::finish_reason f, std::string_view stop_sequence,
                                         const router::usage& u) {
  std::string out = "{\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"";
  out += anthropic_stop_reason(f, stop_sequence);
  out += "\",\"stop_sequence\":";
  if (stop_sequence.empty()) out += "null";
  else append_json_string(out, stop_sequence);
  out += "},\"usage\":";  // cumulative, input included (the input is known only at the end on some tiers)
  append_anthropic_usage(out, u);
  out += '}';
  return out;
}

std::string_view anthropic_message_stop_json() { return R"({"type":"message_stop"})"; }
std::string_view anthropic_ping_json() { return R"({"type":"ping"})"; }

bool parse_anthropic_message_response(std::string_view body, router::completion& out) {
  thread_local simdjson::dom::parser parser;
  element root;
  if (parser.parse(body.data(), body.size(), true).get(root) != simdjson::SUCCESS || !root.is_object()) return false;
  std::string_view type;
  if (root["type"].get_string().get(type) != simdjson::SUCCESS || type != "message") return false;
  element content;
  if (root["content"].get(content) != simdjson::SUCCESS || !content.is_array()) return false;
  out.text.clear();
  for (element block : simdjson::dom::array(content)) {
    std::string_view bt, text;
    if (block["type"].get_string().get(bt) != simdjson::SUCCESS) return false;
    if (bt == "text" && block["text"].get_string().get(text) == simdjson::SUCCESS) out.text.append(text);
  }
  std::string_view s;
  if (root["stop_reason"].get_string().get(s) == simdjson::SUCCESS) out.finish = finish_from_stop_reason(s);
  if (root["stop_sequence"].get_string().get(s) == simdjson::SUCCESS) out.stop_sequence.assign(s);
  if (root["model"].get_string().get(s) == simdjson::SUCCESS) out.model.assign(s);
  element usage;
  if (root["usage"].get(usage) == simdjson::SUCCESS) read_anthropic_usage(usage, out.usage_);
  return true;
}

anthropic_error_fields parse_anthropic_error(std::string_view body) {
  thread_local simdjson::dom::parser parser;
  element root;
  anthropic_error_fields f;
  if (parser.parse(body.data(), body.size(), true).get(root) != simdjson::SUCCESS) return f;
  std::string_view s;
  if (root["error"]["type"].get_string().get(s) == simdjson::SUCCESS) f.type.assign(s);
  if (root["error"]["message"].get_string().get(s) == simdjson::SUCCESS) f.message.assign(s);
  return f;
}

anthropic_stream_decoder::step anthropic_stream_decoder::on_event(std::string_view data, router::chunk& out,
                                                                  router::completion& acc, router::error& err) {
  thread_local simdjson::dom::parser parser;
  element root;
  std::string_view type;
  if (parser.parse(data.data(), data.size(), true).get(root) != simdjson::SUCCESS || !root.is_object() ||
      root["type"].get_string().get(type) != simdjson::SUCCESS) {
    malformed_ = true;
    err = error{errc::upstream_error, "The upstream for model '" + model_name_ + "' sent a malformed stream event."};
    return step::failed;
  }
  std::string_view s;
  if (type == "message_start") {
    element msg;
    if (root["message"].get(msg) == simdjson::SUCCESS) {
      if (msg["model"].get_string().get(s) == simdjson::SUCCESS) acc.model.assign(s);
      element usage;
      if (msg["usage"].get(usage) == simdjson::SUCCESS) read_anthropic_usage(usage, acc.usage_);
    }
    return step::none;
  }
  if (type == "content_block_delta") {
    std::string_view dt;
    if (root["delta"]["type"].get_string().get(dt) == simdjson::SUCCESS && dt == "text_delta" &&
        root["delta"]["text"].get_string().get(s) == simdjson::SUCCESS && !s.empty()) {
      out.text.assign(s);
      acc.text.append(s);
      return step::chunk;
    }
    return step::none;  // (tool input and thinking deltas: not translated)
  }
  if (type == "message_delta") {
    element usage;
    if (root["usage"].get(usage) == simdjson::SUCCESS) read_anthropic_usage(usage, acc.usage_);
    if (root["delta"]["stop_reason"].get_string().get(s) == simdjson::SUCCESS) {
      acc.finish = finish_from_stop_reason(s);
      out.finish = acc.finish;
    }
    if (root["delta"]["stop_sequence"].get_string().get(s) == simdjson::SUCCESS) acc.stop_sequence.assign(s);
    return out.finish ? step::chunk : step::none;
  }
  if (type == "message_stop") return step::done;
  if (type == "error") {
    std::string_view et, em;
    if (root["error"]["type"].get_string().get(et) != simdjson::SUCCESS) et = {};
    if (root["error"]["message"].get_string().get(em) != simdjson::SUCCESS) em = {};
    err = stream_error(et, em, model_name_);
    return step::failed;
  }
  return step::none;  // ping, content_block_start/stop, and event types added later
}

}  // namespace sluice::gateway
