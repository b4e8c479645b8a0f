// Target resolution (route or model) and single-attempt accounting; routes run the cascade (cascade/).
#include "sluice/router/router.h"

#include <atomic>
#include <chrono>
#include <mutex>
#include <optional>

#include "cascade/cascade_run.h"
#include "cascade/route_table.h"
#include "recycling.h"
#include "sluice/router/task_model.h"

namespace sluice::router {

double cost_usd(const usage& u, const policies::price_per_mtok& price) {
  const int64_t uncached = u.tokens_input - u.tokens_cache_read - u.tokens_cache_write;
  const double usd = static_cast<double>(uncached > 0 ? uncached : 0) * price.input_usd +
                     static_cast<double>(u.tokens_cache_read) * price.cached_input_usd +
                     static_cast<double>(u.tokens_cache_write) * price.cache_write_usd +
                     static_cast<double>(u.tokens_output) * price.output_usd;
  // A per-request price applies to attempts that got an answer (a refused connection costs nothing).
  const bool answered = u.tokens_input > 0 || u.tokens_output > 0;
  return usd / 1e6 + (answered ? price.request_usd : 0.0);
}

namespace {

// Wraps the caller's sink: stamps served_by, cost and time spent in the backend on the completion.
class accounting_sink final : public generation_sink {
 public:
  accounting_sink(std::shared_ptr<generation_sink> inner, const policies::model_config& model,
                  std::shared_ptr<const policies::policy> keep_alive)
      : inner_(std::move(inner)), model_(model), policy_(std::move(keep_alive)),
        start_(std::chrono::steady_clock::now()) {}

  void on_chunk(chunk c) override { inner_->on_chunk(std::move(c)); }
  void when_ready(std::function<void()> resume) override { inner_->when_ready(std::move(resume)); }

  void on_done(result<completion> r) override {
    if (r.has_value()) {
      r->served_by = model_.name;
      r->cost_usd = cost_usd(r->usage_, model_.price);
      r->backend_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
    }
    inner_->on_done(std::move(r));
  }

 private:
  std::shared_ptr<generation_sink> inner_;
  const policies::model_config& model_;  // owned by policy_, kept alive by it
  std::shared_ptr<const policies::policy> policy_;
  std::chrono::steady_clock::time_point start_;
};

// A request to a model with fallbacks: the model first, then each fallback in turn, as long as the failure is
// one another model may not share (try_fallback) and nothing was streamed yet. Each candidate is priced as
// itself (its own accounting sink).
class fallback_call final : public generation, public std::enable_shared_from_this<fallback_call> {
 public:
  struct candidate {
    const policies::model_config* model;
    std::shared_ptr<sluice::router::backend> serving;
  };
  fallback_call(std::vector<candidate> candidates, std::shared_ptr<const chat_request> req,
                std::shared_ptr<generation_sink> sink, std::shared_ptr<const policies::policy> policy,
                std::shared_ptr<resilience_observer> observer)
      : candidates_(std::move(candidates)), req_(std::move(req)), sink_(std::move(sink)), policy_(std::move(policy)),
        observer_(std::move(observer)) {}

  // Starts the first candidate that starts; the last synchronous error when none does.
  result<void> begin() {
    std::optional<error> last;
    for (size_t i = 0; i < candidates_.size(); ++i) {
      if (last && observer_) observer_->on_fallback(candidates_[i - 1].model->name, candidates_[i].model->name, *last);
      auto started = start(i);
      if (started) return {};
      last = started.error();
      if (!try_fallback(*last)) break;
    }
    return *last;
  }

  void cancel() override {
    std::shared_ptr<generation> running;
    {
      const std::lock_guard lock(mu_);
      cancelled_ = true;
      running = current_;
    }
    if (running) running->cancel();
  }

 private:
  class attempt_sink final : public generation_sink {
   public:
    attempt_sink(std::shared_ptr<fallback_call> call, size_t i) : call_(std::move(call)), i_(i) {}
    void on_chunk(chunk c) override {
      call_->produced_.store(true);
      call_->sink_->on_chunk(std::move(c));
    }
    void when_ready(std::function<void()> resume) override { call_->sink_->when_ready(std::move(resume)); }
    void on_done(result<completion> r) override {
      auto call = std::move(call_);
      call->on_attempt_done(i_, std::move(r));
    }

   private:
    std::shared_ptr<fallback_call> call_;
    size_t i_;
  };

  result<void> start(size_t i) {
    const candidate& c = candidates_[i];
    auto sink = std::make_shared<accounting_sink>(std::make_shared<attempt_sink>(shared_from_this(), i), *c.model,
                                                  policy_);
    auto gen = c.serving->start(req_, *c.model, std::move(sink));
    if (!gen) return gen.error();
    bool cancel_now = false;
    {
      const std::lock_guard lock(mu_);
      if (!done_ && ended_ < static_cast<int>(i)) current_ = *gen;  // (it may have ended inside start())
      cancel_now = cancelled_;
    }
    if (cancel_now) (*gen)->cancel();
    return {};
  }

  void on_attempt_done(size_t i, result<completion> r) {
    {
      const std::lock_guard lock(mu_);
      current_.reset();
      ended_ = static_cast<int>(i);
    }
    size_t next = i + 1;
    while (!r && next < candidates_.size() && !produced_.load() && try_fallback(r.error())) {
      {
        const std::lock_guard lock(mu_);
        if (cancelled_) break;
      }
      if (observer_) observer_->on_fallback(candidates_[next - 1].model->name, candidates_[next].model->name, r.error());
      auto started = start(next);
      if (started) return;  // that candidate reports through its own sink
      r = started.error();
      ++next;
    }
    {
      const std::lock_guard lock(mu_);
      done_ = true;
    }
    sink_->on_done(std::move(r));
  }

  std::vector<candidate> candidates_;
  std::shared_ptr<const chat_request> req_;
  std::shared_ptr<generation_sink> sink_;
  std::shared_ptr<const policies::policy> policy_;
  std::shared_ptr<resilience_observer> observer_;
  std::atomic<bool> produced_{false};
  std::mutex mu_;
  bool cancelled_ = false;
  bool done_ = false;
  int ended_ = -1;  // the last candidate whose on_done came
  std::shared_ptr<generation> current_;
};

}  // namespace

router::router(std::shared_ptr<const policies::policy> policy, backend_map backends,
               std::vector<std::shared_ptr<const detail::compiled_route>> routes, std::shared_ptr<timer_service> timers)
    : policy_(std::move(policy)), backends_(std::move(backends)), routes_(std::move(routes)),
      timers_(std::move(timers)) {}

result<std::shared_ptr<const router>> router::create(std::shared_ptr<const policies::policy> policy,
                                                     backend_map backends, std::shared_ptr<timer_service> timers,
                                                     std::shared_ptr<resilience_observer> observer) {
  // Remote models retry and have a breaker; routes' tiers and plain requests share the wrapped backend.
  for (auto& [name, b] : backends) {
    const policies::model_config* m = policy->find_model(name);
    if (!b || !m || (m->retries.max_retries == 0 && !m->breaker.enabled())) continue;
    b = std::make_shared<resilient_backend>(b, *m, timers, observer);
  }
  std::vector<std::shared_ptr<const detail::compiled_route>> routes;
  for (const policies::route_config& rc : policy->routes) {
    auto r = detail::compile_route(*policy, rc, &backends);
    if (!r) return r.error();
    routes.push_back(std::move(*r));
  }
  auto r = std::make_shared<router>(std::move(policy), std::move(backends), std::move(routes), std::move(timers));
  r->observer_ = std::move(observer);
  return std::shared_ptr<const router>(std::move(r));
}

std::vector<std::string> router::open_circuits() const {
  std::vector<std::string> open;
  const auto now = circuit_breaker::clock::now();
  for (const auto& m : policy_->models) {
    auto it = backends_.find(m.name);
    if (it == backends_.end()) continue;
    auto* r = dynamic_cast<resilient_backend*>(it->second.get());
    if (r && r->has_breaker() && r->breaker().current(now) != circuit_breaker::state::closed) open.push_back(m.name);
  }
  return open;
}

std::vector<std::string> check_route_files(const policies::policy& policy) {
  std::vector<std::string> problems;
  for (const policies::model_config& m : policy.models) {
    if (m.kind != policies::model_kind::task) continue;
    auto t = task_classifier::load(m.task_model_path);
    if (!t) problems.push_back(policy.source + ":" + std::to_string(m.line) + ": model '" + m.name + "': " + t.error().message);
  }

  for (const policies::route_config& rc : policy.routes) {
    auto r = detail::compile_route(policy, rc, nullptr);
    if (!r) problems.push_back(r.error().message);
  }
  return problems;
}

result<std::shared_ptr<generation>> router::dispatch(std::shared_ptr<const chat_request> req,
                                                     std::shared_ptr<generation_sink> sink) const {
  for (size_t i = 0; i < routes_.size(); ++i) {
    if (policy_->routes[i].name != req->model) continue;
    auto run = std::make_shared<detail::cascade_run>(routes_[i], policy_, std::move(req), std::move(sink), timers_,
                                                     observer_);
    run->begin();
    return std::shared_ptr<generation>(std::move(run));
  }
  const policies::model_config* model = policy_->find_model(req->model);
  if (model == nullptr) {
    return error{errc::unknown_model, "The model '" + req->model + "' does not exist", "model"};
  }
  auto it = backends_.find(model->name);
  if (it == backends_.end() || !it->second) {
    return error{errc::not_implemented, "The model '" + model->name + "' has no backend available", "model"};
  }
  if (!model->fallbacks.empty()) {
    std::vector<fallback_call::candidate> candidates{{model, it->second}};
    for (const std::string& name : model->fallbacks) {
      const policies::model_config* m = policy_->find_model(name);
      auto b = m ? backends_.find(name) : backends_.end();
      if (m && b != backends_.end() && b->second) candidates.push_back({m, b->second});
    }
    auto call = std::make_shared<fallback_call>(std::move(candidates), std::move(req), std::move(sink), policy_,
                                                observer_);
    if (auto started = call->begin(); !started) return started.error();
    return std::shared_ptr<generation>(std::move(call));
  }
  auto wrapped = detail::make_recycled<accounting_sink>(std::move(sink), *model, policy_);
  return it->second->start(std::move(req), *model, std::move(wrapped));
}

}  // namespace sluice::router
