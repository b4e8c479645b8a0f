// The gateway's diagnostic lines on standard error ("sluice: ..."), filtered by the policy's server.log_level
// (or --log-level). One write per line, so lines from several threads never interleave. What must not go in here:
// the access and decision logs (JSON lines, their own writers), secrets (keys never reach a log line).
#pragma once

#include "sluice/policies/policy.h"

namespace sluice::gateway {

void set_log_level(policies::log_level level);  // any thread; takes effect for the next line
bool log_enabled(policies::log_level level);

// "sluice: MESSAGE\n", with "warning: " or "error: " before warn and error messages.
void log_line(policies::log_level level, const char* format, ...) __attribute__((format(printf, 2, 3)));

}  // namespace sluice::gateway
