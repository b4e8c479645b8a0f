// Parsing and validating OpenAI requests (chat completions and legacy completions) into chat_request.
#include <simdjson.h>

#include <algorithm>
#include <string>
#include <vector>

#include "api/json_util.h"
#include "api/openai_codec.h"

namespace sluice::gateway {

namespace {

using router::errc;
using router::error;
using simdjson::dom::element;
using simdjson::dom::element_type;
using simdjson::dom::object;

error bad(std::string message, std::string param = {}) {
  return error{errc::bad_request, std::move(message), std::move(param)};
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

error wrong_type(std::string_view param, const char* want, element e) {
  return bad("Invalid type for '" + std::string(param) + "': expected " + want + ", but got " + type_name(e.type()) +
                 ".",
             std::string(param));
}

bool is_number(element e) {
  const auto t = e.type();
  return t == element_type::INT64 || t == element_type::UINT64 || t == element_type::DOUBLE;
}

// Rejects a key repeated in any object of the document, at any depth: simdjson keeps the first, Python
// upstreams keep the last, so the gateway and the upstream would read different requests (PITFALLS.md). One
// pass over the DOM; the field path ("messages[0].content[1].type") is built only for the error.
class duplicate_key_check {
 public:
  std::optional<error> run(element root) {
    if (!visit(root)) return bad("Duplicate key '" + path_ + "' in the request body.", path_);
    return std::nullopt;
  }

 private:
  // A step from a container to a child: a key, or an index when `key` is null.
  struct step {
    const char* key;
    size_t key_len;
    size_t index;
  };

  // False on the first duplicate, with path_ naming it.
  bool visit(element e) {
    if (e.type() == element_type::ARRAY) {
      size_t i = 0;
      for (element child : simdjson::dom::array(e)) {
        steps_.push_back({nullptr, 0, i++});
        if (!visit(child)) return false;
        steps_.pop_back();
      }
      return true;
    }
    if (e.type() != element_type::OBJECT) return true;
    const object obj(e);
    keys_.clear();
    for (auto field : obj) keys_.push_back(field.key);
    if (auto dup = find_duplicate()) {
      steps_.push_back({dup->data(), dup->size(), 0});
      build_path();
      return false;
    }
    for (auto field : obj) {
      steps_.push_back({field.key.data(), field.key.size(), 0});
      if (!visit(field.value)) return false;
      steps_.pop_back();
    }
    return true;
  }

  // In keys_ (reordered): pairwise for the small objects requests are made of, sorted for large ones (a
  // JSON schema with hundreds of properties).
  std::optional<std::string_view> find_duplicate() {
    const size_t n = keys_.size();
    if (n <= 16) {
      for (size_t i = 1; i < n; ++i) {
        for (size_t j = 0; j < i; ++j) {
          if (keys_[i] == keys_[j]) return keys_[i];
        }
      }
      return std::nullopt;
    }
    std::sort(keys_.begin(), keys_.end());
    auto it = std::adjacent_find(keys_.begin(), keys_.end());
    if (it == keys_.end()) return std::nullopt;
    return *it;
  }

  void build_path() {
    for (const step& st : steps_) {
      if (st.key) {
        if (!path_.empty()) path_ += '.';
        path_.append(st.key, st.key_len);
      } else {
        path_ += '[' + std::to_string(st.index) + ']';
      }
    }
  }

  std::vector<step> steps_;            // from the root to the element being visited
  std::vector<std::string_view> keys_;  // the keys of the object being checked
  std::string path_;
};

std::optional<error> read_number(element v, std::string_view name, double lo, double hi, std::optional<double>& out) {
  if (v.is_null()) return std::nullopt;
  if (!is_number(v)) return wrong_type(name, "number", v);
  const double d = double(v);
  if (!(d >= lo && d <= hi)) {
    return bad("'" + std::string(name) + "' must be between " + std::to_string(lo).substr(0, 4) + " and " +
                   std::to_string(hi).substr(0, 4) + ", got " + std::to_string(d) + ".",
               std::string(name));
  }
  out = d;
  return std::nullopt;
}

std::optional<error> read_int(element v, std::string_view name, int64_t lo, int64_t hi, std::optional<int64_t>& out) {
  if (v.is_null()) return std::nullopt;
  int64_t i = 0;
  if (v.get_int64().get(i) != simdjson::SUCCESS) return wrong_type(name, "integer", v);
  if (i < lo || i > hi) {
    return bad("'" + std::string(name) + "' must be between " + std::to_string(lo) + " and " + std::to_string(hi) +
                   ", got " + std::to_string(i) + ".",
               std::string(name));
  }
  out = i;
  return std::nullopt;
}

std::optional<error> read_bool(element v, std::string_view name, bool& out) {
  if (v.is_null()) return std::nullopt;
  if (v.type() != element_type::BOOL) return wrong_type(name, "boolean", v);
  out = bool(v);
  return std::nullopt;
}

std::optional<error> read_content(element v, const std::string& param, router::message& m) {
  if (v.type() == element_type::STRING) {
    m.content = std::string(std::string_view(v));
    return std::nullopt;
  }
  if (v.type() != element_type::ARRAY) return wrong_type(param, "string or array of content parts", v);
  size_t k = 0;
  for (element part : simdjson::dom::array(v)) {
    const std::string pp = param + "[" + std::to_string(k++) + "]";
    if (part.type() != element_type::OBJECT) return wrong_type(pp, "object", part);
    object po(part);
    element type;
    if (po["type"].get(type) != simdjson::SUCCESS) return bad("Missing required parameter: '" + pp + ".type'.", pp + ".type");
    if (type.type() != element_type::STRING) return wrong_type(pp + ".type", "string", type);
    const std::string_view t(type);
    if (t == "text") {
      element text;
      if (po["text"].get(text) != simdjson::SUCCESS) return bad("Missing required parameter: '" + pp + ".text'.", pp + ".text");
      if (text.type() != element_type::STRING) return wrong_type(pp + ".text", "string", text);
      m.content += std::string_view(text);
    } else {
      ++m.parts_non_text;
    }
  }
  return std::nullopt;
}

std::optional<error> read_message(element v, size_t index, router::message& m) {
  const std::string param = "messages[" + std::to_string(index) + "]";
  if (v.type() != element_type::OBJECT) return wrong_type(param, "object", v);
  object obj(v);
  element role;
  if (obj["role"].get(role) != simdjson::SUCCESS) {
    return bad("Missing required parameter: '" + param + ".role'.", param + ".role");
  }
  if (role.type() != element_type::STRING) return wrong_type(param + ".role", "string", role);
  const std::string_view r(role);
  if (r == "system") m.role_ = router::role::system;
  else if (r == "developer") m.role_ = router::role::developer;
  else if (r == "user") m.role_ = router::role::user;
  else if (r == "assistant") m.role_ = router::role::assistant;
  else if (r == "tool" || r == "function") m.role_ = router::role::tool;
  else {
    return bad("Invalid value for '" + param + ".role': '" + std::string(r) +
                   "'. Supported values are: 'system', 'developer', 'user', 'assistant', 'tool' and 'function'.",
               param + ".role");
  }
  element content;
  const bool has_content = obj["content"].get(content) == simdjson::SUCCESS && !content.is_null();
  element tool_calls;
  const bool has_tool_calls = obj["tool_calls"].get(tool_calls) == simdjson::SUCCESS && !tool_calls.is_null();
  if (has_content) {
    if (auto e = read_content(content, param + ".content", m)) return e;
  } else if (m.role_ != router::role::assistant) {
    return bad("Missing required parameter: '" + param + ".content'.", param + ".content");
  }
  for (auto field : obj) {
    if (field.key == "name") {
      if (field.value.type() != element_type::STRING) return wrong_type(param + ".name", "string", field.value);
      m.name = std::string(std::string_view(field.value));
    } else if (field.key == "tool_call_id") {
      if (field.value.type() != element_type::STRING) return wrong_type(param + ".tool_call_id", "string", field.value);
      m.tool_call_id = std::string(std::string_view(field.value));
    }
  }
  if (has_tool_calls) {
    if (tool_calls.type() != element_type::ARRAY) return wrong_type(param + ".tool_calls", "array", tool_calls);
    for (element tc : simdjson::dom::array(tool_calls)) {
      if (tc.type() != element_type::OBJECT) return wrong_type(param + ".tool_calls[]", "object", tc);
      router::tool_call call;
      std::string_view s;
      if (tc["id"].get_string().get(s) == simdjson::SUCCESS) call.id = s;
      if (tc["function"]["name"].get_string().get(s) == simdjson::SUCCESS) call.name = s;
      if (tc["function"]["arguments"].get_string().get(s) == simdjson::SUCCESS) call.arguments_json = s;
      m.tool_calls.push_back(std::move(call));
    }
  }
  return std::nullopt;
}

// Fields shared by chat and legacy completions.
std::optional<error> read_common(object doc, router::chat_request& req) {
  element v;
  std::optional<double> d;
  std::optional<int64_t> i;
  if (doc["temperature"].get(v) == simdjson::SUCCESS) {
    if (auto e = read_number(v, "temperature", 0.0, 2.0, req.sampling.temperature)) return e;
  }
  if (doc["top_p"].get(v) == simdjson::SUCCESS) {
    if (auto e = read_number(v, "top_p", 0.0, 1.0, req.sampling.top_p)) return e;
  }
  if (doc["min_p"].get(v) == simdjson::SUCCESS) {
    if (auto e = read_number(v, "min_p", 0.0, 1.0, req.sampling.min_p)) return e;
  }
  if (doc["top_k"].get(v) == simdjson::SUCCESS) {
    if (auto e = read_int(v, "top_k", 0, 1'000'000, i)) return e;
    if (i) req.sampling.top_k = static_cast<int>(*i);
  }
  if (doc["frequency_penalty"].get(v) == simdjson::SUCCESS) {
    if (auto e = read_number(v, "frequency_penalty", -2.0, 2.0, d)) return e;
    req.sampling.frequency_penalty = d.value_or(0.0);
    d.reset();
  }
  if (doc["presence_penalty"].get(v) == simdjson::SUCCESS) {
    if (auto e = read_number(v, "presence_penalty", -2.0, 2.0, d)) return e;
    req.sampling.presence_penalty = d.value_or(0.0);
    d.reset();
  }
  if (doc["seed"].get(v) == simdjson::SUCCESS && !v.is_null()) {
    int64_t s = 0;
    uint64_t u = 0;
    if (v.get_int64().get(s) == simdjson::SUCCESS) req.sampling.seed = static_cast<uint64_t>(s);
    else if (v.get_uint64().get(u) == simdjson::SUCCESS) req.sampling.seed = u;
    else return wrong_type("seed", "integer", v);
  }
  // max_completion_tokens supersedes max_tokens in the current API; both are accepted.
  for (const char* name : {"max_tokens", "max_completion_tokens"}) {
    if (doc[name].get(v) == simdjson::SUCCESS) {
      i.reset();
      if (auto e = read_int(v, name, 1, 100'000'000, i)) return e;
      if (i) req.max_output_tokens = static_cast<int>(*i);
    }
  }
  if (doc["n"].get(v) == simdjson::SUCCESS) {
    i.reset();
    if (auto e = read_int(v, "n", 1, 128, i)) return e;
    req.n = static_cast<int>(i.value_or(1));
  }
  if (doc["stop"].get(v) == simdjson::SUCCESS && !v.is_null()) {
    if (v.type() == element_type::STRING) {
      req.stop.emplace_back(std::string_view(v));
    } else if (v.type() == element_type::ARRAY) {
      for (element s : simdjson::dom::array(v)) {
        if (s.type() != element_type::STRING) return wrong_type("stop", "string or array of strings", s);
        req.stop.emplace_back(std::string_view(s));
      }
      if (req.stop.size() > 4) return bad("'stop' may hold at most 4 sequences.", "stop");
    } else {
      return wrong_type("stop", "string or array of strings", v);
    }
    for (const auto& s : req.stop) {
      if (s.empty()) return bad("'stop' sequences must not be empty.", "stop");
    }
  }
  if (doc["stream"].get(v) == simdjson::SUCCESS) {
    if (auto e = read_bool(v, "stream", req.stream)) return e;
  }
  if (doc["stream_options"].get(v) == simdjson::SUCCESS && !v.is_null()) {
    if (v.type() != element_type::OBJECT) return wrong_type("stream_options", "object", v);
    if (!req.stream) return bad("'stream_options' is only allowed when 'stream' is true.", "stream_options");
    element u;
    if (v["include_usage"].get(u) == simdjson::SUCCESS) {
      if (auto e = read_bool(u, "stream_options.include_usage", req.include_usage)) return e;
    }
  }
  if (doc["user"].get(v) == simdjson::SUCCESS && !v.is_null() && v.type() != element_type::STRING) {
    return wrong_type("user", "string", v);
  }
  return std::nullopt;
}

// Parses `body` (padded in place), checks the top level and reads `model` into req. On success `doc` is the
// root object; it stays valid until this thread parses the next request.
std::optional<error> parse_document(std::string& body, object& doc, router::chat_request& req) {
  thread_local simdjson::dom::parser parser;
  const size_t len = body.size();
  body.reserve(len + simdjson::SIMDJSON_PADDING);
  element root;
  if (auto err = parser.parse(body.data(), len, false).get(root); err != simdjson::SUCCESS) {
    return bad(std::string("We could not parse the JSON body of your request: ") + simdjson::error_message(err) +
               ". The body must be a valid JSON object.");
  }
  if (root.type() != element_type::OBJECT) {
    return bad("The request body must be a JSON object, got " + std::string(type_name(root.type())) + ".");
  }
  if (auto e = duplicate_key_check().run(root)) return e;
  doc = object(root);
  element model;
  if (doc["model"].get(model) != simdjson::SUCCESS) return bad("Missing required parameter: 'model'.", "model");
  if (model.type() != element_type::STRING) return wrong_type("model", "string", model);
  req.model = std::string(std::string_view(model));
  return std::nullopt;
}

}  // namespace

router::result<router::chat_request> parse_openai_chat_request(std::string body) {
  router::chat_request req;
  req.format = router::wire_format::openai_chat;
  object doc;
  if (auto e = parse_document(body, doc, req)) return *e;

  element messages;
  if (doc["messages"].get(messages) != simdjson::SUCCESS) {
    return bad("Missing required parameter: 'messages'.", "messages");
  }
  if (messages.type() != element_type::ARRAY) return wrong_type("messages", "array", messages);
  size_t index = 0;
  for (element m : simdjson::dom::array(messages)) {
    router::message msg;
    if (auto e = read_message(m, index++, msg)) return *e;
    req.messages.push_back(std::move(msg));
  }
  if (req.messages.empty()) return bad("'messages' must contain at least one message.", "messages");
  if (auto e = read_common(doc, req)) return *e;

  element v;
  if (doc["logprobs"].get(v) == simdjson::SUCCESS) {
    if (auto e = read_bool(v, "logprobs", req.logprobs)) return *e;
  }
  if (doc["top_logprobs"].get(v) == simdjson::SUCCESS) {
    std::optional<int64_t> i;
    if (auto e = read_int(v, "top_logprobs", 0, 20, i)) return *e;
    req.top_logprobs = static_cast<int>(i.value_or(0));
    if (req.top_logprobs > 0 && !req.logprobs) {
      return bad("'top_logprobs' requires 'logprobs' to be true.", "top_logprobs");
    }
  }
  if (doc["response_format"].get(v) == simdjson::SUCCESS && !v.is_null()) {
    if (v.type() != element_type::OBJECT) return wrong_type("response_format", "object", v);
    std::string_view t;
    if (v["type"].get_string().get(t) != simdjson::SUCCESS) {
      return bad("Missing required parameter: 'response_format.type'.", "response_format.type");
    }
    if (t == "text") req.response_format_ = router::response_format::text;
    else if (t == "json_object") req.response_format_ = router::response_format::json_object;
    else if (t == "json_schema") req.response_format_ = router::response_format::json_schema;
    else {
      return bad("Invalid value for 'response_format.type': '" + std::string(t) +
                     "'. Supported values are: 'text', 'json_object' and 'json_schema'.",
                 "response_format.type");
    }
  }
  if (doc["tools"].get(v) == simdjson::SUCCESS && !v.is_null()) {
    if (v.type() != element_type::ARRAY) return wrong_type("tools", "array", v);
    req.has_tools = simdjson::dom::array(v).size() > 0;
  }
  req.raw_body = std::move(body);
  return req;
}

router::result<router::chat_request> parse_openai_completion_request(std::string body) {
  router::chat_request req;
  req.format = router::wire_format::openai_completions;
  object doc;
  if (auto e = parse_document(body, doc, req)) return *e;
  element prompt;
  if (doc["prompt"].get(prompt) != simdjson::SUCCESS) return bad("Missing required parameter: 'prompt'.", "prompt");
  if (prompt.type() == element_type::STRING) {
    req.prompt = std::string(std::string_view(prompt));
  } else if (prompt.type() == element_type::ARRAY && simdjson::dom::array(prompt).size() == 1 &&
             prompt.at(0).type() == element_type::STRING) {
    req.prompt = std::string(std::string_view(prompt.at(0)));
  } else {
    return bad("'prompt' must be a string (token arrays and batches of prompts are not supported).", "prompt");
  }
  router::message m;
  m.content = req.prompt;
  req.messages.push_back(std::move(m));
  if (auto e = read_common(doc, req)) return *e;
  element v;
  if (doc["logprobs"].get(v) == simdjson::SUCCESS && !v.is_null()) {
    // Legacy API: logprobs is an integer 0..5 meaning "top alternatives".
    std::optional<int64_t> i;
    if (auto e = read_int(v, "logprobs", 0, 5, i)) return *e;
    req.logprobs = i.has_value();
    req.top_logprobs = static_cast<int>(i.value_or(0));
  }
  if (doc["echo"].get(v) == simdjson::SUCCESS && !v.is_null()) {
    bool echo = false;
    if (auto e = read_bool(v, "echo", echo)) return *e;
    if (echo) return error{errc::not_implemented, "'echo' is not supported.", "echo"};
  }
  req.raw_body = std::move(body);
  return req;
}

std::string make_openai_upstream_body(const router::chat_request& req, std::string_view upstream_model,
                                      bool force_stream_usage) {
  const std::string& body = req.raw_body;
  std::vector<json_member_span> members;
  if (!scan_top_level_members(body, members)) return body;  // validated earlier: cannot happen
  std::string out;
  out.reserve(body.size() + upstream_model.size() + 48);
  size_t copied = 0;
  bool has_stream_options = false;
  const bool from_completions = req.format == router::wire_format::openai_completions;
  for (const auto& m : members) {
    if (m.key == "model") {
      out.append(body, copied, m.value_begin - copied);
      append_json_string(out, upstream_model);
      copied = m.value_end;
    } else if (from_completions && m.key == "prompt") {
      // A legacy completions request to a chat upstream: the prompt becomes one user message.
      out.append(body, copied, m.key_begin - copied);
      out += "\"messages\":[{\"role\":\"user\",\"content\":";
      append_json_string(out, req.prompt);
      out += "}]";
      copied = m.value_end;
    } else if (from_completions && (m.key == "suffix" || m.key == "best_of" || m.key == "echo")) {
      // Completions-only keys a chat upstream would reject: dropped with their separating comma.
      out.append(body, copied, m.key_begin - copied);
      while (!out.empty() && (out.back() == ' ' || out.back() == '\n' || out.back() == '\t' || out.back() == '\r')) {
        out.pop_back();
      }
      copied = m.value_end;
      if (!out.empty() && out.back() == ',') {
        out.pop_back();
      } else {  // the first member: drop the comma after it instead
        size_t i = copied;
        while (i < body.size() && (body[i] == ' ' || body[i] == '\n' || body[i] == '\t' || body[i] == '\r')) ++i;
        if (i < body.size() && body[i] == ',') copied = i + 1;
      }
    } else if (from_completions && m.key == "logprobs") {
      out.append(body, copied, m.key_begin - copied);
      if (req.logprobs) out += "\"logprobs\":true,\"top_logprobs\":" + std::to_string(req.top_logprobs);
      else out += "\"logprobs\":false";
      copied = m.value_end;
    } else if (m.key == "stream_options" && req.stream && force_stream_usage && !req.include_usage) {
      has_stream_options = true;
      out.append(body, copied, m.value_begin - copied);
      // Keep the client's other stream options; ask for usage too.
      std::string_view value(body.data() + m.value_begin, m.value_end - m.value_begin);
      std::vector<json_member_span> inner;
      if (value != "null" && scan_top_level_members(value, inner) && !inner.empty()) {
        out += "{\"include_usage\":true";
        for (const auto& im : inner) {
          if (im.key == "include_usage") continue;
          out += ',';
          out.append(value.substr(im.key_begin, im.value_end - im.key_begin));
        }
        out += '}';
      } else {
        out += "{\"include_usage\":true}";
      }
      copied = m.value_end;
    } else if (m.key == "stream_options") {
      has_stream_options = true;
    }
  }
  if (req.stream && force_stream_usage && !req.include_usage && !has_stream_options) {
    const size_t close = find_top_level_close(body);
    out.append(body, copied, close - copied);
    out += members.empty() ? "\"stream_options\":{\"include_usage\":true}" : ",\"stream_options\":{\"include_usage\":true}";
    copied = close;
  }
  out.append(body, copied, std::string::npos);
  return out;
}

}  // namespace sluice::gateway
