// The router model file (round trip; truncated, flipped, wrong-version and mismatched files are refused with a
// clear error) and the classifier's scoring (the allocation-free serving path equals the training features).
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <random>
#include <string>

#include "sluice/router/classifier.h"
#include "sluice/router/train.h"

using namespace sluice::router;

namespace {

router_model random_model(uint32_t hidden, uint64_t seed) {
  router_model m;
  m.features.hash_bits = 10;
  m.features.char_ngram_min = 3;
  m.features.char_ngram_max = 5;
  m.hidden_units = hidden;
  std::mt19937_64 rng(seed);
  auto r = [&] { return static_cast<float>(static_cast<double>(rng() >> 11) * 0x1.0p-53 - 0.5); };
  m.input_weights.resize(feature_count(m.features) * (hidden ? hidden : 1));
  for (float& w : m.input_weights) w = r();
  m.hidden_bias.resize(hidden);
  m.output_weights.resize(hidden);
  for (float& w : m.hidden_bias) w = r();
  for (float& w : m.output_weights) w = r();
  m.output_bias = r();
  m.notes = "test model";
  return m;
}

// FNV-1a 64, as the file format specifies, to forge files whose only defect is the one under test.
uint64_t fnv1a64(std::string_view b) {
  uint64_t h = 0xcbf29ce484222325ULL;
  for (unsigned char c : b) h = (h ^ c) * 0x100000001b3ULL;
  return h;
}
void reseal(std::string& file) {
  const uint64_t h = fnv1a64(std::string_view(file).substr(0, file.size() - 8));
  std::memcpy(file.data() + file.size() - 8, &h, 8);
}
void put_u32(std::string& file, size_t offset, uint32_t v) { std::memcpy(file.data() + offset, &v, 4); }

// Header offsets (see router_model_file.cpp).
constexpr size_t off_version = 8, off_extractor = 12, off_hash_bits = 16, off_hidden = 40, off_n_features = 44;

std::string decode_error(const std::string& bytes) {
  result<router_model> m = decode_router_model(bytes, "test.bin");
  return m ? std::string() : m.error().message;
}

const chat_request sample = request_from_prompt("Which planet is largest?\nA. Mars\nB. Jupiter\nAnswer:");

}  // namespace

TEST_CASE("model file round trip keeps every parameter and the score") {
  for (uint32_t hidden : {0u, 4u}) {
    const router_model m = random_model(hidden, 7 + hidden);
    const std::string bytes = encode_router_model(m);
    result<router_model> back = decode_router_model(bytes);
    REQUIRE(back.has_value());
    CHECK(back->features == m.features);
    CHECK(back->hidden_units == m.hidden_units);
    CHECK(back->input_weights == m.input_weights);
    CHECK(back->hidden_bias == m.hidden_bias);
    CHECK(back->output_weights == m.output_weights);
    CHECK(back->output_bias == m.output_bias);
    CHECK(back->notes == m.notes);
    CHECK(encode_router_model(*back) == bytes);

    const std::string path = "router_model_roundtrip_" + std::to_string(hidden) + ".bin";
    result<classifier> a = classifier::from_model(m);
    REQUIRE(a.has_value());
    REQUIRE(a->save(path).has_value());
    result<classifier> b = classifier::load(path);
    REQUIRE(b.has_value());
    CHECK(b->score(sample) == a->score(sample));
    std::remove(path.c_str());
  }
}

TEST_CASE("every truncation of a model file is refused") {
  const std::string bytes = encode_router_model(random_model(0, 1));
  for (size_t len = 0; len < bytes.size(); len += (len < 200 ? 1 : 997)) {
    const std::string err = decode_error(bytes.substr(0, len));
    INFO("length " << len);
    CHECK_FALSE(err.empty());
  }
  CHECK(decode_error(bytes.substr(0, bytes.size() - 1)).find("truncated") != std::string::npos);
  CHECK(decode_error(bytes + "x").find("trailing") != std::string::npos);
}

TEST_CASE("flipped bytes anywhere in a model file are refused") {
  const std::string bytes = encode_router_model(random_model(2, 3));
  std::mt19937_64 rng(5);
  for (int i = 0; i < 300; ++i) {
    std::string bad = bytes;
    const size_t pos = i < 100 ? static_cast<size_t>(i) : static_cast<size_t>(rng() % bytes.size());
    bad[pos] = static_cast<char>(bad[pos] ^ (1 << (rng() % 8)));
    INFO("flipped byte " << pos);
    CHECK_FALSE(decode_error(bad).empty());
  }
  std::string weights_flip = bytes;
  weights_flip[bytes.size() / 2] ^= 0x10;
  CHECK(decode_error(weights_flip).find("checksum") != std::string::npos);
}

TEST_CASE("wrong magic, format version or extractor version is refused by name") {
  const std::string bytes = encode_router_model(random_model(0, 2));
  std::string bad = bytes;
  bad[0] = 'X';
  CHECK(decode_error(bad).find("magic") != std::string::npos);
  bad = bytes;
  put_u32(bad, off_version, 2);
  reseal(bad);
  CHECK(decode_error(bad).find("format version 2") != std::string::npos);
  bad = bytes;
  put_u32(bad, off_extractor, feature_extractor_version + 1);
  reseal(bad);
  CHECK(decode_error(bad).find("feature extractor version") != std::string::npos);
}

TEST_CASE("a feature config that does not match the weights is refused") {
  const std::string bytes = encode_router_model(random_model(0, 4));
  std::string bad = bytes;
  put_u32(bad, off_hash_bits, 11);  // the weights were sized for 10 bits
  reseal(bad);
  CHECK(decode_error(bad).find("feature config mismatch") != std::string::npos);
  bad = bytes;
  put_u32(bad, off_hash_bits, 40);  // out of range altogether
  reseal(bad);
  CHECK(decode_error(bad).find("hash_bits") != std::string::npos);
  bad = bytes;
  put_u32(bad, off_hidden, 3);  // claims a hidden layer the weights do not have
  reseal(bad);
  CHECK(decode_error(bad).find("mismatch") != std::string::npos);
  bad = bytes;
  const uint64_t n = 12345;
  std::memcpy(bad.data() + off_n_features, &n, 8);
  reseal(bad);
  CHECK(decode_error(bad).find("feature config mismatch") != std::string::npos);
}

TEST_CASE("non-finite parameters are refused") {
  router_model m = random_model(0, 6);
  m.input_weights[17] = std::nanf("");
  CHECK(decode_error(encode_router_model(m)).find("finite") != std::string::npos);
  CHECK_FALSE(classifier::from_model(m).has_value());
}

TEST_CASE("loading a missing or non-model file fails with the path in the message") {
  result<classifier> c = classifier::load("/nonexistent/dir/model.bin");
  REQUIRE_FALSE(c.has_value());
  CHECK(c.error().message.find("/nonexistent/dir/model.bin") != std::string::npos);
  const std::string path = "router_not_a_model.bin";
  std::ofstream(path) << "hello";
  result<classifier> d = classifier::load(path);
  REQUIRE_FALSE(d.has_value());
  CHECK(d.error().message.find("magic") != std::string::npos);
  std::remove(path.c_str());
}

TEST_CASE("serving scores equal the model applied to the extracted features") {
  for (uint32_t hidden : {0u, 3u}) {
    const router_model m = random_model(hidden, 11);
    result<classifier> c = classifier::from_model(m);
    REQUIRE(c.has_value());
    for (const char* prompt : {"", "short", "A long prompt with code: def f(x): return x**2; and math $x^2$ and more words.",
                               "Which one?\nA. one\nB. two\nC. three\nAnswer:"}) {
      chat_request r = request_from_prompt(prompt);
      sparse_features f;
      extract_features(m.features, r, f);
      double z = m.output_bias;
      if (hidden == 0) {
        for (size_t i = 0; i < f.index.size(); ++i) z += static_cast<double>(m.input_weights[f.index[i]]) * f.value[i];
      } else {
        for (uint32_t k = 0; k < hidden; ++k) {
          double a = m.hidden_bias[k];
          for (size_t i = 0; i < f.index.size(); ++i) a += m.input_weights[f.index[i] * hidden + k] * f.value[i];
          z += m.output_weights[k] * std::tanh(a);
        }
      }
      INFO(prompt);
      CHECK(c->logit(r) == Approx(z).epsilon(1e-4).margin(1e-5));
      const double s = c->score(r);
      CHECK(s >= 0.0);
      CHECK(s <= 1.0);
      CHECK(s == Approx(1.0 / (1.0 + std::exp(-z))).epsilon(1e-4));
    }
  }
}
