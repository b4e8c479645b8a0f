// Retries, the circuit breaker and fallbacks (router/resilience.h, router.cpp) with scripted upstreams and a
// manual clock.
#include <catch2/catch.hpp>

#include "scripted_backends.h"
#include "sluice/policies/policy.h"
#include "sluice/router/resilience.h"
#include "sluice/router/router.h"

using namespace sluice;
using namespace sluice::test;
using namespace std::chrono_literals;

namespace {

struct counting_observer : router::resilience_observer {
  std::vector<std::string> events;
  void on_retry(std::string_view model, const router::error&) override { events.push_back("retry " + std::string(model)); }
  void on_fallback(std::string_view from, std::string_view to, const router::error&) override {
    events.push_back("fallback " + std::string(from) + "->" + std::string(to));
  }
  void on_breaker(std::string_view model, bool open) override {
    events.push_back(std::string(open ? "open " : "close ") + std::string(model));
  }
};

struct world {
  std::shared_ptr<scripted_backend> a = std::make_shared<scripted_backend>();
  std::shared_ptr<scripted_backend> b = std::make_shared<scripted_backend>();
  std::shared_ptr<manual_timers> timers = std::make_shared<manual_timers>();
  std::shared_ptr<counting_observer> observer = std::make_shared<counting_observer>();
  std::shared_ptr<const router::router> r;

  explicit world(const std::string& a_extra) {
    const std::string yaml = "models:\n  a:\n    kind: openai\n    base_url: http://a.example/v1\n"
                             "    cost_per_mtok: {input: 1, output: 1}\n" + a_extra +
                             "  b:\n    kind: openai\n    base_url: http://b.example/v1\n    retries: 0\n"
                             "    cost_per_mtok: {input: 100, output: 100}\n";
    auto p = policies::load_policy_string(yaml);
    REQUIRE(p.has_value());
    auto made = router::router::create(*p, {{"a", a}, {"b", b}}, timers, observer);
    REQUIRE(made.has_value());
    r = *made;
  }

  std::shared_ptr<client_sink> run(router::result<std::shared_ptr<router::generation>>* started = nullptr) {
    auto req = std::make_shared<router::chat_request>();
    req->model = "a";
    req->messages.push_back({router::role::user, "hi", "", "", {}, 0});
    auto sink = std::make_shared<client_sink>();
    auto gen = r->dispatch(req, sink);
    if (started) *started = gen;
    return sink;
  }
};

script failing(router::errc code, std::string retry_after_ms = "") {
  script s;
  s.fail = router::error{code, "upstream said no"};
  s.fail->retry_after_ms = std::move(retry_after_ms);
  return s;
}

script answer(std::string text = "ok") {
  script s;
  s.text = std::move(text);
  return s;
}

}  // namespace

TEST_CASE("retry delays: jittered exponential backoff, capped, and a 429's own wait", "[resilience]") {
  policies::retry_config c;
  c.base = 100ms;
  c.max_backoff = 1000ms;
  const router::error e5xx{router::errc::upstream_error, "500"};
  CHECK(*router::retry_delay(c, 0, e5xx, 1.0) == 100ms);
  CHECK(*router::retry_delay(c, 2, e5xx, 1.0) == 400ms);
  CHECK(*router::retry_delay(c, 2, e5xx, 0.5) == 200ms);
  CHECK(*router::retry_delay(c, 9, e5xx, 1.0) == 1000ms);  // capped
  CHECK(*router::retry_delay(c, 0, e5xx, 0.0) == 0ms);
  router::error limited{router::errc::upstream_rate_limited, "429"};
  limited.retry_after_ms = "250";
  CHECK(*router::retry_delay(c, 0, limited, 0.1) == 250ms);
  limited.retry_after_ms.clear();
  limited.retry_after = "2";
  CHECK_FALSE(router::retry_delay(c, 0, limited, 0.1).has_value());  // 2 s is over the cap: not retried
  limited.retry_after = "Wed, 21 Oct 2026 07:28:00 GMT";
  CHECK(*router::retry_delay(c, 1, limited, 1.0) == 200ms);  // a date is not read: backoff
  CHECK(router::retry_same_model(e5xx));
  CHECK_FALSE(router::retry_same_model({router::errc::upstream_timeout, ""}));
  CHECK(router::try_fallback({router::errc::upstream_timeout, ""}));
  CHECK_FALSE(router::try_fallback({router::errc::upstream_rejected, ""}));
  CHECK_FALSE(router::try_fallback({router::errc::cancelled, ""}));
}

TEST_CASE("the circuit breaker opens after failures in a row and lets one probe through later", "[resilience]") {
  policies::breaker_config c;
  c.failures = 3;
  c.open_for = 1000ms;
  router::circuit_breaker br(c);
  const auto t = router::circuit_breaker::clock::now();
  for (int i = 0; i < 2; ++i) {
    CHECK(br.allow(t));
    CHECK_FALSE(br.on_result(true, t));
  }
  CHECK(br.allow(t));
  CHECK_FALSE(br.on_result(false, t));  // a success resets the count
  for (int i = 0; i < 2; ++i) br.on_result(true, t);
  CHECK(br.on_result(true, t));  // the third in a row opens it
  CHECK(br.current(t) == router::circuit_breaker::state::open);
  CHECK_FALSE(br.allow(t + 999ms));
  CHECK(br.current(t + 1000ms) == router::circuit_breaker::state::half_open);
  CHECK(br.allow(t + 1000ms));        // the probe
  CHECK_FALSE(br.allow(t + 1001ms));  // one at a time
  CHECK_FALSE(br.on_result(true, t + 1100ms));  // the probe failed: open again for a whole period
  CHECK_FALSE(br.allow(t + 2000ms));
  CHECK(br.allow(t + 2100ms));
  CHECK(br.on_result(false, t + 2150ms));  // the probe succeeded: closed
  CHECK(br.current(t + 2150ms) == router::circuit_breaker::state::closed);
}

TEST_CASE("the circuit breaker opens on a failure ratio over its window, which a probe's success clears",
          "[resilience]") {
  policies::breaker_config c;
  c.failures = 0;  // the ratio rule alone
  c.failure_ratio = 0.5;
  c.window = 10;
  c.open_for = 1000ms;
  REQUIRE(c.enabled());
  router::circuit_breaker br(c);
  const auto t = router::circuit_breaker::clock::now();
  // Alternating failures never make a run, but half of the window fails once 10 attempts were seen.
  for (int i = 0; i < 9; ++i) CHECK_FALSE(br.on_result(i % 2 == 0, t));  // 5 of 9 failed: window not full
  CHECK(br.current(t) == router::circuit_breaker::state::closed);
  CHECK(br.on_result(true, t));  // 6 of 10
  CHECK(br.current(t) == router::circuit_breaker::state::open);
  CHECK(br.allow(t + 1000ms));
  CHECK(br.on_result(false, t + 1000ms));  // the probe answered: closed, history cleared
  for (int i = 0; i < 9; ++i) CHECK_FALSE(br.on_result(true, t + 1001ms));  // a cleared window: 9 seen
  CHECK(br.current(t + 1001ms) == router::circuit_breaker::state::closed);
  CHECK(br.on_result(true, t + 1001ms));  // 10 of 10
}

TEST_CASE("a failure ratio below its threshold keeps the breaker closed", "[resilience]") {
  policies::breaker_config c;
  c.failures = 0;
  c.failure_ratio = 0.5;
  c.window = 10;
  router::circuit_breaker br(c);
  const auto t = router::circuit_breaker::clock::now();
  for (int i = 0; i < 100; ++i) CHECK_FALSE(br.on_result(i % 3 == 0, t));  // a third fail
  CHECK(br.current(t) == router::circuit_breaker::state::closed);
  policies::breaker_config off;
  off.failures = 0;
  CHECK_FALSE(off.enabled());
}

TEST_CASE("failed attempts are retried after a backoff until one answers", "[resilience]") {
  world w("    retries: {max: 2, base_ms: 100, max_ms: 1000}\n");
  w.a->scripts = {failing(router::errc::upstream_error), failing(router::errc::upstream_rate_limited, "50"), answer()};
  auto sink = w.run();
  CHECK(sink->done_calls == 0);
  CHECK(w.a->requests.size() == 1);
  w.timers->advance(100ms);  // the first backoff is at most 100 ms
  CHECK(w.a->requests.size() == 2);
  w.timers->advance(49ms);  // the 429 asked for 50 ms
  CHECK(w.a->requests.size() == 2);
  w.timers->advance(1ms);
  REQUIRE(sink->done_calls == 1);
  REQUIRE(sink->done->has_value());
  CHECK((*sink->done)->text == "ok");
  CHECK((*sink->done)->served_by == "a");
  CHECK(w.observer->events == std::vector<std::string>{"retry a", "retry a"});
}

TEST_CASE("retries run out, and some failures are never retried", "[resilience]") {
  SECTION("out of retries") {
    world w("    retries: 1\n");
    w.a->scripts = {failing(router::errc::upstream_error), failing(router::errc::upstream_error)};
    auto sink = w.run();
    w.timers->advance(1000ms);
    REQUIRE(sink->done_calls == 1);
    REQUIRE_FALSE(sink->done->has_value());
    CHECK(sink->done->error().message.find("after 2 attempts") != std::string::npos);
  }
  SECTION("a rejected request") {
    world w("    retries: 2\n");
    w.a->scripts = {failing(router::errc::upstream_rejected)};
    auto sink = w.run();
    REQUIRE(sink->done_calls == 1);
    CHECK(sink->done->error().code == router::errc::upstream_rejected);
    CHECK(w.timers->pending() == 0);
  }
  SECTION("a timeout") {
    world w("    retries: 2\n");
    w.a->scripts = {failing(router::errc::upstream_timeout)};
    auto sink = w.run();
    REQUIRE(sink->done_calls == 1);
    CHECK(w.a->requests.size() == 1);
  }
}

TEST_CASE("a request cancelled while it waits to retry ends once, as cancelled", "[resilience]") {
  world w("    retries: 2\n");
  w.a->scripts = {failing(router::errc::upstream_error)};
  router::result<std::shared_ptr<router::generation>> gen = router::error{};
  auto sink = w.run(&gen);
  REQUIRE(gen.has_value());
  CHECK(sink->done_calls == 0);
  (*gen)->cancel();
  REQUIRE(sink->done_calls == 1);
  CHECK(sink->done->error().code == router::errc::cancelled);
  w.timers->advance(5000ms);
  CHECK(sink->done_calls == 1);
  CHECK(w.a->requests.size() == 1);
}

TEST_CASE("an open circuit fails fast without calling the upstream, then probes", "[resilience]") {
  world w("    retries: 0\n    circuit_breaker: {failures: 2, open_ms: 60000}\n");
  w.a->scripts = {failing(router::errc::upstream_error), failing(router::errc::upstream_error)};
  w.run();
  w.run();
  router::result<std::shared_ptr<router::generation>> gen = router::error{};
  w.run(&gen);
  REQUIRE_FALSE(gen.has_value());
  CHECK(gen.error().code == router::errc::overloaded);
  CHECK(gen.error().message.find("circuit breaker is open") != std::string::npos);
  CHECK(w.a->requests.size() == 2);
  CHECK(w.observer->events == std::vector<std::string>{"open a"});
}

TEST_CASE("a model that fails falls back to the next, priced as the one that answered", "[resilience]") {
  world w("    retries: 0\n    fallbacks: [b]\n");
  w.a->scripts = {failing(router::errc::upstream_error)};
  w.b->scripts = {answer("from b")};
  auto sink = w.run();
  REQUIRE(sink->done_calls == 1);
  REQUIRE(sink->done->has_value());
  CHECK((*sink->done)->text == "from b");
  CHECK((*sink->done)->served_by == "b");
  CHECK((*sink->done)->cost_usd == Approx(102 * 100 / 1e6));  // b's prices, 100 in + 2 out tokens
  CHECK(w.observer->events == std::vector<std::string>{"fallback a->b"});

  SECTION("but not for a request the upstream rejected") {
    w.a->scripts = {failing(router::errc::upstream_rejected)};
    auto again = w.run();
    REQUIRE(again->done_calls == 1);
    CHECK(again->done->error().code == router::errc::upstream_rejected);
    CHECK(w.b->requests.size() == 1);
  }
}
