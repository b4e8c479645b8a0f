// See limits.h. The Redis store (redis_limits.cpp) implements the same rules in Lua; test_keys.py runs the
// same tests against both.
#include "access/limits.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <ctime>

namespace sluice::gateway {

namespace {

std::tm utc(std::chrono::system_clock::time_point now) {
  const std::time_t t = std::chrono::system_clock::to_time_t(now);
  std::tm out{};
  gmtime_r(&t, &out);
  return out;
}

constexpr double ms_per_minute = 60'000.0;

}  // namespace

std::string budget_period_id(policies::budget_period per, std::chrono::system_clock::time_point now) {
  if (per == policies::budget_period::total) return "total";
  const std::tm tm = utc(now);
  char buf[48];
  if (per == policies::budget_period::day) {
    std::snprintf(buf, sizeof buf, "d%04d%02d%02d", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday);
  } else {
    std::snprintf(buf, sizeof buf, "m%04d%02d", tm.tm_year + 1900, tm.tm_mon + 1);
  }
  return buf;
}

int64_t seconds_until_period_end(policies::budget_period per, std::chrono::system_clock::time_point now) {
  if (per == policies::budget_period::total) return 0;
  std::tm end = utc(now);
  end.tm_hour = end.tm_min = end.tm_sec = 0;
  if (per == policies::budget_period::day) {
    end.tm_mday += 1;
  } else {
    end.tm_mday = 1;
    end.tm_mon += 1;
  }
  const std::time_t end_t = timegm(&end);  // (normalises day 32, month 13)
  return std::max<int64_t>(1, end_t - std::chrono::system_clock::to_time_t(now));
}

const char* to_string(admission_outcome o) {
  switch (o) {
    case admission_outcome::admitted: return "admitted";
    case admission_outcome::key_budget: return "key_budget";
    case admission_outcome::team_budget: return "team_budget";
    case admission_outcome::requests_rate: return "requests_rate";
    case admission_outcome::tokens_rate: return "tokens_rate";
    case admission_outcome::tokens_too_large: return "tokens_too_large";
    case admission_outcome::unavailable: return "unavailable";
  }
  return "unavailable";
}

double memory_limits::bucket::refill(int64_t capacity, clock::time_point now) {
  const auto cap = static_cast<double>(capacity);
  if (level < 0) {
    level = cap;
  } else {
    const double ms = std::chrono::duration<double, std::milli>(now - at).count();
    level = std::min(cap, level + std::max(0.0, ms) * cap / ms_per_minute);
  }
  at = now;
  return level;
}

admission memory_limits::reserve_at(const reservation& r, clock::time_point now) {
  const policies::key_config& k = *r.key;
  admission a;
  const std::lock_guard lock(mutex_);
  auto spent_in = [](std::unordered_map<std::string, spend>& m, const std::string& name, const std::string& period) {
    spend& s = m[name];
    if (s.period != period) s = spend{period, 0};  // a new day or month
    return &s;
  };
  spend* ks = k.budget.set() ? spent_in(key_spend_, k.name, r.key_period) : nullptr;
  spend* ts = r.team && r.team->budget.set() ? spent_in(team_spend_, r.team->name, r.team_period) : nullptr;
  bucket* rb = k.requests_per_minute > 0 ? &requests_[k.name] : nullptr;
  bucket* tb = k.tokens_per_minute > 0 ? &tokens_[k.name] : nullptr;
  const double rl = rb ? rb->refill(k.requests_per_minute, now) : 0;
  const double tl = tb ? tb->refill(k.tokens_per_minute, now) : 0;
  const auto wait_ms = [](double missing, int64_t capacity) {
    return static_cast<int64_t>(std::ceil(missing * ms_per_minute / static_cast<double>(capacity)));
  };
  const auto now_wall = std::chrono::system_clock::now();
  if (ks && ks->spent + r.cost > k.budget.limit) {
    a.outcome = admission_outcome::key_budget;
    a.retry_after_ms = seconds_until_period_end(k.budget.per, now_wall) * 1000;
  } else if (ts && ts->spent + r.cost > r.team->budget.limit) {
    a.outcome = admission_outcome::team_budget;
    a.retry_after_ms = seconds_until_period_end(r.team->budget.per, now_wall) * 1000;
  } else if (rb && rl < 1.0) {
    a.outcome = admission_outcome::requests_rate;
    a.retry_after_ms = wait_ms(1.0 - rl, k.requests_per_minute);
  } else if (tb && r.tokens > k.tokens_per_minute) {
    a.outcome = admission_outcome::tokens_too_large;
  } else if (tb && tl < static_cast<double>(r.tokens)) {
    a.outcome = admission_outcome::tokens_rate;
    a.retry_after_ms = wait_ms(static_cast<double>(r.tokens) - tl, k.tokens_per_minute);
  }
  if (a.outcome == admission_outcome::admitted) {
    if (open_.contains(r.request_id)) {  // an id reserves once (ids are random; this is a caller's bug)
      a.outcome = admission_outcome::unavailable;
      a.error = "request id reserved twice";
      return a;
    }
    if (ks) ks->spent += r.cost;
    if (ts) ts->spent += r.cost;
    if (rb) rb->level -= 1.0;
    if (tb) tb->level -= static_cast<double>(r.tokens);
    open_[r.request_id] = open_reservation{r.cost, r.tokens};
  }
  if (rb) {
    a.requests_remaining = static_cast<int64_t>(std::floor(std::max(0.0, rb->level)));
    a.requests_reset_ms = wait_ms(static_cast<double>(k.requests_per_minute) - rb->level, k.requests_per_minute);
  }
  if (tb) {
    a.tokens_remaining = static_cast<int64_t>(std::floor(std::max(0.0, tb->level)));
    a.tokens_reset_ms = wait_ms(static_cast<double>(k.tokens_per_minute) - tb->level, k.tokens_per_minute);
  }
  if (ks) a.budget_remaining = std::max<nano_usd>(0, k.budget.limit - ks->spent);
  return a;
}

void memory_limits::settle_at(const reservation& r, nano_usd cost, int64_t tokens, clock::time_point now) {
  const policies::key_config& k = *r.key;
  const std::lock_guard lock(mutex_);
  auto it = open_.find(r.request_id);
  if (it == open_.end()) return;  // settled already
  const open_reservation held = it->second;
  open_.erase(it);
  auto adjust = [&](std::unordered_map<std::string, spend>& m, const std::string& name, const std::string& period) {
    auto s = m.find(name);
    if (s != m.end() && s->second.period == period) s->second.spent += cost - held.cost;  // (an ended period: gone)
  };
  if (k.budget.set()) adjust(key_spend_, k.name, r.key_period);
  if (r.team && r.team->budget.set()) adjust(team_spend_, r.team->name, r.team_period);
  if (k.tokens_per_minute > 0 && held.tokens != tokens) {  // (more than reserved: a debt)
    bucket& b = tokens_[k.name];
    b.refill(k.tokens_per_minute, now);
    b.level = std::min(static_cast<double>(k.tokens_per_minute), b.level + static_cast<double>(held.tokens - tokens));
  }
}

}  // namespace sluice::gateway
