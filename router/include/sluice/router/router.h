// The router: resolves which tier serves a request, starts it, and accounts for what it cost. Every request
// goes through here, even a plain pass-through to one upstream, so that cost accounting and (later) the
// cascade see every request the same way. What must not go in here: sockets, wire formats, tensors.
#pragma once

#include <memory>
#include <string>
#include <unordered_map>

#include "sluice/policies/policy.h"
#include "sluice/router/backend.h"
#include "sluice/router/chat.h"
#include "sluice/router/error.h"

namespace sluice::router {

// USD for `u` at `price` (per million tokens). Uncached input, cache reads and cache writes are priced apart.
double cost_usd(const usage& u, const policies::price_per_mtok& price);

using backend_map = std::unordered_map<std::string, std::shared_ptr<backend>>;  // policy model name -> backend

class router {
 public:
  router(std::shared_ptr<const policies::policy> policy, backend_map backends);

  // Starts serving `req`. The sink receives the chunks and, in on_done, a completion with served_by,
  // cost_usd and backend_seconds filled in. Errors found before any backend starts come back as the value.
  result<std::shared_ptr<generation>> dispatch(std::shared_ptr<const chat_request> req,
                                               std::shared_ptr<generation_sink> sink) const;

  const policies::policy& policy() const { return *policy_; }

 private:
  std::shared_ptr<const policies::policy> policy_;
  backend_map backends_;
};

}  // namespace sluice::router
