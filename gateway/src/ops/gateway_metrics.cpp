// The gateway's metric declarations and recording; see gateway_metrics.h and docs/metrics.md.
#include "ops/gateway_metrics.h"

#include <algorithm>

namespace sluice::gateway {
namespace {

// End-to-end LLM latencies span milliseconds (cache hits, errors) to minutes (long generations).
const std::vector<double> request_buckets_s = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1,   2.5,
                                               5,     10,   25,    50,   100, 250, 600};
const std::vector<double> ttft_buckets_s = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                            0.5,   1,      2.5,   5,    10,    30,   60};
const std::vector<double> per_token_buckets_s = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                                 0.05,   0.1,   0.25,   0.5,   1};
// The gateway's own cost: 10 us to 1 s, so a regression from microseconds to milliseconds is visible.
const std::vector<double> overhead_buckets_s = {0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005,
                                                0.001,   0.0025,   0.005,   0.01,   0.025,   0.05,
                                                0.1,     0.25,     0.5,     1};

constexpr std::string_view unknown_model = "unknown";

std::shared_ptr<const std::vector<std::string>> sorted_names(std::span<const std::string> names) {
  auto v = std::make_shared<std::vector<std::string>>(names.begin(), names.end());
  std::sort(v->begin(), v->end());
  return v;
}

std::string status_label(int status) { return status >= 100 && status <= 599 ? std::to_string(status) : "other"; }

}  // namespace

const char* to_string(upstream_error_reason r) {
  switch (r) {
    case upstream_error_reason::connect: return "connect";
    case upstream_error_reason::tls: return "tls";
    case upstream_error_reason::timeout: return "timeout";
    case upstream_error_reason::http_status: return "http_status";
    case upstream_error_reason::auth: return "auth";
    case upstream_error_reason::rate_limited: return "rate_limited";
    case upstream_error_reason::protocol: return "protocol";
    case upstream_error_reason::stream_cut: return "stream_cut";
    case upstream_error_reason::other: return "other";
  }
  return "other";
}

// Acceptance scores are probabilities; the decision itself takes microseconds.
const std::vector<double> score_buckets = {0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 1.0};
const std::vector<double> decision_buckets_s = {0.000001, 0.0000025, 0.000005, 0.00001, 0.000025, 0.00005,
                                                0.0001,   0.00025,   0.0005,   0.001,   0.01};

gateway_metrics::gateway_metrics(std::span<const std::string> model_names, std::span<const std::string> route_names,
                                 std::string_view version)
    : requests_total(registry_.add_counter("sluice_requests_total",
                                           "Requests answered, by the policy model that served them and HTTP status.",
                                           {"model", "status"})),
      tokens_total(registry_.add_counter(
          "sluice_tokens_total",
          "Tokens processed, by type: input (uncached), cached_input (cache reads), cache_write, output.",
          {"model", "type"})),
      cost_usd_total(registry_.add_counter("sluice_cost_usd_total",
                                           "Cost of answered requests in US dollars, at the policy's prices.",
                                           {"model"})),
      baseline_cost_usd_total(registry_.add_counter(
          "sluice_baseline_cost_usd_total",
          "What the same requests would have cost on the route's baseline model, in US dollars.", {"model"})),
      request_duration_seconds(registry_.add_histogram("sluice_request_duration_seconds",
                                                       "End-to-end request duration in seconds.", {"model"},
                                                       request_buckets_s)),
      time_to_first_token_seconds(registry_.add_histogram("sluice_time_to_first_token_seconds",
                                                          "Time from request to the first output token, in seconds.",
                                                          {"model"}, ttft_buckets_s)),
      time_per_output_token_seconds(registry_.add_histogram(
          "sluice_time_per_output_token_seconds",
          "Mean time between output tokens after the first, per request, in seconds.", {"model"},
          per_token_buckets_s)),
      gateway_overhead_seconds(registry_.add_histogram(
          "sluice_gateway_overhead_seconds",
          "Request duration minus time spent waiting on the upstream or engine, in seconds.", {"model"},
          overhead_buckets_s)),
      upstream_errors_total(registry_.add_counter("sluice_upstream_errors_total",
                                                  "Failed upstream attempts, by model and reason.",
                                                  {"model", "reason"})),
      route_requests_total(registry_.add_counter(
          "sluice_route_requests_total",
          "Routed requests, by route, the tier that served them (none: the route failed) and whether they escalated.",
          {"route", "tier", "escalated"})),
      route_escalations_total(registry_.add_counter("sluice_route_escalations_total",
                                                    "Routed requests that left their first tier, by the first reason.",
                                                    {"route", "reason"})),
      route_cost_usd_total(registry_.add_counter(
          "sluice_route_cost_usd_total", "What routed requests cost in US dollars, every attempt included.",
          {"route"})),
      route_baseline_cost_usd_total(registry_.add_counter(
          "sluice_route_baseline_cost_usd_total",
          "What the served routed requests would have cost on the route's baseline model, in US dollars.", {"route"})),
      route_acceptance_score(registry_.add_histogram(
          "sluice_route_acceptance_score", "The acceptance score of answers judged by a route (0..1).", {"route"},
          score_buckets)),
      route_decision_seconds(registry_.add_histogram(
          "sluice_route_decision_seconds",
          "Time a route spent deciding (pre-score, acceptance features, decision), generation excluded, in seconds.",
          {"route"}, decision_buckets_s)),
      route_time_to_first_token_seconds(registry_.add_histogram(
          "sluice_route_time_to_first_token_seconds",
          "Time to the first output token of routed requests, by whether they escalated, in seconds. Judged tiers "
          "answer in full before their first token is sent.",
          {"route", "escalated"}, ttft_buckets_s)),
      decision_log_lines_total(registry_.add_counter(
          "sluice_decision_log_lines_total", "Decision log lines, by result: queued for the writer, or dropped (the disk fell behind).",
          {"result"})),
      feedback_total(registry_.add_counter(
          "sluice_feedback_total", "POST /v1/feedback calls, by result.", {"result"})),
      route_shadow_total(registry_.add_counter(
          "sluice_route_shadow_total",
          "Requests a route's shadow tier also answered, by whether it was confident enough to serve and whether "
          "its answer agreed with the one served.",
          {"route", "would_answer", "agrees"})),
      route_shadow_would_save_usd_total(registry_.add_counter(
          "sluice_route_shadow_would_save_usd_total",
          "What the route would have saved had its shadow tier served the requests it was confident about, in US "
          "dollars (the served cost minus the shadow's).",
          {"route"})),
      key_requests_total(registry_.add_counter(
          "sluice_key_requests_total",
          "Requests by the gateway key that made them (its policy name), by outcome: admitted, refused by a budget "
          "or rate limit, forbidden (a route or model the key may not use), or unavailable (the limits store "
          "could not be reached).",
          {"key", "outcome"})),
      key_spend_usd_total(registry_.add_counter(
          "sluice_key_spend_usd_total", "What the requests of each gateway key cost, in US dollars (as settled).",
          {"key"})),
      auth_failures_total(registry_.add_counter(
          "sluice_auth_failures_total",
          "Requests refused with 401, by reason: missing, invalid, in_url (a key in the query string), "
          "conflicting (two different keys).",
          {"reason"})),
      limits_store_errors_total(registry_.add_counter(
          "sluice_limits_store_errors_total",
          "Reservations the limits store could not make (Redis unreachable, timed out, or an error), by store.",
          {"store"})),
      upstream_retries_total(registry_.add_counter(
          "sluice_upstream_retries_total",
          "Attempts retried on the same model after a connect failure, reset, 5xx or 429 (before any byte was "
          "streamed).",
          {"model"})),
      fallbacks_total(registry_.add_counter(
          "sluice_fallbacks_total", "Requests that moved from a failing model to one of its fallbacks.",
          {"model", "to"})),
      circuit_open(registry_.add_gauge(
          "sluice_circuit_open", "1 while a model's circuit breaker is open (requests fail fast or fall back).",
          {"model"})),
      engine_prompt_tokens_total(registry_.add_counter(
          "sluice_engine_prompt_tokens_total",
          "Prompt tokens of local models by source: cached (read from the prefix cache) or computed.",
          {"model", "source"})),
      engine_kv_cache_blocks(registry_.add_gauge(
          "sluice_engine_kv_cache_blocks",
          "KV cache blocks of a local model: total (the pool), used (held by requests or the prefix cache), cached "
          "(held by the prefix cache).",
          {"model", "state"})),
      engine_kv_cache_evicted_blocks_total(registry_.add_counter(
          "sluice_engine_kv_cache_evicted_blocks_total",
          "Prefix-cache blocks of a local model evicted (least recently used first) to make room for requests.",
          {"model"})),
      policy_reloads_total(registry_.add_counter(
          "sluice_policy_reloads_total",
          "Policy reloads (SIGHUP, POST /admin/reload), by result: ok, invalid (the file has errors), refused "
          "(valid, but it changes a loaded local model or cannot be built); the previous policy stays unless ok.",
          {"result"})),
      build_info(registry_.add_gauge("sluice_build_info", "Always 1; the version label says which build runs.",
                                     {"version"})),
      connections_open(registry_.add_gauge("sluice_connections_open", "Client connections currently open.")
                           .with({})),
      requests_in_flight(registry_.add_gauge("sluice_requests_in_flight", "Requests currently being served.")
                             .with({})),
      model_names_(sorted_names(model_names)), route_names_(sorted_names(route_names)) {
  build_info.with({version}).set(1);
  tables_.push_back(make_table(*model_names_));
  series_.store(tables_.back().get(), std::memory_order_release);
}

std::unique_ptr<gateway_metrics::series_table> gateway_metrics::make_table(const std::vector<std::string>& sorted) {
  auto t = std::make_unique<series_table>();
  for (const std::string& name : sorted) {
    if (!t->sorted.empty() && t->sorted.back()->name == name) continue;
    t->sorted.push_back(std::make_unique<model_series>());
    t->sorted.back()->name = name;
  }
  t->unknown = std::make_unique<model_series>();
  t->unknown->name = std::string(unknown_model);
  return t;
}

gateway_metrics::model_series& gateway_metrics::series_for(std::string_view model) const {
  const series_table* t = series_.load(std::memory_order_acquire);
  auto it = std::lower_bound(t->sorted.begin(), t->sorted.end(), model,
                             [](const std::unique_ptr<model_series>& s, std::string_view m) { return s->name < m; });
  return it != t->sorted.end() && (*it)->name == model ? **it : *t->unknown;
}

void gateway_metrics::set_model_names(std::span<const std::string> model_names) {
  auto names = sorted_names(model_names);
  auto table = make_table(*names);
  std::lock_guard lock(names_mutex_);
  model_names_ = std::move(names);
  series_.store(table.get(), std::memory_order_release);
  tables_.push_back(std::move(table));
}

void gateway_metrics::set_route_names(std::span<const std::string> route_names) {
  auto names = sorted_names(route_names);
  std::lock_guard lock(names_mutex_);
  route_names_ = std::move(names);
}

std::string gateway_metrics::route_label(std::string_view name) const {
  std::shared_ptr<const std::vector<std::string>> names;
  {
    std::lock_guard lock(names_mutex_);
    names = route_names_;
  }
  return std::binary_search(names->begin(), names->end(), name, std::less<>{}) ? std::string(name)
                                                                                : std::string(unknown_model);
}

std::string gateway_metrics::model_label(std::string_view name) const {
  std::shared_ptr<const std::vector<std::string>> names;
  {
    std::lock_guard lock(names_mutex_);
    names = model_names_;
  }
  return std::binary_search(names->begin(), names->end(), name, std::less<>{}) ? std::string(name)
                                                                                : std::string(unknown_model);
}

namespace {

// The child behind `slot`, made (family::with) on first use. Two threads racing get the same child.
template <class Metric>
Metric& resolved(std::atomic<Metric*>& slot, family<Metric>& fam, std::initializer_list<std::string_view> labels) {
  Metric* m = slot.load(std::memory_order_acquire);
  if (!m) {
    m = &fam.with(labels);
    slot.store(m, std::memory_order_release);
  }
  return *m;
}

}  // namespace

void gateway_metrics::record_request(const request_record& r) {
  model_series& s = series_for(r.model);
  const std::string_view model = s.name;
  const size_t slot = r.http_status >= 100 && r.http_status <= 599 ? static_cast<size_t>(r.http_status - 99) : 0;
  counter* requests = s.requests_by_status[slot].load(std::memory_order_acquire);
  if (!requests) {
    requests = &requests_total.with({model, status_label(r.http_status)});
    s.requests_by_status[slot].store(requests, std::memory_order_release);
  }
  requests->inc();
  resolved(s.duration, request_duration_seconds, {model}).observe(r.duration_s);
  resolved(s.overhead, gateway_overhead_seconds, {model}).observe(r.overhead_s);
  if (r.ttft_s) {
    resolved(s.ttft, time_to_first_token_seconds, {model}).observe(*r.ttft_s);
    if (r.tokens_output >= 2 && r.duration_s > *r.ttft_s) {
      resolved(s.per_token, time_per_output_token_seconds, {model})
          .observe((r.duration_s - *r.ttft_s) / static_cast<double>(r.tokens_output - 1));
    }
  }
  if (!r.count_usage) return;

  const int64_t uncached = std::max<int64_t>(0, r.tokens_input - r.tokens_cache_read - r.tokens_cache_write);
  static constexpr std::string_view types[4] = {"input", "cached_input", "cache_write", "output"};
  const int64_t counts[4] = {uncached, r.tokens_cache_read, r.tokens_cache_write, r.tokens_output};
  for (size_t i = 0; i < 4; ++i) {
    if (counts[i] > 0) resolved(s.tokens[i], tokens_total, {model, types[i]}).inc(static_cast<double>(counts[i]));
  }
  resolved(s.cost, cost_usd_total, {model}).inc(r.cost_usd);
  if (r.baseline_cost_usd) resolved(s.baseline_cost, baseline_cost_usd_total, {model}).inc(*r.baseline_cost_usd);
}

void gateway_metrics::record_route(const router::route_decision& d, std::optional<double> ttft_s) {
  for (const router::attempt_record& a : d.attempts) {
    const std::string model = model_label(a.tier);
    const router::usage& u = a.usage_;
    const int64_t uncached = std::max<int64_t>(0, u.tokens_input - u.tokens_cache_read - u.tokens_cache_write);
    auto add_tokens = [&](std::string_view type, int64_t n) {
      if (n > 0) tokens_total.with({model, type}).inc(static_cast<double>(n));
    };
    add_tokens("input", uncached);
    add_tokens("cached_input", u.tokens_cache_read);
    add_tokens("cache_write", u.tokens_cache_write);
    add_tokens("output", u.tokens_output);
    cost_usd_total.with({model}).inc(a.cost_usd);
  }
  const std::string route = route_label(d.route);
  const char* escalated = d.escalated ? "true" : "false";
  route_requests_total.with({route, d.tier.empty() ? std::string("none") : model_label(d.tier), escalated}).inc();
  if (d.escalated) route_escalations_total.with({route, router::to_string(d.reason)}).inc();
  route_cost_usd_total.with({route}).inc(d.cost_usd);
  if (!d.tier.empty()) {
    route_baseline_cost_usd_total.with({route}).inc(d.baseline_cost_usd);
    baseline_cost_usd_total.with({model_label(d.tier)}).inc(d.baseline_cost_usd);
  }
  if (d.acceptance_score) route_acceptance_score.with({route}).observe(*d.acceptance_score);
  route_decision_seconds.with({route}).observe(d.routing_seconds);
  if (d.shadow) {
    route_shadow_total.with({route, d.shadow->would_answer ? "true" : "false", d.shadow->agrees ? "true" : "false"}).inc();
    // A counter only grows: a shadow dearer than the route saves nothing (0), it does not count as a loss.
    if (d.shadow->would_answer) {
      route_shadow_would_save_usd_total.with({route}).inc(std::max(0.0, d.cost_usd - d.shadow->cost_usd));
    }
  }
  if (ttft_s) route_time_to_first_token_seconds.with({route, escalated}).observe(*ttft_s);
}

void gateway_metrics::record_upstream_error(std::string_view model, upstream_error_reason reason) {
  upstream_errors_total.with({model_label(model), to_string(reason)}).inc();
}

}  // namespace sluice::gateway
