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

// Order of operations (as HF transformers / vLLM): frequency & presence penalties -> temperature ->
// top_k -> top_p -> min_p -> draw. temperature 0 (or top_k 1) is greedy: the argmax after penalties.
// Ties are broken towards the lower token id, so results never depend on sort stability.
struct sample_result {
  token_id token = 0;
  // log softmax(raw logits)[token] at temperature 1 without penalties; computed only when
  // sampling_params::logprobs or top_logprobs > 0 asks for it (else 0).
  float logprob = 0.0f;
  std::vector<std::pair<token_id, float>> top;  // top_logprobs best (id, logprob) of that distribution, best first
};

class sampler {  // one per sequence; owns its RNG and token counts for penalties
 public:
  // No seed: seeded from std::random_device. top_logprobs is clamped to 0..20.
  explicit sampler(const sampling_params& p);
  // logits: (n_vocab) raw logits of the last position; may be modified in place.
  sample_result sample(std::span<float> logits);  // also records the token for frequency/presence penalties
  // Records a token as generated without sampling it (e.g. replaying), for penalties.
  void accept(token_id id);

 private:
  sampling_params params_;
  uint64_t rng_state_[4];                               // xoshiro256** state, seeded through splitmix64
  std::unordered_map<token_id, int> counts_;            // generated tokens -> occurrences (penalties)
  std::vector<std::pair<float, token_id>> candidates_;  // scratch (value, id) in id order, reused
  std::vector<std::pair<float, token_id>> scratch_;     // scratch for selection (top_k, top_p)
  std::vector<double> bucket_mass_;                     // scratch for top_p
  token_id draw(std::span<const float> logits);         // temperature, top_k, top_p, min_p, then a seeded draw
  uint64_t next_u64();
  double next_uniform();  // [0, 1) with 53 random bits
};

}  // namespace sluice::engine
