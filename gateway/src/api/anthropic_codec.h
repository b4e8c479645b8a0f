// Anthropic Messages wire format <-> the internal model (router/chat.h), both ways:
// - inbound (POST /v1/messages from Anthropic SDK apps): the request into a chat_request, the gateway's answers,
//   stream events and errors out in Anthropic's shapes;
// - upstream (policy models of kind anthropic): a chat_request into a Messages request body, and a Messages
//   answer or event stream back into a completion and chunks.
// Like openai_codec.h: the whole document is validated (DOM parser), duplicate keys are refused, and errors name
// the offending field. Tool use is not translated: requests that use it are refused with 501 naming the field.
// What must not go in here: routing, costs, sockets.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "api/openai_codec.h"  // response_ids
#include "sluice/router/chat.h"
#include "sluice/router/error.h"

namespace sluice::gateway {

// ---- inbound ----

// The anthropic-version header: absent or any dated version (YYYY-MM-DD) is served (the text subset the gateway
// speaks is the same in all of them); anything else is an error naming the header.
std::optional<router::error> check_anthropic_version(std::string_view header_value);

// POST /v1/messages. As parse_openai_chat_request: `out` is reused, and on success out.raw_body holds the body
// and `body` gets out's previous buffer. max_tokens is required (as Anthropic requires it); system (a string or
// text blocks) becomes one leading system message.
std::optional<router::error> parse_anthropic_messages_request(std::string& body, router::chat_request& out);

// {"type":"error","error":{"type":...,"message":...}}
std::string anthropic_error_body(const router::error& e);

// Anthropic's stop_reason for a finish reason ("stop_sequence" when `stop_sequence` is set).
std::string_view anthropic_stop_reason(router::finish_reason f, std::string_view stop_sequence);

// A whole "message" answer (ids.id is "msg_...").
std::string anthropic_message_json(const router::completion& c, const response_ids& ids);

// The events of a streamed answer, as SSE data payloads (their event names are the "type" values).
std::string anthropic_message_start_json(const response_ids& ids, const router::usage& known);
std::string_view anthropic_content_block_start_json();  // one text block, index 0
std::string anthropic_text_delta_json(std::string_view text);
std::string_view anthropic_content_block_stop_json();
std::string anthropic_message_delta_json(router::finish_reason f, std::string_view stop_sequence,
                                         const router::usage& u);
std::string_view anthropic_message_stop_json();
std::string_view anthropic_ping_json();

// ---- upstream (kind: anthropic) ----

struct anthropic_upstream_options {
  int default_max_tokens = 4096;       // Messages requires max_tokens; used when the request has none
  size_t cache_system_min_chars = 0;   // 0 = never mark; else mark a system prompt at least this long
};

// The Messages request body for `req` on `upstream_model` (a legacy completions prompt is one user message).
// Refuses (501, naming the field) what Messages cannot express without tools translation: tools, tool messages,
// n > 1, logprobs, JSON response formats, non-text parts.
router::result<std::string> make_anthropic_upstream_body(const router::chat_request& req,
                                                         std::string_view upstream_model,
                                                         const anthropic_upstream_options& opts);

// Reads text, stop reason, usage (normalised: PITFALLS.md "Money") and model from a Messages answer.
bool parse_anthropic_message_response(std::string_view body, router::completion& out);

// The error type and message of an Anthropic error body ("" when it has none).
struct anthropic_error_fields {
  std::string type;
  std::string message;
};
anthropic_error_fields parse_anthropic_error(std::string_view body);

// Decodes one Messages event stream (one per call): each SSE data payload in, what it means out.
class anthropic_stream_decoder {
 public:
  enum class step {
    none,    // nothing for the client (ping, block start/stop, message_start)
    chunk,   // `out` holds a chunk (text delta, or the finish with usage)
    done,    // message_stop: the stream ended well
    failed,  // an error event or a malformed payload: `err` says which
  };
  explicit anthropic_stream_decoder(std::string model_name) : model_name_(std::move(model_name)) {}
  // `acc` accumulates the completion (text, finish, usage, model).
  step on_event(std::string_view data, router::chunk& out, router::completion& acc, router::error& err);
  bool malformed() const { return malformed_; }

 private:
  std::string model_name_;  // the policy model, for messages
  bool malformed_ = false;
};

// An OpenAI chat body built from the internal request (for requests that did not arrive as OpenAI chat, e.g.
// /v1/messages served by an OpenAI upstream).
std::string openai_chat_body_from_request(const router::chat_request& req, std::string_view upstream_model,
                                          bool force_stream_usage);

}  // namespace sluice::gateway
