// The endpoints: thin handlers that parse the wire format into the internal request, call the router once,
// and serialise what comes back (JSON or SSE). No routing or cost logic here.
#pragma once

#include <atomic>
#include <boost/asio/awaitable.hpp>
#include <memory>

#include "gateway_metrics.h"
#include "sluice/policies/policy.h"
#include "sluice/router/router.h"

namespace sluice::gateway {

class http_session;

struct server_state {
  std::shared_ptr<const policies::policy> policy;
  std::shared_ptr<const router::router> router;
  gateway_metrics* metrics = nullptr;
  std::atomic<bool> ready{false};
  std::atomic<int64_t> connections_open{0};
  std::atomic<int64_t> requests_active{0};  // being handled now (the shutdown drain waits for 0)
  std::atomic<bool> draining{false};        // shutting down: finish current requests, close connections
};

// Handles the request in `s`. Returns false when the connection must close afterwards.
boost::asio::awaitable<bool> handle_request(http_session& s);

}  // namespace sluice::gateway
