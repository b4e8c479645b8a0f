// libFuzzer target for the Anthropic Messages request parser and the bodies built from what it accepts.
// Invariants: never crash; an accepted body has a model, max_tokens and at least one message; the Messages and
// OpenAI upstream bodies built from it are valid JSON naming the upstream model. Build: test/gateway/CMakeLists.txt.
#include <simdjson.h>

#include <cstdint>
#include <cstdlib>
#include <string>

#include "api/anthropic_codec.h"

namespace {

void check_body(const std::string& out) {
  simdjson::dom::parser parser;
  simdjson::dom::element doc;
  if (parser.parse(out).get(doc) != simdjson::SUCCESS) std::abort();
  std::string_view model;
  if (doc["model"].get_string().get(model) != simdjson::SUCCESS || model != "upstream-model") std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string body(reinterpret_cast<const char*>(data), size);
  sluice::router::chat_request r;
  if (sluice::gateway::parse_anthropic_messages_request(body, r)) return 0;
  if (r.messages.empty() || !r.max_output_tokens) std::abort();
  sluice::gateway::anthropic_upstream_options o;
  o.cache_system_min_chars = 16;
  auto messages = sluice::gateway::make_anthropic_upstream_body(r, "upstream-model", o);
  if (messages) check_body(*messages);
  check_body(sluice::gateway::make_openai_upstream_body(r, "upstream-model", true));
  return 0;
}
