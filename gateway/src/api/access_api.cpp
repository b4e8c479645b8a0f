// See access_api.h.
#include "api/access_api.h"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>

#include "api/api_handlers.h"
#include "api/openai_codec.h"
#include "http/http_session.h"
#include "ops/log.h"
#include "server_state.h"

namespace sluice::gateway {

namespace asio = boost::asio;

namespace {

constexpr std::string_view json_type = "application/json";

// "2h5m3s", "1.5s", "20ms": how OpenAI writes x-ratelimit-reset-*.
std::string duration_text(int64_t ms) {
  if (ms < 1000) return std::to_string(std::max<int64_t>(0, ms)) + "ms";
  std::string out;
  int64_t s = ms / 1000;
  if (s >= 3600) out += std::to_string(s / 3600) + "h";
  if (s >= 60) out += std::to_string(s / 60 % 60) + "m";
  const int64_t rest_ms = ms % 60000;
  char buf[32];
  if (rest_ms % 1000 == 0) std::snprintf(buf, sizeof buf, "%llds", static_cast<long long>(rest_ms / 1000));
  else std::snprintf(buf, sizeof buf, "%.3gs", static_cast<double>(rest_ms) / 1000.0);
  out += buf;
  return out;
}

std::string usd_text(nano_usd n) {
  char buf[48];
  std::snprintf(buf, sizeof buf, "%.6f", static_cast<double>(n) / static_cast<double>(policies::nanos_per_usd));
  return buf;
}

const char* period_text(policies::budget_period p) {
  switch (p) {
    case policies::budget_period::day: return "today (UTC)";
    case policies::budget_period::month: return "this month (UTC)";
    case policies::budget_period::total: return "in total";
  }
  return "";
}

// One line on stderr at most once a second: a store that is down would otherwise log every request.
void log_store_error(const char* store, const std::string& error, bool fail_open) {
  static std::atomic<int64_t> last_s{0};
  const int64_t now_s = std::chrono::duration_cast<std::chrono::seconds>(
                            std::chrono::steady_clock::now().time_since_epoch()).count();
  int64_t prev = last_s.load(std::memory_order_relaxed);
  if (prev == now_s || !last_s.compare_exchange_strong(prev, now_s)) return;
  log_line(policies::log_level::error, "limits store (%s) unavailable: %s; %s", store, error.c_str(),
           fail_open ? "serving without counting (on_error: fail_open)" : "refusing with 503 (on_error: fail_closed)");
}

void count_key(http_session& s, const policies::key_config& key, std::string_view outcome) {
  if (auto* m = s.state().metrics.get()) m->key_requests_total.with({key.name, outcome}).inc();
}

task<bool> send_refusal(http_session& s, const router::error& e, const header_block& headers,
                        const policies::key_config* key = nullptr, std::string_view model = {}) {
  const int status = router::info(e.code).http_status;
  if (auto* m = s.state().metrics.get()) {
    request_record r;
    r.http_status = status;
    m->record_request(r);
  }
  log_refused(s, status, e, key ? std::string_view(key->name) : std::string_view(), model);
  co_return co_await s.send(status, wire_error_body(s, e), json_type, headers);
}

task<void> settle_owned(std::shared_ptr<access_control> access, reservation r, nano_usd cost, int64_t tokens) {
  co_await access->store().settle(r, cost, tokens);
}

}  // namespace

task<bool> authenticate(http_session& s, const policies::key_config*& key, bool& again) {
  key = nullptr;
  auto* access = s.config().access.get();
  if (!access) co_return true;
  const auth_failure f = access->authenticate(s.request(), key);
  if (f == auth_failure::none) co_return true;
  if (auto* m = s.state().metrics.get()) m->auth_failures_total.with({to_string(f)}).inc();
  router::error e{router::errc::unauthenticated, ""};
  switch (f) {
    case auth_failure::missing:
      e.message = "You didn't provide an API key. Send it as 'Authorization: Bearer <key>' (or 'x-api-key: <key>').";
      break;
    case auth_failure::in_url:
      e.message = "API keys are not accepted in the URL (URLs end up in logs); send 'Authorization: Bearer <key>'.";
      break;
    case auth_failure::conflicting:
      e.message = "The request carries more than one API key; send exactly one.";
      break;
    default:
      e.message = "Incorrect API key provided.";
      break;
  }
  header_block h;
  h.add("WWW-Authenticate", "Bearer");
  again = co_await send_refusal(s, e, h);
  co_return false;
}

task<bool> authenticate_admin(http_session& s, bool& again) {
  if (!s.config().access || !s.config().policy->has_admin_keys()) co_return true;
  const policies::key_config* key = nullptr;
  if (!co_await authenticate(s, key, again)) co_return false;
  if (key->admin) co_return true;
  router::error e{router::errc::forbidden, "This endpoint needs an admin key (admin: true in the policy)."};
  const header_block none;
  again = co_await send_refusal(s, e, none);
  co_return false;
}

task<std::unique_ptr<key_grant>> admit(http_session& s, const policies::key_config& key,
                                       const router::chat_request& req, size_t body_bytes, bool& again) {
  auto& state = s.state();
  if (!access_control::allows(key, req.model)) {
    count_key(s, key, "forbidden");
    router::error e{router::errc::forbidden,
                    "The key '" + key.name + "' may not use the model '" + req.model + "'.", "model"};
    const header_block none;
    again = co_await send_refusal(s, e, none, &key, req.model);
    co_return nullptr;
  }
  auto g = std::make_unique<key_grant>();
  const serving_config& cfg = s.config();
  g->access = cfg.access;
  g->key = &key;
  g->reserved = cfg.access->worst_case(*cfg.policy, key, req, body_bytes);
  g->said = co_await cfg.access->store().reserve(g->reserved);
  const admission& a = g->said;
  if (a.outcome == admission_outcome::admitted) {
    count_key(s, key, "admitted");
    co_return g;
  }
  count_key(s, key, to_string(a.outcome));
  if (a.outcome == admission_outcome::unavailable) {
    if (auto* m = state.metrics.get()) m->limits_store_errors_total.with({cfg.access->store().name()}).inc();
    log_store_error(cfg.access->store().name(), a.error, cfg.access->fail_open());
    if (cfg.access->fail_open()) {
      g->counted = false;
      co_return g;
    }
    router::error e{router::errc::overloaded,
                    "Budgets and rate limits cannot be checked right now (the limits store is unavailable); retry "
                    "shortly."};
    header_block h;
    h.add("Retry-After", "1");
    again = co_await send_refusal(s, e, h, &key, req.model);
    co_return nullptr;
  }
  router::error e{router::errc::rate_limited, ""};
  const auto& r = g->reserved;
  switch (a.outcome) {
    case admission_outcome::key_budget:
      e.code = router::errc::budget_exceeded;
      e.message = "The key '" + key.name + "' has reached its budget of $" + usd_text(key.budget.limit) + " " +
                  period_text(key.budget.per) + " (this request may cost up to $" + usd_text(r.cost) + ").";
      break;
    case admission_outcome::team_budget:
      e.code = router::errc::budget_exceeded;
      e.message = "The team '" + r.team->name + "' has reached its budget of $" + usd_text(r.team->budget.limit) +
                  " " + period_text(r.team->budget.per) + " (this request may cost up to $" + usd_text(r.cost) + ").";
      break;
    case admission_outcome::requests_rate:
      e.message = "Rate limit reached for key '" + key.name + "' on requests per min (RPM): Limit " +
                  std::to_string(key.requests_per_minute) + ". Please try again in " + duration_text(a.retry_after_ms) + ".";
      break;
    case admission_outcome::tokens_rate:
      e.message = "Rate limit reached for key '" + key.name + "' on tokens per min (TPM): Limit " +
                  std::to_string(key.tokens_per_minute) + ", Requested " + std::to_string(r.tokens) +
                  ". Please try again in " + duration_text(a.retry_after_ms) + ".";
      break;
    default:  // tokens_too_large
      e.message = "Request too large for key '" + key.name + "' on tokens per min (TPM): Limit " +
                  std::to_string(key.tokens_per_minute) + ", Requested " + std::to_string(r.tokens) +
                  " (prompt estimate plus max_tokens). Lower max_tokens or the prompt.";
      break;
  }
  header_block h;
  if (a.retry_after_ms > 0) {
    h.add("Retry-After", std::to_string((a.retry_after_ms + 999) / 1000));
    h.add("retry-after-ms", std::to_string(a.retry_after_ms));
  }
  add_limit_headers(h, *g);
  again = co_await send_refusal(s, e, h, &key, req.model);
  co_return nullptr;
}

void add_limit_headers(header_block& h, const key_grant& g) {
  if (!g.counted) return;
  const auto& k = *g.key;
  const auto& a = g.said;
  if (k.requests_per_minute > 0) {
    h.add("x-ratelimit-limit-requests", std::to_string(k.requests_per_minute));
    h.add("x-ratelimit-remaining-requests", std::to_string(a.requests_remaining));
    h.add("x-ratelimit-reset-requests", duration_text(a.requests_reset_ms));
  }
  if (k.tokens_per_minute > 0) {
    h.add("x-ratelimit-limit-tokens", std::to_string(k.tokens_per_minute));
    h.add("x-ratelimit-remaining-tokens", std::to_string(a.tokens_remaining));
    h.add("x-ratelimit-reset-tokens", duration_text(a.tokens_reset_ms));
  }
  if (k.budget.set()) h.add("x-sluice-budget-remaining-usd", usd_text(a.budget_remaining));
}

void settle(http_session& s, key_grant& g, const router::completion* c, bool release) {
  if (g.settled || !g.counted) return;
  g.settled = true;
  nano_usd cost = 0;
  int64_t tokens = 0;
  if (c) {
    cost = static_cast<nano_usd>(std::llround(c->cost_usd * static_cast<double>(policies::nanos_per_usd)));
    tokens = c->usage_.tokens_input + c->usage_.tokens_output;
    if (auto* m = s.state().metrics.get()) m->key_spend_usd_total.with({g.key->name}).inc(c->cost_usd);
  } else if (!release) {
    cost = g.reserved.cost;
    tokens = g.reserved.tokens;
    if (auto* m = s.state().metrics.get()) {
      m->key_spend_usd_total.with({g.key->name}).inc(static_cast<double>(cost) / static_cast<double>(policies::nanos_per_usd));
    }
  }
  asio::co_spawn(s.executor(), settle_owned(g.access, g.reserved, cost, tokens), asio::detached);
}

}  // namespace sluice::gateway
