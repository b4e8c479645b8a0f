// Acceptance features: the dense layout and its values, finiteness on hostile input, label matching (with and
// without a leading space, case, split labels), the query tail, and the answer x query conjunctions.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <iterator>
#include <limits>
#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "sluice/router/acceptance.h"

using namespace sluice::router;

namespace {

acceptance_config label_config() {
  acceptance_config c;
  c.hash_bits = 12;
  c.labels = {"up", "down", "neutral", "none"};
  return c;
}

// The dense block as an array (slot -> summed value), and the hashed block as (index, value) pairs.
struct split_features {
  std::vector<double> dense = std::vector<double>(acceptance_dense_count, 0.0);
  std::multiset<std::pair<uint32_t, float>> hashed;
};

split_features features_of(const acceptance_config& c, const answer_signals& s) {
  sparse_features f;
  extract_acceptance_features(c, s, f);
  REQUIRE(f.index.size() == f.value.size());
  split_features out;
  for (size_t i = 0; i < f.index.size(); ++i) {
    REQUIRE(f.index[i] < acceptance_feature_count(c));
    REQUIRE(std::isfinite(f.value[i]));
    if (f.index[i] < acceptance_dense_count) out.dense[f.index[i]] += f.value[i];
    else out.hashed.emplace(f.index[i], f.value[i]);
  }
  return out;
}

size_t slot(std::string_view name) {
  for (size_t i = 0; i < acceptance_dense_count; ++i)
    if (acceptance_dense_feature_name(i) == name) return i;
  FAIL("no dense slot named " << name);
  return 0;
}

answer_signals headline_row() {
  answer_signals s;
  s.query =
      "Please determine the price direction.\n\nQ: gold down $1 at $749\nA: down\n\nQ: Feb. gold loses $12.50\nA:";
  s.answer = " up";
  s.token_logprobs = {-0.38, -0.07};
  s.first_top_logprobs = {{" up", -0.38}, {" down", -1.98}, {" ", -4.37}, {" positive", -4.38}, {" increase", -4.49}};
  return s;
}

}  // namespace

TEST_CASE("acceptance feature layout: dense names, hashed block size") {
  acceptance_config c;
  CHECK(acceptance_feature_count(c) == acceptance_dense_count + (size_t{1} << 18));
  c.hash_bits = 10;
  CHECK(acceptance_feature_count(c) == acceptance_dense_count + 1024);
  std::set<std::string_view> names;
  for (size_t i = 0; i < acceptance_dense_count; ++i) {
    CHECK(!acceptance_dense_feature_name(i).empty());
    names.insert(acceptance_dense_feature_name(i));
  }
  CHECK(names.size() == acceptance_dense_count);
  CHECK(acceptance_dense_feature_name(acceptance_dense_count).empty());
  CHECK(slot("label_is_0") + max_acceptance_labels == slot("pre_score"));
}

TEST_CASE("acceptance config validation names the bad field") {
  acceptance_config c = label_config();
  CHECK(validate(c).empty());
  auto bad = [&](auto mutate, std::string_view needle) {
    acceptance_config x = label_config();
    mutate(x);
    const std::string why = validate(x);
    INFO(why);
    CHECK(why.find(needle) != std::string::npos);
  };
  bad([](acceptance_config& x) { x.hash_bits = 7; }, "hash_bits");
  bad([](acceptance_config& x) { x.hash_bits = 25; }, "hash_bits");
  bad([](acceptance_config& x) { x.word_ngram_max = 0; }, "word_ngram_max");
  bad([](acceptance_config& x) { x.word_ngram_max = 4; }, "word_ngram_max");
  bad([](acceptance_config& x) { x.top_logprobs = 0; }, "top_logprobs");
  bad([](acceptance_config& x) { x.top_logprobs = 21; }, "top_logprobs");
  bad([](acceptance_config& x) { x.labels.push_back("Up"); }, "not normalised");
  bad([](acceptance_config& x) { x.labels.push_back(" maybe"); }, "'maybe'");
  bad([](acceptance_config& x) { x.labels.push_back("down"); }, "twice");
  bad([](acceptance_config& x) { x.labels.push_back(""); }, "1..64 bytes");
  bad([](acceptance_config& x) { x.labels.assign(17, "x"); }, "at most 16");
}

TEST_CASE("normalise_answer trims spaces and punctuation and lower-cases; label_index finds labels") {
  CHECK(normalise_answer(" Up.\n") == "up");
  CHECK(normalise_answer("DOWN") == "down");
  CHECK(normalise_answer("  \"Not sure!\" ") == "not sure");
  CHECK(normalise_answer("...").empty());
  CHECK(normalise_answer("").empty());
  CHECK(normalise_answer("\xc3\x89t\xc3\xa9") == "\xc3\x89t\xc3\xa9");  // UTF-8 kept as is
  const acceptance_config c = label_config();
  CHECK(label_index(c, " up") == 0u);
  CHECK(label_index(c, "Down.") == 1u);
  CHECK(label_index(c, " none\n") == 3u);
  CHECK(!label_index(c, " upward"));
  CHECK(!label_index(c, ""));
}

TEST_CASE("dense features of a headline answer") {
  acceptance_config c = label_config();
  answer_signals s = headline_row();
  s.finish = finish_reason::length;
  s.pre_score = 0.25;
  const split_features f = features_of(c, s);
  const auto d = [&](std::string_view name) { return f.dense[slot(name)]; };
  CHECK(d("log_tokens") == Approx(std::log1p(2.0) / 5.0));
  CHECK(d("has_token_logprobs") == 1.0);
  CHECK(d("mean_logprob") == Approx(-0.225 * 0.2));
  CHECK(d("min_logprob") == Approx(-0.38 * 0.2));
  CHECK(d("first_logprob") == Approx(-0.38 * 0.2));
  CHECK(d("finish_length") == 1.0);
  CHECK(d("answer_empty") == 0.0);
  CHECK(d("has_top_logprobs") == 1.0);
  CHECK(d("top1_prob") == Approx(std::exp(-0.38)));
  CHECK(d("top12_margin") == Approx(std::exp(-0.38) - std::exp(-1.98)));
  CHECK(d("topk_entropy") > 0.0);
  CHECK(d("topk_entropy") < 1.0);
  CHECK(d("answer_is_label") == 1.0);
  CHECK(d("label_is_0") == 1.0);
  CHECK(d("label_is_1") == 0.0);
  // up -0.38, down -1.98, neutral and none absent: floor = lowest listed (-4.49) - 1.
  const double e[] = {std::exp(-0.38), std::exp(-1.98), std::exp(-5.49), std::exp(-5.49)};
  const double z = e[0] + e[1] + e[2] + e[3];
  CHECK(d("label_prob_answer") == Approx(e[0] / z));
  CHECK(d("label_prob_max") == Approx(e[0] / z));
  CHECK(d("label_margin") == Approx((e[0] - e[1]) / z));
  double h = 0.0;
  for (double x : e) h -= x / z * std::log(x / z);
  CHECK(d("label_entropy") == Approx(h / std::log(4.0)));
  CHECK(d("pre_score") == Approx(0.25));
  CHECK(d("has_pre_score") == 1.0);
}

TEST_CASE("token log-prob quantiles are lower nearest-rank quantiles; long answers are sampled") {
  acceptance_config c = label_config();
  answer_signals s = headline_row();
  s.token_logprobs.clear();
  for (int i = 1; i <= 20; ++i) s.token_logprobs.push_back(-0.1 * i);  // sorted: -2.0 .. -0.1
  split_features f = features_of(c, s);
  CHECK(f.dense[slot("q50_logprob")] == Approx(-1.1 * 0.2));  // rank (20 - 1) / 2 = 9
  CHECK(f.dense[slot("q25_logprob")] == Approx(-1.6 * 0.2));  // rank 4
  CHECK(f.dense[slot("q10_logprob")] == Approx(-1.9 * 0.2));  // rank 1
  CHECK(f.dense[slot("min_logprob")] == Approx(-2.0 * 0.2));
  CHECK(f.dense[slot("first_logprob")] == Approx(-0.1 * 0.2));
  // 5000 tokens, one in ten unlikely: the sample keeps the shape.
  s.token_logprobs.assign(5000, -0.01);
  for (size_t i = 0; i < s.token_logprobs.size(); i += 10) s.token_logprobs[i] = -5.0;
  f = features_of(c, s);
  CHECK(f.dense[slot("q50_logprob")] == Approx(-0.01 * 0.2));
  CHECK(f.dense[slot("q10_logprob")] == Approx(-5.0 * 0.2));
  CHECK(f.dense[slot("mean_logprob")] == Approx((0.9 * -0.01 + 0.1 * -5.0) * 0.2));
}

TEST_CASE("labels match first-token alternatives with or without a leading space, in any case") {
  const acceptance_config c = label_config();
  answer_signals a = headline_row();
  a.answer = "down";
  a.first_top_logprobs = {{"up", -0.5}, {" Down", -1.5}};
  answer_signals b = a;
  b.first_top_logprobs = {{" up", -0.5}, {"down", -1.5}};
  const split_features fa = features_of(c, a), fb = features_of(c, b);
  CHECK(fa.dense == fb.dense);
  const double e[] = {std::exp(-0.5), std::exp(-1.5), std::exp(-2.5), std::exp(-2.5)};  // floor -1.5 - 1
  const double z = e[0] + e[1] + e[2] + e[3];
  CHECK(fa.dense[slot("label_prob_answer")] == Approx(e[1] / z));
  CHECK(fa.dense[slot("label_prob_max")] == Approx(e[0] / z));
  CHECK(fa.dense[slot("label_is_1")] == 1.0);

  SECTION("the first matching alternative counts") {
    answer_signals x = a;
    x.first_top_logprobs = {{" up", -0.5}, {"Up", -0.7}, {" down", -1.5}};
    const split_features f = features_of(c, x);
    for (std::string_view name : {"label_prob_answer", "label_prob_max", "label_margin", "label_entropy"})
      CHECK(f.dense[slot(name)] == Approx(fa.dense[slot(name)]));
  }
  SECTION("a label split by the tokenizer matches a prefix that belongs to it alone") {
    answer_signals x = a;
    x.answer = "neutral";
    x.first_top_logprobs = {{" neut", -0.2}, {" up", -3.0}};
    const split_features f = features_of(c, x);
    CHECK(f.dense[slot("label_prob_max")] == Approx(f.dense[slot("label_prob_answer")]));
    // " n" starts both "neutral" and "none": it counts for neither.
    x.first_top_logprobs = {{" n", -0.2}, {" up", -3.0}};
    const split_features g = features_of(c, x);
    CHECK(g.dense[slot("label_prob_answer")] < g.dense[slot("label_prob_max")]);
  }
  SECTION("no alternatives: the labels are equally likely") {
    answer_signals x = a;
    x.first_top_logprobs.clear();
    const split_features f = features_of(c, x);
    CHECK(f.dense[slot("has_top_logprobs")] == 0.0);
    CHECK(f.dense[slot("label_prob_answer")] == Approx(0.25));
    CHECK(f.dense[slot("label_margin")] == Approx(0.0).margin(1e-7));
    CHECK(f.dense[slot("label_entropy")] == Approx(1.0));
  }
  SECTION("no labels configured: the label slots stay 0") {
    acceptance_config free_text = c;
    free_text.labels.clear();
    const split_features f = features_of(free_text, a);
    for (size_t i = slot("answer_is_label"); i < slot("pre_score"); ++i) CHECK(f.dense[i] == 0.0);
  }
  SECTION("only top_logprobs alternatives are read, as serving would supply") {
    acceptance_config one = c;
    one.top_logprobs = 1;
    const split_features f = features_of(one, a);
    CHECK(f.dense[slot("top12_margin")] == Approx(std::exp(-0.5)));
    CHECK(f.dense[slot("topk_entropy")] == 0.0);
  }
}

TEST_CASE("every dense value is finite on hostile input") {
  const double nan = std::numeric_limits<double>::quiet_NaN(), inf = std::numeric_limits<double>::infinity();
  acceptance_config c = label_config();
  std::vector<answer_signals> cases(6);
  cases[1].token_logprobs = {nan, -inf, inf, 5.0, -1e300};
  cases[1].first_top_logprobs = {{" up", nan}, {"down", -inf}, {"", inf}, {"\xff\xfe", -1e308}};
  cases[1].pre_score = nan;
  cases[2].answer = std::string(5000, '\xff');
  cases[2].query = std::string(100000, 'q') + "\n\n" + std::string(3000, '\0');
  cases[2].pre_score = inf;
  cases[3].answer = "...";
  cases[3].token_logprobs.assign(100000, -inf);
  cases[3].first_top_logprobs.assign(40, {" none", -inf});  // more than top_logprobs and max_top_logprobs
  cases[4].query = "\n\n\n\n";
  cases[4].token_logprobs = {nan};
  cases[4].first_top_logprobs = {{" up", 0.0}};
  cases[5].first_top_logprobs = {{" up", -0.1}, {" up", -0.1}};
  cases[5].pre_score = -1e300;
  for (uint32_t ngrams : {1u, 2u, 3u}) {
    c.word_ngram_max = ngrams;
    for (size_t i = 0; i < cases.size(); ++i) {
      INFO("case " << i << ", ngrams " << ngrams);
      const split_features f = features_of(c, cases[i]);  // checks indices and finiteness
      for (double v : f.dense) CHECK(std::isfinite(v));
    }
  }
  const split_features f = features_of(c, cases[1]);
  CHECK(f.dense[slot("min_logprob")] == Approx(-20.0 * 0.2));
  CHECK(f.dense[slot("has_pre_score")] == 0.0);  // NaN is no pre-score
  CHECK(features_of(c, cases[2]).dense[slot("pre_score")] == 10.0);
  CHECK(features_of(c, cases[3]).dense[slot("answer_empty")] == 1.0);
  CHECK(features_of(c, cases[0]).dense[slot("answer_empty")] == 1.0);
  // An invalid config extracts nothing rather than indexing out of range.
  acceptance_config broken = c;
  broken.hash_bits = 0;
  sparse_features out;
  extract_acceptance_features(broken, headline_row(), out);
  CHECK(out.index.empty());
}

TEST_CASE("only the query's tail is featurised: after the last blank line, at most 1000 bytes") {
  const acceptance_config c = label_config();
  answer_signals a = headline_row(), b = a;
  b.query = "Q: Feb. gold loses $12.50\nA:";  // headline_row's query without its few-shot prefix
  CHECK(features_of(c, a).hashed == features_of(c, b).hashed);
  b.query = "Different instructions.\n\nQ: gold gains\nA: up\n\nQ: Feb. gold loses $12.50\nA:";
  CHECK(features_of(c, a).hashed == features_of(c, b).hashed);

  std::string tail;
  for (int i = 0; tail.size() < 800; ++i) tail += "word" + std::string(1, static_cast<char>('a' + i % 26)) + " ";
  answer_signals t = a, longer = a;
  t.query = tail;
  // 1500 bytes of one word before the tail: the cut falls inside it, and the partial word is dropped.
  longer.query = std::string(1500, 'x') + " " + tail;
  CHECK(features_of(c, longer).hashed == features_of(c, t).hashed);
  // A cut exactly at a word's start keeps that word; one byte later, it is dropped.
  const size_t y = 999 - tail.size();
  longer.query = std::string(1500, 'x') + " " + std::string(y, 'y') + " " + tail;
  CHECK(features_of(c, longer).hashed != features_of(c, t).hashed);
  longer.query = std::string(1500, 'x') + " " + std::string(y + 1, 'y') + " " + tail;
  CHECK(features_of(c, longer).hashed == features_of(c, t).hashed);
}

TEST_CASE("hashed features: query n-grams, answer words, and answer x query conjunctions") {
  acceptance_config c = label_config();
  answer_signals up = headline_row();
  up.query = "gold gains";
  answer_signals down = up;
  down.answer = " DOWN.";
  // 2 unigrams + 1 bigram of the query, 1 answer word, 3 conjunctions.
  const split_features fu = features_of(c, up), fd = features_of(c, down);
  REQUIRE(fu.hashed.size() == 7);
  REQUIRE(fd.hashed.size() == 7);
  std::vector<std::pair<uint32_t, float>> common;
  std::set_intersection(fu.hashed.begin(), fu.hashed.end(), fd.hashed.begin(), fd.hashed.end(),
                        std::back_inserter(common));
  CHECK(common.size() == 3);  // only the query's own n-grams are shared: the conjunctions differ per answer
  // Case and punctuation do not change the answer's identity.
  answer_signals down2 = down;
  down2.answer = "down";
  CHECK(features_of(c, down2).hashed == fd.hashed);

  c.word_ngram_max = 1;
  CHECK(features_of(c, up).hashed.size() == 2 + 1 + 2);
  c.word_ngram_max = 3;
  up.query = "gold gains today";
  CHECK(features_of(c, up).hashed.size() == (3 + 2 + 1) + 1 + (3 + 2));  // conjunctions stop at bigrams
  // Numbers hash by their digit count: prices do not fragment the vocabulary.
  answer_signals p1 = up, p2 = up;
  p1.query = "gold at 749";
  p2.query = "gold at 812";
  CHECK(features_of(c, p1).hashed == features_of(c, p2).hashed);
  // The hash seed moves every hashed feature.
  acceptance_config seeded = c;
  seeded.hash_seed ^= 1;
  CHECK(features_of(seeded, up).hashed != features_of(c, up).hashed);
}
