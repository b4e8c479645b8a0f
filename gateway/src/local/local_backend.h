// The adapter that makes the in-process engine a router::backend (the local tier). Engine callbacks arrive
// on the engine's thread and go straight to the sink, which posts them to the session: network threads
// never run model math.
#pragma once

#include <memory>

#include "sluice/policies/policy.h"
#include "sluice/router/backend.h"

namespace sluice::gateway {

class gateway_metrics;

// Loads the model's GGUF (kind local) and starts its engine threads. With `metrics`, the engine's prompt-token
// sources are recorded under the model's name as each request finishes, and its KV cache state whenever
// /metrics is scraped.
router::result<std::shared_ptr<router::backend>> make_local_backend(const policies::model_config& model,
                                                                    std::shared_ptr<gateway_metrics> metrics = nullptr);

}  // namespace sluice::gateway
