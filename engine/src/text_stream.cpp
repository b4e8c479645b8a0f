// Streaming detokenizer with stop sequences: see text_stream.h.
// What must not go in here: sampling, end-of-generation decisions (the engine stops on EOG tokens).
#include "text_stream.h"

#include <algorithm>

#include "unicode.h"

namespace sluice::engine {

text_stream::text_stream(const tokenizer& tok, std::vector<std::string> stop) : tok_(tok) {
  for (std::string& s : stop) {
    if (!s.empty()) stop_.push_back(std::move(s));
  }
}

text_stream::step text_stream::push(token_id id) {
  if (stopped_) return {"", true};
  if (!tok_.is_control(id)) pending_ += tok_.token_bytes(id);  // control tokens carry no output text

  // A stop sequence can only begin inside pending_: any text that could start one is never emitted.
  std::size_t first_stop = std::string::npos;
  for (const std::string& s : stop_) first_stop = std::min(first_stop, pending_.find(s));
  if (first_stop != std::string::npos) {
    stopped_ = true;
    step st{sanitize_utf8(std::string_view(pending_).substr(0, first_stop)), true};
    pending_.clear();
    return st;
  }

  // Hold back the longest suffix that is a proper prefix of some stop sequence, and any partial character.
  std::size_t hold = incomplete_utf8_tail(pending_);
  const std::string_view p(pending_);
  for (const std::string& s : stop_) {
    for (std::size_t len = std::min(s.size() - 1, p.size()); len > hold; --len) {
      if (p.substr(p.size() - len) == std::string_view(s).substr(0, len)) {
        hold = len;
        break;
      }
    }
  }
  const std::size_t emit = pending_.size() - hold;
  step st{sanitize_utf8(p.substr(0, emit)), false};
  pending_.erase(0, emit);
  return st;
}

std::string text_stream::flush() {
  if (stopped_) return {};
  std::string out = sanitize_utf8(pending_);
  pending_.clear();
  return out;
}

}  // namespace sluice::engine
