// How a routed request was served: the record the cascade builds while it tries a route's tiers (which tier
// served, why it escalated, what each attempt cost, what the route's baseline would have cost, the signals
// the acceptance decision read). The gateway turns it into headers, metrics and a decision-log line.
// Also the timer interface the cascade's deadlines run on (the gateway implements it with Asio; tests with a
// manual clock). What must not go in here: the executor itself (router/src/cascade/), wire formats, sockets.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "sluice/router/acceptance.h"
#include "sluice/router/chat.h"

namespace sluice::router {

// Why a request left a tier for the next one. A fixed set: it is a metric label.
enum class escalation_reason {
  none,
  pre_score,         // predicted too hard before generating: the first tier was skipped
  low_confidence,    // the answer failed the acceptance model or rule
  validator,         // the answer failed a validator (labels, regex, json, truncated)
  local_error,       // a local tier failed
  local_timeout,     // a local tier did not answer within the tier timeout
  upstream_error,    // a remote tier that is not the last failed
  upstream_timeout,  // ... or did not answer in time
};
const char* to_string(escalation_reason r);

enum class attempt_outcome {
  served,     // its answer went to the client
  rejected,   // answered, but judged not good enough
  failed,     // the tier returned an error
  timed_out,  // cut by the tier timeout
  cancelled,  // the client left, or the route's deadline passed
};
const char* to_string(attempt_outcome o);

struct attempt_record {
  std::string tier;  // the policy model name
  std::string kind;  // its kind: openai, anthropic, local, task (the flywheel never learns from a task tier's answers)
  attempt_outcome outcome = attempt_outcome::served;
  usage usage_;      // what the tier reported (zero when it failed before reporting)
  double cost_usd = 0.0;
  double seconds = 0.0;  // from its start to its last callback (or to the timeout)
  std::optional<double> score;  // the judged answer's acceptance score or confidence
};

// A shadow tier's answer to a request it did not serve (route `shadow`): measured before promotion.
struct shadow_record {
  std::string tier;
  std::string answer;
  double confidence = 0.0;
  bool would_answer = false;  // confident enough that it would have served the request
  bool agrees = false;        // its answer equals the one served (trimmed, case-folded)
  double cost_usd = 0.0;      // what it cost (its per-request price)
};

struct route_decision {
  std::string route;
  std::string tier;  // the model whose answer was served ("" when none was)
  bool escalated = false;
  escalation_reason reason = escalation_reason::none;  // why the route first escalated
  std::string validator;                  // the failed check when reason == validator: labels, regex, json, truncated
  std::optional<double> pre_score;        // classifier score of the request, when the route has a classifier
  std::optional<double> acceptance_score; // the first tier's answer, when a model or rule scored it
  std::optional<double> threshold;        // what acceptance_score was compared with
  bool served_after_failure = false;      // the last tier failed and the route served the earlier answer
  std::vector<attempt_record> attempts;
  double cost_usd = 0.0;           // every attempt, rejected ones included
  double baseline_cost_usd = 0.0;  // the baseline model at its prices, for the prompt and the served answer
  double routing_seconds = 0.0;    // pre-score + acceptance features + decision (generation excluded)
  bool log_text = false;           // the route allows the decision log to keep text
  std::string query;               // the request's text (last user message or prompt), only when log_text
  std::optional<answer_signals> signals;  // the judged local answer's signals
  std::optional<shadow_record> shadow;
};

// Runs a callback after a delay unless cancelled first. Callbacks run on some thread of the implementation.
class timer_handle {
 public:
  virtual ~timer_handle() = default;
  virtual void cancel() = 0;  // idempotent; the callback may already be running
};
class timer_service {
 public:
  virtual ~timer_service() = default;
  virtual std::shared_ptr<timer_handle> after(std::chrono::milliseconds delay, std::function<void()> fn) = 0;
};

}  // namespace sluice::router
