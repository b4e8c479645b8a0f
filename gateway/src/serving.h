// What serves requests under one policy: the policy, the backends of its models, the router over them and the
// gateway keys. Built at start and again by a policy reload, and swapped atomically (server_state::config()):
// a request pins the config it started with (http_session::config()), so a reload never changes a request
// half-way. What must not go in here: HTTP handling, the server section (listen, threads, timeouts: those of
// the policy the server started with apply until a restart).
#pragma once

#include <atomic>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "sluice/policies/policy.h"
#include "sluice/router/resilience.h"
#include "sluice/router/router.h"

namespace sluice::gateway {

class access_control;
class gateway_metrics;
class io_threads;
struct server_state;

struct serving_config {
  std::shared_ptr<const policies::policy> policy;
  std::shared_ptr<const router::router> router;
  std::shared_ptr<access_control> access;  // null when the policy has no keys
  router::backend_map backends;            // unwrapped, by model name (reused by the next reload)
  uint64_t generation = 1;                 // 1 at start, +1 per reload
};

// What building a config needs from the running process.
struct serving_builder {
  io_threads& io;
  std::shared_ptr<gateway_metrics> metrics;
  std::shared_ptr<router::timer_service> timers;
  std::shared_ptr<router::resilience_observer> observer;
};

// Builds the config for `policy`. With `previous`, the backends of models whose entries did not change are
// reused (pools and loaded engines kept); a local model that changed or was removed is an error (its engine
// cannot be swapped under running requests: restart to apply), a new one is loaded here. Backends of changed
// remote and task models are appended to `retired` (kept until exit: requests may still use them).
router::result<std::shared_ptr<const serving_config>> build_serving_config(
    const serving_builder& b, std::shared_ptr<const policies::policy> policy, const serving_config* previous,
    std::vector<std::shared_ptr<router::backend>>* retired);

// Reloads the policy file on a thread of its own (loading a local model takes seconds), one reload at a time.
class policy_reloader {
 public:
  policy_reloader(serving_builder b, std::string path, policies::server_overrides overrides,
                  std::shared_ptr<server_state> state)
      : builder_(std::move(b)), path_(std::move(path)), overrides_(std::move(overrides)), state_(std::move(state)) {}
  ~policy_reloader();  // waits for a reload in progress
  policy_reloader(const policy_reloader&) = delete;
  policy_reloader& operator=(const policy_reloader&) = delete;

  // Starts a reload; false when one is already running. `why` is logged ("SIGHUP", "POST /admin/reload").
  bool trigger(std::string why);
  // The last reload's outcome as a JSON object (for GET /admin/reload).
  std::string status_json() const;
  // Waits for a reload in progress (at exit, once nothing can trigger another).
  void wait();
  // Backends retired by reloads (stopped at exit with the current ones).
  std::vector<std::shared_ptr<router::backend>> retired() const;

 private:
  void run(std::string why);

  serving_builder builder_;
  std::string path_;
  policies::server_overrides overrides_;
  std::shared_ptr<server_state> state_;
  std::atomic<bool> running_{false};
  std::thread thread_;
  mutable std::mutex mutex_;
  std::string last_;  // JSON
  std::vector<std::shared_ptr<router::backend>> retired_;
};

}  // namespace sluice::gateway
