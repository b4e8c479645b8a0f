// The acceptance model file: a lossless round trip, and every kind of damage refused with an error that says what.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <utility>

#include "sluice/router/acceptance.h"

using namespace sluice::router;

namespace {

acceptance_model small_model() {
  acceptance_model m;
  m.config.hash_bits = 8;
  m.config.word_ngram_max = 3;
  m.config.hash_seed = 77;
  m.config.top_logprobs = 7;
  m.config.labels = {"up", "down", "not sure"};
  m.weights.resize(acceptance_feature_count(m.config));
  for (size_t i = 0; i < m.weights.size(); ++i) m.weights[i] = static_cast<float>(std::sin(static_cast<double>(i)));
  m.bias = -0.75f;
  m.threshold = 0.625;
  m.threshold_rule = "min_precision=0.9";
  m.curve = {{0.1, 1.0, 0.45}, {0.625, 0.3, 0.91}, {0.99, 0.0, std::nan("")}};
  m.local_model_id = "sha256:" + std::string(64, 'a');
  m.notes = "sluice train-cascade --data x.jsonl";
  return m;
}

uint64_t fnv1a64(std::string_view bytes) {
  uint64_t h = 0xcbf29ce484222325ULL;
  for (unsigned char c : bytes) h = (h ^ c) * 0x100000001b3ULL;
  return h;
}

// Rewrites the trailing checksum so that a deliberate change reaches the checks behind it.
void reseal(std::string& bytes) {
  const uint64_t h = fnv1a64(std::string_view(bytes).substr(0, bytes.size() - 8));
  std::memcpy(bytes.data() + bytes.size() - 8, &h, 8);
}

template <class T>
void poke(std::string& bytes, size_t offset, T v) {
  std::memcpy(bytes.data() + offset, &v, sizeof v);
}

std::string decode_error(std::string_view bytes) {
  result<acceptance_model> m = decode_acceptance_model(bytes, "test.bin");
  if (m) return "(decoded)";
  return m.error().message;
}

// Offsets in small_model()'s encoding (acceptance_model_file.cpp has the layout).
constexpr size_t off_version = 8, off_extractor = 12, off_hash_bits = 16, off_n_labels = 32;
size_t off_n_features(const acceptance_model& m) {
  size_t at = off_n_labels + 4;
  for (const std::string& l : m.config.labels) at += 4 + l.size();
  return at;
}

}  // namespace

TEST_CASE("acceptance model file round trip is lossless") {
  const acceptance_model m = small_model();
  REQUIRE(m.check().empty());
  const std::string bytes = encode_acceptance_model(m);
  CHECK(bytes.substr(0, 8) == "SLUICEAM");
  result<acceptance_model> back = decode_acceptance_model(bytes);
  REQUIRE(back.has_value());
  CHECK(back->config == m.config);
  CHECK(std::memcmp(back->weights.data(), m.weights.data(), 4 * m.weights.size()) == 0);
  CHECK(back->bias == m.bias);
  CHECK(back->threshold == m.threshold);
  CHECK(back->threshold_rule == m.threshold_rule);
  CHECK(back->local_model_id == m.local_model_id);
  CHECK(back->notes == m.notes);
  REQUIRE(back->curve.size() == 3);
  CHECK(back->curve[1].accept_rate == 0.3);
  CHECK(std::isnan(back->curve[2].precision));
  CHECK(encode_acceptance_model(*back) == bytes);

  acceptance_model empty_fields = m;
  empty_fields.config.labels.clear();
  empty_fields.curve.clear();
  empty_fields.notes.clear();
  empty_fields.local_model_id.clear();
  empty_fields.threshold_rule.clear();
  result<acceptance_model> e = decode_acceptance_model(encode_acceptance_model(empty_fields));
  REQUIRE(e.has_value());
  CHECK(e->config.labels.empty());
  CHECK(e->curve.empty());
}

TEST_CASE("every truncation of an acceptance model file is refused as truncated") {
  const std::string bytes = encode_acceptance_model(small_model());
  for (size_t n = 0; n < bytes.size(); ++n) {
    const std::string why = decode_error(std::string_view(bytes).substr(0, n));
    INFO("length " << n << ": " << why);
    REQUIRE(why.find("test.bin: ") == 0);
    if (n == 0) continue;  // nothing at all: cannot tell a truncated model from another file
    REQUIRE(why.find("truncated") != std::string::npos);
  }
}

TEST_CASE("damaged acceptance model files are refused with the reason") {
  const acceptance_model m = small_model();
  const std::string good = encode_acceptance_model(m);
  auto refused = [](std::string bytes, std::string_view needle) {
    const std::string why = decode_error(bytes);
    INFO(why);
    CHECK(why.find(needle) != std::string::npos);
  };
  std::string b = good;
  b[0] = 'X';
  refused(b, "bad magic");
  refused("SLUICERM" + good.substr(8), "bad magic");  // a router model is not an acceptance model

  b = good;
  poke<uint32_t>(b, off_version, 2);
  refused(b, "unsupported format version 2");
  b = good;
  poke<uint32_t>(b, off_extractor, acceptance_extractor_version + 1);
  refused(b, "retrain");

  b = good;
  b[b.size() / 2] ^= 0x10;  // a weight bit: only the checksum notices
  refused(b, "checksum mismatch");
  refused(good + "x", "trailing bytes");

  b = good;
  poke<uint32_t>(b, off_hash_bits, 30);
  reseal(b);
  refused(b, "invalid config: hash_bits");
  b = good;
  poke<uint32_t>(b, off_n_labels, 99);
  reseal(b);
  refused(b, "99 labels");
  b = good;
  poke<uint32_t>(b, off_n_labels + 4, 1000);  // the first label's length
  reseal(b);
  refused(b, "label field too long");
  b = good;
  poke<uint64_t>(b, off_n_features(m), acceptance_feature_count(m.config) + 1);
  reseal(b);
  refused(b, "feature count mismatch");

  b = good;
  poke<float>(b, b.size() - 8 - 4, std::nanf(""));  // the last weight
  reseal(b);
  refused(b, "not finite");
  b = good;
  poke<float>(b, off_n_features(m) + 8, std::numeric_limits<float>::infinity());  // the bias
  reseal(b);
  refused(b, "not finite");
  b = good;
  poke<double>(b, off_n_features(m) + 12, 1.5);  // the threshold
  reseal(b);
  refused(b, "threshold must lie in [0, 1]");
}

TEST_CASE("acceptance_model::check catches what training or a caller could get wrong") {
  auto why = [](auto mutate) {
    acceptance_model m = small_model();
    mutate(m);
    return m.check();
  };
  CHECK(why([](acceptance_model&) {}).empty());
  CHECK(why([](acceptance_model& m) { m.weights.pop_back(); }).find("weights has") != std::string::npos);
  CHECK(why([](acceptance_model& m) { m.bias = std::nanf(""); }).find("not finite") != std::string::npos);
  CHECK(why([](acceptance_model& m) { m.threshold = -0.1; }).find("threshold") != std::string::npos);
  CHECK(why([](acceptance_model& m) { m.config.labels.push_back("UP"); }).find("config") != std::string::npos);
  CHECK(why([](acceptance_model& m) { m.curve[0].precision = 1.5; }).find("curve point 0") != std::string::npos);
  CHECK(why([](acceptance_model& m) { std::swap(m.curve[0], m.curve[1]); }).find("increasing") != std::string::npos);
  CHECK(why([](acceptance_model& m) { m.notes.assign(70000, 'n'); }).find("notes") != std::string::npos);
}
