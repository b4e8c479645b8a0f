// Turns sampled tokens into final UTF-8 text for streaming: holds back partial UTF-8 characters and any
// suffix that could still begin a stop sequence; detects stop sequences across token boundaries.
// What must not go in here: sampling, tokenization rules (it only reads token bytes).
#pragma once

#include <string>
#include <vector>

#include "tokenizer.h"

namespace sluice::engine {

class text_stream {  // turns sampled tokens into final UTF-8 text; finds stop sequences across tokens
 public:
  text_stream(const tokenizer& tok, std::vector<std::string> stop);
  struct step {
    std::string text;      // text that is final now (held back if maybe a stop prefix / partial UTF-8)
    bool stopped = false;  // a stop sequence completed; text ends right before it; push no more
  };
  step push(token_id id);
  std::string flush();  // remaining held-back text at the end (not called after a stop)

 private:
  const tokenizer& tok_;
  std::vector<std::string> stop_;
  std::string pending_;  // decoded bytes not yet emitted
  bool stopped_ = false;
};

}  // namespace sluice::engine
