// Names of the cascade's enums, as metrics, headers and the decision log spell them.
#include "sluice/router/cascade.h"

namespace sluice::router {

const char* to_string(escalation_reason r) {
  switch (r) {
    case escalation_reason::none: return "none";
    case escalation_reason::pre_score: return "pre_score";
    case escalation_reason::low_confidence: return "low_confidence";
    case escalation_reason::validator: return "validator";
    case escalation_reason::local_error: return "local_error";
    case escalation_reason::local_timeout: return "local_timeout";
    case escalation_reason::upstream_error: return "upstream_error";
    case escalation_reason::upstream_timeout: return "upstream_timeout";
  }
  return "none";
}

const char* to_string(attempt_outcome o) {
  switch (o) {
    case attempt_outcome::served: return "served";
    case attempt_outcome::rejected: return "rejected";
    case attempt_outcome::failed: return "failed";
    case attempt_outcome::timed_out: return "timed_out";
    case attempt_outcome::cancelled: return "cancelled";
  }
  return "served";
}

}  // namespace sluice::router
