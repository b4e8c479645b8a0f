// Acceptance training: it learns a task only the answer x query conjunctions can express, it is deterministic for a
// seed, the threshold rules pick what they promise on constructed scores, and bad input is an error value.
#include <catch2/catch.hpp>

#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "sluice/router/acceptance.h"

using namespace sluice::router;

namespace {

// Headlines that say gold gains or falls; the local model answers up or down at random. The answer is correct
// exactly when it agrees with the verb: an XOR of query and answer that no query-only or answer-only weight fits.
struct toy_rows {
  std::vector<answer_signals> rows;
  std::vector<double> labels;
};

toy_rows make_toy(int n, uint64_t seed) {
  const char* gains[] = {"gains", "rises", "climbs", "jumps"};
  const char* falls[] = {"falls", "drops", "slips", "sinks"};
  const char* tails[] = {"on dollar", "in early trade", "as stocks rally", "after Fed minutes", "on demand"};
  std::mt19937_64 rng(seed);
  toy_rows d;
  for (int i = 0; i < n; ++i) {
    const bool up_headline = rng() % 2 == 0, says_up = rng() % 2 == 0;
    answer_signals s;
    s.query = "Decide the direction.\n\nQ: gold " + std::string(up_headline ? gains[rng() % 4] : falls[rng() % 4]) +
              " $" + std::to_string(rng() % 90 + 1) + " " + tails[rng() % 5] + "\nA:";
    s.answer = says_up ? " up" : " down";
    const double lp = -0.2 - static_cast<double>(rng() % 100) / 100.0;  // uninformative confidence
    s.token_logprobs = {lp, -0.05};
    s.first_top_logprobs = {{s.answer, lp}, {says_up ? " down" : " up", lp - 1.0}};
    d.rows.push_back(std::move(s));
    d.labels.push_back(up_headline == says_up ? 1.0 : 0.0);
  }
  return d;
}

acceptance_train_options toy_options() {
  acceptance_train_options o;
  o.config.hash_bits = 14;
  o.config.labels = {"up", "down"};
  o.epochs = 8;
  o.seed = 7;
  return o;
}

}  // namespace

TEST_CASE("acceptance training learns which answers are wrong for which questions") {
  const toy_rows train = make_toy(600, 1), test = make_toy(300, 2);
  result<acceptance_model> m = train_acceptance(train.rows, train.labels, toy_options());
  REQUIRE(m.has_value());
  result<acceptance_scorer> scorer = acceptance_scorer::from_model(*m);
  REQUIRE(scorer.has_value());
  int right = 0;
  for (size_t i = 0; i < test.rows.size(); ++i)
    right += (scorer->score(test.rows[i]) >= 0.5) == (test.labels[i] == 1.0);
  const double accuracy = static_cast<double>(right) / static_cast<double>(test.rows.size());
  INFO("held-out accuracy " << accuracy);
  CHECK(accuracy > 0.9);
  CHECK(m->threshold == 0.5);
  CHECK(m->threshold_rule == "default=0.5");
  CHECK(m->notes.find("calibration rows 150") != std::string::npos);
  // The curve is on the calibration rows, by increasing threshold, and contains the chosen threshold.
  REQUIRE(m->curve.size() >= 2);
  CHECK(m->curve.front().accept_rate == 1.0);
  bool has_threshold = false;
  for (size_t i = 0; i < m->curve.size(); ++i) {
    if (i > 0) CHECK(m->curve[i].threshold > m->curve[i - 1].threshold);
    has_threshold |= m->curve[i].threshold == m->threshold;
  }
  CHECK(has_threshold);
}

TEST_CASE("acceptance training is deterministic for a seed") {
  const toy_rows d = make_toy(300, 3);
  acceptance_train_options o = toy_options();
  o.min_precision = 0.8;
  o.local_model_id = "sha256:0123";
  result<acceptance_model> a = train_acceptance(d.rows, d.labels, o);
  result<acceptance_model> b = train_acceptance(d.rows, d.labels, o);
  REQUIRE(a.has_value());
  REQUIRE(b.has_value());
  CHECK(encode_acceptance_model(*a) == encode_acceptance_model(*b));
  CHECK(a->local_model_id == "sha256:0123");
  o.seed = 8;
  result<acceptance_model> c = train_acceptance(d.rows, d.labels, o);
  REQUIRE(c.has_value());
  CHECK(encode_acceptance_model(*a) != encode_acceptance_model(*c));
}

TEST_CASE("threshold rules on constructed scores") {
  // 100 rows scored 0.00 .. 0.99: from 0.60 up every answer is right; below, every other one.
  std::vector<double> scores, labels;
  for (int i = 0; i < 100; ++i) {
    scores.push_back(i / 100.0);
    labels.push_back(i >= 60 || i % 2 == 0 ? 1.0 : 0.0);
  }
  SECTION("no target: 0.5") {
    const acceptance_threshold t = choose_acceptance_threshold(scores, labels, std::nullopt, std::nullopt);
    CHECK(t.threshold == 0.5);
    CHECK(t.rule == "default=0.5");
  }
  SECTION("min_precision: the lowest threshold reaching it with enough accepted rows") {
    acceptance_threshold t = choose_acceptance_threshold(scores, labels, 1.0, std::nullopt);
    CHECK(t.threshold == 0.60);  // 0.59 is wrong, so nothing below 0.60 is perfect
    CHECK(t.target_met);
    CHECK(t.rule == "min_precision=1");
    // At 0.58 precision is 41/42 = 0.976; at 0.57, 41/43 = 0.953; at 0.56, 42/44 = 0.955: the lowest >= 0.95.
    t = choose_acceptance_threshold(scores, labels, 0.95, std::nullopt);
    double best = 1.0;
    for (int k = 99; k >= 0; --k) {
      double pos = 0;
      for (int i = k; i < 100; ++i) pos += labels[i];
      if (100 - k >= 20 && pos / (100 - k) >= 0.95) best = k / 100.0;
    }
    CHECK(t.threshold == best);
    CHECK(t.threshold < 0.60);
  }
  SECTION("min_precision out of reach: the highest threshold, and the rule says so") {
    const acceptance_threshold t = choose_acceptance_threshold(scores, labels, 1.0, std::nullopt, 50);
    CHECK(t.threshold == 0.99);
    CHECK(!t.target_met);
    CHECK(t.rule.find("not reached") != std::string::npos);
  }
  SECTION("max_escalation_rate: the highest threshold escalating at most that share") {
    CHECK(choose_acceptance_threshold(scores, labels, std::nullopt, 0.3).threshold == 0.30);
    CHECK(choose_acceptance_threshold(scores, labels, std::nullopt, 0.305).threshold == 0.30);
    CHECK(choose_acceptance_threshold(scores, labels, std::nullopt, 0.0).threshold == 0.0);
    CHECK(choose_acceptance_threshold(scores, labels, std::nullopt, 1.0).threshold == 0.99);
    CHECK(choose_acceptance_threshold(scores, labels, std::nullopt, 0.3).rule == "max_escalation_rate=0.3");
  }
  SECTION("tied scores are one threshold") {
    const std::vector<double> flat(50, 0.42), mixed(50, 1.0);
    CHECK(choose_acceptance_threshold(flat, mixed, std::nullopt, 0.5).threshold == 0.42);
    CHECK(choose_acceptance_threshold(flat, mixed, 0.9, std::nullopt).threshold == 0.42);
  }
  SECTION("the curve: score quantiles, accept rate and precision of accepting score >= threshold") {
    const std::vector<acceptance_point> curve = acceptance_curve_of_scores(scores, labels, 11);
    REQUIRE(curve.size() == 11);
    CHECK(curve.front().threshold == 0.0);
    CHECK(curve.front().accept_rate == 1.0);
    CHECK(curve.front().precision == Approx(0.7));
    CHECK(curve.back().threshold == 0.99);
    CHECK(curve.back().accept_rate == Approx(0.01));
    CHECK(curve.back().precision == 1.0);
    CHECK(curve[6].threshold == Approx(0.59));  // rank 6 * 99 / 10 = 59
    CHECK(curve[6].accept_rate == Approx(0.41));
    CHECK(curve[6].precision == Approx(40.0 / 41.0));
    CHECK(acceptance_curve_of_scores({}, {}, 11).empty());
    CHECK(acceptance_curve_of_scores(scores, std::vector<double>(3, 1.0), 11).empty());
  }
}

TEST_CASE("acceptance training chooses its threshold on the calibration rows for the target") {
  const toy_rows d = make_toy(400, 4);
  acceptance_train_options o = toy_options();
  o.max_escalation_rate = 0.4;
  result<acceptance_model> m = train_acceptance(d.rows, d.labels, o);
  REQUIRE(m.has_value());
  CHECK(m->threshold_rule == "max_escalation_rate=0.4");
  // Scored again on the calibration rows (the same seeded split), at most 40% escalate.
  result<acceptance_scorer> scorer = acceptance_scorer::from_model(*m);
  REQUIRE(scorer.has_value());
  for (const acceptance_point& p : m->curve)
    if (p.threshold == m->threshold) CHECK(1.0 - p.accept_rate <= 0.4 + 1e-12);
  const std::vector<acceptance_point> all = acceptance_curve(*scorer, d.rows, d.labels);
  REQUIRE(!all.empty());
  CHECK(all.front().accept_rate == 1.0);
  CHECK(acceptance_curve(*scorer, d.rows, std::vector<double>(3, 1.0)).empty());

  SECTION("no calibration rows: chosen on the fitting rows, and the notes say so") {
    o.calibration_fraction = 0.0;
    result<acceptance_model> n = train_acceptance(d.rows, d.labels, o);
    REQUIRE(n.has_value());
    CHECK(n->notes.find("optimistic") != std::string::npos);
  }
  SECTION("an unreachable precision target is reported in the rule and the notes") {
    o.max_escalation_rate.reset();
    o.min_precision = 1.0;
    o.min_accepted_rows = 1000;
    result<acceptance_model> n = train_acceptance(d.rows, d.labels, o);
    REQUIRE(n.has_value());
    CHECK(n->threshold_rule.find("not reached") != std::string::npos);
    CHECK(n->notes.find("not reached") != std::string::npos);
  }
}

TEST_CASE("acceptance training refuses bad input with an error value") {
  const toy_rows d = make_toy(50, 5);
  auto refused = [&](acceptance_train_options o, std::string_view needle, std::vector<double> labels = {}) {
    if (labels.empty()) labels = d.labels;
    INFO("expecting an error with: " << needle);
    result<acceptance_model> m = train_acceptance(d.rows, labels, o);
    REQUIRE(!m.has_value());
    INFO(m.error().message);
    CHECK(m.error().code == errc::bad_request);
    CHECK(m.error().message.find(needle) != std::string::npos);
  };
  CHECK(!train_acceptance({}, {}, toy_options()).has_value());
  refused(toy_options(), "differ in length", std::vector<double>(10, 1.0));
  std::vector<double> bad = d.labels;
  bad[3] = 2.0;
  refused(toy_options(), "[0, 1]", bad);
  bad[3] = std::nan("");
  refused(toy_options(), "[0, 1]", bad);
  acceptance_train_options o = toy_options();
  o.min_precision = 0.9;
  o.max_escalation_rate = 0.5;
  refused(o, "at most one target");
  o = toy_options();
  o.min_precision = 0.0;
  refused(o, "min_precision");
  o.min_precision = 1.5;
  refused(o, "min_precision");
  o = toy_options();
  o.max_escalation_rate = -0.1;
  refused(o, "max_escalation_rate");
  o = toy_options();
  o.calibration_fraction = 1.0;
  refused(o, "calibration_fraction");
  o = toy_options();
  o.epochs = 0;
  refused(o, "epochs");
  o = toy_options();
  o.config.labels = {"Up"};
  refused(o, "not normalised");
}
