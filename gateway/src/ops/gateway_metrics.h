// Every metric the gateway exports, declared in one place, with a small recording API for the request path.
// Labels stay bounded: `model` only ever takes a policy model name or "unknown", `status` an HTTP status code,
// `type` and `reason` fixed enumerations. No request ids, API keys, prompts or client-supplied strings are ever
// used as label values. What must not go in here: Beast/Asio, routing logic, per-request state.
// The names, labels and meaning of each metric are documented in docs/metrics.md; keep the two in sync.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "ops/metrics.h"
#include "sluice/router/cascade.h"

#ifndef SLUICE_VERSION  // set by CMake (cmake/sluice_options.cmake)
#define SLUICE_VERSION "unknown"
#endif

namespace sluice::gateway {

// What one finished request cost and how long it took; filled by the gateway after the router returns.
struct request_record {
  std::string_view model;  // the policy model that served it (a name the policy does not know becomes "unknown")
  int http_status = 200;
  // Token counts as in router::usage: tokens_input is the total input (uncached + cache read + cache write).
  int64_t tokens_input = 0;
  int64_t tokens_cache_read = 0;
  int64_t tokens_cache_write = 0;
  int64_t tokens_output = 0;
  double cost_usd = 0.0;
  std::optional<double> baseline_cost_usd;  // what the route's baseline model would have cost; nullopt = no baseline
  double duration_s = 0.0;                  // end to end: request head received -> last byte written
  std::optional<double> ttft_s;             // time to first token (streamed or not); nullopt when none was produced
  double overhead_s = 0.0;                  // duration minus the time spent waiting on the upstream or engine
  // false for routed requests: their tokens and costs are counted per attempt (record_route), not here.
  bool count_usage = true;
};

// Why an upstream attempt failed, as the upstream client saw it (docs/metrics.md has the full definitions). A
// fixed set so the `reason` label stays bounded.
enum class upstream_error_reason {
  connect,       // DNS failure, refused, unreachable, or lost before any byte of an answer
  tls,           // handshake or certificate failure
  timeout,       // no (complete) answer within the deadline, a stall mid-stream, or the request's deadline
  http_status,   // a non-2xx status other than the ones below
  auth,          // 401/403: our credentials were rejected
  rate_limited,  // 429
  protocol,      // malformed response, bad framing, invalid JSON
  stream_cut,    // the answer broke off after its head: dropped, no [DONE], or an in-band error event
  other,
};
const char* to_string(upstream_error_reason r);

class gateway_metrics {
 public:
  // `model_names` / `route_names`: the policy's names, the only values the `model` and `route` labels may
  // take besides "unknown".
  explicit gateway_metrics(std::span<const std::string> model_names, std::span<const std::string> route_names = {},
                           std::string_view version = SLUICE_VERSION);
  gateway_metrics(const gateway_metrics&) = delete;
  gateway_metrics& operator=(const gateway_metrics&) = delete;

  // Replaces the known model and route names after a policy reload. Series of removed ones keep their values.
  void set_model_names(std::span<const std::string> model_names);
  void set_route_names(std::span<const std::string> route_names);

  // `name` if the policy knows it, else "unknown".
  std::string model_label(std::string_view name) const;

  void record_request(const request_record& r);
  void record_upstream_error(std::string_view model, upstream_error_reason reason);
  // A routed request, once it is over: every attempt's tokens and cost (rejected ones included) by model, and
  // the route's own families. `ttft_s` as in request_record.
  void record_route(const router::route_decision& d, std::optional<double> ttft_s);
  void connection_opened() { connections_open.inc(); }
  void connection_closed() { connections_open.dec(); }

  std::string expose() const { return registry_.expose(); }  // the body of GET /metrics
  uint64_t add_collector(std::function<void()> collect) { return registry_.add_collector(std::move(collect)); }
  void remove_collector(uint64_t id) { registry_.remove_collector(id); }

 private:
  registry registry_;  // declared first: the families below live in it

 public:
  // The families, for components that record outside record_request (e.g. engine gauges later). Always pass
  // model names through model_label().
  counter_family& requests_total;            // {model, status}
  counter_family& tokens_total;              // {model, type}: type = input | cached_input | cache_write | output
  counter_family& cost_usd_total;            // {model}
  counter_family& baseline_cost_usd_total;   // {model}
  histogram_family& request_duration_seconds;          // {model}
  histogram_family& time_to_first_token_seconds;       // {model}
  histogram_family& time_per_output_token_seconds;     // {model}
  histogram_family& gateway_overhead_seconds;          // {model}
  counter_family& upstream_errors_total;     // {model, reason}
  counter_family& route_requests_total;        // {route, tier, escalated}
  counter_family& route_escalations_total;     // {route, reason}
  counter_family& route_cost_usd_total;        // {route}
  counter_family& route_baseline_cost_usd_total;  // {route}
  histogram_family& route_acceptance_score;    // {route}
  histogram_family& route_decision_seconds;    // {route}
  histogram_family& route_time_to_first_token_seconds;  // {route, escalated}
  counter_family& decision_log_lines_total;    // {result}: queued | dropped
  counter_family& feedback_total;              // {result}: recorded | unknown_request | duplicate | invalid | dropped
  counter_family& route_shadow_total;          // {route, would_answer, agrees}
  counter_family& route_shadow_would_save_usd_total;  // {route}
  counter_family& key_requests_total;        // {key, outcome}: key = a policy key name
  counter_family& key_spend_usd_total;       // {key}
  counter_family& auth_failures_total;       // {reason}: missing | invalid | in_url | conflicting
  counter_family& limits_store_errors_total; // {store}: memory | redis
  counter_family& upstream_retries_total;    // {model}
  counter_family& fallbacks_total;           // {model, to}
  gauge_family& circuit_open;                // {model}
  // The local engine's KV cache and prefix cache (set by the local backend as each of its requests finishes).
  counter_family& engine_prompt_tokens_total;   // {model, source}: source = cached | computed
  gauge_family& engine_kv_cache_blocks;         // {model, state}: state = total | used | cached
  counter_family& engine_kv_cache_evicted_blocks_total;  // {model}
  counter_family& policy_reloads_total;      // {result}: ok | invalid | refused
  gauge_family& build_info;                  // {version}, always 1
  gauge& connections_open;
  gauge& requests_in_flight;

 private:
  std::string route_label(std::string_view name) const;

  // What record_request writes for one `model` label (a policy model, or "unknown"), each child resolved on
  // first use and kept: the request path then takes no lock and builds no label strings. (Children appear in
  // the exposition only once used, as before.)
  struct model_series {
    std::string name;
    std::array<std::atomic<counter*>, 501> requests_by_status{};  // [status - 99] for 100..599, [0] "other"
    std::atomic<histogram*> duration{}, overhead{}, ttft{}, per_token{};
    std::array<std::atomic<counter*>, 4> tokens{};  // input, cached_input, cache_write, output
    std::atomic<counter*> cost{}, baseline_cost{};
  };
  struct series_table {
    std::vector<std::unique_ptr<model_series>> sorted;  // by name
    std::unique_ptr<model_series> unknown;
  };
  model_series& series_for(std::string_view model) const;  // (its slots are caches: filled on first use)
  static std::unique_ptr<series_table> make_table(const std::vector<std::string>& sorted_names);

  mutable std::mutex names_mutex_;
  std::shared_ptr<const std::vector<std::string>> model_names_;  // sorted
  std::shared_ptr<const std::vector<std::string>> route_names_;  // sorted
  // The table in use (read without a lock); tables replaced by set_model_names stay alive until destruction, as
  // a reader may still hold one.
  std::atomic<const series_table*> series_{nullptr};
  std::vector<std::unique_ptr<series_table>> tables_;  // (under names_mutex_)
};

}  // namespace sluice::gateway
