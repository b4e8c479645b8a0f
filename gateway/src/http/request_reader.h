// Reads a client's request with Beast's HTTP parser (basic_parser: the same request-line, field, length and
// chunk rules as http::request_parser) into storage the connection reuses for every request, instead of a
// fresh http::request whose every field is a heap allocation. It keeps only what the gateway uses (method,
// target, version, keep-alive, Expect, the body) and counts, while parsing, what the framing rules of
// PITFALLS.md "Request smuggling" look at. What must not go in here: deciding what a request means.
#pragma once

#include <boost/beast/http/basic_parser.hpp>
#include <boost/beast/http/verb.hpp>
#include <string>
#include <string_view>

namespace sluice::gateway {

// One request as received; owned by the connection and overwritten by the next request.
struct incoming_request {
  boost::beast::http::verb method = boost::beast::http::verb::unknown;
  std::string method_text;  // as sent (for messages about methods the gateway does not know)
  std::string target;
  int version = 11;         // 10 or 11
  bool keep_alive = true;
  bool expect_continue = false;  // "Expect: 100-continue"
  // Credentials (access/access.h reads them): the last value of each, and how many fields there were.
  std::string authorization;
  std::string x_api_key;
  int authorization_fields = 0;
  int api_key_fields = 0;
  // Tracing: the client's X-Request-Id and W3C traceparent (the last of each; checked where they are used).
  std::string client_request_id;
  std::string traceparent;
  std::string anthropic_version;  // /v1/messages: the Anthropic API version the client speaks (the last value)
  std::string body;

  std::string_view method_string() const { return method_text; }
};

// What the framing rules look at, counted over every field of the head.
struct framing_facts {
  int transfer_encodings = 0;   // Transfer-Encoding fields
  int content_lengths = 0;      // Content-Length fields
  int hosts = 0;                // Host fields
  std::string transfer_encoding;  // the last Transfer-Encoding value, trimmed and lower-cased
  std::string content_length;     // the last Content-Length value, as sent
};

// Empty when the head is acceptable; else why not (the rules Beast 1.81 does not enforce): both Content-Length
// and Transfer-Encoding, repeated or non-numeric Content-Length, a Transfer-Encoding other than "chunked" or on
// HTTP/1.0, a missing (HTTP/1.1) or repeated Host.
std::string_view framing_problem(const framing_facts& f, int version);

class request_reader final : public boost::beast::http::basic_parser<true> {
 public:
  // Fills `into` (its strings keep their memory; the body is cleared when the body starts).
  explicit request_reader(incoming_request& into) : req_(into) {}
  const framing_facts& framing() const { return facts_; }

 private:
  // (Beast's string_view is boost::core::string_view in 1.81; it converts to std::string_view.)
  using error_code = boost::beast::error_code;
  using sv = boost::beast::string_view;
  void on_request_impl(boost::beast::http::verb method, sv method_str, sv target, int version,
                       error_code& ec) override;
  void on_response_impl(int, sv, int, error_code&) override {}
  void on_field_impl(boost::beast::http::field name, sv name_string, sv value, error_code& ec) override;
  void on_header_impl(error_code& ec) override;
  void on_body_init_impl(const boost::optional<std::uint64_t>& content_length, error_code& ec) override;
  std::size_t on_body_impl(sv body, error_code& ec) override;
  void on_chunk_header_impl(std::uint64_t, sv, error_code&) override {}
  std::size_t on_chunk_body_impl(std::uint64_t remain, sv body, error_code& ec) override;
  void on_finish_impl(error_code&) override {}

  incoming_request& req_;
  framing_facts facts_;
  bool seen_expect_ = false;
};

}  // namespace sluice::gateway
