// OpenAI wire format <-> the internal model (router/chat.h). Parsing validates the whole document before
// anything is routed (PITFALLS.md: simdjson on-demand validates only what it reads, so this uses the DOM
// parser), rejects duplicate keys, and names the offending field. What must not go in here: routing, costs,
// sockets.
#pragma once

#include <array>
#include <optional>
#include <string>
#include <string_view>

#include "sluice/router/chat.h"
#include "sluice/router/error.h"

namespace simdjson::dom {
class element;
}

namespace sluice::gateway {

// Refuses a key repeated in any object of a parsed document (PITFALLS.md "Duplicate keys"); shared by the codecs.
std::optional<router::error> reject_duplicate_keys(simdjson::dom::element root);

// POST /v1/chat/completions. Takes the body by value: it becomes chat_request::raw_body.
router::result<router::chat_request> parse_openai_chat_request(std::string body);
// POST /v1/completions (legacy text completions): prompt must be a string.
router::result<router::chat_request> parse_openai_completion_request(std::string body);
// The same, into a chat_request that is reused (its strings and message list keep their memory; every field is
// set anew). On success `out.raw_body` holds the body and `body` gets out's previous body buffer, emptied, so a
// connection passes the same two buffers back and forth. The chat form also records where "model" and
// "stream_options" are in the body (chat_request::raw_model, ...).
std::optional<router::error> parse_openai_chat_request(std::string& body, router::chat_request& out);
std::optional<router::error> parse_openai_completion_request(std::string& body, router::chat_request& out);

// The body for an OpenAI chat upstream: the client's body with "model" set to `upstream_model` and every
// other byte kept; a legacy completions request becomes a chat request (its prompt one user message, its
// integer logprobs the chat form). With `force_stream_usage`, a streaming request also asks for
// stream_options.include_usage (so the gateway can account for it even when the client did not).
std::string make_openai_upstream_body(const router::chat_request& req, std::string_view upstream_model,
                                      bool force_stream_usage);

// The same body for a chat request, as pieces to write one after the other: the client's bytes around what
// changes (the model; for a stream that must ask for usage, stream_options), none of them copied. `model_json`
// is the upstream model as a JSON string literal; new bytes other than it go into `scratch`. Returns false when
// the request has no recorded spans (a completions request, or one not made by the parser): then use
// make_openai_upstream_body.
struct body_pieces {
  std::array<std::string_view, 5> piece;
  size_t count = 0;
  size_t size() const {
    size_t n = 0;
    for (size_t i = 0; i < count; ++i) n += piece[i].size();
    return n;
  }
};
bool openai_upstream_body_pieces(const router::chat_request& req, std::string_view model_json,
                                 bool force_stream_usage, std::string& scratch, body_pieces& out);

// {"error":{"message","type","param","code"}}
std::string openai_error_body(const router::error& e);

// Reads usage, text, tool calls, finish reason and model from an upstream chat.completion body.
// Returns false when the body is not a valid chat.completion.
bool parse_openai_chat_response(std::string_view body, router::completion& out);

// Reads one streamed chat.completion.chunk (an SSE data payload) into `out` (text delta, finish, usage).
// Returns false when it is not valid JSON. `is_usage_only` is set for the include_usage chunk ("choices": []).
bool parse_openai_chat_chunk(std::string_view data, router::chunk& out, bool& is_usage_only);

// Serialisers for answers the gateway produces itself (the local tier).
struct response_ids {
  std::string id;       // "chatcmpl-..."
  int64_t created = 0;  // unix seconds
  std::string model;
};
std::string openai_chat_response(const router::completion& c, const router::chat_request& req, const response_ids& ids);
std::string openai_chat_chunk_json(const router::chunk& c, const router::chat_request& req, const response_ids& ids,
                                   bool first);
std::string openai_usage_chunk_json(const router::usage& u, const response_ids& ids, bool completions_api);
std::string openai_completion_response(const router::completion& c, const router::chat_request& req,
                                       const response_ids& ids);
std::string openai_completion_chunk_json(const router::chunk& c, const router::chat_request& req,
                                         const response_ids& ids);
void append_openai_usage(std::string& out, const router::usage& u);

}  // namespace sluice::gateway
