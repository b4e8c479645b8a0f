// See validators.h.
#include "validators.h"

#include <boost/json/parse.hpp>

namespace sluice::router::detail {

namespace {

std::string_view trim(std::string_view s) {
  while (!s.empty() && static_cast<unsigned char>(s.front()) <= ' ') s.remove_prefix(1);
  while (!s.empty() && static_cast<unsigned char>(s.back()) <= ' ') s.remove_suffix(1);
  return s;
}

}  // namespace

std::string failed_validator(const compiled_route& route, const chat_request& req, const completion& answer) {
  // A cut answer is never served from a cheaper tier: the next tier may finish it.
  if (answer.finish == finish_reason::length) return "truncated";
  if (!route.labels.labels.empty() && !label_index(route.labels, answer.text)) return "labels";
  if (route.regex && !std::regex_match(std::string(trim(answer.text)), *route.regex)) return "regex";
  if (route.config->accept.json_if_requested && req.response_format_ != response_format::text) {
    boost::system::error_code ec;
    const boost::json::value v = boost::json::parse(trim(answer.text), ec);
    // json_object and json_schema both promise an object; the schema's keys and types are not checked here.
    if (ec || !v.is_object()) return "json";
  }
  return {};
}

std::string query_text(const chat_request& req) {
  if (req.format == wire_format::openai_completions) return req.prompt;
  for (auto it = req.messages.rbegin(); it != req.messages.rend(); ++it) {
    if (it->role_ == role::user) return it->content;
  }
  return req.messages.empty() ? std::string() : req.messages.back().content;
}

}  // namespace sluice::router::detail
