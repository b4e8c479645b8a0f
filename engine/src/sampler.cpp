// Token sampler: see sampler.h. Works on a (value, id) candidate list so the caller's logits are only read;
// sorts only as far as a filter needs (top_k / top_p), and skips the softmax entirely for greedy decoding.
// What must not go in here: stop sequences or any text handling; model compute.
#include "sampler.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <optional>
#include <random>

namespace sluice::engine {

namespace {

uint64_t splitmix64(uint64_t& x) {
  uint64_t z = (x += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

// Higher value first; equal values: lower token id first (deterministic across standard libraries).
bool better(const std::pair<float, token_id>& a, const std::pair<float, token_id>& b) {
  return a.first != b.first ? a.first > b.first : a.second < b.second;
}

}  // namespace

sampler::sampler(const sampling_params& p) : params_(p) {
  params_.top_logprobs = std::clamp(params_.top_logprobs, 0, 20);
  uint64_t seed = p.seed ? *p.seed : (uint64_t(std::random_device{}()) << 32) ^ std::random_device{}();
  for (uint64_t& s : rng_state_) s = splitmix64(seed);
}

uint64_t sampler::next_u64() {  // xoshiro256**
  uint64_t* s = rng_state_;
  const uint64_t result = rotl(s[1] * 5, 7) * 9;
  const uint64_t t = s[1] << 17;
  s[2] ^= s[0];
  s[3] ^= s[1];
  s[1] ^= s[2];
  s[0] ^= s[3];
  s[2] ^= t;
  s[3] = rotl(s[3], 45);
  return result;
}

double sampler::next_uniform() { return double(next_u64() >> 11) * 0x1.0p-53; }

void sampler::accept(token_id id) { ++counts_[id]; }

token_id sampler::draw(std::span<const float> logits) {
  // Each filter becomes a cutoff in the total order `better` (weight desc, id asc); excluded candidates get
  // weight -1. The draw walks the candidates in token-id order. Linear time with no full sort, and the kept
  // set and walk order do not depend on how the standard library partitions or sorts.
  using cand = std::pair<float, token_id>;
  const auto n = static_cast<token_id>(logits.size());
  const float inv_t = 1.0f / params_.temperature;
  candidates_.resize(n);
  float max_v = -std::numeric_limits<float>::infinity();
  for (token_id i = 0; i < n; ++i) {
    candidates_[i] = {logits[i] * inv_t, i};
    max_v = std::max(max_v, candidates_[i].first);
  }
  std::optional<cand> top_k_cutoff;  // the k-th best (scaled logit, id)
  if (params_.top_k > 0 && params_.top_k < n) {
    const auto k = static_cast<std::size_t>(params_.top_k);
    scratch_.clear();
    if (k <= 1024) {  // bounded heap whose front is the worst of the best k so far
      for (const cand& c : candidates_) {
        if (scratch_.size() < k) {
          scratch_.push_back(c);
          std::push_heap(scratch_.begin(), scratch_.end(), better);
        } else if (better(c, scratch_.front())) {
          std::pop_heap(scratch_.begin(), scratch_.end(), better);
          scratch_.back() = c;
          std::push_heap(scratch_.begin(), scratch_.end(), better);
        }
      }
      top_k_cutoff = scratch_.front();
    } else {
      scratch_ = candidates_;
      std::nth_element(scratch_.begin(), scratch_.begin() + (k - 1), scratch_.end(), better);
      top_k_cutoff = scratch_[k - 1];
    }
  }
  double total = 0.0;
  for (cand& c : candidates_) {
    const bool kept = !top_k_cutoff || !better(*top_k_cutoff, c);
    c.first = kept ? std::exp(c.first - max_v) : -1.0f;  // unnormalised probability; the best token has 1
    if (kept) total += c.first;
  }
  if (params_.top_p > 0.0f && params_.top_p < 1.0f) {
    // Nucleus: the best-first prefix whose mass first reaches top_p. Weights are bucketed by their float
    // bits (monotonic for non-negative floats: 8 exponent + 5 mantissa bits), mass is summed per bucket,
    // and only the bucket where the prefix ends is sorted.
    static constexpr uint32_t one_bits = 0x3F800000u;  // 1.0f
    auto bucket = [](float w) {
      uint32_t bits;
      std::memcpy(&bits, &w, sizeof bits);
      return (one_bits - std::min(bits, one_bits)) >> 18;
    };
    constexpr std::size_t n_buckets = (one_bits >> 18) + 1;
    bucket_mass_.assign(n_buckets, 0.0);
    for (const cand& c : candidates_) {
      if (c.first >= 0.0f) bucket_mass_[bucket(c.first)] += c.first;
    }
    double need = double(params_.top_p) * total;
    std::size_t b = 0;
    for (; b + 1 < n_buckets && bucket_mass_[b] < need; ++b) need -= bucket_mass_[b];
    scratch_.clear();
    for (const cand& c : candidates_) {
      if (c.first >= 0.0f && bucket(c.first) == b) scratch_.push_back(c);
    }
    std::sort(scratch_.begin(), scratch_.end(), better);
    std::size_t last = 0;
    for (double cum = 0.0; last + 1 < scratch_.size(); ++last) {
      cum += scratch_[last].first;
      if (cum >= need) break;
    }
    if (!scratch_.empty()) {
      const cand cutoff = scratch_[last];
      total = 0.0;
      for (cand& c : candidates_) {
        if (c.first < 0.0f) continue;
        if (better(cutoff, c)) {
          c.first = -1.0f;
        } else {
          total += c.first;
        }
      }
    }
  }
  if (params_.min_p > 0.0f) {  // p >= min_p * p_max  <=>  weight >= min_p, as the best weight is 1
    total = 0.0;
    for (cand& c : candidates_) {
      if (c.first < params_.min_p) {
        c.first = -1.0f;
      } else {
        total += c.first;
      }
    }
  }
  double u = next_uniform() * total;
  token_id chosen = -1;
  for (const cand& c : candidates_) {
    if (c.first < 0.0f) continue;
    chosen = c.second;  // also the fallback when rounding leaves u >= 0 at the end
    u -= c.first;
    if (u < 0.0) break;
  }
  if (chosen < 0) {  // nothing passed (min_p > 1): fall back to the best token
    chosen = static_cast<token_id>(std::max_element(logits.begin(), logits.end()) - logits.begin());
  }
  return chosen;
}

sample_result sampler::sample(std::span<float> logits) {
  sample_result res;
  const auto n = static_cast<token_id>(logits.size());
  if (n == 0) return res;

  // Log-probs under the unmodified distribution, before any penalty touches the logits.
  const bool want_logprobs = params_.logprobs || params_.top_logprobs > 0;
  double log_z = 0.0;
  if (want_logprobs) {
    float max_logit = *std::max_element(logits.begin(), logits.end());
    double sum = 0.0;
    for (float l : logits) sum += std::exp(l - max_logit);  // float exp (fast), double sum
    log_z = max_logit + std::log(sum);
    if (params_.top_logprobs > 0) {
      candidates_.resize(n);
      for (token_id i = 0; i < n; ++i) candidates_[i] = {logits[i], i};
      const auto k = std::min<std::size_t>(params_.top_logprobs, candidates_.size());
      std::partial_sort(candidates_.begin(), candidates_.begin() + k, candidates_.end(), better);
      for (std::size_t i = 0; i < k; ++i) {
        res.top.emplace_back(candidates_[i].second, static_cast<float>(candidates_[i].first - log_z));
      }
    }
  }
  // Remember the raw logits of penalised tokens so the sampled token's log-prob can use its raw value.
  std::vector<std::pair<token_id, float>> raw_of_penalised;
  if (params_.frequency_penalty != 0.0f || params_.presence_penalty != 0.0f) {
    raw_of_penalised.reserve(counts_.size());
    for (const auto& [id, count] : counts_) {
      if (id < 0 || id >= n) continue;
      raw_of_penalised.emplace_back(id, logits[id]);
      logits[id] -= float(count) * params_.frequency_penalty + (count > 0 ? params_.presence_penalty : 0.0f);
    }
  }

  token_id chosen = 0;
  if (params_.temperature <= 0.0f || params_.top_k == 1) {
    // Greedy: first maximum (lowest id among ties).
    chosen = static_cast<token_id>(std::max_element(logits.begin(), logits.end()) - logits.begin());
  } else {
    chosen = draw(logits);
  }

  res.token = chosen;
  if (want_logprobs) {
    float raw = logits[chosen];
    for (const auto& [id, value] : raw_of_penalised) {
      if (id == chosen) raw = value;
    }
    res.logprob = static_cast<float>(raw - log_z);
  }
  accept(chosen);
  return res;
}

}  // namespace sluice::engine
