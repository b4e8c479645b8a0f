// One error tree for everything a request can fail with. Each code knows its HTTP status, its OpenAI and
// Anthropic error types and whether retrying (or falling back to another tier) can help. The gateway maps
// these to wire errors; nothing else decides a status code. What must not go in here: HTTP or Asio types.
#pragma once

#include <string>
#include <string_view>

#include <boost/system/result.hpp>

namespace sluice::router {

enum class errc {
  bad_request,          // malformed JSON, wrong types, missing fields: never reaches a backend
  unknown_model,        // the request names a model the policy does not have
  payload_too_large,    // body over server.max_body_bytes
  unauthenticated,      // missing or wrong API key (ours, not the upstream's)
  rate_limited,         // our own limits
  budget_exceeded,      // caller's budget would be exceeded
  forbidden,            // the caller's key may not use this route or model (or this endpoint)
  upstream_error,       // upstream 5xx, reset, malformed answer, refused connection
  upstream_timeout,     // no (complete) answer within the deadline
  upstream_auth,        // the upstream rejected our credentials: never relayed verbatim (may echo the key)
  upstream_rejected,    // upstream 4xx other than auth: the request itself was bad for that model
  upstream_rate_limited,// upstream 429
  overloaded,           // local engine queue full, shutting down
  cancelled,            // the client went away
  shutting_down,        // the gateway is stopping and cut the request at the end of its drain grace
  not_found,            // a resource the request names (e.g. the request id of feedback) is not known
  conflict,             // the request repeats something that may happen once (e.g. feedback for one request)
  not_implemented,      // a feature the chosen tier does not support
  internal,             // a bug: logged loudly
};

struct error_info {
  int http_status;
  std::string_view openai_type;     // "invalid_request_error", "api_error", ...
  std::string_view anthropic_type;  // "invalid_request_error", "api_error", "overloaded_error", ...
  std::string_view code;            // stable machine-readable code for the OpenAI "code" field
  bool retryable;                   // may another attempt or tier succeed?
};

const error_info& info(errc e);

struct error {
  errc code = errc::internal;
  std::string message;  // safe to show the client: never contains keys or upstream auth bodies
  std::string param;    // the offending request field, when there is one
  // How long the upstream asked callers to wait before retrying, as it said it (upstream_rate_limited only; empty
  // when it said nothing). Plain strings the router never interprets; the gateway relays them to the client as
  // Retry-After (delta-seconds or an HTTP-date) and retry-after-ms.
  std::string retry_after;
  std::string retry_after_ms;
};

template <class T>
using result = boost::system::result<T, error>;

// Lets boost::system::result<T, error>::value() throw when misused; callers check has_value() instead.
[[noreturn]] void throw_exception_from_error(const error& e, const boost::source_location& loc);

}  // namespace sluice::router
