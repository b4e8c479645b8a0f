// The cascade executor with scripted tiers and a manual clock: accept, escalate for each reason, timeouts,
// failure of the last tier (error or serve_local), cancellation, and the cost and baseline arithmetic.
#include <catch2/catch.hpp>

#include <cmath>
#include <deque>
#include <map>

#include "sluice/policies/policy.h"
#include "sluice/router/router.h"
#include "scripted_backends.h"

using namespace sluice;
using router::chunk;
using router::completion;
using router::escalation_reason;

using namespace sluice::test;

namespace {

struct fixture {
  std::shared_ptr<scripted_backend> local = std::make_shared<scripted_backend>();
  std::shared_ptr<scripted_backend> frontier = std::make_shared<scripted_backend>();
  std::shared_ptr<manual_timers> timers = std::make_shared<manual_timers>();
  std::shared_ptr<const router::router> r;

  explicit fixture(const std::string& route_yaml) {
    const std::string yaml = R"(models:
  small: {kind: local, gguf: /nonexistent/small.gguf, cost_per_mtok: {input: 0.1, output: 0.2}}
  big: {kind: openai, base_url: https://api.example/v1, cost_per_mtok: {input: 10, output: 30}, retries: 0}
routes:
  r:
)" + route_yaml;
    auto p = policies::load_policy_string(yaml);
    if (!p) {
      for (auto& e : p.error()) UNSCOPED_INFO(e.to_string());
    }
    REQUIRE(p.has_value());
    auto created = router::router::create(*p, {{"small", local}, {"big", frontier}}, timers);
    if (!created) UNSCOPED_INFO(created.error().message);
    REQUIRE(created.has_value());
    r = *created;
  }

  std::shared_ptr<client_sink> run(std::shared_ptr<router::chat_request> req = nullptr) {
    if (!req) {
      req = std::make_shared<router::chat_request>();
      req->format = router::wire_format::openai_completions;
      req->prompt = "Q: gold rises\nA:";
      req->messages.push_back({router::role::user, req->prompt, "", "", {}, 0});
      req->max_output_tokens = 16;
    }
    req->model = "r";
    auto sink = std::make_shared<client_sink>();
    auto gen = r->dispatch(req, sink);
    REQUIRE(gen.has_value());
    last_gen = *gen;
    return sink;
  }
  std::shared_ptr<router::generation> last_gen;
};

const std::string labelled = R"(    tiers: [small, big]
    accept: {min_mean_logprob: -0.5, labels: [up, down]}
    local_max_tokens: 4
)";

script good_local() { return script{" up", {-0.1, -0.05}}; }
script frontier_answer() { return script{" down", {}, router::finish_reason::stop, {120, 0, 0, 3}}; }

}  // namespace

TEST_CASE("cascade: a confident, valid local answer is served locally", "[cascade]") {
  fixture f(labelled);
  f.local->scripts.push_back(good_local());
  auto sink = f.run();
  REQUIRE(sink->done_calls == 1);
  REQUIRE(sink->done->has_value());
  const completion& c = **sink->done;
  CHECK(c.text == " up");
  CHECK(c.served_by == "small");
  CHECK(c.logprobs.empty());  // the client did not ask for them; the judge did
  CHECK(f.frontier->requests.empty());
  // The local attempt was asked for log-probs and capped at local_max_tokens; the client's request was not.
  REQUIRE(f.local->requests.size() == 1);
  CHECK(f.local->requests[0]->logprobs);
  CHECK(f.local->requests[0]->max_output_tokens == 4);
  const auto& d = sink->last();
  CHECK(d.route == "r");
  CHECK(d.tier == "small");
  CHECK_FALSE(d.escalated);
  CHECK(d.reason == escalation_reason::none);
  REQUIRE(d.acceptance_score.has_value());
  CHECK(*d.acceptance_score == Approx(std::exp(-0.075)));
  CHECK(*d.threshold == Approx(std::exp(-0.5)));
  REQUIRE(d.attempts.size() == 1);
  CHECK(d.attempts[0].outcome == router::attempt_outcome::served);
  CHECK(d.cost_usd == Approx((100 * 0.1 + 2 * 0.2) / 1e6));
  CHECK(d.baseline_cost_usd == Approx((100 * 10.0 + 2 * 30.0) / 1e6));  // the last tier's prices
  REQUIRE(d.signals.has_value());
  CHECK(d.signals->answer == " up");
  CHECK(d.signals->token_logprobs.size() == 2);
  // The decision comes before the replayed chunks, and the final decision right before done.
  REQUIRE(sink->events.size() >= 4);
  CHECK(sink->events.front() == "decision");
  CHECK(sink->events[1] == "chunk");
  CHECK(sink->events[sink->events.size() - 2] == "decision");
  CHECK(sink->events.back() == "done");
  for (const auto& ch : sink->chunks) CHECK(ch.logprobs.empty());
  CHECK(f.timers->pending() == 0);  // the route deadline was cancelled
}

TEST_CASE("cascade: a low-confidence answer escalates and both attempts are charged", "[cascade]") {
  fixture f(labelled);
  f.local->scripts.push_back(script{" up", {-2.0, -1.5}});
  f.frontier->scripts.push_back(frontier_answer());
  auto sink = f.run();
  REQUIRE(sink->done_calls == 1);
  REQUIRE(sink->done->has_value());
  CHECK((*sink->done)->text == " down");
  CHECK((*sink->done)->served_by == "big");
  REQUIRE(f.frontier->requests.size() == 1);
  CHECK_FALSE(f.frontier->requests[0]->logprobs);  // the client's own request goes to the last tier
  CHECK(f.frontier->requests[0]->max_output_tokens == 16);
  const auto& d = sink->last();
  CHECK(d.escalated);
  CHECK(d.reason == escalation_reason::low_confidence);
  REQUIRE(d.attempts.size() == 2);
  CHECK(d.attempts[0].outcome == router::attempt_outcome::rejected);
  CHECK(d.attempts[1].outcome == router::attempt_outcome::served);
  const double local = (100 * 0.1 + 2 * 0.2) / 1e6, big = (120 * 10.0 + 3 * 30.0) / 1e6;
  CHECK(d.cost_usd == Approx(local + big));
  CHECK((*sink->done)->cost_usd == Approx(local + big));
  CHECK(d.baseline_cost_usd == Approx(big));
  // No local text reached the client: only the frontier's chunks.
  std::string streamed;
  for (const auto& ch : sink->chunks) streamed += ch.text;
  CHECK(streamed == " down");
  CHECK(sink->events.front() == "decision");  // sent when the last tier starts, before its chunks
  CHECK(sink->decisions.front()->tier == "big");
}

TEST_CASE("cascade: validators reject wrong labels, truncated answers, bad JSON and regex misses", "[cascade]") {
  SECTION("labels") {
    fixture f(labelled);
    f.local->scripts.push_back(script{" maybe", {-0.01}});
    f.frontier->scripts.push_back(frontier_answer());
    auto sink = f.run();
    CHECK(sink->last().reason == escalation_reason::validator);
    CHECK(sink->last().validator == "labels");
  }
  SECTION("truncated") {
    fixture f(labelled);
    f.local->scripts.push_back(script{" up", {-0.01}, router::finish_reason::length});
    f.frontier->scripts.push_back(frontier_answer());
    auto sink = f.run();
    CHECK(sink->last().validator == "truncated");
  }
  SECTION("json when the request asks for it") {
    fixture f("    tiers: [small, big]\n");
    f.local->scripts.push_back(script{"sure! {\"a\": 1}", {}});
    f.local->scripts.push_back(script{" {\"a\": 1} ", {}});
    f.frontier->scripts.push_back(frontier_answer());
    auto req = std::make_shared<router::chat_request>();
    req->messages.push_back({router::role::user, "json please", "", "", {}, 0});
    req->response_format_ = router::response_format::json_object;
    auto sink = f.run(req);
    CHECK(sink->last().validator == "json");
    CHECK(sink->last().tier == "big");
    auto req2 = std::make_shared<router::chat_request>(*req);
    auto ok = f.run(req2);
    CHECK(ok->last().tier == "small");
    CHECK_FALSE(ok->last().acceptance_score.has_value());  // no model or rule: validators decide alone
  }
  SECTION("regex") {
    fixture f("    tiers: [small, big]\n    accept: {regex: \"[0-9]+\"}\n");
    f.local->scripts.push_back(script{" forty-two ", {}});
    f.local->scripts.push_back(script{" 42\n", {}});
    f.frontier->scripts.push_back(frontier_answer());
    CHECK(f.run()->last().validator == "regex");
    CHECK(f.run()->last().tier == "small");
  }
}

TEST_CASE("cascade: a failing local tier escalates, at start or later", "[cascade]") {
  fixture f(labelled);
  script at_start;
  at_start.fail = router::error{router::errc::not_implemented, "tools"};
  at_start.fail_at_start = true;
  script later;
  later.fail = router::error{router::errc::internal, "engine failed"};
  f.local->scripts.push_back(at_start);
  f.local->scripts.push_back(later);
  f.frontier->scripts.push_back(frontier_answer());
  f.frontier->scripts.push_back(frontier_answer());
  for (int i = 0; i < 2; ++i) {
    auto sink = f.run();
    REQUIRE(sink->done_calls == 1);
    REQUIRE(sink->done->has_value());
    CHECK(sink->last().reason == escalation_reason::local_error);
    CHECK(sink->last().attempts[0].outcome == router::attempt_outcome::failed);
    CHECK(sink->last().tier == "big");
  }
}

TEST_CASE("cascade: a local tier past its timeout is abandoned and the request escalates", "[cascade]") {
  fixture f(labelled + "    tier_timeout_ms: 200\n");
  script hang;
  hang.hang = true;
  f.local->scripts.push_back(hang);
  f.frontier->scripts.push_back(frontier_answer());
  auto sink = f.run();
  CHECK(sink->done_calls == 0);
  f.timers->advance(std::chrono::milliseconds(199));
  CHECK(sink->done_calls == 0);
  f.timers->advance(std::chrono::milliseconds(1));
  REQUIRE(sink->done_calls == 1);
  CHECK(f.local->generations[0]->cancelled);
  CHECK(sink->last().reason == escalation_reason::local_timeout);
  CHECK(sink->last().attempts[0].outcome == router::attempt_outcome::timed_out);
  CHECK((*sink->done)->served_by == "big");
}

TEST_CASE("cascade: when the last tier fails the route errors, or serves the rejected answer if told to", "[cascade]") {
  script down;
  down.fail = router::error{router::errc::upstream_error, "HTTP 500"};
  SECTION("error") {
    fixture f(labelled);
    f.local->scripts.push_back(script{" up", {-3.0}});
    f.frontier->scripts.push_back(down);
    auto sink = f.run();
    REQUIRE(sink->done_calls == 1);
    REQUIRE_FALSE(sink->done->has_value());
    CHECK(sink->done->error().code == router::errc::upstream_error);
    CHECK(sink->last().tier.empty());
    CHECK(sink->last().cost_usd > 0.0);  // the rejected local attempt still cost something
    CHECK(sink->last().baseline_cost_usd == 0.0);
  }
  SECTION("serve_local") {
    fixture f(labelled + "    on_escalation_failure: serve_local\n");
    f.local->scripts.push_back(script{" up", {-3.0}});
    f.frontier->scripts.push_back(down);
    auto sink = f.run();
    REQUIRE(sink->done_calls == 1);
    REQUIRE(sink->done->has_value());
    CHECK((*sink->done)->text == " up");
    CHECK((*sink->done)->served_by == "small");
    CHECK(sink->last().served_after_failure);
    CHECK(sink->last().tier == "small");
    std::string streamed;
    for (const auto& ch : sink->chunks) streamed += ch.text;
    CHECK(streamed == " up");
  }
}

TEST_CASE("cascade: the pre-score skips the local tier for long prompts", "[cascade]") {
  fixture f(labelled + "    pre_score: {max_prompt_chars: 10}\n");
  f.frontier->scripts.push_back(frontier_answer());
  auto sink = f.run();  // the prompt has 16 characters
  CHECK(f.local->requests.empty());
  CHECK(sink->last().reason == escalation_reason::pre_score);
  CHECK(sink->last().attempts.size() == 1);
  CHECK(sink->last().tier == "big");
}

TEST_CASE("cascade: the route deadline cuts a hanging last tier with a timeout", "[cascade]") {
  fixture f(labelled + "    timeout_ms: 1000\n");
  f.local->scripts.push_back(script{" up", {-3.0}});
  script hang;
  hang.hang = true;
  f.frontier->scripts.push_back(hang);
  auto sink = f.run();
  CHECK(sink->done_calls == 0);
  f.timers->advance(std::chrono::milliseconds(1000));
  REQUIRE(sink->done_calls == 1);
  REQUIRE_FALSE(sink->done->has_value());
  CHECK(sink->done->error().code == router::errc::upstream_timeout);
  CHECK(f.frontier->generations[0]->cancelled);
}

TEST_CASE("cascade: a client that leaves cancels the attempt and ends the route once", "[cascade]") {
  fixture f(labelled);
  script hang;
  hang.hang = true;
  f.local->scripts.push_back(hang);
  auto sink = f.run();
  f.last_gen->cancel();
  f.last_gen->cancel();  // idempotent
  REQUIRE(sink->done_calls == 1);
  REQUIRE_FALSE(sink->done->has_value());
  CHECK(sink->done->error().code == router::errc::cancelled);
  CHECK(f.local->generations[0]->cancelled);
  CHECK(f.frontier->requests.empty());
  CHECK(f.timers->pending() == 0);
}

TEST_CASE("cascade: plain model names still bypass routes; routes must compile", "[cascade]") {
  fixture f(labelled);
  f.frontier->scripts.push_back(frontier_answer());
  auto req = std::make_shared<router::chat_request>();
  req->model = "big";
  auto sink = std::make_shared<client_sink>();
  REQUIRE(f.r->dispatch(req, sink).has_value());
  CHECK(sink->decisions.empty());
  REQUIRE(sink->done->has_value());
  CHECK((*sink->done)->served_by == "big");

  auto p = policies::load_policy_string(R"(models:
  small: {kind: local, gguf: /x.gguf}
  big: {kind: openai, base_url: https://api.example/v1, retries: 0}
routes:
  r: {tiers: [small, big], accept: {model: /nonexistent/accept.bin}}
)");
  REQUIRE(p.has_value());
  auto bad = router::router::create(*p, {{"small", f.local}, {"big", f.frontier}}, nullptr);
  REQUIRE_FALSE(bad.has_value());
  CHECK(bad.error().message.find("route 'r': acceptance model") != std::string::npos);
  CHECK(router::check_route_files(**p).size() == 1);
}

namespace {

struct fallback_log : router::resilience_observer {
  std::vector<std::string> moves;  // "from>to"
  void on_fallback(std::string_view from, std::string_view to, const router::error&) override {
    moves.push_back(std::string(from) + ">" + std::string(to));
  }
};

// small (local) falls back to spare, big to backup; the route is small -> big.
struct fallback_fixture {
  std::map<std::string, std::shared_ptr<scripted_backend>> b{{"small", std::make_shared<scripted_backend>()},
                                                             {"big", std::make_shared<scripted_backend>()},
                                                             {"backup", std::make_shared<scripted_backend>()},
                                                             {"spare", std::make_shared<scripted_backend>()}};
  std::shared_ptr<fallback_log> log = std::make_shared<fallback_log>();
  std::shared_ptr<manual_timers> timers = std::make_shared<manual_timers>();
  std::shared_ptr<const router::router> r;

  fallback_fixture() {
    auto p = policies::load_policy_string(R"(models:
  small: {kind: local, gguf: /nonexistent/small.gguf, cost_per_mtok: {input: 0.1, output: 0.2}, fallbacks: [spare]}
  spare: {kind: openai, base_url: https://spare.example/v1, cost_per_mtok: {input: 1, output: 2}, retries: 0}
  big: {kind: openai, base_url: https://api.example/v1, cost_per_mtok: {input: 10, output: 30}, retries: 0,
        fallbacks: [backup]}
  backup: {kind: openai, base_url: https://backup.example/v1, cost_per_mtok: {input: 5, output: 15}, retries: 0}
routes:
  r:
    tiers: [small, big]
    accept: {min_mean_logprob: -0.5, labels: [up, down]}
    local_max_tokens: 4
)");
    REQUIRE(p.has_value());
    router::backend_map m;
    for (auto& [name, be] : b) m[name] = be;
    auto created = router::router::create(*p, m, timers, log);
    if (!created) UNSCOPED_INFO(created.error().message);
    REQUIRE(created.has_value());
    r = *created;
  }
  std::shared_ptr<client_sink> run() {
    auto req = std::make_shared<router::chat_request>();
    req->format = router::wire_format::openai_completions;
    req->prompt = "Q: gold rises\nA:";
    req->messages.push_back({router::role::user, req->prompt, "", "", {}, 0});
    req->max_output_tokens = 16;
    req->model = "r";
    auto sink = std::make_shared<client_sink>();
    auto gen = r->dispatch(req, sink);
    REQUIRE(gen.has_value());
    return sink;
  }
};

}  // namespace

TEST_CASE("cascade: a failing tier tries its model's fallbacks in its place", "[cascade]") {
  fallback_fixture f;
  script down;
  down.fail = router::error{router::errc::upstream_error, "HTTP 503"};
  down.usage_ = {};

  SECTION("the last tier's fallback answers, priced as itself") {
    f.b["small"]->scripts.push_back(script{" up", {-3.0}});  // rejected: low confidence
    f.b["big"]->scripts.push_back(down);
    f.b["backup"]->scripts.push_back(script{" down", {}, router::finish_reason::stop, {120, 0, 0, 3}});
    auto sink = f.run();
    REQUIRE(sink->done_calls == 1);
    REQUIRE(sink->done->has_value());
    CHECK((*sink->done)->text == " down");
    CHECK((*sink->done)->served_by == "backup");
    const auto& d = sink->last();
    CHECK(d.tier == "backup");
    REQUIRE(d.attempts.size() == 3);
    CHECK(d.attempts[0].tier == "small");
    CHECK(d.attempts[0].outcome == router::attempt_outcome::rejected);
    CHECK(d.attempts[1].tier == "big");
    CHECK(d.attempts[1].outcome == router::attempt_outcome::failed);
    CHECK(d.attempts[1].cost_usd == 0.0);
    CHECK(d.attempts[2].tier == "backup");
    CHECK(d.attempts[2].outcome == router::attempt_outcome::served);
    CHECK(d.attempts[2].cost_usd == Approx((120 * 5.0 + 3 * 15.0) / 1e6));
    CHECK(f.log->moves == std::vector<std::string>{"big>backup"});
  }
  SECTION("a judged tier's fallback is judged by the route's validators") {
    script busy;
    busy.fail = router::error{router::errc::overloaded, "the engine's queue is full"};
    busy.fail_at_start = true;
    f.b["small"]->scripts.push_back(busy);
    f.b["spare"]->scripts.push_back(script{" up", {}, router::finish_reason::stop, {100, 0, 0, 1}});
    auto sink = f.run();
    REQUIRE(sink->done_calls == 1);
    REQUIRE(sink->done->has_value());
    CHECK((*sink->done)->served_by == "spare");
    CHECK_FALSE(sink->last().escalated);
    REQUIRE(sink->last().attempts.size() == 2);
    CHECK(sink->last().attempts[0].outcome == router::attempt_outcome::failed);
    CHECK(f.b["spare"]->requests[0]->max_output_tokens == 4);  // in the judged tier's place: its cap
    CHECK(f.log->moves == std::vector<std::string>{"small>spare"});

    // A fallback answer the validators reject escalates to the next tier like the tier's own would.
    f.b["small"]->scripts.push_back(busy);
    f.b["spare"]->scripts.push_back(script{" sideways", {}, router::finish_reason::stop, {100, 0, 0, 1}});
    f.b["big"]->scripts.push_back(script{" down", {}, router::finish_reason::stop, {120, 0, 0, 3}});
    auto second = f.run();
    REQUIRE(second->done->has_value());
    CHECK((*second->done)->served_by == "big");
    CHECK(second->last().reason == escalation_reason::validator);
  }
  SECTION("no fallback for an error every model would share, or once the client has text") {
    script bad;
    bad.fail = router::error{router::errc::bad_request, "HTTP 400: bad messages"};
    f.b["small"]->scripts.push_back(script{" up", {-3.0}});
    f.b["big"]->scripts.push_back(bad);
    auto sink = f.run();
    REQUIRE_FALSE(sink->done->has_value());
    CHECK(sink->done->error().code == router::errc::bad_request);
    CHECK(f.b["backup"]->requests.empty());

    script cut = down;
    cut.text = " do";
    cut.fail_after_text = true;
    f.b["small"]->scripts.push_back(script{" up", {-3.0}});
    f.b["big"]->scripts.push_back(cut);
    auto streamed = f.run();
    REQUIRE_FALSE(streamed->done->has_value());
    CHECK(streamed->done->error().code == router::errc::upstream_error);
    CHECK(f.b["backup"]->requests.empty());
    CHECK(f.log->moves.empty());
  }
  SECTION("every fallback failing ends in the last failure") {
    f.b["small"]->scripts.push_back(script{" up", {-3.0}});
    f.b["big"]->scripts.push_back(down);
    f.b["backup"]->scripts.push_back(down);
    auto sink = f.run();
    REQUIRE_FALSE(sink->done->has_value());
    CHECK(sink->done->error().code == router::errc::upstream_error);
    CHECK(sink->last().attempts.size() == 3);
  }
}
