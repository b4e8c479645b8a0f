// See request_reader.h.
#include "http/request_reader.h"

#include <boost/beast/http/error.hpp>
#include <boost/beast/http/field.hpp>
#include <cctype>

namespace sluice::gateway {

namespace http = boost::beast::http;

namespace {

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    const auto x = static_cast<unsigned char>(a[i]), y = static_cast<unsigned char>(b[i]);
    if (std::tolower(x) != std::tolower(y)) return false;
  }
  return true;
}

void assign_trim_lower(std::string& out, std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  out.assign(s);
  for (auto& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
}

}  // namespace

std::string_view framing_problem(const framing_facts& f, int version) {
  if (f.transfer_encodings > 0 && f.content_lengths > 0) return "both Content-Length and Transfer-Encoding are present";
  if (f.content_lengths > 1) return "repeated Content-Length header";
  // Beast accepts a list of equal lengths ("58, 58"); a proxy in front may frame by another element of it.
  if (f.content_lengths == 1 &&
      (f.content_length.empty() || f.content_length.find_first_not_of("0123456789") != std::string::npos)) {
    return "Content-Length must be a single decimal number";
  }
  if (f.transfer_encodings > 1) return "repeated Transfer-Encoding header";
  if (f.transfer_encodings == 1 && f.transfer_encoding != "chunked") {
    return "unsupported Transfer-Encoding (only 'chunked' is accepted)";
  }
  if (f.transfer_encodings == 1 && version < 11) return "Transfer-Encoding is not allowed in HTTP/1.0";
  if (version == 11 && f.hosts == 0) return "missing Host header";
  if (f.hosts > 1) return "repeated Host header";
  return {};
}

void request_reader::on_request_impl(http::verb method, sv method_str, sv target, int version, error_code&) {
  req_.method = method;
  req_.method_text.assign(method_str.data(), method_str.size());
  req_.target.assign(target.data(), target.size());
  req_.version = version;
  req_.keep_alive = true;
  req_.expect_continue = false;
  req_.authorization.clear();
  req_.x_api_key.clear();
  req_.authorization_fields = 0;
  req_.api_key_fields = 0;
  req_.client_request_id.clear();
  req_.traceparent.clear();
  req_.anthropic_version.clear();
  req_.body.clear();
}

void request_reader::on_field_impl(http::field name, sv name_string, sv value, error_code&) {
  switch (name) {
    case http::field::authorization:
      ++req_.authorization_fields;
      req_.authorization.assign(value.data(), value.size());
      break;
    case http::field::unknown:
      if (iequals(std::string_view(name_string.data(), name_string.size()), "x-api-key")) {
        ++req_.api_key_fields;
        req_.x_api_key.assign(value.data(), value.size());
      } else if (iequals(std::string_view(name_string.data(), name_string.size()), "x-request-id")) {
        req_.client_request_id.assign(value.data(), value.size());
      } else if (iequals(std::string_view(name_string.data(), name_string.size()), "traceparent")) {
        req_.traceparent.assign(value.data(), value.size());
      } else if (iequals(std::string_view(name_string.data(), name_string.size()), "anthropic-version")) {
        req_.anthropic_version.assign(value.data(), value.size());
      }
      break;
    case http::field::transfer_encoding:
      ++facts_.transfer_encodings;
      assign_trim_lower(facts_.transfer_encoding, std::string_view(value.data(), value.size()));
      break;
    case http::field::content_length:
      ++facts_.content_lengths;
      facts_.content_length.assign(value.data(), value.size());
      break;
    case http::field::host:
      ++facts_.hosts;
      break;
    case http::field::expect:
      if (!seen_expect_) req_.expect_continue = iequals(std::string_view(value.data(), value.size()), "100-continue");  // the first one counts
      seen_expect_ = true;
      break;
    default:
      break;
  }
}

void request_reader::on_header_impl(error_code&) { req_.keep_alive = keep_alive(); }

void request_reader::on_body_init_impl(const boost::optional<std::uint64_t>& content_length, error_code& ec) {
  req_.body.clear();
  if (content_length) {
    if (*content_length > req_.body.max_size()) {
      ec = http::error::buffer_overflow;
      return;
    }
    req_.body.reserve(static_cast<size_t>(*content_length));  // (the body limit was checked with the head)
  }
}

std::size_t request_reader::on_body_impl(sv body, error_code&) {
  req_.body.append(body.data(), body.size());
  return body.size();
}

std::size_t request_reader::on_chunk_body_impl(std::uint64_t, sv body, error_code&) {
  req_.body.append(body.data(), body.size());
  return body.size();
}

}  // namespace sluice::gateway
