// See feedback_api.h.
#include "api/feedback_api.h"

#include <simdjson.h>

#include <functional>
#include <set>

#include "api/json_util.h"
#include "ops/decision_log.h"

namespace sluice::gateway {

namespace {

using router::errc;
using router::error;

constexpr size_t max_request_id_bytes = 128;
constexpr size_t max_answer_bytes = 64 * 1024;
constexpr size_t max_label_bytes = 1024;

error bad(std::string message, std::string param = {}) { return error{errc::bad_request, std::move(message), std::move(param)}; }

// "'name' <rest>" (built by appending: g++ 12 misreads a chain of + on string_view temporaries here).
std::string about(std::string_view name, std::string_view rest) {
  std::string m;
  m.reserve(name.size() + rest.size() + 3);
  m += '\'';
  m += name;
  m += "' ";
  m += rest;
  return m;
}

std::optional<error> read_string(simdjson::dom::element v, std::string_view name, size_t max_bytes, std::string& out) {
  if (v.type() != simdjson::dom::element_type::STRING) return bad(about(name, "must be a string."), std::string(name));
  const std::string_view s(v);
  if (s.size() > max_bytes) {
    return bad(about(name, "is longer than " + std::to_string(max_bytes) + " bytes."), std::string(name));
  }
  out.assign(s.data(), s.size());
  return std::nullopt;
}

}  // namespace

router::result<feedback> parse_feedback(std::string body) {
  thread_local simdjson::dom::parser parser;
  const size_t len = body.size();
  body.reserve(len + simdjson::SIMDJSON_PADDING);
  simdjson::dom::element root;
  if (auto err = parser.parse(body.data(), len, false).get(root); err != simdjson::SUCCESS) {
    return bad(std::string("We could not parse the JSON body of your request: ") + simdjson::error_message(err) + ".");
  }
  if (root.type() != simdjson::dom::element_type::OBJECT) return bad("The request body must be a JSON object.");
  feedback f;
  std::set<std::string_view> seen;
  for (auto field : simdjson::dom::object(root)) {
    const std::string_view k = field.key;
    if (!seen.insert(k).second) return bad("Duplicate key '" + std::string(k) + "' in the request body.", std::string(k));
    simdjson::dom::element v = field.value;
    if (k == "request_id") {
      std::string id;
      if (auto e = read_string(v, k, max_request_id_bytes, id)) return *e;
      f.request_id = std::move(id);
    } else if (k == "score") {
      const auto t = v.type();
      if (t != simdjson::dom::element_type::INT64 && t != simdjson::dom::element_type::UINT64 &&
          t != simdjson::dom::element_type::DOUBLE) {
        return bad("'score' must be a number between 0 and 1.", "score");
      }
      const double d = double(v);
      if (!(d >= 0.0 && d <= 1.0)) return bad("'score' must be between 0 and 1.", "score");
      f.score = d;
    } else if (k == "answer") {
      std::string a;
      if (auto e = read_string(v, k, max_answer_bytes, a)) return *e;
      f.answer = std::move(a);
    } else if (k == "label") {
      std::string l;
      if (auto e = read_string(v, k, max_label_bytes, l)) return *e;
      f.label = std::move(l);
    } else {
      return bad("Unknown parameter '" + std::string(k) + "'; feedback takes request_id, score, answer and label.",
                 std::string(k));
    }
  }
  if (f.request_id.empty()) return bad("Missing required parameter: 'request_id' (the x-request-id of the answer).", "request_id");
  if (!f.score && !f.answer && !f.label) {
    return bad("Feedback needs at least one of 'score' (0..1), 'answer' (the correct answer) or 'label'.");
  }
  return f;
}

std::string feedback_log_line(const feedback& f) {
  std::string out = "{\"type\":\"feedback\",\"time\":";
  append_json_string(out, utc_now_iso8601());
  out += ",\"id\":";
  append_json_string(out, f.request_id);
  if (f.score) {
    out += ",\"score\":";
    append_json_number(out, *f.score);
  }
  if (f.answer) {
    out += ",\"answer\":";
    append_json_string(out, *f.answer);
  }
  if (f.label) {
    out += ",\"label\":";
    append_json_string(out, *f.label);
  }
  out += '}';
  return out;
}

uint64_t request_index::key(std::string_view id) { return std::hash<std::string_view>{}(id); }

void request_index::add(std::string_view request_id) {
  const uint64_t k = key(request_id);
  std::lock_guard lock(mutex_);
  if (!ids_.emplace(k, false).second) return;
  order_.push_back(k);
  while (order_.size() > capacity_) {
    ids_.erase(order_.front());
    order_.pop_front();
  }
}

request_index::claim request_index::claim_feedback(std::string_view request_id) {
  std::lock_guard lock(mutex_);
  auto it = ids_.find(key(request_id));
  if (it == ids_.end()) return claim::unknown;
  if (it->second) return claim::duplicate;
  it->second = true;
  return claim::recorded;
}

size_t request_index::size() const {
  std::lock_guard lock(mutex_);
  return ids_.size();
}

}  // namespace sluice::gateway
