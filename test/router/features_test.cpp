// Feature extraction: text statistics, request parameters, hashing, block scaling, config validation.
#include <catch2/catch.hpp>

#include <cmath>
#include <map>
#include <string>

#include "sluice/router/features.h"
#include "sluice/router/train.h"

using namespace sluice::router;

namespace {

size_t slot(std::string_view name) {
  for (size_t i = 0; i < dense_feature_count; ++i)
    if (dense_feature_name(i) == name) return i;
  FAIL("no dense feature named " << name);
  return 0;
}

// Dense slot -> value, hashed features -> summed value per index.
std::map<uint32_t, double> as_map(const sparse_features& f) {
  std::map<uint32_t, double> m;
  for (size_t i = 0; i < f.index.size(); ++i) m[f.index[i]] += f.value[i];
  return m;
}

feature_config plain_config() {
  feature_config c;
  c.format_cues = 0;  // dense features in their own slots, so tests can read them by name
  return c;
}

double dense(const chat_request& r, std::string_view name, feature_config c = plain_config()) {
  sparse_features f;
  extract_features(c, r, f);
  auto m = as_map(f);
  auto it = m.find(static_cast<uint32_t>(slot(name)));
  return it == m.end() ? 0.0 : it->second;
}

}  // namespace

TEST_CASE("dense feature names are unique and cover the dense block") {
  std::map<std::string_view, int> seen;
  for (size_t i = 0; i < dense_feature_count; ++i) {
    REQUIRE_FALSE(dense_feature_name(i).empty());
    ++seen[dense_feature_name(i)];
  }
  CHECK(seen.size() == dense_feature_count);
  CHECK(dense_feature_name(dense_feature_count).empty());
}

TEST_CASE("text statistics describe the prompt") {
  const chat_request r = request_from_prompt("What is 12 + 30? Which of the following is NOT prime?\nA. 2\nB. 9\nAnswer:");
  CHECK(dense(r, "log_chars") == Approx(std::log1p(71.0) / 8.0));
  CHECK(dense(r, "question_marks") == Approx(std::log1p(2.0) / 2.0));
  CHECK(dense(r, "wh_words") == Approx(std::log1p(2.0) / 2.0));  // what, which
  CHECK(dense(r, "emphasised_negation") == 1.0);                  // NOT in capitals
  CHECK(dense(r, "the_following") == 1.0);
  CHECK(dense(r, "option_lines") == Approx(std::log1p(2.0) / 2.0));
  CHECK(dense(r, "digit_share") == Approx(6.0 / 71.0));  // 1 2 3 0 2 9
  CHECK(dense(r, "numbers") == Approx(std::log1p(4.0) / 3.0));
  CHECK(dense(r, "log_lines") == Approx(std::log1p(4.0) / 5.0));
  // 71 chars: floor(2 log2(72)) - 10 = 2 -> the third length bin, and only that one.
  CHECK(dense(r, "length_bin_64") == 1.0);
  CHECK(dense(r, "length_bin_32") == 0.0);
}

TEST_CASE("code, math and JSON markers are counted") {
  const chat_request code = request_from_prompt("def f(x):\n    return {\"a\": x};\n```\nprint(f(1))\n```");
  // def, an indented line, return, { } ; six backticks, print: 13 markers.
  CHECK(dense(code, "code_markers") == Approx(std::log1p(13.0) / 3.0));
  CHECK(dense(code, "json_markers") > 0.3);
  const chat_request prose = request_from_prompt("Tell me a story about a small dog in the park.");
  CHECK(dense(prose, "code_markers") == 0.0);
  CHECK(dense(prose, "json_markers") == 0.0);
  CHECK(dense(prose, "digit_share") == 0.0);
  const chat_request math = request_from_prompt("Solve for x: x^2 + 3x = 10, then compute the integral of $x^2$.");
  CHECK(dense(math, "math_operators") > 0.0);
  CHECK(dense(math, "math_symbols") > 0.0);
  CHECK(dense(math, "math_words") == Approx(std::log1p(3.0) / 2.0));  // solve, compute, integral
  CHECK(dense(request_from_prompt("  {\"k\": 1}"), "starts_with_brace") == 1.0);
}

TEST_CASE("request parameters become features") {
  chat_request r = request_from_prompt("hi");
  CHECK(dense(r, "has_max_tokens") == 0.0);
  CHECK(dense(r, "has_tools") == 0.0);
  r.max_output_tokens = 255;
  r.response_format_ = response_format::json_schema;
  r.has_tools = true;
  r.sampling.temperature = 0.5;
  r.stop = {"\n"};
  CHECK(dense(r, "has_max_tokens") == 1.0);
  CHECK(dense(r, "log_max_tokens") == Approx(std::log1p(255.0) / 8.0));
  CHECK(dense(r, "format_json_schema") == 1.0);
  CHECK(dense(r, "format_json_object") == 0.0);
  CHECK(dense(r, "has_tools") == 1.0);
  CHECK(dense(r, "has_temperature") == 1.0);
  CHECK(dense(r, "temperature") == Approx(0.25));
  CHECK(dense(r, "has_stop") == 1.0);
}

TEST_CASE("conversation shape: the last user message is the focus, the rest counts as context") {
  chat_request r;
  r.messages.push_back({role::system, "You are terse.", {}, {}, {}, 0});
  r.messages.push_back({role::user, "first question", {}, {}, {}, 0});
  r.messages.push_back({role::assistant, "first answer", {}, {}, {}, 0});
  r.messages.push_back({role::user, "Why?", {}, {}, {}, 0});
  CHECK(dense(r, "has_system") == 1.0);
  CHECK(dense(r, "turns") == Approx(std::log1p(4.0) / 3.0));
  CHECK(dense(r, "assistant_turns") == Approx(std::log1p(1.0) / 3.0));
  CHECK(dense(r, "log_chars") == Approx(std::log1p(4.0) / 8.0));  // "Why?"
  CHECK(dense(r, "log_context_chars") == Approx(std::log1p(14.0 + 14 + 12) / 8.0));
  CHECK(dense(r, "question_marks") == Approx(std::log1p(1.0) / 2.0));
}

TEST_CASE("hashed n-grams: deterministic, signed, inside the table, each block scaled to unit norm") {
  feature_config c = plain_config();
  c.hash_bits = 12;
  const chat_request r = request_from_prompt("the quick brown fox jumps over the lazy dog");
  sparse_features a, b;
  extract_features(c, r, a);
  extract_features(c, r, b);
  CHECK(a.index == b.index);
  CHECK(a.value == b.value);
  double sum_sq = 0.0;
  size_t hashed = 0;
  for (size_t i = 0; i < a.index.size(); ++i) {
    REQUIRE(a.index[i] < feature_count(c));
    if (a.index[i] >= dense_feature_count) {
      ++hashed;
      sum_sq += static_cast<double>(a.value[i]) * a.value[i];
    }
  }
  // 9 words: 9 unigrams + 8 bigrams; 43 bytes -> 40 character 4-grams.
  CHECK(hashed == 9 + 8 + 40);
  CHECK(sum_sq == Approx(2.0).epsilon(1e-5));  // two blocks, each of unit L2 norm before collisions add up

  feature_config other = c;
  other.hash_seed ^= 1;
  sparse_features d;
  extract_features(other, r, d);
  CHECK(d.index != a.index);  // the seed is part of the feature definition
}

TEST_CASE("digits are normalised and case is folded for n-grams") {
  feature_config c = plain_config();
  sparse_features a, b;
  extract_features(c, request_from_prompt("Add 17 APPLES"), a);
  extract_features(c, request_from_prompt("add 42 apples"), b);
  auto hashed = [](const sparse_features& f) {
    std::map<uint32_t, double> m;
    for (size_t i = 0; i < f.index.size(); ++i)
      if (f.index[i] >= dense_feature_count) m[f.index[i]] += f.value[i];
    return m;
  };
  CHECK(hashed(a) == hashed(b));
}

TEST_CASE("format cues move every feature into the hashed block") {
  feature_config c;  // format_cues = 1 by default
  sparse_features mc, free_form;
  extract_features(c, request_from_prompt("Pick one.\nA. red\nB. blue\nAnswer:"), mc);
  extract_features(c, request_from_prompt("Pick one: red or blue?"), free_form);
  for (uint32_t i : mc.index) CHECK(i >= dense_feature_count);
  // The same word in the two formats lands in different slots.
  sparse_features w1, w2;
  extract_features(c, request_from_prompt("Pick\nA. x\nB. y"), w1);
  extract_features(c, request_from_prompt("Pick"), w2);
  CHECK(w1.index.front() != w2.index.front());
}

TEST_CASE("empty requests and odd bytes are handled") {
  sparse_features f;
  chat_request empty;
  extract_features(feature_config{}, empty, f);
  for (float v : f.value) CHECK(std::isfinite(v));
  extract_features(feature_config{}, request_from_prompt(std::string("\xff\xfe\x00\x80 caf\xc3\xa9", 10)), f);
  for (float v : f.value) CHECK(std::isfinite(v));
}

TEST_CASE("feature config validation names the bad field") {
  feature_config c;
  CHECK(validate(c).empty());
  c.hash_bits = 30;
  CHECK(validate(c).find("hash_bits") != std::string_view::npos);
  c = {};
  c.char_ngram_min = 5;
  c.char_ngram_max = 3;
  CHECK(validate(c).find("char_ngram_max") != std::string_view::npos);
  c = {};
  c.word_ngram_max = 4;
  CHECK(!validate(c).empty());
  c = {};
  c.char_ngram_min = 0;
  c.char_ngram_max = 0;
  c.word_ngram_max = 0;
  CHECK(validate(c).empty());  // dense features only
}

TEST_CASE("a word hashes the same wherever it sits in the text") {
  feature_config c = plain_config();
  c.char_ngram_min = c.char_ngram_max = 0;  // word features only
  sparse_features alone, first, last;
  extract_features(c, request_from_prompt("Zebra"), alone);
  extract_features(c, request_from_prompt("zebra crossing the long road near the station today"), first);
  extract_features(c, request_from_prompt("look, a ZEBRA"), last);
  uint32_t zebra = 0;
  for (uint32_t i : alone.index)
    if (i >= dense_feature_count) zebra = i;
  REQUIRE(zebra != 0);
  auto has = [&](const sparse_features& f) {
    for (uint32_t i : f.index)
      if (i == zebra) return true;
    return false;
  };
  CHECK(has(first));
  CHECK(has(last));
}

TEST_CASE("several character n-gram sizes: one feature per position and size") {
  feature_config c = plain_config();
  c.word_ngram_max = 0;
  c.char_ngram_min = 3;
  c.char_ngram_max = 5;
  sparse_features f;
  extract_features(c, request_from_prompt("abcdefgh"), f);  // 8 bytes: 6 trigrams, 5 four-grams, 4 five-grams
  size_t hashed = 0;
  for (uint32_t i : f.index) hashed += i >= dense_feature_count;
  CHECK(hashed == 6 + 5 + 4);
}
