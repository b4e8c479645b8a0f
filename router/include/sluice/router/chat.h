// The wire-neutral chat request and completion that flow gateway -> router -> backend -> router -> gateway.
// What must not go in here: JSON, HTTP or engine types. Codecs in gateway/ translate wire formats to and from
// these structs; backends consume them. Field names follow STYLE.md (units in names, common prefixes).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace sluice::router {

// The wire format a request arrived in (or a backend speaks). Lets a same-wire backend relay the original body.
enum class wire_format { openai_chat, openai_completions, anthropic_messages };

enum class role { system, developer, user, assistant, tool };

struct tool_call {
  std::string id;
  std::string name;
  std::string arguments_json;  // the function arguments, as the model wrote them (a JSON string)
};

struct message {
  role role_ = role::user;
  std::string content;  // text parts joined in order; non-text parts are kept only in raw_body
  std::string name;
  std::string tool_call_id;  // role::tool: which call this answers
  std::vector<tool_call> tool_calls;  // role::assistant
  int parts_non_text = 0;  // images, audio, files: counted so features and validators know they exist
};

enum class response_format { text, json_object, json_schema };

struct sampling_params {
  std::optional<double> temperature;  // absent = backend default
  std::optional<double> top_p;
  std::optional<int> top_k;
  std::optional<double> min_p;
  double frequency_penalty = 0.0;
  double presence_penalty = 0.0;
  std::optional<uint64_t> seed;
};

struct chat_request {
  std::string request_id;  // ours, unique per request (also sent as x-request-id)
  std::string model;       // the policy model name the client asked for
  std::string caller;      // the API key's name, or "" when auth is off
  std::string traceparent; // the client's W3C traceparent (validated), forwarded upstream; "" when none
  wire_format format = wire_format::openai_chat;

  std::vector<message> messages;  // for wire_format::openai_completions: one user message holding the prompt
  std::string prompt;             // openai_completions only: the raw prompt (no chat template)
  sampling_params sampling;
  std::optional<int> max_output_tokens;
  std::vector<std::string> stop;
  response_format response_format_ = response_format::text;
  bool has_tools = false;
  // Prompt-cache marks from the client (Anthropic cache_control), kept for providers with an explicit cache.
  bool cache_system = false;  // the system prompt was marked
  bool cache_auto = false;    // a top-level mark: cache up to the last cacheable block
  bool stream = false;
  bool include_usage = false;  // stream_options.include_usage
  bool logprobs = false;
  int top_logprobs = 0;  // 0..20
  int n = 1;             // choices asked for

  // The body exactly as the client sent it. A backend that speaks the same wire format forwards it (with the
  // model name rewritten) so fields Sluice does not model (tools, response_format schemas, user, ...) survive.
  std::string raw_body;

  // Where the parse found the top-level members such a backend rewrites, as byte offsets into raw_body, so that
  // it forwards the body in pieces around them instead of scanning it again. Set for the chat format only;
  // an empty span means "absent" (and raw_model empty means "not recorded": scan raw_body instead).
  struct raw_span {
    size_t begin = 0;
    size_t end = 0;  // one past the last byte
    bool empty() const { return begin == end; }
  };
  raw_span raw_model;           // the value of "model" (a JSON string literal, quotes included)
  raw_span raw_stream_options;  // the value of "stream_options"
  size_t raw_object_end = 0;    // the top-level object's closing brace
};

enum class finish_reason { stop, length, tool_calls, content_filter, error };

// Token counts, normalised (PITFALLS.md "Money"): tokens_input = uncached + cache_read + cache_write.
struct usage {
  int64_t tokens_input = 0;
  int64_t tokens_cache_read = 0;
  int64_t tokens_cache_write = 0;
  int64_t tokens_output = 0;
};

struct token_logprob {
  std::string token;  // the token's text (may be a partial UTF-8 sequence)
  double logprob = 0.0;
  std::vector<std::pair<std::string, double>> top;  // alternatives, most likely first
};

// One streamed piece of a completion. Any field may be empty.
struct chunk {
  std::string text;  // the content delta
  std::vector<token_logprob> logprobs;
  std::optional<finish_reason> finish;
  std::optional<usage> usage_;  // usually only on the last chunk
  bool usage_only = false;      // carries nothing but usage (OpenAI's include_usage chunk, "choices": [])
  // The upstream's own chunk (one SSE data payload) when the backend speaks a wire format; a same-wire codec
  // relays it verbatim so tool-call deltas and other fields survive. Empty for the local engine.
  std::string raw;
  wire_format raw_format = wire_format::openai_chat;
};

// The whole result, after the last chunk.
struct completion {
  std::string text;
  std::vector<tool_call> tool_calls;
  std::vector<token_logprob> logprobs;
  finish_reason finish = finish_reason::stop;
  std::string stop_sequence;  // which stop sequence ended it, when the tier says so (Anthropic upstreams)
  usage usage_;
  std::string model;  // the model that produced it: the upstream's model name, or the local model's
  std::string raw;    // the upstream's whole response body, when non-streaming and same-wire
  // A tier that judges its own answer (a task tier) says how sure it is and from what confidence its answers
  // may be served; the cascade escalates below it.
  std::optional<double> confidence;
  std::optional<double> confidence_threshold;

  // Filled by the router, not by backends.
  std::string served_by;        // the policy model name (tier) that produced it
  double cost_usd = 0.0;        // what this answer cost, priced by the policy
  double backend_seconds = 0.0; // from backend start to its on_done (time spent waiting on the tier)
};

const char* to_string(role r);
const char* to_string(finish_reason f);

}  // namespace sluice::router
