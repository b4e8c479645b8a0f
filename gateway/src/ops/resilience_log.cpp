// See resilience_log.h. Retries are frequent under an upstream's bad minute: counted, and logged one by one only
// at log level debug. Fallbacks and breaker changes are rarer and each gets a line on stderr.
#include "ops/resilience_log.h"

#include <string>

#include "ops/log.h"

namespace sluice::gateway {

using policies::log_level;

void resilience_log::on_retry(std::string_view model, const router::error& why) {
  if (metrics_) metrics_->upstream_retries_total.with({metrics_->model_label(model)}).inc();
  if (log_enabled(log_level::debug)) {
    log_line(log_level::debug, "model '%.*s' failed (%s: %s); retrying", static_cast<int>(model.size()), model.data(),
             std::string(router::info(why.code).code).c_str(), why.message.c_str());
  }
}

void resilience_log::on_fallback(std::string_view from, std::string_view to, const router::error& why) {
  if (metrics_) metrics_->fallbacks_total.with({metrics_->model_label(from), metrics_->model_label(to)}).inc();
  log_line(log_level::warn, "model '%.*s' failed (%s: %s); falling back to '%.*s'", static_cast<int>(from.size()),
           from.data(), std::string(router::info(why.code).code).c_str(), why.message.c_str(),
           static_cast<int>(to.size()), to.data());
}

void resilience_log::on_breaker(std::string_view model, bool open) {
  if (metrics_) metrics_->circuit_open.with({metrics_->model_label(model)}).set(open ? 1 : 0);
  log_line(open ? log_level::warn : log_level::info, "circuit breaker of model '%.*s' %s", static_cast<int>(model.size()),
           model.data(),
           open ? "opened: requests fail fast or fall back until a probe succeeds" : "closed: the upstream answers again");
}

}  // namespace sluice::gateway
