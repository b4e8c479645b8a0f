// What differs between the wire protocols an upstream speaks, behind the one HTTP transport of
// upstream_openai.cpp (pool, TLS, deadlines, SSE framing, back-pressure): the path, the auth headers, the request
// body, and how an answer and a stream's events read. The OpenAI protocol is the transport's own inline fast path
// (no protocol object); others (upstream_anthropic.cpp) implement this. What must not go in here: I/O.
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "sluice/policies/policy.h"
#include "sluice/router/chat.h"
#include "sluice/router/error.h"

namespace sluice::gateway {

// Reads one call's event stream: each SSE data payload in order.
class upstream_stream_decoder {
 public:
  enum class step { none, chunk, done, failed };
  virtual ~upstream_stream_decoder() = default;
  // `out` gets a chunk for the client (step::chunk); `acc` accumulates the completion; `err` says what failed
  // (step::failed), `malformed` whether that was garbage rather than an error the upstream reported.
  virtual step on_event(std::string_view data, router::chunk& out, router::completion& acc, router::error& err,
                        bool& malformed) = 0;
};

class upstream_protocol {
 public:
  virtual ~upstream_protocol() = default;
  virtual std::string_view path() const = 0;  // after the base_url's path, e.g. "/messages"
  // Complete header lines ("Name: value\r\n") carrying the key and protocol version; the key is never logged.
  virtual std::string auth_headers(const std::string& api_key) const = 0;
  // The request body; an error (e.g. a feature the protocol lacks) refuses the request before anything is sent.
  virtual router::result<std::string> request_body(const router::chat_request& req,
                                                   const policies::model_config& model) const = 0;
  // A 200 answer to a non-streaming request; false when malformed.
  virtual bool parse_answer(std::string_view body, router::completion& out) const = 0;
  virtual std::unique_ptr<upstream_stream_decoder> stream_decoder(const policies::model_config& model) const = 0;
};

}  // namespace sluice::gateway
