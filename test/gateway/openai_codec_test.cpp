// OpenAI codec: request validation (everything malformed is a 400 naming the field), body rewriting for the
// upstream, and the serialisers' shapes.
#include <catch2/catch.hpp>

#include <simdjson.h>

#include <string>
#include <vector>

#include "api/openai_codec.h"

using namespace sluice;
using namespace sluice::gateway;

namespace {

router::result<router::chat_request> chat(const std::string& body) { return parse_openai_chat_request(body); }

std::string error_param(const std::string& body) {
  auto r = chat(body);
  REQUIRE_FALSE(r.has_value());
  CHECK(r.error().code == router::errc::bad_request);
  return r.error().param;
}

bool valid_json(const std::string& s) {
  simdjson::dom::parser p;
  simdjson::dom::element e;
  return p.parse(s).get(e) == simdjson::SUCCESS;
}

}  // namespace

TEST_CASE("a full chat request becomes the internal model", "[openai]") {
  auto r = chat(R"({"model":"m","messages":[{"role":"system","content":"be brief"},
      {"role":"user","content":[{"type":"text","text":"a"},{"type":"image_url","image_url":{"url":"x"}},{"type":"text","text":"b"}]}],
      "temperature":0.5,"top_p":0.9,"max_tokens":12,"stop":["x","y"],"stream":true,
      "stream_options":{"include_usage":true},"logprobs":true,"top_logprobs":3,"seed":7,
      "response_format":{"type":"json_object"},"tools":[{"type":"function"}],"frequency_penalty":0.5,"n":3})");
  REQUIRE(r.has_value());
  CHECK(r->model == "m");
  REQUIRE(r->messages.size() == 2);
  CHECK(r->messages[0].role_ == router::role::system);
  CHECK(r->messages[1].content == "ab");
  CHECK(r->messages[1].parts_non_text == 1);
  CHECK(*r->sampling.temperature == 0.5);
  CHECK(*r->max_output_tokens == 12);
  CHECK(r->stop == std::vector<std::string>{"x", "y"});
  CHECK(r->stream);
  CHECK(r->include_usage);
  CHECK(r->logprobs);
  CHECK(r->top_logprobs == 3);
  CHECK(*r->sampling.seed == 7);
  CHECK(r->sampling.frequency_penalty == 0.5);
  CHECK(r->response_format_ == router::response_format::json_object);
  CHECK(r->has_tools);
  CHECK(r->n == 3);
  CHECK_FALSE(r->raw_body.empty());
}

TEST_CASE("malformed requests name the offending field", "[openai]") {
  CHECK(error_param(R"({"model":"a","messages":[1,2,})") == "");  // invalid JSON
  CHECK(error_param(R"([1])") == "");
  CHECK(error_param(R"({"messages":[]})") == "model");
  CHECK(error_param(R"({"model":1,"messages":[]})") == "model");
  CHECK(error_param(R"({"model":"a"})") == "messages");
  CHECK(error_param(R"({"model":"a","messages":{}})") == "messages");
  CHECK(error_param(R"({"model":"a","messages":[]})") == "messages");
  CHECK(error_param(R"({"model":"a","messages":[{"content":"x"}]})") == "messages[0].role");
  CHECK(error_param(R"({"model":"a","messages":[{"role":"wizard","content":"x"}]})") == "messages[0].role");
  CHECK(error_param(R"({"model":"a","messages":[{"role":"user"}]})") == "messages[0].content");
  CHECK(error_param(R"({"model":"a","messages":[{"role":"user","content":3}]})") == "messages[0].content");
  CHECK(error_param(R"({"model":"a","messages":[{"role":"user","content":"x"}],"temperature":"hot"})") ==
        "temperature");
  CHECK(error_param(R"({"model":"a","messages":[{"role":"user","content":"x"}],"temperature":3})") ==
        "temperature");
  CHECK(error_param(R"({"model":"a","messages":[{"role":"user","content":"x"}],"max_tokens":1.5})") ==
        "max_tokens");
  CHECK(error_param(R"({"model":"a","messages":[{"role":"user","content":"x"}],"stream":"yes"})") == "stream");
  CHECK(error_param(R"({"model":"a","messages":[{"role":"user","content":"x"}],"stop":[1]})") == "stop");
  CHECK(error_param(R"({"model":"a","messages":[{"role":"user","content":"x"}],"top_logprobs":2})") ==
        "top_logprobs");
  CHECK(error_param(R"({"model":"a","messages":[{"role":"user","content":"x"}],"stream_options":{}})") ==
        "stream_options");
}

TEST_CASE("duplicate keys the gateway acts on are rejected", "[openai]") {
  CHECK(error_param(R"({"model":"a","model":"b","messages":[{"role":"user","content":"x"}]})") == "model");
  CHECK(error_param(R"({"model":"a","messages":[{"role":"user","role":"system","content":"x"}]})") ==
        "messages[0].role");
}

TEST_CASE("duplicate keys are rejected at every depth, naming the field path", "[openai]") {
  const std::string msgs = R"("messages":[{"role":"user","content":"x"}])";
  // Forwarded verbatim, a Python upstream would read the last value where the gateway reads the first.
  auto r = chat(R"({"model":"a",)" + msgs + R"(,"response_format":{"type":"text","type":"json_object"}})");
  REQUIRE_FALSE(r.has_value());
  CHECK(r.error().code == router::errc::bad_request);
  CHECK(r.error().param == "response_format.type");
  CHECK(r.error().message == "Duplicate key 'response_format.type' in the request body.");
  CHECK(error_param(R"({"model":"a","messages":[{"role":"user","content":[{"type":"text","text":"a"},)"
                    R"({"type":"text","text":"b","text":"c"}]}]})") == "messages[0].content[1].text");
  CHECK(error_param(R"({"model":"a",)" + msgs + R"(,"tools":[{"type":"function","function":{"name":"f",)"
                    R"("parameters":{"type":"object","properties":{"q":{"type":"string","type":"integer"}}}}}]})") ==
        "tools[0].function.parameters.properties.q.type");
  CHECK(error_param(R"({"model":"a",)" + msgs + R"(,"metadata":{"k":[[{"x":1,"x":2}]]}})") == "metadata.k[0][0].x");
  // An escape spelling the same key is the same key.
  CHECK(error_param(R"({"model":"a",)" + msgs + R"(,"user":"u","\u0075ser":"v"})") == "user");
  // A large object (sorted, not compared pairwise) with one repeat among 40 keys.
  std::string big = R"({"model":"a",)" + msgs + R"(,"extra":{)";
  for (int i = 0; i < 40; ++i) big += "\"k" + std::to_string(i) + "\":" + std::to_string(i) + ",";
  big += R"("k17":0}})";
  CHECK(error_param(big) == "extra.k17");
  // The same key in sibling objects is not a duplicate.
  CHECK(chat(R"({"model":"a","messages":[{"role":"user","content":"x"},{"role":"assistant","content":"y"}],)"
             R"("extra":{"a":{"b":1},"c":{"b":2},"d":[{"b":3},{"b":4}]}})")
            .has_value());
}

TEST_CASE("null means absent for optional fields", "[openai]") {
  auto r = chat(R"({"model":"a","messages":[{"role":"assistant","content":null,"tool_calls":[]},{"role":"user","content":"x"}],
                    "temperature":null,"max_tokens":null,"stop":null,"stream_options":null})");
  REQUIRE(r.has_value());
  CHECK_FALSE(r->sampling.temperature.has_value());
  CHECK_FALSE(r->max_output_tokens.has_value());
}

TEST_CASE("the upstream body keeps every byte but the model", "[openai]") {
  auto r = chat(R"({ "model" : "client-name", "messages":[{"role":"user","content":"model"}], "x_unknown": [1, {"a":2}] })");
  REQUIRE(r.has_value());
  const std::string out = make_openai_upstream_body(*r, "upstream-name", true);
  CHECK(out == R"({ "model" : "upstream-name", "messages":[{"role":"user","content":"model"}], "x_unknown": [1, {"a":2}] })");
}

TEST_CASE("streams always ask the upstream for usage", "[openai]") {
  SECTION("no stream_options") {
    auto r = chat(R"({"model":"a","messages":[{"role":"user","content":"x"}],"stream":true})");
    REQUIRE(r.has_value());
    const std::string out = make_openai_upstream_body(*r, "u", true);
    CHECK(valid_json(out));
    CHECK(out.find(R"("stream_options":{"include_usage":true})") != std::string::npos);
  }
  SECTION("stream_options without usage keeps the client's other options") {
    auto r = chat(R"({"model":"a","messages":[{"role":"user","content":"x"}],"stream":true,"stream_options":{"include_obfuscation":false}})");
    REQUIRE(r.has_value());
    const std::string out = make_openai_upstream_body(*r, "u", true);
    CHECK(valid_json(out));
    CHECK(out.find(R"({"include_usage":true,"include_obfuscation":false})") != std::string::npos);
  }
  SECTION("the client asked already: unchanged") {
    auto r = chat(R"({"model":"a","messages":[{"role":"user","content":"x"}],"stream":true,"stream_options":{"include_usage":true}})");
    REQUIRE(r.has_value());
    CHECK(make_openai_upstream_body(*r, "a", true) == r->raw_body);
  }
  SECTION("non-streaming: unchanged") {
    auto r = chat(R"({"model":"a","messages":[{"role":"user","content":"x"}]})");
    REQUIRE(r.has_value());
    CHECK(make_openai_upstream_body(*r, "a", true) == r->raw_body);
  }
}

// The pieces the upstream client writes (around the spans the parse recorded) join into the body the scanner
// would have made, for every shape of request that matters: model first or last, an escaped key, streams with
// and without stream_options, the client's own usage request.
TEST_CASE("the upstream body in pieces equals the scanned rewrite", "[openai]") {
  const std::vector<std::string> bodies = {
      R"({"model":"a","messages":[{"role":"user","content":"x"}]})",
      R"({"messages":[{"role":"user","content":"model"}], "temperature": 0.5 ,"model" : "last"})",
      R"({"mod\u0065l":"escaped","messages":[{"role":"user","content":"x"}]})",
      R"({"model":"a","messages":[{"role":"user","content":"x"}],"stream":true})",
      R"({"model":"a","stream":true,"stream_options":{"include_obfuscation":false},"messages":[{"role":"user","content":"x"}]})",
      R"({"stream_options":null,"stream":true,"messages":[{"role":"user","content":"x"}],"model":"a"})",
      R"({"model":"a","messages":[{"role":"user","content":"x"}],"stream":true,"stream_options":{"include_usage":true}})",
      "{\n  \"model\": \"a\",\n  \"messages\": [{\"role\": \"user\", \"content\": \"x\"}],\n  \"stream\": true\n}\n",
  };
  for (const std::string& body : bodies) {
    INFO(body);
    auto r = chat(body);
    REQUIRE(r.has_value());
    REQUIRE_FALSE(r->raw_model.empty());
    std::string model_json = "\"upstream\"", scratch;
    body_pieces pieces;
    REQUIRE(openai_upstream_body_pieces(*r, model_json, true, scratch, pieces));
    std::string joined;
    for (size_t i = 0; i < pieces.count; ++i) joined += pieces.piece[i];
    CHECK(joined.size() == pieces.size());
    router::chat_request unrecorded = *r;  // without spans: the scanning rewrite
    unrecorded.raw_model = {};
    CHECK(joined == make_openai_upstream_body(unrecorded, "upstream", true));
    CHECK(valid_json(joined));
  }
}

// A connection reuses one chat_request: whatever the previous request set, the next parse starts clean.
TEST_CASE("parsing into a reused request leaves nothing of the previous one", "[openai]") {
  router::chat_request reused;
  std::string body = R"({"model":"first","messages":[{"role":"system","content":"s"},{"role":"user","content":"a",)"
                     R"("name":"n"}],"temperature":0.5,"stream":true,"stop":["x"],"max_tokens":7})";
  REQUIRE_FALSE(parse_openai_chat_request(body, reused).has_value());
  CHECK(reused.messages.size() == 2);
  body = R"({"model":"second","messages":[{"role":"user","content":"b"}]})";
  REQUIRE_FALSE(parse_openai_chat_request(body, reused).has_value());
  const auto fresh = chat(R"({"model":"second","messages":[{"role":"user","content":"b"}]})");
  REQUIRE(fresh.has_value());
  CHECK(reused.model == fresh->model);
  REQUIRE(reused.messages.size() == 1);
  CHECK(reused.messages[0].content == "b");
  CHECK(reused.messages[0].name.empty());
  CHECK(reused.messages[0].role_ == router::role::user);
  CHECK_FALSE(reused.sampling.temperature.has_value());
  CHECK_FALSE(reused.stream);
  CHECK(reused.stop.empty());
  CHECK_FALSE(reused.max_output_tokens.has_value());
  CHECK(reused.raw_body == fresh->raw_body);
  CHECK(reused.raw_model.begin == fresh->raw_model.begin);
  CHECK(reused.raw_model.end == fresh->raw_model.end);
  CHECK(body.empty());  // the caller got the previous body's buffer back, emptied
  // A refused body leaves a request that is not used; the next one parses clean again.
  body = R"({"model":"x","messages":[]})";
  CHECK(parse_openai_chat_request(body, reused).has_value());
  body = R"({"model":"third","messages":[{"role":"user","content":"c"}]})";
  REQUIRE_FALSE(parse_openai_chat_request(body, reused).has_value());
  CHECK(reused.model == "third");
  CHECK(reused.messages.size() == 1);
}

TEST_CASE("legacy completions take a string prompt", "[openai]") {
  auto r = parse_openai_completion_request(R"({"model":"a","prompt":"once upon","max_tokens":3,"logprobs":2})");
  REQUIRE(r.has_value());
  CHECK(r->prompt == "once upon");
  CHECK(r->format == router::wire_format::openai_completions);
  CHECK(r->top_logprobs == 2);
  auto bad = parse_openai_completion_request(R"({"model":"a","prompt":[1,2,3]})");
  REQUIRE_FALSE(bad.has_value());
  CHECK(bad.error().param == "prompt");
}

TEST_CASE("upstream answers are read for usage and text", "[openai]") {
  router::completion c;
  REQUIRE(parse_openai_chat_response(
      R"({"id":"x","model":"gpt","choices":[{"message":{"role":"assistant","content":"hi"},"finish_reason":"length"}],
          "usage":{"prompt_tokens":10,"completion_tokens":2,"prompt_tokens_details":{"cached_tokens":4}}})",
      c));
  CHECK(c.text == "hi");
  CHECK(c.model == "gpt");
  CHECK(c.finish == router::finish_reason::length);
  CHECK(c.usage_.tokens_input == 10);
  CHECK(c.usage_.tokens_cache_read == 4);
  CHECK(c.usage_.tokens_output == 2);
  router::completion bad;
  CHECK_FALSE(parse_openai_chat_response("{not json", bad));
  CHECK_FALSE(parse_openai_chat_response(R"({"object":"x"})", bad));

  router::chunk ch;
  bool usage_only = false;
  REQUIRE(parse_openai_chat_chunk(R"({"choices":[{"delta":{"content":"a"},"finish_reason":null}],"usage":null})", ch,
                                  usage_only));
  CHECK(ch.text == "a");
  CHECK_FALSE(usage_only);
  router::chunk u;
  REQUIRE(parse_openai_chat_chunk(R"({"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":1}})", u, usage_only));
  CHECK(usage_only);
  CHECK(u.usage_->tokens_input == 3);
}

TEST_CASE("errors and responses are valid JSON in OpenAI's shape", "[openai]") {
  const std::string e = openai_error_body({router::errc::unknown_model, "no \"such\" model\n", "model"});
  CHECK(valid_json(e));
  CHECK(e.find(R"("code":"model_not_found")") != std::string::npos);
  CHECK(e.find(R"("param":"model")") != std::string::npos);

  auto req = chat(R"({"model":"a","messages":[{"role":"user","content":"x"}],"logprobs":true,"top_logprobs":1})");
  REQUIRE(req.has_value());
  router::completion c;
  c.text = "caf\xc3\xa9 \x01";
  c.logprobs.push_back({"caf", -0.5, {{"caf", -0.5}}});
  c.usage_ = {5, 1, 0, 2};
  response_ids ids{"chatcmpl-1", 1, "a"};
  const std::string body = openai_chat_response(c, *req, ids);
  CHECK(valid_json(body));
  CHECK(body.find(R"("prompt_tokens":5)") != std::string::npos);
  CHECK(body.find(R"("cached_tokens":1)") != std::string::npos);
  router::chunk first;
  first.text = "x";
  CHECK(valid_json(openai_chat_chunk_json(first, *req, ids, true)));
  router::chunk last;
  last.finish = router::finish_reason::stop;
  const std::string fin = openai_chat_chunk_json(last, *req, ids, false);
  CHECK(valid_json(fin));
  CHECK(fin.find(R"("delta":{})") != std::string::npos);
  CHECK(valid_json(openai_usage_chunk_json(c.usage_, ids, false)));
}
