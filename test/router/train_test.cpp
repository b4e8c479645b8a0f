// Router training: determinism (same seed -> identical model bytes), that it learns a planted signal, input
// errors, labels, splits and reading gzipped data.
#include <catch2/catch.hpp>

#include <zlib.h>

#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "sluice/router/classifier.h"
#include "sluice/router/train.h"

using namespace sluice::router;

namespace {

// Prompts that mention "theorem" need the strong model; those about "weather" do not. Lengths overlap.
struct toy_data {
  std::vector<chat_request> requests;
  std::vector<double> labels;
};

toy_data make_toy(int n, int offset) {
  const char* fillers[] = {"please", "quickly", "tell me", "in short", "for my class"};
  toy_data d;
  for (int i = offset; i < offset + n; ++i) {
    const bool hard = i % 2 == 0;
    std::string p = std::string(hard ? "Prove the theorem about " : "What is the weather in ") + "city " +
                    std::to_string(i % 13) + " " + fillers[i % 5];
    d.requests.push_back(request_from_prompt(p));
    d.labels.push_back(hard ? 1.0 : 0.0);
  }
  return d;
}

train_options small_options(uint32_t hidden) {
  train_options o;
  o.features.hash_bits = 12;
  o.hidden_units = hidden;
  o.epochs = 4;
  o.seed = 42;
  return o;
}

}  // namespace

TEST_CASE("training is deterministic: same seed gives identical model bytes") {
  const toy_data d = make_toy(200, 0);
  for (uint32_t hidden : {0u, 4u}) {
    INFO("hidden " << hidden);
    train_options o = small_options(hidden);
    result<router_model> a = train_router(d.requests, d.labels, o);
    result<router_model> b = train_router(d.requests, d.labels, o);
    REQUIRE(a.has_value());
    REQUIRE(b.has_value());
    CHECK(encode_router_model(*a) == encode_router_model(*b));
    o.seed = 43;
    result<router_model> c = train_router(d.requests, d.labels, o);
    REQUIRE(c.has_value());
    CHECK(encode_router_model(*a) != encode_router_model(*c));
  }
}

TEST_CASE("training learns a planted signal that holds on unseen rows") {
  const toy_data train = make_toy(300, 0), test = make_toy(100, 1000);
  for (uint32_t hidden : {0u, 4u}) {
    INFO("hidden " << hidden);
    int progress_calls = 0;
    train_options o = small_options(hidden);
    o.progress = [&](const train_progress& p) {
      ++progress_calls;
      CHECK(p.epochs == 4);
      CHECK(p.rows_done <= p.rows_total);
    };
    result<router_model> m = train_router(train.requests, train.labels, o);
    REQUIRE(m.has_value());
    CHECK(progress_calls >= 4);
    result<classifier> c = classifier::from_model(std::move(*m));
    REQUIRE(c.has_value());
    int correct = 0;
    for (size_t i = 0; i < test.requests.size(); ++i)
      correct += (c->score(test.requests[i]) > 0.5) == (test.labels[i] > 0.5);
    CHECK(correct >= 95);
  }
}

TEST_CASE("training refuses bad input with an error value") {
  const toy_data d = make_toy(10, 0);
  train_options o = small_options(0);
  CHECK_FALSE(train_router({}, {}, o).has_value());
  CHECK_FALSE(train_router(d.requests, std::span<const double>(d.labels).first(5), o).has_value());
  std::vector<double> bad = d.labels;
  bad[3] = 1.5;
  CHECK_FALSE(train_router(d.requests, bad, o).has_value());
  o.features.hash_bits = 3;
  CHECK_FALSE(train_router(d.requests, d.labels, o).has_value());
  o = small_options(max_hidden_units + 1);
  CHECK_FALSE(train_router(d.requests, d.labels, o).has_value());
  o = small_options(0);
  o.epochs = 0;
  CHECK_FALSE(train_router(d.requests, d.labels, o).has_value());
}

TEST_CASE("labels derived from weak and strong outcomes") {
  routing_row r;
  r.weak_correct = 0;
  r.strong_correct = 1;
  CHECK(row_label(r, label_kind::weak_wrong) == 1.0);
  CHECK(row_label(r, label_kind::strong_better) == 1.0);
  CHECK(row_label(r, label_kind::gain) == 1.0);
  r.weak_correct = 1;
  r.strong_correct = 0;
  CHECK(row_label(r, label_kind::weak_wrong) == 0.0);
  CHECK(row_label(r, label_kind::strong_better) == 0.0);
  CHECK(row_label(r, label_kind::gain) == 0.0);
  r.weak_correct = 0;
  r.strong_correct = 0;
  CHECK(row_label(r, label_kind::weak_wrong) == 1.0);
  CHECK(row_label(r, label_kind::strong_better) == 0.0);
  CHECK(row_label(r, label_kind::gain) == 0.5);
  CHECK_FALSE(row_label(r, label_kind::field));
  r.label_field = 0.25;
  CHECK(row_label(r, label_kind::field) == 0.25);
  CHECK(parse_label_kind("gain") == label_kind::gain);
  CHECK_FALSE(parse_label_kind("my_field"));
}

TEST_CASE("holdout split is deterministic, by group, and near the asked fraction") {
  routing_row a;
  a.id = "x/1";
  a.domain = "anatomy";
  CHECK(split_group(a) == "anatomy");
  a.domain.clear();
  CHECK(split_group(a) == "x/1");
  int held = 0;
  for (int i = 0; i < 4000; ++i) {
    const std::string key = "row" + std::to_string(i);
    const bool h = in_holdout(key, 0.25, 9);
    CHECK(h == in_holdout(key, 0.25, 9));
    held += h;
  }
  CHECK(held > 850);
  CHECK(held < 1150);
  CHECK_FALSE(in_holdout("anything", 0.0, 1));
  CHECK(in_holdout("anything", 1.0, 1));
}

TEST_CASE("data files are read plain or gzipped") {
  const std::string text = "{\"a\": 1}\n{\"b\": 2}\n";
  const std::string plain = "router_train_plain.jsonl", packed = "router_train_packed.jsonl.gz";
  std::ofstream(plain) << text;
  gzFile g = gzopen(packed.c_str(), "wb");
  REQUIRE(g != nullptr);
  gzwrite(g, text.data(), static_cast<unsigned>(text.size()));
  gzclose(g);
  result<std::string> p = read_file_maybe_gzip(plain), z = read_file_maybe_gzip(packed);
  REQUIRE(p.has_value());
  REQUIRE(z.has_value());
  CHECK(*p == text);
  CHECK(*z == text);

  // A truncated gzip stream is an error, not a short file.
  std::ifstream in(packed, std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::ofstream(packed, std::ios::binary | std::ios::trunc) << bytes.substr(0, bytes.size() - 10);
  CHECK_FALSE(read_file_maybe_gzip(packed).has_value());
  result<std::string> missing = read_file_maybe_gzip("/nonexistent/file.jsonl");
  REQUIRE_FALSE(missing.has_value());
  CHECK(missing.error().message.find("/nonexistent/file.jsonl") != std::string::npos);
  std::remove(plain.c_str());
  std::remove(packed.c_str());
}
