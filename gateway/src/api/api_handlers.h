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

}  // namespace sluice::gateway
