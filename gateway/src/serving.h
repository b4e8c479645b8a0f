// What serves requests under one policy: the policy, the backends of its models, the router over them and the
// gateway keys. Built at start and again by a policy reload, and swapped atomically (server_state::config()):
// a request pins the config it started with (http_session::config()), so a reload never changes a request
// half-way. What must not go in here: HTTP handling, the server section (listen, threads, timeouts: those of
// the policy the server started with apply until a restart).
#pragma once

#include <atomic>
#include <condition_variable>
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

// A backend a reload replaced or removed. Requests that started before the reload may still use it.
struct retired_backend {
  std::string model;
  bool local = false;  // an engine: stopped (its memory freed) once no request uses it; others stay until exit
  std::shared_ptr<router::backend> backend;
};

// Builds the config for `policy`. With `previous`, the backends of models whose entries did not change are
// reused (pools and loaded engines kept); a local model that is new or changed is loaded here, beside the old
// engine, which keeps serving the requests that started with it. Backends of changed or removed models are
// appended to `retired`.
router::result<std::shared_ptr<const serving_config>> build_serving_config(
    const serving_builder& b, std::shared_ptr<const policies::policy> policy, const serving_config* previous,
    std::vector<retired_backend>* retired);

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
  // Waits for a reload in progress (at exit, once nothing can trigger another) and ends the unloading thread.
  void wait();
  // Backends retired by reloads and not unloaded yet (stopped at exit with the current ones).
  std::vector<std::shared_ptr<router::backend>> retired() const;

 private:
  void run(std::string why);
  void unload_loop();  // stops each retired engine once only the retired list holds it


  serving_builder builder_;
  std::string path_;
  policies::server_overrides overrides_;
  std::shared_ptr<server_state> state_;
  std::atomic<bool> running_{false};
  std::thread thread_;
  mutable std::mutex mutex_;
  std::string last_;  // JSON
  std::vector<retired_backend> retired_;
  std::thread unloader_;
  std::condition_variable unload_cv_;
  bool stopping_ = false;
  bool unloading_ = false;  // unloader_ is in unload_loop (joinable but returned: false)
};

}  // namespace sluice::gateway
