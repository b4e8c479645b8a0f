// The in-process limits store (access/limits.h): reservation, settlement, token buckets, budget periods.
// The Redis store runs the same rules in Lua; test/integration/test_keys.py runs the same cases against both.
#include <catch2/catch.hpp>

#include "access/limits.h"

using namespace sluice::gateway;
using namespace std::chrono_literals;
using sluice::policies::budget_period;
using sluice::policies::key_config;
using sluice::policies::team_config;

namespace {

reservation res(const key_config& k, std::string id, nano_usd cost, int64_t tokens, std::string period = "d20261202",
                const team_config* team = nullptr) {
  reservation r;
  r.request_id = std::move(id);
  r.key = &k;
  r.team = team;
  r.cost = cost;
  r.tokens = tokens;
  r.key_period = period;
  r.team_period = "total";
  return r;
}

}  // namespace

TEST_CASE("requests per minute: a bucket that refills continuously", "[limits]") {
  key_config k;
  k.name = "k";
  k.requests_per_minute = 3;
  memory_limits m;
  const auto t0 = memory_limits::clock::now();
  for (int i = 0; i < 3; ++i) {
    auto a = m.reserve_at(res(k, "r" + std::to_string(i), 0, 0), t0);
    REQUIRE(a.outcome == admission_outcome::admitted);
    CHECK(a.requests_remaining == 2 - i);
  }
  auto refused = m.reserve_at(res(k, "r3", 0, 0), t0);
  CHECK(refused.outcome == admission_outcome::requests_rate);
  CHECK(refused.retry_after_ms == 20'000);
  CHECK(m.reserve_at(res(k, "r4", 0, 0), t0 + 19s).outcome == admission_outcome::requests_rate);
  CHECK(m.reserve_at(res(k, "r5", 0, 0), t0 + 20s).outcome == admission_outcome::admitted);
}

TEST_CASE("a budget is reserved at the worst case and settled to the real cost, once", "[limits]") {
  key_config k;
  k.name = "k";
  k.budget.limit = 1000;
  k.budget.per = budget_period::day;
  memory_limits m;
  const auto t = memory_limits::clock::now();
  const auto a = res(k, "a", 400, 0), b = res(k, "b", 400, 0);
  CHECK(m.reserve_at(a, t).outcome == admission_outcome::admitted);
  auto second = m.reserve_at(b, t);
  CHECK(second.outcome == admission_outcome::admitted);
  CHECK(second.budget_remaining == 200);
  CHECK(m.reserve_at(res(k, "c", 400, 0), t).outcome == admission_outcome::key_budget);
  m.settle_at(a, 100, 0, t);  // 500 spent or held
  m.settle_at(a, 0, 0, t);    // a second settlement changes nothing
  auto third = m.reserve_at(res(k, "d", 400, 0), t);
  CHECK(third.outcome == admission_outcome::admitted);
  CHECK(third.budget_remaining == 100);
  m.settle_at(b, 0, 0, t);  // released: 100 + 400 held
  CHECK(m.reserve_at(res(k, "e", 500, 0), t).budget_remaining == 0);
  // a new day starts from nothing; a settlement of the old day no longer counts
  CHECK(m.reserve_at(res(k, "f", 1000, 0, "d20261203"), t).outcome == admission_outcome::admitted);
  m.settle_at(res(k, "e", 500, 0), 0, 0, t);
  CHECK(m.reserve_at(res(k, "g", 1, 0, "d20261203"), t).outcome == admission_outcome::key_budget);
}

TEST_CASE("a team budget binds every key of the team", "[limits]") {
  team_config team;
  team.name = "t";
  team.budget.limit = 1000;
  key_config a, b;
  a.name = "a";
  b.name = "b";
  memory_limits m;
  const auto t = memory_limits::clock::now();
  CHECK(m.reserve_at(res(a, "1", 600, 0, "total", &team), t).outcome == admission_outcome::admitted);
  CHECK(m.reserve_at(res(b, "2", 600, 0, "total", &team), t).outcome == admission_outcome::team_budget);
  CHECK(m.reserve_at(res(b, "3", 400, 0, "total", &team), t).outcome == admission_outcome::admitted);
}

TEST_CASE("tokens per minute: refused until refilled, too large never, unused tokens given back", "[limits]") {
  key_config k;
  k.name = "k";
  k.tokens_per_minute = 1000;
  memory_limits m;
  const auto t = memory_limits::clock::now();
  CHECK(m.reserve_at(res(k, "big", 0, 1001), t).outcome == admission_outcome::tokens_too_large);
  CHECK(m.reserve_at(res(k, "big", 0, 1001), t).retry_after_ms == 0);
  const auto first = res(k, "1", 0, 600);
  CHECK(m.reserve_at(first, t).outcome == admission_outcome::admitted);
  auto refused = m.reserve_at(res(k, "2", 0, 600), t);
  CHECK(refused.outcome == admission_outcome::tokens_rate);
  CHECK(refused.retry_after_ms == 12'000);
  m.settle_at(first, 0, 100, t);  // used 100 of the 600 reserved
  auto later = m.reserve_at(res(k, "3", 0, 600), t);
  CHECK(later.outcome == admission_outcome::admitted);
  CHECK(later.tokens_remaining == 300);
}

TEST_CASE("an abandoned reservation stays charged in full", "[limits]") {
  key_config k;
  k.name = "k";
  k.budget.limit = 1000;
  memory_limits m;
  const auto t = memory_limits::clock::now();
  const auto r = res(k, "1", 700, 0, "total");
  CHECK(m.reserve_at(r, t).outcome == admission_outcome::admitted);
  m.abandon(r);
  m.settle_at(r, 0, 0, t);  // nothing left to settle
  CHECK(m.reserve_at(res(k, "2", 400, 0, "total"), t).outcome == admission_outcome::key_budget);
}

TEST_CASE("budget periods are UTC days and months", "[limits]") {
  using namespace std::chrono;
  const sys_seconds t = sys_days{2026y / December / 31} + 23h + 59min + 30s;
  CHECK(budget_period_id(budget_period::day, t) == "d20261231");
  CHECK(budget_period_id(budget_period::month, t) == "m202612");
  CHECK(budget_period_id(budget_period::total, t) == "total");
  CHECK(seconds_until_period_end(budget_period::day, t) == 30);
  CHECK(seconds_until_period_end(budget_period::month, t) == 30);
  CHECK(seconds_until_period_end(budget_period::day, sys_days{2026y / February / 1}) == 86400);
  CHECK(seconds_until_period_end(budget_period::month, sys_days{2026y / February / 1}) == 28 * 86400);
  CHECK(seconds_until_period_end(budget_period::total, t) == 0);
}
