// Budgets and rate limits of the gateway's keys, counted by reservation: before a request is dispatched its
// worst-case cost and tokens are reserved atomically (refused when a limit would be passed), and once it is over
// the reservation is settled to what it really cost. Never check-then-charge: concurrent requests and replicas
// cannot overshoot a budget by more than what a request spends beyond its worst case (PITFALLS.md "Money").
// Two stores with the same semantics: this process's memory (memory_limits) and Redis (redis_limits.h), shared
// by every replica. What must not go in here: HTTP, wire formats, prices (the caller computes the worst case).
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>

#include "http/executor.h"
#include "sluice/policies/policy.h"

namespace sluice::gateway {

using policies::nano_usd;

// The id of the budget period `per` that `now` falls in, e.g. "d20261202", "m202612", "total" (UTC), and the
// seconds until it ends (0 for total).
std::string budget_period_id(policies::budget_period per, std::chrono::system_clock::time_point now);
int64_t seconds_until_period_end(policies::budget_period per, std::chrono::system_clock::time_point now);

// What one request reserves. The periods are fixed at reservation, so that a request settled after midnight
// settles the day it was charged to.
struct reservation {
  std::string request_id;
  const policies::key_config* key = nullptr;  // never null
  const policies::team_config* team = nullptr;
  nano_usd cost = 0;    // worst case
  int64_t tokens = 0;   // worst case (input + output)
  std::string key_period, team_period;
};

enum class admission_outcome {
  admitted,
  key_budget,       // the key's budget for this period would be passed
  team_budget,      // the team's
  requests_rate,    // requests_per_minute
  tokens_rate,      // tokens_per_minute (the bucket has not refilled enough yet)
  tokens_too_large, // the request's worst case is more than a whole minute of tokens_per_minute
  unavailable,      // the store could not be reached (Redis down): the policy says whether to serve
};
const char* to_string(admission_outcome o);

struct admission {
  admission_outcome outcome = admission_outcome::admitted;
  int64_t retry_after_ms = 0;  // when a retry could succeed; 0 = not by waiting (too large, a total budget)
  // For the x-ratelimit-* headers (when the key has the limit) and x-sluice-budget-remaining-usd.
  int64_t requests_remaining = 0, requests_reset_ms = 0;
  int64_t tokens_remaining = 0, tokens_reset_ms = 0;
  nano_usd budget_remaining = 0;  // the key's, after this reservation (when it has a budget)
  std::string error;              // for unavailable: what went wrong (logged, never sent to the client)
};

class limits_store {
 public:
  virtual ~limits_store() = default;
  // Reserves r's cost and tokens when every limit allows it; else takes nothing.
  virtual task<admission> reserve(const reservation& r) = 0;
  // Replaces the reservation with what the request really cost and used (0, 0 releases it). At most once per
  // request id; a second settle of the same id changes nothing. Errors are logged, not returned.
  virtual task<void> settle(const reservation& r, nano_usd cost, int64_t tokens) = 0;
  // A reservation that will never be settled stays charged in full; a store that keeps it open in memory lets
  // go of it (no I/O: this is called from destructors).
  virtual void abandon(const reservation& r) = 0;
  virtual const char* name() const = 0;  // "memory" or "redis"
};

// One process: every count in this process's memory, under one lock (held for a few hundred nanoseconds).
class memory_limits final : public limits_store {
 public:
  using clock = std::chrono::steady_clock;
  task<admission> reserve(const reservation& r) override { co_return reserve_at(r, clock::now()); }
  task<void> settle(const reservation& r, nano_usd cost, int64_t tokens) override {
    settle_at(r, cost, tokens, clock::now());
    co_return;
  }
  void abandon(const reservation& r) override { settle_at(r, r.cost, r.tokens, clock::now()); }
  const char* name() const override { return "memory"; }

  // The same, at a given time (tests).
  admission reserve_at(const reservation& r, clock::time_point now);
  void settle_at(const reservation& r, nano_usd cost, int64_t tokens, clock::time_point now);

 private:
  struct bucket {  // a token bucket refilled continuously at capacity per minute; starts full
    double level = -1;  // < 0: not used yet (full)
    clock::time_point at{};
    double refill(int64_t capacity, clock::time_point now);
  };
  struct spend {
    std::string period;
    nano_usd spent = 0;  // settled costs plus open reservations
  };
  struct open_reservation {
    nano_usd cost = 0;
    int64_t tokens = 0;
  };
  std::mutex mutex_;
  std::unordered_map<std::string, bucket> requests_, tokens_;  // by key name
  std::unordered_map<std::string, spend> key_spend_, team_spend_;
  std::unordered_map<std::string, open_reservation> open_;      // by request id
};

}  // namespace sluice::gateway
