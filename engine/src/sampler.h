// Picks the next token from a position's logits: penalties, temperature, top-k, top-p, min-p, seeded RNG,
// and the log-prob (plus top alternatives) of the sampled token under the unmodified distribution.
// What must not go in here: text handling (stop sequences live in text_stream), model compute.
#pragma once

#include <cstdint>
#include <span>
#include <unordered_map>
#include <utility>
#include <vector>

#include "sluice/engine/engine.h"

namespace sluice::engine {

struct sample_result {
  token_id token = 0;
  float logprob = 0.0f;                          // log softmax(raw logits)[token], temperature 1, no penalties
  std::vector<std::pair<token_id, float>> top;   // sampling_params::top_logprobs best (id, logprob), best first
};

class sampler {  // one per sequence; owns its RNG and token counts for penalties
 public:
  explicit sampler(const sampling_params& p);
  // logits: (n_vocab) raw logits of the last position; may be modified in place.
  sample_result sample(std::span<float> logits);  // also records the token for frequency/presence penalties
  // Records a token as generated without sampling it (e.g. replaying), for penalties.
  void accept(token_id id);

 private:
  sampling_params params_;
  uint64_t rng_state_[4];                        // xoshiro256** state
  std::unordered_map<token_id, int> counts_;     // generated tokens -> occurrences (penalties)
  std::vector<std::pair<float, token_id>> candidates_;  // scratch, reused between calls
  double next_uniform();                         // [0, 1)
};

}  // namespace sluice::engine
