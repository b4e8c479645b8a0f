// The adapter that makes the in-process engine a router::backend (the local tier). Engine callbacks arrive
// on the engine's thread and go straight to the sink, which posts them to the session: network threads
// never run model math.
#pragma once

#include <memory>

#include "sluice/policies/policy.h"
#include "sluice/router/backend.h"

namespace sluice::gateway {

// Loads the model's GGUF (kind local) and starts its engine threads.
router::result<std::shared_ptr<router::backend>> make_local_backend(const policies::model_config& model);

}  // namespace sluice::gateway
