// The 400 the request parsers (OpenAI and Anthropic) answer malformed or invalid bodies with: bad_request,
// naming the offending field when there is one.
#pragma once

#include <string>
#include <utility>

#include "sluice/router/error.h"

namespace sluice::gateway {

inline router::error bad_request(std::string message, std::string param = {}) {
  return router::error{router::errc::bad_request, std::move(message), std::move(param)};
}

}  // namespace sluice::gateway
