// The adapter that makes a task model (router/task_model.h, trained by `sluice distill`) a router::backend: a
// task tier. It classifies the request's text into one of its labels in microseconds, on the caller's thread,
// and reports its confidence with the threshold it was trained for, so a route serves its answer only when
// it is confident and escalates otherwise. What must not go in here: wire formats, training.
#pragma once

#include <memory>

#include "sluice/policies/policy.h"
#include "sluice/router/backend.h"

namespace sluice::gateway {

// Loads the model's task_model file (kind task); errors name the file.
router::result<std::shared_ptr<router::backend>> make_task_backend(const policies::model_config& model);

}  // namespace sluice::gateway
