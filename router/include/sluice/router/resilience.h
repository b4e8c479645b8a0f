// Retries and a circuit breaker around one model's backend, and the observer that lets the gateway count them.
// The router wraps every remote backend in a resilient_backend, so plain requests and a route's tiers retry the
// same way; fallbacks to other models are the router's (router.cpp). What must not go in here: sockets, wire
// formats, metrics types (the observer is how counts leave).
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "sluice/policies/policy.h"
#include "sluice/router/backend.h"
#include "sluice/router/cascade.h"

namespace sluice::router {

// What resilience did, for metrics and logs. Called from any thread.
class resilience_observer {
 public:
  virtual ~resilience_observer() = default;
  virtual void on_retry(std::string_view model, const error& why) { (void)model, (void)why; }
  virtual void on_fallback(std::string_view from, std::string_view to, const error& why) {
    (void)from, (void)to, (void)why;
  }
  virtual void on_breaker(std::string_view model, bool open) { (void)model, (void)open; }
};

// Whether another attempt on the same model may succeed: connect failures, resets, 5xx and malformed answers
// (upstream_error) and 429 (upstream_rate_limited). Timeouts are not retried on the same model (they already
// used the attempt's deadline); they count for the breaker and the fallbacks.
bool retry_same_model(const error& e);
// Whether a fallback model may do better: any retryable error, an upstream that rejected our credentials, a
// model that is overloaded or has its circuit open.
bool try_fallback(const error& e);

// The delay before retry number `retry` (0-based): full jitter over base * 2^retry, capped; a 429's
// Retry-After / retry-after-ms when given and not over the cap. nullopt: the upstream asked for a longer wait
// than the cap allows (no retry).
std::optional<std::chrono::milliseconds> retry_delay(const policies::retry_config& c, int retry, const error& e,
                                                     double jitter01);

// Circuit breaker (consecutive failures, or a failure ratio over the last attempts) with a half-open probe.
// Thread-safe.
class circuit_breaker {
 public:
  using clock = std::chrono::steady_clock;
  enum class state { closed, open, half_open };
  explicit circuit_breaker(policies::breaker_config c)
      : config_(c), recent_(c.failure_ratio > 0.0 ? static_cast<size_t>(c.window) : 0, 0) {}

  // May an attempt start now? In half-open state one probe at a time is let through.
  bool allow(clock::time_point now);
  // Reports the end of an attempt that allow() let through. Returns true when this changed open/closed.
  bool on_result(bool failure, clock::time_point now);
  state current(clock::time_point now) const;

 private:
  policies::breaker_config config_;
  mutable std::mutex mutex_;
  int consecutive_failures_ = 0;
  std::vector<uint8_t> recent_;  // the last `window` attempts (1: failed), a ring; empty without a ratio rule
  size_t recent_next_ = 0, recent_seen_ = 0;
  int recent_failures_ = 0;
  bool open_ = false;
  bool probing_ = false;
  clock::time_point open_until_{};
};

// A backend with retries and a breaker for one remote model.
class resilient_backend final : public backend, public std::enable_shared_from_this<resilient_backend> {
 public:
  resilient_backend(std::shared_ptr<backend> inner, const policies::model_config& model,
                    std::shared_ptr<timer_service> timers, std::shared_ptr<resilience_observer> observer);
  result<std::shared_ptr<generation>> start(std::shared_ptr<const chat_request> req,
                                            const policies::model_config& model,
                                            std::shared_ptr<generation_sink> sink) override;
  void stop() override { inner_->stop(); }
  std::string identity() const override { return inner_->identity(); }

  backend& inner() { return *inner_; }
  circuit_breaker& breaker() { return breaker_; }
  resilience_observer* observer() const { return observer_.get(); }
  timer_service* timers() const { return timers_.get(); }
  const policies::retry_config& retries() const { return retries_; }
  bool has_breaker() const { return breaker_enabled_; }

 private:
  std::shared_ptr<backend> inner_;
  policies::retry_config retries_;
  bool breaker_enabled_;
  circuit_breaker breaker_;
  std::shared_ptr<timer_service> timers_;
  std::shared_ptr<resilience_observer> observer_;
};

}  // namespace sluice::router
