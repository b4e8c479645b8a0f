// A route compiled for serving: its tiers resolved to models and backends, and the files it names (pre-score
// classifier, acceptance model) loaded and checked once, at start. What must not go in here: the per-request
// executor (cascade_run.*), YAML.
#pragma once

#include <memory>
#include <optional>
#include <regex>
#include <string>
#include <unordered_map>
#include <vector>

#include "sluice/policies/policy.h"
#include "sluice/router/acceptance.h"
#include "sluice/router/backend.h"
#include "sluice/router/classifier.h"
#include "sluice/router/error.h"

namespace sluice::router::detail {

struct compiled_route {
  const policies::route_config* config = nullptr;  // owned by the policy, kept alive by the router
  std::vector<const policies::model_config*> tiers;
  std::vector<std::shared_ptr<backend>> backends;  // parallel to tiers; empty when compiled without backends
  // Per tier, the models its model names as `fallbacks` (those with a backend in this build), tried in order
  // when the tier fails before anything of it reached the client. Parallel to tiers.
  struct fallback {
    const policies::model_config* model = nullptr;
    std::shared_ptr<backend> serving;  // null when compiled without backends
  };
  std::vector<std::vector<fallback>> fallbacks;
  const policies::model_config* baseline = nullptr;
  std::shared_ptr<const classifier> pre_classifier;  // may be null
  std::shared_ptr<const acceptance_scorer> scorer;   // may be null
  double threshold = 0.5;                            // for scorer
  acceptance_config labels;        // allowed answers (from the route, else the model file); only .labels is used
  std::optional<std::regex> regex;
  size_t scored_tier = 0;          // the tier the acceptance model or rule judges: the first local one
  int top_logprobs = 0;            // alternatives a judged local attempt must report (the model's feature input)
  bool wants_logprobs = false;     // a judged local attempt reports token log-probs (model or rule needs them)
  const policies::model_config* shadow_model = nullptr;  // route `shadow` (a task tier), or null
  std::shared_ptr<backend> shadow_backend;
};

// Loads and checks what `route` needs. With `backends` null, only files are checked (sluice validate).
result<std::shared_ptr<const compiled_route>> compile_route(const policies::policy& policy,
                                                            const policies::route_config& route,
                                                            const std::unordered_map<std::string, std::shared_ptr<backend>>* backends);

}  // namespace sluice::router::detail
