// GET /v1/models and GET /v1/models/{id}: the policy's models and routes a key may use, in OpenAI's shapes, or in
// Anthropic's for a request with an anthropic-version header (the Anthropic SDK's models.list/retrieve). What
// must not go in here: anything about serving a model.
#pragma once

#include <string_view>

#include "http/executor.h"
#include "sluice/policies/policy.h"

namespace sluice::gateway {

class http_session;

task<bool> list_models(http_session& s, const policies::key_config* key);
// `encoded_id` is the path segment after /v1/models/, percent-encoded.
task<bool> retrieve_model(http_session& s, std::string_view encoded_id, const policies::key_config* key);

}  // namespace sluice::gateway
