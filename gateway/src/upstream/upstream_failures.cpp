// See upstream_failures.h.
#include "upstream/upstream_failures.h"

#include <boost/asio/error.hpp>
#include <boost/asio/ssl/error.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/beast/http/error.hpp>
#include <simdjson.h>

namespace sluice::gateway {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = asio::ssl;
using router::errc;
using router::error;

namespace {

// The upstream's error.message, if its body has one (used only for 4xx that are the request's fault).
std::string upstream_error_message(std::string_view body) {
  thread_local simdjson::dom::parser parser;
  simdjson::dom::element root;
  std::string_view msg;
  if (parser.parse(body.data(), body.size(), true).get(root) == simdjson::SUCCESS &&
      root["error"]["message"].get_string().get(msg) == simdjson::SUCCESS) {
    return std::string(msg.substr(0, 500));
  }
  return {};
}

bool is_http_error(const beast::error_code& ec) {
  return ec.category() == http::make_error_code(http::error::bad_version).category();
}

}  // namespace

// What a failed connection attempt (resolve, connect, TLS handshake) counts as.
upstream_error_reason connect_failure_reason(const beast::error_code& ec) {
  if (ec == beast::error::timeout) return upstream_error_reason::timeout;
  if (ec.category() == asio::error::get_ssl_category() || ec.category() == ssl::error::get_stream_category()) {
    return upstream_error_reason::tls;
  }
  return upstream_error_reason::connect;
}

// What a failure before the response head counts as: a connection lost before any answer is as good as
// unreachable; a head Beast cannot parse is garbage.
upstream_error_reason head_failure_reason(const beast::error_code& ec, bool got_some) {
  if (ec == beast::error::timeout) return upstream_error_reason::timeout;
  if (ec == http::error::end_of_stream) return upstream_error_reason::connect;  // closed without a byte
  if (ec == http::error::partial_message) return upstream_error_reason::stream_cut;
  if (is_http_error(ec)) return upstream_error_reason::protocol;
  return got_some ? upstream_error_reason::stream_cut : upstream_error_reason::connect;
}

// ... and after the head: the connection dropped, or the body's framing (chunk sizes, limits) is garbage.
upstream_error_reason body_failure_reason(const beast::error_code& ec) {
  if (ec == beast::error::timeout) return upstream_error_reason::timeout;
  if (is_http_error(ec) && ec != http::error::partial_message) return upstream_error_reason::protocol;
  return upstream_error_reason::stream_cut;
}

upstream_error_reason status_reason(int status) {
  if (status == 401 || status == 403) return upstream_error_reason::auth;
  if (status == 429) return upstream_error_reason::rate_limited;
  return upstream_error_reason::http_status;
}

// An upstream header value relayed to our client only if it has the expected shape (never raw bytes from
// upstream in our head): Retry-After is delta-seconds or an HTTP-date, retry-after-ms a number.
std::string checked_header(std::string_view v, std::string_view allowed, size_t max_len) {
  if (v.empty() || v.size() > max_len || v.find_first_not_of(allowed) != std::string_view::npos) return {};
  return std::string(v);
}

error status_error(int status, std::string_view body, const std::string& model) {
  if (status == 401 || status == 403) {
    // Never relay an upstream auth error body: it can echo a fragment of the key (PITFALLS.md "Secrets").
    return {errc::upstream_auth, "The upstream for model '" + model + "' rejected the gateway's credentials (HTTP " +
                                     std::to_string(status) + "). Ask the operator to check the API key."};
  }
  if (status == 429) {
    return {errc::upstream_rate_limited, "The upstream for model '" + model + "' is rate limiting requests."};
  }
  if (status >= 400 && status < 500 && status != 404 && status != 408) {
    std::string msg = upstream_error_message(body);
    return {errc::upstream_rejected,
            "The upstream for model '" + model + "' rejected the request (HTTP " + std::to_string(status) + ")" +
                (msg.empty() ? std::string(".") : ": " + msg)};
  }
  if (status == 529) {  // Anthropic's "overloaded_error": retried like a 503 (resilience.cpp: upstream_error)
    return {errc::upstream_error, "The upstream for model '" + model + "' is overloaded (HTTP 529)."};
  }
  return {errc::upstream_error,
          "The upstream for model '" + model + "' failed with HTTP " + std::to_string(status) + "."};
}

}  // namespace sluice::gateway
