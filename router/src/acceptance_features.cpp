// Acceptance features: config checks, answer normalisation, the dense slot table, and the allocating extraction
// used by training and tests. What must not go in here: the extraction logic itself (acceptance_stream.h, shared
// with serving), weights or files.
//
// Dense block (slot: name: value). lp = a log-prob clamped to [-20, 0] (NaN -> -20) times 0.2.
//    0 log_tokens           log1p(generated tokens) / 5
//    1 has_token_logprobs   1 when the answer came with per-token log-probs (else slots 2..7 are 0)
//    2 mean_logprob         mean lp over all tokens
//    3 min_logprob          lowest lp
//    4 q10_logprob          10% quantile of the tokens' lp (lower nearest rank; a stride sample past 1024 tokens)
//    5 q25_logprob          25% quantile
//    6 q50_logprob          median
//    7 first_logprob        the first token's lp
//    8 finish_length        1 when generation stopped at the token limit (a truncated answer)
//    9 answer_empty         1 when nothing is left of the answer after trimming
//   10 has_top_logprobs     1 when the first token's alternatives were reported (else 11..13 are 0)
//   11 top1_prob            probability of the most likely first token
//   12 top12_margin         its probability minus the runner-up's (0 for the runner-up when only one is listed)
//   13 topk_entropy         entropy of the listed alternatives renormalised, / log k, in [0, 1]
//   14 answer_is_label      1 when the normalised answer is one of config.labels
//   15 label_prob_answer    the answer's label probability, renormalised over the labels (0 when not a label)
//   16 label_prob_max       the most likely label's renormalised probability
//   17 label_margin         best minus second-best label probability
//   18 label_entropy        entropy of the label probabilities, / log(labels), in [0, 1]
//   19..34 label_is_N       one-hot: the answer is label N
//   35 pre_score            the route's pre-score, clamped to [-10, 10]
//   36 has_pre_score        1 when the route supplied a pre-score (NaN counts as none)
// Slots 15..18 are 0 when the config has no labels. Label probabilities come from the first token's alternatives:
// see stream_acceptance_features for how a label is matched to one.
//
// Hashed block (2^hash_bits signed slots after the dense block), each kind in its own namespace and each kind's
// values scaled by 1/sqrt(its count): word 1..word_ngram_max-grams of the query tail (after the last "\n\n", at most
// 1000 bytes); the normalised answer's words; the whole normalised answer conjoined with each query uni- and
// bigram.
#include <array>

#include "acceptance_stream.h"
#include "sluice/router/acceptance.h"

namespace sluice::router {

std::string validate(const acceptance_config& c) {
  if (c.hash_bits < 8 || c.hash_bits > 24) return "hash_bits must be in 8..24";
  if (c.word_ngram_max < 1 || c.word_ngram_max > 3) return "word_ngram_max must be in 1..3";
  if (c.top_logprobs < 1 || c.top_logprobs > detail::max_top_logprobs) return "top_logprobs must be in 1..20";
  if (c.labels.size() > max_acceptance_labels)
    return "at most " + std::to_string(max_acceptance_labels) + " labels (got " + std::to_string(c.labels.size()) + ")";
  for (size_t i = 0; i < c.labels.size(); ++i) {
    const std::string& l = c.labels[i];
    if (l.empty() || l.size() > 64) return "label " + std::to_string(i + 1) + " must be 1..64 bytes";
    if (normalise_answer(l) != l)
      return "label '" + l + "' is not normalised (trimmed of spaces and punctuation, lower case): use '" +
             normalise_answer(l) + "'";
    for (size_t j = 0; j < i; ++j)
      if (c.labels[j] == l) return "label '" + l + "' appears twice";
  }
  return {};
}

size_t acceptance_feature_count(const acceptance_config& c) {
  return acceptance_dense_count + (size_t{1} << c.hash_bits);
}

std::string_view acceptance_dense_feature_name(size_t slot) {
  static constexpr std::array<std::string_view, acceptance_dense_count> names = {
      "log_tokens", "has_token_logprobs", "mean_logprob", "min_logprob", "q10_logprob", "q25_logprob",
      "q50_logprob", "first_logprob", "finish_length", "answer_empty", "has_top_logprobs", "top1_prob",
      "top12_margin", "topk_entropy", "answer_is_label", "label_prob_answer", "label_prob_max", "label_margin",
      "label_entropy", "label_is_0", "label_is_1", "label_is_2", "label_is_3", "label_is_4", "label_is_5",
      "label_is_6", "label_is_7", "label_is_8", "label_is_9", "label_is_10", "label_is_11", "label_is_12",
      "label_is_13", "label_is_14", "label_is_15", "pre_score", "has_pre_score"};
  return slot < names.size() ? names[slot] : std::string_view{};
}

std::string normalise_answer(std::string_view answer) {
  const std::string_view t = detail::trim_answer(answer);
  std::string out(t);
  for (char& c : out) c = detail::ascii_lower(c);
  return out;
}

std::optional<size_t> label_index(const acceptance_config& config, std::string_view answer) {
  const int l = detail::label_of(config, detail::trim_answer(answer));
  if (l < 0) return std::nullopt;
  return static_cast<size_t>(l);
}

namespace {

// Stores every feature, then applies each block's scale at the end.
struct collecting_sink {
  sparse_features& out;
  std::vector<uint8_t> blocks;
  template <detail::acceptance_block B>
  void add(uint32_t index, float value) {
    out.index.push_back(index);
    out.value.push_back(value);
    blocks.push_back(static_cast<uint8_t>(B));
  }
  void finish(const float (&scale)[detail::ab_count]) {
    for (size_t i = 0; i < out.value.size(); ++i) out.value[i] *= scale[blocks[i]];
  }
};

}  // namespace

void extract_acceptance_features(const acceptance_config& config, const answer_signals& signals, sparse_features& out) {
  out.index.clear();
  out.value.clear();
  if (!validate(config).empty()) return;  // an unusable config has no features (hash_bits out of range would be UB)
  collecting_sink sink{out, {}};
  detail::stream_acceptance_features(config, signals, sink);
}

}  // namespace sluice::router
