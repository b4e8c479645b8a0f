// The error table: one row per errc, tested in test/router/error_test.cpp.
#include "sluice/router/error.h"

#include <stdexcept>

namespace sluice::router {

const error_info& info(errc e) {
  // status, OpenAI type, Anthropic type, code, retryable
  static const error_info table[] = {
      /* bad_request */ {400, "invalid_request_error", "invalid_request_error", "invalid_request", false},
      /* unknown_model */ {404, "invalid_request_error", "not_found_error", "model_not_found", false},
      /* payload_too_large */ {413, "invalid_request_error", "request_too_large", "payload_too_large", false},
      /* unauthenticated */ {401, "invalid_request_error", "authentication_error", "invalid_api_key", false},
      /* rate_limited */ {429, "requests", "rate_limit_error", "rate_limit_exceeded", false},
      /* budget_exceeded */ {429, "insufficient_quota", "rate_limit_error", "insufficient_quota", false},
      /* forbidden */ {403, "invalid_request_error", "permission_error", "model_not_allowed", false},
      /* upstream_error */ {502, "api_error", "api_error", "upstream_error", true},
      /* upstream_timeout */ {504, "api_error", "api_error", "upstream_timeout", true},
      /* upstream_auth */ {502, "api_error", "api_error", "upstream_auth_failed", true},
      /* upstream_rejected */ {400, "invalid_request_error", "invalid_request_error", "upstream_rejected", false},
      /* upstream_rate_limited */ {429, "api_error", "rate_limit_error", "upstream_rate_limited", true},
      /* overloaded */ {503, "api_error", "overloaded_error", "overloaded", true},
      /* cancelled */ {499, "api_error", "api_error", "cancelled", false},
      /* shutting_down */ {503, "api_error", "overloaded_error", "server_shutting_down", true},
      /* not_found */ {404, "invalid_request_error", "not_found_error", "not_found", false},
      /* conflict */ {409, "invalid_request_error", "invalid_request_error", "conflict", false},
      /* not_implemented */ {501, "invalid_request_error", "invalid_request_error", "not_implemented", true},
      /* internal */ {500, "api_error", "api_error", "internal_error", false},
  };
  static_assert(sizeof(table) / sizeof(table[0]) == static_cast<size_t>(errc::internal) + 1);
  return table[static_cast<size_t>(e)];
}

void throw_exception_from_error(const error& e, const boost::source_location&) {
  throw std::runtime_error(e.message);
}

}  // namespace sluice::router
