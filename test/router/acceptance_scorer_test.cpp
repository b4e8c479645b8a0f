// The acceptance scorer: the serving path (features streamed into the weights) equals the training features' dot
// product; load/save through files with errors that name them; the local-model pin; and a timing printout.
#include <catch2/catch.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "sluice/router/acceptance.h"

using namespace sluice::router;

namespace {

acceptance_model random_model(uint32_t hash_bits, uint64_t seed) {
  acceptance_model m;
  m.config.hash_bits = hash_bits;
  m.config.labels = {"up", "down", "neutral", "none"};
  m.weights.resize(acceptance_feature_count(m.config));
  std::mt19937_64 rng(seed);
  for (float& w : m.weights) w = static_cast<float>(static_cast<double>(rng() % 2001) / 1000.0 - 1.0);
  m.bias = 0.125f;
  return m;
}

answer_signals sample_answer(int i) {
  answer_signals s;
  s.query = "Please determine the price direction (up, down, neutral, or none).\n\nQ: gold ends " +
            std::to_string(i) + " lower as dollar firms; silver gains on industrial demand\nA:";
  s.answer = i % 2 ? " down" : " up";
  s.token_logprobs = {-0.4 - 0.01 * i, -0.07, -1.2};
  s.first_top_logprobs = {{" up", -0.4}, {" down", -1.3}, {" none", -3.0}, {" neutral", -3.5}, {" no", -4.0}};
  s.pre_score = 0.3;
  return s;
}

}  // namespace

TEST_CASE("acceptance score equals sigmoid(bias + w . features) of the training features") {
  const acceptance_model m = random_model(12, 5);
  result<acceptance_scorer> scorer = acceptance_scorer::from_model(m);
  REQUIRE(scorer.has_value());
  for (int i = 0; i < 20; ++i) {
    answer_signals s = sample_answer(i);
    if (i % 5 == 4) s = answer_signals{};  // nothing at all
    sparse_features f;
    extract_acceptance_features(m.config, s, f);
    double z = m.bias;
    for (size_t j = 0; j < f.index.size(); ++j) z += static_cast<double>(m.weights[f.index[j]]) * f.value[j];
    const double score = scorer->score(s);
    CHECK(score == Approx(1.0 / (1.0 + std::exp(-z))).epsilon(1e-5));
    CHECK(score >= 0.0);
    CHECK(score <= 1.0);
  }
}

TEST_CASE("acceptance scorer: from_model refuses an invalid model; save and load round trip; errors name files") {
  acceptance_model bad = random_model(10, 1);
  bad.weights.pop_back();
  result<acceptance_scorer> refused = acceptance_scorer::from_model(bad);
  REQUIRE(!refused.has_value());
  CHECK(refused.error().message.find("weights has") != std::string::npos);

  result<acceptance_scorer> a = acceptance_scorer::from_model(random_model(10, 2));
  REQUIRE(a.has_value());
  const std::string path = "acceptance_roundtrip_test.bin";
  REQUIRE(a->save(path).has_value());
  result<acceptance_scorer> b = acceptance_scorer::load(path);
  REQUIRE(b.has_value());
  CHECK(b->score(sample_answer(3)) == a->score(sample_answer(3)));
  std::remove(path.c_str());

  result<acceptance_scorer> missing = acceptance_scorer::load("no_such_acceptance_model.bin");
  REQUIRE(!missing.has_value());
  CHECK(missing.error().message.find("no_such_acceptance_model.bin") != std::string::npos);
  const std::string junk = "acceptance_not_a_model_test.bin";
  std::ofstream(junk) << "hello, world";
  result<acceptance_scorer> j = acceptance_scorer::load(junk);
  REQUIRE(!j.has_value());
  CHECK(j.error().message.find(junk) != std::string::npos);
  CHECK(j.error().message.find("bad magic") != std::string::npos);
  std::remove(junk.c_str());
  CHECK(!a->save("/nonexistent-dir/x.bin").has_value());
}

TEST_CASE("an acceptance model pinned to a local model refuses another") {
  acceptance_model m = random_model(8, 3);
  result<acceptance_scorer> unpinned = acceptance_scorer::from_model(m);
  REQUIRE(unpinned.has_value());
  CHECK(unpinned->check_local_model("sha256:abc").has_value());
  m.local_model_id = "sha256:abc";
  result<acceptance_scorer> pinned = acceptance_scorer::from_model(m);
  REQUIRE(pinned.has_value());
  CHECK(pinned->check_local_model("sha256:abc").has_value());
  result<void> other = pinned->check_local_model("sha256:def");
  REQUIRE(!other.has_value());
  CHECK(other.error().message.find("sha256:abc") != std::string::npos);
  CHECK(other.error().message.find("sha256:def") != std::string::npos);
  CHECK(!pinned->check_local_model("").has_value());
}

// Prints the serving cost; asserts nothing about time (CI machines vary), only that scoring ran.
TEST_CASE("acceptance scoring time (printed)") {
  result<acceptance_scorer> scorer = acceptance_scorer::from_model(random_model(18, 9));
  REQUIRE(scorer.has_value());
  answer_signals s = sample_answer(7);
  // A 300-byte question after a few-shot prefix, and a 40-token answer.
  s.query = std::string(600, 'p') + "\n\n" + std::string(s.query.substr(s.query.find("Q:")));
  while (s.query.size() < 602 + 300) s.query += " more words here";
  s.token_logprobs.assign(40, -0.3);
  constexpr int runs = 2000;
  std::vector<double> us(runs);
  double sink = 0.0;
  for (int i = 0; i < runs; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    sink += scorer->score(s);
    us[i] = std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count();
  }
  std::sort(us.begin(), us.end());
  WARN("acceptance score(): p50 " << us[runs / 2] << " us, p99 " << us[runs * 99 / 100] << " us over " << runs
                                  << " runs");
  CHECK(sink > 0.0);
}
