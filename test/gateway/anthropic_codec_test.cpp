// Anthropic codec, both ways: /v1/messages requests into the internal model (roles, system, stop sequences,
// max_tokens, errors naming the field, tool use refused with 501), the gateway's answers and events in
// Anthropic's shapes, Messages bodies for kind anthropic upstreams (system, cache_control, refusals), and
// upstream answers and event streams back (stop reasons, normalised usage, errors, cut streams).
#include <catch2/catch.hpp>

#include <simdjson.h>

#include <string>
#include <vector>

#include "api/anthropic_codec.h"
#include "sluice/policies/policy.h"
#include "sluice/router/router.h"

using namespace sluice;
using namespace sluice::gateway;

namespace {

std::optional<router::error> parse(std::string body, router::chat_request& out) {
  return parse_anthropic_messages_request(body, out);
}

router::error refusal(const std::string& body) {
  router::chat_request r;
  auto e = parse(body, r);
  REQUIRE(e.has_value());
  return *e;
}

simdjson::dom::element json(simdjson::dom::parser& p, const std::string& s) {
  simdjson::dom::element e;
  REQUIRE(p.parse(s).get(e) == simdjson::SUCCESS);
  return e;
}

std::string_view str(simdjson::dom::element e) { return std::string_view(e); }

}  // namespace

TEST_CASE("a Messages request becomes the internal model", "[anthropic]") {
  router::chat_request r;
  auto e = parse(R"({"model":"claude","max_tokens":64,"system":[{"type":"text","text":"Be brief."},
      {"type":"text","text":"Be kind."}],"messages":[{"role":"user","content":"Hi"},
      {"role":"assistant","content":[{"type":"text","text":"Hello"},{"type":"text","text":"!"}]},
      {"role":"user","content":"Bye"}],"stop_sequences":["END","STOP"],"temperature":0.3,"top_p":0.8,"top_k":5,
      "stream":true,"metadata":{"user_id":"u1"}})",
                 r);
  REQUIRE_FALSE(e.has_value());
  CHECK(r.format == router::wire_format::anthropic_messages);
  CHECK(r.model == "claude");
  CHECK(r.max_output_tokens == 64);
  REQUIRE(r.messages.size() == 4);
  CHECK(r.messages[0].role_ == router::role::system);
  CHECK(r.messages[0].content == "Be brief.\n\nBe kind.");
  CHECK(r.messages[1].role_ == router::role::user);
  CHECK(r.messages[2].role_ == router::role::assistant);
  CHECK(r.messages[2].content == "Hello!");
  CHECK(r.messages[3].content == "Bye");
  CHECK(r.stop == std::vector<std::string>{"END", "STOP"});
  CHECK(r.sampling.temperature == Approx(0.3));
  CHECK(r.sampling.top_k == 5);
  CHECK(r.stream);
  CHECK_FALSE(r.raw_body.empty());
  CHECK_FALSE(r.cache_system);
  CHECK_FALSE(r.cache_auto);
  REQUIRE_FALSE(parse(R"({"model":"m","max_tokens":4,"cache_control":{"type":"ephemeral"},"system":[{"type":"text",
      "text":"S","cache_control":{"type":"ephemeral","ttl":"1h"}}],"messages":[{"role":"user","content":"x"}]})", r)
                    .has_value());
  CHECK(r.cache_system);
  CHECK(r.cache_auto);
}

TEST_CASE("malformed Messages requests are 400s naming the field", "[anthropic]") {
  CHECK(refusal(R"({"model":"m","messages":[{"role":"user","content":"x"}]})").param == "max_tokens");
  CHECK(refusal(R"({"max_tokens":4,"messages":[{"role":"user","content":"x"}]})").param == "model");
  CHECK(refusal(R"({"model":"m","max_tokens":0,"messages":[{"role":"user","content":"x"}]})").param == "max_tokens");
  CHECK(refusal(R"({"model":"m","max_tokens":"4","messages":[{"role":"user","content":"x"}]})").param == "max_tokens");
  CHECK(refusal(R"({"model":"m","max_tokens":4,"messages":[]})").param == "messages");
  CHECK(refusal(R"({"model":"m","max_tokens":4,"messages":[{"role":"system","content":"x"}]})").param ==
        "messages.0.role");
  CHECK(refusal(R"({"model":"m","max_tokens":4,"messages":[{"role":"user"}]})").param == "messages.0.content");
  CHECK(refusal(R"({"model":"m","max_tokens":4,"messages":[{"role":"user","content":"x"}],"temperature":1.5})")
            .param == "temperature");
  CHECK(refusal(R"({"model":"m","max_tokens":4,"messages":[{"role":"user","content":"x"}],"stop_sequences":"x"})")
            .param == "stop_sequences");
  CHECK(refusal(R"({"model":"m","max_tokens":4,"messages":[{"role":"user","content":[{"type":"video"}]}]})").param ==
        "messages.0.content.0.type");
  const auto dup = refusal(R"({"model":"a","model":"b","max_tokens":4,"messages":[{"role":"user","content":"x"}]})");
  CHECK(dup.code == router::errc::bad_request);
  CHECK(refusal("{").code == router::errc::bad_request);
  CHECK(refusal("[1]").code == router::errc::bad_request);
}

TEST_CASE("tool use in a Messages request is refused with 501 naming the field", "[anthropic]") {
  auto e = refusal(R"({"model":"m","max_tokens":4,"messages":[{"role":"user","content":"x"}],"tools":[]})");
  CHECK(e.code == router::errc::not_implemented);
  CHECK(router::info(e.code).http_status == 501);
  CHECK(e.param == "tools");
  CHECK(e.message.find("'tools'") != std::string::npos);
  e = refusal(R"({"model":"m","max_tokens":4,"messages":[{"role":"user","content":[{"type":"tool_result"}]}]})");
  CHECK(e.code == router::errc::not_implemented);
  CHECK(e.param == "messages.0.content.0.type");
  e = refusal(R"({"model":"m","max_tokens":4,"messages":[{"role":"user","content":"x"}],"thinking":{"type":"enabled"}})");
  CHECK(e.param == "thinking");
}

TEST_CASE("anthropic-version is checked", "[anthropic]") {
  CHECK_FALSE(check_anthropic_version("").has_value());
  CHECK_FALSE(check_anthropic_version("2023-06-01").has_value());
  CHECK_FALSE(check_anthropic_version("2026-10-21").has_value());  // what newer SDKs send
  CHECK(check_anthropic_version("latest").has_value());
  CHECK(check_anthropic_version("2023-06-01x").has_value());
  auto e = check_anthropic_version("2023/06/01");
  REQUIRE(e.has_value());
  CHECK(e->code == router::errc::bad_request);
}

TEST_CASE("errors have Anthropic's shape and types", "[anthropic]") {
  simdjson::dom::parser p;
  struct row {
    router::errc code;
    int status;
    const char* type;
  };
  for (const row& r : {row{router::errc::bad_request, 400, "invalid_request_error"},
                       row{router::errc::unauthenticated, 401, "authentication_error"},
                       row{router::errc::forbidden, 403, "permission_error"},
                       row{router::errc::unknown_model, 404, "not_found_error"},
                       row{router::errc::payload_too_large, 413, "request_too_large"},
                       row{router::errc::rate_limited, 429, "rate_limit_error"},
                       row{router::errc::internal, 500, "api_error"},
                       row{router::errc::overloaded, 503, "overloaded_error"}}) {
    const std::string body = anthropic_error_body(router::error{r.code, "why \"quoted\""});
    auto doc = json(p, body);
    CHECK(str(doc["type"]) == "error");
    CHECK(str(doc["error"]["type"]) == r.type);
    CHECK(str(doc["error"]["message"]) == "why \"quoted\"");
    CHECK(router::info(r.code).http_status == r.status);
  }
}

TEST_CASE("a completion becomes a Messages answer with Anthropic's usage", "[anthropic]") {
  simdjson::dom::parser p;
  router::completion c;
  c.text = "Paris";
  c.finish = router::finish_reason::stop;
  c.usage_ = {2000, 1536, 256, 7};  // input (all), cache read, cache write, output
  response_ids ids{"msg_1", 0, "claude-x"};
  auto doc = json(p, anthropic_message_json(c, ids));
  CHECK(str(doc["type"]) == "message");
  CHECK(str(doc["role"]) == "assistant");
  CHECK(str(doc["content"].at(0)["text"]) == "Paris");
  CHECK(str(doc["stop_reason"]) == "end_turn");
  CHECK(doc["stop_sequence"].is_null());
  CHECK(int64_t(doc["usage"]["input_tokens"]) == 208);  // outside the cached parts, as Anthropic counts
  CHECK(int64_t(doc["usage"]["cache_read_input_tokens"]) == 1536);
  CHECK(int64_t(doc["usage"]["cache_creation_input_tokens"]) == 256);
  CHECK(int64_t(doc["usage"]["output_tokens"]) == 7);

  CHECK(anthropic_stop_reason(router::finish_reason::length, "") == "max_tokens");
  CHECK(anthropic_stop_reason(router::finish_reason::tool_calls, "") == "tool_use");
  CHECK(anthropic_stop_reason(router::finish_reason::stop, "END") == "stop_sequence");
  c.stop_sequence = "END";
  doc = json(p, anthropic_message_json(c, ids));
  CHECK(str(doc["stop_reason"]) == "stop_sequence");
  CHECK(str(doc["stop_sequence"]) == "END");
}

TEST_CASE("stream events are valid JSON of the right types", "[anthropic]") {
  simdjson::dom::parser p;
  response_ids ids{"msg_1", 0, "m"};
  CHECK(str(json(p, anthropic_message_start_json(ids, {}))["type"]) == "message_start");
  CHECK(str(json(p, std::string(anthropic_content_block_start_json()))["content_block"]["type"]) == "text");
  auto d = json(p, anthropic_text_delta_json("a\"b\n"));
  CHECK(str(d["delta"]["type"]) == "text_delta");
  CHECK(str(d["delta"]["text"]) == "a\"b\n");
  CHECK(str(json(p, std::string(anthropic_content_block_stop_json()))["type"]) == "content_block_stop");
  auto md = json(p, anthropic_message_delta_json(router::finish_reason::length, "", {30, 0, 0, 5}));
  CHECK(str(md["delta"]["stop_reason"]) == "max_tokens");
  CHECK(int64_t(md["usage"]["output_tokens"]) == 5);
  CHECK(int64_t(md["usage"]["input_tokens"]) == 30);
  CHECK(str(json(p, std::string(anthropic_message_stop_json()))["type"]) == "message_stop");
  CHECK(str(json(p, std::string(anthropic_ping_json()))["type"]) == "ping");
}

TEST_CASE("an internal request becomes a Messages upstream body", "[anthropic]") {
  simdjson::dom::parser p;
  router::chat_request r;
  r.messages = {{router::role::system, "Be brief."}, {router::role::developer, "Use French."},
                {router::role::user, "Hi"}, {router::role::assistant, "Salut"}, {router::role::user, "Capital?"}};
  r.sampling.temperature = 1.7;
  r.stop = {"END"};
  r.stream = true;
  auto body = make_anthropic_upstream_body(r, "claude-up", {});
  REQUIRE(body.has_value());
  auto doc = json(p, *body);
  CHECK(str(doc["model"]) == "claude-up");
  CHECK(int64_t(doc["max_tokens"]) == 4096);  // required by Messages: the default when the request has none
  CHECK(str(doc["system"]) == "Be brief.\n\nUse French.");
  CHECK(simdjson::dom::array(doc["messages"]).size() == 3);
  CHECK(str(doc["messages"].at(1)["role"]) == "assistant");
  CHECK(double(doc["temperature"]) == 1.0);  // clamped to Anthropic's range
  CHECK(str(doc["stop_sequences"].at(0)) == "END");
  CHECK(bool(doc["stream"]));

  SECTION("a long system prompt is marked for the prompt cache when the policy asks") {
    r.messages[0].content = std::string(5000, 'x');
    anthropic_upstream_options o;
    o.cache_system_min_chars = 4096;
    auto marked = json(p, *make_anthropic_upstream_body(r, "m", o));
    CHECK(str(marked["system"].at(0)["cache_control"]["type"]) == "ephemeral");
    CHECK(str(marked["system"].at(0)["text"]).size() == 5000 + std::string("\n\nUse French.").size());
    r.messages[0].content = "short";
    CHECK(json(p, *make_anthropic_upstream_body(r, "m", o))["system"].is_string());
  }
  SECTION("the client's cache marks are kept") {
    r.cache_system = true;
    r.cache_auto = true;
    auto marked = json(p, *make_anthropic_upstream_body(r, "m", {}));
    CHECK(str(marked["system"].at(0)["cache_control"]["type"]) == "ephemeral");
    CHECK(str(marked["cache_control"]["type"]) == "ephemeral");
  }
  SECTION("what Messages cannot express without tool translation is refused with 501 naming it") {
    r.has_tools = true;
    auto e = make_anthropic_upstream_body(r, "m", {});
    REQUIRE_FALSE(e.has_value());
    CHECK(e.error().code == router::errc::not_implemented);
    CHECK(e.error().param == "tools");
    r.has_tools = false;
    r.messages.push_back({router::role::tool, "42"});
    CHECK(make_anthropic_upstream_body(r, "m", {}).error().param == "messages[5].role");
    r.messages.pop_back();
    r.n = 2;
    CHECK(make_anthropic_upstream_body(r, "m", {}).error().param == "n");
  }
}

TEST_CASE("a Messages answer becomes a completion with normalised usage", "[anthropic]") {
  router::completion c;
  REQUIRE(parse_anthropic_message_response(
      R"({"id":"msg_1","type":"message","role":"assistant","model":"claude-x","content":[{"type":"text","text":"Hel"},
          {"type":"text","text":"lo"}],"stop_reason":"stop_sequence","stop_sequence":"END",
          "usage":{"input_tokens":208,"cache_creation_input_tokens":256,"cache_read_input_tokens":1536,"output_tokens":7}})",
      c));
  CHECK(c.text == "Hello");
  CHECK(c.finish == router::finish_reason::stop);
  CHECK(c.stop_sequence == "END");
  CHECK(c.model == "claude-x");
  CHECK(c.usage_.tokens_input == 2000);  // uncached + read + write (PITFALLS.md "Money")
  CHECK(c.usage_.tokens_cache_read == 1536);
  CHECK(c.usage_.tokens_cache_write == 256);
  CHECK(c.usage_.tokens_output == 7);

  router::completion m;
  REQUIRE(parse_anthropic_message_response(
      R"({"type":"message","content":[],"stop_reason":"max_tokens","usage":{"input_tokens":3,"output_tokens":1}})", m));
  CHECK(m.finish == router::finish_reason::length);
  router::completion t;
  REQUIRE(parse_anthropic_message_response(R"({"type":"message","content":[],"stop_reason":"tool_use"})", t));
  CHECK(t.finish == router::finish_reason::tool_calls);
  router::completion bad;
  CHECK_FALSE(parse_anthropic_message_response(R"({"type":"error","error":{}})", bad));
  CHECK_FALSE(parse_anthropic_message_response("not json", bad));

  auto f = parse_anthropic_error(R"({"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}})");
  CHECK(f.type == "overloaded_error");
  CHECK(f.message == "Overloaded");
}

TEST_CASE("a Messages event stream becomes chunks and a completion", "[anthropic]") {
  anthropic_stream_decoder d("claude");
  router::completion acc;
  router::error err;
  using step = anthropic_stream_decoder::step;
  auto feed = [&](const std::string& data, router::chunk& out) { return d.on_event(data, out, acc, err); };
  router::chunk c;
  CHECK(feed(R"({"type":"message_start","message":{"model":"claude-x","usage":{"input_tokens":208,
      "cache_creation_input_tokens":256,"cache_read_input_tokens":1536,"output_tokens":1}}})", c) == step::none);
  CHECK(feed(R"({"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}})", c) == step::none);
  CHECK(feed(R"({"type":"ping"})", c) == step::none);
  router::chunk t;
  CHECK(feed(R"({"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hi"}})", t) == step::chunk);
  CHECK(t.text == "Hi");
  CHECK(feed(R"({"type":"content_block_stop","index":0})", c) == step::none);
  router::chunk fin;
  CHECK(feed(R"({"type":"message_delta","delta":{"stop_reason":"max_tokens","stop_sequence":null},
      "usage":{"output_tokens":9}})", fin) == step::chunk);
  CHECK(fin.finish == router::finish_reason::length);
  CHECK(feed(R"({"type":"message_stop"})", c) == step::done);
  CHECK(acc.text == "Hi");
  CHECK(acc.model == "claude-x");
  CHECK(acc.usage_.tokens_input == 2000);
  CHECK(acc.usage_.tokens_cache_read == 1536);
  CHECK(acc.usage_.tokens_cache_write == 256);
  CHECK(acc.usage_.tokens_output == 9);

  SECTION("an error event ends the stream with an error") {
    anthropic_stream_decoder e("claude");
    router::chunk x;
    CHECK(e.on_event(R"({"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}})", x, acc, err) ==
          step::failed);
    CHECK(err.code == router::errc::upstream_error);
    CHECK(err.message.find("overloaded_error") != std::string::npos);
    CHECK_FALSE(e.malformed());
  }
  SECTION("a malformed event is a protocol failure") {
    anthropic_stream_decoder e("claude");
    router::chunk x;
    CHECK(e.on_event("{not json", x, acc, err) == step::failed);
    CHECK(e.malformed());
  }
}

TEST_CASE("cache reads and writes are priced apart", "[anthropic][cost]") {
  policies::price_per_mtok price;
  price.input_usd = 3.0;
  price.cached_input_usd = 0.3;
  price.cache_write_usd = 3.75;
  price.output_usd = 15.0;
  router::usage u{2000, 1536, 256, 7};
  const double want = (208 * 3.0 + 1536 * 0.3 + 256 * 3.75 + 7 * 15.0) / 1e6;
  CHECK(router::cost_usd(u, price) == Approx(want).epsilon(1e-12));
  router::usage plain{21, 0, 0, 7};
  CHECK(router::cost_usd(plain, price) == Approx((21 * 3.0 + 7 * 15.0) / 1e6).epsilon(1e-12));
}

TEST_CASE("a Messages request becomes an OpenAI chat body for an OpenAI upstream", "[anthropic]") {
  simdjson::dom::parser p;
  router::chat_request r;
  REQUIRE_FALSE(parse(R"({"model":"m","max_tokens":9,"system":"S","messages":[{"role":"user","content":"U"}],
      "stop_sequences":["X"],"stream":true})", r).has_value());
  auto doc = json(p, make_openai_upstream_body(r, "gpt-up", true));
  CHECK(str(doc["model"]) == "gpt-up");
  CHECK(str(doc["messages"].at(0)["role"]) == "system");
  CHECK(str(doc["messages"].at(1)["content"]) == "U");
  CHECK(int64_t(doc["max_tokens"]) == 9);
  CHECK(str(doc["stop"].at(0)) == "X");
  CHECK(bool(doc["stream_options"]["include_usage"]));
  CHECK(doc["system"].error() == simdjson::NO_SUCH_FIELD);
}
