// Target resolution (route or model) and single-attempt accounting; routes run the cascade (cascade/).
#include "sluice/router/router.h"

#include <chrono>

#include "cascade/cascade_run.h"
#include "cascade/route_table.h"
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

}  // namespace

router::router(std::shared_ptr<const policies::policy> policy, backend_map backends,
               std::vector<std::shared_ptr<const detail::compiled_route>> routes, std::shared_ptr<timer_service> timers)
    : policy_(std::move(policy)), backends_(std::move(backends)), routes_(std::move(routes)),
      timers_(std::move(timers)) {}

result<std::shared_ptr<const router>> router::create(std::shared_ptr<const policies::policy> policy,
                                                     backend_map backends, std::shared_ptr<timer_service> timers) {
  std::vector<std::shared_ptr<const detail::compiled_route>> routes;
  for (const policies::route_config& rc : policy->routes) {
    auto r = detail::compile_route(*policy, rc, &backends);
    if (!r) return r.error();
    routes.push_back(std::move(*r));
  }
  return std::make_shared<const router>(std::move(policy), std::move(backends), std::move(routes), std::move(timers));
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
    auto run = std::make_shared<detail::cascade_run>(routes_[i], policy_, std::move(req), std::move(sink), timers_);
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
  auto wrapped = std::make_shared<accounting_sink>(std::move(sink), *model, policy_);
  return it->second->start(std::move(req), *model, std::move(wrapped));
}

}  // namespace sluice::router
