// The router: resolves what a request's "model" names (a route of the policy, or one of its models), starts it,
// and accounts for what it cost. A route runs the cascade (router/src/cascade/); a model is a single attempt.
// Every request goes through here, even a plain pass-through to one upstream, so that cost accounting sees
// every request the same way. What must not go in here: sockets, wire formats, tensors.
#pragma once

#include <memory>
#include <string>
#include <unordered_map>

#include "sluice/policies/policy.h"
#include "sluice/router/backend.h"
#include "sluice/router/cascade.h"
#include "sluice/router/chat.h"
#include "sluice/router/error.h"
#include "sluice/router/resilience.h"

namespace sluice::router {

// USD for `u` at `price` (per million tokens). Uncached input, cache reads and cache writes are priced apart;
// a per-request price is added when the attempt got an answer.
double cost_usd(const usage& u, const policies::price_per_mtok& price);

using backend_map = std::unordered_map<std::string, std::shared_ptr<backend>>;  // policy model name -> backend

namespace detail {
struct compiled_route;
}

class router {
 public:
  // Compiles the policy's routes against the backends: loads the files they name (pre-score classifier,
  // acceptance model) and checks them (labels, the local model an acceptance model was trained on). Errors
  // name the policy file, the route and the problem. `timers` runs the cascade's deadlines (may be null in
  // tests: no deadlines).
  // Remote backends are wrapped with retries and a circuit breaker (resilience.h); `observer` (may be null) hears
  // about retries, fallbacks and breakers.
  static result<std::shared_ptr<const router>> create(std::shared_ptr<const policies::policy> policy,
                                                      backend_map backends, std::shared_ptr<timer_service> timers,
                                                      std::shared_ptr<resilience_observer> observer = nullptr);

  // Starts serving `req`. The sink receives the chunks and, in on_done, a completion with served_by,
  // cost_usd and backend_seconds filled in; for a route also on_decision (see backend.h). Errors found
  // before any backend starts come back as the value.
  result<std::shared_ptr<generation>> dispatch(std::shared_ptr<const chat_request> req,
                                               std::shared_ptr<generation_sink> sink) const;

  const policies::policy& policy() const { return *policy_; }

  // The models whose circuit breaker is open now (for /readyz).
  std::vector<std::string> open_circuits() const;

  router(std::shared_ptr<const policies::policy> policy, backend_map backends,
         std::vector<std::shared_ptr<const detail::compiled_route>> routes, std::shared_ptr<timer_service> timers);

 private:
  std::shared_ptr<const policies::policy> policy_;
  backend_map backends_;
  std::vector<std::shared_ptr<const detail::compiled_route>> routes_;  // parallel to policy_->routes
  std::shared_ptr<timer_service> timers_;
  std::shared_ptr<resilience_observer> observer_;
};

// For `sluice validate`: loads every file the policy's routes and task models name and checks it, without
// backends. One message per problem; empty when all is well.
std::vector<std::string> check_route_files(const policies::policy& policy);

}  // namespace sluice::router
