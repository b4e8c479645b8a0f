// POST /v1/feedback: an outcome for a routed request, joined to the decision log by request id (the data
// flywheel: `sluice distill` and `sluice train-cascade` read these lines). Parsing and the log line live here;
// the handler in api_handlers.cpp checks the id against the recent routed requests. What must not go in here:
// routing, training.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

#include "sluice/router/error.h"

namespace sluice::gateway {

struct feedback {
  std::string request_id;     // the x-request-id the gateway returned
  std::optional<double> score;  // 0..1: how good the answer was
  std::optional<std::string> answer;  // the correct answer, when the served one was wrong
  std::optional<std::string> label;   // free text (a category, a reviewer's note)
};

// Validates the body: a JSON object with "request_id" and at least one of "score", "answer", "label"; unknown
// and duplicate keys are errors naming the field.
router::result<feedback> parse_feedback(std::string body);

// The decision-log line: {"type":"feedback","time":...,"id":...,"score":...,"answer":...,"label":...}.
std::string feedback_log_line(const feedback& f);

// The routed requests feedback may name: the most recent `capacity` ids (older ones are forgotten, as is
// everything at restart), and which of them already got feedback. Thread-safe.
class request_index {
 public:
  explicit request_index(size_t capacity) : capacity_(capacity) {}
  void add(std::string_view request_id);
  enum class claim { recorded, unknown, duplicate };
  claim claim_feedback(std::string_view request_id);
  size_t size() const;

 private:
  static uint64_t key(std::string_view id);
  size_t capacity_;
  mutable std::mutex mutex_;
  std::unordered_map<uint64_t, bool> ids_;  // id hash -> has feedback
  std::deque<uint64_t> order_;              // oldest first
};

}  // namespace sluice::gateway
