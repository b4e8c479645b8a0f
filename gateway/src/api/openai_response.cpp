// OpenAI responses: reading upstream answers (for usage and text) and writing the gateway's own answers,
// chunks and errors.
#include <simdjson.h>

#include "api/json_util.h"
#include "api/openai_codec.h"
#include "http/recycler.h"

namespace sluice::gateway {

namespace {

using simdjson::dom::element;

router::finish_reason finish_from(std::string_view s) {
  if (s == "length") return router::finish_reason::length;
  if (s == "tool_calls" || s == "function_call") return router::finish_reason::tool_calls;
  if (s == "content_filter") return router::finish_reason::content_filter;
  return router::finish_reason::stop;
}

void read_usage(element u, router::usage& out) {
  // One pass over the usage object; the first of a repeated key counts, as operator[] would have it.
  bool prompt = false, completion = false, details = false;
  int64_t v = 0;
  for (auto field : simdjson::dom::object(u)) {
    if (!prompt && field.key == "prompt_tokens") {
      prompt = true;
      if (field.value.get_int64().get(v) == simdjson::SUCCESS) out.tokens_input = v;
    } else if (!completion && field.key == "completion_tokens") {
      completion = true;
      if (field.value.get_int64().get(v) == simdjson::SUCCESS) out.tokens_output = v;
    } else if (!details && field.key == "prompt_tokens_details") {
      details = true;
      // OpenAI: prompt_tokens already includes cached_tokens (PITFALLS.md "Money").
      if (field.value["cached_tokens"].get_int64().get(v) == simdjson::SUCCESS) out.tokens_cache_read = v;
    }
  }
}

// Sets `dst` to `v` in a recycled buffer when `v` is too long for the string itself (the session hands the
// completion's strings back once the answer is written: recycler.h).
void assign_recycled(std::string& dst, std::string_view v) {
  if (v.size() > dst.capacity()) {
    std::string b = take_buffer();
    if (b.capacity() >= v.size()) dst = std::move(b);
  }
  dst.assign(v);
}

bool parse_padded(simdjson::dom::parser& parser, std::string_view body, element& root) {
  return parser.parse(body.data(), body.size(), true).get(root) == simdjson::SUCCESS;
}

// A token's UTF-8 bytes as a JSON array of numbers (OpenAI's "bytes").
void append_bytes(std::string& out, std::string_view token) {
  out += '[';
  for (size_t i = 0; i < token.size(); ++i) {
    if (i) out += ',';
    out += std::to_string(static_cast<unsigned char>(token[i]));
  }
  out += ']';
}

// "finish_reason": a quoted reason or null.
void append_finish(std::string& out, const std::optional<router::finish_reason>& f) {
  if (!f) {
    out += "null";
    return;
  }
  out += '"';
  out += router::to_string(*f);
  out += '"';
}

void append_logprobs_content(std::string& out, const std::vector<router::token_logprob>& lps) {
  out += "{\"content\":[";
  bool first = true;
  for (const auto& lp : lps) {
    if (!first) out += ',';
    first = false;
    out += "{\"token\":";
    append_json_string(out, lp.token);
    out += ",\"logprob\":";
    append_json_number(out, lp.logprob);
    out += ",\"bytes\":";
    append_bytes(out, lp.token);
    out += ",\"top_logprobs\":[";
    for (size_t i = 0; i < lp.top.size(); ++i) {
      if (i) out += ',';
      out += "{\"token\":";
      append_json_string(out, lp.top[i].first);
      out += ",\"logprob\":";
      append_json_number(out, lp.top[i].second);
      out += ",\"bytes\":";
      append_bytes(out, lp.top[i].first);
      out += '}';
    }
    out += "]}";
  }
  out += "],\"refusal\":null}";
}

// Legacy completions logprobs: {"tokens":[...],"token_logprobs":[...],"top_logprobs":[{...}],"text_offset":[...]}
void append_legacy_logprobs(std::string& out, const std::vector<router::token_logprob>& lps, size_t offset0) {
  out += "{\"tokens\":[";
  for (size_t i = 0; i < lps.size(); ++i) {
    if (i) out += ',';
    append_json_string(out, lps[i].token);
  }
  out += "],\"token_logprobs\":[";
  for (size_t i = 0; i < lps.size(); ++i) {
    if (i) out += ',';
    append_json_number(out, lps[i].logprob);
  }
  out += "],\"top_logprobs\":[";
  for (size_t i = 0; i < lps.size(); ++i) {
    if (i) out += ',';
    out += '{';
    for (size_t k = 0; k < lps[i].top.size(); ++k) {
      if (k) out += ',';
      append_json_string(out, lps[i].top[k].first);
      out += ':';
      append_json_number(out, lps[i].top[k].second);
    }
    out += '}';
  }
  out += "],\"text_offset\":[";
  size_t off = offset0;
  for (size_t i = 0; i < lps.size(); ++i) {
    if (i) out += ',';
    out += std::to_string(off);
    off += lps[i].token.size();
  }
  out += "]}";
}

void append_head(std::string& out, const response_ids& ids, const char* object) {
  out += "{\"id\":";
  append_json_string(out, ids.id);
  out += ",\"object\":\"";
  out += object;
  out += "\",\"created\":";
  out += std::to_string(ids.created);
  out += ",\"model\":";
  append_json_string(out, ids.model);
  out += ",\"system_fingerprint\":null";
}

}  // namespace

std::string openai_error_body(const router::error& e) {
  const auto& inf = router::info(e.code);
  std::string out = "{\"error\":{\"message\":";
  append_json_string(out, e.message);
  out += ",\"type\":";
  append_json_string(out, inf.openai_type);
  out += ",\"param\":";
  if (e.param.empty()) out += "null";
  else append_json_string(out, e.param);
  out += ",\"code\":";
  append_json_string(out, inf.code);
  out += "}}";
  return out;
}

bool parse_openai_chat_response(std::string_view body, router::completion& out) {
  thread_local simdjson::dom::parser parser;
  element root;
  if (!parse_padded(parser, body, root) || !root.is_object()) return false;
  // The members read, found in one pass over the answer's top level (the first of a repeated key, as the
  // object's operator[] would): a chat.completion has a dozen members and this runs for every answer.
  element choices, model, usage;
  bool has_choices = false, has_model = false, has_usage = false;
  for (auto field : simdjson::dom::object(root)) {
    if (!has_choices && field.key == "choices") has_choices = (choices = field.value, true);
    else if (!has_model && field.key == "model") has_model = (model = field.value, true);
    else if (!has_usage && field.key == "usage") has_usage = (usage = field.value, true);
  }
  if (!has_choices || !choices.is_array()) return false;
  std::string_view s;
  if (has_model && model.get_string().get(s) == simdjson::SUCCESS) assign_recycled(out.model, s);
  for (element ch : simdjson::dom::array(choices)) {
    element message, finish, content, calls;
    bool has_message = false, has_finish = false, has_content = false, has_calls = false;
    if (ch.is_object()) {
      for (auto field : simdjson::dom::object(ch)) {
        if (!has_message && field.key == "message") has_message = (message = field.value, true);
        else if (!has_finish && field.key == "finish_reason") has_finish = (finish = field.value, true);
      }
    }
    if (has_message && message.is_object()) {
      for (auto field : simdjson::dom::object(message)) {
        if (!has_content && field.key == "content") has_content = (content = field.value, true);
        else if (!has_calls && field.key == "tool_calls") has_calls = (calls = field.value, true);
      }
    }
    if (has_content && content.get_string().get(s) == simdjson::SUCCESS) assign_recycled(out.text, s);
    if (has_finish && finish.get_string().get(s) == simdjson::SUCCESS) out.finish = finish_from(s);
    if (has_calls && calls.is_array()) {
      for (element tc : simdjson::dom::array(calls)) {
        router::tool_call call;
        if (tc["id"].get_string().get(s) == simdjson::SUCCESS) call.id = s;
        if (tc["function"]["name"].get_string().get(s) == simdjson::SUCCESS) call.name = s;
        if (tc["function"]["arguments"].get_string().get(s) == simdjson::SUCCESS) call.arguments_json = s;
        out.tool_calls.push_back(std::move(call));
      }
    }
    break;  // the first choice is the one we account for; n > 1 is relayed verbatim
  }
  if (has_usage && usage.is_object()) read_usage(usage, out.usage_);
  return true;
}

bool parse_openai_chat_chunk(std::string_view data, router::chunk& out, bool& is_usage_only) {
  thread_local simdjson::dom::parser parser;
  element root;
  is_usage_only = false;
  if (!parse_padded(parser, data, root) || !root.is_object()) return false;
  element choices;
  const bool has_choices = root["choices"].get(choices) == simdjson::SUCCESS && choices.is_array();
  std::string_view s;
  if (has_choices) {
    for (element ch : simdjson::dom::array(choices)) {
      if (ch["delta"]["content"].get_string().get(s) == simdjson::SUCCESS) out.text = s;
      if (ch["text"].get_string().get(s) == simdjson::SUCCESS) out.text = s;  // legacy completions chunk
      if (ch["finish_reason"].get_string().get(s) == simdjson::SUCCESS) out.finish = finish_from(s);
      break;
    }
  }
  element usage;
  if (root["usage"].get(usage) == simdjson::SUCCESS && usage.is_object()) {
    router::usage u;
    read_usage(usage, u);
    out.usage_ = u;
    is_usage_only = !has_choices || simdjson::dom::array(choices).size() == 0;
  }
  return true;
}

void append_openai_usage(std::string& out, const router::usage& u) {
  out += "{\"prompt_tokens\":";
  out += std::to_string(u.tokens_input);
  out += ",\"completion_tokens\":";
  out += std::to_string(u.tokens_output);
  out += ",\"total_tokens\":";
  out += std::to_string(u.tokens_input + u.tokens_output);
  out += ",\"prompt_tokens_details\":{\"cached_tokens\":";
  out += std::to_string(u.tokens_cache_read);
  out += "},\"completion_tokens_details\":{\"reasoning_tokens\":0}}";
}

std::string openai_chat_response(const router::completion& c, const router::chat_request& req,
                                 const response_ids& ids) {
  std::string out;
  out.reserve(256 + c.text.size() * 11 / 10);
  append_head(out, ids, "chat.completion");
  out += ",\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":";
  append_json_string(out, c.text);
  out += ",\"refusal\":null},\"logprobs\":";
  if (req.logprobs) append_logprobs_content(out, c.logprobs);
  else out += "null";
  out += ",\"finish_reason\":";
  append_finish(out, c.finish);
  out += "}],\"usage\":";
  append_openai_usage(out, c.usage_);
  out += '}';
  return out;
}

std::string openai_chat_chunk_json(const router::chunk& c, const router::chat_request& req, const response_ids& ids,
                                   bool first) {
  std::string out;
  out.reserve(192 + c.text.size());
  append_head(out, ids, "chat.completion.chunk");
  out += ",\"choices\":[{\"index\":0,\"delta\":{";
  if (first) out += "\"role\":\"assistant\"";
  if (!c.text.empty() || (first && !c.finish)) {  // the finishing chunk carries an empty delta, as OpenAI's does
    if (first) out += ',';
    out += "\"content\":";
    append_json_string(out, c.text);
  }
  out += "},\"logprobs\":";
  if (req.logprobs && !c.logprobs.empty()) append_logprobs_content(out, c.logprobs);
  else out += "null";
  out += ",\"finish_reason\":";
  append_finish(out, c.finish);
  out += "}]";
  if (req.include_usage) out += ",\"usage\":null";
  out += '}';
  return out;
}

std::string openai_usage_chunk_json(const router::usage& u, const response_ids& ids, bool completions_api) {
  std::string out;
  append_head(out, ids, completions_api ? "text_completion" : "chat.completion.chunk");
  out += ",\"choices\":[],\"usage\":";
  append_openai_usage(out, u);
  out += '}';
  return out;
}

namespace {

// One legacy completions choice: {"index":0,"text",...,"logprobs",...,"finish_reason",...}.
void append_completion_choice(std::string& out, std::string_view text, const std::vector<router::token_logprob>* lps,
                              const std::optional<router::finish_reason>& finish) {
  out += "{\"index\":0,\"text\":";
  append_json_string(out, text);
  out += ",\"logprobs\":";
  if (lps) append_legacy_logprobs(out, *lps, 0);
  else out += "null";
  out += ",\"finish_reason\":";
  append_finish(out, finish);
  out += '}';
}

}  // namespace

std::string openai_completion_response(const router::completion& c, const router::chat_request& req,
                                       const response_ids& ids) {
  std::string out;
  append_head(out, ids, "text_completion");
  out += ",\"choices\":[";
  append_completion_choice(out, c.text, req.logprobs ? &c.logprobs : nullptr, c.finish);
  out += "],\"usage\":";
  append_openai_usage(out, c.usage_);
  out += '}';
  return out;
}

std::string openai_completion_chunk_json(const router::chunk& c, const router::chat_request& req,
                                         const response_ids& ids) {
  std::string out;
  append_head(out, ids, "text_completion");
  out += ",\"choices\":[";
  append_completion_choice(out, c.text, req.logprobs && !c.logprobs.empty() ? &c.logprobs : nullptr, c.finish);
  out += "]}";
  return out;
}

}  // namespace sluice::gateway
