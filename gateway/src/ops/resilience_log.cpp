// See resilience_log.h. Retries are frequent under an upstream's bad minute: counted, not logged one by one.
// Fallbacks and breaker changes are rarer and each gets a line on stderr.
#include "ops/resilience_log.h"

#include <cstdio>
#include <string>

namespace sluice::gateway {

void resilience_log::on_retry(std::string_view model, const router::error&) {
  if (metrics_) metrics_->upstream_retries_total.with({metrics_->model_label(model)}).inc();
}

void resilience_log::on_fallback(std::string_view from, std::string_view to, const router::error& why) {
  if (metrics_) metrics_->fallbacks_total.with({metrics_->model_label(from), metrics_->model_label(to)}).inc();
  std::fprintf(stderr, "sluice: model '%.*s' failed (%s: %s); falling back to '%.*s'\n", static_cast<int>(from.size()),
               from.data(), std::string(router::info(why.code).code).c_str(), why.message.c_str(),
               static_cast<int>(to.size()), to.data());
}

void resilience_log::on_breaker(std::string_view model, bool open) {
  if (metrics_) metrics_->circuit_open.with({metrics_->model_label(model)}).set(open ? 1 : 0);
  std::fprintf(stderr, "sluice: circuit breaker of model '%.*s' %s\n", static_cast<int>(model.size()), model.data(),
               open ? "opened: requests fail fast or fall back until a probe succeeds" : "closed: the upstream answers again");
}

}  // namespace sluice::gateway
