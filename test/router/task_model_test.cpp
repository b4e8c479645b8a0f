// The task tier's model: features of the query tail (deterministic, bounded, safe on hostile bytes), training that
// learns a toy label task and is deterministic for a seed, the held-out threshold rule, refusals of data that cannot
// make a label task, and the model file (a lossless round trip; every kind of damage refused with the reason).
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <random>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "sluice/router/acceptance.h"  // normalise_answer: how answers become labels
#include "sluice/router/task_model.h"
#include "sluice/router/train.h"

using namespace sluice::router;

namespace {

sparse_features features_of(const task_config& c, std::string_view query) {
  sparse_features f;
  extract_task_features(c, query, f);
  return f;
}

// (index, value) pairs, order-free.
std::multiset<std::pair<uint32_t, float>> bag(const sparse_features& f) {
  std::multiset<std::pair<uint32_t, float>> out;
  for (size_t i = 0; i < f.index.size(); ++i) out.emplace(f.index[i], f.value[i]);
  return out;
}

task_config small_config() {
  task_config c;
  c.hash_bits = 12;
  return c;
}

// Headlines whose verb decides the label: up, down or neutral. Tails and prices are noise.
struct toy_data {
  std::vector<std::string> queries, answers;
};

toy_data make_toy(int n, uint64_t seed) {
  const char* verbs[3][4] = {{"gains", "rises", "climbs", "jumps"},
                             {"falls", "drops", "slips", "sinks"},
                             {"steady", "flat", "unchanged", "holds"}};
  const char* labels[3] = {"up", "down", "neutral"};
  const char* tails[] = {"on dollar", "in early trade", "as stocks rally", "after Fed minutes", "on demand"};
  std::mt19937_64 rng(seed);
  toy_data d;
  for (int i = 0; i < n; ++i) {
    const size_t label = rng() % 3;
    d.queries.push_back("Determine the direction.\n\nQ: gold " + std::string(verbs[label][rng() % 4]) + " $" +
                        std::to_string(rng() % 90 + 1) + " " + tails[rng() % 5] + "\nA:");
    d.answers.push_back(i % 2 ? std::string(" ") + labels[label] : std::string(labels[label]) + ".");
  }
  return d;
}

task_train_options toy_options() {
  task_train_options o;
  o.config.hash_bits = 14;
  o.epochs = 8;
  o.seed = 7;
  o.min_rows = 100;
  return o;
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
  result<task_model> m = decode_task_model(bytes, "test.bin");
  if (m) return "(decoded)";
  return m.error().message;
}

task_model small_model() {
  task_model m;
  m.config.hash_bits = 8;
  m.config.word_ngram_max = 3;
  m.config.char_ngram_max = 4;
  m.config.hash_seed = 77;
  m.labels = {"up", "down", "not sure"};
  m.weights.resize(m.labels.size() * task_feature_count(m.config));
  for (size_t i = 0; i < m.weights.size(); ++i) m.weights[i] = static_cast<float>(std::sin(static_cast<double>(i)));
  m.bias = {0.5f, -0.25f, 0.125f};
  m.threshold = 0.625;
  m.threshold_rule = "min_precision=0.95";
  m.curve = {{0.34, 1.0, 0.8}, {0.625, 0.7, 0.95}, {0.99, 0.0, std::nan("")}};
  m.heldout_accuracy = 0.875;
  m.rows_trained = 1234;
  m.notes = "sluice distill --log x.jsonl --route headlines";
  return m;
}

// Offsets in small_model()'s encoding (task_model_file.cpp has the layout).
constexpr size_t off_version = 8, off_extractor = 12, off_hash_bits = 16, off_char = 24, off_n_labels = 32;
size_t off_n_features(const task_model& m) {
  size_t at = off_n_labels + 4;
  for (const std::string& l : m.labels) at += 4 + l.size();
  return at;
}
size_t off_threshold(const task_model& m) { return off_n_features(m) + 8; }
size_t off_rule_len(const task_model& m) { return off_threshold(m) + 8; }
size_t off_heldout_accuracy(const task_model& m) { return off_rule_len(m) + 4 + m.threshold_rule.size(); }
size_t off_notes_len(const task_model& m) { return off_heldout_accuracy(m) + 16; }
size_t off_n_curve(const task_model& m) { return off_notes_len(m) + 4 + m.notes.size(); }
size_t off_bias(const task_model& m) { return off_n_curve(m) + 4 + 24 * m.curve.size(); }

}  // namespace

TEST_CASE("task query tail: after the last blank line, at most 1000 bytes, no cut word") {
  CHECK(task_query_tail("Instructions.\n\nQ: one\nA: up\n\nQ: gold gains\nA:") == "Q: gold gains\nA:");
  CHECK(task_query_tail("no blank line\nhere") == "no blank line\nhere");
  CHECK(task_query_tail("ends with a blank line\n\n").empty());
  CHECK(task_query_tail("").empty());
  const std::string long_word = "x" + std::string(1500, 'a') + " gold gains";
  CHECK(task_query_tail(long_word) == " gold gains");  // the cut word is dropped, not hashed as a shorter word
  const std::string spaced = std::string(1500, ' ') + "gold";
  CHECK(task_query_tail(spaced).size() == 1000);
}

TEST_CASE("task features: the tail only, case folded, numbers by digit count, each block of unit norm") {
  const task_config c = small_config();
  const auto f = features_of(c, "Decide.\n\nQ: Gold gains $12 on dollar\nA:");
  CHECK(bag(features_of(c, "Other prefix\n\nQ: GOLD GAINS $47 on Dollar\nA:")) == bag(f));
  CHECK(bag(features_of(c, "Q: gold gains $12 on dollar\nA:")) == bag(f));
  CHECK(bag(features_of(c, "Q: gold gains $123 on dollar\nA:")) != bag(f));  // three digits are another number
  // Words: q gold gains 12 on dollar a = 7 unigrams + 6 bigrams, values +-1/sqrt(13).
  REQUIRE(f.index.size() == 13);
  double norm = 0.0;
  for (size_t i = 0; i < f.index.size(); ++i) {
    CHECK(f.index[i] < task_feature_count(c));
    CHECK(std::abs(std::abs(f.value[i]) - 1.0 / std::sqrt(13.0)) < 1e-6);
    norm += static_cast<double>(f.value[i]) * f.value[i];
  }
  CHECK(norm == Approx(1.0));
  task_config uni = c;
  uni.word_ngram_max = 1;
  CHECK(features_of(uni, "Q: gold gains $12 on dollar\nA:").index.size() == 7);
  task_config tri = c;
  tri.word_ngram_max = 3;
  CHECK(features_of(tri, "Q: gold gains $12 on dollar\nA:").index.size() == 7 + 6 + 5);
  // Character 3..5-grams of the 9-byte tail "gold gain": 7 + 6 + 5, in a block of their own, also of unit norm.
  task_config chars = uni;
  chars.char_ngram_max = 5;
  const auto fc = features_of(chars, "gold gain");
  REQUIRE(fc.index.size() == 2 + 7 + 6 + 5);
  double char_norm = 0.0;
  for (size_t i = 2; i < fc.index.size(); ++i) char_norm += static_cast<double>(fc.value[i]) * fc.value[i];
  CHECK(char_norm == Approx(1.0));
  // The seed moves every feature; the same input gives the same features.
  task_config seeded = c;
  seeded.hash_seed ^= 1;
  CHECK(bag(features_of(seeded, "Q: gold gains")) != bag(features_of(c, "Q: gold gains")));
  CHECK(features_of(c, "Q: gold gains").index == features_of(c, "Q: gold gains").index);
  CHECK(features_of(c, "Q: gold gains").value == features_of(c, "Q: gold gains").value);
}

TEST_CASE("task features on hostile input stay inside the table and finite") {
  task_config c = small_config();
  c.word_ngram_max = 3;
  c.char_ngram_max = 5;
  std::string all_bytes;
  for (int i = 0; i < 256; ++i) all_bytes += static_cast<char>(i);
  std::string nul_words("a\0b\0\0c", 6);
  std::mt19937_64 rng(5);
  std::string noise(200000, '\0');
  for (char& ch : noise) ch = static_cast<char>(rng());
  for (const std::string& q : {std::string(), std::string("\n\n"), std::string("\n\n\n\n\n"), all_bytes, all_bytes + all_bytes,
                               nul_words, noise, std::string(5000, 'a'), std::string("\xff\xfe\xc3(\xe2\x82"),
                               std::string(3000, '9')}) {
    const sparse_features f = features_of(c, q);
    CHECK(f.index.size() == f.value.size());
    CHECK(f.index.size() <= 3 * 1000 + 3 * 1000);  // the tail is at most 1000 bytes
    for (size_t i = 0; i < f.index.size(); ++i) {
      REQUIRE(f.index[i] < task_feature_count(c));
      REQUIRE(std::isfinite(f.value[i]));
    }
  }
  CHECK(features_of(c, "").index.empty());
  task_config broken = c;
  broken.hash_bits = 0;
  CHECK(features_of(broken, "gold gains").index.empty());  // an unusable config has no features
}

TEST_CASE("task config validation names the field") {
  auto why = [](auto change) {
    task_config c;
    change(c);
    return validate(c);
  };
  CHECK(why([](task_config&) {}).empty());
  CHECK(why([](task_config& c) { c.hash_bits = 7; }).find("hash_bits") != std::string::npos);
  CHECK(why([](task_config& c) { c.hash_bits = 25; }).find("hash_bits") != std::string::npos);
  CHECK(why([](task_config& c) { c.word_ngram_max = 0; }).find("word_ngram_max") != std::string::npos);
  CHECK(why([](task_config& c) { c.word_ngram_max = 4; }).find("word_ngram_max") != std::string::npos);
  CHECK(why([](task_config& c) { c.char_ngram_max = 2; }).find("char_ngram_max") != std::string::npos);
  CHECK(why([](task_config& c) { c.char_ngram_max = 6; }).find("char_ngram_max") != std::string::npos);
  CHECK(why([](task_config& c) { c.char_ngram_max = 3; }).empty());
}

TEST_CASE("task training learns a toy 3-label task well above chance, deterministically") {
  const toy_data train = make_toy(600, 1), test = make_toy(300, 2);
  result<task_model> m = train_task_model(train.queries, train.answers, toy_options());
  REQUIRE(m.has_value());
  CHECK(m->check().empty());
  CHECK(m->rows_trained == 600);
  REQUIRE(m->labels.size() == 3);
  CHECK(std::set<std::string>(m->labels.begin(), m->labels.end()) ==
        std::set<std::string>{"up", "down", "neutral"});  // normalised: trimmed, lower case
  CHECK(m->heldout_accuracy > 0.9);
  CHECK(m->threshold >= 1.0 / 3.0);
  CHECK(m->threshold <= 1.0);
  CHECK(m->threshold_rule == "min_precision=0.86");  // the default target
  CHECK(m->notes.find("refit on all 600 rows") != std::string::npos);
  CHECK(m->notes.find("held out 120 rows") != std::string::npos);
  result<task_classifier> c = task_classifier::from_model(*m);
  REQUIRE(c.has_value());
  int right = 0;
  for (size_t i = 0; i < test.queries.size(); ++i) {
    const task_classifier::answer a = c->classify(test.queries[i]);
    REQUIRE(a.label < 3);
    CHECK(a.confidence >= 1.0 / 3.0 - 1e-9);
    CHECK(a.confidence <= 1.0);
    right += c->model().labels[a.label] == normalise_answer(test.answers[i]);
  }
  CHECK(right > 0.9 * static_cast<double>(test.queries.size()));
  // The request form reads the last user message (or the prompt).
  CHECK(c->classify(request_from_prompt(test.queries[0])).label == c->classify(test.queries[0]).label);

  // Same data and seed: the same bytes. Another seed: another model.
  result<task_model> again = train_task_model(train.queries, train.answers, toy_options());
  REQUIRE(again.has_value());
  CHECK(encode_task_model(*again) == encode_task_model(*m));
  task_train_options other = toy_options();
  other.seed = 8;
  result<task_model> reseeded = train_task_model(train.queries, train.answers, other);
  REQUIRE(reseeded.has_value());
  CHECK(encode_task_model(*reseeded) != encode_task_model(*m));
}

TEST_CASE("task threshold: the lowest held-out threshold reaching the precision, or the highest score") {
  // Clear headlines are always labelled by their verb; "mixed" ones get a coin-flip label. The confident share is
  // the clear rows, and the threshold must leave the mixed ones to the frontier.
  const toy_data clear = make_toy(700, 3);
  toy_data d = clear;
  std::mt19937_64 rng(4);
  for (int i = 0; i < 500; ++i) {
    d.queries.push_back("Q: gold mixed " + std::to_string(rng() % 90 + 1) + " in trade\nA:");
    d.answers.push_back(rng() % 2 ? "up" : "down");
  }
  task_train_options o = toy_options();
  o.min_precision = 0.95;
  result<task_model> m = train_task_model(d.queries, d.answers, o);
  REQUIRE(m.has_value());
  const size_t held = 1200 / 5;
  const task_point* chosen = nullptr;
  for (const task_point& p : m->curve) {
    if (p.threshold == m->threshold) chosen = &p;
    // Lower thresholds on the curve are below the target or answer too few rows.
    if (p.threshold < m->threshold)
      CHECK((p.precision < 0.95 || p.answer_rate * static_cast<double>(held) < 20.0));
  }
  REQUIRE(chosen != nullptr);
  CHECK(chosen->precision >= 0.95);
  CHECK(chosen->answer_rate * static_cast<double>(held) >= 20.0);
  CHECK(chosen->answer_rate < 0.8);  // the mixed rows (about 42%) are mostly escalated
  CHECK(chosen->answer_rate > 0.4);
  CHECK(m->curve.front().answer_rate == 1.0);
  CHECK(m->curve.front().precision == Approx(m->heldout_accuracy));

  // An unreachable target: the highest score, and the rule and notes say so.
  o.min_precision = 1.0;
  for (std::string& a : d.answers)
    if (rng() % 4 == 0) a = normalise_answer(a) == "up" ? "down" : "up";  // noise everywhere: no share is perfect
  result<task_model> strict = train_task_model(d.queries, d.answers, o);
  REQUIRE(strict.has_value());
  CHECK(strict->threshold_rule.find("not reached") != std::string::npos);
  CHECK(strict->notes.find("not reached") != std::string::npos);
  CHECK(strict->threshold == strict->curve.back().threshold);
}

TEST_CASE("task training refuses data that cannot make a label task, and says why") {
  const toy_data toy = make_toy(600, 1);
  auto refusal = [](const std::vector<std::string>& q, const std::vector<std::string>& a, task_train_options o) {
    result<task_model> m = train_task_model(q, a, o);
    REQUIRE(!m.has_value());
    CHECK(m.error().code == errc::bad_request);
    return m.error().message;
  };
  task_train_options o = toy_options();
  o.min_rows = 200;
  std::vector<std::string> few_q(toy.queries.begin(), toy.queries.begin() + 150);
  std::vector<std::string> few_a(toy.answers.begin(), toy.answers.begin() + 150);
  CHECK(refusal(few_q, few_a, o).find("too little data: 150 usable rows, at least 200 needed") != std::string::npos);

  std::vector<std::string> same(600, "up");
  CHECK(refusal(toy.queries, same, o).find("fewer than 2 labels") != std::string::npos);

  std::vector<std::string> free_text;
  for (size_t i = 0; i < 600; ++i) free_text.push_back("The price went up by " + std::to_string(i) + " dollars");
  const std::string why = refusal(toy.queries, free_text, o);
  CHECK(why.find("not a label task: 600 distinct answers, e.g. ") != std::string::npos);

  std::vector<std::string> many = toy.answers;  // 70 labels, each seen often enough: more than max_labels
  for (size_t i = 0; i < many.size(); ++i) many[i] = "label" + std::to_string(i % 70);
  CHECK(refusal(toy.queries, many, o).find("not a label task: 70 distinct answers") != std::string::npos);
  task_train_options few_labels = o;
  few_labels.max_labels = 2;
  CHECK(refusal(toy.queries, toy.answers, few_labels).find("not a label task: 3 distinct answers") !=
        std::string::npos);

  std::vector<std::string> long_label(600, std::string(80, 'x'));
  for (size_t i = 0; i < 300; ++i) long_label[i] = "up";
  CHECK(refusal(toy.queries, long_label, o).find("longer than 64 bytes") != std::string::npos);

  CHECK(refusal(toy.queries, few_a, o).find("differ in length") != std::string::npos);
  task_train_options bad = o;
  bad.heldout_fraction = 0.0;
  CHECK(refusal(toy.queries, toy.answers, bad).find("heldout_fraction") != std::string::npos);
  bad = o;
  bad.min_precision = 1.5;
  CHECK(refusal(toy.queries, toy.answers, bad).find("min_precision") != std::string::npos);
  bad = o;
  bad.config.hash_bits = 30;
  CHECK(refusal(toy.queries, toy.answers, bad).find("hash_bits") != std::string::npos);
  bad = o;
  bad.config.hash_bits = 24;
  bad.max_labels = 64;
  std::vector<std::string> five = toy.answers;
  for (size_t i = 0; i < five.size(); ++i) five[i] = "l" + std::to_string(i % 5);
  CHECK(refusal(toy.queries, five, bad).find("exceed the limit") != std::string::npos);
}

TEST_CASE("task training drops rare and empty answers and counts them") {
  toy_data d = make_toy(600, 1);
  d.answers[0] = "sideways";  // seen once: dropped
  d.answers[1] = "sideways";
  d.answers[2] = "...";  // nothing left after trimming: dropped
  result<task_model> m = train_task_model(d.queries, d.answers, toy_options());
  REQUIRE(m.has_value());
  CHECK(m->labels.size() == 3);
  CHECK(m->rows_trained == 597);
  CHECK(m->notes.find("dropped 2 rows of 1 answers seen fewer than 5 times, 1 empty answers") != std::string::npos);
}

TEST_CASE("task model file round trip is lossless") {
  const task_model m = small_model();
  REQUIRE(m.check().empty());
  const std::string bytes = encode_task_model(m);
  CHECK(bytes.substr(0, 8) == "SLUICETM");
  result<task_model> back = decode_task_model(bytes);
  REQUIRE(back.has_value());
  CHECK(back->config == m.config);
  CHECK(back->labels == m.labels);
  CHECK(back->weights == m.weights);
  CHECK(back->bias == m.bias);
  CHECK(back->threshold == m.threshold);
  CHECK(back->threshold_rule == m.threshold_rule);
  CHECK(back->heldout_accuracy == m.heldout_accuracy);
  CHECK(back->rows_trained == m.rows_trained);
  CHECK(back->notes == m.notes);
  REQUIRE(back->curve.size() == 3);
  CHECK(back->curve[1].answer_rate == 0.7);
  CHECK(std::isnan(back->curve[2].precision));
  CHECK(encode_task_model(*back) == bytes);

  // Through a file, and a classifier built from either gives the same answers.
  const std::string path = "task_model_test_roundtrip.bin";
  result<task_classifier> c = task_classifier::from_model(m);
  REQUIRE(c.has_value());
  REQUIRE(c->save(path).has_value());
  result<task_classifier> loaded = task_classifier::load(path);
  std::remove(path.c_str());
  REQUIRE(loaded.has_value());
  for (const char* q : {"Q: gold gains\nA:", "", "zz top", "Q: silver falls $3\nA:"}) {
    CHECK(loaded->classify(q).label == c->classify(q).label);
    CHECK(loaded->classify(q).confidence == c->classify(q).confidence);
  }
  result<task_classifier> missing = task_classifier::load("no/such/task.bin");
  REQUIRE(!missing.has_value());
  CHECK(missing.error().message.find("no/such/task.bin") != std::string::npos);
  result<void> unwritable = c->save("no/such/dir/task.bin");
  REQUIRE(!unwritable.has_value());
  CHECK(unwritable.error().message.find("no/such/dir/task.bin") != std::string::npos);
}

TEST_CASE("every truncation of a task model file is refused as truncated") {
  const std::string bytes = encode_task_model(small_model());
  for (size_t n = 0; n < bytes.size(); ++n) {
    const std::string why = decode_error(std::string_view(bytes).substr(0, n));
    INFO("length " << n << ": " << why);
    REQUIRE(why.find("test.bin: ") == 0);
    if (n == 0) continue;  // nothing at all: cannot tell a truncated model from another file
    REQUIRE(why.find("truncated") != std::string::npos);
  }
}

TEST_CASE("damaged task model files are refused with the reason") {
  const task_model m = small_model();
  const std::string good = encode_task_model(m);
  auto refused = [](std::string bytes, std::string_view needle) {
    const std::string why = decode_error(bytes);
    INFO(why);
    CHECK(why.find("test.bin: ") == 0);
    CHECK(why.find(needle) != std::string::npos);
  };
  std::string b = good;
  b[0] = 'X';
  refused(b, "bad magic");
  refused("SLUICEAM" + good.substr(8), "bad magic");  // an acceptance model is not a task model

  b = good;
  poke<uint32_t>(b, off_version, 2);
  refused(b, "unsupported format version 2");
  b = good;
  poke<uint32_t>(b, off_extractor, task_extractor_version + 1);
  refused(b, "distill the model again");

  b = good;
  b[b.size() / 2] ^= 0x10;  // a weight bit: only the checksum notices
  refused(b, "checksum mismatch");
  refused(good + "x", "trailing bytes");

  b = good;
  poke<uint32_t>(b, off_hash_bits, 30);
  reseal(b);
  refused(b, "invalid config: hash_bits");
  b = good;
  poke<uint32_t>(b, off_char, 9);
  reseal(b);
  refused(b, "invalid config: char_ngram_max");
  b = good;
  poke<uint32_t>(b, off_n_labels, 99);
  reseal(b);
  refused(b, "99 labels");
  b = good;
  poke<uint32_t>(b, off_n_labels, 1);
  reseal(b);
  refused(b, "1 labels");
  b = good;
  poke<uint32_t>(b, off_n_labels + 4, 1000);  // the first label's length
  reseal(b);
  refused(b, "label field too long");
  b = good;
  poke<uint64_t>(b, off_n_features(m), task_feature_count(m.config) + 1);
  reseal(b);
  refused(b, "feature count mismatch");
  b = good;
  poke<uint32_t>(b, off_rule_len(m), 1u << 20);
  reseal(b);
  refused(b, "threshold_rule field too long");
  b = good;
  poke<uint32_t>(b, off_notes_len(m), 1u << 30);
  reseal(b);
  refused(b, "notes field too long");
  b = good;
  poke<uint32_t>(b, off_n_curve(m), 1u << 20);
  reseal(b);
  refused(b, "curve field too long");
  b = good;
  poke<uint32_t>(b, off_n_curve(m), 4);
  reseal(b);
  refused(b, "truncated");

  // Values: NaN or out of range, each caught after the checksum by the model's own check.
  b = good;
  poke<float>(b, off_bias(m) + 4, std::numeric_limits<float>::quiet_NaN());
  reseal(b);
  refused(b, "not finite");
  b = good;
  poke<float>(b, good.size() - 12, std::numeric_limits<float>::infinity());  // the last weight
  reseal(b);
  refused(b, "not finite");
  b = good;
  poke<double>(b, off_threshold(m), std::nan(""));
  reseal(b);
  refused(b, "threshold must lie in [0, 1]");
  b = good;
  poke<double>(b, off_heldout_accuracy(m), 1.5);
  reseal(b);
  refused(b, "heldout_accuracy");
  b = good;
  poke<double>(b, off_n_curve(m) + 4 + 8, -0.5);  // the first point's answer rate
  reseal(b);
  refused(b, "curve point 0 lies outside [0, 1]");
  b = good;
  poke<double>(b, off_n_curve(m) + 4 + 24, 0.1);  // the second point's threshold, below the first's
  reseal(b);
  refused(b, "not increasing");
  b = good;
  std::memcpy(b.data() + off_n_labels + 4 + 4 + 2 + 4, "up", 2);  // the second label renamed to the first's
  poke<uint32_t>(b, off_n_labels + 4 + 4 + 2, 2);
  b.erase(off_n_labels + 4 + 4 + 2 + 4 + 2, 2);
  reseal(b);
  refused(b, "appears twice");
}

TEST_CASE("a task model's check names what is inconsistent") {
  task_model m = small_model();
  m.weights.pop_back();
  CHECK(m.check().find("weights has") != std::string::npos);
  m = small_model();
  m.bias.push_back(0.0f);
  CHECK(m.check().find("bias has") != std::string::npos);
  m = small_model();
  m.labels[2] = "";
  CHECK(m.check().find("label 3") != std::string::npos);
  m = small_model();
  m.labels.resize(1);
  CHECK(m.check().find("1 labels") != std::string::npos);
  CHECK(!task_classifier::from_model(m).has_value());
}

TEST_CASE("classify equals the softmax of bias + weights . features of the training features") {
  task_model m = small_model();
  result<task_classifier> c = task_classifier::from_model(m);
  REQUIRE(c.has_value());
  const size_t n = task_feature_count(m.config);
  for (const char* q : {"Decide.\n\nQ: Gold gains $12 on dollar\nA:", "", "zz", "Q: silver falls as stocks slide\nA:"}) {
    const sparse_features f = features_of(m.config, q);
    std::vector<double> z(m.labels.size());
    size_t best = 0;
    for (size_t l = 0; l < m.labels.size(); ++l) {
      z[l] = m.bias[l];
      for (size_t i = 0; i < f.index.size(); ++i) z[l] += static_cast<double>(m.weights[l * n + f.index[i]]) * f.value[i];
      if (z[l] > z[best]) best = l;
    }
    double denominator = 0.0;
    for (double v : z) denominator += std::exp(v - z[best]);
    const task_classifier::answer a = c->classify(q);
    INFO(q);
    CHECK(a.label == best);
    CHECK(a.confidence == Approx(1.0 / denominator).epsilon(1e-5));
  }
}
