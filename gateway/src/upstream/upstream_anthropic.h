// The Anthropic Messages upstream backend (policy models of kind anthropic): the transport of upstream_openai.h
// speaking Messages. OpenAI-shaped (or any) internal requests are translated to Messages and the answers back
// (api/anthropic_codec.h), streams included; the key goes as x-api-key with anthropic-version. Tool use is
// refused with 501 naming the field. What must not go in here: I/O (the transport's) or client-facing code.
#pragma once

#include <memory>

#include "sluice/policies/policy.h"
#include "sluice/router/backend.h"
#include "upstream/upstream_openai.h"

namespace sluice::gateway {

// The anthropic-version this gateway speaks upstream.
constexpr std::string_view anthropic_api_version = "2023-06-01";

// Creates the backend for one policy model of kind anthropic. The API key is read from api_key_env now, once.
router::result<std::shared_ptr<router::backend>> make_anthropic_backend(io_threads& threads,
                                                                        const policies::model_config& model,
                                                                        const upstream_options& opts);

}  // namespace sluice::gateway
