// Names of the internal model's enums, as the OpenAI wire format spells them.
#include "sluice/router/chat.h"

namespace sluice::router {

const char* to_string(role r) {
  switch (r) {
    case role::system: return "system";
    case role::developer: return "developer";
    case role::user: return "user";
    case role::assistant: return "assistant";
    case role::tool: return "tool";
  }
  return "user";
}

const char* to_string(finish_reason f) {
  switch (f) {
    case finish_reason::stop: return "stop";
    case finish_reason::length: return "length";
    case finish_reason::tool_calls: return "tool_calls";
    case finish_reason::content_filter: return "content_filter";
    case finish_reason::error: return "error";
  }
  return "stop";
}

}  // namespace sluice::router
