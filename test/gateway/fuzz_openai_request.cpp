// libFuzzer target for the OpenAI request parser and the upstream body rewrite. Invariants: never crash;
// an accepted body has a model and messages (or a prompt); the rewritten upstream body is valid JSON whose
// "model" is the upstream name. Build: see test/gateway/CMakeLists.txt.
#include <simdjson.h>

#include <cstdint>
#include <cstdlib>
#include <string>

#include "api/openai_codec.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string body(reinterpret_cast<const char*>(data), size);
  for (int endpoint = 0; endpoint < 2; ++endpoint) {
    auto r = endpoint == 0 ? sluice::gateway::parse_openai_chat_request(body)
                           : sluice::gateway::parse_openai_completion_request(body);
    if (!r) continue;
    if (r->messages.empty()) std::abort();
    const std::string out = sluice::gateway::make_openai_upstream_body(*r, "upstream-model", true);
    simdjson::dom::parser parser;
    simdjson::dom::element doc;
    if (parser.parse(out).get(doc) != simdjson::SUCCESS) std::abort();
    std::string_view model;
    if (doc["model"].get_string().get(model) != simdjson::SUCCESS || model != "upstream-model") std::abort();
  }
  return 0;
}
