// See serving.h.
#include "serving.h"

#include <cstdio>

#include "access/access.h"
#include "api/json_util.h"
#include "http/io_threads.h"
#include "local/local_backend.h"
#include "local/task_backend.h"
#include "ops/decision_log.h"
#include "ops/gateway_metrics.h"
#include "ops/log.h"
#include "ops/sd_notify.h"
#include "upstream/upstream_anthropic.h"
#include "server_state.h"
#include "upstream/upstream_openai.h"

namespace sluice::gateway {

using policies::log_level;

namespace {

// Whether a backend built for `a` serves `b` the same (the fields a backend reads when it is made).
bool same_backend(const policies::model_config& a, const policies::model_config& b) {
  if (a.kind != b.kind) return false;
  switch (a.kind) {
    case policies::model_kind::local:
      return a.local == b.local;  // every field the engine is loaded with
    case policies::model_kind::task:
      return false;  // (a task model file may have been rewritten by sluice distill: always reloaded)
    default:
      return a.base_url == b.base_url && a.upstream_model == b.upstream_model && a.api_key_env == b.api_key_env &&
             a.tls_ca_file == b.tls_ca_file && a.timeout == b.timeout && a.name == b.name;
  }
}

}  // namespace

router::result<std::shared_ptr<const serving_config>> build_serving_config(
    const serving_builder& b, std::shared_ptr<const policies::policy> policy, const serving_config* previous,
    std::vector<retired_backend>* retired) {
  using router::errc;
  using router::error;
  auto cfg = std::make_shared<serving_config>();
  cfg->policy = policy;
  cfg->generation = previous ? previous->generation + 1 : 1;
  upstream_options uopts;
  uopts.timeout = policy->server.request_timeout;  // per attempt, unless the model sets timeout_ms
  uopts.metrics = b.metrics;                       // upstream clients count their failures by reason
  std::vector<retired_backend> replaced;
  if (previous) {
    for (const auto& old : previous->policy->models) {
      const auto* now = policy->find_model(old.name);
      auto it = previous->backends.find(old.name);
      if (it == previous->backends.end() || (now && same_backend(old, *now))) continue;
      replaced.push_back({old.name, old.kind == policies::model_kind::local, it->second});
    }
  }
  for (const auto& m : policy->models) {
    if (previous) {
      const auto* old = previous->policy->find_model(m.name);
      auto it = previous->backends.find(m.name);
      if (old && it != previous->backends.end() && same_backend(*old, m)) {
        cfg->backends[m.name] = it->second;
        continue;
      }
    }
    router::result<std::shared_ptr<router::backend>> made = error{errc::internal, ""};
    if (m.kind == policies::model_kind::openai) {
      made = make_openai_backend(b.io, m, uopts);
    } else if (m.kind == policies::model_kind::local) {
      log_line(log_level::info, "loading local model '%s' from %s", m.name.c_str(), m.local.gguf_path.c_str());
      made = make_local_backend(m, b.metrics);
    } else if (m.kind == policies::model_kind::task) {
      made = make_task_backend(m);
    } else if (m.kind == policies::model_kind::anthropic) {
      made = make_anthropic_backend(b.io, m, uopts);
    } else {
      continue;
    }
    if (!made) return error{made.error().code, "model '" + m.name + "': " + made.error().message};
    cfg->backends[m.name] = *made;
  }
  auto routed = router::router::create(policy, cfg->backends, b.timers, b.observer);
  if (!routed) return routed.error();  // (engines loaded above are unloaded with cfg, here: nothing used them)
  cfg->router = std::move(*routed);
  if (policy->requires_keys()) {
    std::string why;
    cfg->access = access_control::create(*policy, b.io.size(), why, previous ? previous->access.get() : nullptr);
    if (!cfg->access) return error{errc::bad_request, why};
  }
  if (retired) {
    for (auto& r : replaced) retired->push_back(std::move(r));
  }
  return std::shared_ptr<const serving_config>(std::move(cfg));
}

policy_reloader::~policy_reloader() { wait(); }

void policy_reloader::wait() {
  if (thread_.joinable()) thread_.join();
  {
    const std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  unload_cv_.notify_all();
  if (unloader_.joinable()) unloader_.join();
}

// A retired engine is stopped once the retired list holds the only reference: every config that named it (and
// so every request that started with it) is gone, and no new request can reach it. Polled, since the last
// reference goes on whichever io thread ends the last such request.
void policy_reloader::unload_loop() {
  std::unique_lock lock(mutex_);
  for (;;) {
    std::vector<retired_backend> unused;
    bool waiting = false;
    for (auto it = retired_.begin(); it != retired_.end();) {
      if (it->local && it->backend.use_count() == 1) {
        unused.push_back(std::move(*it));
        it = retired_.erase(it);
      } else {
        waiting = waiting || it->local;
        ++it;
      }
    }
    if (!unused.empty()) {
      lock.unlock();
      for (auto& r : unused) {
        r.backend->stop();
        r.backend.reset();
        log_line(log_level::info, "unloaded the previous engine of local model '%s' (no request uses it)",
                 r.model.c_str());
      }
      lock.lock();
      continue;
    }
    if (stopping_ || !waiting) {
      unloading_ = false;  // (under the lock: a reload that retires an engine now starts a new thread)
      return;
    }
    unload_cv_.wait_for(lock, std::chrono::milliseconds(100));
  }
}

bool policy_reloader::trigger(std::string why) {
  if (!state_->config()) return false;  // still starting: the first config is not built yet
  if (running_.exchange(true)) return false;
  if (thread_.joinable()) thread_.join();  // (the last reload's thread has finished: running_ was false)
  thread_ = std::thread([this, why = std::move(why)]() mutable { run(std::move(why)); });
  return true;
}

void policy_reloader::run(std::string why) {
  sd_notify_reloading();
  const auto current = state_->config();
  std::string outcome = "ok";
  std::string message;
  uint64_t generation = current->generation;
  auto loaded = policies::load_policy_file(path_, overrides_);
  if (!loaded) {
    outcome = "invalid";
    for (const auto& e : loaded.error()) message += (message.empty() ? "" : "; ") + e.to_string();
  } else {
    std::vector<retired_backend> retired;
    auto built = build_serving_config(builder_, *loaded, current.get(), &retired);
    if (!built) {
      outcome = "refused";
      message = built.error().message;
    } else {
      generation = (*built)->generation;
      state_->set_config(*built);
      set_log_level((*loaded)->server.log);
      if (builder_.metrics) {
        builder_.metrics->set_model_names((*loaded)->model_names());
        builder_.metrics->set_route_names((*loaded)->route_names());
      }
      const auto& was = current->policy->server;
      const auto& now = (*loaded)->server;
      if (was.listen_address != now.listen_address || was.port != now.port || was.threads != now.threads ||
          was.max_body_bytes != now.max_body_bytes || was.header_timeout != now.header_timeout ||
          was.body_timeout != now.body_timeout || was.idle_timeout != now.idle_timeout ||
          was.request_timeout != now.request_timeout || was.shutdown_grace != now.shutdown_grace) {
        message = "the server section changed; it applies after a restart";
      }
      bool engines = false;
      for (const auto& r : retired) engines = engines || r.local;
      const std::lock_guard lock(mutex_);
      for (auto& r : retired) retired_.push_back(std::move(r));
      if (engines && !stopping_) {
        if (unloader_.joinable() && !unloading_) unloader_.join();  // (the last one has returned)
        if (!unloader_.joinable()) {
          unloading_ = true;
          unloader_ = std::thread([this] { unload_loop(); });
        }
      }
    }
  }
  if (builder_.metrics) builder_.metrics->policy_reloads_total.with({outcome}).inc();
  const std::string result = outcome == "ok" ? "generation " + std::to_string(generation) + " serving"
                                             : outcome + ", the previous policy stays";
  log_line(outcome == "ok" ? log_level::info : log_level::error, "policy reload (%s) of %s: %s%s%s", why.c_str(),
           path_.c_str(), result.c_str(), message.empty() ? "" : ": ", message.c_str());
  std::string json = "{\"result\":";
  append_json_string(json, outcome);
  json += ",\"generation\":" + std::to_string(generation) + ",\"message\":";
  append_json_string(json, message);
  json += ",\"time\":";
  append_json_string(json, utc_now_iso8601());
  json += '}';
  {
    const std::lock_guard lock(mutex_);
    last_ = std::move(json);
  }
  sd_notify(outcome == "ok" ? "READY=1\nSTATUS=serving" : "READY=1\nSTATUS=serving (the last policy reload was refused)");
  running_.store(false);
}

std::string policy_reloader::status_json() const {
  const std::lock_guard lock(mutex_);
  if (running_.load()) return "{\"result\":\"running\"}";
  return last_.empty() ? "{\"result\":\"none\"}" : last_;
}

std::vector<std::shared_ptr<router::backend>> policy_reloader::retired() const {
  const std::lock_guard lock(mutex_);
  std::vector<std::shared_ptr<router::backend>> out;
  for (const auto& r : retired_) out.push_back(r.backend);
  return out;
}

}  // namespace sluice::gateway
