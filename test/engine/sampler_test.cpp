// Tests for the sampler: seeded determinism, greedy equivalences, OpenAI penalties, top_k/top_p/min_p
// filtering on hand-made distributions, temperature, log-probs of the unmodified distribution, speed.
#include "sampler.h"

#include <catch2/catch.hpp>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <map>
#include <random>
#include <set>

using namespace sluice::engine;

namespace {

// Speed bounds are checked only in optimised builds without sanitizers (they still print their numbers).
#if defined(NDEBUG) && !defined(__SANITIZE_ADDRESS__)
constexpr bool timing_checks_enabled = true;
#else
constexpr bool timing_checks_enabled = false;
#endif

std::vector<float> random_logits(std::size_t n, uint32_t seed) {
  std::mt19937 rng(seed);  // test data only; the sampler itself never uses <random> distributions
  std::vector<float> v(n);
  for (float& x : v) x = static_cast<float>(rng() % 20000) / 1000.0f - 10.0f;
  return v;
}

std::vector<float> logits_of(std::vector<double> probs, double shift = 0.0) {
  std::vector<float> v;
  for (double p : probs) v.push_back(static_cast<float>(std::log(p) + shift));
  return v;
}

std::map<token_id, int> histogram(const sampling_params& p, const std::vector<float>& logits, int draws) {
  sampler s(p);
  std::map<token_id, int> h;
  for (int i = 0; i < draws; ++i) {
    std::vector<float> l = logits;
    ++h[s.sample(l).token];
  }
  return h;
}

}  // namespace

TEST_CASE("same seed gives the same tokens; another seed differs", "[sampler]") {
  sampling_params p;
  p.temperature = 1.0f;
  p.seed = 42;
  const std::vector<float> logits = random_logits(1000, 7);
  auto run = [&](uint64_t seed) {
    p.seed = seed;
    sampler s(p);
    std::vector<token_id> out;
    for (int i = 0; i < 200; ++i) {
      std::vector<float> l = logits;
      out.push_back(s.sample(l).token);
    }
    return out;
  };
  CHECK(run(42) == run(42));
  CHECK(run(42) != run(43));
}

TEST_CASE("top_k 1 and temperature 0 are greedy", "[sampler]") {
  for (uint32_t seed = 0; seed < 20; ++seed) {
    const std::vector<float> logits = random_logits(5000, seed);
    const auto argmax = static_cast<token_id>(std::max_element(logits.begin(), logits.end()) - logits.begin());
    sampling_params greedy;
    greedy.temperature = 0.0f;
    sampling_params top1;
    top1.top_k = 1;
    top1.temperature = 1.5f;
    top1.seed = seed;
    std::vector<float> a = logits, b = logits;
    CHECK(sampler(greedy).sample(a).token == argmax);
    CHECK(sampler(top1).sample(b).token == argmax);
  }
}

TEST_CASE("frequency and presence penalties follow OpenAI's formula", "[sampler]") {
  sampling_params p;
  p.temperature = 0.0f;
  SECTION("frequency penalty grows with the count") {
    p.frequency_penalty = 0.6f;
    sampler s(p);
    std::vector<token_id> got;
    for (int i = 0; i < 4; ++i) {
      std::vector<float> l{1.0f, 0.5f, 0.0f};
      got.push_back(s.sample(l).token);
    }
    // 0 (1.0) -> 1 (0.5 beats 0.4) -> 0 (0.4 beats -0.1) -> 2 (0.0 beats -0.2 and -0.1)
    CHECK(got == std::vector<token_id>{0, 1, 0, 2});
  }
  SECTION("presence penalty is paid once") {
    p.presence_penalty = 0.6f;
    sampler s(p);
    std::vector<token_id> got;
    for (int i = 0; i < 4; ++i) {
      std::vector<float> l{1.0f, 0.5f, 0.0f};
      got.push_back(s.sample(l).token);
    }
    // 0 -> 1 (0.5 > 0.4) -> 0 (0.4 > -0.1) -> 0 (still 0.4: presence does not grow)
    CHECK(got == std::vector<token_id>{0, 1, 0, 0});
  }
  SECTION("equal logits with a frequency penalty rotate evenly") {
    p.frequency_penalty = 1.0f;
    sampler s(p);
    std::map<token_id, int> counts;
    for (int i = 0; i < 12; ++i) {
      std::vector<float> l(4, 0.0f);
      ++counts[s.sample(l).token];
    }
    CHECK(counts == std::map<token_id, int>{{0, 3}, {1, 3}, {2, 3}, {3, 3}});
  }
}

TEST_CASE("min_p and top_p keep exactly the expected tokens", "[sampler]") {
  const std::vector<float> logits = logits_of({0.5, 0.3, 0.15, 0.05}, 2.0);
  sampling_params p;
  p.seed = 1;
  SECTION("min_p 0.35 keeps p >= 0.175") {
    p.min_p = 0.35f;
    auto h = histogram(p, logits, 4000);
    CHECK(h.size() == 2);
    CHECK(h.count(0) == 1);
    CHECK(h.count(1) == 1);
    CHECK(h[0] / 4000.0 == Approx(0.625).margin(0.03));
  }
  SECTION("min_p 0.05 keeps all four") {
    p.min_p = 0.05f;
    CHECK(histogram(p, logits, 4000).size() == 4);
  }
  SECTION("top_p 0.75 keeps the first two, 0.85 the first three") {
    p.top_p = 0.75f;
    auto h = histogram(p, logits, 4000);
    CHECK(h.size() == 2);
    CHECK(h[0] / 4000.0 == Approx(0.625).margin(0.03));
    p.top_p = 0.85f;
    auto h3 = histogram(p, logits, 4000);
    CHECK(h3.size() == 3);
    CHECK(h3.count(3) == 0);
  }
  SECTION("top_p over a wide flat distribution keeps the first half (ties by id)") {
    p.top_p = 0.5f;
    std::vector<float> flat(1000, 0.0f);
    auto h = histogram(p, flat, 5000);
    CHECK(h.rbegin()->first < 500);
    CHECK(h.size() > 400);
  }
  SECTION("top_k 2 keeps the two best") {
    p.top_k = 2;
    auto h = histogram(p, logits, 2000);
    CHECK(h.size() == 2);
    CHECK(h.count(2) == 0);
  }
}

TEST_CASE("temperature sharpens the distribution", "[sampler]") {
  sampling_params p;
  p.seed = 9;
  p.temperature = 0.5f;
  auto h = histogram(p, logits_of({0.6, 0.4}), 8000);
  CHECK(h[0] / 8000.0 == Approx(0.36 / 0.52).margin(0.025));  // p^2 renormalised
  p.temperature = 1.0f;
  auto h1 = histogram(p, logits_of({0.6, 0.4}), 8000);
  CHECK(h1[0] / 8000.0 == Approx(0.6).margin(0.025));
}

TEST_CASE("log-probs come from the unmodified distribution", "[sampler]") {
  sampling_params p;
  p.temperature = 0.0f;
  p.logprobs = true;
  p.top_logprobs = 2;
  p.frequency_penalty = 5.0f;
  sampler s(p);
  std::vector<float> l = logits_of({0.5, 0.25, 0.25}, 3.0);
  sample_result r = s.sample(l);
  CHECK(r.token == 0);
  CHECK(r.logprob == Approx(std::log(0.5)).margin(1e-5));
  REQUIRE(r.top.size() == 2);
  CHECK(r.top[0].first == 0);
  CHECK(r.top[0].second == Approx(std::log(0.5)).margin(1e-5));
  CHECK(r.top[1].first == 1);  // tie with token 2: lower id first
  CHECK(r.top[1].second == Approx(std::log(0.25)).margin(1e-5));
  // Second step: the penalty pushes token 0 down, so 1 is chosen, but its log-prob is still the raw one,
  // and token 0's alternative log-prob is unpenalised.
  std::vector<float> l2 = logits_of({0.5, 0.25, 0.25}, 3.0);
  sample_result r2 = s.sample(l2);
  CHECK(r2.token == 1);
  CHECK(r2.logprob == Approx(std::log(0.25)).margin(1e-5));
  CHECK(r2.top[0].first == 0);
  CHECK(r2.top[0].second == Approx(std::log(0.5)).margin(1e-5));
  // And for a sampled (non-greedy) token under temperature, the log-prob ignores the temperature.
  sampling_params hot;
  hot.temperature = 2.0f;
  hot.logprobs = true;
  hot.seed = 3;
  sampler sh(hot);
  std::vector<float> l3 = logits_of({0.7, 0.2, 0.1});
  sample_result r3 = sh.sample(l3);
  const double want[] = {0.7, 0.2, 0.1};
  CHECK(r3.logprob == Approx(std::log(want[r3.token])).margin(1e-5));
}

TEST_CASE("sampling a 49k vocabulary is fast", "[sampler]") {
  const std::vector<float> logits = random_logits(49152, 5);
  auto time_us = [&](sampling_params p) {
    sampler s(p);
    const int reps = 50;
    std::vector<float> l;
    auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < reps; ++i) {
      l = logits;
      s.sample(l);
    }
    return std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count() / reps;
  };
  sampling_params greedy;
  greedy.temperature = 0.0f;
  sampling_params nucleus;
  nucleus.temperature = 0.8f;
  nucleus.top_p = 0.95f;
  nucleus.seed = 1;
  sampling_params full = nucleus;
  full.top_k = 40;
  full.min_p = 0.05f;
  full.logprobs = true;
  full.top_logprobs = 5;
  full.frequency_penalty = 0.5f;
  double g = time_us(greedy), n = time_us(nucleus), f = time_us(full);
  std::printf("sampler (49152 vocab): greedy %.0f us, temp+top_p %.0f us, all options %.0f us per token\n", g, n, f);
  if (timing_checks_enabled) {  // bounds far above typical, for a loaded 2-core machine
    CHECK(g < 2000.0);
    CHECK(n < 20000.0);
    CHECK(f < 20000.0);
  }
}
