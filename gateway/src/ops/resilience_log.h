// What the router's retries, fallbacks and circuit breakers did, as metrics and log lines
// (router::resilience_observer). What must not go in here: the decisions themselves (router/resilience.h).
#pragma once

#include <memory>

#include "ops/gateway_metrics.h"
#include "sluice/router/resilience.h"

namespace sluice::gateway {

class resilience_log final : public router::resilience_observer {
 public:
  explicit resilience_log(std::shared_ptr<gateway_metrics> metrics) : metrics_(std::move(metrics)) {}
  void on_retry(std::string_view model, const router::error& why) override;
  void on_fallback(std::string_view from, std::string_view to, const router::error& why) override;
  void on_breaker(std::string_view model, bool open) override;

 private:
  std::shared_ptr<gateway_metrics> metrics_;
};

}  // namespace sluice::gateway
