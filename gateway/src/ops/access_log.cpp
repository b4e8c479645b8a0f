// See access_log.h.
#include "ops/access_log.h"

#include <charconv>
#include <cmath>

#include "api/json_util.h"
#include "ops/decision_log.h"

namespace sluice::gateway {

namespace {

void field(std::string& out, std::string_view name, std::string_view value) {
  out += ",\"";
  out += name;
  out += "\":";
  append_json_string(out, value);
}

void number(std::string& out, std::string_view name, double v, int decimals) {
  char buf[64];
  const auto [end, ec] = std::to_chars(buf, buf + sizeof buf, std::isfinite(v) ? v : 0.0, std::chars_format::fixed, decimals);
  out += ",\"";
  out += name;
  out += "\":";
  out.append(buf, ec == std::errc() ? static_cast<size_t>(end - buf) : 0);
}

}  // namespace

policies::log_level access_level(const access_entry& e) {
  if (e.status >= 500 || (e.status < 400 && !e.error_code.empty())) return policies::log_level::error;
  if (e.status >= 400) return policies::log_level::warn;
  return policies::log_level::info;
}

void write_access_log(decision_log& log, policies::log_level keep, const access_entry& e) {
  if (access_level(e) >= keep) log.write(access_log_line(e));
}

std::string access_log_line(const access_entry& e) {
  std::string out = "{\"time\":";
  append_json_string(out, utc_now_iso8601());
  field(out, "level", policies::to_string(access_level(e)));
  field(out, "request_id", e.request_id);
  field(out, "method", e.method);
  field(out, "path", e.path);
  out += ",\"status\":" + std::to_string(e.status);
  if (!e.key.empty()) field(out, "key", e.key);
  if (!e.model.empty()) field(out, "model", e.model);
  if (!e.route.empty()) field(out, "route", e.route);
  if (!e.tier.empty()) field(out, "tier", e.tier);
  out += e.stream ? ",\"stream\":true" : ",\"stream\":false";
  if (!e.route.empty()) out += e.escalated ? ",\"escalated\":true" : ",\"escalated\":false";
  if (!e.escalation_reason.empty()) field(out, "escalation_reason", e.escalation_reason);
  if (!e.error_code.empty()) {
    field(out, "error", e.error_code);
    field(out, "error_message", e.error_message);
  }
  out += ",\"tokens_input\":" + std::to_string(e.tokens_input);
  out += ",\"tokens_output\":" + std::to_string(e.tokens_output);
  number(out, "cost_usd", e.cost_usd, 8);
  number(out, "latency_ms", e.latency_s * 1000.0, 3);
  if (e.ttft_s) number(out, "ttft_ms", *e.ttft_s * 1000.0, 3);
  if (!e.trace_id.empty()) field(out, "trace_id", e.trace_id);
  out += '}';
  return out;
}

}  // namespace sluice::gateway
