// The access log: one JSON line per request answered (served, failed or refused), written by a decision_log
// writer (its own thread, rotation by size, or standard error with path "-"). Fields are documented in
// docs/operations.md. What must not go in here: prompts, answers, keys (only a key's policy name).
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "sluice/policies/policy.h"

namespace sluice::gateway {

struct access_entry {
  std::string_view request_id;
  std::string_view method;
  std::string_view path;
  int status = 0;
  std::string_view key;       // the gateway key's name; "" when the gateway is open or none was accepted
  std::string_view model;     // what the request named ("" before it was parsed)
  std::string_view route;     // the route that served it, if any
  std::string_view tier;      // the model that answered (or last tried)
  bool stream = false;
  bool escalated = false;
  std::string_view escalation_reason;
  std::string_view error_code;     // "" when it succeeded
  std::string_view error_message;  // the message the client got (safe to log: never a key)
  int64_t tokens_input = 0;
  int64_t tokens_output = 0;
  double cost_usd = 0.0;
  double latency_s = 0.0;
  std::optional<double> ttft_s;
  std::string_view trace_id;  // from the client's traceparent
};

// error: a 5xx, or a 200 whose stream was cut; warn: a 4xx (refusals, client errors, a client that left); info.
policies::log_level access_level(const access_entry& e);
std::string access_log_line(const access_entry& e);

class decision_log;
// Writes e's line when its level reaches `keep` (the policy's access_log.level).
void write_access_log(decision_log& log, policies::log_level keep, const access_entry& e);

}  // namespace sluice::gateway
