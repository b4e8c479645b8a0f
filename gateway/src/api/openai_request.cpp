// Parsing and validating OpenAI requests (chat completions and legacy completions) into chat_request, and the
// body a same-wire upstream gets. The hot path builds no strings but the request's own: field names for error
// messages are only written when there is an error, and a reused chat_request keeps its memory.
#include <simdjson.h>

#include <algorithm>
#include <array>
#include <string>
#include <vector>

#include "api/json_util.h"
#include "api/request_errors.h"
#include "api/anthropic_codec.h"
#include "api/openai_codec.h"

namespace sluice::gateway {

namespace {

using router::errc;
using router::error;
using simdjson::dom::element;
using simdjson::dom::element_type;
using simdjson::dom::object;

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
  return bad_request("Invalid type for '" + std::string(param) + "': expected " + want + ", but got " + type_name(e.type()) +
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
  // Reused per thread: its lists keep their memory between requests.
  std::optional<error> run(element root) {
    steps_.clear();
    keys_.clear();
    path_.clear();
    if (!visit(root)) return bad_request("Duplicate key '" + path_ + "' in the request body.", path_);
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
    return bad_request("'" + std::string(name) + "' must be between " + std::to_string(lo).substr(0, 4) + " and " +
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
    return bad_request("'" + std::string(name) + "' must be between " + std::to_string(lo) + " and " + std::to_string(hi) +
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

// "messages[i]" + suffix: the name of a message's field, written only for an error message.
std::string message_param(size_t index, std::string_view suffix = {}) {
  std::string p = "messages[" + std::to_string(index) + "]";
  p += suffix;
  return p;
}

// messages[i].content[k]
std::string part_param(size_t index, size_t part, std::string_view suffix = {}) {
  std::string p = message_param(index, ".content[") + std::to_string(part) + "]";
  p += suffix;
  return p;
}

std::optional<error> read_content(element v, size_t index, router::message& m) {
  if (v.type() == element_type::STRING) {
    m.content.assign(std::string_view(v));
    return std::nullopt;
  }
  if (v.type() != element_type::ARRAY) return wrong_type(message_param(index, ".content"), "string or array of content parts", v);
  size_t k = 0;
  for (element part : simdjson::dom::array(v)) {
    const size_t pk = k++;
    if (part.type() != element_type::OBJECT) return wrong_type(part_param(index, pk), "object", part);
    object po(part);
    element type;
    if (po["type"].get(type) != simdjson::SUCCESS) {
      return bad_request("Missing required parameter: '" + part_param(index, pk, ".type") + "'.", part_param(index, pk, ".type"));
    }
    if (type.type() != element_type::STRING) return wrong_type(part_param(index, pk, ".type"), "string", type);
    const std::string_view t(type);
    if (t == "text") {
      element text;
      if (po["text"].get(text) != simdjson::SUCCESS) {
        return bad_request("Missing required parameter: '" + part_param(index, pk, ".text") + "'.", part_param(index, pk, ".text"));
      }
      if (text.type() != element_type::STRING) return wrong_type(part_param(index, pk, ".text"), "string", text);
      m.content += std::string_view(text);
    } else {
      ++m.parts_non_text;
    }
  }
  return std::nullopt;
}

std::optional<error> read_message(element v, size_t index, router::message& m) {
  if (v.type() != element_type::OBJECT) return wrong_type(message_param(index), "object", v);
  // The members read, in one pass (keys are unique: duplicates were refused); checked below in the order the
  // errors have always been reported in: role, content, then name and tool_call_id as they appear, tool_calls.
  element role, content, tool_calls, name, tool_call_id;
  bool has_role = false, has_content = false, has_tool_calls = false, has_name = false, has_tool_call_id = false;
  bool name_first = true;
  for (auto field : object(v)) {
    if (field.key == "role") has_role = (role = field.value, true);
    else if (field.key == "content") has_content = (content = field.value, !content.is_null());
    else if (field.key == "tool_calls") has_tool_calls = (tool_calls = field.value, !tool_calls.is_null());
    else if (field.key == "name") has_name = (name = field.value, true);
    else if (field.key == "tool_call_id") {
      has_tool_call_id = (tool_call_id = field.value, true);
      name_first = has_name;
    }
  }
  if (!has_role) {
    return bad_request("Missing required parameter: '" + message_param(index, ".role") + "'.", message_param(index, ".role"));
  }
  if (role.type() != element_type::STRING) return wrong_type(message_param(index, ".role"), "string", role);
  const std::string_view r(role);
  if (r == "system") m.role_ = router::role::system;
  else if (r == "developer") m.role_ = router::role::developer;
  else if (r == "user") m.role_ = router::role::user;
  else if (r == "assistant") m.role_ = router::role::assistant;
  else if (r == "tool" || r == "function") m.role_ = router::role::tool;
  else {
    return bad_request("Invalid value for '" + message_param(index, ".role") + "': '" + std::string(r) +
                   "'. Supported values are: 'system', 'developer', 'user', 'assistant', 'tool' and 'function'.",
               message_param(index, ".role"));
  }
  if (has_content) {
    if (auto e = read_content(content, index, m)) return e;
  } else if (m.role_ != router::role::assistant) {
    return bad_request("Missing required parameter: '" + message_param(index, ".content") + "'.", message_param(index, ".content"));
  }
  auto read_name = [&]() -> std::optional<error> {
    if (!has_name) return std::nullopt;
    if (name.type() != element_type::STRING) return wrong_type(message_param(index, ".name"), "string", name);
    m.name.assign(std::string_view(name));
    return std::nullopt;
  };
  auto read_tool_call_id = [&]() -> std::optional<error> {
    if (!has_tool_call_id) return std::nullopt;
    if (tool_call_id.type() != element_type::STRING) {
      return wrong_type(message_param(index, ".tool_call_id"), "string", tool_call_id);
    }
    m.tool_call_id.assign(std::string_view(tool_call_id));
    return std::nullopt;
  };
  if (auto e = name_first ? read_name() : read_tool_call_id()) return e;
  if (auto e = name_first ? read_tool_call_id() : read_name()) return e;
  if (has_tool_calls) {
    if (tool_calls.type() != element_type::ARRAY) return wrong_type(message_param(index, ".tool_calls"), "array", tool_calls);
    for (element tc : simdjson::dom::array(tool_calls)) {
      if (tc.type() != element_type::OBJECT) return wrong_type(message_param(index, ".tool_calls[]"), "object", tc);
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

// A message slot of a reused request, back to a fresh state with its strings' memory kept.
void reset_message(router::message& m) {
  router::message fresh;
  fresh.content = std::move(m.content);
  fresh.content.clear();
  fresh.name = std::move(m.name);
  fresh.name.clear();
  fresh.tool_call_id = std::move(m.tool_call_id);
  fresh.tool_call_id.clear();
  m = std::move(fresh);
}

// The top-level members the parser reads, found in one pass over the object (duplicate keys were rejected
// before, so the first match is the only one): a lookup is then an index, not a search over the keys.
enum class key { model, messages, prompt, temperature, top_p, min_p, top_k, frequency_penalty, presence_penalty, seed, max_tokens, max_completion_tokens, n, stop, stream, stream_options, user, logprobs, top_logprobs, response_format, tools, echo, count_ };
constexpr std::string_view key_names[] = {"model", "messages", "prompt", "temperature", "top_p", "min_p", "top_k", "frequency_penalty", "presence_penalty", "seed", "max_tokens", "max_completion_tokens", "n", "stop", "stream", "stream_options", "user", "logprobs", "top_logprobs", "response_format", "tools", "echo"};
static_assert(std::size(key_names) == static_cast<size_t>(key::count_));

class top_members {
 public:
  top_members() = default;
  explicit top_members(object doc) : doc_(doc) {
    for (auto field : doc) {
      for (size_t k = 0; k < std::size(key_names); ++k) {
        if (field.key == key_names[k]) {
          values_[k] = field.value;
          present_ |= uint32_t{1} << k;
          break;
        }
      }
    }
  }
  // As simdjson's object[] for these keys: SUCCESS and the value, or NO_SUCH_FIELD.
  struct lookup {
    const top_members* m;
    size_t k;
    simdjson::error_code get(element& out) const {
      if (!((m->present_ >> k) & 1)) return simdjson::NO_SUCH_FIELD;
      out = m->values_[k];
      return simdjson::SUCCESS;
    }
  };
  lookup operator[](key k) const { return {this, static_cast<size_t>(k)}; }
  object whole() const { return doc_; }

 private:
  object doc_;
  std::array<element, std::size(key_names)> values_;
  uint32_t present_ = 0;
};

// Fields shared by chat and legacy completions.
std::optional<error> read_common(const top_members& doc, router::chat_request& req) {
  element v;
  std::optional<double> d;
  std::optional<int64_t> i;
  if (doc[key::temperature].get(v) == simdjson::SUCCESS) {
    if (auto e = read_number(v, "temperature", 0.0, 2.0, req.sampling.temperature)) return e;
  }
  if (doc[key::top_p].get(v) == simdjson::SUCCESS) {
    if (auto e = read_number(v, "top_p", 0.0, 1.0, req.sampling.top_p)) return e;
  }
  if (doc[key::min_p].get(v) == simdjson::SUCCESS) {
    if (auto e = read_number(v, "min_p", 0.0, 1.0, req.sampling.min_p)) return e;
  }
  if (doc[key::top_k].get(v) == simdjson::SUCCESS) {
    if (auto e = read_int(v, "top_k", 0, 1'000'000, i)) return e;
    if (i) req.sampling.top_k = static_cast<int>(*i);
  }
  if (doc[key::frequency_penalty].get(v) == simdjson::SUCCESS) {
    if (auto e = read_number(v, "frequency_penalty", -2.0, 2.0, d)) return e;
    req.sampling.frequency_penalty = d.value_or(0.0);
    d.reset();
  }
  if (doc[key::presence_penalty].get(v) == simdjson::SUCCESS) {
    if (auto e = read_number(v, "presence_penalty", -2.0, 2.0, d)) return e;
    req.sampling.presence_penalty = d.value_or(0.0);
    d.reset();
  }
  if (doc[key::seed].get(v) == simdjson::SUCCESS && !v.is_null()) {
    int64_t s = 0;
    uint64_t u = 0;
    if (v.get_int64().get(s) == simdjson::SUCCESS) req.sampling.seed = static_cast<uint64_t>(s);
    else if (v.get_uint64().get(u) == simdjson::SUCCESS) req.sampling.seed = u;
    else return wrong_type("seed", "integer", v);
  }
  // max_completion_tokens supersedes max_tokens in the current API; both are accepted.
  for (const key k : {key::max_tokens, key::max_completion_tokens}) {
    const std::string_view name = key_names[static_cast<size_t>(k)];
    if (doc[k].get(v) == simdjson::SUCCESS) {
      i.reset();
      if (auto e = read_int(v, name, 1, 100'000'000, i)) return e;
      if (i) req.max_output_tokens = static_cast<int>(*i);
    }
  }
  if (doc[key::n].get(v) == simdjson::SUCCESS) {
    i.reset();
    if (auto e = read_int(v, "n", 1, 128, i)) return e;
    req.n = static_cast<int>(i.value_or(1));
  }
  if (doc[key::stop].get(v) == simdjson::SUCCESS && !v.is_null()) {
    if (v.type() == element_type::STRING) {
      req.stop.emplace_back(std::string_view(v));
    } else if (v.type() == element_type::ARRAY) {
      for (element s : simdjson::dom::array(v)) {
        if (s.type() != element_type::STRING) return wrong_type("stop", "string or array of strings", s);
        req.stop.emplace_back(std::string_view(s));
      }
      if (req.stop.size() > 4) return bad_request("'stop' may hold at most 4 sequences.", "stop");
    } else {
      return wrong_type("stop", "string or array of strings", v);
    }
    for (const auto& s : req.stop) {
      if (s.empty()) return bad_request("'stop' sequences must not be empty.", "stop");
    }
  }
  if (doc[key::stream].get(v) == simdjson::SUCCESS) {
    if (auto e = read_bool(v, "stream", req.stream)) return e;
  }
  if (doc[key::stream_options].get(v) == simdjson::SUCCESS && !v.is_null()) {
    if (v.type() != element_type::OBJECT) return wrong_type("stream_options", "object", v);
    if (!req.stream) return bad_request("'stream_options' is only allowed when 'stream' is true.", "stream_options");
    element u;
    if (v["include_usage"].get(u) == simdjson::SUCCESS) {
      if (auto e = read_bool(u, "stream_options.include_usage", req.include_usage)) return e;
    }
  }
  if (doc[key::user].get(v) == simdjson::SUCCESS && !v.is_null() && v.type() != element_type::STRING) {
    return wrong_type("user", "string", v);
  }
  return std::nullopt;
}

// The parser of this thread; its memory is reused by every request the thread parses.
simdjson::dom::parser& thread_parser() {
  thread_local simdjson::dom::parser parser;
  return parser;
}

// Where "model" and "stream_options" sit in `body`, from the structure the parse found (no pass over the bytes;
// member i of the DOM is member i of the text, so keys are compared unescaped, as the DOM read them).
void record_spans(std::string_view body, object doc, router::chat_request& req) {
  thread_local std::vector<json_member_pos> members;
  const auto& impl = thread_parser().implementation;
  size_t close = 0;
  if (!impl || !member_positions_from_structurals(body, impl->structural_indexes.get(), impl->n_structural_indexes,
                                                  members, close)) {
    return;  // (cannot happen for a document this parser validated; the backend would scan the body instead)
  }
  size_t i = 0;
  for (auto field : doc) {
    if (i >= members.size()) return;
    const json_member_pos& m = members[i++];
    if (field.key == "model") req.raw_model = {m.value_begin, m.value_end};
    else if (field.key == "stream_options") req.raw_stream_options = {m.value_begin, m.value_end};
  }
  if (i != members.size()) {
    req.raw_model = {};
    req.raw_stream_options = {};
    return;
  }
  req.raw_object_end = close;
}

// Parses `body` (padded in place), checks the top level and reads `model` into req. On success `doc` is the
// root object; it stays valid until this thread parses the next request.
std::optional<error> parse_document(std::string& body, top_members& doc, router::chat_request& req) {
  simdjson::dom::parser& parser = thread_parser();
  const size_t len = body.size();
  body.reserve(len + simdjson::SIMDJSON_PADDING);
  element root;
  if (auto err = parser.parse(body.data(), len, false).get(root); err != simdjson::SUCCESS) {
    return bad_request(std::string("We could not parse the JSON body of your request: ") + simdjson::error_message(err) +
               ". The body must be a valid JSON object.");
  }
  if (root.type() != element_type::OBJECT) {
    return bad_request("The request body must be a JSON object, got " + std::string(type_name(root.type())) + ".");
  }
  thread_local duplicate_key_check duplicates;
  if (auto e = duplicates.run(root)) return e;
  doc = top_members(object(root));
  element model;
  if (doc[key::model].get(model) != simdjson::SUCCESS) return bad_request("Missing required parameter: 'model'.", "model");
  if (model.type() != element_type::STRING) return wrong_type("model", "string", model);
  req.model.assign(std::string_view(model));
  return std::nullopt;
}

// A reused request back to a freshly constructed state, keeping the memory of its strings and messages (every
// field not listed here takes its default, also fields added later).
void reset_keeping_memory(router::chat_request& r) {
  router::chat_request fresh;
  fresh.request_id = std::move(r.request_id);
  fresh.request_id.clear();
  fresh.model = std::move(r.model);
  fresh.model.clear();
  fresh.messages = std::move(r.messages);  // slots reused in place by the parse, then trimmed
  fresh.raw_body = std::move(r.raw_body);
  fresh.raw_body.clear();
  r = std::move(fresh);
}

// The next message slot of `req` (reused when the request had one there before).
router::message& message_slot(router::chat_request& req, size_t index) {
  if (index < req.messages.size()) {
    reset_message(req.messages[index]);
    return req.messages[index];
  }
  return req.messages.emplace_back();
}

}  // namespace

std::optional<router::error> reject_duplicate_keys(simdjson::dom::element root) {
  thread_local duplicate_key_check duplicates;
  return duplicates.run(root);
}

std::optional<router::error> parse_openai_chat_request(std::string& body, router::chat_request& req) {
  reset_keeping_memory(req);
  req.format = router::wire_format::openai_chat;
  top_members doc;
  if (auto e = parse_document(body, doc, req)) return e;

  element messages;
  if (doc[key::messages].get(messages) != simdjson::SUCCESS) {
    return bad_request("Missing required parameter: 'messages'.", "messages");
  }
  if (messages.type() != element_type::ARRAY) return wrong_type("messages", "array", messages);
  size_t index = 0;
  for (element m : simdjson::dom::array(messages)) {
    router::message& msg = message_slot(req, index);
    if (auto e = read_message(m, index++, msg)) return e;
  }
  req.messages.resize(index);
  if (req.messages.empty()) return bad_request("'messages' must contain at least one message.", "messages");
  if (auto e = read_common(doc, req)) return e;

  element v;
  if (doc[key::logprobs].get(v) == simdjson::SUCCESS) {
    if (auto e = read_bool(v, "logprobs", req.logprobs)) return e;
  }
  if (doc[key::top_logprobs].get(v) == simdjson::SUCCESS) {
    std::optional<int64_t> i;
    if (auto e = read_int(v, "top_logprobs", 0, 20, i)) return e;
    req.top_logprobs = static_cast<int>(i.value_or(0));
    if (req.top_logprobs > 0 && !req.logprobs) {
      return bad_request("'top_logprobs' requires 'logprobs' to be true.", "top_logprobs");
    }
  }
  if (doc[key::response_format].get(v) == simdjson::SUCCESS && !v.is_null()) {
    if (v.type() != element_type::OBJECT) return wrong_type("response_format", "object", v);
    std::string_view t;
    if (v["type"].get_string().get(t) != simdjson::SUCCESS) {
      return bad_request("Missing required parameter: 'response_format.type'.", "response_format.type");
    }
    if (t == "text") req.response_format_ = router::response_format::text;
    else if (t == "json_object") req.response_format_ = router::response_format::json_object;
    else if (t == "json_schema") req.response_format_ = router::response_format::json_schema;
    else {
      return bad_request("Invalid value for 'response_format.type': '" + std::string(t) +
                     "'. Supported values are: 'text', 'json_object' and 'json_schema'.",
                 "response_format.type");
    }
  }
  if (doc[key::tools].get(v) == simdjson::SUCCESS && !v.is_null()) {
    if (v.type() != element_type::ARRAY) return wrong_type("tools", "array", v);
    req.has_tools = simdjson::dom::array(v).size() > 0;
  }
  record_spans(body, doc.whole(), req);
  std::swap(req.raw_body, body);  // the caller gets the request's previous buffer back, emptied
  return std::nullopt;
}

router::result<router::chat_request> parse_openai_chat_request(std::string body) {
  router::chat_request req;
  if (auto e = parse_openai_chat_request(body, req)) return *e;
  return req;
}

std::optional<router::error> parse_openai_completion_request(std::string& body, router::chat_request& req) {
  reset_keeping_memory(req);
  req.format = router::wire_format::openai_completions;
  top_members doc;
  if (auto e = parse_document(body, doc, req)) return e;
  element prompt;
  if (doc[key::prompt].get(prompt) != simdjson::SUCCESS) return bad_request("Missing required parameter: 'prompt'.", "prompt");
  if (prompt.type() == element_type::STRING) {
    req.prompt = std::string(std::string_view(prompt));
  } else if (prompt.type() == element_type::ARRAY && simdjson::dom::array(prompt).size() == 1 &&
             prompt.at(0).type() == element_type::STRING) {
    req.prompt = std::string(std::string_view(prompt.at(0)));
  } else {
    return bad_request("'prompt' must be a string (token arrays and batches of prompts are not supported).", "prompt");
  }
  router::message& m = message_slot(req, 0);
  m.content = req.prompt;
  req.messages.resize(1);
  if (auto e = read_common(doc, req)) return e;
  element v;
  if (doc[key::logprobs].get(v) == simdjson::SUCCESS && !v.is_null()) {
    // Legacy API: logprobs is an integer 0..5 meaning "top alternatives".
    std::optional<int64_t> i;
    if (auto e = read_int(v, "logprobs", 0, 5, i)) return e;
    req.logprobs = i.has_value();
    req.top_logprobs = static_cast<int>(i.value_or(0));
  }
  if (doc[key::echo].get(v) == simdjson::SUCCESS && !v.is_null()) {
    bool echo = false;
    if (auto e = read_bool(v, "echo", echo)) return e;
    if (echo) return error{errc::not_implemented, "'echo' is not supported.", "echo"};
  }
  std::swap(req.raw_body, body);
  return std::nullopt;
}

router::result<router::chat_request> parse_openai_completion_request(std::string body) {
  router::chat_request req;
  if (auto e = parse_openai_completion_request(body, req)) return *e;
  return req;
}

namespace {

// The value stream_options gets when the gateway asks for usage: the client's other options kept.
void usage_stream_options(std::string_view value, std::string& out) {
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
}

}  // namespace

bool openai_upstream_body_pieces(const router::chat_request& req, std::string_view model_json,
                                 bool force_stream_usage, std::string& scratch, body_pieces& out) {
  const std::string_view body = req.raw_body;
  const auto& model = req.raw_model;
  if (req.format != router::wire_format::openai_chat || model.empty() || model.end > body.size() ||
      req.raw_object_end >= body.size() || req.raw_stream_options.end > body.size()) {
    return false;
  }
  out.count = 0;
  scratch.clear();
  auto add = [&](std::string_view p) { out.piece[out.count++] = p; };
  const bool ask_usage = req.stream && force_stream_usage && !req.include_usage;
  if (!ask_usage) {
    add(body.substr(0, model.begin));
    add(model_json);
    add(body.substr(model.end));
    return true;
  }
  const auto& opts = req.raw_stream_options;
  if (opts.empty()) {  // no stream_options: one more member before the closing brace
    scratch = ",\"stream_options\":{\"include_usage\":true}";
    add(body.substr(0, model.begin));
    add(model_json);
    add(body.substr(model.end, req.raw_object_end - model.end));
    add(scratch);
    add(body.substr(req.raw_object_end));
    return true;
  }
  usage_stream_options(body.substr(opts.begin, opts.end - opts.begin), scratch);
  // The two replaced values, in the order they appear.
  const bool model_first = model.begin < opts.begin;
  const auto& a = model_first ? model : opts;
  const auto& b = model_first ? opts : model;
  add(body.substr(0, a.begin));
  add(model_first ? model_json : std::string_view(scratch));
  add(body.substr(a.end, b.begin - a.end));
  add(model_first ? std::string_view(scratch) : model_json);
  add(body.substr(b.end));
  return true;
}

std::string make_openai_upstream_body(const router::chat_request& req, std::string_view upstream_model,
                                      bool force_stream_usage) {
  if (req.format == router::wire_format::anthropic_messages) {  // (/v1/messages: built from the parsed request)
    return openai_chat_body_from_request(req, upstream_model, force_stream_usage);
  }
  {
    std::string model_json, scratch;
    append_json_string(model_json, upstream_model);
    body_pieces pieces;
    if (openai_upstream_body_pieces(req, model_json, force_stream_usage, scratch, pieces)) {
      std::string out;
      out.reserve(pieces.size());
      for (size_t i = 0; i < pieces.count; ++i) out.append(pieces.piece[i]);
      return out;
    }
  }
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
      usage_stream_options(std::string_view(body.data() + m.value_begin, m.value_end - m.value_begin), out);
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
