// The checks an answer must pass before a route may serve it from a tier that is not its last: not truncated,
// one of the declared labels, matching the declared regex, and valid JSON when the request asked for JSON.
// What must not go in here: scoring (acceptance), tier choice.
#pragma once

#include <string>

#include "route_table.h"
#include "sluice/router/chat.h"

namespace sluice::router::detail {

// "" when the answer passes every check; else the name of the first that failed:
// "truncated", "labels", "regex" or "json".
std::string failed_validator(const compiled_route& route, const chat_request& req, const completion& answer);

// The text a request asks about (the acceptance model's query): the prompt for completions, else the last user
// message.
std::string query_text(const chat_request& req);

}  // namespace sluice::router::detail
