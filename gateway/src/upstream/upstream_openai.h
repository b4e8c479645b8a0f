// The OpenAI-compatible upstream backend: an HTTP/1.1 client (plain or TLS with certificate verification)
// with keep-alive connections pooled per io thread (no lock: a call runs on the io thread of the connection
// that made it, and takes and returns connections there), a deadline per request, SSE stream relaying and
// cancellation. Implements router::backend. What must not go in here: routing or cost decisions, client-facing
// wire code.
#pragma once

#include <chrono>
#include <memory>

#include "sluice/policies/policy.h"
#include "sluice/router/backend.h"

namespace sluice::gateway {

class gateway_metrics;  // ops/gateway_metrics.h
class io_threads;       // http/io_threads.h
class upstream_protocol;  // upstream/upstream_protocol.h

struct upstream_options {
  // Per attempt (the model's timeout_ms, else server.request_timeout_ms): connecting and the response head; a
  // non-streaming answer in full; each gap between the reads of a stream. The whole request, stream included,
  // is bounded by the session (server.request_timeout_ms, event_queue::set_deadline), which cancels the call.
  std::chrono::milliseconds timeout{600'000};
  size_t max_idle_connections = 64;  // per io thread
  size_t max_response_bytes = 64 * 1024 * 1024;  // non-streaming bodies; streams are unlimited (PITFALLS.md)
  // Failed attempts are counted here by what failed (sluice_upstream_errors_total); null = not counted.
  std::shared_ptr<gateway_metrics> metrics;
};

// Creates the backend for one policy model (kind openai). The API key is read from the model's
// api_key_env now, once; it is never logged. `threads` must outlive the backend.
router::result<std::shared_ptr<router::backend>> make_openai_backend(io_threads& threads,
                                                                     const policies::model_config& model,
                                                                     const upstream_options& opts);

// The same transport speaking another protocol (upstream_anthropic.h); null = OpenAI.
router::result<std::shared_ptr<router::backend>> make_upstream_backend(io_threads& threads,
                                                                       const policies::model_config& model,
                                                                       const upstream_options& opts,
                                                                       std::shared_ptr<const upstream_protocol> protocol);

}  // namespace sluice::gateway
