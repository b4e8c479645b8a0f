// The acceptance model's feature extraction, written once as a template over a sink so that training (which
// stores the sparse vector) and serving (which folds each feature straight into the score) run the same code.
// The sink contract is features_stream.h's, with this file's blocks:
//   template <acceptance_block B> void add(uint32_t index, float value);   // any number of times, any order
//   void finish(const float (&scale)[ab_count]);                           // once, last
// Each hashed block is scaled by 1/sqrt(its feature count). What must not go in here: weights, anything that
// allocates (the buffers below live on the stack).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string_view>

#include "sluice/router/acceptance.h"
#include "text_stream.h"

namespace sluice::router::detail {

enum acceptance_block : int { ab_dense = 0, ab_query = 1, ab_answer = 2, ab_conjunction = 3, ab_count = 4 };

// Dense slots, in order; acceptance_dense_feature_name() in acceptance_features.cpp lists the same names and says
// what each holds. Log-probs are clamped to [logprob_floor, 0] and multiplied by logprob_scale.
enum acceptance_slot : uint32_t {
  a_log_tokens,
  a_has_token_logprobs,
  a_mean_logprob,
  a_min_logprob,
  a_q10_logprob,
  a_q25_logprob,
  a_q50_logprob,
  a_first_logprob,
  a_finish_length,
  a_answer_empty,
  a_has_top_logprobs,
  a_top1_prob,
  a_top12_margin,
  a_topk_entropy,
  a_answer_is_label,
  a_label_prob_answer,
  a_label_prob_max,
  a_label_margin,
  a_label_entropy,
  a_label_is0,  // max_acceptance_labels one-hot slots
  a_pre_score = a_label_is0 + max_acceptance_labels,
  a_has_pre_score,
  a_end
};
static_assert(a_end == acceptance_dense_count);

inline constexpr size_t max_top_logprobs = 20;  // acceptance_config::top_logprobs is at most this
// Quantiles are exact up to this many tokens; longer answers are sampled at an even stride (a stack buffer).
inline constexpr size_t quantile_sample_max = 1024;
inline constexpr double logprob_floor = -20.0;  // below this a token is "impossible"; also NaN and -inf land here
inline constexpr double logprob_scale = 0.2;    // puts [-20, 0] into [-4, 0], the range of the other features
inline constexpr double pre_score_limit = 10.0;

// A finite log-prob in [logprob_floor, 0]: NaN and -inf are the floor, positive values and +inf are 0.
inline double clean_logprob(double lp) {
  if (std::isnan(lp)) return logprob_floor;
  return std::clamp(lp, logprob_floor, 0.0);
}

// The answer as a label, as a view: trimmed of every ASCII byte that is not a letter or digit (whitespace,
// punctuation, control bytes). Lower-casing is left to the comparisons and hashes, which fold ASCII case.
inline std::string_view trim_answer(std::string_view s) {
  size_t b = 0, e = s.size();
  while (b < e && !is_word_byte(static_cast<unsigned char>(s[b]))) ++b;
  while (e > b && !is_word_byte(static_cast<unsigned char>(s[e - 1]))) --e;
  return s.substr(b, e - b);
}

inline char ascii_lower(char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c + 32) : c; }

// text, ASCII-lower-cased, equals `lower` (already lower case).
inline bool equals_folded(std::string_view text, std::string_view lower) {
  if (text.size() != lower.size()) return false;
  for (size_t i = 0; i < text.size(); ++i)
    if (ascii_lower(text[i]) != lower[i]) return false;
  return true;
}

// `lower` starts with text, ASCII-lower-cased.
inline bool starts_with_folded(std::string_view lower, std::string_view text) {
  return text.size() <= lower.size() && equals_folded(text, lower.substr(0, text.size()));
}

// Index of the trimmed answer among the labels, or -1.
inline int label_of(const acceptance_config& cfg, std::string_view trimmed) {
  for (size_t l = 0; l < cfg.labels.size(); ++l)
    if (equals_folded(trimmed, cfg.labels[l])) return static_cast<int>(l);
  return -1;
}

template <class Sink>
void stream_acceptance_features(const acceptance_config& cfg, const answer_signals& sig, Sink& sink) {
  const uint32_t base = static_cast<uint32_t>(acceptance_dense_count);
  // A hashed feature takes its slot from the top hash_bits bits and its sign from the bit below them.
  const int index_shift = 64 - static_cast<int>(cfg.hash_bits);
  auto slot_of = [&](uint64_t h) { return base + static_cast<uint32_t>(h >> index_shift); };
  auto sign_of = [&](uint64_t h) { return static_cast<float>(1 - 2 * static_cast<int>((h >> (index_shift - 1)) & 1)); };
  // One namespace per kind of hashed feature, so that a query word and the same answer word do not share a slot.
  const uint64_t seed = mix64(cfg.hash_seed + 0x9e3779b97f4a7c15ULL);
  const uint64_t seed_query = mix64(seed ^ 0x7175657279ULL);    // "query"
  const uint64_t seed_answer = mix64(seed ^ 0x616e73776572ULL);  // "answer"
  const uint64_t seed_conj = mix64(seed ^ 0x636f6e6aULL);        // "conj"
  constexpr uint64_t k_mul = 0x9e3779b97f4a7c15ULL;

  // The answer: its words, and its whole normalised text as the key of the conjunctions.
  const std::string_view answer = trim_answer(sig.answer);
  const uint64_t answer_key =
      mix64(fold_hash(reinterpret_cast<const unsigned char*>(answer.data()), answer.size(), false) ^ seed_conj);
  uint32_t n_answer = 0, n_query = 0, n_conj = 0;
  for_each_word(answer, [&](uint64_t h) {
    const uint64_t wh = mix64(h ^ seed_answer);
    sink.template add<ab_answer>(slot_of(wh), sign_of(wh));
    ++n_answer;
  });

  // The query tail's word n-grams, and the answer conjoined with each uni- and bigram ("the query says 'gains'
  // and the answer is 'down'"): what lets a linear model learn which answers are wrong for which questions.
  const uint32_t conj_max = std::min<uint32_t>(cfg.word_ngram_max, 2);
  for_each_word_ngram(query_tail(sig.query), seed_query, cfg.word_ngram_max, [&](uint64_t gram, uint32_t order) {
    sink.template add<ab_query>(slot_of(gram), sign_of(gram));
    ++n_query;
    if (order <= conj_max) {
      const uint64_t h = mix64(answer_key * k_mul + gram + order);
      sink.template add<ab_conjunction>(slot_of(h), sign_of(h));
      ++n_conj;
    }
  });

  // Dense block.
  auto put = [&](uint32_t slot, double v) {
    if (v != 0.0) sink.template add<ab_dense>(slot, static_cast<float>(v));
  };

  // Token log-probs: length, mean, min, low quantiles (Gupta et al.: they beat the length-biased sum), first.
  const size_t n_tokens = sig.token_logprobs.size();
  put(a_log_tokens, std::log1p(static_cast<double>(n_tokens)) / 5.0);
  if (n_tokens > 0) {
    double sum = 0.0, lowest = 0.0;
    for (double lp : sig.token_logprobs) {
      const double c = clean_logprob(lp);
      sum += c;
      lowest = std::min(lowest, c);
    }
    float sample[quantile_sample_max];  // (m) the log-probs, or an even-stride sample of them
    const size_t m = std::min(n_tokens, quantile_sample_max);
    for (size_t j = 0; j < m; ++j) sample[j] = static_cast<float>(clean_logprob(sig.token_logprobs[j * n_tokens / m]));
    // Lower nearest-rank quantiles, each selection narrowing the range of the next.
    const size_t k50 = (m - 1) / 2, k25 = (m - 1) / 4, k10 = (m - 1) / 10;
    std::nth_element(sample, sample + k50, sample + m);
    std::nth_element(sample, sample + k25, sample + k50);
    std::nth_element(sample, sample + k10, sample + k25);
    put(a_has_token_logprobs, 1.0);
    put(a_mean_logprob, sum / static_cast<double>(n_tokens) * logprob_scale);
    put(a_min_logprob, lowest * logprob_scale);
    put(a_q10_logprob, sample[k10] * logprob_scale);
    put(a_q25_logprob, sample[k25] * logprob_scale);
    put(a_q50_logprob, sample[k50] * logprob_scale);
    put(a_first_logprob, clean_logprob(sig.token_logprobs.front()) * logprob_scale);
  }
  put(a_finish_length, sig.finish == finish_reason::length ? 1.0 : 0.0);
  put(a_answer_empty, answer.empty() ? 1.0 : 0.0);

  // The first token's alternatives (at most top_logprobs of them, so training rows with more alternatives than
  // serving asks for give the same features): top-1 probability, top-1 minus top-2, entropy of the renormalised
  // top-k (divided by log k so it lies in [0, 1]).
  const size_t k = std::min<size_t>({sig.first_top_logprobs.size(), cfg.top_logprobs, max_top_logprobs});
  double alt_lp[max_top_logprobs];
  double alt_lowest = 0.0;
  if (k > 0) {
    double best = -std::numeric_limits<double>::infinity(), second = best;
    alt_lowest = 0.0;
    for (size_t i = 0; i < k; ++i) {
      alt_lp[i] = clean_logprob(sig.first_top_logprobs[i].second);
      alt_lowest = std::min(alt_lowest, alt_lp[i]);
      if (alt_lp[i] > best) {
        second = best;
        best = alt_lp[i];
      } else if (alt_lp[i] > second) {
        second = alt_lp[i];
      }
    }
    const double p1 = std::exp(best), p2 = k > 1 ? std::exp(second) : 0.0;
    double z = 0.0;
    for (size_t i = 0; i < k; ++i) z += std::exp(alt_lp[i] - best);
    double entropy = 0.0;
    for (size_t i = 0; i < k; ++i) {
      const double q = std::exp(alt_lp[i] - best) / z;
      if (q > 0.0) entropy -= q * std::log(q);
    }
    put(a_has_top_logprobs, 1.0);
    put(a_top1_prob, p1);
    put(a_top12_margin, p1 - p2);
    put(a_topk_entropy, k > 1 ? std::clamp(entropy / std::log(static_cast<double>(k)), 0.0, 1.0) : 0.0);
  }

  // Label tasks: which label the answer is, and the first token's probabilities renormalised over the labels.
  const size_t n_labels = std::min(cfg.labels.size(), max_acceptance_labels);
  const int answer_label = n_labels > 0 ? label_of(cfg, answer) : -1;
  if (answer_label >= 0 && static_cast<size_t>(answer_label) < n_labels) {
    put(a_answer_is_label, 1.0);
    put(a_label_is0 + static_cast<uint32_t>(answer_label), 1.0);
  }
  if (n_labels > 0) {
    // A label's log-prob is that of the first alternative equal to it (trimmed, case folded: " up" and "Up" are
    // both "up"); failing that, of the first alternative that is a prefix of this label and of no other (a label
    // the tokenizer splits, " neut" for "neutral"); failing that, a floor one nat below the lowest alternative.
    const double floor_lp = k > 0 ? alt_lowest - 1.0 : 0.0;
    double label_lp[max_acceptance_labels];
    bool found[max_acceptance_labels] = {};
    std::string_view alt_text[max_top_logprobs];
    for (size_t i = 0; i < k; ++i) alt_text[i] = trim_answer(sig.first_top_logprobs[i].first);
    for (size_t l = 0; l < n_labels; ++l) {
      label_lp[l] = floor_lp;
      for (size_t i = 0; i < k && !found[l]; ++i) {
        if (!alt_text[i].empty() && equals_folded(alt_text[i], cfg.labels[l])) {
          label_lp[l] = alt_lp[i];
          found[l] = true;
        }
      }
      for (size_t i = 0; i < k && !found[l]; ++i) {
        if (alt_text[i].empty() || !starts_with_folded(cfg.labels[l], alt_text[i])) continue;
        size_t owners = 0;
        for (size_t o = 0; o < n_labels; ++o) owners += starts_with_folded(cfg.labels[o], alt_text[i]);
        if (owners == 1) {
          label_lp[l] = alt_lp[i];
          found[l] = true;
        }
      }
    }
    double top = label_lp[0];
    for (size_t l = 1; l < n_labels; ++l) top = std::max(top, label_lp[l]);
    double p[max_acceptance_labels];
    double z = 0.0;
    for (size_t l = 0; l < n_labels; ++l) z += (p[l] = std::exp(label_lp[l] - top));
    double best = 0.0, second = 0.0, entropy = 0.0;
    for (size_t l = 0; l < n_labels; ++l) {
      p[l] /= z;
      if (p[l] > best) {
        second = best;
        best = p[l];
      } else if (p[l] > second) {
        second = p[l];
      }
      if (p[l] > 0.0) entropy -= p[l] * std::log(p[l]);
    }
    put(a_label_prob_answer,
        answer_label >= 0 && static_cast<size_t>(answer_label) < n_labels ? p[answer_label] : 0.0);
    put(a_label_prob_max, best);
    put(a_label_margin, best - second);
    put(a_label_entropy,
        n_labels > 1 ? std::clamp(entropy / std::log(static_cast<double>(n_labels)), 0.0, 1.0) : 0.0);
  }

  if (sig.pre_score && !std::isnan(*sig.pre_score)) {  // +-inf clamp like any other large value
    put(a_has_pre_score, 1.0);
    put(a_pre_score, std::clamp(*sig.pre_score, -pre_score_limit, pre_score_limit));
  }

  auto inv_sqrt = [](uint32_t count) {
    return count ? static_cast<float>(1.0 / std::sqrt(static_cast<double>(count))) : 0.0f;
  };
  const float scale[ab_count] = {1.0f, inv_sqrt(n_query), inv_sqrt(n_answer), inv_sqrt(n_conj)};
  sink.finish(scale);
}

}  // namespace sluice::router::detail
