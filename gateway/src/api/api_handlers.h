// The endpoints: thin handlers that parse the wire format into the internal request, call the router once,
// and serialise what comes back (JSON or SSE). No routing or cost logic here.
#pragma once

#include <memory>

#include "http/executor.h"
#include "server_state.h"

namespace sluice::gateway {

class http_session;

// Handles the request in `s`. Returns false when the connection must close afterwards.
task<bool> handle_request(http_session& s);

// The error body in the wire format of the endpoint asked for: Anthropic's for /v1/messages, else OpenAI's.
std::string wire_error_body(const http_session& s, const router::error& e);

// The access-log line of a request refused before it reached a backend (no-op without an access log).
void log_refused(http_session& s, int status, const router::error& e, std::string_view key = {},
                 std::string_view model = {}, double latency_s = 0.0);

}  // namespace sluice::gateway
