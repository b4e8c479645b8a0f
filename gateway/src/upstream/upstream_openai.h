// The OpenAI-compatible upstream backend: an HTTP/1.1 client (plain or TLS with certificate verification)
// with a keep-alive connection pool per model, a deadline per request, SSE stream relaying and cancellation.
// Implements router::backend. What must not go in here: routing or cost decisions, client-facing wire code.
#pragma once

#include <boost/asio/io_context.hpp>
#include <memory>

#include "sluice/policies/policy.h"
#include "sluice/router/backend.h"

namespace sluice::gateway {

class gateway_metrics;  // ops/gateway_metrics.h

struct upstream_options {
  // Per attempt (the model's timeout_ms, else server.request_timeout_ms): connecting and the response head; a
  // non-streaming answer in full; each gap between the reads of a stream. The whole request, stream included,
  // is bounded by the session (server.request_timeout_ms, event_queue::set_deadline), which cancels the call.
  std::chrono::milliseconds timeout{600'000};
  size_t max_idle_connections = 64;
  size_t max_response_bytes = 64 * 1024 * 1024;  // non-streaming bodies; streams are unlimited (PITFALLS.md)
  // Failed attempts are counted here by what failed (sluice_upstream_errors_total); null = not counted.
  std::shared_ptr<gateway_metrics> metrics;
};

// Creates the backend for one policy model (kind openai). The API key is read from the model's
// api_key_env now, once; it is never logged.
router::result<std::shared_ptr<router::backend>> make_openai_backend(boost::asio::io_context& ioc,
                                                                     const policies::model_config& model,
                                                                     const upstream_options& opts);

}  // namespace sluice::gateway
