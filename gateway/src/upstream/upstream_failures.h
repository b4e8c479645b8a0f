// How an upstream failure is told: the metric reason of a failed connection, head or body (see
// upstream_error_reason in ops/gateway_metrics.h), the client-facing error for an HTTP status, and the upstream
// header values relayed only when well-formed. Split from upstream_openai.cpp, which runs the calls.
// What must not go in here: I/O.
#pragma once

#include <boost/beast/core/error.hpp>
#include <string>
#include <string_view>

#include "ops/gateway_metrics.h"
#include "sluice/router/error.h"

namespace sluice::gateway {

// What a failed connection attempt (resolve, connect, TLS handshake) counts as.
upstream_error_reason connect_failure_reason(const boost::beast::error_code& ec);
// What a failure before the response head counts as (`got_some`: bytes of an answer had arrived).
upstream_error_reason head_failure_reason(const boost::beast::error_code& ec, bool got_some);
// ... and after the head.
upstream_error_reason body_failure_reason(const boost::beast::error_code& ec);
upstream_error_reason status_reason(int status);

// An upstream header value relayed to our client only if it has the expected shape (never raw bytes from
// upstream in our head): Retry-After is delta-seconds or an HTTP-date, retry-after-ms a number.
std::string checked_header(std::string_view v, std::string_view allowed, size_t max_len);

// The error a client gets for an upstream's non-2xx answer (never an auth error's body: it can echo the key).
router::error status_error(int status, std::string_view body, const std::string& model);

}  // namespace sluice::gateway
