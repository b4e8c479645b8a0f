// What every connection of one running server shares: the policy, the router, the metrics, counters and the
// registry of open connections that a shutdown walks. Owned by shared_ptr: the accept loop and every session
// hold a reference, so nothing a coroutine touches can die before the coroutine (even one destroyed without
// resuming when the io_context goes away). What must not go in here: Beast/Asio types, per-request state.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <unordered_map>

#include "api/feedback_api.h"
#include "ops/decision_log.h"
#include "ops/gateway_metrics.h"
#include "serving.h"
#include "sluice/policies/policy.h"
#include "sluice/router/router.h"

namespace sluice::gateway {

class http_session;
class access_control;  // access/access.h

// Open connections, so that a shutdown can close the idle ones and cut the rest. Thread-safe.
class session_registry {
 public:
  uint64_t add(std::weak_ptr<http_session> s);
  void remove(uint64_t id);
  // Calls f on every session still alive (outside the lock).
  void for_each(const std::function<void(const std::shared_ptr<http_session>&)>& f) const;

 private:
  mutable std::mutex mutex_;
  uint64_t next_id_ = 1;
  std::unordered_map<uint64_t, std::weak_ptr<http_session>> sessions_;
};

struct server_state {
  // The policy the server started with: its `server` section (listen, threads, timeouts, limits) applies until a
  // restart. Everything else comes from config(), which a reload replaces.
  std::shared_ptr<const policies::policy> policy;
  std::shared_ptr<const serving_config> config() const { return config_.load(std::memory_order_acquire); }
  void set_config(std::shared_ptr<const serving_config> c) { config_.store(std::move(c), std::memory_order_release); }
  // Set by serve when reloading is possible: starts a reload (false when one runs), and its last outcome as JSON.
  std::function<bool(std::string why)> request_reload;
  std::function<std::string()> reload_status;
  std::shared_ptr<gateway_metrics> metrics;  // may be null in tests
  std::shared_ptr<decision_log> decisions;   // null when the policy has no decision_log
  std::shared_ptr<request_index> routed;     // recent routed request ids, for feedback (with a decision log)
  std::shared_ptr<decision_log> access_log;  // one JSON line per request; null when the policy has none
  policies::log_level access_log_level = policies::log_level::info;  // lines below it are not written
  session_registry sessions;
  std::atomic<bool> ready{false};
  std::atomic<int64_t> connections_open{0};
  std::atomic<int64_t> requests_active{0};  // being handled now (the shutdown drain waits for 0)
  std::atomic<bool> draining{false};        // shutting down: finish current requests, close connections

 private:
  std::atomic<std::shared_ptr<const serving_config>> config_;
};

}  // namespace sluice::gateway
